/* FAVOR+ (RK_PERFORMER) and linear attention (RK_LINEAR): plan creation and the batch path.
 *
 *   out_i = sum_{j < L_i} num_ij v_j / sum_{j < L_i} phi(q_i) . phi(k_j)      L_i = keys query i sees
 *   num_ij = phi(q_i) . phi(k_j)                         rope none
 *          = phi(R_qi q_i) . phi(R_kj k_j)               rope = qk (rotate before the map)
 *          = (R_qi phi(q_i)) . (R_kj phi(k_j))           rope = features (RoFormer eq. 19; the
 *                                                        denominator keeps the unrotated features)
 *
 * One algorithm serves bidirectional and causal attention, in float and double:
 * queries go in chunks of T rows; a running state  S = sum_j phi(k_j) v_j^T  (F x dv, double) and
 * z = sum_j phi(k_j)  (F, double) holds every key that all queries of the chunk see; the few
 * keys that only some queries of the chunk see (causal: fewer than T) go through a small masked
 * T x T product, then join the state. Bidirectional: the first chunk absorbs all keys, there are
 * never masked keys. Memory: O(F dv) state + O(256 (d + m + F)) scratch, never O(n m).
 * Time: O(n m d + n F dv), plus O(n T (F + dv)) for the masked products (causal).
 *
 * Stabiliser (exp-type maps: positive, hyperbolic, and trig through its exp(|x'|^2/2) factor; see
 * performer_impl.h). A query row
 * subtracts its own lmax: one factor on the whole row, it cancels exactly between numerator and
 * denominator. Keys need one constant shared by all keys a query sees; here it is the prefix
 * max  P_j = max(lmax_0 .. lmax_j):  key j is stored as exp(l - P_j), query i uses
 * C_i = P_{L_i - 1}, and every stored key gets the factor exp(P_j - C_i) <= 1 (the state is kept
 * at one constant C and rescaled by exp(C_old - C_new) as the max grows). C_i depends only on
 * keys the query sees, so no information flows from future positions (the official FAVOR+ code
 * takes the key max over the whole sequence, which does), and nothing can overflow: every
 * stored exponential is <= 1. No eps is added anywhere (the official code adds 1e-6 to every
 * feature). A denominator that is exactly 0 (float underflow, ReLU features that never
 * overlap, a trig sum hitting 0) gives a zero output row, the same as a query with no visible
 * key; trig denominators may be tiny or negative and are divided as they are. The float features
 * use a vectorised expf (lib/features.c) that returns 0 below e^-87 instead of a subnormal.
 *
 * Threads and bits: every loop, including the matrix products, gives each output element to
 * one thread with a fixed order of operations, so results do not depend on nthreads. The
 * products are our own (below), not OpenBLAS: OpenBLAS 0.3.21's sgemm/dgemm results change
 * with its thread count (checked here: 64x64x128 differs by 1.7e-6 between 1 and 2 threads).
 *
 * This file is a template (the GSL idea): the execute kernels at the bottom are compiled
 * twice, by including this file with REAL = float and REAL = double.
 */
#ifndef RK_PERF_TEMPLATE

#include "performer_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#  define RK_PERF_X86 1
#  include <immintrin.h>
#  define AVX2 __attribute__((target("avx2,fma")))
#else
#  define RK_PERF_X86 0
#endif

/* Below this many elements an OpenMP region costs more than it saves. */
#define RK_PERF_PAR_MIN 32768
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* ------------------------------------------------------------------------------------------ */
/* Deterministic matrix products                                                              */
/* ------------------------------------------------------------------------------------------ */
/* C (M, N) ldc = A B, A(i, k) = a[i ars + k acs] (so A or A^T of a row-major matrix), B (K, N)
 * row-major ldb. Every element of C is one fused multiply-add chain from 0:
 *   acc = fma(A(i,0), B(0,j), 0);  acc = fma(A(i,1), B(1,j), acc); ...  k = 0 .. K-1
 * The AVX2 micro-kernels compute 4 rows x 16 (float) or 4 x 8 (double) elements at a time with
 * exactly that chain per element; tails and the portable path use fmaf/fma (correctly rounded,
 * the same operation). So C has the same bits for any tiling, thread count or CPU. OpenMP
 * over 4-row tiles. Cost on a Zen core: 8 FMAs per 6 loads in the inner loop. */
#define RK_PERF_GEMM_PAR_MIN (1u << 18) /* M N K below which one thread is faster */

static int perf_force_portable;        /* test hook; read at plan creation */
void rk__perf_force_portable(int on) { perf_force_portable = on; }

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

#if RK_PERF_X86
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

static int cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

static void gemm_f(const rk__perf *f, int nt, size_t M, size_t N, size_t K, const float *a,
                   size_t ars, size_t acs, const float *b, size_t ldb, float *c, size_t ldc)
{
    size_t tiles = (M + 3) / 4;
    int avx2 = f->avx2;
    (void)avx2;
    #pragma omp parallel for schedule(static) num_threads(nt) if (M * N * K > RK_PERF_GEMM_PAR_MIN)
    for (size_t t = 0; t < tiles; t++) {
        size_t i0 = 4 * t, R = M - i0 < 4 ? M - i0 : 4;
#if RK_PERF_X86
        if (avx2) {
            if (R == 4) rows_f_avx2(4, N, K, a + i0 * ars, ars, acs, b, ldb, c + i0 * ldc, ldc);
            else
                for (size_t r = 0; r < R; r++)
                    rows_f_avx2(1, N, K, a + (i0 + r) * ars, ars, acs, b, ldb, c + (i0 + r) * ldc, ldc);
            continue;
        }
#endif
        rows_f_c(R, N, K, a + i0 * ars, ars, acs, b, ldb, c + i0 * ldc, ldc, 0);
    }
}

static void gemm_d(const rk__perf *f, int nt, size_t M, size_t N, size_t K, const double *a,
                   size_t ars, size_t acs, const double *b, size_t ldb, double *c, size_t ldc)
{
    size_t tiles = (M + 3) / 4;
    int avx2 = f->avx2;
    (void)avx2;
    #pragma omp parallel for schedule(static) num_threads(nt) if (M * N * K > RK_PERF_GEMM_PAR_MIN)
    for (size_t t = 0; t < tiles; t++) {
        size_t i0 = 4 * t, R = M - i0 < 4 ? M - i0 : 4;
#if RK_PERF_X86
        if (avx2) {
            if (R == 4) rows_d_avx2(4, N, K, a + i0 * ars, ars, acs, b, ldb, c + i0 * ldc, ldc);
            else
                for (size_t r = 0; r < R; r++)
                    rows_d_avx2(1, N, K, a + (i0 + r) * ars, ars, acs, b, ldb, c + (i0 + r) * ldc, ldc);
            continue;
        }
#endif
        rows_d_c(R, N, K, a + i0 * ars, ars, acs, b, ldb, c + i0 * ldc, ldc, 0);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Create / destroy                                                                           */
/* ------------------------------------------------------------------------------------------ */

static void perf_destroy(void *impl)
{
    rk__perf *f = impl;
    if (!f) return;
    rk_rope_destroy(f->rope_f);
    rk_rope_destroy(f->rope_qk);
    void *bufs[] = {
        f->w, f->wsT, f->wsdT, f->wsd, f->S, f->z, f->kh, f->qh, f->kc, f->qc, f->kfac, f->ci,
        f->deni, f->vis, f->xd,
        f->sf.x, f->sf.u, f->sf.qf, f->sf.kf, f->sf.kt, f->sf.kfr, f->sf.ztr, f->sf.a, f->sf.an, f->sf.ns, f->sf.ni, f->sf.st, f->sf.tmp,
        f->sd.x, f->sd.u, f->sd.qf, f->sd.kf, f->sd.kt, f->sd.kfr, f->sd.ztr, f->sd.a, f->sd.an, f->sd.ns, f->sd.ni, f->sd.st, f->sd.tmp,
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) rk__free(bufs[i]);
    rk__free(f);
}

/* n * elt zeroed bytes counted in p->bytes, or NULL with *rc set (n == 0: NULL, *rc = 0). */
static void *take(rk_attn *p, size_t n, size_t elt, int *rc)
{
    size_t bytes;
    *rc = RK_OK;
    if (n == 0) return NULL;
    if (rk__bytes(n, elt, &bytes)) {
        *rc = rk__fail(RK_EOVERFLOW, "%s: a buffer of %zu x %zu bytes overflows", p->ops->name, n, elt);
        return NULL;
    }
    void *b = rk__alloc(bytes);
    if (!b) { *rc = rk__fail(RK_ENOMEM, "%s: cannot allocate %zu bytes", p->ops->name, bytes); return NULL; }
    p->bytes += bytes;
    return b;
}
#define TAKE(ptr, n, elt) do { (ptr) = take(p, (n), (elt), &rc); if (rc) return rc; } while (0)

/* The rotation plans. Features: dim F, theta_t = base^(-2t/r) (r = rotary_dim or F), or
 * base^(-2t/d) with rope_freq_dim_head (base' = base^(r/d)). qk: dim d. Unless the caller set
 * table_len, the cos/sin table covers the positions the plan uses (at most 4096). */
static int make_rope(rk_attn *p, rk__perf *f)
{
    rk_attn_config *c = &p->cfg;
    if (c->rope == RK_ROPE_NONE) return RK_OK;
    rk_rope_config rc = c->rope_cfg;
    int feat = c->rope == RK_ROPE_FEATURES;
    rc.dim = feat ? f->F : f->d;
    double base = rc.base == 0.0 ? 10000.0 : rc.base;
    if (feat && c->rope_freq_dim_head) {
        size_t r = rc.rotary_dim ? rc.rotary_dim : rc.dim;
        rc.base = pow(base, (double)r / (double)f->d);
    }
    if (rc.table_len == 0) {
        int64_t last = c->pos_offset + (int64_t)c->n_kv;    /* positions < last (or negative) */
        rc.table_len = last <= 1 ? 1 : last > 4096 ? 4096 : (size_t)last;
    }
    rk_rope **out = feat ? &f->rope_f : &f->rope_qk;
    int rc_ = rk_rope_create(out, &rc);
    if (rc_) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", rk_last_error());
        return rk__fail(rc_, "%s, rope = %s (rotation width %zu%s): %s", p->ops->name,
                        feat ? "features" : "qk", rc.dim,
                        feat && f->kind == RK_PERFORMER ? " = feature width" : "", msg);
    }
    c->rope_cfg = *rk_rope_get_config(*out);
    c->rope_cfg.base = base;          /* the user's base, also with rope_freq_dim_head */
    p->bytes += rk_rope_bytes(*out);
    return RK_OK;
}

static int perf_create(rk_attn *p)
{
    rk_attn_config *c = &p->cfg;
    size_t d = c->d, dv = c->d_v, m = 0, F;
    if (c->kind == RK_PERFORMER) {
        if (c->kernel != RK_KERNEL_POSITIVE && c->kernel != RK_KERNEL_HYPERBOLIC &&
            c->kernel != RK_KERNEL_TRIG)
            RK_FAIL(RK_EINVAL, "performer: unknown kernel %d", (int)c->kernel);
        if (c->proj != RK_PROJ_ORTHOGONAL && c->proj != RK_PROJ_IID)
            RK_FAIL(RK_EINVAL, "performer: unknown projection kind %d", (int)c->proj);
        if (c->proj_norm != RK_NORM_CHI && c->proj_norm != RK_NORM_FIXED)
            RK_FAIL(RK_EINVAL, "performer: unknown projection norm %d", (int)c->proj_norm);
        if (!c->proj_data && c->seed == 0)
            RK_FAIL(RK_EINVAL, "performer: seed = 0; FAVOR+ needs an explicit nonzero seed "
                    "(or proj_data)");
        if (c->n_features == 0) c->n_features = RK_PERF_DEFAULT_M;
        m = c->n_features;
        if (!rk__fits_int(m) || (c->kernel != RK_KERNEL_POSITIVE && m > (size_t)INT_MAX / 2))
            RK_FAIL(RK_EOVERFLOW, "performer: n_features = %zu is too large", m);
        F = c->kernel == RK_KERNEL_POSITIVE ? m : 2 * m;
    } else {
        if (c->map != RK_MAP_ELU && c->map != RK_MAP_RELU)
            RK_FAIL(RK_EINVAL, "linear: unknown feature map %d", (int)c->map);
        if (c->n_features != 0 && c->n_features != d)
            RK_FAIL(RK_EINVAL, "linear: n_features = %zu, but the elu+1/relu feature width is "
                    "d = %zu (leave n_features 0)", c->n_features, d);
        if (c->proj_data)
            RK_FAIL(RK_EINVAL, "linear: proj_data given, but elu+1/relu use no projection");
        c->n_features = d;
        F = d;
    }
    if (c->rope_freq_dim_head && c->rope != RK_ROPE_FEATURES)
        RK_FAIL(RK_EINVAL, "%s: rope_freq_dim_head applies to rope = features only",
                p->ops->name);
    if (c->rope == RK_ROPE_FEATURES && F % 2)
        RK_FAIL(RK_EDIM, "%s: rope = features rotates the %zu features in pairs, so the feature "
                "width must be even (%s)", p->ops->name, F,
                c->kind == RK_PERFORMER ? "use an even n_features" : "d is odd");
    /* R: rows of the block buffers, no more than the plan can use */
    size_t R = c->n_q > c->n_kv ? c->n_q : c->n_kv, T = RK_PERF_QCHUNK, t1, t2, t3;
    if (R > RK_PERF_BLOCK) R = RK_PERF_BLOCK;
    if (rk__mul(R, F, &t1) || rk__mul(m, d, &t2) || rk__mul(F, dv, &t3) || rk__mul(R, m, &t2) ||
        !rk__fits_int(t1) || !rk__fits_int(t3))
        RK_FAIL(RK_EOVERFLOW, "%s: feature width %zu with d = %zu, d_v = %zu is too large",
                p->ops->name, F, d, dv);

    rk__perf *f = rk__alloc(sizeof *f);
    if (!f) RK_FAIL(RK_ENOMEM, "%s: cannot allocate the plan", p->ops->name);
    p->impl = f;                      /* from here on attn.c's destroy frees a partial build */
    p->bytes += sizeof *f;
    f->kind = c->kind;
    f->kernel = c->kernel;
    f->map = c->map;
    f->m = m;
    f->F = F;
    f->d = d;
    f->dv = dv;
    f->scale = c->scale;
    f->sq = sqrt(c->scale);
    f->stab = c->kind == RK_PERFORMER;
#if RK_PERF_X86
    f->avx2 = !perf_force_portable && cpu_has_avx2();
#endif
    f->norm = c->kind == RK_LINEAR ? 1.0
            : 1.0 / sqrt((double)(c->kernel == RK_KERNEL_HYPERBOLIC ? 2 * m : m));
    if (c->kind == RK_PERFORMER && !(c->scale > 0.0))
        RK_FAIL(RK_EINVAL, "performer: scale = %g must be > 0 (FAVOR+ uses sqrt(scale))",
                c->scale);

    int rc;
    TAKE(f->w, m * d, sizeof(float));
    TAKE(f->wsT, m * d, sizeof(float));
    TAKE(f->wsdT, m * d, sizeof(double));
    TAKE(f->wsd, m * d, sizeof(double));
    TAKE(f->S, F * dv, sizeof(double));
    TAKE(f->z, F, sizeof(double));
    TAKE(f->kh, R, sizeof(double));
    TAKE(f->qh, R, sizeof(double));
    TAKE(f->kc, R, sizeof(double));
    TAKE(f->qc, R, sizeof(double));
    TAKE(f->kfac, R, sizeof(double));
    TAKE(f->ci, R, sizeof(double));
    TAKE(f->deni, R, sizeof(double));
    TAKE(f->vis, R, sizeof(size_t));
    TAKE(f->xd, R * d, sizeof(double));
#define TAKE_SCRATCH(S, ELT)                                                                    \
    do {                                                                                        \
        TAKE((S).x, R * d, ELT);   TAKE((S).u, R * m, ELT);                                     \
        TAKE((S).qf, R * F, ELT);  TAKE((S).kf, R * F, ELT);  TAKE((S).kt, F * T, ELT);         \
        TAKE((S).a, T * T, ELT);   TAKE((S).an, T * T, ELT);                                    \
        TAKE((S).ns, R * (dv + 8), ELT); TAKE((S).ni, T * dv, ELT);                             \
        TAKE((S).st, F * (dv + 8), ELT); TAKE((S).tmp, F * dv, ELT);                            \
        TAKE((S).kfr, R, ELT);     TAKE((S).ztr, F, ELT);                                       \
    } while (0)
    TAKE_SCRATCH(f->sf, sizeof(float));
    TAKE_SCRATCH(f->sd, sizeof(double));
#undef TAKE_SCRATCH
    if (m) {
        if ((rc = rk__perf_projection(c, m, f->w))) return rc;
        /* x' W^T = x (sqrt(scale) W)^T: the scale is folded into the operand, kept (m, d)
         * for row-wise use and transposed (d, m) as the right factor of the products */
        for (size_t r = 0; r < m; r++)
            for (size_t j = 0; j < d; j++) {
                double v = (double)f->w[r * d + j] * f->sq;
                f->wsd[r * d + j] = v;
                f->wsdT[j * m + r] = v;
                f->wsT[j * m + r] = (float)v;
            }
    }
    return make_rope(p, f);
}

const rk__perf *rk__perf_of(const rk_attn *p)
{
    if (!p || (p->ops != &rk__performer_ops && p->ops != &rk__linear_ops)) return NULL;
    return p->impl;
}

/* ------------------------------------------------------------------------------------------ */
/* Execute, instantiated for float and double                                                 */
/* ------------------------------------------------------------------------------------------ */

#define RK_PERF_TEMPLATE 1
#define REAL        float
#define MAT         rk_mat
#define SFX(x)      x##_f
#define SCR(f)      (&(f)->sf)
#define WST(f)      ((f)->wsT)
#define GEMM        gemm_f
#define ROPE_APPLY  rk_rope_apply
#include "performer.c"
#undef REAL
#undef MAT
#undef SFX
#undef SCR
#undef WST
#undef GEMM
#undef ROPE_APPLY

#define REAL        double
#define MAT         rk_matd
#define SFX(x)      x##_d
#define SCR(f)      (&(f)->sd)
#define WST(f)      ((f)->wsdT)
#define GEMM        gemm_d
#define ROPE_APPLY  rk_rope_apply_d
#include "performer.c"
#undef REAL
#undef MAT
#undef SFX
#undef SCR
#undef WST
#undef GEMM
#undef ROPE_APPLY
#undef RK_PERF_TEMPLATE

const rk__attn_ops rk__performer_ops = {
    "performer", perf_create, perf_destroy, exec_f, exec_d,
};
const rk__attn_ops rk__linear_ops = {
    "linear", perf_create, perf_destroy, exec_f, exec_d,
};

#else /* RK_PERF_TEMPLATE: the body below is compiled once per REAL */

/* Features of w rows x (w, d) ld ldx, into xf (w, F), with h and the constants into h[], cc[].
 * Rows are at positions pos0 + t (rope = qk rotates them first, in scratch).
 * key == 0 (queries): each row subtracts its own lmax.
 * key != 0: row t subtracts the running max P_t = max(cin, lmax_0 .. lmax_t).
 * Linear maps use no constant (cc = 0). */
static int SFX(phi)(rk__perf *f, int nt, const REAL *x, size_t ldx, size_t w, int64_t pos0,
                    int key, double cin, double *h, double *cc, REAL *xf)
{
    size_t d = f->d, m = f->m, F = f->F;
    if (f->rope_qk) {
        REAL *xs = SCR(f)->x;
        for (size_t t = 0; t < w; t++) memcpy(xs + t * d, x + t * ldx, d * sizeof(REAL));
        MAT xv = { xs, w, d, d };
        int rc = ROPE_APPLY(f->rope_qk, &xv, &xv, pos0, NULL, 0);
        if (rc) return rc;
        x = xs;
        ldx = d;
    }
    const REAL *u = x;
    size_t ldu = ldx;
    if (m) {
        /* u (w, m) = x (w, d) . (sqrt(scale) W)^T */
        u = SCR(f)->u;
        ldu = m;
        GEMM(f, nt, w, m, d, x, ldx, 1, WST(f), m, SCR(f)->u, m);
        #pragma omp parallel for schedule(static) num_threads(nt) if (w * m > RK_PERF_PAR_MIN)
        for (size_t t = 0; t < w; t++) {
            const REAL *x_t = x + t * ldx;
            double ss = 0.0;
            for (size_t c = 0; c < d; c++) ss += (double)x_t[c] * (double)x_t[c];
            h[t] = 0.5 * f->scale * ss;
            cc[t] = SFX(rk__feat_lmax)(f, u + t * m, h[t]);
        }
        if (key) {
            double run = cin;
            for (size_t t = 0; t < w; t++) {
                if (cc[t] > run) run = cc[t];
                cc[t] = run;
            }
        }
    } else {
        for (size_t t = 0; t < w; t++) h[t] = cc[t] = 0.0;
    }
    #pragma omp parallel for schedule(static) num_threads(nt) if (w * F > RK_PERF_PAR_MIN)
    for (size_t t = 0; t < w; t++)
        SFX(rk__feat_row)(f, u + t * ldu, h[t], cc[t], xf + t * F);
    return RK_OK;
}

/* Keys j0 .. j0+w-1 into kf (unrotated) with prefix constants kc from cin, kfac_t =
 * exp(kc_t - cend) and zt = sum_t kfac_t kf_t, their share of z at the block's final constant. */
static int SFX(key_block)(rk__perf *f, int nt, const rk_attn_config *cfg, const MAT *k,
                          size_t j0, size_t w, double cin, double *cend)
{
    REAL *kf = SCR(f)->kf;
    size_t F = f->F;
    int rc = SFX(phi)(f, nt, k->data + j0 * k->ld, k->ld, w, rk__attn_kpos(cfg, j0), 1, cin,
                      f->kh, f->kc, kf);
    if (rc) return rc;
    double ce = f->kc[w - 1];
    *cend = ce;
    double *kc = f->kc, *kfac = f->kfac;
    REAL *kfr = SCR(f)->kfr;
    for (size_t t = 0; t < w; t++) {
        kfac[t] = f->stab ? exp(kc[t] - ce) : 1.0;
        kfr[t] = (REAL)kfac[t];
    }
    /* zt (1, F) = kfac (1, w) . kf (w, F) */
    GEMM(f, nt, 1, F, w, kfr, 0, 1, kf, F, SCR(f)->ztr, F);
    return RK_OK;
}

/* kf rows (rotated if eq. 19) join the state: with e = exp(C - cend),
 * S = e S + sum_t kfac_t kf_t v_t^T,  z = e z + zt,  C = cend  (kfac_t = exp(kc_t - cend), from
 * key_block). */
static void SFX(absorb)(rk__perf *f, int nt, const MAT *v, size_t j0, size_t w, double *C,
                        double cend, size_t *ns)
{
    REAL *kf = SCR(f)->kf, *tmp = SCR(f)->tmp;
    size_t F = f->F, dv = f->dv;
    double e = *ns ? exp(*C - cend) : 0.0, *kfac = f->kfac;
    if (f->stab) {
        #pragma omp parallel for schedule(static) num_threads(nt) if (w * F > RK_PERF_PAR_MIN)
        for (size_t t = 0; t < w; t++) {
            REAL s = (REAL)kfac[t];
            if (s != 1) {
                #pragma omp simd
                for (size_t r = 0; r < F; r++) kf[t * F + r] *= s;
            }
        }
    }
    /* tmp (F, dv) = kf^T (F, w) . V[j0 .. j0+w) (w, dv) */
    GEMM(f, nt, F, dv, w, kf, 1, F, v->data + j0 * v->ld, v->ld, tmp, dv);
    double *S = f->S, *z = f->z;
    const REAL *zt = SCR(f)->ztr;
    /* e == 1 (the max did not grow) skips a multiplication by 1: the same bits */
    if (e == 1.0) {
        #pragma omp parallel for simd schedule(static) num_threads(nt) if (F * dv > RK_PERF_PAR_MIN)
        for (size_t i = 0; i < F * dv; i++) S[i] += (double)tmp[i];
    } else {
        #pragma omp parallel for simd schedule(static) num_threads(nt) if (F * dv > RK_PERF_PAR_MIN)
        for (size_t i = 0; i < F * dv; i++) S[i] = e * S[i] + (double)tmp[i];
    }
    for (size_t r = 0; r < F; r++) z[r] = e * z[r] + (double)zt[r];
    *C = cend;
    *ns += w;
}

/* a (nr, wi) ld T: a_ij = phi(q_i) . phi(k_{lo+j}) exp(kc_j - ci_i) for keys the query sees,
 * 0 for the others (never read, so a masked key cannot leak even as NaN). */
static void SFX(masked)(rk__perf *f, int nt, const REAL *qf, const REAL *kf, size_t nr,
                        size_t lo, size_t wi, REAL *a)
{
    size_t F = f->F, T = RK_PERF_QCHUNK;
    REAL *kt = SCR(f)->kt;                  /* kf^T (F, T), columns wi .. T-1 zero */
    for (size_t r = 0; r < F; r++) {
        for (size_t j = 0; j < wi; j++) kt[r * T + j] = kf[j * F + r];
        for (size_t j = wi; j < T; j++) kt[r * T + j] = 0;
    }
    /* all T columns: full vector tiles; the padding columns are never read */
    GEMM(f, nt, nr, T, F, qf, F, 1, kt, T, a, T);
    const double *kc = f->kc, *ci = f->ci;
    const size_t *vis = f->vis;
    #pragma omp parallel for schedule(static) num_threads(nt) if (nr * wi > RK_PERF_PAR_MIN)
    for (size_t i = 0; i < nr; i++)
        for (size_t j = 0; j < wi; j++)
            a[i * T + j] = lo + j < vis[i] ? (REAL)(a[i * T + j] * exp(kc[j] - ci[i])) : 0;
}

static int SFX(exec)(rk_attn *p, const MAT *q, const MAT *k, const MAT *v, MAT *out,
                     size_t kv_len)
{
    rk__perf *f = p->impl;
    const rk_attn_config *cfg = &p->cfg;
    /* q (n_q, d) ld q->ld; k (n_kv, d); v (n_kv, dv); out (n_q, dv); features (rows, F) */
    size_t F = f->F, dv = f->dv, nq = cfg->n_q, T = cfg->causal ? RK_PERF_QCHUNK : RK_PERF_BLOCK;
    int nt = cfg->nthreads, rc;
    REAL *qf = SCR(f)->qf, *kf = SCR(f)->kf, *a = SCR(f)->a, *an = SCR(f)->an;
    REAL *nsb = SCR(f)->ns, *ni = SCR(f)->ni, *st = SCR(f)->st;
    memset(f->S, 0, F * dv * sizeof(double));
    memset(f->z, 0, F * sizeof(double));
    double C = 0.0;       /* the state's key constant                */
    size_t ns = 0;        /* keys in the state: 0 .. ns-1            */

    for (size_t i0 = 0; i0 < nq; i0 += T) {
        size_t nr = MIN(T, nq - i0);
        size_t lo = rk__attn_visible(cfg, i0, kv_len), hi = rk__attn_visible(cfg, i0 + nr - 1, kv_len);
        double cend;

        /* 1. keys every query of the chunk sees join the state, a block at a time */
        while (ns < lo) {
            size_t w = MIN(RK_PERF_BLOCK, lo - ns);
            if ((rc = SFX(key_block)(f, nt, cfg, k, ns, w, ns ? C : -INFINITY, &cend))) return rc;
            if (f->rope_f) {
                MAT kv = { kf, w, F, F };
                if ((rc = ROPE_APPLY(f->rope_f, &kv, &kv, rk__attn_kpos(cfg, ns), NULL, 0))) return rc;
            }
            SFX(absorb)(f, nt, v, ns, w, &C, cend, &ns);
        }

        /* 2. query features; the masked keys lo .. hi-1 (causal, fewer than T); the key
         *    constant of each query: the prefix max over the keys it sees */
        if ((rc = SFX(phi)(f, nt, q->data + i0 * q->ld, q->ld, nr, rk__attn_qpos(cfg, i0), 0, 0.0,
                           f->qh, f->qc, qf)))
            return rc;
        size_t wi = hi - lo;
        cend = C;
        if (wi && (rc = SFX(key_block)(f, nt, cfg, k, lo, wi, ns ? C : -INFINITY, &cend)))
            return rc;
        for (size_t i = 0; i < nr; i++) {
            f->vis[i] = rk__attn_visible(cfg, i0 + i, kv_len);
            f->ci[i] = !f->stab ? 0.0 : f->vis[i] > lo ? f->kc[f->vis[i] - 1 - lo] : C;
        }

        /* 3. denominators from unrotated features: phi(q_i) . z (one product with the state
         *    st = [S | z 0 0 0 0 0 0 0], F x (dv + 8): the padding keeps it in vector tiles;
         *    for eq. 19 only its z block now, the S block after the rotation) and the masked part */
        size_t ls = dv + 8;
        if (ns) {
            for (size_t r = 0; r < F; r++) {
                #pragma omp simd
                for (size_t c = 0; c < dv; c++) st[r * ls + c] = (REAL)f->S[r * dv + c];
                st[r * ls + dv] = (REAL)f->z[r];          /* columns dv+1 .. dv+7 stay 0 */
            }
            if (f->rope_f) GEMM(f, nt, nr, 8, F, qf, F, 1, st + dv, ls, nsb + dv, ls);
            else GEMM(f, nt, nr, ls, F, qf, F, 1, st, ls, nsb, ls);
        }
        double *deni = f->deni;
        if (wi) SFX(masked)(f, nt, qf, kf, nr, lo, wi, a);
        for (size_t i = 0; i < nr; i++) {
            double s = 0.0;
            for (size_t j = 0; j < wi; j++) s += (double)a[i * RK_PERF_QCHUNK + j];
            deni[i] = s;
        }

        /* 4. eq. 19: numerators use features rotated at their positions */
        if (f->rope_f) {
            MAT qv = { qf, nr, F, F }, kv = { kf, wi, F, F };
            if ((rc = ROPE_APPLY(f->rope_f, &qv, &qv, rk__attn_qpos(cfg, i0), NULL, 0))) return rc;
            if (wi && (rc = ROPE_APPLY(f->rope_f, &kv, &kv, rk__attn_kpos(cfg, lo), NULL, 0)))
                return rc;
        }

        /* 5. numerators: phi(q) S (state) and the masked weights times V */
        if (ns && f->rope_f) GEMM(f, nt, nr, dv, F, qf, F, 1, st, ls, nsb, ls);
        if (wi) {
            REAL *aw = a;
            if (f->rope_f) { SFX(masked)(f, nt, qf, kf, nr, lo, wi, an); aw = an; }
            GEMM(f, nt, nr, dv, wi, aw, RK_PERF_QCHUNK, 1, v->data + lo * v->ld, v->ld, ni, dv);
        }

        /* 6. out_i = (e_i num_state + num_masked) / (e_i den_state + den_masked),
         *    e_i = exp(C - ci_i) brings the state to the query's constant */
        const double *ci = f->ci;
        const size_t *vis = f->vis;
        #pragma omp parallel for schedule(static) num_threads(nt) if (nr * dv > RK_PERF_PAR_MIN)
        for (size_t i = 0; i < nr; i++) {
            REAL *out_i = out->data + (i0 + i) * out->ld;
            double e = ns ? exp(C - ci[i]) : 0.0;
            double den = (ns ? e * (double)nsb[i * ls + dv] : 0.0) + deni[i];
            if (vis[i] == 0 || den == 0.0) {      /* no key, or every weight is 0 */
                for (size_t c = 0; c < dv; c++) out_i[c] = 0;
                continue;
            }
            for (size_t c = 0; c < dv; c++) {
                double num = (ns ? e * (double)nsb[i * ls + c] : 0.0) +
                             (wi ? (double)ni[i * dv + c] : 0.0);
                out_i[c] = (REAL)(num / den);
            }
        }

        /* 7. the masked keys join the state */
        if (wi) SFX(absorb)(f, nt, v, lo, wi, &C, cend, &ns);
    }
    return RK_OK;
}

#endif /* RK_PERF_TEMPLATE */
