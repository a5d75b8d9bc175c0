#include "formats/gguf.h"

#include <cstring>
#include <fstream>

#include "core/error.h"

namespace sluice {
namespace {

constexpr uint32_t kMaxDims = 4;
constexpr int kMaxNesting = 8;

class Reader {
  public:
    Reader(const uint8_t* d, size_t n, const std::string& path) : d_(d), n_(n), path_(path) {}

    template <typename T>
    T pod(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, d_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string str(const char* what) {
        const uint64_t len = pod<uint64_t>(what);
        need(len, what);
        std::string s((const char*)d_ + pos_, (size_t)len);
        pos_ += (size_t)len;
        return s;
    }
    void need(uint64_t bytes, const char* what) const {
        if (bytes > n_ - pos_)
            fail(path_ + ": truncated GGUF file (reading " + what + " at byte " +
                 std::to_string(pos_) + ", file has " + std::to_string(n_) + " bytes)");
    }
    size_t pos() const { return pos_; }
    size_t remaining() const { return n_ - pos_; }
    const std::string& path() const { return path_; }

  private:
    const uint8_t* d_;
    size_t n_;
    size_t pos_ = 0;
    const std::string& path_;
};

// Smallest encoded size of one element, to reject absurd array lengths before allocating.
uint64_t min_elem_size(GGUFType t) {
    switch (t) {
        case GGUFType::U8:
        case GGUFType::I8:
        case GGUFType::BOOL:
            return 1;
        case GGUFType::U16:
        case GGUFType::I16:
            return 2;
        case GGUFType::U32:
        case GGUFType::I32:
        case GGUFType::F32:
            return 4;
        case GGUFType::U64:
        case GGUFType::I64:
        case GGUFType::F64:
        case GGUFType::STRING:
            return 8;
        case GGUFType::ARRAY:
            return 12;
    }
    return 1;
}

GGUFValue read_value(Reader& r, GGUFType t, const std::string& key, int depth) {
    GGUFValue val;
    val.type = t;
    switch (t) {
        case GGUFType::U8:
            val.v = (uint64_t)r.pod<uint8_t>("u8");
            break;
        case GGUFType::I8:
            val.v = (int64_t)r.pod<int8_t>("i8");
            break;
        case GGUFType::U16:
            val.v = (uint64_t)r.pod<uint16_t>("u16");
            break;
        case GGUFType::I16:
            val.v = (int64_t)r.pod<int16_t>("i16");
            break;
        case GGUFType::U32:
            val.v = (uint64_t)r.pod<uint32_t>("u32");
            break;
        case GGUFType::I32:
            val.v = (int64_t)r.pod<int32_t>("i32");
            break;
        case GGUFType::U64:
            val.v = r.pod<uint64_t>("u64");
            break;
        case GGUFType::I64:
            val.v = r.pod<int64_t>("i64");
            break;
        case GGUFType::F32:
            val.v = (double)r.pod<float>("f32");
            break;
        case GGUFType::F64:
            val.v = r.pod<double>("f64");
            break;
        case GGUFType::BOOL: {
            const uint8_t b = r.pod<uint8_t>("bool");
            check(b <= 1,
                  r.path() + ": metadata '" + key + "': invalid bool value " + std::to_string(b));
            val.v = b != 0;
            break;
        }
        case GGUFType::STRING:
            val.v = r.str("string");
            break;
        case GGUFType::ARRAY: {
            check(depth < kMaxNesting,
                  r.path() + ": metadata '" + key + "': arrays nested too deeply");
            const uint32_t et = r.pod<uint32_t>("array type");
            check(et <= (uint32_t)GGUFType::F64, r.path() + ": metadata '" + key +
                                                     "': unknown array element type " +
                                                     std::to_string(et));
            val.elem_type = (GGUFType)et;
            const uint64_t n = r.pod<uint64_t>("array length");
            check(n <= r.remaining() / min_elem_size(val.elem_type),
                  r.path() + ": metadata '" + key + "': array length " + std::to_string(n) +
                      " exceeds the file size (truncated or corrupt GGUF)");
            std::vector<GGUFValue> arr;
            arr.reserve((size_t)n);
            for (uint64_t i = 0; i < n; ++i)
                arr.push_back(read_value(r, val.elem_type, key, depth + 1));
            val.v = std::move(arr);
            break;
        }
        default:
            fail(r.path() + ": metadata '" + key + "': unknown value type " +
                 std::to_string((uint32_t)t));
    }
    return val;
}

}  // namespace

GGUFFile parse_gguf(const uint8_t* data, size_t size, const std::string& path) {
    GGUFFile g;
    g.path = path;
    Reader r(data, size, g.path);
    r.need(4, "magic");
    if (std::memcmp(data, "GGUF", 4) != 0) fail(path + ": not a GGUF file (bad magic)");
    r.pod<uint32_t>("magic");
    g.version = r.pod<uint32_t>("version");
    check(g.version == 2 || g.version == 3,
          path + ": unsupported GGUF version " + std::to_string(g.version) + " (need 2 or 3)");
    const uint64_t n_tensors = r.pod<uint64_t>("tensor count");
    const uint64_t n_kv = r.pod<uint64_t>("metadata count");
    // Each KV needs >= 12 bytes and each tensor info >= 28: reject counts the file cannot hold.
    check(n_kv <= r.remaining() / 12,
          path + ": metadata count " + std::to_string(n_kv) + " exceeds the file size");
    check(n_tensors <= r.remaining() / 28,
          path + ": tensor count " + std::to_string(n_tensors) + " exceeds the file size");

    for (uint64_t i = 0; i < n_kv; ++i) {
        std::string key = r.str("metadata key");
        const uint32_t t = r.pod<uint32_t>("metadata type");
        check(t <= (uint32_t)GGUFType::F64,
              path + ": metadata '" + key + "': unknown value type " + std::to_string(t));
        GGUFValue v = read_value(r, (GGUFType)t, key, 0);
        check(g.meta.emplace(key, std::move(v)).second,
              path + ": duplicate metadata key '" + key + "'");
    }
    if (const GGUFValue* a = g.find("general.alignment")) {
        check(a->type == GGUFType::U32 || a->type == GGUFType::U64 || a->type == GGUFType::I32,
              path + ": general.alignment has the wrong type");
        const uint64_t al =
            a->type == GGUFType::I32 ? (uint64_t)std::get<int64_t>(a->v) : std::get<uint64_t>(a->v);
        check(al > 0 && al <= (1u << 20) && (al & (al - 1)) == 0,
              path + ": general.alignment " + std::to_string(al) + " is not a power of two");
        g.alignment = al;
    }

    struct Pending {
        TensorInfo info;
        uint64_t rel_offset;
    };
    std::vector<Pending> pending;
    pending.reserve((size_t)n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) {
        Pending p;
        p.info.name = r.str("tensor name");
        const std::string& nm = p.info.name;
        const uint32_t nd = r.pod<uint32_t>("tensor n_dims");
        check(nd >= 1 && nd <= kMaxDims,
              path + ": tensor '" + nm + "' has " + std::to_string(nd) + " dimensions");
        for (uint32_t d = 0; d < nd; ++d) {
            const uint64_t dim = r.pod<uint64_t>("tensor dims");
            check(dim > 0 && dim < (1ull << 40),
                  path + ": tensor '" + nm + "' has invalid dimension " + std::to_string(dim));
            p.info.ne.push_back((int64_t)dim);
        }
        const uint32_t type = r.pod<uint32_t>("tensor type");
        if (!gguf_tensor_type(type))
            fail(path + ": tensor '" + nm + "' has unknown or unsupported dtype id " +
                 std::to_string(type));
        p.info.dtype = (DType)type;
        p.rel_offset = r.pod<uint64_t>("tensor offset");
        check(
            p.rel_offset % g.alignment == 0,
            path + ": tensor '" + nm + "' offset is not aligned to " + std::to_string(g.alignment));
        p.info.nbytes = tensor_nbytes(p.info.dtype, p.info.ne, path + ": tensor '" + nm + "'");
        pending.push_back(std::move(p));
    }
    g.data_offset = (r.pos() + g.alignment - 1) / g.alignment * g.alignment;
    g.index.files.push_back(path);
    for (auto& p : pending) {
        const uint64_t avail = size > g.data_offset ? size - g.data_offset : 0;
        if (p.rel_offset > avail || p.info.nbytes > avail - p.rel_offset)
            fail(path + ": tensor '" + p.info.name + "' data [" + std::to_string(p.rel_offset) +
                 ", +" + std::to_string(p.info.nbytes) +
                 ") lies beyond the end of the file (truncated GGUF?)");
        p.info.offset = g.data_offset + p.rel_offset;
        p.info.file = 0;
        g.index.add(std::move(p.info));
    }
    return g;
}

GGUFFile read_gguf(const std::string& path) {
    MappedFile f(path);
    return parse_gguf(f.data(), f.size(), path);
}

bool looks_like_gguf(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    char m[4] = {};
    return f.read(m, 4) && std::memcmp(m, "GGUF", 4) == 0;
}

const GGUFValue* GGUFFile::find(const std::string& key) const {
    auto it = meta.find(key);
    return it == meta.end() ? nullptr : &it->second;
}

namespace {
[[noreturn]] void type_error(const std::string& path, const std::string& key, const char* want) {
    fail(path + ": metadata '" + key + "' is not " + want);
}
}  // namespace

std::optional<uint64_t> GGUFFile::get_uint(const std::string& key) const {
    const GGUFValue* v = find(key);
    if (!v) return std::nullopt;
    if (auto* u = std::get_if<uint64_t>(&v->v)) return *u;
    if (auto* i = std::get_if<int64_t>(&v->v); i && *i >= 0) return (uint64_t)*i;
    type_error(path, key, "an unsigned integer");
}

std::optional<int64_t> GGUFFile::get_int(const std::string& key) const {
    const GGUFValue* v = find(key);
    if (!v) return std::nullopt;
    if (auto* i = std::get_if<int64_t>(&v->v)) return *i;
    if (auto* u = std::get_if<uint64_t>(&v->v); u && *u < (1ull << 63)) return (int64_t)*u;
    type_error(path, key, "an integer");
}

std::optional<double> GGUFFile::get_float(const std::string& key) const {
    const GGUFValue* v = find(key);
    if (!v) return std::nullopt;
    if (auto* d = std::get_if<double>(&v->v)) return *d;
    if (auto* i = std::get_if<int64_t>(&v->v)) return (double)*i;
    if (auto* u = std::get_if<uint64_t>(&v->v)) return (double)*u;
    type_error(path, key, "a number");
}

std::optional<bool> GGUFFile::get_bool(const std::string& key) const {
    const GGUFValue* v = find(key);
    if (!v) return std::nullopt;
    if (auto* b = std::get_if<bool>(&v->v)) return *b;
    type_error(path, key, "a bool");
}

std::optional<std::string> GGUFFile::get_string(const std::string& key) const {
    const GGUFValue* v = find(key);
    if (!v) return std::nullopt;
    if (auto* s = std::get_if<std::string>(&v->v)) return *s;
    type_error(path, key, "a string");
}

std::vector<std::string> GGUFFile::get_string_array(const std::string& key) const {
    std::vector<std::string> out;
    const GGUFValue* v = find(key);
    if (!v) return out;
    if (!v->is_array() || v->elem_type != GGUFType::STRING)
        type_error(path, key, "an array of strings");
    out.reserve(v->array().size());
    for (const auto& e : v->array()) out.push_back(std::get<std::string>(e.v));
    return out;
}

std::vector<double> GGUFFile::get_float_array(const std::string& key) const {
    std::vector<double> out;
    const GGUFValue* v = find(key);
    if (!v) return out;
    if (!v->is_array()) type_error(path, key, "an array of numbers");
    for (const auto& e : v->array()) {
        if (auto* d = std::get_if<double>(&e.v))
            out.push_back(*d);
        else if (auto* i = std::get_if<int64_t>(&e.v))
            out.push_back((double)*i);
        else if (auto* u = std::get_if<uint64_t>(&e.v))
            out.push_back((double)*u);
        else
            type_error(path, key, "an array of numbers");
    }
    return out;
}

std::vector<int64_t> GGUFFile::get_int_array(const std::string& key) const {
    std::vector<int64_t> out;
    const GGUFValue* v = find(key);
    if (!v) return out;
    if (!v->is_array()) type_error(path, key, "an array of integers");
    for (const auto& e : v->array()) {
        if (auto* i = std::get_if<int64_t>(&e.v))
            out.push_back(*i);
        else if (auto* u = std::get_if<uint64_t>(&e.v))
            out.push_back((int64_t)*u);
        else if (auto* b = std::get_if<bool>(&e.v))
            out.push_back(*b);
        else
            type_error(path, key, "an array of integers");
    }
    return out;
}

}  // namespace sluice
