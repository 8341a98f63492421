/*
 * leanml_kernels_x86.h -- the x86 SIMD backend of leanml's kernels: AVX-512 VNNI if the compiler targets it, else
 * AVX2. Included by leanml_kernels.h; it includes one of
 *
 *   leanml_kernels_x86_avx512.h   AVX-512 F + BW + VNNI (Ice Lake, Sapphire Rapids, Zen 4 ...): 16 int32 lanes
 *   leanml_kernels_x86_avx2.h     AVX2 (Haswell, Zen 1 and later): 8 int32 lanes
 *
 * each defining the backend interface that the ISA-independent kernels of leanml_kernels_simd.h are written
 * against (listed at the top of that file). The integer algebra that keeps them bit-exact:
 *
 *   AVX-512 VNNI   `vpdpbusd` multiplies 4 u8 x s8 pairs per int32 lane, exactly (each product <= 255 * 128; lane
 *                  sums wrap like int32 and the caller's accumulator bound keeps every true sum in range). The GEMM
 *                  rows hold x + 128 (a sign-bit flip; padding in_zp + 128), the weights stay s8, and
 *                  (in_zp + 128) * sum(w) is subtracted once per output channel. Depthwise and single-channel
 *                  convs: `vpdpwssd` on int16 (x - in_zp, w) pairs, also exact.
 *   AVX2           no exact u8 x s8 instruction (`vpmaddubsw` saturates: 2 * 255 * 128 > 32767), so activations are
 *                  widened to int16 x - in_zp (in [-255, 255]) and weights sign-extended: `vpmaddwd` is exact.
 *   requantization 64-bit products (`vpmuldq`) of the even and odd lanes; TFLite's nudge-then-truncate equals
 *                  floor((a * b + 2^30) / 2^31) for both signs (the INT32_MIN * INT32_MIN case saturates, as in
 *                  dk_q31_mul_high); rounding divide by 2^e with dk_i32_shift_round's mask and threshold per lane.
 *
 * Zero points must be int8 values ([-128, 127]), as in every leanml (and TFLite) model.
 */
#ifndef LEANML_KERNELS_X86_H
#define LEANML_KERNELS_X86_H

#include <immintrin.h>
#include <stdint.h>

/* The register-blocked micro-kernels are separate (never inlined) functions whose small loops are fully unrolled:
 * inlined into the big conv loops, GCC 12 keeps their arrays of accumulators half in memory (dozens of vmovdqa and
 * stack spills per iteration); on their own they compile to pure vpbroadcastd / vpdpbusd loops. */
#define DK_UNROLL _Pragma("GCC unroll 16")
#define DK_KERNEL static __attribute__((noinline, unused))

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#include "leanml_kernels_x86_avx512.h"
#elif defined(__AVX2__)
#include "leanml_kernels_x86_avx2.h"
#endif

#endif /* LEANML_KERNELS_X86_H */
