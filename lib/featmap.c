/* The feature maps of featmap.h and the FAVOR+ random projection they draw.
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
#include "featmap.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#  define RK_FM_X86 1
#  include <immintrin.h>
#  define AVX2 __attribute__((target("avx2,fma")))
#else
#  define RK_FM_X86 0
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

static int draw_iid(gsl_rng *rng, const rk_attn_config *cfg, size_t m, float *w,
                    const char *who)
{
    size_t d = cfg->d;
    double *row = rk__alloc(d * sizeof *row);
    if (!row) RK_FAIL(RK_ENOMEM, "%s: cannot allocate a projection row", who);
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

static int draw_orthogonal(gsl_rng *rng, const rk_attn_config *cfg, size_t m, float *w,
                           const char *who)
{
    size_t d = cfg->d;
    int rc = RK_OK;
    gsl_matrix *A = gsl_matrix_alloc(d, d), *Q = gsl_matrix_alloc(d, d), *R = gsl_matrix_alloc(d, d);
    gsl_vector *tau = gsl_vector_alloc(d);
    if (!A || !Q || !R || !tau) { rc = rk__fail(RK_ENOMEM, "%s: GSL cannot allocate %zu x %zu "
                                                "matrices for the QR", who, d, d); goto done; }
    for (size_t b = 0; b * d < m; b++) {
        /* G (d, d) Gaussian; G = Q R */
        for (size_t i = 0; i < d; i++)
            for (size_t c = 0; c < d; c++)
                gsl_matrix_set(A, i, c, gsl_ran_gaussian_ziggurat(rng, 1.0));
        int g = gsl_linalg_QR_decomp(A, tau);
        if (!g) g = gsl_linalg_QR_unpack(A, tau, Q, R);
        if (g) { rc = rk__fail(RK_EDEP, "%s: GSL QR of a %zu x %zu block failed: %s", who, d,
                               d, gsl_strerror(g)); goto done; }
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

static int draw_projection(const rk_attn_config *cfg, size_t m, float *w, const char *who)
{
    size_t d = cfg->d;
    if (cfg->proj_data) {
        /* used as-is (copied: the caller may free it after create) */
        for (size_t i = 0; i < m * d; i++)
            if (!isfinite(cfg->proj_data[i]))
                RK_FAIL(RK_ENONFINITE, "%s: proj_data[%zu][%zu] = %g is not finite", who,
                        i / d, i % d, (double)cfg->proj_data[i]);
        memcpy(w, cfg->proj_data, m * d * sizeof *w);
        return RK_OK;
    }
    if (cfg->seed == 0)
        RK_FAIL(RK_EINVAL, "%s: seed = 0; FAVOR+ needs an explicit nonzero seed", who);
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (!rng) RK_FAIL(RK_ENOMEM, "%s: gsl_rng_alloc(mt19937) failed", who);
    gsl_rng_set(rng, cfg->seed);
    int rc = cfg->proj == RK_PROJ_IID ? draw_iid(rng, cfg, m, w, who)
                                      : draw_orthogonal(rng, cfg, m, w, who);
    gsl_rng_free(rng);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Resolve, build, free                                                                       */
/* ------------------------------------------------------------------------------------------ */

int rk__featmap_resolve(rk_attn_config *c, int favor, const char *who, size_t *F)
{
    size_t d = c->d;
    if (favor) {
        if (c->kernel != RK_KERNEL_POSITIVE && c->kernel != RK_KERNEL_HYPERBOLIC &&
            c->kernel != RK_KERNEL_TRIG)
            RK_FAIL(RK_EINVAL, "%s: unknown kernel %d", who, (int)c->kernel);
        if (c->proj != RK_PROJ_ORTHOGONAL && c->proj != RK_PROJ_IID)
            RK_FAIL(RK_EINVAL, "%s: unknown projection kind %d", who, (int)c->proj);
        if (c->proj_norm != RK_NORM_CHI && c->proj_norm != RK_NORM_FIXED)
            RK_FAIL(RK_EINVAL, "%s: unknown projection norm %d", who, (int)c->proj_norm);
        if (!c->proj_data && c->seed == 0)
            RK_FAIL(RK_EINVAL, "%s: seed = 0; FAVOR+ features need an explicit nonzero seed "
                    "(or proj_data)", who);
        if (!(c->scale > 0.0))
            RK_FAIL(RK_EINVAL, "%s: scale = %g must be > 0 (FAVOR+ uses sqrt(scale))", who,
                    c->scale);
        if (c->n_features == 0) c->n_features = RK_FEATMAP_DEFAULT_M;
        size_t m = c->n_features;
        if (!rk__fits_int(m) || (c->kernel != RK_KERNEL_POSITIVE && m > (size_t)INT_MAX / 2))
            RK_FAIL(RK_EOVERFLOW, "%s: n_features = %zu is too large", who, m);
        *F = c->kernel == RK_KERNEL_POSITIVE ? m : 2 * m;
    } else {
        if (c->map != RK_MAP_ELU && c->map != RK_MAP_RELU)
            RK_FAIL(RK_EINVAL, "%s: unknown feature map %d", who, (int)c->map);
        if (c->n_features != 0 && c->n_features != d)
            RK_FAIL(RK_EINVAL, "%s: n_features = %zu, but the elu+1/relu feature width is "
                    "d = %zu (leave n_features 0)", who, c->n_features, d);
        if (c->proj_data)
            RK_FAIL(RK_EINVAL, "%s: proj_data given, but elu+1/relu use no projection", who);
        c->n_features = d;
        *F = d;
    }
    return RK_OK;
}

void rk__featmap_free(rk__featmap *fm)
{
    if (!fm) return;
    rk__free(fm->w);
    rk__free(fm->wsd);
    rk__free(fm->wsT);
    rk__free(fm->wsdT);
    rk__free(fm->wsf);
    rk__free(fm->xs);
    rk__free(fm->us);
    fm->w = fm->wsT = fm->wsf = NULL;
    fm->wsd = fm->wsdT = fm->xs = fm->us = NULL;
}

int rk__featmap_init(rk__featmap *fm, const rk_attn_config *c, int favor, int transposed,
                     int avx2, size_t *bytes, const char *who)
{
    size_t m = favor ? c->n_features : 0, d = c->d;
    memset(fm, 0, sizeof *fm);
    fm->favor = favor != 0;
    fm->kernel = c->kernel;
    fm->map = c->map;
    fm->m = m;
    fm->F = !favor ? d : c->kernel == RK_KERNEL_POSITIVE ? m : 2 * m;
    fm->d = d;
    fm->scale = c->scale;
    fm->sq = favor ? sqrt(c->scale) : 1.0;
    fm->stab = fm->favor;
    fm->avx2 = avx2;
    fm->norm = !favor ? 1.0
             : 1.0 / sqrt((double)(c->kernel == RK_KERNEL_HYPERBOLIC ? 2 * m : m));
    int rc = RK_OK;
    if (m && (!(fm->w = rk__take(bytes, m, d, sizeof(float), who, "projection", &rc)) ||
              !(fm->wsd = rk__take(bytes, m, d, sizeof(double), who, "projection (double)", &rc))))
        return rc;
    if (m && transposed &&
        (!(fm->wsT = rk__take(bytes, d, m, sizeof(float), who, "projection (transposed)", &rc)) ||
         !(fm->wsdT = rk__take(bytes, d, m, sizeof(double), who, "projection (transposed)", &rc))))
        return rc;
    if (!(fm->xs = rk__take(bytes, d, 1, sizeof(double), who, "row scratch", &rc)) ||
        !(fm->us = rk__take(bytes, m > d ? m : d, 1, sizeof(double), who, "row scratch", &rc)))
        return rc;
    if (!m) return RK_OK;
    if ((rc = draw_projection(c, m, fm->w, who))) return rc;
    /* x' W^T = x (sqrt(scale) W)^T: the scale is folded into the operand, kept (m, d) for
     * row-wise use and transposed (d, m) as the right factor of the products */
    for (size_t r = 0; r < m; r++)
        for (size_t j = 0; j < d; j++) {
            double v = (double)fm->w[r * d + j] * fm->sq;
            fm->wsd[r * d + j] = v;
            if (transposed) {
                fm->wsdT[j * m + r] = v;
                fm->wsT[j * m + r] = (float)v;
            }
        }
    return RK_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Feature maps (one row), float and double                                                   */
/* ------------------------------------------------------------------------------------------ */

double rk__featmap_lmax_d(const rk__featmap *f, const double *u, double h)
{
    if (!f->favor) return 0.0;
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
void rk__featmap_row_d(const rk__featmap *f, const double *u, double h, double c, double *phi)
{
    size_t m = f->m;
    if (!f->favor) {
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

#if RK_FM_X86
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

double rk__featmap_lmax_f(const rk__featmap *f, const float *u, double h)
{
    if (!f->favor) return 0.0;
    if (f->kernel == RK_KERNEL_TRIG) return h;
    int hyp = f->kernel == RK_KERNEL_HYPERBOLIC;
    float mx = -INFINITY;
#if RK_FM_X86
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
void rk__featmap_row_f(const rk__featmap *f, const float *u, double h, double c, float *phi)
{
    size_t m = f->m;
    if (!f->favor) {
        if (f->map == RK_MAP_ELU)
            for (size_t r = 0; r < f->F; r++) phi[r] = u[r] > 0 ? u[r] + 1.0f : expf(u[r]);
        else
            for (size_t r = 0; r < f->F; r++) phi[r] = u[r] < 0 ? 0.0f : u[r];
        return;
    }
    float nr = (float)f->norm, sh = (float)(h + c);
    void (*row)(const float *, float, float, float, size_t, float *) = exp_row_c;
#if RK_FM_X86
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

double rk__featmap_project_d(const rk__featmap *f, const double *x, double *u, double *h)
{
    size_t d = f->d;
    if (!f->favor) {                      /* the map acts on x itself */
        memcpy(u, x, d * sizeof *u);
        *h = 0.0;
        return 0.0;
    }
    double ss = 0.0;
    for (size_t c = 0; c < d; c++) ss += x[c] * x[c];
    for (size_t r = 0; r < f->m; r++) {
        const double *w_r = f->wsd + r * d;
        double a = 0.0;
        for (size_t c = 0; c < d; c++) a += w_r[c] * x[c];
        u[r] = a;
    }
    *h = 0.5 * f->scale * ss;
    return rk__featmap_lmax_d(f, u, *h);
}

void rk__featmap_plain_d(const rk__featmap *f, const double *x, double *u, double *phi)
{
    double h;
    (void)rk__featmap_project_d(f, x, u, &h);
    rk__featmap_row_d(f, u, h, 0.0, phi);
}


/* ------------------------------------------------------------------------------------------ */
/* Backward (featmap.h: the constant c held fixed)                                            */
/* ------------------------------------------------------------------------------------------ */

int rk__featmap_init_grad(rk__featmap *fm, size_t *bytes, const char *who)
{
    size_t m = fm->m, d = fm->d;
    int rc = RK_OK;
    if (!m) return RK_OK;
    if (!(fm->wsf = rk__take(bytes, m, d, sizeof(float), who, "projection (backward)", &rc)))
        return rc;
    for (size_t i = 0; i < m * d; i++) fm->wsf[i] = (float)fm->wsd[i];
    return RK_OK;
}

/* One body for both precisions: REAL t, double sums. */
#define FEATMAP_BWD_ROW(NAME, REAL)                                                           \
    double NAME(const rk__featmap *f, const REAL *x, const REAL *phi, const REAL *dphi,     \
                REAL *t)                                                                      \
    {                                                                                         \
        size_t m = f->m;                                                                      \
        if (!f->favor) {                                                                      \
            if (f->map == RK_MAP_ELU)                                                         \
                for (size_t c = 0; c < f->F; c++)                                             \
                    t[c] = x[c] > 0 ? dphi[c] : dphi[c] * phi[c];                             \
            else                                                                              \
                for (size_t c = 0; c < f->F; c++) t[c] = x[c] > 0 ? dphi[c] : (REAL)0;        \
            return 0.0;                                                                       \
        }                                                                                     \
        double s = 0.0;                                                                       \
        switch (f->kernel) {                                                                  \
        case RK_KERNEL_POSITIVE:                                                              \
            for (size_t r = 0; r < m; r++) {                                                  \
                double a = (double)dphi[r] * (double)phi[r];                                  \
                t[r] = (REAL)a;                                                               \
                s += a;                                                                       \
            }                                                                                 \
            return -f->scale * s;                                                             \
        case RK_KERNEL_HYPERBOLIC:                                                            \
            for (size_t r = 0; r < m; r++) {                                                  \
                double a = (double)dphi[r] * (double)phi[r];                                  \
                double b = (double)dphi[m + r] * (double)phi[m + r];                          \
                t[r] = (REAL)(a - b);                                                         \
                s += a + b;                                                                   \
            }                                                                                 \
            return -f->scale * s;                                                             \
        case RK_KERNEL_TRIG:                                                                  \
            for (size_t r = 0; r < m; r++) {                                                  \
                double sn = (double)phi[r], cs = (double)phi[m + r];                          \
                t[r] = (REAL)((double)dphi[r] * cs - (double)dphi[m + r] * sn);               \
                s += (double)dphi[r] * sn + (double)dphi[m + r] * cs;                         \
            }                                                                                 \
            return f->scale * s;                                                              \
        }                                                                                     \
        return 0.0;                                                                           \
    }
FEATMAP_BWD_ROW(rk__featmap_bwd_row_f, float)
FEATMAP_BWD_ROW(rk__featmap_bwd_row_d, double)
