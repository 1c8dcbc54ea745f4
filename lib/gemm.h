/* Deterministic matrix products (lib/gemm.c), shared by the kernelized attention kinds.
 *
 *   C (M, N) ldc = A B,  A(i, k) = a[i ars + k acs]  (A or A^T of a row-major matrix),
 *                        B (K, N) row-major with leading dimension ldb.
 *
 * Every element of C is one fused multiply-add chain from 0 over k = 0 .. K-1, whatever the
 * tiling, the thread count (OpenMP over 4-row tiles, nt threads) or the kernel path: the
 * AVX-512 kernels (isa >= RK_ISA_AVX512), the AVX2 kernels (RK_ISA_AVX2) and the portable
 * fmaf/fma loops (RK_ISA_PORTABLE, RK_ISA_AUTO) give the same bits. isa must be a path the
 * CPU has (a plan's resolved isa). OpenBLAS is not used here because its results change with
 * its thread count. */
#ifndef RK_GEMM_H
#define RK_GEMM_H

#include <stddef.h>

#include "ropekit.h"

void rk__gemm_f(rk_isa isa, int nt, size_t M, size_t N, size_t K, const float *a, size_t ars,
                size_t acs, const float *b, size_t ldb, float *c, size_t ldc);
void rk__gemm_d(rk_isa isa, int nt, size_t M, size_t N, size_t K, const double *a, size_t ars,
                size_t acs, const double *b, size_t ldb, double *c, size_t ldc);
/* The CPU has AVX2 and FMA (the float kernels of every kind use them when it does). */
int rk__cpu_avx2(void);

#endif
