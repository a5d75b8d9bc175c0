#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <queue>

#include "core/error.h"
#include "core/strings.h"

namespace sluice {
namespace {

std::string cp_to_utf8(uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
        s += (char)cp;
    } else if (cp < 0x800) {
        s += (char)(0xc0 | (cp >> 6));
        s += (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        s += (char)(0xe0 | (cp >> 12));
        s += (char)(0x80 | ((cp >> 6) & 0x3f));
        s += (char)(0x80 | (cp & 0x3f));
    } else {
        s += (char)(0xf0 | (cp >> 18));
        s += (char)(0x80 | ((cp >> 12) & 0x3f));
        s += (char)(0x80 | ((cp >> 6) & 0x3f));
        s += (char)(0x80 | (cp & 0x3f));
    }
    return s;
}

const std::string kSpmSpace = "\xe2\x96\x81";  // U+2581 '▁'

}  // namespace

Tokenizer::Tokenizer(Vocab vocab) : v_(std::move(vocab)) {
    // GPT-2 byte <-> printable unicode map.
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
        const bool printable =
            (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        byte_to_unicode_[b] = cp_to_utf8(printable ? (uint32_t)b : (uint32_t)(256 + extra++));
        unicode_to_byte_[byte_to_unicode_[b]] = (uint8_t)b;
    }
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        auto it = v_.to_id.find(name);
        byte_token_[b] = it == v_.to_id.end() ? -1 : it->second;
    }
    if (v_.kind == VocabKind::BPE) splitter_ = std::make_unique<RegexSplitter>(v_.pre_regexes);
    for (int32_t i = 0; i < v_.size(); ++i)
        if (v_.is_special(i) && !v_.tokens[(size_t)i].empty()) specials_.push_back(i);
    std::stable_sort(specials_.begin(), specials_.end(), [&](int32_t a, int32_t b) {
        return v_.tokens[(size_t)a].size() > v_.tokens[(size_t)b].size();
    });
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
    check(is_valid_utf8(text), "input text is not valid UTF-8");
    std::vector<int32_t> out;
    if (add_special && v_.add_bos && v_.bos >= 0) out.push_back(v_.bos);
    // Split on special tokens first; the raw text between them is tokenized normally.
    size_t pos = 0;
    bool prev_special = true;
    auto emit_raw = [&](std::string_view raw) {
        if (raw.empty()) return;
        if (v_.kind == VocabKind::SPM) {
            std::string t;
            if (v_.add_space_prefix && prev_special) t = " ";
            t += raw;
            encode_spm(t, out);
        } else {
            encode_bpe(raw, out);
        }
        prev_special = false;
    };
    while (pos < text.size()) {
        size_t best_at = text.size();
        int32_t best_id = -1;
        if (parse_special) {
            for (int32_t id : specials_) {
                const size_t at = text.find(v_.tokens[(size_t)id], pos);
                if (at < best_at)
                    best_at = at,
                    best_id = id;  // specials_ is longest-first: ties keep the longest
            }
        }
        emit_raw(text.substr(pos, best_at - pos));
        if (best_id < 0) break;
        out.push_back(best_id);
        prev_special = true;
        pos = best_at + v_.tokens[(size_t)best_id].size();
    }
    if (add_special && v_.add_eos && v_.eos >= 0) out.push_back(v_.eos);
    return out;
}

void Tokenizer::encode_bpe(std::string_view text, std::vector<int32_t>& out) const {
    std::string norm;
    if (v_.nfc) {
        norm = nfc_normalize(text);
        text = norm;
    }
    std::vector<std::string_view> words;
    splitter_->split(text, words);
    for (std::string_view w : words) encode_bpe_word(w, out);
}

void Tokenizer::encode_bpe_word(std::string_view word, std::vector<int32_t>& out) const {
    if (word.empty()) return;
    std::string key(word);
    if (auto it = cache_.find(key); it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
    }
    std::vector<std::string> sym;
    std::string mapped;
    for (unsigned char c : word) {
        sym.push_back(byte_to_unicode_[c]);
        mapped += byte_to_unicode_[c];
    }
    std::vector<int32_t> ids;
    auto whole = v_.to_id.find(mapped);
    if (v_.ignore_merges && whole != v_.to_id.end()) {
        ids.push_back(whole->second);
    } else {
        // Merge the lowest-ranked adjacent pair (leftmost on ties) until none applies.
        for (;;) {
            int best = -1, best_rank = INT32_MAX;
            for (size_t i = 0; i + 1 < sym.size(); ++i) {
                auto it = v_.merge_rank.find(sym[i] + " " + sym[i + 1]);
                if (it != v_.merge_rank.end() && it->second < best_rank)
                    best_rank = it->second, best = (int)i;
            }
            if (best < 0) break;
            sym[(size_t)best] += sym[(size_t)best + 1];
            sym.erase(sym.begin() + best + 1);
        }
        for (const auto& s : sym) {
            auto it = v_.to_id.find(s);
            if (it != v_.to_id.end()) {
                ids.push_back(it->second);
            } else {  // not in the vocab: fall back to the single-byte tokens
                for (size_t k = 0; k < s.size();) {
                    const int len = utf8_len((unsigned char)s[k]);
                    auto b = v_.to_id.find(s.substr(k, (size_t)len));
                    if (b != v_.to_id.end())
                        ids.push_back(b->second);
                    else if (v_.unk >= 0)
                        ids.push_back(v_.unk);
                    k += (size_t)len;
                }
            }
        }
    }
    if (cache_.size() < 200000) cache_.emplace(std::move(key), ids);
    out.insert(out.end(), ids.begin(), ids.end());
}

void Tokenizer::encode_spm(std::string_view raw, std::vector<int32_t>& out) const {
    std::string text;
    for (char c : raw) {
        if (c == ' ')
            text += kSpmSpace;
        else
            text += c;
    }
    struct Sym {
        int prev, next;
        size_t off, n;
    };
    std::vector<Sym> sym;
    for (size_t off = 0; off < text.size();) {
        const size_t n =
            std::min<size_t>((size_t)utf8_len((unsigned char)text[off]), text.size() - off);
        const int idx = (int)sym.size();
        sym.push_back({idx - 1, off + n == text.size() ? -1 : idx + 1, off, n});
        off += n;
    }
    struct Bigram {
        int left, right;
        float score;
        size_t size;
        bool operator<(const Bigram& o) const {
            return score < o.score || (score == o.score && left > o.left);
        }
    };
    std::priority_queue<Bigram> queue;
    std::unordered_map<std::string, std::pair<int, int>> rev_merge;
    auto try_add = [&](int l, int r) {
        if (l < 0 || r < 0) return;
        std::string s = text.substr(sym[(size_t)l].off, sym[(size_t)l].n + sym[(size_t)r].n);
        auto it = v_.to_id.find(s);
        if (it == v_.to_id.end()) return;
        queue.push({l, r, v_.scores[(size_t)it->second], s.size()});
        rev_merge[s] = {l, r};
    };
    for (int i = 1; i < (int)sym.size(); ++i) try_add(i - 1, i);
    while (!queue.empty()) {
        const Bigram b = queue.top();
        queue.pop();
        Sym& l = sym[(size_t)b.left];
        Sym& r = sym[(size_t)b.right];
        if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) sym[(size_t)r.next].prev = b.left;
        try_add(l.prev, b.left);
        try_add(b.left, l.next);
    }
    // Symbols that are not tokens are split back along their merges, then into bytes.
    std::function<void(int)> resegment = [&](int i) {
        const std::string s = text.substr(sym[(size_t)i].off, sym[(size_t)i].n);
        if (auto it = v_.to_id.find(s); it != v_.to_id.end()) {
            out.push_back(it->second);
            return;
        }
        auto p = rev_merge.find(s);
        if (p == rev_merge.end()) {
            for (unsigned char c : s)
                out.push_back(byte_token_[c] >= 0 ? byte_token_[c] : std::max(v_.unk, 0));
            return;
        }
        resegment(p->second.first);
        resegment(p->second.second);
    };
    for (int i = sym.empty() ? -1 : 0; i != -1; i = sym[(size_t)i].next) resegment(i);
}

std::string Tokenizer::token_bytes(int32_t id, bool special) const {
    if (id < 0 || id >= v_.size()) return {};
    const std::string& t = v_.tokens[(size_t)id];
    const TokenType ty = v_.types[(size_t)id];
    if (ty == TokenType::Control) return special ? t : std::string();
    if (ty == TokenType::UserDefined) return t;
    if (v_.kind == VocabKind::SPM) {
        if (ty == TokenType::Byte && t.size() == 6)
            return std::string(1, (char)std::stoi(t.substr(3, 2), nullptr, 16));
        std::string s;
        for (size_t i = 0; i < t.size();) {
            if (t.compare(i, 3, kSpmSpace) == 0) {
                s += ' ';
                i += 3;
            } else {
                s += t[i++];
            }
        }
        return s;
    }
    std::string s;
    for (size_t i = 0; i < t.size();) {
        const size_t len = (size_t)utf8_len((unsigned char)t[i]);
        auto it = unicode_to_byte_.find(t.substr(i, len));
        if (it != unicode_to_byte_.end())
            s += (char)it->second;
        else
            s += t.substr(i, len);
        i += len;
    }
    return s;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool special) const {
    std::string s;
    for (int32_t id : ids) s += token_bytes(id, special);
    return s;
}

std::string StreamDecoder::push(int32_t id) {
    pending_ += tok_.token_bytes(id);
    // Emit the longest prefix that ends on a complete UTF-8 sequence.
    size_t cut = pending_.size();
    for (size_t back = 1; back <= 4 && back <= pending_.size(); ++back) {
        const unsigned char c = (unsigned char)pending_[pending_.size() - back];
        if ((c & 0xc0) == 0x80) continue;  // continuation byte: keep looking for the lead
        if (utf8_len(c) > (int)back && (c & 0xc0) == 0xc0) cut = pending_.size() - back;
        break;
    }
    std::string out = pending_.substr(0, cut);
    pending_.erase(0, cut);
    if (!is_valid_utf8(out)) {  // stray bytes from a broken model output: make it printable
        std::string fixed;
        for (size_t i = 0; i < out.size();) {
            const size_t len = (size_t)utf8_len((unsigned char)out[i]);
            if (i + len <= out.size() && is_valid_utf8(std::string_view(out).substr(i, len))) {
                fixed += out.substr(i, len);
                i += len;
            } else {
                fixed += "\xef\xbf\xbd";
                ++i;
            }
        }
        out = std::move(fixed);
    }
    return out;
}

std::string StreamDecoder::flush() {
    std::string out;
    for (size_t i = 0; i < pending_.size(); ++i) out += "\xef\xbf\xbd";
    pending_.clear();
    return out;
}

}  // namespace sluice
