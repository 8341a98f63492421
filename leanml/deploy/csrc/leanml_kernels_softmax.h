/*
 * leanml_kernels_softmax.h -- TFLite int8 softmax: dk_softmax_s8_ref and its fixed-point helpers (filled in by the .tflite importer work).
 * Include leanml_kernels.h, not this file.
 */
#ifndef LEANML_KERNELS_SOFTMAX_H
#define LEANML_KERNELS_SOFTMAX_H

#include <stdint.h>

#endif /* LEANML_KERNELS_SOFTMAX_H */
