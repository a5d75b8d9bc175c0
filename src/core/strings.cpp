#include "core/strings.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <string>

#include "core/error.h"

namespace sluice {

uint64_t parse_size(std::string_view s) {
    const std::string str(s);
    size_t pos = 0;
    double v = 0;
    try {
        v = std::stod(str, &pos);
    } catch (...) {
        fail("invalid size '" + str + "' (expected e.g. 6GiB, 512MiB, 1000000)");
    }
    std::string unit = str.substr(pos);
    for (auto& c : unit) c = (char)std::tolower((unsigned char)c);
    double mul = 1;
    if (unit.empty() || unit == "b")
        mul = 1;
    else if (unit == "k" || unit == "kib" || unit == "kb")
        mul = 1024.0;
    else if (unit == "m" || unit == "mib" || unit == "mb")
        mul = 1024.0 * 1024;
    else if (unit == "g" || unit == "gib" || unit == "gb")
        mul = 1024.0 * 1024 * 1024;
    else if (unit == "t" || unit == "tib" || unit == "tb")
        mul = 1024.0 * 1024 * 1024 * 1024;
    else
        fail("invalid size unit in '" + str + "' (use B, KiB, MiB, GiB, TiB)");
    check(v >= 0 && std::isfinite(v), "invalid size '" + str + "'");
    return (uint64_t)(v * mul);
}

std::string format_bytes(uint64_t b) {
    char buf[64];
    const double d = (double)b;
    if (b >= (1ull << 30))
        std::snprintf(buf, sizeof buf, "%.2f GiB", d / (1ull << 30));
    else if (b >= (1ull << 20))
        std::snprintf(buf, sizeof buf, "%.2f MiB", d / (1ull << 20));
    else if (b >= 1024)
        std::snprintf(buf, sizeof buf, "%.1f KiB", d / 1024);
    else
        std::snprintf(buf, sizeof buf, "%llu B", (unsigned long long)b);
    return buf;
}

std::vector<std::string> split(std::string_view s, char sep) {
    std::vector<std::string> out;
    size_t start = 0;
    while (true) {
        const size_t p = s.find(sep, start);
        out.emplace_back(s.substr(start, p == std::string_view::npos ? s.npos : p - start));
        if (p == std::string_view::npos) break;
        start = p + 1;
    }
    return out;
}

bool is_valid_utf8(std::string_view s) {
    size_t i = 0;
    const size_t n = s.size();
    while (i < n) {
        const unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        int len;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0)
            len = 2, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0)
            len = 3, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0)
            len = 4, cp = c & 0x07;
        else
            return false;
        if (i + (size_t)len > n) return false;
        for (int k = 1; k < len; ++k) {
            const unsigned char cc = (unsigned char)s[i + k];
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += (size_t)len;
    }
    return true;
}

}  // namespace sluice
