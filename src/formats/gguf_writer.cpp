#include "formats/gguf_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "core/error.h"

namespace sluice {
namespace {

class Out {
  public:
    explicit Out(const std::string& path) : path_(path), f_(std::fopen(path.c_str(), "wb")) {
        if (!f_) fail(path + ": cannot create: " + std::strerror(errno));
    }
    ~Out() {
        if (f_) std::fclose(f_);
    }
    void bytes(const void* p, size_t n) {
        if (n && std::fwrite(p, 1, n, f_) != n)
            fail(path_ + ": write failed: " + std::strerror(errno));
        pos_ += n;
    }
    template <typename T>
    void pod(T v) {
        bytes(&v, sizeof v);
    }
    void str(const std::string& s) {
        pod<uint64_t>(s.size());
        bytes(s.data(), s.size());
    }
    void pad_to(uint64_t align) {
        static const char zeros[4096] = {};
        while (pos_ % align) bytes(zeros, std::min<uint64_t>(align - pos_ % align, sizeof zeros));
    }
    void close() {
        if (std::fclose(f_) != 0) {
            f_ = nullptr;
            fail(path_ + ": close failed: " + std::strerror(errno));
        }
        f_ = nullptr;
    }

  private:
    std::string path_;
    std::FILE* f_;
    uint64_t pos_ = 0;
};

void write_value(Out& o, const GGUFValue& v, bool with_type) {
    if (with_type) o.pod<uint32_t>((uint32_t)v.type);
    switch (v.type) {
        case GGUFType::U8:
            o.pod<uint8_t>((uint8_t)std::get<uint64_t>(v.v));
            break;
        case GGUFType::I8:
            o.pod<int8_t>((int8_t)std::get<int64_t>(v.v));
            break;
        case GGUFType::U16:
            o.pod<uint16_t>((uint16_t)std::get<uint64_t>(v.v));
            break;
        case GGUFType::I16:
            o.pod<int16_t>((int16_t)std::get<int64_t>(v.v));
            break;
        case GGUFType::U32:
            o.pod<uint32_t>((uint32_t)std::get<uint64_t>(v.v));
            break;
        case GGUFType::I32:
            o.pod<int32_t>((int32_t)std::get<int64_t>(v.v));
            break;
        case GGUFType::U64:
            o.pod<uint64_t>(std::get<uint64_t>(v.v));
            break;
        case GGUFType::I64:
            o.pod<int64_t>(std::get<int64_t>(v.v));
            break;
        case GGUFType::F32:
            o.pod<float>((float)std::get<double>(v.v));
            break;
        case GGUFType::F64:
            o.pod<double>(std::get<double>(v.v));
            break;
        case GGUFType::BOOL:
            o.pod<uint8_t>(std::get<bool>(v.v) ? 1 : 0);
            break;
        case GGUFType::STRING:
            o.str(std::get<std::string>(v.v));
            break;
        case GGUFType::ARRAY: {
            o.pod<uint32_t>((uint32_t)v.elem_type);
            o.pod<uint64_t>(v.array().size());
            for (const auto& e : v.array()) write_value(o, e, false);
            break;
        }
    }
}

GGUFValue scalar(GGUFType t, decltype(GGUFValue::v) x) {
    GGUFValue v;
    v.type = t;
    v.v = std::move(x);
    return v;
}

template <typename T, typename F>
GGUFValue array_of(GGUFType et, const std::vector<T>& xs, F make) {
    GGUFValue v;
    v.type = GGUFType::ARRAY;
    v.elem_type = et;
    std::vector<GGUFValue> arr;
    arr.reserve(xs.size());
    for (const auto& x : xs) arr.push_back(make(x));
    v.v = std::move(arr);
    return v;
}

}  // namespace

void GGUFWriter::set(const std::string& key, GGUFValue v) {
    for (auto& kv : meta_)
        if (kv.first == key) {
            kv.second = std::move(v);
            return;
        }
    meta_.emplace_back(key, std::move(v));
}

void GGUFWriter::set_u32(const std::string& k, uint32_t v) {
    set(k, scalar(GGUFType::U32, (uint64_t)v));
}
void GGUFWriter::set_i32(const std::string& k, int32_t v) {
    set(k, scalar(GGUFType::I32, (int64_t)v));
}
void GGUFWriter::set_f32(const std::string& k, float v) {
    set(k, scalar(GGUFType::F32, (double)v));
}
void GGUFWriter::set_bool(const std::string& k, bool v) {
    set(k, scalar(GGUFType::BOOL, v));
}
void GGUFWriter::set_str(const std::string& k, const std::string& v) {
    set(k, scalar(GGUFType::STRING, v));
}
void GGUFWriter::set_str_array(const std::string& k, const std::vector<std::string>& v) {
    set(k, array_of(GGUFType::STRING, v,
                    [](const std::string& s) { return scalar(GGUFType::STRING, s); }));
}
void GGUFWriter::set_i32_array(const std::string& k, const std::vector<int32_t>& v) {
    set(k, array_of(GGUFType::I32, v, [](int32_t x) { return scalar(GGUFType::I32, (int64_t)x); }));
}
void GGUFWriter::set_f32_array(const std::string& k, const std::vector<float>& v) {
    set(k, array_of(GGUFType::F32, v, [](float x) { return scalar(GGUFType::F32, (double)x); }));
}

void GGUFWriter::copy_meta(const GGUFFile& g, const std::string& prefix) {
    for (const auto& [k, v] : g.meta)
        if (k.compare(0, prefix.size(), prefix) == 0 && k != "general.alignment") set(k, v);
}

void GGUFWriter::add_tensor(const std::string& name, DType t, std::vector<int64_t> ne, Fill fill) {
    const uint64_t nb = tensor_nbytes(t, ne, "gguf writer: tensor '" + name + "'");
    tensors_.push_back({name, t, std::move(ne), nb, std::move(fill)});
}

void GGUFWriter::add_tensor(const std::string& name, DType t, std::vector<int64_t> ne,
                            const void* data) {
    add_tensor(name, t, std::move(ne),
               [data](uint8_t* dst, size_t n) { std::memcpy(dst, data, n); });
}

uint64_t GGUFWriter::total_tensor_bytes() const {
    uint64_t s = 0;
    for (const auto& t : tensors_) s += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
    return s;
}

void GGUFWriter::write(const std::string& path) const {
    Out o(path);
    o.bytes("GGUF", 4);
    o.pod<uint32_t>(3);
    o.pod<uint64_t>(tensors_.size());
    o.pod<uint64_t>(meta_.size() + (alignment_ != 32 ? 1 : 0));
    for (const auto& [k, v] : meta_) {
        o.str(k);
        write_value(o, v, true);
    }
    if (alignment_ != 32) {
        o.str("general.alignment");
        write_value(o, scalar(GGUFType::U32, alignment_), true);
    }
    uint64_t off = 0;
    for (const auto& t : tensors_) {
        o.str(t.name);
        o.pod<uint32_t>((uint32_t)t.ne.size());
        for (int64_t d : t.ne) o.pod<uint64_t>((uint64_t)d);
        o.pod<uint32_t>((uint32_t)t.type);
        o.pod<uint64_t>(off);
        off += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
    }
    o.pad_to(alignment_);
    std::vector<uint8_t> buf;
    for (const auto& t : tensors_) {
        buf.assign((size_t)t.nbytes, 0);
        t.fill(buf.data(), buf.size());
        o.bytes(buf.data(), buf.size());
        o.pad_to(alignment_);
    }
    o.close();
}

}  // namespace sluice
