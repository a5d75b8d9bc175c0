#pragma once
// Test helpers: where shared data lives, reading reference tensors, random data.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "formats/safetensors.h"
#include "formats/tensor_index.h"

namespace sluice::test {

inline std::string shared(const std::string& rel) {
    const char* env = std::getenv("SLUICE_SHARED");
    return std::string(env ? env : SLUICE_SHARED_DIR) + "/" + rel;
}

inline std::string tiny_hf() {
    return shared("models/tiny-qwen3moe");
}
inline std::string tiny_gguf(const std::string& q) {
    return shared("models/tiny-qwen3moe-" + q + ".gguf");
}
// A model made by tools/make_reference.py, committed under tests/fixtures/.
inline std::string fixture(const std::string& name) {
    return std::string(SLUICE_SOURCE_DIR) + "/tests/fixtures/" + name;
}

// Tensors of a safetensors file as f32/i32 vectors.
struct RefFile {
    explicit RefFile(const std::string& path) : index(read_safetensors(path)), files(index) {}
    template <typename T>
    std::vector<T> get(const std::string& name, std::vector<int64_t>* ne = nullptr) const {
        const TensorInfo& t = index.get(name);
        if (ne) *ne = t.ne;
        const TensorView v = files.view(t);
        const T* p = (const T*)v.data;
        return std::vector<T>(p, p + t.nbytes / sizeof(T));
    }
    TensorIndex index;
    TensorFiles files;
};

inline std::vector<float> random_floats(size_t n, uint64_t seed, float scale = 1.0f) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> d(0.f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// gtest parameter name from a case's `name` member: non-alphanumerics become '_'.
struct ParamName {
    template <class Info>
    std::string operator()(const Info& info) const {
        std::string s = info.param.name;
        for (char& ch : s)
            if (!isalnum((unsigned char)ch)) ch = '_';
        return s;
    }
};

// A fresh temporary directory for one test, removed when the test process exits, so runs do not fill /tmp with model copies.
inline std::filesystem::path temp_dir(const std::string& name) {
    struct Registry {
        std::vector<std::filesystem::path> dirs;
        ~Registry() {
            std::error_code ec;
            for (const auto& d : dirs) std::filesystem::remove_all(d, ec);
        }
    };
    static Registry made;
    auto p = std::filesystem::temp_directory_path() /
             ("sluice-test-" + name + "-" + std::to_string(::getpid()));
    std::filesystem::create_directories(p);
    if (std::find(made.dirs.begin(), made.dirs.end(), p) == made.dirs.end()) made.dirs.push_back(p);
    return p;
}

}  // namespace sluice::test
