// Differential tests: every kernel of every ISA this CPU supports vs the scalar reference,
// for every weight dtype, on random data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "backend/cpu/kernels.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/qdot_ref.h"
#include "backend/cpu/quant_ref.h"
#include "common.h"
#include "core/fp16.h"
#include "core/quant_blocks.h"

namespace sluice {
namespace {

const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q8_0,
                              DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

TEST(Kernels, ScalarIsAlwaysAvailable) {
    ASSERT_NE(cpu_kernels_for(Isa::Scalar), nullptr);
    EXPECT_FALSE(supported_isas().empty());
}

TEST(Kernels, DequantMatchesReference) {
    const int64_t n = 512;
    for (Isa isa : supported_isas()) {
        const CpuKernels& k = *cpu_kernels_for(isa);
        for (DType t : kWeightTypes) {
            const auto x = test::random_floats((size_t)n, 1);
            std::vector<uint8_t> q(row_bytes(t, n));
            quantize_row_ref(t, x.data(), q.data(), n);
            std::vector<float> want((size_t)n), got((size_t)n);
            dequantize_row_ref(t, q.data(), want.data(), n);
            k.dequant_row(t, q.data(), got.data(), n);
            for (int64_t i = 0; i < n; ++i)
                ASSERT_EQ(got[(size_t)i], want[(size_t)i])
                    << k.name << " " << dtype_name(t) << " at " << i;
        }
    }
}

TEST(Kernels, MatmulRowsMatchesReference) {
    const int64_t n_in = 512, n_out = 37;  // odd row count exercises the tail tile
    for (Isa isa : supported_isas()) {
        const CpuKernels& k = *cpu_kernels_for(isa);
        for (DType t : kWeightTypes) {
            const auto w = test::random_floats((size_t)(n_in * n_out), 3);
            std::vector<uint8_t> q(row_bytes(t, n_in) * (size_t)n_out);
            for (int64_t r = 0; r < n_out; ++r)
                quantize_row_ref(t, w.data() + r * n_in, q.data() + (size_t)r * row_bytes(t, n_in),
                                 n_in);
            TensorView W{t, q.data(), {n_in, n_out, 1, 1}};
            for (int64_t n_tok : {1, 3, 9}) {
                const auto x = test::random_floats((size_t)(n_in * n_tok), 5 + (uint64_t)n_tok);
                std::vector<float> y((size_t)(n_tok * n_out)), scratch((size_t)(kRowTile * n_in));
                k.matmul_rows(W, 0, n_out, x.data(), n_tok, y.data(), n_out, scratch.data());
                for (int64_t tk = 0; tk < n_tok; ++tk)
                    for (int64_t r = 0; r < n_out; ++r) {
                        const double want = dot_ref(t, W.row(r), x.data() + tk * n_in, n_in);
                        ASSERT_NEAR(y[(size_t)(tk * n_out + r)], want, 1e-4 * (1 + std::abs(want)))
                            << k.name << " " << dtype_name(t) << " row " << r << " tok " << tk;
                    }
            }
        }
    }
}

// gemm: every ISA's tiles equal the reference dot for each (row, token) within float
// rounding; the reference (dequantized weights x dequantized activations) is within the
// activation-quantization error of the float dot; and a pair's result does not depend on
// the tile shape (whole matrix vs one row and one token at a time: bit-identical).
TEST(Kernels, GemmMatchesReference) {
    const int64_t nr = 13, nt = 7;  // odd: every tile shape and remainder path runs, and
                                    // mat-vec row groups (nr / kDecodeRows) of two rows
    for (DType t : {DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K,
                    DType::F32, DType::F16, DType::BF16}) {
        const DType act = activation_type_for(t);
        const bool plain = act == DType::F32;
        ASSERT_TRUE(plain == (t == DType::F32 || t == DType::F16 || t == DType::BF16));
        // Q8_0 with an odd block count exercises the unpaired last block.
        const int64_t n = t == DType::Q8_0 ? 1024 + 32 : 1024;
        const size_t ws = row_bytes(t, n), as = plain ? (size_t)n * 4 : row_bytes(act, n);
        for (uint64_t seed = 0; seed < 3; ++seed) {
            const auto w = test::random_floats((size_t)(n * nr), 100 + seed),
                       x = test::random_floats((size_t)(n * nt), 200 + seed);
            std::vector<uint8_t> qw(ws * nr), qx(as * nt);
            for (int64_t r = 0; r < nr; ++r)
                quantize_row_ref(t, w.data() + r * n, qw.data() + r * ws, n);
            for (int64_t k = 0; k < nt; ++k) {
                if (plain)
                    std::memcpy(qx.data() + k * as, x.data() + k * n, as);
                else
                    quantize_activations(act, x.data() + k * n, qx.data() + k * as, n);
            }
            std::vector<float> ref((size_t)(nr * nt));
            for (int64_t k = 0; k < nt; ++k)
                for (int64_t r = 0; r < nr; ++r) {
                    const double fdot = dot_ref(t, qw.data() + r * ws, x.data() + k * n, n);
                    ref[(size_t)(k * nr + r)] =
                        plain ? (float)fdot
                              : qdot_ref(t, qw.data() + r * ws, qx.data() + k * as, n);
                    EXPECT_NEAR(ref[(size_t)(k * nr + r)], fdot, 0.03 * std::sqrt((double)n))
                        << dtype_name(t);
                }
            std::vector<float> y_avx512;  // VNNI fuses the same exact integer steps
            for (Isa isa : supported_isas()) {
                const CpuKernels& kk = *cpu_kernels_for(isa);
                std::vector<float> y((size_t)(nr * nt)), y1(y.size());
                ASSERT_TRUE(kk.gemm(t, qw.data(), ws, nr, qx.data(), as, nt, n, y.data(), nr));
                for (int64_t k = 0; k < nt; ++k)
                    for (int64_t r = 0; r < nr; ++r) {
                        const float want = ref[(size_t)(k * nr + r)];
                        ASSERT_NEAR(y[(size_t)(k * nr + r)], want, 2e-5 * (1 + std::abs(want)))
                            << kk.name << " " << dtype_name(t) << " row " << r << " tok " << k;
                        kk.gemm(t, qw.data() + r * ws, ws, 1, qx.data() + k * as, as, 1, n,
                                &y1[(size_t)(k * nr + r)], 1);
                    }
                EXPECT_EQ(y, y1) << kk.name << " " << dtype_name(t);
                // Fewer tokens: every narrower tail tile gives the same values.
                for (int64_t nt2 : {1, 2, 5, 6}) {
                    std::vector<float> y2((size_t)(nr * nt2));
                    kk.gemm(t, qw.data(), ws, nr, qx.data(), as, nt2, n, y2.data(), nr);
                    EXPECT_TRUE(std::equal(y2.begin(), y2.end(), y.begin()))
                        << kk.name << " " << dtype_name(t) << " nt " << nt2;
                }
                if (isa == Isa::Avx512) y_avx512 = y;
                if (isa == Isa::Avx512Vnni || isa == Isa::Avx512Bf16 || isa == Isa::Amx) {
                    EXPECT_EQ(y, y_avx512) << kk.name << " " << dtype_name(t);
                }
            }
        }
    }
}

// Q8_0 codes at the ends of the s8 range, which llama.cpp's quantizer never writes but a file
// may hold (-128): the integer dot stays exact on every ISA (|w| is taken as u8 and multiplied
// by sign(w) * a, so -128 and 127 both fit).
TEST(Kernels, GemmQ8_0ExtremeCodesExact) {
    const int64_t n = 256 + 32, nr = 7, nt = 3, nb = n / QK8_0;
    std::mt19937 rng(7);
    std::vector<block_q8_0> w((size_t)(nr * nb)), a((size_t)(nt * nb));
    for (auto& b : w) {
        b.d = f32_to_f16(0.01f + (float)(rng() % 100) * 1e-4f);
        for (auto& q : b.qs)
            q = (int8_t)((rng() % 4) ? (rng() % 2 ? -128 : 127) : (int)(rng() % 256) - 128);
    }
    for (auto& b : a) {  // activations are ours: quantize_activations keeps |q| <= 127
        b.d = f32_to_f16(0.02f);
        for (auto& q : b.qs)
            q = (int8_t)((rng() % 2) ? (rng() % 2 ? -127 : 127) : (int)(rng() % 255) - 127);
    }
    const size_t ws = (size_t)nb * sizeof(block_q8_0);
    for (Isa isa : supported_isas()) {
        const CpuKernels& kk = *cpu_kernels_for(isa);
        std::vector<float> y((size_t)(nr * nt));
        ASSERT_TRUE(kk.gemm(DType::Q8_0, w.data(), ws, nr, a.data(), ws, nt, n, y.data(), nr));
        for (int64_t t = 0; t < nt; ++t)
            for (int64_t r = 0; r < nr; ++r) {
                const float want = qdot_ref(DType::Q8_0, w.data() + r * nb, a.data() + t * nb, n);
                EXPECT_NEAR(y[(size_t)(t * nr + r)], want, 2e-5 * (1 + std::abs(want)))
                    << kk.name << " row " << r << " tok " << t;
            }
    }
}

// Mat-vec calls long enough for the six-stream split (qgemm_impl.inc, kLongStreamBytes) give
// every row what the one-row call gives (which GemmMatchesReference checks).
TEST(Kernels, LongMatVecEqualsRowByRow) {
    const int64_t n = 1024;
    for (DType t : {DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::F32}) {
        const DType act = activation_type_for(t);
        const bool plain = act == DType::F32;
        const size_t ws = row_bytes(t, n), as = plain ? (size_t)n * 4 : row_bytes(act, n);
        const int64_t nr = (int64_t)((2u << 20) / ws) + 5;  // 2 MiB and a remainder
        const auto w = test::random_floats((size_t)(n * nr), 300),
                   x = test::random_floats((size_t)n, 301);
        std::vector<uint8_t> qw(ws * nr), qx(as);
        for (int64_t r = 0; r < nr; ++r)
            quantize_row_ref(t, w.data() + r * n, qw.data() + r * ws, n);
        if (plain)
            std::memcpy(qx.data(), x.data(), as);
        else
            quantize_activations(act, x.data(), qx.data(), n);
        for (Isa isa : supported_isas()) {
            const CpuKernels& kk = *cpu_kernels_for(isa);
            std::vector<float> y((size_t)nr), y1((size_t)nr);
            ASSERT_TRUE(kk.gemm(t, qw.data(), ws, nr, qx.data(), as, 1, n, y.data(), nr));
            for (int64_t r = 0; r < nr; ++r)
                kk.gemm(t, qw.data() + r * ws, ws, 1, qx.data(), as, 1, n, &y1[(size_t)r], 1);
            EXPECT_EQ(y, y1) << kk.name << " " << dtype_name(t);
        }
    }
}

// gemm_bf16 of one ISA against the reference: dequantized weights and activations each
// rounded to bf16, products summed in double.
void check_gemm_bf16(const CpuKernels* k) {
    const int64_t nr = 37;  // one full 32-row panel and a padded one
    for (DType t : {DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K,
                    DType::F32, DType::F16, DType::BF16}) {
        const int64_t n = t == DType::Q8_0 ? 512 + 32 : 512;
        const size_t ws = row_bytes(t, n);
        for (int64_t nt : {1, 19, 40}) {  // token blocks: one partial; a pair; a pair + one
            const auto w = test::random_floats((size_t)(n * nr), 300 + (uint64_t)nt),
                       x = test::random_floats((size_t)(n * nt), 400 + (uint64_t)nt);
            std::vector<uint8_t> qw(ws * nr);
            for (int64_t r = 0; r < nr; ++r)
                quantize_row_ref(t, w.data() + r * n, qw.data() + r * ws, n);
            std::vector<uint8_t> xp(packed_bf16_bytes(nt, n));
            k->pack_bf16(x.data(), nt, n, xp.data());
            std::vector<float> y((size_t)(nr * nt));
            ASSERT_TRUE(k->gemm_bf16(t, qw.data(), ws, nr, xp.data(), nt, n, y.data(), nr));
            std::vector<float> wr((size_t)n);
            for (int64_t r = 0; r < nr; ++r) {
                dequantize_row_ref(t, qw.data() + r * ws, wr.data(), n);
                for (int64_t tok = 0; tok < nt; ++tok) {
                    double want = 0, mag = 0, top = 0;
                    for (int64_t i = 0; i < n; ++i) {
                        const double p = (double)bf16_to_f32(f32_to_bf16(wr[(size_t)i])) *
                                         bf16_to_f32(f32_to_bf16(x[(size_t)(tok * n + i)]));
                        want += p, mag += std::abs(p), top = std::max(top, std::abs(p));
                    }
                    // f32 sums, and the fast dequantizers fuse the scale multiply, so a weight
                    // can round to the neighbouring bf16 (2^-8 relative).
                    ASSERT_NEAR(y[(size_t)(tok * nr + r)], want, 1e-5 * mag + 1e-2 * top)
                        << k->name << " " << dtype_name(t) << " row " << r << " tok " << tok
                        << " nt " << nt;
                }
            }
            // A (row, token) result does not depend on the rows and tokens around it.
            std::vector<uint8_t> x1(packed_bf16_bytes(1, n));
            k->pack_bf16(x.data() + (nt - 1) * n, 1, n, x1.data());
            float y1 = 0;
            k->gemm_bf16(t, qw.data() + (nr - 1) * ws, ws, 1, x1.data(), 1, n, &y1, 1);
            EXPECT_EQ(y1, y[(size_t)((nt - 1) * nr + nr - 1)])
                << k->name << " " << dtype_name(t) << " nt " << nt;
        }
    }
}

TEST(Kernels, GemmBf16MatchesReference) {
    int tested = 0;
    for (Isa isa : {Isa::Avx512Bf16, Isa::Amx}) {
        const CpuKernels* k = cpu_kernels_for(isa);
        if (!k) continue;
        ++tested;
        check_gemm_bf16(k);
    }
    if (tested == 0) GTEST_SKIP() << "no AVX512-BF16 or AMX-BF16 on this CPU";
}

TEST(Kernels, DotAndAxpy) {
    for (Isa isa : supported_isas()) {
        const CpuKernels& k = *cpu_kernels_for(isa);
        for (int64_t n : {1, 15, 16, 17, 64, 1000}) {
            const auto a = test::random_floats((size_t)n, 11),
                       b = test::random_floats((size_t)n, 12);
            double want = 0;
            for (int64_t i = 0; i < n; ++i) want += (double)a[(size_t)i] * b[(size_t)i];
            EXPECT_NEAR(k.dot_f32(a.data(), b.data(), n), want, 1e-4 * (1 + std::abs(want)))
                << k.name << " n=" << n;
            std::vector<float> y = b;
            k.axpy(0.5f, a.data(), y.data(), n);
            for (int64_t i = 0; i < n; ++i)
                ASSERT_FLOAT_EQ(y[(size_t)i], b[(size_t)i] + 0.5f * a[(size_t)i]);
        }
    }
}

TEST(Kernels, AttentionRowsMatchScalar) {
    const CpuKernels& ref = *cpu_kernels_for(Isa::Scalar);
    for (int nq = 1; nq <= 4; ++nq)
        for (int64_t n_pos : {1, 15, 16, 63, 64, 65, 130}) {
            const int64_t hd = 128, vd = 96, ldk = (n_pos + 15) / 16 * 16, ldv = vd + 8,
                          lds = ldk + 3;
            const uint64_t seed = 10 * (uint64_t)n_pos + (uint64_t)nq;
            const auto q = test::random_floats((size_t)(nq * hd), 500 + seed),
                       kt = test::random_floats((size_t)(hd * ldk), 600 + seed),
                       v = test::random_floats((size_t)(ldv * n_pos), 700 + seed);
            std::vector<float> s0((size_t)(nq * lds)), o0((size_t)(nq * vd));
            ref.scores_kt(q.data(), nq, kt.data(), ldk, n_pos, hd, 0.125f, s0.data(), lds);
            ref.weighted_rows(s0.data(), nq, lds, v.data(), ldv, n_pos, vd, o0.data());
            for (int h = 0; h < nq; ++h) {
                for (int64_t p = 0; p < n_pos; ++p) {
                    double want = 0;
                    for (int64_t d = 0; d < hd; ++d)
                        want += (double)q[(size_t)(h * hd + d)] * kt[(size_t)(d * ldk + p)];
                    ASSERT_NEAR(s0[(size_t)(h * lds + p)], 0.125 * want, 1e-4) << h << " " << p;
                }
                for (int64_t c = 0; c < vd; ++c) {
                    double want = 0;
                    for (int64_t p = 0; p < n_pos; ++p)
                        want += (double)s0[(size_t)(h * lds + p)] * v[(size_t)(p * ldv + c)];
                    ASSERT_NEAR(o0[(size_t)(h * vd + c)], want, 1e-4) << h << " " << c;
                }
            }
            for (Isa isa : supported_isas()) {
                const CpuKernels& k = *cpu_kernels_for(isa);
                std::vector<float> s(s0.size()), o(o0.size());
                k.scores_kt(q.data(), nq, kt.data(), ldk, n_pos, hd, 0.125f, s.data(), lds);
                k.weighted_rows(s0.data(), nq, lds, v.data(), ldv, n_pos, vd, o.data());
                // The same keys in rows, as decode reads them from the KV cache.
                const int64_t ldr = hd + 4;
                std::vector<float> kr((size_t)(ldr * n_pos)), sr(s0.size());
                for (int64_t p = 0; p < n_pos; ++p)
                    for (int64_t d = 0; d < hd; ++d)
                        kr[(size_t)(p * ldr + d)] = kt[(size_t)(d * ldk + p)];
                k.scores_rows(q.data(), nq, kr.data(), ldr, n_pos, hd, 0.125f, sr.data(), lds);
                for (int h = 0; h < nq; ++h) {
                    for (int64_t p = 0; p < n_pos; ++p) {
                        const float want = s0[(size_t)(h * lds + p)];
                        ASSERT_NEAR(s[(size_t)(h * lds + p)], want, 1e-5 * (1 + std::abs(want)))
                            << k.name << " nq " << nq << " n_pos " << n_pos << " p " << p;
                        ASSERT_NEAR(sr[(size_t)(h * lds + p)], want, 1e-5 * (1 + std::abs(want)))
                            << k.name << " rows, nq " << nq << " n_pos " << n_pos << " p " << p;
                    }
                    for (int64_t c = 0; c < vd; ++c) {
                        const float want = o0[(size_t)(h * vd + c)];
                        ASSERT_NEAR(o[(size_t)(h * vd + c)], want, 1e-5 * (1 + std::abs(want)))
                            << k.name << " nq " << nq << " n_pos " << n_pos << " c " << c;
                    }
                }
            }
        }
}

TEST(Kernels, ExpShiftMatchesStdExp) {
    std::vector<float> x;
    for (int i = 0; i <= 2000; ++i) x.push_back(-100.0f + 0.05f * (float)i);  // [-100, 0]
    for (float v : {0.0f, -1e-8f, -0.5f, -87.0f, -88.0f, -1e30f}) x.push_back(v);
    for (Isa isa : supported_isas()) {
        std::vector<float> y = x;
        const double sum = cpu_kernels_for(isa)->exp_shift(y.data(), (int64_t)y.size(), 0.0f);
        double want_sum = 0;
        for (size_t i = 0; i < x.size(); ++i) {
            const double want = std::exp((double)x[i]);
            want_sum += want;
            // 2 ulp where exp(x) is a normal float; below it, anything that small.
            if (x[i] >= -87.0f)
                ASSERT_NEAR(y[i], want, 2.5e-7 * want)
                    << cpu_kernels_for(isa)->name << " x " << x[i];
            else
                ASSERT_LE(y[i], 1.7e-38f) << cpu_kernels_for(isa)->name << " x " << x[i];
        }
        EXPECT_NEAR(sum, want_sum, 1e-6 * want_sum) << cpu_kernels_for(isa)->name;
    }
}

// Activation blocks: every ISA writes the reference's bytes (the integer kernels' results are
// compared against that reference elsewhere, so any difference here would be silent drift).
TEST(Kernels, QuantizeActMatchesReference) {
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.f, 1.f);
    const int64_t n = 4 * QK_K;
    std::vector<float> x((size_t)n);
    for (auto& v : x) v = nd(rng) * 3.f;
    for (int i = 0; i < QK_K; ++i) x[(size_t)QK_K + i] = 0.f;  // an all-zero block
    // Scale 1 (amax 127): halves are exact ties, which both must round to even.
    for (int i = 0; i < QK_K; ++i) x[(size_t)2 * QK_K + i] = (float)(i % 64) - 31.5f;
    x[(size_t)2 * QK_K] = 127.f;
    for (int i = 0; i < QK_K; ++i) x[(size_t)3 * QK_K + i] = nd(rng) * 1e-30f;  // tiny
    for (DType act : {DType::Q8_K, DType::Q8_0}) {
        const size_t bytes = row_bytes(act, n);
        std::vector<uint8_t> want(bytes), got(bytes);
        quantize_row_ref(act, x.data(), want.data(), n);
        for (Isa isa : supported_isas()) {
            std::fill(got.begin(), got.end(), 0xAB);
            cpu_kernels_for(isa)->quantize_act(act, x.data(), got.data(), n);
            EXPECT_EQ(std::memcmp(got.data(), want.data(), bytes), 0)
                << cpu_kernels_for(isa)->name << " " << dtype_name(act);
        }
    }
}

TEST(Kernels, XorWords) {
    std::mt19937_64 rng(7);
    std::vector<uint64_t> v(1000);
    for (auto& x : v) x = rng();
    for (Isa isa : supported_isas())
        for (int64_t n : {0, 1, 31, 32, 33, 1000}) {
            uint64_t want = 0;
            for (int64_t i = 0; i < n; ++i) want ^= v[(size_t)i];
            EXPECT_EQ(cpu_kernels_for(isa)->xor_words(v.data(), n), want) << n;
        }
}

TEST(Ops, ThreadedMatmulEqualsSingleThread) {
    const int64_t n_in = 256, n_out = 300, n_tok = 5;
    const auto w = test::random_floats((size_t)(n_in * n_out), 21);
    std::vector<uint8_t> q(row_bytes(DType::Q4_K, n_in) * (size_t)n_out);
    for (int64_t r = 0; r < n_out; ++r)
        quantize_row_ref(DType::Q4_K, w.data() + r * n_in,
                         q.data() + (size_t)r * row_bytes(DType::Q4_K, n_in), n_in);
    TensorView W{DType::Q4_K, q.data(), {n_in, n_out, 1, 1}};
    const auto x = test::random_floats((size_t)(n_in * n_tok), 22);
    std::vector<float> y1((size_t)(n_tok * n_out)), y4(y1.size());
    ThreadPool p1(1), p4(4);
    matmul(p1, W, x.data(), n_tok, y1.data());
    matmul(p4, W, x.data(), n_tok, y4.data());
    EXPECT_EQ(y1, y4);  // same kernels, same per-row order: bit-identical
}

// An expert group (one parallel region per group in decode, two for batches) gives each
// expert's down(silu(gate x) * up x) exactly as separate products do, whatever the threads.
TEST(Ops, ExpertGroupEqualsSeparateProducts) {
    const int64_t E = 512, F = 512;
    struct Mat {
        std::vector<uint8_t> q;
        TensorView v;
    };
    auto make = [](DType t, int64_t cols, int64_t rows, uint64_t seed) {
        const auto w = test::random_floats((size_t)(cols * rows), seed, 0.05f);
        Mat m;
        m.q.resize(row_bytes(t, cols) * (size_t)rows);
        for (int64_t r = 0; r < rows; ++r)
            quantize_row_ref(t, w.data() + r * cols, m.q.data() + (size_t)r * row_bytes(t, cols),
                             cols);
        m.v = TensorView{t, m.q.data(), {cols, rows, 1, 1}};
        return m;
    };
    for (DType t : {DType::Q4_K, DType::Q8_0, DType::F32})
        for (int n_tok : {1, 3, 16})
            for (int n_exp : {1, 5}) {
                std::vector<Mat> gate, up, down;
                for (int e = 0; e < n_exp; ++e) {
                    gate.push_back(make(t, E, F, 100 + e));
                    up.push_back(make(t, E, F, 200 + e));
                    down.push_back(make(t, F, E, 300 + e));
                }
                // Experts 0 and 1 read the same input rows (as every expert does in decode).
                std::vector<std::vector<float>> x;
                std::vector<const float*> in;
                for (int e = 0; e < n_exp; ++e) {
                    x.push_back(test::random_floats((size_t)(n_tok * E), 400 + e));
                    in.push_back(e == 1 ? x[0].data() : x[(size_t)e].data());
                }
                ThreadPool p1(1), p3(3);
                std::vector<std::vector<float>> want;
                for (int e = 0; e < n_exp; ++e) {
                    std::vector<float> g((size_t)(n_tok * F)), u(g.size()), y((size_t)(n_tok * E));
                    matmul(p1, gate[e].v, in[e], n_tok, g.data());
                    matmul(p1, up[e].v, in[e], n_tok, u.data());
                    for (size_t i = 0; i < g.size(); ++i) g[i] = silu(g[i]) * u[i];
                    matmul(p1, down[e].v, g.data(), n_tok, y.data());
                    want.push_back(y);
                }
                for (ThreadPool* pool : {&p1, &p3}) {
                    std::vector<std::vector<float>> got(n_exp,
                                                        std::vector<float>((size_t)(n_tok * E)));
                    std::vector<SwigluJob> jobs;
                    for (int e = 0; e < n_exp; ++e)
                        jobs.push_back(
                            {&gate[e].v, &up[e].v, &down[e].v, in[e], n_tok, got[e].data()});
                    ffn_swiglu_experts(*pool, jobs);
                    for (int e = 0; e < n_exp; ++e)
                        EXPECT_EQ(got[e], want[e])
                            << dtype_name(t) << " n_tok " << n_tok << " expert " << e << " of "
                            << n_exp << ", threads " << pool->size();
                }
            }
}

TEST(Ops, RopeNeoxRotatesPairsHalfApart) {
    // 4 rotary dims: pairs (0,2) and (1,3); at pos 1 pair 0 turns by inv_freq[0] = 1.
    RopeTable r{{1.0f, 0.01f}, 1.0f, false};
    std::vector<float> x = {1, 0, 0, 0};
    rope(r, x.data(), 1, 4, 1);
    EXPECT_NEAR(x[0], std::cos(1.0f), 1e-6);
    EXPECT_NEAR(x[2], std::sin(1.0f), 1e-6);
    EXPECT_EQ(x[1], 0.f);
}

TEST(Ops, RopePairsRotatesNeighbours) {
    // Interleaved layout: pair 0 is (0,1); the second head starts `stride` floats later.
    RopeTable r{{2.0f, 0.5f}, 0.5f, true};
    std::vector<float> x = {1, 0, 0, 0, 9, 0, 1, 0, 0, 0};
    rope(r, x.data(), 2, 5, 3);  // angle pair0 = 6, pair1 = 1.5; magnitude 0.5
    EXPECT_NEAR(x[0], 0.5f * std::cos(6.0f), 1e-6);
    EXPECT_NEAR(x[1], 0.5f * std::sin(6.0f), 1e-6);
    EXPECT_EQ(x[4], 9.f);                             // beyond n_rot: untouched
    EXPECT_NEAR(x[5], -0.5f * std::sin(6.0f), 1e-6);  // head 1's pair 0 is (x[5], x[6]) = (0, 1)
    EXPECT_NEAR(x[6], 0.5f * std::cos(6.0f), 1e-6);
}

}  // namespace
}  // namespace sluice
