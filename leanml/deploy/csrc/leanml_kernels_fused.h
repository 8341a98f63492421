/*
 * leanml_kernels_fused.h -- In-place / overlapping-buffer / line-buffer kernel variants the memory planner places.
 * Include leanml_kernels.h, not this file.
 *
 * Row-streamed residual blocks need no kernel of their own: the generated code calls the public conv kernels on
 * windows of rows (line buffers), with the top padding of each window passed as `ph` and the bottom one implied by
 * in_h (rows past in_h read as padding), and dk_add_s8 on one row at a time.
 */
#ifndef LEANML_KERNELS_FUSED_H
#define LEANML_KERNELS_FUSED_H

#include <stdint.h>

/* One chunk step of the in-place 1x1 conv: copy n pixels of input (from pixel p) aside, convolve them into buf. */
#define DK_CONV1X1_INPLACE_BODY(CONV)                                                                                  \
    do {                                                                                                               \
        const int32_t npx = (int32_t)in_h * in_w;                                                                      \
        if (out_c <= in_c) { /* forward: output pixel p ends before input pixel p + chunk starts */                    \
            for (int32_t p = 0; p < npx; p += chunk) {                                                                 \
                const int n = (int)(npx - p < chunk ? npx - p : chunk);                                                \
                __builtin_memcpy(tmp, buf + p * in_c, (size_t)n * (size_t)in_c);                                       \
                CONV(tmp, 1, n, in_c, in_zp, w, bias, out_c, mult, shift, out_zp, act_min, act_max,                    \
                     buf + p * out_c);                                                                                 \
            }                                                                                                          \
        } else { /* backward: output pixel p starts after input pixel p - 1 ends */                                    \
            for (int32_t end = npx; end > 0; end -= chunk) {                                                           \
                const int32_t p = end > chunk ? end - chunk : 0;                                                       \
                const int n = (int)(end - p);                                                                          \
                __builtin_memcpy(tmp, buf + p * in_c, (size_t)n * (size_t)in_c);                                       \
                CONV(tmp, 1, n, in_c, in_zp, w, bias, out_c, mult, shift, out_zp, act_min, act_max,                    \
                     buf + p * out_c);                                                                                 \
            }                                                                                                          \
        }                                                                                                              \
    } while (0)

/* In-place 1x1 conv (stride 1, no padding, groups 1): the output overwrites the input in `buf`, same results as
 * dk_conv1x1_s8.
 *   buf  in:  (in_h, in_w, in_c) HWC;  out: (in_h, in_w, out_c) HWC, both from the start of buf.
 *        It must hold in_h * in_w * max(in_c, out_c) bytes.
 *   tmp  scratch of chunk * in_c bytes (chunk >= 1 pixels; not overlapping buf).
 *   w (out_c, in_c), bias, mult, shift (out_c,): as dk_conv1x1_s8.
 * Pixels go chunk by chunk through tmp. With out_c <= in_c, forward: the output of pixels [p, p + n) ends at
 * (p + n) * out_c <= (p + n) * in_c, where the unread input starts. With out_c > in_c, backward from the last
 * chunk: its output starts at p * out_c >= p * in_c, where the unread input ends. Peak memory: the larger map
 * + one chunk. */
static inline void dk_conv1x1_s8_inplace_ref(int8_t *buf, int in_h, int in_w, int in_c, int32_t in_zp,
                                             const int8_t *w, const int32_t *bias, int out_c, const int32_t *mult,
                                             const int32_t *shift, int32_t out_zp, int32_t act_min, int32_t act_max,
                                             int8_t *tmp, int chunk) {
    DK_CONV1X1_INPLACE_BODY(dk_conv1x1_s8_ref);
}

/* dk_conv1x1_s8_inplace_ref's contract, each chunk through the public (SIMD where built) dk_conv1x1_s8. */
static inline void dk_conv1x1_s8_inplace(int8_t *buf, int in_h, int in_w, int in_c, int32_t in_zp, const int8_t *w,
                                         const int32_t *bias, int out_c, const int32_t *mult, const int32_t *shift,
                                         int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *tmp, int chunk) {
    DK_CONV1X1_INPLACE_BODY(dk_conv1x1_s8);
}

#undef DK_CONV1X1_INPLACE_BODY

#endif /* LEANML_KERNELS_FUSED_H */
