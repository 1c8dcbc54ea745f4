/* The feature maps of featmap.h and the FAVOR+ random projection they draw.
 *
 * Projection W (m, d), drawn once at plan creation from a GSL mt19937 seeded with cfg.seed,
 * single-threaded, so it depends on the seed alone (not on threads, not on the environment:
 * gsl_rng_default is never used). Gaussians are gsl_ran_gaussian_ziggurat, in this order:
 *   iid:        m rows of d draws (row norms are chi(d) by construction); fixed: row / |row| * sqrt(d)
 *   orthogonal: ceil(m/d) blocks of r = d rows, the last one r = m mod d (when not 0); per
 *               block, 16 rows at a time: d draws per row, made orthogonal to the block's rows
 *               before them (Gram-Schmidt, twice) and of unit length; then, for chi norms, each
 *               row of the block times the norm of d fresh draws; for fixed norms, times sqrt(d).
 *               Gram-Schmidt of Gaussian rows is the QR of G^T with a positive diagonal in R,
 *               so the r rows are a Haar-distributed orthonormal r-frame (a Householder QR needs
 *               the sign correction Q diag(sign(diag R)) for that: GSL's makes Q[0][0] always
 *               negative). Only the rows asked for are drawn: O(d r^2) per block, never a d x d
 *               factorisation for m < d (rk__featmap_check_cost refuses sizes that would
 *               take minutes).
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
#  define AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))
#else
#  define RK_FM_X86 0
#endif

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

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

/* a . b over n doubles in a fixed order (four partial sums): the projection depends on the seed
 * alone, never on the build's vector width or a BLAS's threads. */
static double dot4(const double *a, const double *b, size_t n)
{
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    size_t c = 0;
    for (; c + 4 <= n; c += 4) {
        s0 += a[c] * b[c];
        s1 += a[c + 1] * b[c + 1];
        s2 += a[c + 2] * b[c + 2];
        s3 += a[c + 3] * b[c + 3];
    }
    for (; c < n; c++) s0 += a[c] * b[c];
    return (s0 + s1) + (s2 + s3);
}

/* Rows i0 .. i0+np-1 of q (r x d; rows 0 .. i0-1 orthonormal): Gaussian draws, row by row,
 * made orthogonal to every row before them and of unit length. Twice ("twice is enough":
 * orthogonal to working precision): against the earlier panels at once (each earlier row is read
 * once per pass for all np rows: at large d the rows do not fit in cache, and row-by-row
 * Gram-Schmidt would stream them np times), then within the panel row by row (modified
 * Gram-Schmidt) with normalisation. c: np * i0 scratch. Returns 0, or -1 if a row vanished
 * (probability 0 for Gaussian rows with r <= d). */
#define HAAR_PANEL 16
static int haar_panel(gsl_rng *rng, double *q, size_t i0, size_t np, size_t d, double *c)
{
    double *qp = q + i0 * d;
    for (size_t i = 0; i < np * d; i++) qp[i] = gsl_ran_gaussian_ziggurat(rng, 1.0);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t j = 0; j < i0; j++)
            for (size_t p = 0; p < np; p++) c[p * i0 + j] = dot4(qp + p * d, q + j * d, d);
        for (size_t j = 0; j < i0; j++) {
            const double *qj = q + j * d;
            for (size_t p = 0; p < np; p++) {
                double a = c[p * i0 + j], *x = qp + p * d;
                for (size_t k = 0; k < d; k++) x[k] -= a * qj[k];
            }
        }
        for (size_t p = 0; p < np; p++) {
            double *x = qp + p * d;
            for (size_t p2 = 0; p2 < p; p2++) {
                const double *y = qp + p2 * d;
                double a = dot4(x, y, d);
                for (size_t k = 0; k < d; k++) x[k] -= a * y[k];
            }
            double nrm = sqrt(dot4(x, x, d));
            if (!(nrm > 0.0) || !isfinite(nrm)) return -1;
            for (size_t k = 0; k < d; k++) x[k] /= nrm;
        }
    }
    return 0;
}

static int draw_orthogonal(gsl_rng *rng, const rk_attn_config *cfg, size_t m, float *w,
                           const char *who)
{
    size_t d = cfg->d;
    size_t r_max = m < d ? m : d;
    double *q = rk__alloc(r_max * d * sizeof *q), *c = rk__alloc(HAAR_PANEL * r_max * sizeof *c);
    int rc = RK_OK;
    if (!q || !c) {
        rc = rk__fail(RK_ENOMEM, "%s: cannot allocate a %zu x %zu orthogonal block", who, r_max, d);
        goto done;
    }
    for (size_t b = 0; b * d < m; b++) {
        /* the rows this block gives: d, or what is left of m (only those are drawn) */
        size_t rows = m - b * d < d ? m - b * d : d;
        for (size_t i0 = 0; i0 < rows; i0 += HAAR_PANEL)
            if (haar_panel(rng, q, i0, rows - i0 < HAAR_PANEL ? rows - i0 : HAAR_PANEL, d, c)) {
                rc = rk__fail(RK_EDEP, "%s: a Gaussian row of block %zu vanished in "
                              "Gram-Schmidt (d = %zu)", who, b, d);
                goto done;
            }
        for (size_t i = 0; i < rows; i++) {
            double len = cfg->proj_norm == RK_NORM_FIXED ? sqrt((double)d) : chi_norm(rng, d);
            for (size_t k = 0; k < d; k++) w[(b * d + i) * d + k] = (float)(q[i * d + k] * len);
        }
    }
done:
    rk__free(c);
    rk__free(q);
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

int rk__featmap_check_cost(const rk_attn_config *c, int favor, const char *who)
{
    size_t m = c->n_features, d = c->d;
    if (!favor || c->proj != RK_PROJ_ORTHOGONAL || c->proj_data || !m) return RK_OK;
    /* Gram-Schmidt twice: ~4 d r^2 flops per block of r rows */
    double full = floor((double)m / (double)d), rest = (double)m - full * (double)d;
    double flops = 4.0 * (double)d * ((double)d * (double)d * full + rest * rest);
    if (flops > RK_FEATMAP_ORTHO_MAX_FLOPS)
        RK_FAIL(RK_EINVAL, "%s: an orthogonal projection of m = %zu rows at d = %zu takes about "
                "%.3g GFLOP of Gram-Schmidt (more than %.0f: minutes); draw iid rows (proj = "
                "RK_PROJ_IID, ropekit --iid) or use fewer features", who, m, d, flops * 1e-9,
                RK_FEATMAP_ORTHO_MAX_FLOPS * 1e-9);
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
                     rk_isa isa, size_t *bytes, const char *who)
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
    fm->isa = isa;
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
 * ~1 ulp), written once as scalar fmaf steps and once each as the same AVX2 and AVX-512 steps,
 * so all three give the same bits. The features run 2 n m of these; libm's expf is scalar. Arguments below -87 give 0
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
/* The same steps on 16 lanes (masks instead of blends; the tail is one masked vector, each
 * lane the scalar expf_poly's bits; the body uses plain loads and stores, which Zen 5 runs
 * faster than masked ones). */
AVX512 static __m512 expf_poly16(__m512 x)
{
    __m512 lo = _mm512_set1_ps(EXPF_LO);
    __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_GT_OQ);                /* false for NaN */
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __m512 zero_or_nan = _mm512_maskz_mov_ps(nan, x);
    __m512 y = _mm512_min_ps(x, _mm512_set1_ps(EXPF_HI));
    y = _mm512_mask_blend_ps(keep, lo, y);                                 /* keep it finite */
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(y, _mm512_set1_ps(LOG2EF)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_HI), y);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_LO), r);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(EP0), r, _mm512_set1_ps(EP1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EP2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EP3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EP4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EP5));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mask_blend_ps(keep, zero_or_nan, _mm512_mul_ps(p, _mm512_castsi512_ps(e)));
}

AVX512 static void exp_row_avx512(const float *u, float sg, float sh, float nr, size_t m,
                                  float *out)
{
    __m512 vs = _mm512_set1_ps(sg), vh = _mm512_set1_ps(sh), vn = _mm512_set1_ps(nr);
    size_t r = 0;
    for (; r + 16 <= m; r += 16) {
        __m512 a = _mm512_sub_ps(_mm512_mul_ps(vs, _mm512_loadu_ps(u + r)), vh);
        _mm512_storeu_ps(out + r, _mm512_mul_ps(vn, expf_poly16(a)));
    }
    if (r < m) {
        __mmask16 k = (__mmask16)((1u << (m - r)) - 1u);
        __m512 a = _mm512_sub_ps(_mm512_mul_ps(vs, _mm512_maskz_loadu_ps(k, u + r)), vh);
        _mm512_mask_storeu_ps(out + r, k, _mm512_mul_ps(vn, expf_poly16(a)));
    }
}

/* max_r u[r] (or |u[r]|), exact in any order. Lanes past m keep the running max (a masked
 * max), which is vmaxps' second operand: it returns that operand when the other is NaN, so
 * NaN is left out, as in the portable loop. */
AVX512 static float max_avx512(const float *u, size_t m, int absval)
{
    __m512 mx = _mm512_set1_ps(-INFINITY);
    size_t r = 0;
    for (; r + 16 <= m; r += 16) {
        __m512 a = _mm512_loadu_ps(u + r);
        if (absval) a = _mm512_abs_ps(a);
        mx = _mm512_max_ps(a, mx);
    }
    if (r < m) {
        __mmask16 k = (__mmask16)((1u << (m - r)) - 1u);
        __m512 a = _mm512_maskz_loadu_ps(k, u + r);
        if (absval) a = _mm512_abs_ps(a);
        mx = _mm512_mask_max_ps(mx, k, a, mx);
    }
    return _mm512_reduce_max_ps(mx);
}
#endif

double rk__featmap_lmax_f(const rk__featmap *f, const float *u, double h)
{
    if (!f->favor) return 0.0;
    if (f->kernel == RK_KERNEL_TRIG) return h;
    int hyp = f->kernel == RK_KERNEL_HYPERBOLIC;
    float mx = -INFINITY;
#if RK_FM_X86
    if (f->isa >= RK_ISA_AVX512) mx = max_avx512(u, f->m, hyp);
    else if (f->isa >= RK_ISA_AVX2) mx = max_avx2(u, f->m, hyp);
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
    if (f->isa >= RK_ISA_AVX512) row = exp_row_avx512;
    else if (f->isa >= RK_ISA_AVX2) row = exp_row_avx2;
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
