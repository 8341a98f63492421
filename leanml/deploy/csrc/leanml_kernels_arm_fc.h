/*
 * leanml_kernels_arm_fc.h -- linear layers on code-generator-arranged weights (dk_linear_s8_il4, _il4_pt: 4x4 groups, one LDM per 16 weights).
 * Part of the Cortex-M DSP kernels: included by leanml_kernels_arm.h after its primitives. Include leanml_kernels.h, not this file.
 */
#ifndef LEANML_KERNELS_ARM_FC_H
#define LEANML_KERNELS_ARM_FC_H

/* ------------------------------------------------------------------------------------------------------ */
/* Linear on code-generator-arranged weights (optional entry points)                                        */
/* ------------------------------------------------------------------------------------------------------ */

/* Bytes of dk_linear_s8_il4's weight array: out_features rounded up to 4 rows, in_features up to 4 columns. */
#define DK_IL4_BYTES(in_features, out_features) ((((out_features) + 3) / 4) * 4 * (((in_features) + 3) / 4) * 4)

#define DK_ARM_IL4_ROW(v, acc)                                                                                         \
    "sxtb16 r0, " v ", ror #8\n\t"                                                                                     \
    "sxtb16 " v ", " v "\n\t"                                                                                          \
    "smlad " acc ", lr, " v ", " acc "\n\t"                                                                            \
    "smlad " acc ", r12, r0, " acc "\n\t"
#define DK_ARM_IL4_ROWS                                                                                                \
    "ldm r2!, {r4, r5, r6, r7}\n\t" DK_ARM_IL4_ROW("r4", "r8") DK_ARM_IL4_ROW("r5", "r9")                              \
        DK_ARM_IL4_ROW("r6", "r10") DK_ARM_IL4_ROW("r7", "r11")
/* one group of 4 inputs times 4 rows: staged int16 pairs (x0, x2), (x1, x3) (18 instructions per 16 MACs), or the
 * raw int8 word sign-extended in registers (20) */
#define DK_ARM_IL4_STAGED "ldrd lr, r12, [r1], #8\n\t" DK_ARM_IL4_ROWS
#define DK_ARM_IL4_RAW                                                                                                 \
    "ldr r12, [r1], #4\n\t"                                                                                            \
    "sxtb16 lr, r12\n\t"                                                                                               \
    "sxtb16 r12, r12, ror #8\n\t" DK_ARM_IL4_ROWS

/* acc[0..3] += 4 interleaved rows times ng groups of 4 inputs (the C fallback's loop: raw int8 input). */
static inline __attribute__((always_inline)) void dk_arm_mac_il4(const int8_t *x, const int8_t *w, int32_t ng,
                                                                 int32_t *acc) {
    register int32_t *pa __asm__("r0") = acc;
    register const int8_t *pi __asm__("r1") = x;
    register const int8_t *pw __asm__("r2") = w;
    register int32_t pn __asm__("r3") = ng;
    __asm__ volatile("push {r0}\n\t"
                     "ldm r0, {r8, r9, r10, r11}\n\t"
                     "1:\n\t" DK_ARM_IL4_RAW "subs r3, r3, #1\n\t"
                     "bne 1b\n\t"
                     "pop {r0}\n\t"
                     "stm r0, {r8, r9, r10, r11}"
                     : "+r"(pa), "+r"(pi), "+r"(pw), "+r"(pn)
                     :
                     : "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
}

/* The C form of the linear kernels below: rows [0, out_features) of w_il4 / bias_zp / out (any shape, shift and
 * range); mult and shift advance by ms (1 per channel, 0 per tensor). Out of line: the assembly needs r7, which a
 * caller with variable-length arrays keeps as its frame pointer. */
static __attribute__((noinline)) void dk_arm_il4_c(const int8_t *in, int32_t k, const int8_t *w_il4,
                                                   const int32_t *bias_zp, int out_features, const int32_t *mult,
                                                   const int32_t *shift, int ms, int32_t out_zp, int32_t act_min,
                                                   int32_t act_max, int8_t *out, int fast) {
    const int32_t ng = k >> 2, nt = k & 3, c = 1 + 2 * out_zp;
    for (int o = 0; o < out_features; o += 4, w_il4 += 16 * (ng + (nt != 0))) {
        const int n = out_features - o < 4 ? out_features - o : 4;
        int32_t acc[4] = {0, 0, 0, 0};
        for (int j = 0; j < n; ++j) acc[j] = bias_zp[o + j];
        if (ng) dk_arm_mac_il4(in, w_il4, ng, acc);
        for (int32_t t = 0; t < nt; ++t) /* the partial last group */
            for (int j = 0; j < 4; ++j) acc[j] += (int32_t)in[4 * ng + t] * w_il4[16 * ng + 4 * j + t];
        for (int j = 0; j < n; ++j) {
            const int32_t m = mult[(o + j) * ms], s = shift[(o + j) * ms];
            out[o + j] = dk_arm_requant(acc[j], m, s, fast, c, out_zp, act_min, act_max);
        }
    }
}

/* The parameters of dk_arm_il4_asm (offsets in the comments: the assembly reads them). */
typedef struct {
    const int8_t *in;     /* +0 */
    int32_t ng;           /* +4: in_features / 4 (in_features a multiple of 4) */
    const int8_t *w;      /* +8: w_il4 */
    const int32_t *bias;  /* +12: bias_zp */
    int8_t *out;          /* +16 */
    int32_t blocks;       /* +20: 4-row blocks, >= 1 */
    int32_t mode;         /* +24: bit 0: input staged; bit 1: the requantization loop (else per tensor, range
                           * [-128, 127], e = -shift in 2..24) */
    union {
        int32_t v;
        const int32_t *p;
    } m, e;               /* +28, +32: mult and e - 1; the loop: mult[] and shift[] (every shift <= -2) */
    int32_t c2, k;        /* +36, +40: C2 = c << (e - 2) and K = 2^30 - (C2 << 31) mod 2^32 with c = 1 + 2 out_zp;
                           * the loop: c and the mult[] / shift[] step in bytes (4 per channel, 0 per tensor) */
    int32_t lo, hi;       /* +44, +48: act_min, act_max */
} dk_arm_il4_t;

/* Per tensor, one output from the accumulator `a` (r4 m, r5 e - 1, r6 C2, r7 K): with s = a >> 31, the 64-bit
 * (C2 + s) : (K + (C2 + s) << 31) is C2 * 2^32 + (a < 0 ? -2^30 : 2^30), so after SMLAL the high word is
 * (Q >> 32) + c << (e - 2) (Q of the header comment), and (Q >> 32 >> (e - 2) + c) >> 1 is one shift by e - 1
 * (floors compose). No overflow: |Q >> 32| <= 2^30 and |C2| < 2^30 for e <= 24. */
#define DK_ARM_IL4_RQ(a)                                                                                               \
    "add r1, r6, " a ", asr #31\n\t"                                                                                   \
    "add r0, r7, r1, lsl #31\n\t"                                                                                      \
    "smlal r0, r1, " a ", r4\n\t"                                                                                      \
    "asr r1, r1, r5\n\t"                                                                                               \
    "ssat r1, #8, r1\n\t"
/* the activation range (r3 act_min, lr act_max) on the byte: SSUB8's GE flag picks with SEL */
#define DK_ARM_IL4_CLAMP                                                                                               \
    "ssub8 r0, r1, r3\n\t"                                                                                             \
    "sel r1, r1, r3\n\t"                                                                                               \
    "ssub8 r0, lr, r1\n\t"                                                                                             \
    "sel r1, r1, lr\n\t"
#define DK_ARM_IL4_STORE "strb r1, [r12], #1\n\t"

/* All blocks of 4 rows in one assembly routine: the input staged once on the stack (8 * ng bytes) when mode & 1;
 * per block the 4 accumulators start from bias_zp, the group loop is unrolled 4 times (entered at the group
 * count's remainder: Duff's device) and the 4 outputs are requantized in registers. A frame of 14 words at sp:
 *   +0 x (staged or raw input), +4 group quads, +8 bias, +12 out, +16 w end, +20 loop entry | 1,
 *   +24 requantization entry | 1, +28 .. +48 the struct's m .. hi, +52 the caller's sp.
 * Registers in the loop: r0 temp, r1 x, r2 w, r3 quads, r4-r7 weights, r8-r11 accumulators, r12, lr inputs. */
static __attribute__((noinline, noclone)) void dk_arm_il4_asm(const dk_arm_il4_t *p) {
    register const dk_arm_il4_t *p0 __asm__("r0") = p;
    __asm__ volatile(
        "mov r10, sp\n\t"
        "ldrd r1, r3, [r0]\n\t" /* in, ng */
        "ldr r2, [r0, #24]\n\t" /* mode */
        "mov r11, r1\n\t"
        "tst r2, #1\n\t"
        "beq 1f\n\t"
        "sub sp, sp, r3, lsl #3\n\t" /* the staged input: (x0, x2), (x1, x3) per group */
        "mov r11, sp\n\t"
        "mov r12, sp\n\t"
        "mov lr, r3\n\t"
        "2:\n\t"
        "ldr r4, [r1], #4\n\t"
        "sxtb16 r5, r4\n\t"
        "sxtb16 r4, r4, ror #8\n\t"
        "strd r5, r4, [r12], #8\n\t"
        "subs lr, lr, #1\n\t"
        "bne 2b\n\t"
        "1:\n\t"
        "add r1, r0, #28\n\t"
        "ldm r1, {r4, r5, r6, r7, r8, r9}\n\t" /* m, e, c2, k, lo, hi */
        "push {r4, r5, r6, r7, r8, r9, r10}\n\t"
        "mov r4, r11\n\t" /* x */
        "add r5, r3, #3\n\t"
        "lsr r5, r5, #2\n\t" /* quads */
        "ldr r6, [r0, #12]\n\t"
        "ldr r7, [r0, #16]\n\t"
        "ldr r8, [r0, #20]\n\t"
        "ldr r1, [r0, #8]\n\t"
        "mul r8, r8, r3\n\t"
        "add r8, r1, r8, lsl #4\n\t" /* w end */
        "rsb r9, r3, #0\n\t"
        "and r9, r9, #3\n\t" /* the loop is entered at group (-ng) & 3 of 4 */
        "adr r11, 20f\n\t"
        "adr r12, 21f\n\t"
        "tst r2, #1\n\t"
        "bne 3f\n\t"
        "adr r11, 30f\n\t"
        "adr r12, 31f\n\t"
        "3:\n\t"
        "sub r12, r12, r11\n\t"
        "mla r9, r9, r12, r11\n\t"
        "orr r9, r9, #1\n\t"
        "adr r10, 40f\n\t"
        "tst r2, #2\n\t"
        "beq 4f\n\t"
        "adr r10, 41f\n\t"
        "4:\n\t"
        "orr r10, r10, #1\n\t"
        "push {r4, r5, r6, r7, r8, r9, r10}\n\t"
        "mov r2, r1\n\t"
        "b 50f\n\t"
        /* staged groups */
        "20:\n\t" DK_ARM_IL4_STAGED "21:\n\t" DK_ARM_IL4_STAGED DK_ARM_IL4_STAGED DK_ARM_IL4_STAGED
        "subs r3, r3, #1\n\t"
        "bne 20b\n\t"
        "ldr pc, [sp, #24]\n\t"
        /* raw groups */
        "30:\n\t" DK_ARM_IL4_RAW "31:\n\t" DK_ARM_IL4_RAW DK_ARM_IL4_RAW DK_ARM_IL4_RAW
        "subs r3, r3, #1\n\t"
        "bne 30b\n\t"
        "ldr pc, [sp, #24]\n\t"
        /* the requantization loop: the header comment's fast form per output, clamped (compact: per channel
         * or clamped layers are rare); the accumulators popped one by one, r4 mult[], r5 shift[], r6 c, r7 step */
        "41:\n\t"
        "push {r8, r9, r10, r11}\n\t"
        "ldrd r4, r5, [sp, #44]\n\t"
        "ldrd r6, r7, [sp, #52]\n\t"
        "ldrd r3, lr, [sp, #60]\n\t"
        "ldr r12, [sp, #28]\n\t"
        "mov r8, #4\n\t"
        "6:\n\t"
        "pop {r9}\n\t"
        "ldr r0, [r4]\n\t"
        "add r4, r4, r7\n\t"
        "asr r1, r9, #31\n\t"
        "and r10, r9, #0x80000000\n\t"
        "eor r10, r10, #0x40000000\n\t"
        "smlal r10, r1, r9, r0\n\t"
        "ldr r0, [r5]\n\t"
        "add r5, r5, r7\n\t"
        "mvn r0, r0\n\t"
        "sub r0, r0, #1\n\t"
        "asr r1, r1, r0\n\t"
        "add r1, r1, r6\n\t"
        "ssat r1, #8, r1, asr #1\n\t" DK_ARM_IL4_CLAMP DK_ARM_IL4_STORE
        "subs r8, r8, #1\n\t"
        "bne 6b\n\t"
        "strd r4, r5, [sp, #28]\n\t"
        "b 49f\n\t"
        /* per tensor, range [-128, 127] */
        "40:\n\t"
        "ldrd r4, r5, [sp, #28]\n\t"
        "ldrd r6, r7, [sp, #36]\n\t"
        "ldr r12, [sp, #12]\n\t"
        DK_ARM_IL4_RQ("r8") DK_ARM_IL4_STORE DK_ARM_IL4_RQ("r9") DK_ARM_IL4_STORE DK_ARM_IL4_RQ("r10")
        DK_ARM_IL4_STORE DK_ARM_IL4_RQ("r11") DK_ARM_IL4_STORE
        "49:\n\t"
        "str r12, [sp, #12]\n\t"
        "ldr r0, [sp, #16]\n\t"
        "cmp r2, r0\n\t"
        "beq 59f\n\t"
        /* block start */
        "50:\n\t"
        "ldr r0, [sp, #8]\n\t"
        "ldm r0!, {r8, r9, r10, r11}\n\t" /* bias_zp */
        "str r0, [sp, #8]\n\t"
        "ldrd r1, r3, [sp]\n\t"
        "ldr pc, [sp, #20]\n\t"
        "59:\n\t"
        "ldr r0, [sp, #52]\n\t"
        "mov sp, r0"
        : "+r"(p0)
        :
        : "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
}

/* dk_linear_s8_ref's results from weights the code generator arranged (an optional faster entry point on Cortex-M:
 * one LDM per 16 weights, no zero-point work in the loop):
 *   w_il4    DK_IL4_BYTES(in_features, out_features) int8: w (out_features, in_features) zero-padded to
 *            (O4, K4) = (out_features and in_features rounded up to multiples of 4), then for each block b of 4
 *            rows and each 4-column group g the 16 bytes w[4b + r][4g .. 4g + 3] for r = 0..3, i.e.
 *            w_pad.reshape(O4 / 4, 4, K4 / 4, 4).transpose(0, 2, 1, 3).ravel()
 *   bias_zp  int32 (out_features,): bias[o] - in_zp * sum_i w[o][i] (the zero point folded in; exact in int32)
 *   in       (in_features,) int8
 * The assembly takes in_features % 4 == 0 and every shift <= -2 (staging up to DK_ARM_FC_STAGE features: stack
 * 2 * in_features bytes); the last out_features % 4 rows and other layers run the C form. */
static inline void dk_linear_s8_il4(const int8_t *in, int in_features, const int8_t *w_il4, const int32_t *bias_zp,
                                    int out_features, const int32_t *mult, const int32_t *shift, int32_t out_zp,
                                    int32_t act_min, int32_t act_max, int8_t *out) {
    const int32_t k = in_features;
    int32_t rows = (out_features >> 2) * 4;
    const int fast = dk_arm_all_fast(shift, out_features);
    if (fast && k > 0 && (k & 3) == 0 && rows) {
        const dk_arm_il4_t p = {in, k >> 2, w_il4, bias_zp, out, out_features >> 2, 2 | (k <= DK_ARM_FC_STAGE),
                                {.p = mult}, {.p = shift}, 1 + 2 * out_zp, 4, act_min, act_max};
        dk_arm_il4_asm(&p);
    } else {
        rows = 0;
    }
    if (rows < out_features)
        dk_arm_il4_c(in, k, w_il4 + rows * ((k + 3) & ~3), bias_zp + rows, out_features - rows, mult + rows,
                     shift + rows, 1, out_zp, act_min, act_max, out + rows, fast);
}

/* dk_linear_s8_il4 with one multiplier and shift for all channels (per-tensor quantization, as TFLite's fully
 * connected layers): 6 instructions per output in the assembly for 2 <= -shift <= 24 and the range [-128, 127]. */
static inline void dk_linear_s8_il4_pt(const int8_t *in, int in_features, const int8_t *w_il4,
                                       const int32_t *bias_zp, int out_features, int32_t mult, int32_t shift,
                                       int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out) {
    const int32_t k = in_features, e = -shift, staged = k <= DK_ARM_FC_STAGE;
    int32_t rows = (out_features >> 2) * 4;
    if (e >= 2 && e <= 24 && act_min == -128 && act_max == 127 && k > 0 && (k & 3) == 0 && rows) {
        const int32_t c2 = (1 + 2 * out_zp) * (1 << (e - 2));
        const dk_arm_il4_t p = {in, k >> 2, w_il4, bias_zp, out, out_features >> 2, staged, {.v = mult},
                                {.v = e - 1}, c2, (int32_t)(0x40000000u - ((uint32_t)c2 << 31)), -128, 127};
        dk_arm_il4_asm(&p);
    } else if (e >= 2 && k > 0 && (k & 3) == 0 && rows) {
        const dk_arm_il4_t p = {in, k >> 2, w_il4, bias_zp, out, out_features >> 2, 2 | staged, {.p = &mult},
                                {.p = &shift}, 1 + 2 * out_zp, 0, act_min, act_max};
        dk_arm_il4_asm(&p);
    } else {
        rows = 0;
    }
    if (rows < out_features)
        dk_arm_il4_c(in, k, w_il4 + rows * ((k + 3) & ~3), bias_zp + rows, out_features - rows, &mult, &shift, 0,
                     out_zp, act_min, act_max, out + rows, e >= 2);
}

#endif /* LEANML_KERNELS_ARM_FC_H */
