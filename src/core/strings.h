#pragma once
// Small parsing helpers shared by the CLI and config readers.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

// "6GiB", "512MiB", "1.5G", "1000000" -> bytes. Throws Error on bad input.
uint64_t parse_size(std::string_view s);
std::string format_bytes(uint64_t bytes);
std::vector<std::string> split(std::string_view s, char sep);
// True if s is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF).
bool is_valid_utf8(std::string_view s);
// Length of the UTF-8 sequence starting with lead byte c (1 for invalid leads).
inline int utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c >> 5) == 0x6) return 2;
    if ((c >> 4) == 0xe) return 3;
    if ((c >> 3) == 0x1e) return 4;
    return 1;
}

}  // namespace sluice
