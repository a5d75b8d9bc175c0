// Block layouts, half-precision conversions, and quantize -> dequantize error bounds.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/cpu/quant_ref.h"
#include "common.h"
#include "core/dtype.h"
#include "core/fp16.h"
#include "core/quant_blocks.h"

namespace sluice {
namespace {

TEST(DType, TableMatchesGgml) {
    // Sizes as ggml defines them (bytes per block, elements per block).
    struct Want {
        DType t;
        int elems, bytes;
    };
    for (Want w : {Want{DType::F32, 1, 4},
                   {DType::F16, 1, 2},
                   {DType::BF16, 1, 2},
                   {DType::Q4_0, 32, 18},
                   {DType::Q8_0, 32, 34},
                   {DType::Q2_K, 256, 84},
                   {DType::Q3_K, 256, 110},
                   {DType::Q4_K, 256, 144},
                   {DType::Q5_K, 256, 176},
                   {DType::Q6_K, 256, 210}}) {
        const DTypeTraits& tr = dtype_traits(w.t);
        EXPECT_EQ(tr.block_elems, w.elems) << tr.name;
        EXPECT_EQ(tr.block_bytes, w.bytes) << tr.name;
        EXPECT_EQ(dtype_from_name(tr.name), w.t);
    }
    EXPECT_EQ(dtype_traits_or_null(99), nullptr);
}

TEST(Half, RoundTripsAllF16) {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float f = f16_to_f32((f16_t)h);
        if (std::isnan(f)) continue;
        EXPECT_EQ(f32_to_f16(f), (f16_t)h) << std::hex << h;
    }
    EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
    EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
    EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));         // smallest subnormal
    EXPECT_EQ(f32_to_f16(65520.f), 0x7c00);                       // rounds to inf
    EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie to even
}

TEST(Half, F8E4M3DecodesOcpValues) {
    EXPECT_EQ(f8e4m3_to_f32(0x38), 1.0f);         // exponent 7 = bias
    EXPECT_EQ(f8e4m3_to_f32(0xb8), -1.0f);
    EXPECT_EQ(f8e4m3_to_f32(0x7e), 448.0f);       // largest finite
    EXPECT_EQ(f8e4m3_to_f32(0x01), 1.0f / 512);   // smallest subnormal
    EXPECT_EQ(f8e4m3_to_f32(0x0f), 1.875f / 64);  // largest subnormal + 1 exponent step
    EXPECT_TRUE(std::isnan(f8e4m3_to_f32(0x7f)));
    EXPECT_TRUE(std::isnan(f8e4m3_to_f32(0xff)));
}

TEST(Half, BF16RoundsToNearestEven) {
    EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f)), 1.0f);
    EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie -> even
    EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);
    EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
}

// Relative RMS error of quantize -> dequantize on Gaussian data, against loose bounds
// derived from each format's bits per weight (llama.cpp's own quantizers do better).
TEST(Quant, RoundTripErrorWithinFormatBound) {
    struct Case {
        DType t;
        double max_rel_rmse;
    };
    const int64_t n = 256 * 16;
    const auto x = test::random_floats((size_t)n, 42);
    for (Case c : {Case{DType::F16, 1e-3},
                   {DType::BF16, 5e-3},
                   {DType::Q8_0, 0.01},
                   {DType::Q6_K, 0.03},
                   {DType::Q5_K, 0.06},
                   {DType::Q4_K, 0.12},
                   {DType::Q4_0, 0.15},
                   {DType::Q3_K, 0.25},
                   {DType::Q2_K, 0.45}}) {
        std::vector<uint8_t> q(row_bytes(c.t, n));
        quantize_row_ref(c.t, x.data(), q.data(), n);
        std::vector<float> y((size_t)n);
        dequantize_row_ref(c.t, q.data(), y.data(), n);
        double err = 0, ref = 0;
        for (int64_t i = 0; i < n; ++i)
            err += std::pow(y[(size_t)i] - x[(size_t)i], 2), ref += x[(size_t)i] * x[(size_t)i];
        const double rel = std::sqrt(err / ref);
        EXPECT_LT(rel, c.max_rel_rmse) << dtype_name(c.t);
        EXPECT_GT(rel, 0.0) << dtype_name(c.t) << ": exact round trip means the test data is wrong";
        // dot_ref is the dequantized dot product.
        const auto v = test::random_floats((size_t)n, 7);
        double want = 0;
        for (int64_t i = 0; i < n; ++i) want += (double)y[(size_t)i] * v[(size_t)i];
        EXPECT_NEAR(dot_ref(c.t, q.data(), v.data(), n), want, 1e-6 * std::abs(want) + 1e-6)
            << dtype_name(c.t);
    }
}

// The GPU's upload layout: the same values as the Q8_0 row it regroups, in the same bytes; a
// file may not claim it (GGUF type ids stop below sluice's own).
TEST(Quant, Q8_0RegroupedKeepsItsValues) {
    const int64_t n = 1024;
    const std::vector<float> x = test::random_floats((size_t)n, 5);
    ASSERT_EQ(row_bytes(DType::Q8_0_G8, n), row_bytes(DType::Q8_0, n));
    std::vector<uint8_t> q(row_bytes(DType::Q8_0, n)), g(q.size());
    quantize_row_ref(DType::Q8_0, x.data(), q.data(), n);
    regroup_q8_0_g8((const block_q8_0*)q.data(), (block_q8_0_g8*)g.data(), n / 256);
    std::vector<float> a((size_t)n), b((size_t)n);
    dequantize_row_ref(DType::Q8_0, q.data(), a.data(), n);
    dequantize_row_ref(DType::Q8_0_G8, g.data(), b.data(), n);
    EXPECT_EQ(a, b);
    EXPECT_NE(q, g);
    std::vector<uint8_t> g2(g.size());  // quantize_row writes the regrouped layout directly
    quantize_row_ref(DType::Q8_0_G8, x.data(), g2.data(), n);
    EXPECT_EQ(g2, g);
    EXPECT_GE((uint32_t)DType::Q8_0_G8, kFirstNonGgufType);
}

TEST(Quant, ZeroBlocksStayZero) {
    const int64_t n = 256;
    std::vector<float> x((size_t)n, 0.f), y((size_t)n, 1.f);
    for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K,
                    DType::Q6_K}) {
        std::vector<uint8_t> q(row_bytes(t, n));
        quantize_row_ref(t, x.data(), q.data(), n);
        dequantize_row_ref(t, q.data(), y.data(), n);
        for (float v : y) ASSERT_EQ(v, 0.f) << dtype_name(t);
    }
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// The scale search must beat the range-based fit on weight-like data with outliers
// (measured: Q2_K 7.9%, Q3_K 1.8%, Q4_K 6.9%, Q5_K 4.3%, Q6_K 3.3% lower RMSE).
TEST(Quant, ScaleSearchLowersError) {
    const int64_t n = 256 * 64;
    std::vector<float> x = test::random_floats((size_t)n, 11);
    for (size_t i = 0; i < x.size(); i += 97) x[i] *= 4.0f;  // outliers
    for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
        double err[2];
        for (QuantFit fit : {QuantFit::MinMax, QuantFit::Search}) {
            std::vector<uint8_t> q(row_bytes(t, n));
            quantize_row(t, x.data(), q.data(), n, fit);
            std::vector<float> y((size_t)n);
            dequantize_row_ref(t, q.data(), y.data(), n);
            double e = 0;
            for (int64_t i = 0; i < n; ++i) e += (x[(size_t)i] - y[(size_t)i]) * (x[(size_t)i] - y[(size_t)i]);
            err[fit == QuantFit::Search] = std::sqrt(e / (double)n);
        }
        std::printf("  %s rmse: min/max %.5f, search %.5f (%.1f%% lower)\n", dtype_traits(t).name,
                    err[0], err[1], 100 * (1 - err[1] / err[0]));
        EXPECT_LT(err[1], err[0] * 0.99) << dtype_traits(t).name;
    }
}

}  // namespace
}  // namespace sluice
