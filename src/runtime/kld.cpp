#include "runtime/kld.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <numeric>

#include "core/error.h"

namespace sluice {
namespace {

// log-softmax of logits into out; returns nothing. out: [n]
void log_softmax(const float* l, int n, std::vector<float>& out) {
    out.resize((size_t)n);
    const float mx = *std::max_element(l, l + n);
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += std::exp((double)(l[i] - mx));
    const float lse = mx + (float)std::log(sum);
    for (int i = 0; i < n; ++i) out[(size_t)i] = l[i] - lse;
}

// Mass outside the given ids, as one bucket.
double rest_mass(const float* logp_at_ids, int k) {
    double s = 0;
    for (int j = 0; j < k; ++j) s += std::exp((double)logp_at_ids[j]);
    return std::max(0.0, 1.0 - s);
}

constexpr char kMagic[8] = {'S', 'L', 'G', 'T', 'v', '1', 0, 0};

}  // namespace

uint64_t hash_tokens(const std::vector<int32_t>& t) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (int32_t x : t) {
        h ^= (uint32_t)x;
        h *= 1099511628211ull;
    }
    return h;
}

BaseLogits collect_base(Model& m, const Tokenizer& tok, ThreadPool& pool,
                        const std::vector<int32_t>& tokens, const PerplexityParams& p, int k) {
    BaseLogits b;
    b.n_vocab = m.config().n_vocab;
    b.k = std::min(k, b.n_vocab);
    b.tokens_hash = hash_tokens(tokens);
    std::vector<float> lp;
    std::vector<int32_t> idx((size_t)b.n_vocab);
    const PerplexityResult r =
        perplexity(m, tok, pool, tokens, p, {}, [&](const float* l, int32_t target) {
            log_softmax(l, b.n_vocab, lp);
            std::iota(idx.begin(), idx.end(), 0);
            std::partial_sort(idx.begin(), idx.begin() + b.k, idx.end(), [&](int32_t a, int32_t c) {
                return lp[(size_t)a] > lp[(size_t)c] || (lp[(size_t)a] == lp[(size_t)c] && a < c);
            });
            for (int j = 0; j < b.k; ++j) {
                b.ids.push_back(idx[(size_t)j]);
                b.logp.push_back(lp[(size_t)idx[(size_t)j]]);
            }
            b.target_logp.push_back(lp[(size_t)target]);
        });
    b.n_ctx = p.n_ctx;
    b.n_chunks = r.n_chunks;
    b.ppl = r.ppl;
    return b;
}

KldResult compare_to_base(const BaseLogits& base, Model& m, const Tokenizer& tok, ThreadPool& pool,
                          const std::vector<int32_t>& tokens, const PerplexityParams& p) {
    check(m.config().n_vocab == base.n_vocab, "eval kld: the models' vocabularies differ (" +
                                                  std::to_string(m.config().n_vocab) + " vs " +
                                                  std::to_string(base.n_vocab) + ")");
    check(hash_tokens(tokens) == base.tokens_hash && p.n_ctx == base.n_ctx,
          "eval kld: the base logits were made from a different text, tokenizer or --ctx");
    const int k = base.k;
    std::vector<float> lp, q((size_t)k);
    std::vector<double> klds;
    double agree = 0, dp2 = 0;
    size_t i = 0;
    const PerplexityResult r =
        perplexity(m, tok, pool, tokens, p, {}, [&](const float* l, int32_t target) {
            check(i < base.n_pos(),
                  "eval kld: more positions than the base has (different --chunks?)");
            log_softmax(l, base.n_vocab, lp);
            const int32_t* ids = base.ids.data() + i * (size_t)k;
            const float* pl = base.logp.data() + i * (size_t)k;
            for (int j = 0; j < k; ++j) q[(size_t)j] = lp[(size_t)ids[j]];
            double kl = 0;
            for (int j = 0; j < k; ++j)
                kl += std::exp((double)pl[j]) * ((double)pl[j] - (double)q[(size_t)j]);
            const double pr = rest_mass(pl, k), qr = rest_mass(q.data(), k);
            if (pr > 0) kl += pr * (std::log(pr) - std::log(std::max(qr, 1e-30)));
            klds.push_back(std::max(0.0, kl));
            agree += (int32_t)(std::max_element(lp.begin(), lp.end()) - lp.begin()) == ids[0];
            const double d =
                std::exp((double)lp[(size_t)target]) - std::exp((double)base.target_logp[i]);
            dp2 += d * d;
            ++i;
        });
    check(i == base.n_pos(), "eval kld: fewer positions than the base has (different --chunks?)");
    KldResult res;
    res.n = (int64_t)klds.size();
    res.kld_mean = std::accumulate(klds.begin(), klds.end(), 0.0) / (double)res.n;
    std::sort(klds.begin(), klds.end());
    res.kld_median = klds[klds.size() / 2];
    res.kld_p99 = klds[std::min(klds.size() - 1, (size_t)(0.99 * (double)klds.size()))];
    res.top1_agreement = agree / (double)res.n;
    res.rms_dp = std::sqrt(dp2 / (double)res.n);
    res.ppl = r.ppl;
    res.ppl_base = base.ppl;
    return res;
}

void BaseLogits::save(const std::string& path) const {
    std::ofstream f(path, std::ios::binary);
    check((bool)f, path + ": cannot create");
    const int32_t hdr[5] = {k, n_vocab, n_ctx, n_chunks, (int32_t)n_pos()};
    f.write(kMagic, 8);
    f.write((const char*)hdr, sizeof hdr);
    f.write((const char*)&tokens_hash, 8);
    f.write((const char*)&ppl, 8);
    f.write((const char*)ids.data(), (std::streamsize)(ids.size() * 4));
    f.write((const char*)logp.data(), (std::streamsize)(logp.size() * 4));
    f.write((const char*)target_logp.data(), (std::streamsize)(target_logp.size() * 4));
    check((bool)f, path + ": write failed");
}

BaseLogits BaseLogits::load(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    check((bool)f, path + ": cannot open");
    char magic[8];
    int32_t hdr[5];
    BaseLogits b;
    f.read(magic, 8);
    check(f && std::memcmp(magic, kMagic, 8) == 0, path + ": not a sluice logits file");
    f.read((char*)hdr, sizeof hdr);
    f.read((char*)&b.tokens_hash, 8);
    f.read((char*)&b.ppl, 8);
    check((bool)f && hdr[0] > 0 && hdr[0] <= hdr[1] && hdr[4] >= 0 && hdr[4] < (1 << 28),
          path + ": corrupt header");
    b.k = hdr[0], b.n_vocab = hdr[1], b.n_ctx = hdr[2], b.n_chunks = hdr[3];
    const size_t n = (size_t)hdr[4];
    b.ids.resize(n * (size_t)b.k);
    b.logp.resize(n * (size_t)b.k);
    b.target_logp.resize(n);
    f.read((char*)b.ids.data(), (std::streamsize)(b.ids.size() * 4));
    f.read((char*)b.logp.data(), (std::streamsize)(b.logp.size() * 4));
    f.read((char*)b.target_logp.data(), (std::streamsize)(n * 4));
    check((bool)f, path + ": truncated");
    for (int32_t id : b.ids) check(id >= 0 && id < b.n_vocab, path + ": token id out of range");
    return b;
}

}  // namespace sluice
