/*
 * leanml_kernels_mean.h -- TFLite's int8 MEAN over the spatial axes (H, W) of an HWC map, bit for bit with the
 * pip TFLite Micro interpreter (reference_ops::QuantizedMeanOrSum, with or without keep_dims). Include
 * leanml_kernels.h, not this file.
 *
 *   acc = sum over the plane of (x - in_zp); out = clamp(MultiplyByQuantizedMultiplier(acc, mult, shift) + out_zp)
 *   where mult, shift fold 1 / (h * w) into in_scale / out_scale (leanml.deploy.tflite_ops.mean_multiplier).
 *
 *   in (h, w, c) HWC    out (c,)
 */
#ifndef LEANML_KERNELS_MEAN_H
#define LEANML_KERNELS_MEAN_H

#include <stdint.h>

static inline void dk_mean_hw_s8_ref(const int8_t *in, int h, int w, int c, int32_t in_zp, int32_t mult,
                                     int32_t shift, int32_t out_zp, int8_t *out) {
    const int32_t count = (int32_t)h * w;
    for (int ch = 0; ch < c; ++ch) {
        int32_t acc = 0;
        for (int32_t p = 0; p < count; ++p) acc += (int32_t)in[p * c + ch] - in_zp;
        out[ch] = (int8_t)dk_i32_clamp(dk_i32_mul_multiplier(acc, mult, (int)shift) + out_zp, -128, 127);
    }
}

/* No SIMD variant (one pass over the last feature map). */
#define dk_mean_hw_s8 dk_mean_hw_s8_ref

#endif /* LEANML_KERNELS_MEAN_H */
