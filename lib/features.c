/* FAVOR+ random projections and the feature maps of lib/performer_impl.h.
 *
 * Projection W (m, d), drawn once at plan creation from a GSL mt19937 seeded with cfg.seed,
 * single-threaded, so it depends on the seed alone (not on threads, not on the environment:
 * gsl_rng_default is never used). Gaussians are gsl_ran_gaussian_ziggurat, in this order:
 *   iid:        m rows of d draws (row norms are chi(d) by construction); fixed: row / |row| * sqrt(d)
 *   orthogonal: ceil(m/d) blocks; per block a d x d Gaussian G (row-major draws), G = QR
 *               (Householder, gsl_linalg_QR_decomp + _unpack), rows of Q diag(sign(diag R))
 *               (the sign correction makes the block Haar-distributed: without it GSL's
 *               Householder convention makes Q[0][0] always negative), the last block cut to
 *               m mod d rows; then, for chi norms, each kept row of the block times the norm of
 *               d fresh draws; for fixed norms, times sqrt(d).
 * Rows are orthogonal within a block only. Everything is computed in double, stored as float.
 */
#include "performer_impl.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#  define RK_FEAT_X86 1
#  include <immintrin.h>
#  define AVX2 __attribute__((target("avx2,fma")))
#else
#  define RK_FEAT_X86 0
#endif

#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>
#include <gsl/gsl_matrix.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <gsl/gsl_vector.h>

/* ------------------------------------------------------------------------------------------ */
/* Projections                                                                                */
/* ------------------------------------------------------------------------------------------ */

/* |g| of d fresh standard normals: a chi(d) row length. */
static double chi_norm(gsl_rng *rng, size_t d)
{
    double ss = 0.0;
    for (size_t c = 0; c < d; c++) {
        double g = gsl_ran_gaussian_ziggurat(rng, 1.0);
        ss += g * g;
    }
    return sqrt(ss);
}

static int draw_iid(gsl_rng *rng, const rk_attn_config *cfg, size_t m, float *w)
{
    size_t d = cfg->d;
    double *row = rk__alloc(d * sizeof *row);
    if (!row) RK_FAIL(RK_ENOMEM, "performer: cannot allocate a projection row");
    for (size_t r = 0; r < m; r++) {
        double ss = 0.0;
        for (size_t c = 0; c < d; c++) {
            row[c] = gsl_ran_gaussian_ziggurat(rng, 1.0);
            ss += row[c] * row[c];
        }
        /* fixed: SMREG rows of length sqrt(d); an all-zero row cannot be drawn in practice */
        double s = cfg->proj_norm == RK_NORM_FIXED && ss > 0.0 ? sqrt((double)d / ss) : 1.0;
        for (size_t c = 0; c < d; c++) w[r * d + c] = (float)(row[c] * s);
    }
    rk__free(row);
    return RK_OK;
}

static int draw_orthogonal(gsl_rng *rng, const rk_attn_config *cfg, size_t m, float *w)
{
    size_t d = cfg->d;
    int rc = RK_OK;
    gsl_matrix *A = gsl_matrix_alloc(d, d), *Q = gsl_matrix_alloc(d, d), *R = gsl_matrix_alloc(d, d);
    gsl_vector *tau = gsl_vector_alloc(d);
    if (!A || !Q || !R || !tau) { rc = rk__fail(RK_ENOMEM, "performer: GSL cannot allocate %zu x %zu "
                                                "matrices for the QR", d, d); goto done; }
    for (size_t b = 0; b * d < m; b++) {
        /* G (d, d) Gaussian; G = Q R */
        for (size_t i = 0; i < d; i++)
            for (size_t c = 0; c < d; c++)
                gsl_matrix_set(A, i, c, gsl_ran_gaussian_ziggurat(rng, 1.0));
        int g = gsl_linalg_QR_decomp(A, tau);
        if (!g) g = gsl_linalg_QR_unpack(A, tau, Q, R);
        if (g) { rc = rk__fail(RK_EDEP, "performer: GSL QR of a %zu x %zu block failed: %s", d, d,
                               gsl_strerror(g)); goto done; }
        size_t rows = m - b * d < d ? m - b * d : d;
        for (size_t i = 0; i < rows; i++) {
            double len = cfg->proj_norm == RK_NORM_FIXED ? sqrt((double)d) : chi_norm(rng, d);
            float *w_r = w + (b * d + i) * d;
            for (size_t c = 0; c < d; c++) {
                /* Q diag(sign(diag R)): sign(0) taken as +1 */
                double sgn = gsl_matrix_get(R, c, c) < 0.0 ? -1.0 : 1.0;
                w_r[c] = (float)(gsl_matrix_get(Q, i, c) * sgn * len);
            }
        }
    }
done:
    gsl_vector_free(tau);
    gsl_matrix_free(R);
    gsl_matrix_free(Q);
    gsl_matrix_free(A);
    return rc;
}

int rk__perf_projection(const rk_attn_config *cfg, size_t m, float *w)
{
    size_t d = cfg->d;
    if (cfg->proj_data) {
        /* used as-is (copied: the caller may free it after create) */
        for (size_t i = 0; i < m * d; i++)
            if (!isfinite(cfg->proj_data[i]))
                RK_FAIL(RK_ENONFINITE, "performer: proj_data[%zu][%zu] = %g is not finite",
                        i / d, i % d, (double)cfg->proj_data[i]);
        memcpy(w, cfg->proj_data, m * d * sizeof *w);
        return RK_OK;
    }
    if (cfg->seed == 0)
        RK_FAIL(RK_EINVAL, "performer: seed = 0; FAVOR+ needs an explicit nonzero seed");
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (!rng) RK_FAIL(RK_ENOMEM, "performer: gsl_rng_alloc(mt19937) failed");
    gsl_rng_set(rng, cfg->seed);
    int rc = cfg->proj == RK_PROJ_IID ? draw_iid(rng, cfg, m, w) : draw_orthogonal(rng, cfg, m, w);
    gsl_rng_free(rng);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Feature maps (one row), float and double                                                   */
/* ------------------------------------------------------------------------------------------ */

double rk__feat_lmax_d(const rk__perf *f, const double *u, double h)
{
    if (f->kind == RK_LINEAR) return 0.0;
    if (f->kernel == RK_KERNEL_TRIG) return h;
    double mx = -INFINITY;
    int hyp = f->kernel == RK_KERNEL_HYPERBOLIC;
    for (size_t r = 0; r < f->m; r++) {
        double a = hyp ? fabs(u[r]) : u[r];
        if (a > mx) mx = a;
    }
    return mx - h;
}

/* phi (F) of one row with constant c, double: the exponent formed in double, libm exp. */
void rk__feat_row_d(const rk__perf *f, const double *u, double h, double c, double *phi)
{
    size_t m = f->m;
    if (f->kind == RK_LINEAR) {
        if (f->map == RK_MAP_ELU)   /* elu(x) + 1 = exp(x) for x <= 0: no cancellation */
            for (size_t r = 0; r < f->F; r++) phi[r] = u[r] > 0 ? u[r] + 1.0 : exp(u[r]);
        else                        /* NaN stays NaN */
            for (size_t r = 0; r < f->F; r++) phi[r] = u[r] < 0 ? 0.0 : u[r];
        return;
    }
    double nr = f->norm;
    switch (f->kernel) {
    case RK_KERNEL_POSITIVE:
        for (size_t r = 0; r < m; r++) phi[r] = nr * exp(u[r] - h - c);
        break;
    case RK_KERNEL_HYPERBOLIC:
        for (size_t r = 0; r < m; r++) {
            phi[r]     = nr * exp( u[r] - h - c);
            phi[m + r] = nr * exp(-u[r] - h - c);
        }
        break;
    case RK_KERNEL_TRIG: {
        double e = nr * exp(h - c);
        for (size_t r = 0; r < m; r++) {
            phi[r]     = e * sin(u[r]);
            phi[m + r] = e * cos(u[r]);
        }
        break;
    }
    }
}

/* Float exp for the float features: Cephes' expf (degree-7 polynomial on [-ln2/2, ln2/2],
 * ~1 ulp), written once as scalar fmaf steps and once as the same AVX2 steps, so both give the
 * same bits. The features run 2 n m of these; libm's expf is scalar. Arguments below -87 give 0
 * (below FLT_MIN), above 88 are clamped to 88 (stabilised arguments are <= 0); NaN stays NaN. */
#define EXPF_LO   -87.0f
#define EXPF_HI   88.0f
#define LOG2EF    1.44269504088896341f
#define LN2_HI    0.693359375f
#define LN2_LO    -2.12194440e-4f
#define EP0 1.9875691500e-4f
#define EP1 1.3981999507e-3f
#define EP2 8.3334519073e-3f
#define EP3 4.1665795894e-2f
#define EP4 1.6666665459e-1f
#define EP5 5.0000001201e-1f

static float expf_poly(float x)
{
    if (!(x > EXPF_LO)) return x != x ? x : 0.0f;
    if (x > EXPF_HI) x = EXPF_HI;
    float n = rintf(x * LOG2EF);                 /* round to nearest even, like the AVX2 path */
    float r = fmaf(n, -LN2_HI, x);
    r = fmaf(n, -LN2_LO, r);
    float p = fmaf(EP0, r, EP1);
    p = fmaf(p, r, EP2);
    p = fmaf(p, r, EP3);
    p = fmaf(p, r, EP4);
    p = fmaf(p, r, EP5);
    p = fmaf(p, r * r, r);                       /* r + r^2 P(r) */
    p = p + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return p * s;
}

/* out[r] = nr * exp(sg * u[r] - sh), r < m (sg = +1 or -1). */
static void exp_row_c(const float *u, float sg, float sh, float nr, size_t m, float *out)
{
    for (size_t r = 0; r < m; r++) out[r] = nr * expf_poly(sg * u[r] - sh);
}

#if RK_FEAT_X86
AVX2 static __m256 expf_poly8(__m256 x)
{
    __m256 lo = _mm256_set1_ps(EXPF_LO);
    __m256 keep = _mm256_cmp_ps(x, lo, _CMP_GT_OQ);                       /* false for NaN */
    __m256 zero_or_nan = _mm256_and_ps(x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    __m256 y = _mm256_min_ps(x, _mm256_set1_ps(EXPF_HI));
    y = _mm256_blendv_ps(lo, y, keep);                                    /* keep it finite */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(y, _mm256_set1_ps(LOG2EF)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), y);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(EP0), r, _mm256_set1_ps(EP1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EP2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EP3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EP4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EP5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_blendv_ps(zero_or_nan, _mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

AVX2 static void exp_row_avx2(const float *u, float sg, float sh, float nr, size_t m, float *out)
{
    __m256 vs = _mm256_set1_ps(sg), vh = _mm256_set1_ps(sh), vn = _mm256_set1_ps(nr);
    size_t r = 0;
    for (; r + 8 <= m; r += 8) {
        __m256 a = _mm256_sub_ps(_mm256_mul_ps(vs, _mm256_loadu_ps(u + r)), vh);
        _mm256_storeu_ps(out + r, _mm256_mul_ps(vn, expf_poly8(a)));
    }
    for (; r < m; r++) out[r] = nr * expf_poly(sg * u[r] - sh);
}

/* max_r u[r] (or |u[r]|): max is exact, so any order gives the same value. */
AVX2 static float max_avx2(const float *u, size_t m, int absval)
{
    __m256 mx = _mm256_set1_ps(-INFINITY), sign = _mm256_set1_ps(-0.0f);
    size_t r = 0;
    for (; r + 8 <= m; r += 8) {
        __m256 a = _mm256_loadu_ps(u + r);
        if (absval) a = _mm256_andnot_ps(sign, a);
        mx = _mm256_max_ps(mx, a);
    }
    float t[8], best = -INFINITY;
    _mm256_storeu_ps(t, mx);
    for (int i = 0; i < 8; i++) if (t[i] > best) best = t[i];
    for (; r < m; r++) {
        float a = absval ? fabsf(u[r]) : u[r];
        if (a > best) best = a;
    }
    return best;
}
#endif

double rk__feat_lmax_f(const rk__perf *f, const float *u, double h)
{
    if (f->kind == RK_LINEAR) return 0.0;
    if (f->kernel == RK_KERNEL_TRIG) return h;
    int hyp = f->kernel == RK_KERNEL_HYPERBOLIC;
    float mx = -INFINITY;
#if RK_FEAT_X86
    if (f->avx2) mx = max_avx2(u, f->m, hyp);
    else
#endif
    for (size_t r = 0; r < f->m; r++) {
        float a = hyp ? fabsf(u[r]) : u[r];
        if (a > mx) mx = a;
    }
    return (double)mx - h;
}

/* phi (F) of one row with constant c, float: exponents u - sh with sh = (float)(h + c). */
void rk__feat_row_f(const rk__perf *f, const float *u, double h, double c, float *phi)
{
    size_t m = f->m;
    if (f->kind == RK_LINEAR) {
        if (f->map == RK_MAP_ELU)
            for (size_t r = 0; r < f->F; r++) phi[r] = u[r] > 0 ? u[r] + 1.0f : expf(u[r]);
        else
            for (size_t r = 0; r < f->F; r++) phi[r] = u[r] < 0 ? 0.0f : u[r];
        return;
    }
    float nr = (float)f->norm, sh = (float)(h + c);
    void (*row)(const float *, float, float, float, size_t, float *) = exp_row_c;
#if RK_FEAT_X86
    if (f->avx2) row = exp_row_avx2;
#endif
    switch (f->kernel) {
    case RK_KERNEL_POSITIVE:
        row(u, 1.0f, sh, nr, m, phi);
        break;
    case RK_KERNEL_HYPERBOLIC:
        row(u, 1.0f, sh, nr, m, phi);
        row(u, -1.0f, sh, nr, m, phi + m);
        break;
    case RK_KERNEL_TRIG: {
        float e = (float)(f->norm * exp(h - c));
        for (size_t r = 0; r < m; r++) {
            phi[r]     = e * sinf(u[r]);
            phi[m + r] = e * cosf(u[r]);
        }
        break;
    }
    }
}

void rk__feat_plain_d(const rk__perf *f, const double *x, double *u, double *phi)
{
    if (f->kind == RK_LINEAR) { rk__feat_row_d(f, x, 0.0, 0.0, phi); return; }
    size_t d = f->d;
    double ss = 0.0;
    for (size_t c = 0; c < d; c++) ss += x[c] * x[c];
    for (size_t r = 0; r < f->m; r++) {
        const double *w_r = f->wsd + r * d;
        double a = 0.0;
        for (size_t c = 0; c < d; c++) a += w_r[c] * x[c];
        u[r] = a;
    }
    rk__feat_row_d(f, u, 0.5 * f->scale * ss, 0.0, phi);
}

/* ------------------------------------------------------------------------------------------ */
/* Public extras                                                                              */
/* ------------------------------------------------------------------------------------------ */

size_t rk_attn_feature_dim(const rk_attn *p)
{
    const rk__perf *f = rk__perf_of(p);
    return f ? f->F : 0;
}

int rk_attn_features_d(rk_attn *p, const rk_matd *x, const int64_t *pos, rk_matd *phi)
{
    rk__clear_error();
    if (!p || !x || !phi) RK_FAIL(RK_EINVAL, "features: NULL argument");
    rk__perf *f = (rk__perf *)rk__perf_of(p);
    if (!f) RK_FAIL(RK_EUNSUP, "features: a %s plan has no feature map", p->ops->name);
    int rc = rk__check_view("x", x->data, x->rows, x->cols, x->ld, x->rows, f->d);
    if (!rc) rc = rk__check_view("phi", phi->data, phi->rows, phi->cols, phi->ld, x->rows, f->F);
    if (rc) return rc;
    for (size_t t = 0; t < x->rows; t++) {
        const double *x_t = x->data + t * x->ld;
        double *phi_t = phi->data + t * phi->ld;
        if (pos && f->rope_qk) {
            /* phi(R_pos x) */
            rk_matd xi = rk_matd_view((double *)x_t, 1, f->d, f->d);
            rk_matd xo = rk_matd_view(f->xd, 1, f->d, f->d);
            if ((rc = rk_rope_apply_d(f->rope_qk, &xi, &xo, pos[t], NULL, 0))) return rc;
            x_t = f->xd;
        }
        rk__feat_plain_d(f, x_t, f->sd.u, phi_t);
        if (pos && f->rope_f) {
            /* R_pos phi(x) */
            rk_matd pv = rk_matd_view(phi_t, 1, f->F, f->F);
            if ((rc = rk_rope_apply_d(f->rope_f, &pv, &pv, pos[t], NULL, 0))) return rc;
        }
    }
    return RK_OK;
}

int rk_attn_proj_save(const rk_attn *p, const char *path)
{
    rk__clear_error();
    if (!p || !path) RK_FAIL(RK_EINVAL, "proj save: NULL argument");
    const rk__perf *f = rk__perf_of(p);
    if (!f || !f->m) RK_FAIL(RK_EUNSUP, "proj save: a %s plan has no random projection",
                             p->ops->name);
    rk_array a = { .dtype = RK_F32, .ndim = 2, .shape = { f->m, f->d }, .count = f->m * f->d,
                   .data = f->w };
    return rk_npy_save(path, &a);
}

int rk_attn_proj_load(const char *path, size_t d, rk_mat *w)
{
    rk__clear_error();
    if (!path || !w) RK_FAIL(RK_EINVAL, "proj load: NULL argument");
    *w = (rk_mat){ 0 };
    rk_array a = { 0 };
    int rc = rk_npy_load(path, &a);
    if (rc) return rc;
    if (a.ndim != 2 || a.shape[1] != d || a.shape[0] == 0) {
        char shape[64] = "";
        for (int i = 0, n = 0; i < a.ndim && n < (int)sizeof shape; i++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, i ? " x %zu" : "%zu", a.shape[i]);
        rc = rk__fail(RK_EDIM, "proj load: %s has shape (%s); a projection must be (m, d) with "
                      "m > 0 and d = %zu", path, a.ndim ? shape : "scalar", d);
        goto done;
    }
    if ((rc = rk_array_check_finite(&a, path))) goto done;
    if ((rc = rk_mat_alloc(w, a.shape[0], d))) goto done;
    for (size_t i = 0; i < a.count; i++) {
        double val = a.dtype == RK_F64 ? ((const double *)a.data)[i] : ((const float *)a.data)[i];
        w->data[i] = (float)val;
        if (!isfinite(w->data[i])) {
            rk_mat_free(w);
            rc = rk__fail(RK_ENONFINITE, "proj load: %s[%zu][%zu] = %g overflows float32", path,
                          i / d, i % d, val);
            goto done;
        }
    }
done:
    rk_array_free(&a);
    return rc;
}
