/*
 * leanml_kernels_fused.h -- In-place / overlapping-buffer / line-buffer kernel variants the memory planner places.
 * Include leanml_kernels.h, not this file.
 */
#ifndef LEANML_KERNELS_FUSED_H
#define LEANML_KERNELS_FUSED_H

#include <stdint.h>

#endif /* LEANML_KERNELS_FUSED_H */
