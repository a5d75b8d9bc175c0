#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pretokenize.h"

#include <pcre2.h>
#include <utf8proc.h>

#include <cstdlib>

#include "core/error.h"

namespace sluice {

struct RegexSplitter::Impl {
    std::vector<pcre2_code*> codes;
    ~Impl() {
        for (auto* c : codes) pcre2_code_free(c);
    }
};

RegexSplitter::RegexSplitter(const std::vector<std::string>& patterns)
    : impl_(std::make_unique<Impl>()) {
    for (const auto& p : patterns) {
        int err = 0;
        PCRE2_SIZE off = 0;
        pcre2_code* c =
            pcre2_compile((PCRE2_SPTR)p.data(), p.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &off, nullptr);
        if (!c) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            fail("pre-tokenizer regex '" + p + "': " + (const char*)msg + " at offset " +
                 std::to_string(off));
        }
        pcre2_jit_compile(
            c, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
        impl_->codes.push_back(c);
    }
}

RegexSplitter::~RegexSplitter() = default;
RegexSplitter::RegexSplitter(RegexSplitter&&) noexcept = default;
RegexSplitter& RegexSplitter::operator=(RegexSplitter&&) noexcept = default;

void RegexSplitter::split(std::string_view text, std::vector<std::string_view>& out) const {
    std::vector<std::string_view> cur{text}, next;
    pcre2_match_data* md = nullptr;
    for (pcre2_code* code : impl_->codes) {
        if (!md) md = pcre2_match_data_create(4, nullptr);
        next.clear();
        for (std::string_view piece : cur) {
            size_t start = 0, last = 0;
            while (start <= piece.size()) {
                // The caller validated UTF-8 once; re-checking on every call would be quadratic.
                const int rc = pcre2_match(code, (PCRE2_SPTR)piece.data(), piece.size(), start,
                                           PCRE2_NO_UTF_CHECK, md, nullptr);
                if (rc < 0) break;
                const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
                const size_t b = ov[0], e = ov[1];
                if (e == b) {  // empty match: step one UTF-8 char forward
                    if (b >= piece.size()) break;
                    size_t s = b + 1;
                    while (s < piece.size() && ((unsigned char)piece[s] & 0xc0) == 0x80) ++s;
                    start = s;
                    continue;
                }
                if (b > last) next.push_back(piece.substr(last, b - last));
                next.push_back(piece.substr(b, e - b));
                last = start = e;
            }
            if (last < piece.size()) next.push_back(piece.substr(last));
        }
        cur.swap(next);
    }
    if (md) pcre2_match_data_free(md);
    out.insert(out.end(), cur.begin(), cur.end());
}

std::string nfc_normalize(std::string_view s) {
    bool ascii = true;
    for (unsigned char c : s) ascii &= c < 0x80;
    if (ascii) return std::string(s);
    utf8proc_uint8_t* res = nullptr;
    const utf8proc_ssize_t n =
        utf8proc_map((const utf8proc_uint8_t*)s.data(), (utf8proc_ssize_t)s.size(), &res,
                     (utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (n < 0) return std::string(s);  // invalid UTF-8 is rejected earlier; keep bytes as they are
    std::string out((const char*)res, (size_t)n);
    std::free(res);
    return out;
}

}  // namespace sluice
