/* Float32 kernels of exact softmax attention: the portable versions, then AVX2+FMA versions
 * with register-blocked 6 x 16 micro-kernels and a polynomial exp2, then AVX-512 versions.
 * Shapes and packed layouts are described in softmax_kern.h; the tile loop that calls these
 * is lib/softmax.c.
 *
 * Cost model (d = d_v = 64): per logit, q.k is 64 FMAs and p v is 64 FMAs, i.e. 16 vector
 * FMAs, against ~2.5 vector ops of max/exp2/sum, so the two micro-kernels decide the speed
 * (about 80% of the time at n = 4096, the softmax pass about 13%). The AVX2 ones keep 12
 * accumulators (6 rows x 2 vectors of 8) in registers and issue 8 loads per 12 FMAs, which
 * Zen3/Haswell-class cores sustain from L1. The AVX-512 ones use the 32 zmm registers for 24
 * accumulators (6 rows x 4 panels of 16 keys in qk, 6 rows x 64 columns in pv and tpv): 10
 * loads per 24 FMAs, enough independent chains for two 512-bit FMA pipes (Zen 5, Intel
 * server cores); the same per-element FMA chains as AVX2 (qk, pv, tpv give the AVX2 bits;
 * the row sums of the online softmax are added in another order).
 */
#include "softmax_kern.h"

#include <math.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#  define RK_SM_HAVE_AVX2 1
#  include <immintrin.h>
#  define AVX2 __attribute__((target("avx2,fma")))
#endif

/* ------------------------------------------------------------------------------------ */
/* Portable kernels: plain loops, the same contract as the vector ones.                 */
/* ------------------------------------------------------------------------------------ */

/* q is (MR, d) ld d, kt npan panels of (d, 16), s is (MR, 16 npan) ld lds */
static void qk_c(const float *q, size_t d, const float *kt, size_t npan, float *s, size_t lds)
{
    for (size_t p = 0; p < npan; p++) {
        const float *kt_p = kt + p * d * RK_SM_NR;
        for (size_t r = 0; r < RK_SM_MR; r++) {
            const float *q_r = q + r * d;
            float *s_r = s + r * lds + p * RK_SM_NR;
            for (size_t jj = 0; jj < RK_SM_NR; jj++) {
                float acc = 0.0f;
                for (size_t c = 0; c < d; c++) acc += q_r[c] * kt_p[c * RK_SM_NR + jj];
                s_r[jj] = acc;
            }
        }
    }
}

/* s is (MR, ncol) ld lds logits in the log2 domain; nv (MR) columns seen per row */
static void rows_c(float *s, size_t lds, size_t ncol, const size_t *nv, float *m, double *l,
                   float *alpha)
{
    for (size_t r = 0; r < RK_SM_MR; r++) {
        float *s_r = s + r * lds;
        alpha[r] = 1.0f;
        // 1. masked columns and the row max
        float mx = -INFINITY;
        for (size_t j = 0; j < ncol; j++) {
            if (j >= nv[r]) s_r[j] = -INFINITY;
            if (s_r[j] > mx) mx = s_r[j];
        }
        float m_new = mx > m[r] ? mx : m[r];
        if (!(m_new > -INFINITY)) {          /* nothing finite to weigh: the row stays empty */
            memset(s_r, 0, ncol * sizeof *s_r);
            continue;
        }
        // 2. exp2 and sum; the old sum and accumulator are rescaled by exp2(m_old - m_new)
        alpha[r] = exp2f(m[r] - m_new);      /* m_old = -inf on the first tile: alpha = 0 */
        double sum = 0.0;
        for (size_t j = 0; j < ncol; j++) {
            float p = exp2f(s_r[j] - m_new);
            s_r[j] = p;
            sum += p;
        }
        l[r] = l[r] * alpha[r] + sum;
        m[r] = m_new;
    }
}

/* p is (MR, max nv) ld ldp, v is (max nv, ncols) ld ldv, o is (MR, ncols) ld ldo; row r
 * reads value rows j < nv[r] only */
static void pv_c(const float *p, size_t ldp, const float *v, size_t ldv, const size_t *nv,
                 size_t ncols, const float *alpha, float *o, size_t ldo)
{
    for (size_t r = 0; r < RK_SM_MR; r++) {
        const float *p_r = p + r * ldp;
        float *o_r = o + r * ldo;
        for (size_t c = 0; c < ncols; c++) o_r[c] *= alpha[r];
        for (size_t j = 0; j < nv[r]; j++) {
            const float *v_j = v + j * ldv;
            float w = p_r[j];
            for (size_t c = 0; c < ncols; c++) o_r[c] += w * v_j[c];
        }
    }
}

static void rows_bwd_c(float *s, float *dp, size_t lds, size_t ncol, const size_t *nv,
                       const float *lse, const float *dd)
{
    for (size_t r = 0; r < RK_SM_MR; r++) {
        float *s_r = s + r * lds, *dp_r = dp + r * lds;
        const size_t n = lse[r] == -INFINITY ? 0 : nv[r];
        for (size_t j = 0; j < ncol; j++) {
            if (j < n) {
                float p = exp2f(s_r[j] - lse[r]);
                s_r[j] = p;
                dp_r[j] = p * (dp_r[j] - dd[r]);
            } else {
                s_r[j] = 0.0f;
                dp_r[j] = 0.0f;
            }
        }
    }
}

static void tpv_c(const float *w, size_t ldw, const float *x, size_t ldx, size_t nr,
                  const size_t *rs, size_t nk, size_t ncols, float *o, size_t ldo)
{
    for (size_t j = 0; j < nk; j++) {
        float *o_j = o + j * ldo;
        for (size_t r = rs[j]; r < nr; r++) {
            const float wr = w[r * ldw + j], *x_r = x + r * ldx;
            for (size_t c = 0; c < ncols; c++) o_j[c] += wr * x_r[c];
        }
    }
}

/* max(m, |x|) with a NaN x ignored (m > 0 or 0, never NaN), written as a compare */
static inline float max_abs_c(float m, float x)
{
    float a = fabsf(x);
    return a > m ? a : m;
}

/* A panel's pad keys jn .. 15 (jn < 16 in the last panel) are 0 in every channel. */
static void zero_pad_keys(float *kt, size_t jn, size_t d)
{
    if (jn < RK_SM_NR)
        for (size_t c = 0; c < d; c++)
            memset(kt + c * RK_SM_NR + jn, 0, (RK_SM_NR - jn) * sizeof(float));
}

static float pack_v_c(const float *v, size_t ldv, size_t jn, size_t dv, float *vp, size_t ldp)
{
    float m = 0.0f;
    for (size_t j = 0; j < jn; j++)
        for (size_t c = 0; c < dv; c++) {
            m = max_abs_c(m, v[j * ldv + c]);
            vp[j * ldp + c] = v[j * ldv + c];
        }
    return m;
}

static float pack_k_c(const float *k, size_t ldk, size_t jn, size_t d, float *kt)
{
    float m = 0.0f;
    for (size_t jj = 0; jj < jn; jj++) {
        const float *k_j = k + jj * ldk;
        for (size_t c = 0; c < d; c++) {
            m = max_abs_c(m, k_j[c]);
            kt[c * RK_SM_NR + jj] = k_j[c];
        }
    }
    zero_pad_keys(kt, jn, d);
    return m;
}

static const rk__sm_kernels kern_c = { "portable", qk_c, rows_c, pv_c, rows_bwd_c, tpv_c,
                                        pack_k_c, pack_v_c, RK_ISA_PORTABLE };

/* ------------------------------------------------------------------------------------ */
/* AVX2 + FMA kernels                                                                   */
/* ------------------------------------------------------------------------------------ */
#ifdef RK_SM_HAVE_AVX2

/* 2^x for x in (-inf, 127]: x = n + f with n = round(x), f in [-0.5, 0.5];
 * 2^f = 1 + c1 f + ... + c6 f^6 (Cephes exp2f minimax, ~1 ulp), evaluated by Estrin's scheme
 * (a 3-deep FMA tree instead of a 6-deep Horner chain: the softmax pass is latency-bound),
 * 2^n built in the exponent bits. x <= -127 (and -inf) gives n = -127, whose exponent field
 * is 0: the result is exactly 0. Inputs in (-127, -126.5) also flush to 0 instead of a
 * subnormal. NaN propagates. */
AVX2 static inline __m256 exp2_avx2(__m256 x)
{
    x = _mm256_max_ps(_mm256_set1_ps(-127.0f), x);   /* second operand NaN -> NaN kept */
    x = _mm256_min_ps(_mm256_set1_ps(127.0f), x);
    __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_sub_ps(x, n);
    __m256 f2 = _mm256_mul_ps(f, f), f4 = _mm256_mul_ps(f2, f2);
    __m256 p01 = _mm256_fmadd_ps(_mm256_set1_ps(6.931472028550421e-1f), f, _mm256_set1_ps(1.0f));
    __m256 p23 = _mm256_fmadd_ps(_mm256_set1_ps(5.550332471162809e-2f), f,
                                 _mm256_set1_ps(2.402264791363012e-1f));
    __m256 p45 = _mm256_fmadd_ps(_mm256_set1_ps(1.339887440266574e-3f), f,
                                 _mm256_set1_ps(9.618437357674640e-3f));
    __m256 p46 = _mm256_fmadd_ps(_mm256_set1_ps(1.535336188319500e-4f), f2, p45);
    __m256 p03 = _mm256_fmadd_ps(p23, f2, p01);
    __m256 p = _mm256_fmadd_ps(p46, f4, p03);
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(e, 23)));
}

AVX2 static inline float hmax_avx2(__m256 v)
{
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}

AVX2 static inline float hsum_avx2(__m256 v)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}

/* S block = Q block K panel^T. q is (6, d) ld d, kt npan panels of (d, 16) (64-B aligned),
 * s is (6, 16 npan) ld lds. Per channel c: 2 loads of 8 keys, 6 broadcasts of q[r][c],
 * 12 FMAs into 12 accumulators that stay in registers for the whole panel. */
AVX2 static void qk_avx2(const float *q, size_t d, const float *kt, size_t npan, float *s,
                         size_t lds)
{
    const float *q0 = q, *q1 = q + d, *q2 = q + 2 * d, *q3 = q + 3 * d, *q4 = q + 4 * d,
                *q5 = q + 5 * d;
    for (size_t p = 0; p < npan; p++) {
        const float *b = kt + p * d * RK_SM_NR;
        __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
        __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
        __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
        __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
        __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
        __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
        for (size_t c = 0; c < d; c++, b += RK_SM_NR) {
            __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8), a;
            a = _mm256_broadcast_ss(q0 + c);
            c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
            a = _mm256_broadcast_ss(q1 + c);
            c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
            a = _mm256_broadcast_ss(q2 + c);
            c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
            a = _mm256_broadcast_ss(q3 + c);
            c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
            a = _mm256_broadcast_ss(q4 + c);
            c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
            a = _mm256_broadcast_ss(q5 + c);
            c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
        }
        float *s_p = s + p * RK_SM_NR;
        _mm256_storeu_ps(s_p, c00); _mm256_storeu_ps(s_p + 8, c01); s_p += lds;
        _mm256_storeu_ps(s_p, c10); _mm256_storeu_ps(s_p + 8, c11); s_p += lds;
        _mm256_storeu_ps(s_p, c20); _mm256_storeu_ps(s_p + 8, c21); s_p += lds;
        _mm256_storeu_ps(s_p, c30); _mm256_storeu_ps(s_p + 8, c31); s_p += lds;
        _mm256_storeu_ps(s_p, c40); _mm256_storeu_ps(s_p + 8, c41); s_p += lds;
        _mm256_storeu_ps(s_p, c50); _mm256_storeu_ps(s_p + 8, c51);
    }
}

/* Online softmax of a 6-row block, s (6, ncol) ld lds, ncol a multiple of 16. The rows are
 * independent, so each pass runs over all six before the next starts: the latency of one
 * row's max reduction overlaps the others', and the six rescale factors come from one exp2.
 * Sums use float lanes (8 per vector, two vectors), folded into the double l once per tile. */
AVX2 static void rows_avx2(float *s, size_t lds, size_t ncol, const size_t *nv, float *m,
                           double *l, float *alpha)
{
    float m_new[8] = { 0 }, m_old[8] = { 0 };
    int live[RK_SM_MR];
    // 1. mask the columns each row does not see, row max
    for (size_t r = 0; r < RK_SM_MR; r++) {
        float *s_r = s + r * lds;
        for (size_t j = nv[r]; j < ncol; j++) s_r[j] = -INFINITY;
        __m256 mx0 = _mm256_set1_ps(-INFINITY), mx1 = mx0;
        for (size_t j = 0; j < ncol; j += 16) {
            mx0 = _mm256_max_ps(mx0, _mm256_loadu_ps(s_r + j));
            mx1 = _mm256_max_ps(mx1, _mm256_loadu_ps(s_r + j + 8));
        }
        float mx = hmax_avx2(_mm256_max_ps(mx0, mx1));
        m_new[r] = mx > m[r] ? mx : m[r];
        live[r] = nv[r] > 0 && m_new[r] > -INFINITY;
        m_old[r] = live[r] ? m[r] : 0.0f;
        if (!live[r]) m_new[r] = 0.0f;
    }
    // 2. the six rescale factors exp2(m_old - m_new) at once (-inf - finite -> 0)
    _mm256_storeu_ps(m_old, exp2_avx2(_mm256_sub_ps(_mm256_loadu_ps(m_old),
                                                    _mm256_loadu_ps(m_new))));
    // 3. p = exp2(s - m_new) in place, and its sum
    for (size_t r = 0; r < RK_SM_MR; r++) {
        float *s_r = s + r * lds;
        if (!live[r]) {                      /* sees none of these keys: p = 0, keep o */
            memset(s_r, 0, ncol * sizeof *s_r);
            alpha[r] = 1.0f;
            continue;
        }
        __m256 vm = _mm256_set1_ps(m_new[r]), acc0 = _mm256_setzero_ps(), acc1 = acc0;
        for (size_t j = 0; j < ncol; j += 16) {
            __m256 p0 = exp2_avx2(_mm256_sub_ps(_mm256_loadu_ps(s_r + j), vm));
            __m256 p1 = exp2_avx2(_mm256_sub_ps(_mm256_loadu_ps(s_r + j + 8), vm));
            _mm256_storeu_ps(s_r + j, p0);
            _mm256_storeu_ps(s_r + j + 8, p1);
            acc0 = _mm256_add_ps(acc0, p0);
            acc1 = _mm256_add_ps(acc1, p1);
        }
        alpha[r] = m_old[r];
        l[r] = l[r] * alpha[r] + hsum_avx2(_mm256_add_ps(acc0, acc1));
        m[r] = m_new[r];
    }
}

/* O block = diag(alpha) O block + P block V. p is (6, max nv) ld ldp, v is (max nv, ncols)
 * ld ldv (64-B aligned rows), o is (6, ncols) ld ldo. Per 16 columns: the rescaled
 * accumulator is loaded once, then per key j < min nv 2 loads of v_j, 6 broadcasts of
 * p[r][j], 12 FMAs; keys min nv <= j < max nv (a causal diagonal block: at most 5) update
 * only the rows with j < nv[r], so no row ever multiplies a value row it must not see. */
AVX2 static void pv_avx2(const float *p, size_t ldp, const float *v, size_t ldv,
                         const size_t *nv, size_t ncols, const float *alpha, float *o,
                         size_t ldo)
{
    const float *p0 = p, *p1 = p + ldp, *p2 = p + 2 * ldp, *p3 = p + 3 * ldp,
                *p4 = p + 4 * ldp, *p5 = p + 5 * ldp;
    const size_t n0 = nv[0], n1 = nv[1], n2 = nv[2], n3 = nv[3], n4 = nv[4], n5 = nv[5];
    size_t lo = n0, hi = n0;
    for (size_t r = 1; r < RK_SM_MR; r++) {
        if (nv[r] < lo) lo = nv[r];
        if (nv[r] > hi) hi = nv[r];
    }
    for (size_t cb = 0; cb < ncols; cb += RK_SM_NR) {
        float *o0 = o + cb, *o1 = o0 + ldo, *o2 = o1 + ldo, *o3 = o2 + ldo, *o4 = o3 + ldo,
              *o5 = o4 + ldo;
        __m256 a;
        a = _mm256_set1_ps(alpha[0]);
        __m256 c00 = _mm256_mul_ps(a, _mm256_loadu_ps(o0)), c01 = _mm256_mul_ps(a, _mm256_loadu_ps(o0 + 8));
        a = _mm256_set1_ps(alpha[1]);
        __m256 c10 = _mm256_mul_ps(a, _mm256_loadu_ps(o1)), c11 = _mm256_mul_ps(a, _mm256_loadu_ps(o1 + 8));
        a = _mm256_set1_ps(alpha[2]);
        __m256 c20 = _mm256_mul_ps(a, _mm256_loadu_ps(o2)), c21 = _mm256_mul_ps(a, _mm256_loadu_ps(o2 + 8));
        a = _mm256_set1_ps(alpha[3]);
        __m256 c30 = _mm256_mul_ps(a, _mm256_loadu_ps(o3)), c31 = _mm256_mul_ps(a, _mm256_loadu_ps(o3 + 8));
        a = _mm256_set1_ps(alpha[4]);
        __m256 c40 = _mm256_mul_ps(a, _mm256_loadu_ps(o4)), c41 = _mm256_mul_ps(a, _mm256_loadu_ps(o4 + 8));
        a = _mm256_set1_ps(alpha[5]);
        __m256 c50 = _mm256_mul_ps(a, _mm256_loadu_ps(o5)), c51 = _mm256_mul_ps(a, _mm256_loadu_ps(o5 + 8));
        const float *b = v + cb;
        size_t j = 0;
        for (; j < lo; j++, b += ldv) {                 /* keys all six rows see */
            __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
            a = _mm256_broadcast_ss(p0 + j);
            c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
            a = _mm256_broadcast_ss(p1 + j);
            c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
            a = _mm256_broadcast_ss(p2 + j);
            c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
            a = _mm256_broadcast_ss(p3 + j);
            c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
            a = _mm256_broadcast_ss(p4 + j);
            c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
            a = _mm256_broadcast_ss(p5 + j);
            c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
        }
        for (; j < hi; j++, b += ldv) {                 /* keys only some rows see */
            __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
            if (j < n0) {
                a = _mm256_broadcast_ss(p0 + j);
                c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
            }
            if (j < n1) {
                a = _mm256_broadcast_ss(p1 + j);
                c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
            }
            if (j < n2) {
                a = _mm256_broadcast_ss(p2 + j);
                c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
            }
            if (j < n3) {
                a = _mm256_broadcast_ss(p3 + j);
                c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
            }
            if (j < n4) {
                a = _mm256_broadcast_ss(p4 + j);
                c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
            }
            if (j < n5) {
                a = _mm256_broadcast_ss(p5 + j);
                c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
            }
        }
        _mm256_storeu_ps(o0, c00); _mm256_storeu_ps(o0 + 8, c01);
        _mm256_storeu_ps(o1, c10); _mm256_storeu_ps(o1 + 8, c11);
        _mm256_storeu_ps(o2, c20); _mm256_storeu_ps(o2 + 8, c21);
        _mm256_storeu_ps(o3, c30); _mm256_storeu_ps(o3 + 8, c31);
        _mm256_storeu_ps(o4, c40); _mm256_storeu_ps(o4 + 8, c41);
        _mm256_storeu_ps(o5, c50); _mm256_storeu_ps(o5 + 8, c51);
    }
}

AVX2 static void exp2_array_avx2(float *x, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, exp2_avx2(_mm256_loadu_ps(x + i)));
    if (i < n) {                                    /* tail through a padded vector */
        float t[8] = { 0 };
        memcpy(t, x + i, (n - i) * sizeof *x);
        _mm256_storeu_ps(t, exp2_avx2(_mm256_loadu_ps(t)));
        memcpy(x + i, t, (n - i) * sizeof *x);
    }
}

/* P and dS of a 6-row block: p = exp2(s - lse), ds = p (dp - dd) where the row sees the
 * column, exactly 0 elsewhere (a blend, so a NaN logit of an unseen key never survives). */
AVX2 static void rows_bwd_avx2(float *s, float *dp, size_t lds, size_t ncol, const size_t *nv,
                               const float *lse, const float *dd)
{
    const __m256 zero = _mm256_setzero_ps();
    const __m256i step = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (size_t r = 0; r < RK_SM_MR; r++) {
        float *s_r = s + r * lds, *dp_r = dp + r * lds;
        const size_t n = lse[r] == -INFINITY ? 0 : nv[r];
        const __m256 vl = _mm256_set1_ps(lse[r]), vd = _mm256_set1_ps(dd[r]);
        const __m256i vn = _mm256_set1_epi32((int)n);
        for (size_t j = 0; j < ncol; j += 8) {
            __m256i idx = _mm256_add_epi32(_mm256_set1_epi32((int)j), step);
            __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(vn, idx));
            if (j >= n) {
                _mm256_storeu_ps(s_r + j, zero);
                _mm256_storeu_ps(dp_r + j, zero);
                continue;
            }
            __m256 p = exp2_avx2(_mm256_sub_ps(_mm256_loadu_ps(s_r + j), vl));
            __m256 ds = _mm256_mul_ps(p, _mm256_sub_ps(_mm256_loadu_ps(dp_r + j), vd));
            _mm256_storeu_ps(s_r + j, _mm256_blendv_ps(zero, p, keep));
            _mm256_storeu_ps(dp_r + j, _mm256_blendv_ps(zero, ds, keep));
        }
    }
}

/* o (nk <= 6 key rows) += w^T x over the rows each key's suffix covers: per 16 columns the
 * six accumulators are loaded once, then per row 2 loads of x, up to 6 broadcasts of w[r][j]
 * and 12 FMAs; rows only some keys see (causal diagonal blocks) update only those keys. */
AVX2 static void tpv_avx2(const float *w, size_t ldw, const float *x, size_t ldx, size_t nr,
                          const size_t *rs, size_t nk, size_t ncols, float *o, size_t ldo)
{
    size_t st[RK_SM_MR], lo = nr, hi = 0;
    for (size_t j = 0; j < RK_SM_MR; j++) {
        st[j] = j < nk ? rs[j] : nr;               /* a missing key sees no row */
        if (st[j] < lo) lo = st[j];
        if (j < nk && st[j] > hi) hi = st[j];
    }
    if (nk == 0 || lo >= nr) return;
    if (hi > nr || nk < RK_SM_MR) hi = nr;   /* a short block: every row tests its keys */
    for (size_t cb = 0; cb < ncols; cb += RK_SM_NR) {
        __m256 c[RK_SM_MR][2];
        for (size_t j = 0; j < RK_SM_MR; j++) {
            if (j < nk) {
                c[j][0] = _mm256_loadu_ps(o + j * ldo + cb);
                c[j][1] = _mm256_loadu_ps(o + j * ldo + cb + 8);
            } else {
                c[j][0] = c[j][1] = _mm256_setzero_ps();
            }
        }
        size_t r = lo;
        for (; r < hi; r++) {                          /* rows only some keys see */
            const float *x_r = x + r * ldx + cb, *w_r = w + r * ldw;
            __m256 b0 = _mm256_loadu_ps(x_r), b1 = _mm256_loadu_ps(x_r + 8);
            for (size_t j = 0; j < RK_SM_MR; j++)
                if (r >= st[j]) {
                    __m256 a = _mm256_broadcast_ss(w_r + j);
                    c[j][0] = _mm256_fmadd_ps(a, b0, c[j][0]);
                    c[j][1] = _mm256_fmadd_ps(a, b1, c[j][1]);
                }
        }
        for (; r < nr; r++) {                          /* rows every key of the block sees */
            const float *x_r = x + r * ldx + cb, *w_r = w + r * ldw;
            __m256 b0 = _mm256_loadu_ps(x_r), b1 = _mm256_loadu_ps(x_r + 8), a;
            a = _mm256_broadcast_ss(w_r + 0);
            c[0][0] = _mm256_fmadd_ps(a, b0, c[0][0]); c[0][1] = _mm256_fmadd_ps(a, b1, c[0][1]);
            a = _mm256_broadcast_ss(w_r + 1);
            c[1][0] = _mm256_fmadd_ps(a, b0, c[1][0]); c[1][1] = _mm256_fmadd_ps(a, b1, c[1][1]);
            a = _mm256_broadcast_ss(w_r + 2);
            c[2][0] = _mm256_fmadd_ps(a, b0, c[2][0]); c[2][1] = _mm256_fmadd_ps(a, b1, c[2][1]);
            a = _mm256_broadcast_ss(w_r + 3);
            c[3][0] = _mm256_fmadd_ps(a, b0, c[3][0]); c[3][1] = _mm256_fmadd_ps(a, b1, c[3][1]);
            a = _mm256_broadcast_ss(w_r + 4);
            c[4][0] = _mm256_fmadd_ps(a, b0, c[4][0]); c[4][1] = _mm256_fmadd_ps(a, b1, c[4][1]);
            a = _mm256_broadcast_ss(w_r + 5);
            c[5][0] = _mm256_fmadd_ps(a, b0, c[5][0]); c[5][1] = _mm256_fmadd_ps(a, b1, c[5][1]);
        }
        for (size_t j = 0; j < nk; j++) {
            _mm256_storeu_ps(o + j * ldo + cb, c[j][0]);
            _mm256_storeu_ps(o + j * ldo + cb + 8, c[j][1]);
        }
    }
}

/* The magnitudes of a row into m8 (8 lanes at a time) and *m (the tail), the row copied to o
 * on the way unless o is NULL: _mm256_max_ps(a, m8) keeps m8 where a is NaN (the second
 * operand). */
AVX2 static inline __m256 absmax_row_avx2(const float *x, size_t n, float *o, __m256 m8, float *m)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_loadu_ps(x + i);
        m8 = _mm256_max_ps(_mm256_andnot_ps(sign, a), m8);
        if (o) _mm256_storeu_ps(o + i, a);
    }
    for (; i < n; i++) {
        *m = max_abs_c(*m, x[i]);
        if (o) o[i] = x[i];
    }
    return m8;
}

/* m folded with the 8 lanes of m8, once per call of a packing kernel. */
AVX2 static float absmax_fold_avx2(__m256 m8, float m)
{
    float t[8];
    _mm256_storeu_ps(t, m8);
    for (int l = 0; l < 8; l++) m = max_abs_c(m, t[l]);
    return m;
}

AVX2 static float pack_v_avx2(const float *v, size_t ldv, size_t jn, size_t dv, float *vp,
                              size_t ldp)
{
    __m256 m8 = _mm256_setzero_ps();
    float m = 0.0f;
    for (size_t j = 0; j < jn; j++) m8 = absmax_row_avx2(v + j * ldv, dv, vp + j * ldp, m8, &m);
    return absmax_fold_avx2(m8, m);
}

/* The magnitudes vectorised (kept in a register across rows), the transposing copy scalar
 * (stores one per cycle). */
AVX2 static float pack_k_avx2(const float *k, size_t ldk, size_t jn, size_t d, float *kt)
{
    __m256 m8 = _mm256_setzero_ps();
    float m = 0.0f;
    for (size_t jj = 0; jj < jn; jj++) {
        const float *k_j = k + jj * ldk;
        m8 = absmax_row_avx2(k_j, d, NULL, m8, &m);
        for (size_t c = 0; c < d; c++) kt[c * RK_SM_NR + jj] = k_j[c];
    }
    zero_pad_keys(kt, jn, d);
    return absmax_fold_avx2(m8, m);
}

static const rk__sm_kernels kern_avx2 = { "avx2+fma", qk_avx2, rows_avx2, pv_avx2,
                                          rows_bwd_avx2, tpv_avx2, pack_k_avx2, pack_v_avx2,
                                          RK_ISA_AVX2 };

/* ------------------------------------------------------------------------------------ */
/* AVX-512 kernels (F, DQ, BW, VL): one zmm holds a row's 16 keys of a panel, so a 6-row    */
/* block's logits of one panel are 6 registers; the products work on four panels (qk) or  */
/* 64 columns (pv, tpv) at a time: 24 accumulators, 4 vector loads and 6 broadcasts per 24 */
/* FMAs, chains enough to hide the FMA latency on two 512-bit FMA pipes; then 2 and 1.    */
/* Masks replace the blends and scalar tails of the AVX2 versions (in registers: masked   */
/* loads and stores in a loop body are slow on Zen 5, see lib/rope.c).                     */
/* ------------------------------------------------------------------------------------ */

#define AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))

/* The AVX2 exp2 on 16 lanes: the same clamps, rounding, Estrin tree and exponent bits, so
 * each lane gives the AVX2 function's bits (and its flush to 0 below 2^-126.5). */
AVX512 static inline __m512 exp2_avx512(__m512 x)
{
    x = _mm512_max_ps(_mm512_set1_ps(-127.0f), x);   /* second operand NaN -> NaN kept */
    x = _mm512_min_ps(_mm512_set1_ps(127.0f), x);
    __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(x, n);
    __m512 f2 = _mm512_mul_ps(f, f), f4 = _mm512_mul_ps(f2, f2);
    __m512 p01 = _mm512_fmadd_ps(_mm512_set1_ps(6.931472028550421e-1f), f, _mm512_set1_ps(1.0f));
    __m512 p23 = _mm512_fmadd_ps(_mm512_set1_ps(5.550332471162809e-2f), f,
                                 _mm512_set1_ps(2.402264791363012e-1f));
    __m512 p45 = _mm512_fmadd_ps(_mm512_set1_ps(1.339887440266574e-3f), f,
                                 _mm512_set1_ps(9.618437357674640e-3f));
    __m512 p46 = _mm512_fmadd_ps(_mm512_set1_ps(1.535336188319500e-4f), f2, p45);
    __m512 p03 = _mm512_fmadd_ps(p23, f2, p01);
    __m512 p = _mm512_fmadd_ps(p46, f4, p03);
    __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_mul_ps(p, _mm512_castsi512_ps(_mm512_slli_epi32(e, 23)));
}

/* Lanes j0 + i < n of a 16-lane vector. */
static inline __mmask16 lanes_below(size_t n, size_t j0)
{
    if (j0 >= n) return 0;
    return n - j0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j0)) - 1u);
}

#define RK_SM_INLINE __attribute__((always_inline)) inline
#define UNROLL _Pragma("GCC unroll 8")

/* S block = Q block K panels^T over NP (4, 2 or 1) consecutive panels at once: 6 NP
 * accumulators (24 for four panels, with 4 panel loads and 6 broadcasts per 24 FMAs). NP is
 * a constant at every call, so the loops unroll and the accumulators stay in registers. Each
 * logit is the chain fma(q[c], k[c], acc) over c = 0 .. d-1 from 0, as in the AVX2 kernel. */
AVX512 static RK_SM_INLINE void qk_block512(const int NP, const float *q, size_t d,
                                            const float *b, float *s, size_t lds)
{
    const size_t ps = d * RK_SM_NR;
    __m512 acc[RK_SM_MR][4];
    UNROLL for (int r = 0; r < RK_SM_MR; r++)
        UNROLL for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_ps();
    for (size_t c = 0; c < d; c++, b += RK_SM_NR) {
        __m512 kv[4];
        UNROLL for (int p = 0; p < NP; p++) kv[p] = _mm512_load_ps(b + p * ps);
        UNROLL for (int r = 0; r < RK_SM_MR; r++) {
            __m512 a = _mm512_set1_ps(q[r * d + c]);
            UNROLL for (int p = 0; p < NP; p++) acc[r][p] = _mm512_fmadd_ps(a, kv[p], acc[r][p]);
        }
    }
    UNROLL for (int r = 0; r < RK_SM_MR; r++)
        UNROLL for (int p = 0; p < NP; p++) _mm512_storeu_ps(s + r * lds + p * RK_SM_NR, acc[r][p]);
}

AVX512 static void qk_avx512(const float *q, size_t d, const float *kt, size_t npan, float *s,
                             size_t lds)
{
    const size_t ps = d * RK_SM_NR;
    size_t p = 0;
    for (; p + 4 <= npan; p += 4) qk_block512(4, q, d, kt + p * ps, s + p * RK_SM_NR, lds);
    if (p + 2 <= npan) { qk_block512(2, q, d, kt + p * ps, s + p * RK_SM_NR, lds); p += 2; }
    if (p < npan) qk_block512(1, q, d, kt + p * ps, s + p * RK_SM_NR, lds);
}

/* Online softmax of a 6-row block (the contract and the passes of rows_avx2), each pass over
 * the six rows at once (for each 16 columns, every row): six independent max and exp2 chains
 * in flight instead of one row's four, which hides the exp2's latency. Masked columns are
 * replaced by -inf in registers (a mask blend) for the max, and their p is written as an
 * exact 0 (a zero-masking move), so whatever they held never reaches the max, p or the sum.
 * The max keeps its accumulator as the second operand of vmaxps, which returns that operand
 * when the other is NaN: NaN logits are left out of the max, as in the portable loop (and
 * then make p, the sum and the row's output NaN). */
AVX512 static void rows_avx512(float *s, size_t lds, size_t ncol, const size_t *nv, float *m,
                               double *l, float *alpha)
{
    float m_new[16] = { 0 }, m_old[16] = { 0 };
    int live[RK_SM_MR];
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 acc[RK_SM_MR];
    // 1. row maxima over the columns each row sees
    UNROLL for (int r = 0; r < RK_SM_MR; r++) acc[r] = ninf;
    for (size_t j = 0; j < ncol; j += 16)
        UNROLL for (int r = 0; r < RK_SM_MR; r++)
            if (j < nv[r]) {
                __m512 x = _mm512_mask_blend_ps(lanes_below(nv[r], j), ninf,
                                                _mm512_loadu_ps(s + r * lds + j));
                acc[r] = _mm512_max_ps(x, acc[r]);
            }
    UNROLL for (int r = 0; r < RK_SM_MR; r++) {
        float v = _mm512_reduce_max_ps(acc[r]);
        m_new[r] = v > m[r] ? v : m[r];
        live[r] = nv[r] > 0 && m_new[r] > -INFINITY;
        m_old[r] = live[r] ? m[r] : 0.0f;
        if (!live[r]) m_new[r] = 0.0f;
    }
    // 2. the six rescale factors exp2(m_old - m_new) at once (-inf - finite -> 0)
    _mm512_storeu_ps(m_old, exp2_avx512(_mm512_sub_ps(_mm512_loadu_ps(m_old),
                                                      _mm512_loadu_ps(m_new))));
    // 3. p = exp2(s - m_new) in place (exact 0 where masked, all 0 in a row left out), sums
    UNROLL for (int r = 0; r < RK_SM_MR; r++) acc[r] = _mm512_setzero_ps();
    for (size_t j = 0; j < ncol; j += 16)
        UNROLL for (int r = 0; r < RK_SM_MR; r++) {
            float *s_rj = s + r * lds + j;
            __mmask16 k = live[r] ? lanes_below(nv[r], j) : 0;
            if (!k) { _mm512_storeu_ps(s_rj, _mm512_setzero_ps()); continue; }
            __m512 p = _mm512_maskz_mov_ps(k, exp2_avx512(_mm512_sub_ps(_mm512_loadu_ps(s_rj),
                                                                        _mm512_set1_ps(m_new[r]))));
            _mm512_storeu_ps(s_rj, p);
            acc[r] = _mm512_add_ps(acc[r], p);
        }
    UNROLL for (int r = 0; r < RK_SM_MR; r++) {
        if (!live[r]) {                      /* sees none of these keys: p = 0, keep o */
            alpha[r] = 1.0f;
            continue;
        }
        alpha[r] = m_old[r];
        l[r] = l[r] * alpha[r] + _mm512_reduce_add_ps(acc[r]);
        m[r] = m_new[r];
    }
}

/* O = diag(alpha) O + P V over 16 NV columns (NV = 4, 2, 1: 64, 32, 16 columns; 6 NV
 * accumulators). Keys every row sees go through the 6-row kernel, the few keys only some
 * rows see (causal diagonal) row by row, as in pv_avx2. v rows are 64-B aligned (ldv a
 * multiple of 16). */
AVX512 static RK_SM_INLINE void pv_block512(const int NV, const float *p, size_t ldp,
                                            const float *v, size_t ldv, const size_t *nv,
                                            size_t lo, size_t hi, const float *alpha, float *o,
                                            size_t ldo)
{
    __m512 acc[RK_SM_MR][4];
    UNROLL for (int r = 0; r < RK_SM_MR; r++) {
        __m512 a = _mm512_set1_ps(alpha[r]);
        UNROLL for (int c = 0; c < NV; c++)
            acc[r][c] = _mm512_mul_ps(a, _mm512_loadu_ps(o + r * ldo + 16 * c));
    }
    size_t j = 0;
    for (; j < lo; j++, v += ldv) {                 /* keys all six rows see */
        __m512 b[4];
        UNROLL for (int c = 0; c < NV; c++) b[c] = _mm512_load_ps(v + 16 * c);
        UNROLL for (int r = 0; r < RK_SM_MR; r++) {
            __m512 a = _mm512_set1_ps(p[r * ldp + j]);
            UNROLL for (int c = 0; c < NV; c++) acc[r][c] = _mm512_fmadd_ps(a, b[c], acc[r][c]);
        }
    }
    for (; j < hi; j++, v += ldv) {                 /* keys only some rows see */
        __m512 b[4];
        UNROLL for (int c = 0; c < NV; c++) b[c] = _mm512_load_ps(v + 16 * c);
        UNROLL for (int r = 0; r < RK_SM_MR; r++)
            if (j < nv[r]) {
                __m512 a = _mm512_set1_ps(p[r * ldp + j]);
                UNROLL for (int c = 0; c < NV; c++) acc[r][c] = _mm512_fmadd_ps(a, b[c], acc[r][c]);
            }
    }
    UNROLL for (int r = 0; r < RK_SM_MR; r++)
        UNROLL for (int c = 0; c < NV; c++) _mm512_storeu_ps(o + r * ldo + 16 * c, acc[r][c]);
}

AVX512 static void pv_avx512(const float *p, size_t ldp, const float *v, size_t ldv,
                             const size_t *nv, size_t ncols, const float *alpha, float *o,
                             size_t ldo)
{
    size_t lo = nv[0], hi = nv[0];
    for (size_t r = 1; r < RK_SM_MR; r++) {
        if (nv[r] < lo) lo = nv[r];
        if (nv[r] > hi) hi = nv[r];
    }
    size_t cb = 0;
    for (; cb + 64 <= ncols; cb += 64) pv_block512(4, p, ldp, v + cb, ldv, nv, lo, hi, alpha, o + cb, ldo);
    if (cb + 32 <= ncols) { pv_block512(2, p, ldp, v + cb, ldv, nv, lo, hi, alpha, o + cb, ldo); cb += 32; }
    if (cb < ncols) pv_block512(1, p, ldp, v + cb, ldv, nv, lo, hi, alpha, o + cb, ldo);
}

AVX512 static void exp2_array_avx512(float *x, size_t n)
{
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = lanes_below(n, i);
        _mm512_mask_storeu_ps(x + i, k, exp2_avx512(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

/* P and dS of a 6-row block: p = exp2(s - lse), ds = p (dp - dd) where the row sees the
 * column, exactly 0 elsewhere (zero-masking moves: a NaN of an unseen key never survives). */
AVX512 static void rows_bwd_avx512(float *s, float *dp, size_t lds, size_t ncol,
                                   const size_t *nv, const float *lse, const float *dd)
{
    const __m512 zero = _mm512_setzero_ps();
    for (size_t r = 0; r < RK_SM_MR; r++) {
        float *s_r = s + r * lds, *dp_r = dp + r * lds;
        const size_t n = lse[r] == -INFINITY ? 0 : nv[r];
        const __m512 vl = _mm512_set1_ps(lse[r]), vd = _mm512_set1_ps(dd[r]);
        for (size_t j = 0; j < ncol; j += 16) {
            if (j >= n) {
                _mm512_storeu_ps(s_r + j, zero);
                _mm512_storeu_ps(dp_r + j, zero);
                continue;
            }
            __mmask16 k = lanes_below(n, j);
            __m512 p = exp2_avx512(_mm512_sub_ps(_mm512_loadu_ps(s_r + j), vl));
            __m512 ds = _mm512_mul_ps(p, _mm512_sub_ps(_mm512_loadu_ps(dp_r + j), vd));
            _mm512_storeu_ps(s_r + j, _mm512_maskz_mov_ps(k, p));
            _mm512_storeu_ps(dp_r + j, _mm512_maskz_mov_ps(k, ds));
        }
    }
}

/* o (nk <= 6 key rows) += w^T x over the rows each key's suffix covers (tpv_avx2's
 * contract), 16 NV columns per pass (NV = 4, 2, 1; 6 NV accumulators). */
AVX512 static RK_SM_INLINE void tpv_block512(const int NV, const float *w, size_t ldw,
                                             const float *x, size_t ldx, size_t nr,
                                             const size_t *st, size_t lo, size_t hi, size_t nk,
                                             float *o, size_t ldo)
{
    __m512 acc[RK_SM_MR][4];
    UNROLL for (int j = 0; j < RK_SM_MR; j++)
        UNROLL for (int c = 0; c < NV; c++)
            acc[j][c] = (size_t)j < nk ? _mm512_loadu_ps(o + j * ldo + 16 * c) : _mm512_setzero_ps();
    size_t r = lo;
    for (; r < hi; r++) {                          /* rows only some keys see */
        const float *x_r = x + r * ldx, *w_r = w + r * ldw;
        __m512 b[4];
        UNROLL for (int c = 0; c < NV; c++) b[c] = _mm512_loadu_ps(x_r + 16 * c);
        UNROLL for (int j = 0; j < RK_SM_MR; j++)
            if (r >= st[j]) {
                __m512 a = _mm512_set1_ps(w_r[j]);
                UNROLL for (int c = 0; c < NV; c++) acc[j][c] = _mm512_fmadd_ps(a, b[c], acc[j][c]);
            }
    }
    for (; r < nr; r++) {                          /* rows every key of the block sees */
        const float *x_r = x + r * ldx, *w_r = w + r * ldw;
        __m512 b[4];
        UNROLL for (int c = 0; c < NV; c++) b[c] = _mm512_loadu_ps(x_r + 16 * c);
        UNROLL for (int j = 0; j < RK_SM_MR; j++) {
            __m512 a = _mm512_set1_ps(w_r[j]);
            UNROLL for (int c = 0; c < NV; c++) acc[j][c] = _mm512_fmadd_ps(a, b[c], acc[j][c]);
        }
    }
    UNROLL for (int j = 0; j < RK_SM_MR; j++)
        if ((size_t)j < nk)
            UNROLL for (int c = 0; c < NV; c++) _mm512_storeu_ps(o + j * ldo + 16 * c, acc[j][c]);
}

AVX512 static void tpv_avx512(const float *w, size_t ldw, const float *x, size_t ldx, size_t nr,
                              const size_t *rs, size_t nk, size_t ncols, float *o, size_t ldo)
{
    size_t st[RK_SM_MR], lo = nr, hi = 0;
    for (size_t j = 0; j < RK_SM_MR; j++) {
        st[j] = j < nk ? rs[j] : nr;               /* a missing key sees no row */
        if (st[j] < lo) lo = st[j];
        if (j < nk && st[j] > hi) hi = st[j];
    }
    if (nk == 0 || lo >= nr) return;
    if (hi > nr || nk < RK_SM_MR) hi = nr;   /* a short block: every row tests its keys */
    size_t cb = 0;
    for (; cb + 64 <= ncols; cb += 64) tpv_block512(4, w, ldw, x + cb, ldx, nr, st, lo, hi, nk, o + cb, ldo);
    if (cb + 32 <= ncols) { tpv_block512(2, w, ldw, x + cb, ldx, nr, st, lo, hi, nk, o + cb, ldo); cb += 32; }
    if (cb < ncols) tpv_block512(1, w, ldw, x + cb, ldx, nr, st, lo, hi, nk, o + cb, ldo);
}
#undef UNROLL

/* Rows copied 16 lanes at a time (a masked tail), their magnitudes kept in one register and
 * reduced once: _mm512_max_ps(a, m) keeps m where a is NaN (the second operand). */
AVX512 static float pack_v_avx512(const float *v, size_t ldv, size_t jn, size_t dv, float *vp,
                                  size_t ldp)
{
    __m512 m0 = _mm512_setzero_ps(), m1 = _mm512_setzero_ps();
    const size_t full = dv / 16 * 16;
    const __mmask16 tail = lanes_below(dv, full);
    for (size_t j = 0; j < jn; j++) {
        const float *v_j = v + j * ldv;
        float *o_j = vp + j * ldp;
        size_t c = 0;
        for (; c + 32 <= full; c += 32) {
            __m512 x = _mm512_loadu_ps(v_j + c), y = _mm512_loadu_ps(v_j + c + 16);
            m0 = _mm512_max_ps(_mm512_abs_ps(x), m0);
            m1 = _mm512_max_ps(_mm512_abs_ps(y), m1);
            _mm512_storeu_ps(o_j + c, x);
            _mm512_storeu_ps(o_j + c + 16, y);
        }
        if (c < full) {
            __m512 x = _mm512_loadu_ps(v_j + c);
            m0 = _mm512_max_ps(_mm512_abs_ps(x), m0);
            _mm512_storeu_ps(o_j + c, x);
        }
        if (tail) {
            __m512 x = _mm512_maskz_loadu_ps(tail, v_j + full);
            m1 = _mm512_max_ps(_mm512_abs_ps(x), m1);
            _mm512_mask_storeu_ps(o_j + full, tail, x);
        }
    }
    return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

/* One panel: 16 x 16 blocks of (keys, channels) transposed in registers (unpack, unpack,
 * two 128-bit lane shuffles); rows jj >= jn are zero vectors, so pad keys come out 0. */
AVX512 static float pack_k_avx512(const float *k, size_t ldk, size_t jn, size_t d, float *kt)
{
    __m512 m = _mm512_setzero_ps();
    for (size_t c0 = 0; c0 < d; c0 += 16) {
        const __mmask16 cm = lanes_below(d, c0);
        __m512 r[16], t[16];
        _Pragma("GCC unroll 16")
        for (size_t jj = 0; jj < 16; jj++) {
            r[jj] = jj >= jn ? _mm512_setzero_ps()
                  : cm == 0xFFFF ? _mm512_loadu_ps(k + jj * ldk + c0)
                  : _mm512_maskz_loadu_ps(cm, k + jj * ldk + c0);
            m = _mm512_max_ps(_mm512_abs_ps(r[jj]), m);
        }
        _Pragma("GCC unroll 8")
        for (int i = 0; i < 16; i += 2) {
            t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
        }
        _Pragma("GCC unroll 4")
        for (int i = 0; i < 16; i += 4)
            for (int h = 0; h < 2; h++) {
                __m512d a = _mm512_castps_pd(t[i + h]), b = _mm512_castps_pd(t[i + h + 2]);
                r[i + h] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
                r[i + h + 2] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
            }
        /* now r[4 g + q] holds, in 128-bit lane L, channel 4 L + e (q = 0, 2, 1, 3 for
         * e = 0 .. 3) of keys 4 g .. 4 g + 3: transpose the 4 x 4 lanes of the groups g */
        static const int q_of[4] = { 0, 2, 1, 3 };
        __m512 o[16];
        _Pragma("GCC unroll 4")
        for (int e = 0; e < 4; e++) {
            const int q = q_of[e];
            __m512 x = _mm512_shuffle_f32x4(r[q], r[q + 4], 0x88);     /* lanes 0, 2 of g 0, 1 */
            __m512 y = _mm512_shuffle_f32x4(r[q], r[q + 4], 0xdd);     /* lanes 1, 3 of g 0, 1 */
            __m512 z = _mm512_shuffle_f32x4(r[q + 8], r[q + 12], 0x88);
            __m512 w = _mm512_shuffle_f32x4(r[q + 8], r[q + 12], 0xdd);
            o[e] = _mm512_shuffle_f32x4(x, z, 0x88);
            o[e + 8] = _mm512_shuffle_f32x4(x, z, 0xdd);
            o[e + 4] = _mm512_shuffle_f32x4(y, w, 0x88);
            o[e + 12] = _mm512_shuffle_f32x4(y, w, 0xdd);
        }
        _Pragma("GCC unroll 16")
        for (size_t c = 0; c < 16; c++)
            if (c0 + c < d) _mm512_storeu_ps(kt + (c0 + c) * RK_SM_NR, o[c]);
    }
    return _mm512_reduce_max_ps(m);
}

static const rk__sm_kernels kern_avx512 = { "avx512", qk_avx512, rows_avx512, pv_avx512,
                                            rows_bwd_avx512, tpv_avx512, pack_k_avx512,
                                            pack_v_avx512, RK_ISA_AVX512 };

static int cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif /* RK_SM_HAVE_AVX2 */

/* ------------------------------------------------------------------------------------ */
/* Selection                                                                            */
/* ------------------------------------------------------------------------------------ */
static int force_portable;   /* test hook only; set before plans are created */

void rk__sm_force_portable(int on) { force_portable = on; }

const rk__sm_kernels *rk__sm_kernels_for(rk_isa isa)
{
#ifdef RK_SM_HAVE_AVX2
    if (!force_portable && isa >= RK_ISA_AVX512 && rk_isa_available(RK_ISA_AVX512))
        return &kern_avx512;
    if (!force_portable && isa >= RK_ISA_AVX2 && cpu_has_avx2()) return &kern_avx2;
#endif
    (void)isa;
    return &kern_c;
}

int rk__sm_exp2_array(float *x, size_t n) { return rk__sm_exp2_array_isa(RK_ISA_AVX2, x, n); }

int rk__sm_exp2_array_isa(rk_isa isa, float *x, size_t n)
{
#ifdef RK_SM_HAVE_AVX2
    if (isa == RK_ISA_AVX512 && rk_isa_available(RK_ISA_AVX512)) {
        exp2_array_avx512(x, n);
        return 1;
    }
    if (isa == RK_ISA_AVX2 && cpu_has_avx2()) { exp2_array_avx2(x, n); return 1; }
#endif
    (void)isa; (void)x; (void)n;
    return 0;
}
