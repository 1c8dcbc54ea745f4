/* Deterministic matrix products of the kernelized attention kinds (FAVOR+, linear, and their
 * backward passes): plain arguments, no plan. See gemm.h for the contract. */
#include "gemm.h"
#include "rk_internal.h"

#include <math.h>
#include <stddef.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#  define RK_GEMM_X86 1
#  include <immintrin.h>
#  define AVX2 __attribute__((target("avx2,fma")))
#  define AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))
#  define RK_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#  define RK_GEMM_X86 0
#endif

/* C (M, N) ldc = A B, A(i, k) = a[i ars + k acs] (so A or A^T of a row-major matrix), B (K, N)
 * row-major ldb. Every element of C is one fused multiply-add chain from 0:
 *   acc = fma(A(i,0), B(0,j), 0);  acc = fma(A(i,1), B(1,j), acc); ...  k = 0 .. K-1
 * The AVX2 micro-kernels compute 4 rows x 16 (float) or 4 x 8 (double) elements at a time with
 * exactly that chain per element; tails and the portable path use fmaf/fma (correctly rounded,
 * the same operation). The AVX-512 kernels compute 4 rows x 64 (float) or 4 x 32 (double)
 * elements (16 accumulators: 4 loads and 4 broadcasts per 16 FMAs), then 32, 16 and a masked
 * last vector (masked lanes are neither loaded nor stored), the same chain per lane. So C has
 * the same bits for any tiling, thread count, path or CPU. OpenMP over 4-row tiles. Cost on a
 * Zen core (AVX2): 8 FMAs per 6 loads in the inner loop. */
#define RK_GEMM_PAR_MIN (1u << 21) /* M N K below which one thread is faster */

static void rows_f_c(size_t R, size_t N, size_t K, const float *a, size_t ars, size_t acs,
                     const float *b, size_t ldb, float *c, size_t ldc, size_t j0)
{
    for (size_t r = 0; r < R; r++)
        for (size_t j = j0; j < N; j++) {
            float acc = 0.0f;
            for (size_t k = 0; k < K; k++) acc = fmaf(a[r * ars + k * acs], b[k * ldb + j], acc);
            c[r * ldc + j] = acc;
        }
}

static void rows_d_c(size_t R, size_t N, size_t K, const double *a, size_t ars, size_t acs,
                     const double *b, size_t ldb, double *c, size_t ldc, size_t j0)
{
    for (size_t r = 0; r < R; r++)
        for (size_t j = j0; j < N; j++) {
            double acc = 0.0;
            for (size_t k = 0; k < K; k++) acc = fma(a[r * ars + k * acs], b[k * ldb + j], acc);
            c[r * ldc + j] = acc;
        }
}

#if RK_GEMM_X86
/* R (1 or 4) rows of C; columns in blocks of 16, then 8, then the scalar tail. */
AVX2 static void rows_f_avx2(size_t R, size_t N, size_t K, const float *a, size_t ars, size_t acs,
                             const float *b, size_t ldb, float *c, size_t ldc)
{
    size_t j = 0;
    if (R == 4) {
        const float *a0 = a, *a1 = a + ars, *a2 = a + 2 * ars, *a3 = a + 3 * ars;
        for (; j + 16 <= N; j += 16) {
            __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00;
            __m256 c20 = c00, c21 = c00, c30 = c00, c31 = c00;
            const float *b_k = b + j;
            for (size_t k = 0; k < K; k++, b_k += ldb) {
                __m256 b0 = _mm256_loadu_ps(b_k), b1 = _mm256_loadu_ps(b_k + 8);
                __m256 x = _mm256_broadcast_ss(a0 + k * acs);
                c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
                x = _mm256_broadcast_ss(a1 + k * acs);
                c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
                x = _mm256_broadcast_ss(a2 + k * acs);
                c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
                x = _mm256_broadcast_ss(a3 + k * acs);
                c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
            }
            _mm256_storeu_ps(c + j, c00);           _mm256_storeu_ps(c + j + 8, c01);
            _mm256_storeu_ps(c + ldc + j, c10);     _mm256_storeu_ps(c + ldc + j + 8, c11);
            _mm256_storeu_ps(c + 2 * ldc + j, c20); _mm256_storeu_ps(c + 2 * ldc + j + 8, c21);
            _mm256_storeu_ps(c + 3 * ldc + j, c30); _mm256_storeu_ps(c + 3 * ldc + j + 8, c31);
        }
        for (; j + 8 <= N; j += 8) {
            __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
            const float *b_k = b + j;
            for (size_t k = 0; k < K; k++, b_k += ldb) {
                __m256 b0 = _mm256_loadu_ps(b_k);
                c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + k * acs), b0, c0);
                c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(a1 + k * acs), b0, c1);
                c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(a2 + k * acs), b0, c2);
                c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(a3 + k * acs), b0, c3);
            }
            _mm256_storeu_ps(c + j, c0);           _mm256_storeu_ps(c + ldc + j, c1);
            _mm256_storeu_ps(c + 2 * ldc + j, c2); _mm256_storeu_ps(c + 3 * ldc + j, c3);
        }
    } else {
        for (; j + 16 <= N; j += 16) {
            __m256 c0 = _mm256_setzero_ps(), c1 = c0;
            const float *b_k = b + j;
            for (size_t k = 0; k < K; k++, b_k += ldb) {
                __m256 x = _mm256_broadcast_ss(a + k * acs);
                c0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b_k), c0);
                c1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b_k + 8), c1);
            }
            _mm256_storeu_ps(c + j, c0);
            _mm256_storeu_ps(c + j + 8, c1);
        }
    }
    for (size_t r = 0; r < R; r++)          /* tail: the same chain, fmaf is one vfmadd here */
        for (size_t jj = j; jj < N; jj++) {
            float acc = 0.0f;
            for (size_t k = 0; k < K; k++) acc = fmaf(a[r * ars + k * acs], b[k * ldb + jj], acc);
            c[r * ldc + jj] = acc;
        }
}

/* The same in double: columns in blocks of 8, then 4, then the scalar tail. */
AVX2 static void rows_d_avx2(size_t R, size_t N, size_t K, const double *a, size_t ars, size_t acs,
                             const double *b, size_t ldb, double *c, size_t ldc)
{
    size_t j = 0;
    if (R == 4) {
        const double *a0 = a, *a1 = a + ars, *a2 = a + 2 * ars, *a3 = a + 3 * ars;
        for (; j + 8 <= N; j += 8) {
            __m256d c00 = _mm256_setzero_pd(), c01 = c00, c10 = c00, c11 = c00;
            __m256d c20 = c00, c21 = c00, c30 = c00, c31 = c00;
            const double *b_k = b + j;
            for (size_t k = 0; k < K; k++, b_k += ldb) {
                __m256d b0 = _mm256_loadu_pd(b_k), b1 = _mm256_loadu_pd(b_k + 4);
                __m256d x = _mm256_broadcast_sd(a0 + k * acs);
                c00 = _mm256_fmadd_pd(x, b0, c00); c01 = _mm256_fmadd_pd(x, b1, c01);
                x = _mm256_broadcast_sd(a1 + k * acs);
                c10 = _mm256_fmadd_pd(x, b0, c10); c11 = _mm256_fmadd_pd(x, b1, c11);
                x = _mm256_broadcast_sd(a2 + k * acs);
                c20 = _mm256_fmadd_pd(x, b0, c20); c21 = _mm256_fmadd_pd(x, b1, c21);
                x = _mm256_broadcast_sd(a3 + k * acs);
                c30 = _mm256_fmadd_pd(x, b0, c30); c31 = _mm256_fmadd_pd(x, b1, c31);
            }
            _mm256_storeu_pd(c + j, c00);           _mm256_storeu_pd(c + j + 4, c01);
            _mm256_storeu_pd(c + ldc + j, c10);     _mm256_storeu_pd(c + ldc + j + 4, c11);
            _mm256_storeu_pd(c + 2 * ldc + j, c20); _mm256_storeu_pd(c + 2 * ldc + j + 4, c21);
            _mm256_storeu_pd(c + 3 * ldc + j, c30); _mm256_storeu_pd(c + 3 * ldc + j + 4, c31);
        }
        for (; j + 4 <= N; j += 4) {
            __m256d c0 = _mm256_setzero_pd(), c1 = c0, c2 = c0, c3 = c0;
            const double *b_k = b + j;
            for (size_t k = 0; k < K; k++, b_k += ldb) {
                __m256d b0 = _mm256_loadu_pd(b_k);
                c0 = _mm256_fmadd_pd(_mm256_broadcast_sd(a0 + k * acs), b0, c0);
                c1 = _mm256_fmadd_pd(_mm256_broadcast_sd(a1 + k * acs), b0, c1);
                c2 = _mm256_fmadd_pd(_mm256_broadcast_sd(a2 + k * acs), b0, c2);
                c3 = _mm256_fmadd_pd(_mm256_broadcast_sd(a3 + k * acs), b0, c3);
            }
            _mm256_storeu_pd(c + j, c0);           _mm256_storeu_pd(c + ldc + j, c1);
            _mm256_storeu_pd(c + 2 * ldc + j, c2); _mm256_storeu_pd(c + 3 * ldc + j, c3);
        }
    } else {
        for (; j + 8 <= N; j += 8) {
            __m256d c0 = _mm256_setzero_pd(), c1 = c0;
            const double *b_k = b + j;
            for (size_t k = 0; k < K; k++, b_k += ldb) {
                __m256d x = _mm256_broadcast_sd(a + k * acs);
                c0 = _mm256_fmadd_pd(x, _mm256_loadu_pd(b_k), c0);
                c1 = _mm256_fmadd_pd(x, _mm256_loadu_pd(b_k + 4), c1);
            }
            _mm256_storeu_pd(c + j, c0);
            _mm256_storeu_pd(c + j + 4, c1);
        }
    }
    for (size_t r = 0; r < R; r++)
        for (size_t jj = j; jj < N; jj++) {
            double acc = 0.0;
            for (size_t k = 0; k < K; k++) acc = fma(a[r * ars + k * acs], b[k * ldb + jj], acc);
            c[r * ldc + jj] = acc;
        }
}

/* ---- AVX-512 ---------------------------------------------------------------------------- */
/* One block: R rows x NV vectors of VL columns at c, B's columns from b; masked != 0: one
 * vector (NV = 1) whose lanes outside `mask` are neither read nor written. R, NV and masked
 * are constants at every call, so the accumulators live in registers (fully unrolled). */
#define GEMM512_BLOCK(NAME, REAL, VEC, MASK, ZERO, LOADU, MLOADU, SET1, FMA, STOREU, MSTOREU)   \
    AVX512 static RK_ALWAYS_INLINE void NAME(const int R, const int NV, const int masked,        \
                                             MASK mask, size_t K, const REAL *a, size_t ars,    \
                                             size_t acs, const REAL *b, size_t ldb, REAL *c,    \
                                             size_t ldc)                                         \
    {                                                                                            \
        const int VL = (int)(64 / sizeof(REAL));                                                 \
        VEC acc[4][4];                                                                           \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                      \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] = ZERO();             \
        for (size_t k = 0; k < K; k++, b += ldb) {                                               \
            VEC bv[4];                                                                           \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                                 \
                bv[v] = masked ? MLOADU(mask, b + VL * v) : LOADU(b + VL * v);                   \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                                \
                VEC x = SET1(a[(size_t)r * ars + k * acs]);                                      \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                             \
                    acc[r][v] = FMA(x, bv[v], acc[r][v]);                                        \
            }                                                                                    \
        }                                                                                        \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                      \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                               \
                if (masked) MSTOREU(c + (size_t)r * ldc + VL * v, mask, acc[r][v]);              \
                else STOREU(c + (size_t)r * ldc + VL * v, acc[r][v]);                            \
            }                                                                                    \
    }
GEMM512_BLOCK(blk_f_avx512, float, __m512, __mmask16, _mm512_setzero_ps, _mm512_loadu_ps,
              _mm512_maskz_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps,
              _mm512_mask_storeu_ps)
GEMM512_BLOCK(blk_d_avx512, double, __m512d, __mmask8, _mm512_setzero_pd, _mm512_loadu_pd,
              _mm512_maskz_loadu_pd, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_storeu_pd,
              _mm512_mask_storeu_pd)
#undef GEMM512_BLOCK

/* R (1 .. 4) rows of C: columns in blocks of 4, 2, 1 vectors, then one masked vector. */
#define GEMM512_ROWS_R(BLK, R, VL, MASK)                                                         \
    do {                                                                                         \
        for (; j + 4 * VL <= N; j += 4 * VL) BLK(R, 4, 0, 0, K, a, ars, acs, b + j, ldb, c + j, ldc); \
        if (j + 2 * VL <= N) { BLK(R, 2, 0, 0, K, a, ars, acs, b + j, ldb, c + j, ldc); j += 2 * VL; } \
        if (j + VL <= N) { BLK(R, 1, 0, 0, K, a, ars, acs, b + j, ldb, c + j, ldc); j += VL; }    \
        if (j < N) BLK(R, 1, 1, (MASK)((1u << (N - j)) - 1u), K, a, ars, acs, b + j, ldb, c + j, ldc); \
    } while (0)

AVX512 static void rows_f_avx512(size_t R, size_t N, size_t K, const float *a, size_t ars,
                                 size_t acs, const float *b, size_t ldb, float *c, size_t ldc)
{
    size_t j = 0;
    switch (R) {
    case 4: GEMM512_ROWS_R(blk_f_avx512, 4, 16, __mmask16); break;
    case 3: GEMM512_ROWS_R(blk_f_avx512, 3, 16, __mmask16); break;
    case 2: GEMM512_ROWS_R(blk_f_avx512, 2, 16, __mmask16); break;
    default: GEMM512_ROWS_R(blk_f_avx512, 1, 16, __mmask16); break;
    }
}

AVX512 static void rows_d_avx512(size_t R, size_t N, size_t K, const double *a, size_t ars,
                                 size_t acs, const double *b, size_t ldb, double *c, size_t ldc)
{
    size_t j = 0;
    switch (R) {
    case 4: GEMM512_ROWS_R(blk_d_avx512, 4, 8, __mmask8); break;
    case 3: GEMM512_ROWS_R(blk_d_avx512, 3, 8, __mmask8); break;
    case 2: GEMM512_ROWS_R(blk_d_avx512, 2, 8, __mmask8); break;
    default: GEMM512_ROWS_R(blk_d_avx512, 1, 8, __mmask8); break;
    }
}
#undef GEMM512_ROWS_R

#endif

int rk__cpu_avx2(void)
{
#if RK_GEMM_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* Rows 4t .. 4t+3 of c (fewer at the end) on the isa's kernel. */
static void tile_f(rk_isa isa, size_t t, size_t M, size_t N, size_t K, const float *a, size_t ars,
                   size_t acs, const float *b, size_t ldb, float *c, size_t ldc)
{
    (void)isa;
    size_t i0 = 4 * t, R = M - i0 < 4 ? M - i0 : 4;
#if RK_GEMM_X86
    if (isa >= RK_ISA_AVX512) {
        rows_f_avx512(R, N, K, a + i0 * ars, ars, acs, b, ldb, c + i0 * ldc, ldc);
        return;
    }
    if (isa >= RK_ISA_AVX2) {
        if (R == 4) rows_f_avx2(4, N, K, a + i0 * ars, ars, acs, b, ldb, c + i0 * ldc, ldc);
        else
            for (size_t r = 0; r < R; r++)
                rows_f_avx2(1, N, K, a + (i0 + r) * ars, ars, acs, b, ldb, c + (i0 + r) * ldc, ldc);
        return;
    }
#endif
    rows_f_c(R, N, K, a + i0 * ars, ars, acs, b, ldb, c + i0 * ldc, ldc, 0);
}

void rk__gemm_f(rk_isa isa, int nt, size_t M, size_t N, size_t K, const float *a, size_t ars,
                size_t acs, const float *b, size_t ldb, float *c, size_t ldc)
{
    size_t tiles = (M + 3) / 4;
    RK_PAR_FOR(M * N * K > RK_GEMM_PAR_MIN, nt, t, tiles,
               tile_f(isa, t, M, N, K, a, ars, acs, b, ldb, c, ldc););
}

/* Rows 4t .. 4t+3 of c (fewer at the end) on the isa's kernel. */
static void tile_d(rk_isa isa, size_t t, size_t M, size_t N, size_t K, const double *a, size_t ars,
                   size_t acs, const double *b, size_t ldb, double *c, size_t ldc)
{
    (void)isa;
    size_t i0 = 4 * t, R = M - i0 < 4 ? M - i0 : 4;
#if RK_GEMM_X86
    if (isa >= RK_ISA_AVX512) {
        rows_d_avx512(R, N, K, a + i0 * ars, ars, acs, b, ldb, c + i0 * ldc, ldc);
        return;
    }
    if (isa >= RK_ISA_AVX2) {
        if (R == 4) rows_d_avx2(4, N, K, a + i0 * ars, ars, acs, b, ldb, c + i0 * ldc, ldc);
        else
            for (size_t r = 0; r < R; r++)
                rows_d_avx2(1, N, K, a + (i0 + r) * ars, ars, acs, b, ldb, c + (i0 + r) * ldc, ldc);
        return;
    }
#endif
    rows_d_c(R, N, K, a + i0 * ars, ars, acs, b, ldb, c + i0 * ldc, ldc, 0);
}

void rk__gemm_d(rk_isa isa, int nt, size_t M, size_t N, size_t K, const double *a, size_t ars,
                size_t acs, const double *b, size_t ldb, double *c, size_t ldc)
{
    size_t tiles = (M + 3) / 4;
    RK_PAR_FOR(M * N * K > RK_GEMM_PAR_MIN, nt, t, tiles,
               tile_d(isa, t, M, N, K, a, ars, acs, b, ldb, c, ldc););
}
