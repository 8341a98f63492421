/*
 * leanml_kernels_softmax.h -- TFLite's int8 softmax, bit for bit: the reference kernel of TFLite Micro
 * (tensorflow/lite/kernels/internal/reference/softmax.h, int8 in, int8 out with scale 1/256 and zero point -128),
 * with gemmlowp's fixed-point exp(x) on x <= 0 and 1 / (1 + x) on [0, 1). Include leanml_kernels.h, not this file.
 *
 * Fixed-point formats (gemmlowp's FixedPoint<int32_t, I>: I integer bits, 31 - I fractional bits):
 *   the scaled input difference   Q5.26   (x - max) * beta * scale, as int32 raw
 *   exp values                    Q0.31
 *   the sum of exps               Q12.19
 * The constants (input_multiplier, input_left_shift, diff_min) come from TFLite's PreprocessSoftmaxScaling and
 * CalculateInputRadius, computed by the importer (leanml/deploy/tflite.py) from beta and the input scale.
 */
#ifndef LEANML_KERNELS_SOFTMAX_H
#define LEANML_KERNELS_SOFTMAX_H

#include <stdint.h>

/* gemmlowp SaturatingRoundingMultiplyByPOT<exponent> for exponent > 0: x * 2^exponent, saturated to int32. */
static inline int32_t dk_q31_shl_sat(int32_t x, int exponent) {
    const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return (int32_t)((uint32_t)x << exponent);
}

/* gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl: a in Q0.31, in [-1/4, 0); result Q0.31. */
static inline int32_t dk_q31_exp_quarter(int32_t a) {
    const int32_t constant_term = 1895147668;     /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883; /* 1/3 */
    const int32_t x = a + (1 << 28);              /* a + 1/8 */
    const int32_t x2 = dk_q31_mul_high(x, x);
    const int32_t x3 = dk_q31_mul_high(x2, x);
    const int32_t x4 = dk_q31_mul_high(x2, x2);
    const int32_t x4_over_4 = dk_i32_shift_round(x4, 2);
    const int32_t poly = dk_i32_shift_round(dk_q31_mul_high(x4_over_4 + x3, constant_1_over_3) + x2, 1);
    return constant_term + dk_q31_mul_high(constant_term, x + poly);
}

/* gemmlowp exp_on_negative_values for Q5.26 input a <= 0: exp(a) in Q0.31. */
static inline int32_t dk_q526_exp_negative(int32_t a) {
    static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t one_quarter = 1 << 24; /* 1/4 in Q5.26 */
    const int32_t a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter;
    int32_t result = dk_q31_exp_quarter(dk_q31_shl_sat(a_mod_quarter_minus_one_quarter, 5)); /* Q5.26 -> Q0.31 */
    const int32_t remainder = a_mod_quarter_minus_one_quarter - a;
    for (int i = 0; i < 7; ++i) { /* exponents -2 .. 4: bits 24 .. 30 of the remainder */
        if (remainder & ((int32_t)1 << (24 + i))) result = dk_q31_mul_high(result, multipliers[i]);
    }
    return a == 0 ? INT32_MAX : result;
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: a in Q0.31, [0, 1) -> 1 / (1 + a) in Q0.31 (Newton-Raphson). */
static inline int32_t dk_q31_one_over_one_plus(int32_t a) {
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2); /* RoundingHalfSum(a, 1) */
    const int32_t constant_48_over_17 = 1515870810, constant_neg_32_over_17 = -1010580540; /* Q2.29 */
    int32_t x = constant_48_over_17 + dk_q31_mul_high(half_denominator, constant_neg_32_over_17);
    for (int i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = dk_q31_mul_high(half_denominator, x); /* Q2.29 */
        const int32_t one_minus = (1 << 29) - half_denominator_times_x;
        x = x + dk_q31_shl_sat(dk_q31_mul_high(x, one_minus), 2); /* Q4.27 -> Q2.29 */
    }
    return dk_q31_shl_sat(x, 1); /* x / 2 in Q1.30 -> Q0.31 */
}

/* int8 softmax over the last axis (TFLite reference, int8 output with scale 1/256, zero point -128):
 *   in, out (rows, depth), row-major; out may alias in (element c is read for the last time before it is written).
 *   input_multiplier, input_left_shift: beta * input_scale * 2^26 as a Q31 multiplier (shift >= 0);
 *   diff_min: differences x - max below it give exp = 0 (output -128). */
static inline void dk_softmax_s8_ref(const int8_t *in, int rows, int depth, int32_t input_multiplier,
                                     int32_t input_left_shift, int32_t diff_min, int8_t *out) {
    for (int r = 0; r < rows; ++r) {
        const int8_t *x = in + (int32_t)r * depth;
        int8_t *o = out + (int32_t)r * depth;
        int32_t max_in_row = -128;
        for (int c = 0; c < depth; ++c) max_in_row = x[c] > max_in_row ? x[c] : max_in_row;
        int32_t sum_of_exps = 0; /* Q12.19 */
        for (int c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= diff_min) {
                const int32_t scaled = dk_q31_mul_high(diff * ((int32_t)1 << input_left_shift), input_multiplier);
                sum_of_exps += dk_i32_shift_round(dk_q526_exp_negative(scaled), 12);
            }
        }
        /* GetReciprocal(sum_of_exps, 12): 1 / sum as a Q0.31 scale and the bits above one */
        int headroom_plus_one = 0;
        while (headroom_plus_one < 32 && !((uint32_t)sum_of_exps & (0x80000000u >> headroom_plus_one)))
            ++headroom_plus_one;
        const int num_bits_over_unit = 12 - headroom_plus_one;
        const int32_t shifted_sum_minus_one =
            (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - ((uint32_t)1 << 31));
        const int32_t shifted_scale = dk_q31_one_over_one_plus(shifted_sum_minus_one);
        for (int c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            int32_t v = -128;
            if (diff >= diff_min) {
                const int32_t scaled = dk_q31_mul_high(diff * ((int32_t)1 << input_left_shift), input_multiplier);
                const int32_t e = dk_q526_exp_negative(scaled);
                const int exponent = num_bits_over_unit + 23; /* 32 or more when the exps sum to >= 512 */
                const int32_t prod = dk_q31_mul_high(shifted_scale, e); /* >= 0 */
                const int32_t unsat = exponent < 32 ? dk_i32_shift_round(prod, exponent) : 0; /* < 2^31 / 2^32 */
                v = unsat - 128;
                v = v < -128 ? -128 : (v > 127 ? 127 : v);
            }
            o[c] = (int8_t)v; /* x[c] was read above and is not read again: out may alias in */
        }
    }
}

/* No SIMD variant. */
static inline void dk_softmax_s8(const int8_t *in, int rows, int depth, int32_t input_multiplier,
                                 int32_t input_left_shift, int32_t diff_min, int8_t *out) {
    dk_softmax_s8_ref(in, rows, depth, input_multiplier, input_left_shift, diff_min, out);
}

#endif /* LEANML_KERNELS_SOFTMAX_H */
