/*
 * leanml_kernels_simd.h -- the SIMD kernels of leanml's deploy engine, written once against the small vector
 * interface of a backend header (leanml_kernels_x86.h today: AVX-512 VNNI or AVX2; an ARM NEON / Helium backend
 * would be one more header defining the same names). Include leanml_kernels.h, not this file.
 *
 * Each `dk_<kernel>_simd` has the signature and the bit-exact results of `dk_<kernel>_ref`:
 *   conv2d, conv1x1, linear  one GEMM driver (dk_simd_conv). Per chunk of DK_SIMD_COB output channels the backend
 *                            may pack the weights (AVX-512: for K <= 512 and >= 8 pixels); per DK_SIMD_P output
 *                            pixels, im2col rows (converted by the backend; padding = in_zp) in K chunks of
 *                            DK_SIMD_KC; the GEMM gives int32 sums, which get the per-channel offset and are
 *                            requantized in vectors of channels.
 *                            An input of <= 4 channels (a stem: K = kh * kw * c) has its own path.
 *   depthwise (+ in place)   per block of DK_SIMD_LANES channels: a ring of padded input rows staged as int16
 *                            x - in_zp (each row once, just before the first output row that needs it; in place, also
 *                            before the outputs overwrite it), then one widening load and one int16-pair multiply-add
 *                            per tap and output pixel (3x3 kernels unrolled). `tmp` is not needed.
 *   add                      lanes of elements; the three multiplications by quantized multipliers in vectors.
 * Other kernels (pooling, clamp, quantize, dequantize) have no SIMD variant: the compiler vectorizes the plain C.
 * Stack use (x86): at most 46 KiB (AVX-512; AVX2: 90 KiB) in the GEMM driver (32 / 72 KiB of packed weights),
 * 66 KiB in the stem kernel, 36 KiB in the others.
 * Shapes the buffers cannot hold (depthwise or stem kernels of more than DK_SIMD_DW_TAPS taps, stem planes of more
 * than DK_SIMD_DW_STAGE / 2 padded pixels, depthwise rows too wide for kh of them in DK_SIMD_DW_STAGE bytes) run
 * the reference kernel (in place) or unstaged code.
 *
 * Backend interface (n <= DK_SIMD_LANES lanes; lanes >= n read 0 and are not written):
 *   DK_SIMD_ISA, DK_SIMD_LANES        the path's name; int32 lanes of dk_vec_t
 *   dk_vec_t, dk_rq_t                 DK_SIMD_LANES int32; per-lane requantization constants
 *   dk_v_set1/add/sub/max/min         int32 lane arithmetic; dk_v_shl_add(a) = a << DK_ADD_LEFT_SHIFT
 *   dk_v_load_i32(p, n), dk_v_load_s8(p, n), dk_v_store_s8(p, v, n), dk_v_load_i16(p), dk_v_bcast_pair(p)
 *   dk_rq_load(mult, shift, n), dk_rq_set1(mult, shift), dk_v_mul_multiplier(x, q)
 *                                                    dk_i32_mul_multiplier per lane, bit for bit
 *   dk_v_mul_multiplier_rs(x, q)                     the same when !q->any_left && !q->any_sat (checked per block)
 *   dk_v_dw_weight(w, n), dk_v_dw_mac(acc, x, wv)    acc += x * w per lane (x an int16 value, or an int16 pair
 *                                                    against a pair of weights)
 *   dk_simd_stage_px(dst, src, n, zp)               DK_SIMD_LANES int16 lanes: src[i] - zp
 *   dk_act_t, DK_SIMD_ROW_ALIGN       GEMM row element (AVX-512: x + 128 as u8; AVX2: x - in_zp as int16); rows of
 *                                     a multiple of ROW_ALIGN elements need no padding at their end
 *   DK_SIMD_PANEL_ROW_ALIGN           the same for the GEMM on packed weights
 *   dk_simd_act_copy/fill/pad         im2col pieces: copy (converted), padding, row end
 *   dk_panel_t, dk_simd_pack, dk_simd_offsets, dk_simd_gemm   packed weights (optional), per-channel offsets, GEMM
 */
#ifndef LEANML_KERNELS_SIMD_H
#define LEANML_KERNELS_SIMD_H

#define DK_SIMD_P 4            /* output pixels per GEMM block */
#define DK_SIMD_COB 64         /* output channels per GEMM chunk (16 * 4: a backend panel holds 64 at most) */
#define DK_SIMD_KC 2048        /* im2col elements per row and K chunk (a multiple of 64) */
#define DK_SIMD_DW_TAPS 49     /* depthwise kernels up to 7x7 */
#define DK_SIMD_DW_STAGE 32768 /* bytes of the depthwise kernels' int16 stage */
#define DK_SIMD_C1_STAGE 65536 /* bytes of the few-channel stem's int16 stage (96x96x3 fits) */

/* dk_i32_requant per lane: clamp(dk_i32_mul_multiplier(acc) + zp, lo, hi), zp/lo/hi broadcast. */
static inline dk_vec_t dk_v_requant(dk_vec_t acc, const dk_rq_t *q, dk_vec_t zp, dk_vec_t lo, dk_vec_t hi) {
    return dk_v_min(dk_v_max(dk_v_add(dk_v_mul_multiplier(acc, q), zp), lo), hi);
}

/* dk_v_requant for constants without left shifts or INT32_MIN multipliers (dk_v_mul_multiplier_rs). */
static inline dk_vec_t dk_v_requant_rs(dk_vec_t acc, const dk_rq_t *q, dk_vec_t zp, dk_vec_t lo, dk_vec_t hi) {
    return dk_v_min(dk_v_max(dk_v_add(dk_v_mul_multiplier_rs(acc, q), zp), lo), hi);
}

/* One im2col row: elements [k0, k0 + nk) of the receptive field of the output pixel whose window starts at input
 * (y0, x0), group g, in OHWI order (tap-major, then the cpg channels of the group); outside taps hold in_zp. */
static inline void dk_simd_im2col(dk_act_t *dst, const int8_t *in, int in_h, int in_w, int in_c, int32_t in_zp,
                                  int kh, int kw, int y0, int x0, int cpg, int g, int32_t k0, int32_t nk) {
    if (cpg == in_c && k0 == 0 && nk == (int32_t)kh * kw * cpg && y0 >= 0 && y0 + kh <= in_h && x0 >= 0 &&
        x0 + kw <= in_w) { /* the whole window inside, groups 1: kh runs of kw * in_c bytes */
        const int32_t run = (int32_t)kw * in_c;
        for (int ky = 0; ky < kh; ++ky)
            dk_simd_act_copy(dst + ky * run, in + ((int32_t)(y0 + ky) * in_w + x0) * in_c, run, in_zp);
        dk_simd_act_pad(dst, nk);
        return;
    }
    int32_t t = k0 / cpg, pos = 0;
    int32_t ci = k0 - t * cpg;
    while (pos < nk) {
        const int ky = (int)(t / kw), kx = (int)(t - (int32_t)ky * kw), iy = y0 + ky, ix = x0 + kx;
        const int row_in = iy >= 0 && iy < in_h, inside = row_in && ix >= 0 && ix < in_w;
        int32_t n = cpg - ci < nk - pos ? cpg - ci : nk - pos;
        int taps = 1;
        if (cpg == in_c) /* groups 1: the next taps of this kernel row continue the same memory run */
            while (kx + taps < kw && n + cpg <= nk - pos && (row_in && ix + taps >= 0 && ix + taps < in_w) == inside) {
                n += cpg;
                ++taps;
            }
        if (inside)
            dk_simd_act_copy(dst + pos, in + ((int32_t)iy * in_w + ix) * in_c + (int32_t)g * cpg + ci, n, in_zp);
        else
            dk_simd_act_fill(dst + pos, n, in_zp);
        pos += n;
        t += taps;
        ci = 0;
    }
    dk_simd_act_pad(dst, nk);
}

/* Extent of a staged padded plane along one axis: in + 2 p, or more when the caller's output size reads past the
 * far border (asymmetric padding, as a patch at an image's bottom/right edge needs): rows beyond in + p are zeros. */
static inline int32_t dk_simd_span(int in, int p, int out, int s, int k) {
    const int32_t sym = (int32_t)in + 2 * p, need = (int32_t)(out - 1) * s + k;
    return sym > need ? sym : need;
}

/* Conv of an input of few channels (c <= 4, groups 1: an RGB or grayscale stem, whose K = kh * kw * c is too short
 * for the GEMM to pay): the padded input plane is staged as int16 x - in_zp (HWC, so a kernel row's receptive field
 * is kw * c consecutive elements, in the weights' OHWI order), then each output pixel accumulates DK_SIMD_LANES
 * output channels, two elements per multiply-add (the pair broadcast against pairs of weights; an odd row's last
 * pair reads one element past it against a weight 0). 0 when the plane does not fit DK_SIMD_C1_STAGE. */
#if defined(__GNUC__) && !defined(__clang__)
/* GCC's -Warray-bounds analyses constprop clones of this function made for another conv's weight array (a call
 * the caller's stem test never takes at run time) and reports reads past it: a false positive at -O3. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#endif
static inline int dk_simd_conv_c1(const int8_t *in, int in_h, int in_w, int c, int32_t in_zp, const int8_t *w,
                                  const int32_t *bias, int out_c, int kh, int kw, int sh, int sw, int ph, int pw,
                                  const int32_t *mult, const int32_t *shift, int32_t out_zp, int32_t act_min,
                                  int32_t act_max, int8_t *out, int out_h, int out_w) {
    const int32_t wid = dk_simd_span(in_w, pw, out_w, sw, kw), kwc = (int32_t)kw * c, kp = (kwc + 1) / 2;
    const int32_t padded = dk_simd_span(in_h, ph, out_h, sh, kh) * wid * c, rs = wid * c;
    if (kh * kp > DK_SIMD_DW_TAPS || padded + 1 > DK_SIMD_C1_STAGE / 2) return 0;
    int16_t st[DK_SIMD_C1_STAGE / 2];
    dk_vec_t wv[DK_SIMD_DW_TAPS];
    const dk_vec_t zp = dk_v_set1(out_zp), lo = dk_v_set1(act_min), hi = dk_v_set1(act_max);
    for (int32_t i = 0; i <= padded; ++i) st[i] = 0; /* + 1: the pair of a window's last odd element */
    for (int y = 0; y < in_h; ++y) {
        const int8_t *src = in + (int32_t)y * in_w * c;
        int16_t *dst = st + ((int32_t)(y + ph) * wid + pw) * c;
        for (int32_t i = 0; i < (int32_t)in_w * c; ++i) dst[i] = (int16_t)(src[i] - in_zp);
    }
    for (int c0 = 0; c0 < out_c; c0 += DK_SIMD_LANES) {
        const int n = out_c - c0 < DK_SIMD_LANES ? out_c - c0 : DK_SIMD_LANES;
        for (int ky = 0; ky < kh; ++ky)
            for (int j = 0; j < kp; ++j) { /* lane co: elements (2j, 2j + 1 or 0) of kernel row ky as an int16 pair */
                int32_t pair[DK_SIMD_LANES];
                for (int l = 0; l < DK_SIMD_LANES; ++l) {
                    const int8_t *wr = w + ((int32_t)(c0 + (l < n ? l : 0)) * kh + ky) * kwc;
                    const int32_t w0 = l < n ? wr[2 * j] : 0, w1 = l < n && 2 * j + 1 < kwc ? wr[2 * j + 1] : 0;
                    pair[l] = (int32_t)((uint32_t)(uint16_t)w0 | (uint32_t)(uint16_t)w1 << 16);
                }
                wv[ky * kp + j] = dk_v_load_i32(pair, DK_SIMD_LANES);
            }
        const dk_vec_t b = bias ? dk_v_load_i32(bias + c0, n) : dk_v_set1(0);
        const dk_rq_t q = dk_rq_load(mult + c0, shift + c0, n);
        for (int oy = 0; oy < out_h; ++oy)
            for (int ox = 0; ox < out_w; ++ox) {
                const int16_t *win = st + (int32_t)oy * sh * rs + (int32_t)ox * sw * c;
                dk_vec_t acc = b;
                for (int ky = 0; ky < kh; ++ky)
                    for (int j = 0; j < kp; ++j)
                        acc = dk_v_dw_mac(acc, dk_v_bcast_pair(win + (int32_t)ky * rs + 2 * j), wv[ky * kp + j]);
                dk_v_store_s8(out + ((int32_t)oy * out_w + ox) * out_c + c0, dk_v_requant(acc, &q, zp, lo, hi), n);
            }
    }
    return 1;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* The GEMM driver of conv2d / conv1x1 / linear: dk_conv2d_s8_ref's arguments and results. Per chunk of DK_SIMD_COB
 * output channels: offsets and (if the backend wants) packed weights; per DK_SIMD_P output pixels: their im2col
 * rows in K chunks of DK_SIMD_KC, the GEMM into int32 sums, and the requantization of each pixel's channels. */
static inline void dk_simd_conv(const int8_t *in, int in_h, int in_w, int in_c, int32_t in_zp, const int8_t *w,
                                const int32_t *bias, int out_c, int kh, int kw, int sh, int sw, int ph, int pw,
                                int groups, const int32_t *mult, const int32_t *shift, int32_t out_zp,
                                int32_t act_min, int32_t act_max, int8_t *out, int out_h, int out_w) {
    const int cpg = in_c / groups, opg = out_c / groups;
    const int32_t k = (int32_t)kh * kw * cpg, n_pix = (int32_t)out_h * out_w;
    const int32_t kc = k < DK_SIMD_KC ? k : DK_SIMD_KC;
    /* an unpadded, unstrided 1x1 kernel: a block's rows are consecutive input pixels, converted in one copy */
    const int flat1x1 = kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 && groups == 1 &&
                        k <= DK_SIMD_KC; /* flat when the rows also need no padding (per chunk: packed or not) */
    const dk_vec_t zp = dk_v_set1(out_zp), lo = dk_v_set1(act_min), hi = dk_v_set1(act_max);
    dk_act_t a[DK_SIMD_P * DK_SIMD_KC];           /* (P, KC) im2col rows */
    const dk_act_t *rows[DK_SIMD_P];
    int32_t acc[DK_SIMD_P * DK_SIMD_COB], off[DK_SIMD_COB]; /* (P, COB) sums; per-channel offsets */
    dk_vec_t offset[DK_SIMD_COB / DK_SIMD_LANES];
    dk_rq_t rq[DK_SIMD_COB / DK_SIMD_LANES];
    dk_panel_t panel; /* weights of one chunk, re-laid out when the backend wants */
    for (int g = 0; g < groups; ++g) {
        for (int co0 = g * opg; co0 < (g + 1) * opg; co0 += DK_SIMD_COB) {
            const int nco = (g + 1) * opg - co0 < DK_SIMD_COB ? (g + 1) * opg - co0 : DK_SIMD_COB;
            const int8_t *wc = w + (int32_t)co0 * k;
            const dk_panel_t *pn = dk_simd_pack(&panel, wc, k, nco, n_pix) ? &panel : 0; /* then k <= KC */
            const int flat = flat1x1 && k % (pn ? DK_SIMD_PANEL_ROW_ALIGN : DK_SIMD_ROW_ALIGN) == 0;
            dk_simd_offsets(pn, wc, k, nco, bias ? bias + co0 : bias, in_zp, off);
            int rs = 1; /* no left shifts, no INT32_MIN multipliers in the chunk: dk_v_requant_rs */
            for (int j = 0; j < nco; j += DK_SIMD_LANES) {
                const int n = nco - j < DK_SIMD_LANES ? nco - j : DK_SIMD_LANES;
                offset[j / DK_SIMD_LANES] = dk_v_load_i32(off + j, n);
                rq[j / DK_SIMD_LANES] = dk_rq_load(mult + co0 + j, shift + co0 + j, n);
                rs &= !rq[j / DK_SIMD_LANES].any_left && !rq[j / DK_SIMD_LANES].any_sat;
            }
            for (int32_t p0 = 0; p0 < n_pix; p0 += DK_SIMD_P) {
                const int np = n_pix - p0 < DK_SIMD_P ? (int)(n_pix - p0) : DK_SIMD_P;
                for (int32_t k0 = 0; k0 < k; k0 += kc) {
                    const int32_t nk = k - k0 < kc ? k - k0 : kc;
                    if (flat) {
                        dk_simd_act_copy(a, in + p0 * in_c, np * k, in_zp);
                        for (int p = 0; p < np; ++p) rows[p] = a + p * k;
                    } else {
                        for (int p = 0; p < np; ++p) {
                            const int oy = (int)((p0 + p) / out_w), ox = (int)(p0 + p - (int32_t)oy * out_w);
                            dk_simd_im2col(a + p * DK_SIMD_KC, in, in_h, in_w, in_c, in_zp, kh, kw, oy * sh - ph,
                                           ox * sw - pw, cpg, g, k0, nk);
                            rows[p] = a + p * DK_SIMD_KC;
                        }
                    }
                    dk_simd_gemm(rows, np, nk, wc + k0, k, nco, pn, acc, DK_SIMD_COB, k0 > 0);
                }
                for (int p = 0; p < np; ++p) { /* whole vectors, then the chunk's tail */
                    int8_t *o = out + (p0 + p) * out_c + co0;
                    const int32_t *ap = acc + p * DK_SIMD_COB;
                    int j = 0, jv = 0;
                    if (rs)
                        for (; j + DK_SIMD_LANES <= nco; j += DK_SIMD_LANES, ++jv)
                            dk_v_store_s8(o + j, dk_v_requant_rs(dk_v_add(dk_v_load_i32(ap + j, DK_SIMD_LANES), offset[jv]),
                                                                 &rq[jv], zp, lo, hi), DK_SIMD_LANES);
                    for (; j < nco; j += DK_SIMD_LANES, ++jv) {
                        const int n = nco - j < DK_SIMD_LANES ? nco - j : DK_SIMD_LANES;
                        const dk_vec_t v = dk_v_add(dk_v_load_i32(ap + j, n), offset[jv]);
                        dk_v_store_s8(o + j, dk_v_requant(v, &rq[jv], zp, lo, hi), n);
                    }
                }
            }
        }
    }
}

/* Depthwise conv of n <= DK_SIMD_LANES channels: channel j of input pixel p at in[p * in_cs + j], of output pixel
 * p at out[p * out_cs + j]; w[t * c + j] (tap t), bias/mult/shift[j]. kh * kw <= DK_SIMD_DW_TAPS. */
static inline void dk_simd_dw_block(const int8_t *in, int32_t in_cs, int in_h, int in_w, int32_t in_zp,
                                    const int8_t *w, int c, int n, const int32_t *bias, int kh, int kw, int sh, int sw,
                                    int ph, int pw, const int32_t *mult, const int32_t *shift, int32_t out_zp,
                                    int32_t act_min, int32_t act_max, int8_t *out, int32_t out_cs, int out_h,
                                    int out_w) {
    dk_vec_t wv[DK_SIMD_DW_TAPS];
    for (int t = 0; t < kh * kw; ++t) wv[t] = dk_v_dw_weight(w + t * c, n);
    const dk_vec_t b = bias ? dk_v_load_i32(bias, n) : dk_v_set1(0), izp = dk_v_set1(in_zp);
    const dk_vec_t zp = dk_v_set1(out_zp), lo = dk_v_set1(act_min), hi = dk_v_set1(act_max);
    const dk_rq_t q = dk_rq_load(mult, shift, n);
    for (int oy = 0; oy < out_h; ++oy) {
        const dk_window_t wy = dk_window_clip(oy, sh, ph, in_h, kh);
        for (int ox = 0; ox < out_w; ++ox) {
            const dk_window_t wx = dk_window_clip(ox, sw, pw, in_w, kw);
            dk_vec_t acc = b;
            for (int ky = wy.k0; ky < wy.k1; ++ky) {
                const int32_t row = (int32_t)(wy.start + ky) * in_w + wx.start;
                for (int kx = wx.k0; kx < wx.k1; ++kx)
                    acc = dk_v_dw_mac(acc, dk_v_sub(dk_v_load_s8(in + (row + kx) * in_cs, n), izp), wv[ky * kw + kx]);
            }
            dk_v_store_s8(out + ((int32_t)oy * out_w + ox) * out_cs, dk_v_requant(acc, &q, zp, lo, hi), n);
        }
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* The kernels: dk_<kernel>_ref's contracts                                                                 */
/* ------------------------------------------------------------------------------------------------------ */

/* dk_conv2d_s8_ref: single-channel inputs, and those of <= 4 channels into one vector of output channels (vww's
 * 3 -> 8 stem), by dk_simd_conv_c1 (when its stage holds the plane); else the GEMM. */
static inline void dk_conv2d_s8_simd(const int8_t *in, int in_h, int in_w, int in_c, int32_t in_zp, const int8_t *w,
                                     const int32_t *bias, int out_c, int kh, int kw, int sh, int sw, int ph, int pw,
                                     int groups, const int32_t *mult, const int32_t *shift, int32_t out_zp,
                                     int32_t act_min, int32_t act_max, int8_t *out, int out_h, int out_w) {
    /* more output channels: the GEMM's two vectors per broadcast win (ResNet-8's 3 -> 16 stem) */
    const int stem = in_c == 1 || (in_c <= 4 && groups == 1 && out_c <= DK_SIMD_LANES);
    if (stem && kh * kw > 1 &&
        dk_simd_conv_c1(in, in_h, in_w, in_c, in_zp, w, bias, out_c, kh, kw, sh, sw, ph, pw, mult, shift, out_zp,
                        act_min, act_max, out, out_h, out_w))
        return;
    dk_simd_conv(in, in_h, in_w, in_c, in_zp, w, bias, out_c, kh, kw, sh, sw, ph, pw, groups, mult, shift, out_zp,
                 act_min, act_max, out, out_h, out_w);
}

/* dk_conv1x1_s8_ref: the GEMM with a 1x1 kernel (its im2col rows are converted copies of the input pixels). */
static inline void dk_conv1x1_s8_simd(const int8_t *in, int in_h, int in_w, int in_c, int32_t in_zp, const int8_t *w,
                                      const int32_t *bias, int out_c, const int32_t *mult, const int32_t *shift,
                                      int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out) {
    dk_simd_conv(in, in_h, in_w, in_c, in_zp, w, bias, out_c, 1, 1, 1, 1, 0, 0, 1, mult, shift, out_zp, act_min,
                 act_max, out, in_h, in_w);
}

/* dk_linear_s8_ref: the GEMM of one pixel (in_features channels) with out_features weight rows. */
static inline void dk_linear_s8_simd(const int8_t *in, int in_features, int32_t in_zp, const int8_t *w,
                                     const int32_t *bias, int out_features, const int32_t *mult, const int32_t *shift,
                                     int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out) {
    dk_simd_conv(in, 1, 1, in_features, in_zp, w, bias, out_features, 1, 1, 1, 1, 0, 0, 1, mult, shift, out_zp,
                 act_min, act_max, out, 1, 1);
}

/* One padded row pr (0 <= pr < the plane's height) of a depthwise stage: channels [0, n) of input row pr - ph
 * (pixel stride in_cs) as int16 x - in_zp in wid pixels of DK_SIMD_LANES lanes; padding (the ring, rows outside
 * the input) is 0, i.e. in_zp. */
static inline void dk_simd_dw_stage_row(int16_t *row, const int8_t *in, int32_t in_cs, int in_h, int in_w, int ph,
                                        int pw, int32_t wid, int n, int32_t in_zp, int32_t pr) {
    const int y = (int)(pr - ph);
    if (y < 0 || y >= in_h) {
        for (int32_t i = 0; i < wid * DK_SIMD_LANES; ++i) row[i] = 0;
        return;
    }
    for (int32_t i = 0; i < (int32_t)pw * DK_SIMD_LANES; ++i) row[i] = 0; /* left ring */
    for (int32_t i = (int32_t)(pw + in_w) * DK_SIMD_LANES; i < wid * DK_SIMD_LANES; ++i) row[i] = 0; /* right */
    const int8_t *src = in + (int32_t)y * in_w * in_cs;
    int16_t *dst = row + (int32_t)pw * DK_SIMD_LANES;
    if (n == DK_SIMD_LANES) /* whole blocks: the lane count a constant, two pixels per iteration */
        for (int x = 0; x < in_w; x += 2) {
            dk_simd_stage_px(dst + (int32_t)x * DK_SIMD_LANES, src + (int32_t)x * in_cs, DK_SIMD_LANES, in_zp);
            if (x + 1 < in_w)
                dk_simd_stage_px(dst + (int32_t)(x + 1) * DK_SIMD_LANES, src + (int32_t)(x + 1) * in_cs, DK_SIMD_LANES,
                                 in_zp);
        }
    else
        for (int x = 0; x < in_w; ++x)
            dk_simd_stage_px(dst + (int32_t)x * DK_SIMD_LANES, src + (int32_t)x * in_cs, n, in_zp);
}

/* One output row of a depthwise conv of n <= DK_SIMD_LANES channels from staged rows rp[ky] (dk_simd_dw_stage_row):
 * no border cases, one widening load and one multiply-add per tap; output pixel ox's channel j at
 * out[ox * out_cs + j]. The 3x3 kernels get their own copy (taps unrolled, weights in registers). */
static inline __attribute__((always_inline)) void dk_simd_dw_row(const int16_t *const *rp, const dk_vec_t *wv,
                                                                 dk_vec_t b, const dk_rq_t *q, dk_vec_t zp,
                                                                 dk_vec_t lo, dk_vec_t hi, int kh, int kw, int sw,
                                                                 int n, int8_t *out, int32_t out_cs, int out_w,
                                                                 int rs) {
    for (int ox = 0; ox < out_w; ++ox) {
        const int32_t x0 = (int32_t)ox * sw * DK_SIMD_LANES;
        dk_vec_t acc = b;
        for (int ky = 0; ky < kh; ++ky)
            for (int kx = 0; kx < kw; ++kx)
                acc = dk_v_dw_mac(acc, dk_v_load_i16(rp[ky] + x0 + kx * DK_SIMD_LANES), wv[ky * kw + kx]);
        acc = rs ? dk_v_requant_rs(acc, q, zp, lo, hi) : dk_v_requant(acc, q, zp, lo, hi);
        if (n == DK_SIMD_LANES)
            dk_v_store_s8(out + (int32_t)ox * out_cs, acc, DK_SIMD_LANES);
        else
            dk_v_store_s8(out + (int32_t)ox * out_cs, acc, n);
    }
}
DK_KERNEL void dk_simd_dw_row3x3(const int16_t *const *rp, const dk_vec_t *wv, dk_vec_t b, const dk_rq_t *q,
                                 dk_vec_t zp, dk_vec_t lo, dk_vec_t hi, int sw, int n, int8_t *out, int32_t out_cs,
                                 int out_w) {
    const int rs = !q->any_left && !q->any_sat; /* then the cheaper requantization, decided once per row */
    if (sw == 1 && rs)
        dk_simd_dw_row(rp, wv, b, q, zp, lo, hi, 3, 3, 1, n, out, out_cs, out_w, 1);
    else if (sw == 2 && rs)
        dk_simd_dw_row(rp, wv, b, q, zp, lo, hi, 3, 3, 2, n, out, out_cs, out_w, 1);
    else
        dk_simd_dw_row(rp, wv, b, q, zp, lo, hi, 3, 3, sw, n, out, out_cs, out_w, 0);
}

/* All output rows of a 3x3 depthwise conv from a whole staged plane (rows of row_len int16 from st): one call per
 * channel block, no per-row overhead (small planes: DS-CNN's 25x5, MobileNet's 7x7). */
DK_KERNEL void dk_simd_dw_plane3x3(const int16_t *st, int32_t row_len, const dk_vec_t *wv, dk_vec_t b,
                                   const dk_rq_t *q, dk_vec_t zp, dk_vec_t lo, dk_vec_t hi, int sh, int sw, int n,
                                   int8_t *out, int32_t out_cs, int out_h, int out_w) {
    const int rs = !q->any_left && !q->any_sat;
    for (int oy = 0; oy < out_h; ++oy) {
        const int16_t *rp[3];
        for (int ky = 0; ky < 3; ++ky) rp[ky] = st + ((int32_t)oy * sh + ky) * row_len;
        int8_t *o = out + (int32_t)oy * out_w * out_cs;
        if (sw == 1 && rs)
            dk_simd_dw_row(rp, wv, b, q, zp, lo, hi, 3, 3, 1, n, o, out_cs, out_w, 1);
        else if (sw == 2 && rs)
            dk_simd_dw_row(rp, wv, b, q, zp, lo, hi, 3, 3, 2, n, o, out_cs, out_w, 1);
        else
            dk_simd_dw_row(rp, wv, b, q, zp, lo, hi, 3, 3, sw, n, o, out_cs, out_w, 0);
    }
}

/* Padded rows a depthwise ring stage of DK_SIMD_DW_STAGE bytes holds (0: not even one row fits). */
static inline int32_t dk_simd_dw_ring_rows(int32_t wid) {
    return DK_SIMD_DW_STAGE / (2 * DK_SIMD_LANES) / wid;
}

/* Padded rows that must be staged before output row oy is written: its window's rows and, in place (the output
 * overwrites the input, pixel for pixel), the input rows that hold the pixels it overwrites. */
static inline int32_t dk_simd_dw_need(int oy, int sh, int kh, int ph, int in_h, int in_w, int out_w, int inplace) {
    int32_t need = (int32_t)oy * sh + kh;
    if (inplace) {
        int32_t y = ((int32_t)(oy + 1) * out_w - 1) / in_w; /* the input row of the last pixel it overwrites */
        if (y > in_h - 1) y = in_h - 1;
        if (y + ph + 1 > need) need = y + ph + 1;
    }
    return need;
}

/* Whether the ring stage fits a depthwise conv: kernel taps <= DK_SIMD_DW_TAPS and, for every output row, the rows
 * from its window's first to the last one staged (dk_simd_dw_need) within dk_simd_dw_ring_rows. */
static inline int dk_simd_dw_ring_fits(int in_h, int in_w, int kh, int kw, int sh, int sw, int ph, int pw, int out_h,
                                       int out_w, int inplace) {
    const int32_t cap = dk_simd_dw_ring_rows(dk_simd_span(in_w, pw, out_w, sw, kw));
    if (kh * kw > DK_SIMD_DW_TAPS || cap < kh) return 0;
    for (int oy = 0; oy < out_h; ++oy)
        if (dk_simd_dw_need(oy, sh, kh, ph, in_h, in_w, out_w, inplace) - (int32_t)oy * sh > cap) return 0;
    return 1;
}

/* Depthwise conv of n <= DK_SIMD_LANES channels (input pixel stride in_cs, output out_cs; w[t * c + j]) through a
 * ring of staged rows: each padded input row is staged once, just before the first output row that needs it (in
 * place: also before its pixels are overwritten), so `out` may be `in` (then in_cs == out_cs). A 3x3 kernel whose
 * whole plane fits the stage stages it first and runs all rows in one call. The caller checked
 * dk_simd_dw_ring_fits. */
static inline void dk_simd_dw_ring(int16_t *stage, const int8_t *in, int32_t in_cs, int in_h, int in_w,
                                   int32_t in_zp, const int8_t *w, int c, int n, const int32_t *bias, int kh, int kw,
                                   int sh, int sw, int ph, int pw, const int32_t *mult, const int32_t *shift,
                                   int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out, int32_t out_cs,
                                   int out_h, int out_w, int inplace) {
    const int32_t wid = dk_simd_span(in_w, pw, out_w, sw, kw), hgt = dk_simd_span(in_h, ph, out_h, sh, kh);
    const int32_t cap = dk_simd_dw_ring_rows(wid), row_len = wid * DK_SIMD_LANES;
    dk_vec_t wv[DK_SIMD_DW_TAPS];
    const int16_t *rp[DK_SIMD_DW_TAPS];
    for (int t = 0; t < kh * kw; ++t) wv[t] = dk_v_dw_weight(w + t * c, n);
    const dk_vec_t b = bias ? dk_v_load_i32(bias, n) : dk_v_set1(0);
    const dk_vec_t zp = dk_v_set1(out_zp), lo = dk_v_set1(act_min), hi = dk_v_set1(act_max);
    const dk_rq_t q = dk_rq_load(mult, shift, n);
    if (kh == 3 && kw == 3 && cap >= hgt) { /* the whole plane fits: staged first (in place too), then one call */
        for (int32_t pr = 0; pr < hgt; ++pr)
            dk_simd_dw_stage_row(stage + pr * row_len, in, in_cs, in_h, in_w, ph, pw, wid, n, in_zp, pr);
        dk_simd_dw_plane3x3(stage, row_len, wv, b, &q, zp, lo, hi, sh, sw, n, out, out_cs, out_h, out_w);
        return;
    }
    int32_t staged = 0; /* padded rows [0, staged) are (or were) in the ring, row pr in slot pr % cap */
    for (int oy = 0; oy < out_h; ++oy) {
        int32_t need = dk_simd_dw_need(oy, sh, kh, ph, in_h, in_w, out_w, inplace);
        if (need > hgt) need = hgt;
        for (; staged < need; ++staged)
            dk_simd_dw_stage_row(stage + (staged % cap) * row_len, in, in_cs, in_h, in_w, ph, pw, wid, n, in_zp,
                                 staged);
        for (int ky = 0; ky < kh; ++ky) rp[ky] = stage + (((int32_t)oy * sh + ky) % cap) * row_len;
        int8_t *o = out + (int32_t)oy * out_w * out_cs;
        if (kh == 3 && kw == 3)
            dk_simd_dw_row3x3(rp, wv, b, &q, zp, lo, hi, sw, n, o, out_cs, out_w);
        else
            dk_simd_dw_row(rp, wv, b, &q, zp, lo, hi, kh, kw, sw, n, o, out_cs, out_w, 0);
    }
}

/* dk_depthwise_conv2d_s8_ref: blocks of DK_SIMD_LANES channels through a ring of staged rows (rows too wide for
 * the ring: unstaged; kernels of more than DK_SIMD_DW_TAPS taps: the reference). */
static inline void dk_depthwise_conv2d_s8_simd(const int8_t *in, int in_h, int in_w, int c, int32_t in_zp,
                                               const int8_t *w, const int32_t *bias, int kh, int kw, int sh, int sw,
                                               int ph, int pw, const int32_t *mult, const int32_t *shift,
                                               int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out,
                                               int out_h, int out_w) {
    if (kh * kw > DK_SIMD_DW_TAPS) {
        dk_depthwise_conv2d_s8_ref(in, in_h, in_w, c, in_zp, w, bias, kh, kw, sh, sw, ph, pw, mult, shift, out_zp,
                                   act_min, act_max, out, out_h, out_w);
        return;
    }
    const int ring = dk_simd_dw_ring_fits(in_h, in_w, kh, kw, sh, sw, ph, pw, out_h, out_w, 0);
    int16_t stage[DK_SIMD_DW_STAGE / 2];
    for (int c0 = 0; c0 < c; c0 += DK_SIMD_LANES) {
        const int n = c - c0 < DK_SIMD_LANES ? c - c0 : DK_SIMD_LANES;
        const int32_t *b = bias ? bias + c0 : bias;
        if (ring)
            dk_simd_dw_ring(stage, in + c0, c, in_h, in_w, in_zp, w + c0, c, n, b, kh, kw, sh, sw, ph, pw, mult + c0,
                            shift + c0, out_zp, act_min, act_max, out + c0, c, out_h, out_w, 0);
        else /* rows too wide for the ring: read the input in place, border taps skipped */
            dk_simd_dw_block(in + c0, c, in_h, in_w, in_zp, w + c0, c, n, b, kh, kw, sh, sw, ph, pw, mult + c0,
                             shift + c0, out_zp, act_min, act_max, out + c0, c, out_h, out_w);
    }
}

/* In place: per block of DK_SIMD_LANES channels, the ring stages each input row before the block's outputs
 * overwrite it (so tmp is not used); other channels are untouched, as in dk_depthwise_conv2d_s8_inplace_ref. */
static inline void dk_depthwise_conv2d_s8_inplace_simd(int8_t *buf, int in_h, int in_w, int c, int32_t in_zp,
                                                       const int8_t *w, const int32_t *bias, int kh, int kw, int sh,
                                                       int sw, int ph, int pw, const int32_t *mult,
                                                       const int32_t *shift, int32_t out_zp, int32_t act_min,
                                                       int32_t act_max, int out_h, int out_w, int8_t *tmp) {
    if (!dk_simd_dw_ring_fits(in_h, in_w, kh, kw, sh, sw, ph, pw, out_h, out_w, 1)) {
        dk_depthwise_conv2d_s8_inplace_ref(buf, in_h, in_w, c, in_zp, w, bias, kh, kw, sh, sw, ph, pw, mult, shift,
                                           out_zp, act_min, act_max, out_h, out_w, tmp);
        return;
    }
    int16_t stage[DK_SIMD_DW_STAGE / 2];
    for (int c0 = 0; c0 < c; c0 += DK_SIMD_LANES) {
        const int n = c - c0 < DK_SIMD_LANES ? c - c0 : DK_SIMD_LANES;
        dk_simd_dw_ring(stage, buf + c0, c, in_h, in_w, in_zp, w + c0, c, n, bias ? bias + c0 : bias, kh, kw, sh, sw,
                        ph, pw, mult + c0, shift + c0, out_zp, act_min, act_max, buf + c0, c, out_h, out_w, 1);
    }
}

/* Residual add: lanes of elements, the three multiplications by quantized multipliers in vectors. (Looking the two
 * rescaled inputs up in 256-entry tables by gathers was slower on Zen 4.) */
static inline void dk_add_s8_simd(const int8_t *a, const int8_t *b, int n, int32_t a_zp, int32_t a_mult,
                                  int32_t a_shift, int32_t b_zp, int32_t b_mult, int32_t b_shift, int32_t out_mult,
                                  int32_t out_shift, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out) {
    const dk_rq_t qa = dk_rq_set1(a_mult, a_shift), qb = dk_rq_set1(b_mult, b_shift);
    const dk_rq_t qo = dk_rq_set1(out_mult, out_shift);
    const dk_vec_t azp = dk_v_set1(a_zp), bzp = dk_v_set1(b_zp);
    const dk_vec_t zp = dk_v_set1(out_zp), lo = dk_v_set1(act_min), hi = dk_v_set1(act_max);
    int i = 0;
    if (!qa.any_left && !qa.any_sat && !qb.any_left && !qb.any_sat && !qo.any_left && !qo.any_sat)
        for (; i + DK_SIMD_LANES <= n; i += DK_SIMD_LANES) { /* whole vectors, right shifts only */
            const dk_vec_t sa = dk_v_shl_add(dk_v_sub(dk_v_load_s8(a + i, DK_SIMD_LANES), azp));
            const dk_vec_t sb = dk_v_shl_add(dk_v_sub(dk_v_load_s8(b + i, DK_SIMD_LANES), bzp));
            const dk_vec_t total = dk_v_add(dk_v_mul_multiplier_rs(sa, &qa), dk_v_mul_multiplier_rs(sb, &qb));
            dk_v_store_s8(out + i, dk_v_requant_rs(total, &qo, zp, lo, hi), DK_SIMD_LANES);
        }
    for (; i < n; i += DK_SIMD_LANES) {
        const int m = n - i < DK_SIMD_LANES ? n - i : DK_SIMD_LANES;
        const dk_vec_t sa = dk_v_shl_add(dk_v_sub(dk_v_load_s8(a + i, m), azp));
        const dk_vec_t sb = dk_v_shl_add(dk_v_sub(dk_v_load_s8(b + i, m), bzp));
        const dk_vec_t total = dk_v_add(dk_v_mul_multiplier(sa, &qa), dk_v_mul_multiplier(sb, &qb));
        dk_v_store_s8(out + i, dk_v_requant(total, &qo, zp, lo, hi), m);
    }
}

#endif /* LEANML_KERNELS_SIMD_H */
