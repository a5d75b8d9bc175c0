#include "formats/safetensors.h"

#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "formats/json_file.h"

namespace sluice {
namespace {

using json = nlohmann::json;

DType parse_dtype(const std::string& s, const std::string& where) {
    if (s == "F32") return DType::F32;
    if (s == "F16") return DType::F16;
    if (s == "BF16") return DType::BF16;
    if (s == "F8_E4M3") return DType::F8_E4M3;
    if (s == "I32") return DType::I32;
    fail(where + ": unsupported dtype '" + s + "' (supported: F32, F16, BF16, F8_E4M3, I32)");
}

}  // namespace

TensorIndex parse_safetensors(const uint8_t* data, size_t size, const std::string& path) {
    check(size >= 8, path + ": not a safetensors file (shorter than its 8-byte header length)");
    uint64_t hlen;
    std::memcpy(&hlen, data, 8);
    check(hlen <= size - 8, path + ": safetensors header length " + std::to_string(hlen) +
                                " exceeds the file size (truncated or not safetensors)");
    const uint64_t data_start = 8 + hlen;
    json h;
    try {
        h = json::parse(data + 8, data + data_start);
    } catch (const json::exception& e) {
        fail(path + ": invalid safetensors JSON header: " + e.what());
    }
    check(h.is_object(), path + ": safetensors header is not a JSON object");
    TensorIndex idx;
    idx.files.push_back(path);
    for (auto& [name, t] : h.items()) {
        if (name == "__metadata__") continue;
        const std::string where = path + ": tensor '" + name + "'";
        check(t.is_object() && t.contains("dtype") && t.contains("shape") &&
                  t.contains("data_offsets"),
              where + ": needs dtype, shape and data_offsets");
        check(t["dtype"].is_string() && t["shape"].is_array() && t["data_offsets"].is_array() &&
                  t["data_offsets"].size() == 2,
              where + ": malformed entry");
        TensorInfo ti;
        ti.name = name;
        ti.dtype = parse_dtype(t["dtype"].get<std::string>(), where);
        const auto& shape = t["shape"];
        check(shape.size() <= 4, where + ": more than 4 dimensions");
        // safetensors shapes are row-major (outermost first); the index stores ne[0] innermost.
        for (auto it = shape.rbegin(); it != shape.rend(); ++it) {
            check(it->is_number_unsigned(),
                  where + ": shape entries must be non-negative integers");
            ti.ne.push_back(it->get<int64_t>());
        }
        if (ti.ne.empty()) ti.ne.push_back(1);  // scalar
        const auto& off = t["data_offsets"];
        check(off[0].is_number_unsigned() && off[1].is_number_unsigned(),
              where + ": bad data_offsets");
        const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
        check(b <= e && e <= size - data_start,
              where + ": data_offsets lie beyond the end of the file (truncated?)");
        ti.nbytes = tensor_nbytes(ti.dtype, ti.ne, where);
        check(ti.nbytes == e - b, where + ": byte size " + std::to_string(e - b) +
                                      " does not match its shape and dtype (" +
                                      std::to_string(ti.nbytes) + ")");
        ti.offset = data_start + b;
        ti.file = 0;
        idx.add(std::move(ti));
    }
    return idx;
}

TensorIndex read_safetensors(const std::string& path) {
    MappedFile f(path);
    return parse_safetensors(f.data(), f.size(), path);
}

TensorIndex read_safetensors_dir(const std::string& dir) {
    namespace fs = std::filesystem;
    const fs::path d(dir);
    const fs::path index_path = d / "model.safetensors.index.json";
    if (!fs::exists(index_path)) {
        const fs::path single = d / "model.safetensors";
        check(fs::exists(single), dir + ": no model.safetensors or model.safetensors.index.json");
        return read_safetensors(single.string());
    }
    const json j = read_json_file(index_path.string());
    check(j.contains("weight_map") && j["weight_map"].is_object(),
          index_path.string() + ": no weight_map object");
    std::set<std::string> shards;
    std::map<std::string, std::string> expect;
    for (auto& [name, file] : j["weight_map"].items()) {
        check(file.is_string(),
              index_path.string() + ": weight_map['" + name + "'] is not a string");
        const std::string f = file.get<std::string>();
        check(f.find('/') == std::string::npos && f.find("..") == std::string::npos,
              index_path.string() + ": shard name '" + f + "' must be a plain file name");
        shards.insert(f);
        expect[name] = f;
    }
    TensorIndex all;
    for (const auto& s : shards) all.merge(read_safetensors((d / s).string()));
    for (const auto& [name, file] : expect) {
        const TensorInfo* t = all.find(name);
        check(t != nullptr,
              index_path.string() + ": tensor '" + name + "' is not in shard " + file);
    }
    return all;
}

}  // namespace sluice
