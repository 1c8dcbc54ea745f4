/* The paper's theory as runnable checks. See theory.h.
 *
 * Notation in the "why" texts: u = 2^-53 (double) or 2^-24 (float) unit roundoff,
 * g_n = n u / (1 - n u) (a sum or dot product of n terms), P the largest |position| of a check.
 * Rotation error: a RoPE that forms the angle in double as p * theta_i (theta_i = pow(...):
 * <= 1 ulp, so the angle is off by <= 3u |p| theta_i <= 3u|p| with theta_0 = 1), takes cos, sin
 * (<= 2u each) and 2 products + 1 sum per output (<= 2u (|a| + |b|)) is within
 *   e(p) |x|,   e(p) = 2 (3u|p| + 4u) = 6u|p| + 8u            (double),
 *   e_f(p) = 2 (3u|p| + 2u + 3u_f) = 6u|p| + 4u + 6u_f         (float kernel, double angle)
 * of the exact rotation (per pair (|a| + |b|) <= sqrt 2 |(a, b)|, two outputs).
 */
#include "theory.h"
#include "decay.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>

#define U  (DBL_EPSILON / 2)
#define UF (FLT_EPSILON / 2)
#define MAXD 128

static double gam(double n, double u) { return n * u / (1.0 - n * u); }
static double erot(double p) { return 6.0 * U * fabs(p) + 8.0 * U; }
static double erot_f(double p) { return 6.0 * U * fabs(p) + 4.0 * U + 6.0 * UF; }

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void setf(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
static double dotf(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}
static double nrm(const double *a, size_t n) { return sqrt(dot(a, a, n)); }
static double nrmf(const float *a, size_t n) { return sqrt(dotf(a, a, n)); }

static gsl_rng *rng_for(const theory_config *cfg, unsigned long tag)
{
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (r) gsl_rng_set(r, cfg->seed + tag);
    return r;
}
static void randn(gsl_rng *r, double *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = gsl_ran_gaussian_ziggurat(r, 1.0);
}
/* A position uniform in [-P, P] (integers). */
static int64_t rpos(gsl_rng *r, int64_t P)
{
    return (int64_t)floor(gsl_ran_flat(r, -(double)P, (double)P + 1.0));
}

/* ---- the paper's rotation, written out (eqs. 13-15, 34; 0-based theta, PAPER.md s. 8) ---- */

static double paper_theta(double base, size_t i, size_t d)
{
    return pow(base, -2.0 * (double)i / (double)d);
}

/* y = R^d_{Theta,p} x through the explicit block-diagonal matrix of eq. (15). */
static void paper_matrix(double base, size_t d, double p, double *R)
{
    memset(R, 0, d * d * sizeof *R);
    for (size_t i = 0; i < d / 2; i++) {
        double a = p * paper_theta(base, i, d), c = cos(a), s = sin(a);
        R[(2 * i) * d + 2 * i] = c;
        R[(2 * i) * d + 2 * i + 1] = -s;
        R[(2 * i + 1) * d + 2 * i] = s;
        R[(2 * i + 1) * d + 2 * i + 1] = c;
    }
}

/* ---- RoPE under test: helpers ------------------------------------------------------------- */

static int rot1(const theory_rope *r, rk_rope_style st, const double *x, double *y, size_t d,
                int64_t pos)
{
    rk_matd X = rk_matd_view((double *)x, 1, d, d), Y = rk_matd_view(y, 1, d, d);
    return r->apply_d(r, st, &X, &Y, &pos);
}
static int rot1f(const theory_rope *r, rk_rope_style st, const float *x, float *y, size_t d,
                 int64_t pos)
{
    rk_mat X = rk_mat_view((float *)x, 1, d, d), Y = rk_mat_view(y, 1, d, d);
    return r->apply_f(r, st, &X, &Y, &pos);
}

/* ---- the library's RoPE ------------------------------------------------------------------- */

typedef struct {
    size_t n;
    struct { size_t d; rk_rope_style st; rk_rope *r; } e[32];
} lib_cache;

static int lib_get(const theory_rope *t, rk_rope_style st, size_t d, rk_rope **out)
{
    lib_cache *c = t->ctx;
    for (size_t i = 0; i < c->n; i++)
        if (c->e[i].d == d && c->e[i].st == st) { *out = c->e[i].r; return RK_OK; }
    if (c->n == sizeof c->e / sizeof c->e[0]) return RK_ENOMEM;
    rk_rope_config rc = { .dim = d, .style = st, .base = t->base };
    int err = rk_rope_create(out, &rc);
    if (err) return err;
    c->e[c->n].d = d;
    c->e[c->n].st = st;
    c->e[c->n].r = *out;
    c->n++;
    return RK_OK;
}

static int lib_apply_d(const theory_rope *t, rk_rope_style st, const rk_matd *x, rk_matd *y,
                       const int64_t *pos)
{
    rk_rope *r;
    int err = lib_get(t, st, x->cols, &r);
    return err ? err : rk_rope_apply_d(r, x, y, 0, pos, 0);
}
static int lib_apply_f(const theory_rope *t, rk_rope_style st, const rk_mat *x, rk_mat *y,
                       const int64_t *pos)
{
    rk_rope *r;
    int err = lib_get(t, st, x->cols, &r);
    return err ? err : rk_rope_apply(r, x, y, 0, pos, 0);
}

int theory_rope_library(theory_rope *r)
{
    memset(r, 0, sizeof *r);
    r->ctx = calloc(1, sizeof(lib_cache));
    if (!r->ctx) return RK_ENOMEM;
    r->name = "library";
    r->apply_d = lib_apply_d;
    r->apply_f = lib_apply_f;
    r->base = 10000.0;
    return RK_OK;
}

void theory_rope_free(theory_rope *r)
{
    if (!r || !r->ctx) return;
    lib_cache *c = r->ctx;
    for (size_t i = 0; i < c->n; i++) rk_rope_destroy(c->e[i].r);
    free(c);
    r->ctx = NULL;
}

/* ---- naive ropes with a defect ------------------------------------------------------------ */

const char *const theory_mutant_names[] = {
    "none", "freq", "sign", "onesided", "pair-inter", "pair-half", "angle32", "scale", NULL,
};
const char *const theory_mutant_help[] = {
    "naive re-implementation without defect (passes everything)",
    "off-by-one frequencies base^(-2(i+1)/d)",
    "sin sign swapped: every pair turns clockwise",
    "sin sign swapped in one output only: (a c + b s, b c + a s), not a rotation",
    "interleaved layout rotates the half-split pairs (x[i], x[i+d/2])",
    "half-split layout rotates the interleaved pairs (x[2i], x[2i+1])",
    "angle formed in float32: (float)pos * (float)theta",
    "output times 1.01 (an attention factor leaking into R)",
};

/* Pair i of row x (d values) under mutation m: indices and the rotated values. */
static void naive_pair(int m, rk_rope_style st, double base, size_t d, size_t i, int64_t pos,
                       size_t *ia, size_t *ib, double *c, double *s)
{
    size_t h = d / 2;
    int inter = st == RK_ROPE_INTERLEAVED;
    if (m == THEORY_MUT_PAIR_INTER && st == RK_ROPE_INTERLEAVED) inter = 0;
    if (m == THEORY_MUT_PAIR_HALF && st == RK_ROPE_HALF) inter = 1;
    double th = paper_theta(base, m == THEORY_MUT_FREQ ? i + 1 : i, d);
    double a = m == THEORY_MUT_ANGLE32 ? (double)((float)pos * (float)th) : (double)pos * th;
    *c = cos(a);
    *s = sin(a);
    if (m == THEORY_MUT_SIGN) *s = -*s;
    *ia = inter ? 2 * i : i;
    *ib = inter ? 2 * i + 1 : i + h;
}

static int naive_apply_d(const theory_rope *t, rk_rope_style st, const rk_matd *x, rk_matd *y,
                         const int64_t *pos)
{
    size_t d = x->cols;
    if (d % 2 || y->cols != d || y->rows != x->rows) return RK_EDIM;
    for (size_t r = 0; r < x->rows; r++) {
        const double *x_r = x->data + r * x->ld;
        double *y_r = y->data + r * y->ld;
        for (size_t i = 0; i < d / 2; i++) {
            size_t ia, ib;
            double c, s;
            naive_pair(t->mutant, st, t->base, d, i, pos[r], &ia, &ib, &c, &s);
            double a = x_r[ia], b = x_r[ib];
            double oa = a * c - b * s, ob = b * c + a * s;
            if (t->mutant == THEORY_MUT_ONESIDED) oa = a * c + b * s;
            if (t->mutant == THEORY_MUT_SCALE) { oa *= 1.01; ob *= 1.01; }
            y_r[ia] = oa;
            y_r[ib] = ob;
        }
    }
    return RK_OK;
}

static int naive_apply_f(const theory_rope *t, rk_rope_style st, const rk_mat *x, rk_mat *y,
                         const int64_t *pos)
{
    size_t d = x->cols;
    if (d % 2 || y->cols != d || y->rows != x->rows) return RK_EDIM;
    for (size_t r = 0; r < x->rows; r++) {
        const float *x_r = x->data + r * x->ld;
        float *y_r = y->data + r * y->ld;
        for (size_t i = 0; i < d / 2; i++) {
            size_t ia, ib;
            double cd, sd;
            naive_pair(t->mutant, st, t->base, d, i, pos[r], &ia, &ib, &cd, &sd);
            float c = (float)cd, s = (float)sd, a = x_r[ia], b = x_r[ib];
            float oa = a * c - b * s, ob = b * c + a * s;
            if (t->mutant == THEORY_MUT_ONESIDED) oa = a * c + b * s;
            if (t->mutant == THEORY_MUT_SCALE) { oa *= 1.01f; ob *= 1.01f; }
            y_r[ia] = oa;
            y_r[ib] = ob;
        }
    }
    return RK_OK;
}

void theory_rope_mutant(theory_rope *r, theory_mutant m)
{
    memset(r, 0, sizeof *r);
    r->name = theory_mutant_names[m];
    r->apply_d = naive_apply_d;
    r->apply_f = naive_apply_f;
    r->base = 10000.0;
    r->mutant = (int)m;
}

const char *const theory_feat_names[] = { "none", "bias", "half", "noorth", "trig", NULL };
const char *const theory_feat_help[] = {
    "the library's feature map",
    "every FAVOR+ feature times 1.1 (estimator biased by 1.21)",
    "every other projection dropped, the rest times sqrt 2 (unbiased, MSE doubled)",
    "'orthogonal' projections drawn iid (no Theorem 2 gain)",
    "eq. 19 denominators from trigonometric features (may be negative)",
};

/* ---- RoPE checks -------------------------------------------------------------------------- */

static const size_t dims[] = { 2, 8, 64, 128 };
#define NDIMS (sizeof dims / sizeof dims[0])
static const int64_t fixed_pos[] = { 0, 1, 2, 3, 100, 4095, 4096, 65537, 999999, 1000000, -7,
                                     -1000000 };
#define NFIXED (sizeof fixed_pos / sizeof fixed_pos[0])

#define TRY(call) do { int rk__e = (call); if (rk__e) { err = rk__e; goto done; } } while (0)

/* (11)/(16): (R_m q).(R_n k) = q.(R_{n-m} k). f32: the float kernels, dots in double. */
static int rel_check(const theory_config *cfg, theory_result *res, int f32, int64_t P,
                     unsigned long tag)
{
    const theory_rope *R = cfg->rope;
    gsl_rng *r = rng_for(cfg, tag);
    if (!r) return RK_ENOMEM;
    int err = RK_OK;
    double q[MAXD], k[MAXD], a[MAXD], b[MAXD], c[MAXD], worst = 0.0;
    float qf[MAXD], kf[MAXD], af[MAXD], bf[MAXD], cf[MAXD];
    size_t wd = 0;
    int64_t wm = 0, wn = 0;
    for (size_t t = 0; t < cfg->draws; t++) {
        size_t d = dims[t % NDIMS];
        randn(r, q, d);
        randn(r, k, d);
        int64_t m = rpos(r, P), n = rpos(r, P);
        if (t < 2) { m = t ? -P : P; n = -m; }          /* the extremes: n - m = -+2P */
        double e, s;
        if (f32) {
            for (size_t i = 0; i < d; i++) { qf[i] = (float)q[i]; kf[i] = (float)k[i]; }
            TRY(rot1f(R, RK_ROPE_INTERLEAVED, qf, af, d, m));
            TRY(rot1f(R, RK_ROPE_INTERLEAVED, kf, bf, d, n));
            TRY(rot1f(R, RK_ROPE_INTERLEAVED, kf, cf, d, n - m));
            e = fabs(dotf(af, bf, d) - dotf(qf, cf, d));
            s = nrmf(qf, d) * nrmf(kf, d);
        } else {
            TRY(rot1(R, RK_ROPE_INTERLEAVED, q, a, d, m));
            TRY(rot1(R, RK_ROPE_INTERLEAVED, k, b, d, n));
            TRY(rot1(R, RK_ROPE_INTERLEAVED, k, c, d, n - m));
            e = fabs(dot(a, b, d) - dot(q, c, d));
            s = nrm(q, d) * nrm(k, d);
        }
        if (!(e / s <= worst)) { worst = e / s; wd = d; wm = m; wn = n; }
    }
    res->equation = "(11)/(16)";
    res->prec = f32 ? "f32" : "f64";
    setf(res->what, sizeof res->what, "(R_m q).(R_n k) vs q.(R_{n-m} k): max |diff|/(|q||k|) over %zu "
         "draws, q, k ~ N(0,1), d in {2,8,64,128}, |m|,|n| <= %lld", cfg->draws, (long long)P);
    res->measured = worst;
    res->cmp = THEORY_LE;
    double p = (double)P;
    res->tol = f32 ? 2 * erot_f(p) + erot_f(2 * p) + 2 * gam(MAXD, U)
                   : 2 * erot(p) + erot(2 * p) + 2 * gam(MAXD, U);
    setf(res->detail, sizeof res->detail, "worst at d=%zu m=%lld n=%lld", wd, (long long)wm,
         (long long)wn);
    setf(res->why, sizeof res->why, "rounding only: each rotation within %s(p)|x| (%s, see theory.c), "
         "each dot in double within g_d|q||k|: tol = %s(P) + %s(P) + %s(2P) + 2 g_128 at P = %lld",
         f32 ? "e_f" : "e", f32 ? "e_f(p) = 6u|p| + 4u + 6u_f: float kernel, angle in double"
                            : "e(p) = 6u|p| + 8u: angle p*theta <= 3u|p|, cos/sin, 2 products + 1 sum",
         f32 ? "e_f" : "e", f32 ? "e_f" : "e", f32 ? "e_f" : "e", (long long)P);
done:
    gsl_rng_free(r);
    return err;
}
static int chk_rel_small(const theory_config *c, theory_result *r) { return rel_check(c, r, 0, 4096, 1); }
static int chk_rel_large(const theory_config *c, theory_result *r) { return rel_check(c, r, 0, 1000000, 2); }
static int chk_rel_f32(const theory_config *c, theory_result *r) { return rel_check(c, r, 1, 1000000, 3); }

/* (15) vs (34): the explicit block-diagonal matrix and the elementwise form under test. */
static int chk_matrix(const theory_config *cfg, theory_result *res)
{
    const theory_rope *R = cfg->rope;
    gsl_rng *r = rng_for(cfg, 4);
    double *M = malloc(MAXD * MAXD * sizeof *M);
    if (!r || !M) { gsl_rng_free(r); free(M); return RK_ENOMEM; }
    int err = RK_OK;
    double x[MAXD], y[MAXD], worst = 0.0;
    size_t wd = 0;
    int64_t wp = 0;
    for (size_t di = 0; di < NDIMS; di++)
        for (size_t pi = 0; pi < NFIXED; pi++) {
            size_t d = dims[di];
            paper_matrix(R->base, d, (double)fixed_pos[pi], M);
            for (int rep = 0; rep < 2; rep++) {
                randn(r, x, d);
                TRY(rot1(R, RK_ROPE_INTERLEAVED, x, y, d, fixed_pos[pi]));
                double e2 = 0.0;
                for (size_t i = 0; i < d; i++) {
                    double mx = 0.0;
                    for (size_t j = 0; j < d; j++) mx += M[i * d + j] * x[j];
                    e2 += (y[i] - mx) * (y[i] - mx);
                }
                double e = sqrt(e2) / nrm(x, d);
                if (!(e <= worst)) { worst = e; wd = d; wp = fixed_pos[pi]; }
            }
        }
    res->equation = "(15)=(34)";
    res->prec = "f64";
    setf(res->what, sizeof res->what, "elementwise R x (34) vs the block-diagonal matrix of (15) built "
         "from theta_i = 10000^(-2i/d): max |diff|_2/|x|_2, d in {2,8,64,128}, %zu positions in "
         "[-1e6, 1e6]", NFIXED);
    res->measured = worst;
    res->cmp = THEORY_LE;
    res->tol = 2 * erot(1e6) + 4 * U;
    setf(res->detail, sizeof res->detail, "worst at d=%zu pos=%lld", wd, (long long)wp);
    setf(res->why, sizeof res->why, "both forms are within e(P)|x| of the exact rotation, e(p) = 6u|p| + "
         "8u; the matrix-vector product adds <= 2u per row (2 nonzeros): tol = 2 e(1e6) + 4u");
done:
    gsl_rng_free(r);
    free(M);
    return err;
}

/* R^T R = I: column j of R is R e_j. */
static int chk_orth(const theory_config *cfg, theory_result *res)
{
    const theory_rope *R = cfg->rope;
    double *X = calloc(MAXD * MAXD, sizeof *X), *Y = malloc(MAXD * MAXD * sizeof *Y);
    int64_t pos[MAXD];
    if (!X || !Y) { free(X); free(Y); return RK_ENOMEM; }
    int err = RK_OK;
    double worst = 0.0;
    size_t wd = 0;
    int64_t wp = 0;
    for (size_t di = 0; di < NDIMS; di++)
        for (size_t pi = 0; pi < NFIXED; pi++) {
            size_t d = dims[di];
            memset(X, 0, d * d * sizeof *X);
            for (size_t j = 0; j < d; j++) { X[j * d + j] = 1.0; pos[j] = fixed_pos[pi]; }
            rk_matd xv = rk_matd_view(X, d, d, d), yv = rk_matd_view(Y, d, d, d);
            TRY(R->apply_d(R, RK_ROPE_INTERLEAVED, &xv, &yv, pos));
            for (size_t i = 0; i < d; i++)
                for (size_t j = 0; j < d; j++) {
                    double g = dot(Y + i * d, Y + j * d, d) - (i == j ? 1.0 : 0.0);
                    if (!(fabs(g) <= worst)) { worst = fabs(g); wd = d; wp = fixed_pos[pi]; }
                }
        }
    res->equation = "(15) R^T R=I";
    res->prec = "f64";
    setf(res->what, sizeof res->what, "R orthogonal: max |R^T R - I| with R e_j from the RoPE under test, "
         "d in {2,8,64,128}, %zu positions in [-1e6, 1e6]", NFIXED);
    res->measured = worst;
    res->cmp = THEORY_LE;
    res->tol = 8 * U;
    setf(res->detail, sizeof res->detail, "worst at d=%zu pos=%lld", wd, (long long)wp);
    setf(res->why, sizeof res->why, "R e_j holds the rounded cos, sin of one angle (<= 2u each): "
         "c^2 + s^2 - 1 <= 4 sqrt2 u + 2u (products, sum) < 8u; off-diagonal terms cancel exactly; "
         "the angle's own error cannot break orthogonality");
done:
    free(X);
    free(Y);
    return err;
}

/* Norms preserved ("stability", eq. 16 remark). */
static int norm_check(const theory_config *cfg, theory_result *res, int f32)
{
    const theory_rope *R = cfg->rope;
    gsl_rng *r = rng_for(cfg, f32 ? 7 : 6);
    if (!r) return RK_ENOMEM;
    int err = RK_OK;
    double x[MAXD], y[MAXD], worst = 0.0;
    float xf[MAXD], yf[MAXD];
    for (size_t t = 0; t < cfg->draws; t++) {
        size_t d = dims[t % NDIMS];
        randn(r, x, d);
        int64_t p = t % 2 ? rpos(r, 1000000) : rpos(r, 4096);
        double e;
        if (f32) {
            for (size_t i = 0; i < d; i++) xf[i] = (float)x[i];
            TRY(rot1f(R, RK_ROPE_INTERLEAVED, xf, yf, d, p));
            e = fabs(nrmf(yf, d) - nrmf(xf, d)) / nrmf(xf, d);
        } else {
            TRY(rot1(R, RK_ROPE_INTERLEAVED, x, y, d, p));
            e = fabs(nrm(y, d) - nrm(x, d)) / nrm(x, d);
        }
        if (!(e <= worst)) worst = e;
    }
    res->equation = "(16) |Rx|=|x|";
    res->prec = f32 ? "f32" : "f64";
    setf(res->what, sizeof res->what, "norms preserved: max ||R_p x| - |x||/|x| over %zu draws, x ~ N(0,1), "
         "d in {2,8,64,128}, |p| <= 1e6", cfg->draws);
    res->measured = worst;
    res->cmp = THEORY_LE;
    res->tol = f32 ? 2 * sqrt(2.0) * (UF + 2 * U) + 4 * UF + 2 * U + gam(MAXD, U)
                   : (2 * sqrt(2.0) + 6) * U + gam(MAXD, U);
    setf(res->why, sizeof res->why, "%s", f32
         ? "cos, sin rounded to float (<= u_f + 2u): |(c,s)| within 2 sqrt2 (u_f + 2u); float products "
           "and sums <= 4 u_f per pair; the two norms in double <= g_d + 2u"
         : "rounded cos, sin (<= 2u): |(c,s)| within 2 sqrt2 u; products and sums <= 4u per pair; the "
           "two norms <= g_d + 2u: tol = (2 sqrt2 + 6) u + g_128");
done:
    gsl_rng_free(r);
    return err;
}
static int chk_norm_d(const theory_config *c, theory_result *r) { return norm_check(c, r, 0); }
static int chk_norm_f(const theory_config *c, theory_result *r) { return norm_check(c, r, 1); }

/* h_i = q~_i conj(k~_i) of interleaved pairs (PAPER.md section 2). */
static void hprod(const double *q, const double *k, size_t i, double *hr, double *hi)
{
    *hr = q[2 * i] * k[2 * i] + q[2 * i + 1] * k[2 * i + 1];
    *hi = q[2 * i + 1] * k[2 * i] - q[2 * i] * k[2 * i + 1];
}

/* (12)/(35): the complex form Re sum_i h_i e^{i(m-n) theta_i} equals the real form. */
static int chk_complex(const theory_config *cfg, theory_result *res)
{
    const theory_rope *R = cfg->rope;
    gsl_rng *r = rng_for(cfg, 8);
    if (!r) return RK_ENOMEM;
    int err = RK_OK;
    const int64_t P = 1000000;
    double q[MAXD], k[MAXD], a[MAXD], b[MAXD], worst = 0.0;
    size_t wd = 0;
    for (size_t t = 0; t < cfg->draws; t++) {
        size_t d = dims[t % NDIMS];
        randn(r, q, d);
        randn(r, k, d);
        int64_t m = t % 2 ? rpos(r, P) : rpos(r, 300), n = t % 2 ? rpos(r, P) : rpos(r, 300);
        TRY(rot1(R, RK_ROPE_INTERLEAVED, q, a, d, m));
        TRY(rot1(R, RK_ROPE_INTERLEAVED, k, b, d, n));
        double cx = 0.0;
        for (size_t i = 0; i < d / 2; i++) {
            double hr, hi, ang = (double)(m - n) * paper_theta(R->base, i, d);
            hprod(q, k, i, &hr, &hi);
            cx += hr * cos(ang) - hi * sin(ang);
        }
        double e = fabs(dot(a, b, d) - cx) / (nrm(q, d) * nrm(k, d));
        if (!(e <= worst)) { worst = e; wd = d; }
    }
    res->equation = "(12)/(35)";
    res->prec = "f64";
    setf(res->what, sizeof res->what, "(R_m q).(R_n k) vs Re sum_i q~_i conj(k~_i) e^{i(m-n)theta_i} "
         "(q~_i = q_2i + i q_2i+1): max |diff|/(|q||k|), %zu draws, d in {2,8,64,128}, |m|,|n| <= 1e6",
         cfg->draws);
    res->measured = worst;
    res->cmp = THEORY_LE;
    res->tol = 2 * erot((double)P) + gam(MAXD, U) + 3 * U * 2 * (double)P + 6 * U + gam(MAXD / 2, U);
    setf(res->detail, sizeof res->detail, "worst at d=%zu (d = 2 is eq. 12 itself)", wd);
    setf(res->why, sizeof res->why, "real side: e(m) + e(n) + g_d; complex side: angle (m-n) theta "
         "<= 3u|m-n|, cos/sin 2u, h_i and the product 4u, the sum g_{d/2}: tol = 2 e(P) + g_128 + "
         "6u P + 6u + g_64");
done:
    gsl_rng_free(r);
    return err;
}

/* z = sum_i h_i e^{i(m-n) theta_i} from the RoPE under test: Re z = (R_m q).(R_n k) and
 * Im z = (R_m Jq).(R_n k) with Jq = (q_1, -q_0, q_3, -q_2, ...) (-i q~ per pair). */
static void jrot(const double *q, double *jq, size_t d)
{
    for (size_t i = 0; i < d / 2; i++) { jq[2 * i] = q[2 * i + 1]; jq[2 * i + 1] = -q[2 * i]; }
}

/* (36) Abel summation: sum_i h_i e^{i dist theta_i} = -sum_i S_{i+1} (h_{i+1} - h_i). */
static int chk_abel(const theory_config *cfg, theory_result *res)
{
    const theory_rope *R = cfg->rope;
    gsl_rng *r = rng_for(cfg, 9);
    if (!r) return RK_ENOMEM;
    int err = RK_OK;
    const int64_t P = 1000000;
    double q[MAXD], k[MAXD], jq[MAXD], a[MAXD], aj[MAXD], b[MAXD], worst = 0.0;
    size_t wd = 0;
    for (size_t t = 0; t < cfg->draws; t++) {
        size_t d = dims[t % NDIMS], h = d / 2;
        randn(r, q, d);
        randn(r, k, d);
        int64_t n = t % 2 ? rpos(r, P) : rpos(r, 1000);
        int64_t m = t % 2 ? rpos(r, P) : n + rpos(r, 256);
        jrot(q, jq, d);
        TRY(rot1(R, RK_ROPE_INTERLEAVED, q, a, d, m));
        TRY(rot1(R, RK_ROPE_INTERLEAVED, jq, aj, d, m));
        TRY(rot1(R, RK_ROPE_INTERLEAVED, k, b, d, n));
        double zr = dot(a, b, d), zi = dot(aj, b, d);
        /* right side of (36) with the paper's theta */
        double sr = 0.0, si = 0.0, rr = 0.0, ri = 0.0, A = 0.0, G = 0.0;
        for (size_t i = 0; i < h; i++) {
            double ang = (double)(m - n) * paper_theta(R->base, i, d);
            sr += cos(ang);
            si += sin(ang);
            double hr, hi, nr = 0.0, ni = 0.0;
            hprod(q, k, i, &hr, &hi);
            if (i + 1 < h) hprod(q, k, i + 1, &nr, &ni);
            double dr = nr - hr, di = ni - hi;
            rr -= sr * dr - si * di;
            ri -= sr * di + si * dr;
            A += (double)(i + 1) * hypot(dr, di);
            G += (double)(i + 1) * (hypot(hr, hi) + hypot(nr, ni));
        }
        double scale = nrm(q, d) * nrm(k, d) + A + G;
        double e = hypot(zr - rr, zi - ri) / scale;
        if (!(e <= worst)) { worst = e; wd = d; }
    }
    res->equation = "(36)";
    res->prec = "f64";
    setf(res->what, sizeof res->what, "Abel summation: z = sum h_i e^{i(m-n)theta_i} (Re, Im from the "
         "RoPE under test) vs -sum S_{i+1}(h_{i+1}-h_i): max |diff|/(|q||k| + A + G), %zu draws, "
         "|m|,|n| <= 1e6", cfg->draws);
    res->measured = worst;
    res->cmp = THEORY_LE;
    double p = (double)P;
    res->tol = sqrt(2.0) * (2 * erot(p) + gam(MAXD, U)) +
               sqrt(2.0) * (3 * U * 2 * p + 2 * gam(MAXD / 2, U) + 5 * U) + 3 * U;
    setf(res->detail, sizeof res->detail, "worst at d=%zu; A = sum (i+1)|h_{i+1}-h_i|, G = sum (i+1)"
         "(|h_i| + |h_{i+1}|)", wd);
    setf(res->why, sizeof res->why, "identity exact in real arithmetic; left: sqrt2 (e(m) + e(n) + g_d)"
         " |q||k|; right: |S_j| off by <= j sqrt2 (3u|dist| + 2u + g_h), h_i by 2 sqrt2 u |h|: "
         "<= sqrt2 (6uP + 2 g_64 + 5u) A + 2 sqrt2 u G + uA");
done:
    gsl_rng_free(r);
    return err;
}

/* (37): |z| <= sum |S_{i+1}||h_{i+1}-h_i| <= max|h_{i+1}-h_i| sum_j |S_j| for every draw and
 * distance, including draws for which it is an equality. */
static int chk_bound(const theory_config *cfg, theory_result *res)
{
    const theory_rope *R = cfg->rope;
    enum { ND = 513, DMAX = 256 };
    static const size_t bd[] = { 16, 128 };
    gsl_rng *r = rng_for(cfg, 10);
    double *Y = malloc(ND * MAXD * sizeof *Y), *YJ = malloc(ND * MAXD * sizeof *YJ);
    double *Q = malloc(ND * MAXD * sizeof *Q), *QJ = malloc(ND * MAXD * sizeof *QJ);
    int64_t *pos = malloc(ND * sizeof *pos);
    int err = RK_OK;
    if (!r || !Y || !YJ || !Q || !QJ || !pos) { err = RK_ENOMEM; goto done; }
    double q[MAXD], k[MAXD], jq[MAXD], kb[MAXD], theta[MAXD / 2];
    double worst = INFINITY, worst_mid = INFINITY, tolmax = 0.0;
    long viol = 0;
    size_t ndraw = 0, wd = 0;
    long wdist = 0;
    for (size_t di = 0; di < 2; di++) {
        size_t d = bd[di], h = d / 2;
        for (size_t i = 0; i < h; i++) theta[i] = paper_theta(R->base, i, d);
        size_t nd = cfg->draws / 2 + 1;
        for (size_t t = 0; t < nd; t++, ndraw++) {
            if (t == 0) {            /* the ramp q~_i = h - i, k~_i = 1: equality at distance 0 */
                for (size_t i = 0; i < h; i++) {
                    q[2 * i] = (double)(h - i); q[2 * i + 1] = 0.0;
                    k[2 * i] = 1.0; k[2 * i + 1] = 0.0;
                }
            } else {
                decay_draw(r, (decay_dist)(t % DECAY_NDIST), d, q, k);
            }
            int64_t n = (int64_t)gsl_rng_uniform_int(r, 1001);
            jrot(q, jq, d);
            for (size_t j = 0; j < ND; j++) {
                pos[j] = n + (int64_t)j - DMAX;
                memcpy(Q + j * d, q, d * sizeof *q);
                memcpy(QJ + j * d, jq, d * sizeof *q);
            }
            rk_matd qv = rk_matd_view(Q, ND, d, d), qjv = rk_matd_view(QJ, ND, d, d);
            rk_matd yv = rk_matd_view(Y, ND, d, d), yjv = rk_matd_view(YJ, ND, d, d);
            TRY(R->apply_d(R, RK_ROPE_INTERLEAVED, &qv, &yv, pos));
            TRY(R->apply_d(R, RK_ROPE_INTERLEAVED, &qjv, &yjv, pos));
            TRY(rot1(R, RK_ROPE_INTERLEAVED, k, kb, d, n));
            double qk = nrm(q, d) * nrm(k, d);
            for (size_t j = 0; j < ND; j++) {
                double dist = (double)j - DMAX, sc, az, abel, pb;
                decay_one(theta, h, q, k, dist, &sc, &az, &abel, &pb);
                double z = hypot(dot(Y + j * d, kb, d), dot(YJ + j * d, kb, d));
                /* rounding allowance relative to the middle term (<= the right one) */
                double tolr = sqrt(2.0) * (erot((double)pos[j]) + erot((double)n) + gam((double)d, U)) *
                              qk / (abel > 0 ? abel : 1.0) +
                              sqrt(2.0) * (3 * U * fabs(dist) + 2 * gam((double)h, U) + 5 * U) +
                              3 * U;
                if (tolr > tolmax) tolmax = tolr;
                double mg = (pb - z) / pb, mm = (abel - z) / abel;
                if (z > abel * (1 + tolr) || z > pb * (1 + tolr)) viol++;
                if (mg < worst) { worst = mg; wd = d; wdist = (long)dist; }
                if (mm < worst_mid) worst_mid = mm;
            }
        }
    }
    res->equation = "(37)";
    res->prec = "f64";
    setf(res->what, sizeof res->what, "bound |z| <= sum|S_{i+1}||h_{i+1}-h_i| <= max|h_{i+1}-h_i| "
         "sum|S_j|: smallest relative margin, %zu draws (normal, uniform, +-1, q = k, and the tight "
         "ramp) x distances -256..256, d in {16,128}", ndraw);
    res->measured = worst;
    res->cmp = THEORY_GE;
    res->tol = -tolmax;
    res->violations = viol;
    setf(res->detail, sizeof res->detail, "smallest margin at d=%zu distance=%ld; to the middle term: "
         "%.3g; ramp q~_i = d/2 - i, k~_i = 1 makes both equalities at distance 0", wd, wdist,
         worst_mid);
    setf(res->why, sizeof res->why, "a violation is |z| above a bound by more than rounding: z from the "
         "RoPE within sqrt2 (e(m) + e(n) + g_d)|q||k|, the bounds within sqrt2 (3u|dist| + 2 g_h + "
         "5u) + 3u of themselves; tol = the largest such allowance; must have 0 violations");
done:
    gsl_rng_free(r);
    free(Y);
    free(YJ);
    free(Q);
    free(QJ);
    free(pos);
    return err;
}

/* Interleaved and half-split give identical scores after the channel permutation
 * x_half = x_inter[perm], perm = (0, 2, 4, .., 1, 3, 5, ..) (PAPER.md section 9). */
static int layout_check(const theory_config *cfg, theory_result *res, int f32)
{
    const theory_rope *R = cfg->rope;
    gsl_rng *r = rng_for(cfg, f32 ? 12 : 11);
    if (!r) return RK_ENOMEM;
    int err = RK_OK;
    const int64_t P = 1000000;
    double q[MAXD], k[MAXD], worst = 0.0;
    double qi[MAXD], ki[MAXD], qh[MAXD], kh[MAXD], qp[MAXD], kp[MAXD];
    float fq[MAXD], fk[MAXD], fqi[MAXD], fki[MAXD], fqh[MAXD], fkh[MAXD], fqp[MAXD], fkp[MAXD];
    size_t perm[MAXD], wd = 0;
    for (size_t t = 0; t < cfg->draws; t++) {
        size_t d = dims[t % NDIMS], h = d / 2;
        for (size_t j = 0; j < h; j++) { perm[j] = 2 * j; perm[h + j] = 2 * j + 1; }
        randn(r, q, d);
        randn(r, k, d);
        int64_t m = rpos(r, t % 2 ? P : 4096), n = rpos(r, t % 2 ? P : 4096);
        double ev = 0.0, es;
        if (f32) {
            for (size_t j = 0; j < d; j++) { fq[j] = (float)q[j]; fk[j] = (float)k[j]; }
            for (size_t j = 0; j < d; j++) { fqp[j] = fq[perm[j]]; fkp[j] = fk[perm[j]]; }
            TRY(rot1f(R, RK_ROPE_INTERLEAVED, fq, fqi, d, m));
            TRY(rot1f(R, RK_ROPE_INTERLEAVED, fk, fki, d, n));
            TRY(rot1f(R, RK_ROPE_HALF, fqp, fqh, d, m));
            TRY(rot1f(R, RK_ROPE_HALF, fkp, fkh, d, n));
            for (size_t j = 0; j < d; j++) ev += ((double)fqh[j] - fqi[perm[j]]) * ((double)fqh[j] - fqi[perm[j]]);
            ev = sqrt(ev) / nrmf(fq, d);
            es = fabs(dotf(fqi, fki, d) - dotf(fqh, fkh, d)) / (nrmf(fq, d) * nrmf(fk, d));
        } else {
            for (size_t j = 0; j < d; j++) { qp[j] = q[perm[j]]; kp[j] = k[perm[j]]; }
            TRY(rot1(R, RK_ROPE_INTERLEAVED, q, qi, d, m));
            TRY(rot1(R, RK_ROPE_INTERLEAVED, k, ki, d, n));
            TRY(rot1(R, RK_ROPE_HALF, qp, qh, d, m));
            TRY(rot1(R, RK_ROPE_HALF, kp, kh, d, n));
            for (size_t j = 0; j < d; j++) ev += (qh[j] - qi[perm[j]]) * (qh[j] - qi[perm[j]]);
            ev = sqrt(ev) / nrm(q, d);
            es = fabs(dot(qi, ki, d) - dot(qh, kh, d)) / (nrm(q, d) * nrm(k, d));
        }
        double e = ev > es ? ev : es;
        if (!(e <= worst)) { worst = e; wd = d; }
    }
    res->equation = "layouts";
    res->prec = f32 ? "f32" : "f64";
    setf(res->what, sizeof res->what, "interleaved vs half-split on x[perm], perm = (0,2,..,1,3,..): "
         "max of |R x - perm^-1 R_half x[perm]|/|x| and |score diff|/(|q||k|), %zu draws, d in "
         "{2,8,64,128}, |m|,|n| <= 1e6", cfg->draws);
    res->measured = worst;
    res->cmp = THEORY_LE;
    double p = (double)P;
    res->tol = f32 ? 4 * erot_f(p) + 2 * gam(MAXD, U) : 4 * erot(p) + 2 * gam(MAXD, U);
    setf(res->detail, sizeof res->detail, "worst at d=%zu", wd);
    setf(res->why, sizeof res->why, "two implementations of one rotation, each within %s(p)|x|; two "
         "scores, each dot within g_d: tol = 2 (%s(m) + %s(n)) + 2 g_128 at P = 1e6",
         f32 ? "e_f" : "e", f32 ? "e_f" : "e", f32 ? "e_f" : "e");
done:
    gsl_rng_free(r);
    return err;
}
static int chk_layout_d(const theory_config *c, theory_result *r) { return layout_check(c, r, 0); }
static int chk_layout_f(const theory_config *c, theory_result *r) { return layout_check(c, r, 1); }

/* ---- eq. (19): RoPE with linear attention --------------------------------------------------- */

#define E19_N  80          /* tokens: more than one causal chunk of the library (64)          */
#define E19_D  8
#define E19_DV 4
#define E19_M  16          /* FAVOR+ projections                                               */

typedef struct {
    double Q[E19_N * E19_D], K[E19_N * E19_D], V[E19_N * E19_DV];
} e19_data;

static int e19_inputs(const theory_config *cfg, unsigned long tag, e19_data *x)
{
    gsl_rng *r = rng_for(cfg, tag);
    if (!r) return RK_ENOMEM;
    randn(r, x->Q, E19_N * E19_D);
    randn(r, x->K, E19_N * E19_D);
    randn(r, x->V, E19_N * E19_DV);
    gsl_rng_free(r);
    return RK_OK;
}

/* kind 0: linear elu+1 (F = d); kind 1: FAVOR+ positive, m = 16 (trig with THEORY_FEAT_TRIG
 * when trig_ok). rope = features, positions from pos_offset. */
static int e19_plan(const theory_config *cfg, int kind, int causal, int64_t off, int trig_ok,
                    rk_attn **out)
{
    rk_attn_config c = {
        .kind = kind ? RK_PERFORMER : RK_LINEAR, .n_q = E19_N, .n_kv = E19_N, .d = E19_D,
        .d_v = E19_DV, .causal = causal, .rope = RK_ROPE_FEATURES, .pos_offset = off,
        .n_features = kind ? E19_M : 0, .seed = cfg->seed + 5000000UL, .nthreads = 1,
        .kernel = kind && trig_ok && cfg->feat == THEORY_FEAT_TRIG ? RK_KERNEL_TRIG
                                                                   : RK_KERNEL_POSITIVE,
    };
    return rk_attn_create(out, &c);
}

/* Unrotated features of the N rows of X (N x d) into Phi (N x F). */
static int e19_features(rk_attn *p, const double *X, double *Phi)
{
    size_t F = rk_attn_feature_dim(p);
    rk_matd x = rk_matd_view((double *)X, E19_N, E19_D, E19_D), phi = rk_matd_view(Phi, E19_N, F, F);
    return rk_attn_features_d(p, &x, NULL, &phi);
}

/* (19): the numerator weight (R_m phi(q)).(R_n phi(k)) is invariant to a common shift; beside
 * it, the qk form phi(R_m q).phi(R_n k) is not (fixed draw of the projection). */
static int chk_e19_shift(const theory_config *cfg, theory_result *res)
{
    const theory_rope *R = cfg->rope;
    e19_data x;
    if (e19_inputs(cfg, 13, &x)) return RK_ENOMEM;
    gsl_rng *r = rng_for(cfg, 113);
    rk_attn *p[2] = { NULL, NULL };
    double *Pq = malloc(E19_N * 2 * E19_M * sizeof *Pq), *Pk = malloc(E19_N * 2 * E19_M * sizeof *Pk);
    int err = RK_OK;
    if (!r || !Pq || !Pk) { err = RK_ENOMEM; goto done; }
    double a[2 * E19_M], b[2 * E19_M], a2[2 * E19_M], b2[2 * E19_M], worst = 0.0;
    const int64_t P = 1000000;
    size_t Fmax = 0;
    for (int kind = 0; kind < 2; kind++) {
        TRY(e19_plan(cfg, kind, 0, 0, 0, &p[kind]));
        size_t F = rk_attn_feature_dim(p[kind]);
        if (F > Fmax) Fmax = F;
        TRY(e19_features(p[kind], x.Q, Pq));
        TRY(e19_features(p[kind], x.K, Pk));
        for (size_t t = 0; t < cfg->draws; t++) {
            size_t i = gsl_rng_uniform_int(r, E19_N), j = gsl_rng_uniform_int(r, E19_N);
            int64_t m = rpos(r, P), n = rpos(r, P), s = rpos(r, P);
            TRY(rot1(R, RK_ROPE_INTERLEAVED, Pq + i * F, a, F, m));
            TRY(rot1(R, RK_ROPE_INTERLEAVED, Pk + j * F, b, F, n));
            TRY(rot1(R, RK_ROPE_INTERLEAVED, Pq + i * F, a2, F, m + s));
            TRY(rot1(R, RK_ROPE_INTERLEAVED, Pk + j * F, b2, F, n + s));
            double e = fabs(dot(a, b, F) - dot(a2, b2, F)) / (nrm(Pq + i * F, F) * nrm(Pk + j * F, F));
            if (!(e <= worst)) worst = e;
        }
    }
    res->equation = "(19) num";
    res->prec = "f64";
    setf(res->what, sizeof res->what, "numerator weight (R_m phi(q)).(R_n phi(k)) under a common shift s: "
         "max |w(m+s,n+s) - w(m,n)|/(|phi q||phi k|), %zu draws per map (elu+1 F=8; FAVOR+ F=16), "
         "|m|,|n|,|s| <= 1e6", cfg->draws);
    res->measured = worst;
    res->cmp = THEORY_LE;
    res->tol = 2 * erot((double)P) + 2 * erot(2.0 * (double)P) + 2 * gam((double)Fmax, U);
    setf(res->why, sizeof res->why, "R_{m+s}^T R_{n+s} = R_{n-m} exactly, so only rounding: 4 rotations "
         "within e(p)|phi| and 2 dots within g_F: tol = 2 e(1e6) + 2 e(2e6) + 2 g_16");
done:
    gsl_rng_free(r);
    rk_attn_destroy(p[0]);
    rk_attn_destroy(p[1]);
    free(Pq);
    free(Pk);
    return err;
}

static int chk_e19_qk(const theory_config *cfg, theory_result *res)
{
    const theory_rope *R = cfg->rope;
    e19_data x;
    if (e19_inputs(cfg, 13, &x)) return RK_ENOMEM;
    gsl_rng *r = rng_for(cfg, 114);
    rk_attn *p = NULL;
    size_t nd = cfg->draws;
    double *rel = malloc(nd * sizeof *rel);
    int err = RK_OK;
    if (!r || !rel) { err = RK_ENOMEM; goto done; }
    TRY(e19_plan(cfg, 1, 0, 0, 0, &p));
    double qr[4][E19_D], f[4][E19_M];
    for (size_t t = 0; t < nd; t++) {
        size_t i = gsl_rng_uniform_int(r, E19_N), j = gsl_rng_uniform_int(r, E19_N);
        int64_t m = (int64_t)gsl_rng_uniform_int(r, 4096), n = (int64_t)gsl_rng_uniform_int(r, 4096);
        int64_t s = 1 + (int64_t)gsl_rng_uniform_int(r, 1000);
        TRY(rot1(R, RK_ROPE_INTERLEAVED, x.Q + i * E19_D, qr[0], E19_D, m));
        TRY(rot1(R, RK_ROPE_INTERLEAVED, x.K + j * E19_D, qr[1], E19_D, n));
        TRY(rot1(R, RK_ROPE_INTERLEAVED, x.Q + i * E19_D, qr[2], E19_D, m + s));
        TRY(rot1(R, RK_ROPE_INTERLEAVED, x.K + j * E19_D, qr[3], E19_D, n + s));
        rk_matd xv = rk_matd_view(&qr[0][0], 4, E19_D, E19_D), fv = rk_matd_view(&f[0][0], 4, E19_M, E19_M);
        TRY(rk_attn_features_d(p, &xv, NULL, &fv));
        double w = dot(f[0], f[1], E19_M), w2 = dot(f[2], f[3], E19_M);
        rel[t] = fabs(w2 - w) / w;
    }
    gsl_sort(rel, 1, nd);
    res->equation = "(19) qk form";
    res->prec = "f64";
    setf(res->what, sizeof res->what, "figure: RoPE before the FAVOR+ map, phi(R_m q).phi(R_n k) under a "
         "common shift s in 1..1000: median |w(m+s,n+s) - w(m,n)|/w(m,n), %zu draws, m = 16, one "
         "projection", nd);
    res->measured = gsl_stats_median_from_sorted_data(rel, 1, nd);
    res->cmp = THEORY_INFO;
    res->tol = NAN;
    setf(res->detail, sizeof res->detail, "5%%..95%%: %.3g .. %.3g, max %.3g: relative only in "
         "expectation over the projection (PAPER.md section 3)",
         gsl_stats_quantile_from_sorted_data(rel, 1, nd, 0.05),
         gsl_stats_quantile_from_sorted_data(rel, 1, nd, 0.95), rel[nd - 1]);
    setf(res->why, sizeof res->why, "not a check: omega . (R_m q) depends on m itself, so eq. 19's "
         "exact shift invariance does not hold for the performer-pytorch (pre-map) variant");
done:
    gsl_rng_free(r);
    rk_attn_destroy(p);
    free(rel);
    return err;
}

/* (19): the denominator phi(q_m).sum_n phi(k_n) of unrotated positive features stays > 0. */
static int chk_e19_den(const theory_config *cfg, theory_result *res)
{
    e19_data x;
    if (e19_inputs(cfg, 15, &x)) return RK_ENOMEM;
    rk_attn *p = NULL;
    double *Pq = malloc(E19_N * 2 * E19_M * sizeof *Pq), *Pk = malloc(E19_N * 2 * E19_M * sizeof *Pk);
    int err = RK_OK;
    if (!Pq || !Pk) { err = RK_ENOMEM; goto done; }
    double worst = INFINITY;
    const char *kname[2] = { "elu+1", cfg->feat == THEORY_FEAT_TRIG ? "FAVOR+ trig" : "FAVOR+ positive" };
    int wk = 0;
    for (int kind = 0; kind < 2; kind++) {
        TRY(e19_plan(cfg, kind, 0, 0, 1, &p));
        size_t F = rk_attn_feature_dim(p);
        TRY(e19_features(p, x.Q, Pq));
        TRY(e19_features(p, x.K, Pk));
        for (size_t i = 0; i < E19_N; i++) {
            double den = 0.0, sc = 0.0;
            for (size_t j = 0; j < E19_N; j++) {
                den += dot(Pq + i * F, Pk + j * F, F);
                sc += nrm(Pq + i * F, F) * nrm(Pk + j * F, F);
                /* causal prefixes (j <= i) and the full sum: every partial sum must be > 0 */
                if ((j == i || j == E19_N - 1) && den / sc < worst) { worst = den / sc; wk = kind; }
            }
        }
        rk_attn_destroy(p);
        p = NULL;
    }
    res->equation = "(19) den";
    res->prec = "f64";
    setf(res->what, sizeof res->what, "denominator sum_n phi(q_m).phi(k_n) (unrotated): smallest value "
         "over queries, causal and full, relative to sum |phi q||phi k|; %d tokens, elu+1 and %s",
         E19_N, kname[1]);
    res->measured = worst;
    res->cmp = THEORY_GT;
    res->tol = 0.0;
    setf(res->detail, sizeof res->detail, "smallest with %s", kname[wk]);
    setf(res->why, sizeof res->why, "positive maps (exp, elu+1 > 0): every term is > 0 and sums of "
         "positive floats cannot cancel, so > 0 holds exactly (barring underflow of every term); "
         "trigonometric features break it");
done:
    rk_attn_destroy(p);
    free(Pq);
    free(Pk);
    return err;
}

/* (19): the library's linear-time execute equals the quadratic definition computed here with the
 * RoPE under test: out_m = sum_n (R_m phi q_m).(R_n phi k_n) v_n / sum_n phi q_m . phi k_n. */
static int e19_linear(const theory_config *cfg, theory_result *res, int f32)
{
    const theory_rope *R = cfg->rope;
    e19_data x;
    if (e19_inputs(cfg, f32 ? 17 : 16, &x)) return RK_ENOMEM;
    if (f32) {   /* the float path sees float inputs; the reference uses the same values */
        for (size_t i = 0; i < E19_N * E19_D; i++) { x.Q[i] = (float)x.Q[i]; x.K[i] = (float)x.K[i]; }
        for (size_t i = 0; i < E19_N * E19_DV; i++) x.V[i] = (float)x.V[i];
    }
    rk_attn *p = NULL;
    size_t FM = 2 * E19_M;
    double *Pq = malloc(E19_N * FM * sizeof *Pq), *Pk = malloc(E19_N * FM * sizeof *Pk);
    double *Rq = malloc(E19_N * FM * sizeof *Rq), *Rk = malloc(E19_N * FM * sizeof *Rk);
    double *out = malloc(E19_N * E19_DV * sizeof *out);
    float *qf = malloc(E19_N * E19_D * sizeof *qf), *kf = malloc(E19_N * E19_D * sizeof *kf);
    float *vf = malloc(E19_N * E19_DV * sizeof *vf), *of = malloc(E19_N * E19_DV * sizeof *of);
    int64_t pos[E19_N];
    int err = RK_OK;
    if (!Pq || !Pk || !Rq || !Rk || !out || !qf || !kf || !vf || !of) { err = RK_ENOMEM; goto done; }
    for (size_t i = 0; i < E19_N * E19_D; i++) { qf[i] = (float)x.Q[i]; kf[i] = (float)x.K[i]; }
    for (size_t i = 0; i < E19_N * E19_DV; i++) vf[i] = (float)x.V[i];
    double worst = 0.0, kappa = 0.0, hmax = 0.0, up = f32 ? UF : U;
    const int64_t offs[2] = { 0, 1000000 - E19_N };
    char wcase[64] = "";
    for (int kind = 0; kind < 2; kind++)
        for (int causal = 0; causal < 2; causal++)
            for (int oi = 0; oi < 2; oi++) {
                TRY(e19_plan(cfg, kind, causal, offs[oi], 0, &p));
                size_t F = rk_attn_feature_dim(p);
                const rk_attn_config *ac = rk_attn_get_config(p);
                if (kind == 1) {       /* kappa = max_r sum_c |w_rc x'_c|, h = |x'|^2/2 */
                    size_t mm, dd;
                    const float *W = rk_attn_proj(p, &mm, &dd);
                    double sq = sqrt(ac->scale);
                    for (size_t t = 0; t < 2 * E19_N; t++) {
                        const double *row = t < E19_N ? x.Q + t * E19_D : x.K + (t - E19_N) * E19_D;
                        double hh = 0.5 * ac->scale * dot(row, row, E19_D);
                        if (hh > hmax) hmax = hh;
                        for (size_t rr = 0; rr < mm; rr++) {
                            double s = 0.0;
                            for (size_t c = 0; c < dd; c++) s += fabs((double)W[rr * dd + c] * sq * row[c]);
                            if (s > kappa) kappa = s;
                        }
                    }
                }
                TRY(e19_features(p, x.Q, Pq));
                TRY(e19_features(p, x.K, Pk));
                for (size_t t = 0; t < E19_N; t++) pos[t] = offs[oi] + (int64_t)t;
                rk_matd pqv = rk_matd_view(Pq, E19_N, F, F), pkv = rk_matd_view(Pk, E19_N, F, F);
                rk_matd rqv = rk_matd_view(Rq, E19_N, F, F), rkv = rk_matd_view(Rk, E19_N, F, F);
                TRY(R->apply_d(R, RK_ROPE_INTERLEAVED, &pqv, &rqv, pos));
                TRY(R->apply_d(R, RK_ROPE_INTERLEAVED, &pkv, &rkv, pos));
                if (f32) {
                    rk_mat q = rk_mat_view(qf, E19_N, E19_D, E19_D), k = rk_mat_view(kf, E19_N, E19_D, E19_D);
                    rk_mat v = rk_mat_view(vf, E19_N, E19_DV, E19_DV), o = rk_mat_view(of, E19_N, E19_DV, E19_DV);
                    TRY(rk_attn_execute(p, &q, &k, &v, &o, RK_ALL_KEYS));
                    for (size_t i = 0; i < E19_N * E19_DV; i++) out[i] = of[i];
                } else {
                    rk_matd q = rk_matd_view(x.Q, E19_N, E19_D, E19_D), k = rk_matd_view(x.K, E19_N, E19_D, E19_D);
                    rk_matd v = rk_matd_view(x.V, E19_N, E19_DV, E19_DV), o = rk_matd_view(out, E19_N, E19_DV, E19_DV);
                    TRY(rk_attn_execute_d(p, &q, &k, &v, &o, RK_ALL_KEYS));
                }
                for (size_t i = 0; i < E19_N; i++) {
                    size_t vis = causal ? i + 1 : E19_N;
                    double num[E19_DV] = { 0 }, den = 0.0, sc = 0.0;
                    for (size_t j = 0; j < vis; j++) {
                        double w = dot(Rq + i * F, Rk + j * F, F), vmax = 0.0;
                        den += dot(Pq + i * F, Pk + j * F, F);
                        for (size_t c = 0; c < E19_DV; c++) {
                            num[c] += w * x.V[j * E19_DV + c];
                            if (fabs(x.V[j * E19_DV + c]) > vmax) vmax = fabs(x.V[j * E19_DV + c]);
                        }
                        sc += nrm(Pq + i * F, F) * nrm(Pk + j * F, F) * vmax;
                    }
                    for (size_t c = 0; c < E19_DV; c++) {
                        double e = fabs(out[i * E19_DV + c] - num[c] / den) / (sc / den);
                        if (!(e <= worst)) {
                            worst = e;
                            setf(wcase, sizeof wcase, "%s %s offset %lld", kind ? "FAVOR+" : "elu+1",
                                 causal ? "causal" : "full", (long long)offs[oi]);
                        }
                    }
                }
                rk_attn_destroy(p);
                p = NULL;
            }
    res->equation = "(19) linear";
    res->prec = f32 ? "f32" : "f64";
    setf(res->what, sizeof res->what, "linear-time rk_attn_execute%s (rope = features) vs the O(N^2) sum "
         "of eq. 19 with the RoPE under test: max |diff|/(sum|phi q||phi k||v|/den), N = %d, d = %d, "
         "elu+1 and FAVOR+ (m = %d), full and causal, offsets 0 and %lld",
         f32 ? "" : "_d", E19_N, E19_D, E19_M, (long long)offs[1]);
    res->measured = worst;
    res->cmp = THEORY_LE;
    double phie = ((E19_D + 6) * kappa + 3 * hmax + 4) * up;
    double ep = f32 ? erot_f(1e6) : erot(1e6);
    res->tol = 2 * (2 * phie + 2 * ep + 2 * gam(2 * E19_M, up) + 2 * gam(E19_N, up) + 8 * up);
    setf(res->detail, sizeof res->detail, "worst: %s; kappa = %.3g, max |x'|^2/2 = %.3g", wcase, kappa, hmax);
    setf(res->why, sizeof res->why, "each feature within ((d+6) kappa + 3h + 4) u (projection dot, "
         "exponent, exp), rotations e(P), dots and sums g_F, g_N, stabiliser rescales 8u; a weight "
         "error relative to |phi q||phi k|, the output twice that (num and den): tol = 2 (2 phi_err + "
         "2 e(P) + 2 g_2m + 2 g_N + 8u), u = %s", f32 ? "2^-24" : "2^-53");
done:
    rk_attn_destroy(p);
    free(Pq); free(Pk); free(Rq); free(Rk); free(out);
    free(qf); free(kf); free(vf); free(of);
    return err;
}
static int chk_e19_lin_d(const theory_config *c, theory_result *r) { return e19_linear(c, r, 0); }
static int chk_e19_lin_f(const theory_config *c, theory_result *r) { return e19_linear(c, r, 1); }

/* ---- FAVOR+ (Performer Lemma 1, Lemma 2, Theorem 2) ---------------------------------------- */

#define FV_D    16       /* d = M: one orthogonal block per estimator (Theorem 2 needs M <= d)   */
#define FV_M    16       /* projections per estimator                                          */
#define FV_K    16       /* independent estimators per plan (groups of M rows; iid rows, and
                            orthogonal blocks of d rows, are independent of each other)         */
#define FV_NORM 0.5      /* |x| = |y|: see the why of the MSE checks                           */

enum { FC_POS_IID, FC_POS_ORT, FC_TRIG, FC_HYP, FC_N };
static const char *const fc_name[FC_N] = { "positive iid", "positive orthogonal", "trig iid",
                                           "hyperbolic iid" };

typedef struct {
    int           valid, feat;
    unsigned long seed;
    size_t        n;
    double       *est;         /* n estimates of exp(x.y)                                      */
    unsigned long s0, s1;      /* plan seeds s0 .. s1                                          */
} fv_cache;
static fv_cache fvc[FC_N];

void theory_free_cache(void)
{
    for (int i = 0; i < FC_N; i++) {
        free(fvc[i].est);
        memset(&fvc[i], 0, sizeof fvc[i]);
    }
}

typedef struct {
    double x[FV_D], y[FV_D];
    double sm, lam, z2, w2;    /* exp(x.y), exp(-(|x|^2+|y|^2)/2), |x+y|^2, |x-y|^2             */
} fv_point;

/* x, y of norm 0.5 at 60 degrees in a random plane: x.y = 1/8, |x+y|^2 = 3/4, |x-y|^2 = 1/4 for
 * every seed (the distributions are rotation invariant, so only the orientation is random; a
 * fixed geometry keeps the power of the Theorem 2 check the same for every seed). */
static int fv_point_get(const theory_config *cfg, fv_point *p)
{
    gsl_rng *r = rng_for(cfg, 90);
    if (!r) return RK_ENOMEM;
    double u[FV_D];
    randn(r, p->x, FV_D);
    randn(r, u, FV_D);
    gsl_rng_free(r);
    double nx = nrm(p->x, FV_D);
    for (size_t c = 0; c < FV_D; c++) p->x[c] /= nx;
    double ux = dot(u, p->x, FV_D);
    for (size_t c = 0; c < FV_D; c++) u[c] -= ux * p->x[c];
    double nu = nrm(u, FV_D), z2 = 0.0, w2 = 0.0;
    for (size_t c = 0; c < FV_D; c++) {
        p->y[c] = FV_NORM * (0.5 * p->x[c] + sqrt(0.75) * u[c] / nu);
        p->x[c] *= FV_NORM;
    }
    for (size_t c = 0; c < FV_D; c++) {
        z2 += (p->x[c] + p->y[c]) * (p->x[c] + p->y[c]);
        w2 += (p->x[c] - p->y[c]) * (p->x[c] - p->y[c]);
    }
    p->sm = exp(dot(p->x, p->y, FV_D));
    p->lam = exp(-0.5 * (dot(p->x, p->x, FV_D) + dot(p->y, p->y, FV_D)));
    p->z2 = z2;
    p->w2 = w2;
    return RK_OK;
}

/* The feature defect that changes the samples of case `which` (the cache key). */
static int fv_feat_of(int which, theory_feat_mutant f)
{
    if (f == THEORY_FEAT_BIAS || f == THEORY_FEAT_HALF) return (int)f;
    if (f == THEORY_FEAT_NOORTH && which == FC_POS_ORT) return (int)f;
    return THEORY_FEAT_NONE;
}

/* cfg->trials estimates phi(x).phi(y) of the case `which`, through the library's plans
 * (rk_attn_features_d, scale 1 so the target is exp(x.y)), seeds s0 + t. */
static int fv_samples(const theory_config *cfg, int which, const fv_point *pt, fv_cache **out)
{
    fv_cache *c = &fvc[which];
    int feat = fv_feat_of(which, cfg->feat);
    if (c->valid && c->seed == cfg->seed && c->n == cfg->trials && c->feat == feat) {
        *out = c;
        return RK_OK;
    }
    free(c->est);
    memset(c, 0, sizeof *c);
    size_t n = cfg->trials, m = FV_M * FV_K;
    rk_kernel kern = which == FC_TRIG ? RK_KERNEL_TRIG : which == FC_HYP ? RK_KERNEL_HYPERBOLIC
                                                                          : RK_KERNEL_POSITIVE;
    size_t F = kern == RK_KERNEL_POSITIVE ? m : 2 * m;
    c->est = malloc(n * sizeof *c->est);
    double *phi = malloc(2 * F * sizeof *phi), X[2 * FV_D];
    if (!c->est || !phi) { free(phi); free(c->est); c->est = NULL; return RK_ENOMEM; }
    memcpy(X, pt->x, sizeof pt->x);
    memcpy(X + FV_D, pt->y, sizeof pt->y);
    c->s0 = cfg->seed + 1000000UL * (unsigned long)(which + 1);
    int err = RK_OK;
    size_t got = 0;
    for (unsigned long t = 0; got < n; t++) {
        rk_attn_config ac = {
            .kind = RK_PERFORMER, .n_q = 1, .n_kv = 1, .d = FV_D, .d_v = 1, .n_features = m,
            .kernel = kern, .scale = 1.0, .seed = c->s0 + t, .nthreads = 1,
            .proj = which == FC_POS_ORT && feat != THEORY_FEAT_NOORTH ? RK_PROJ_ORTHOGONAL
                                                                       : RK_PROJ_IID,
        };
        rk_attn *p = NULL;
        if ((err = rk_attn_create(&p, &ac))) break;
        rk_matd xv = rk_matd_view(X, 2, FV_D, FV_D), fv = rk_matd_view(phi, 2, F, F);
        err = rk_attn_features_d(p, &xv, NULL, &fv);
        rk_attn_destroy(p);
        if (err) break;
        c->s1 = c->s0 + t;
        for (size_t r = 0; r < F; r++) {
            if (feat == THEORY_FEAT_BIAS) { phi[r] *= 1.1; phi[F + r] *= 1.1; }
            if (feat == THEORY_FEAT_HALF) {
                double s = (r % m) % 2 ? 0.0 : sqrt(2.0);
                phi[r] *= s;
                phi[F + r] *= s;
            }
        }
        for (size_t g = 0; g < FV_K && got < n; g++) {
            double s = 0.0;
            for (size_t r = g * FV_M; r < (g + 1) * FV_M; r++) {
                s += phi[r] * phi[F + r];
                if (F == 2 * m) s += phi[m + r] * phi[F + m + r];
            }
            c->est[got++] = s * FV_K;
        }
    }
    free(phi);
    if (err) { free(c->est); c->est = NULL; return err; }
    c->valid = 1;
    c->seed = cfg->seed;
    c->n = n;
    c->feat = feat;
    *out = c;
    return RK_OK;
}

size_t theory_family = 0;
static size_t family(void);

/* Two-sided critical value of Student's t at the family-wise 99% level (Bonferroni). */
static double tcrit(size_t n)
{
    return gsl_cdf_tdist_Qinv(0.01 / (2.0 * (double)family()), (double)n - 1.0);
}

static const char *fv_setup(char *buf, size_t len, const fv_point *pt, const fv_cache *c)
{
    if (c)
        setf(buf, len, "|x| = |y| = %.2g at 60 deg, |x+y|^2 = %.3f, SM = %.4f, d = M = %d, plan seeds "
             "%lu..%lu", FV_NORM, pt->z2, pt->sm, FV_D, c->s0, c->s1);
    else
        setf(buf, len, "|x| = |y| = %.2g at 60 deg, |x+y|^2 = %.3f, SM = %.4f, d = M = %d, plan seeds "
             "S + 1e6 k + t for case k = 1..4", FV_NORM, pt->z2, pt->sm, FV_D);
    return buf;
}

static int chk_fv_unbiased(const theory_config *cfg, theory_result *res)
{
    fv_point pt;
    if (fv_point_get(cfg, &pt)) return RK_ENOMEM;
    double worst = 0.0;
    char det[256] = "";
    size_t len = 0;
    fv_cache *c = NULL;
    for (int w = 0; w < FC_N; w++) {
        int err = fv_samples(cfg, w, &pt, &c);
        if (err) return err;
        double mean = gsl_stats_mean(c->est, 1, c->n), sd = gsl_stats_sd(c->est, 1, c->n);
        double z = (mean - pt.sm) / (sd / sqrt((double)c->n));
        if (!(fabs(z) <= worst)) worst = fabs(z);
        if (len < sizeof det)
            len += (size_t)snprintf(det + len, sizeof det - len, "%s%s z=%+.2f", w ? "; " : "",
                                    fc_name[w], z);
    }
    res->equation = "Lemma 1";
    res->prec = "f64";
    char su[160];
    setf(res->what, sizeof res->what, "unbiased: E phi(x).phi(y) = exp(x.y); worst |mean - SM|/(sd/sqrt N) "
         "over positive iid/orthogonal, trig, hyperbolic; N = %zu estimates each; %s", cfg->trials,
         fv_setup(su, sizeof su, &pt, NULL));
    res->measured = worst;
    res->cmp = THEORY_LE;
    res->tol = tcrit(cfg->trials);
    setf(res->detail, sizeof res->detail, "%s", det);
    setf(res->why, sizeof res->why, "Student t quantile at a 99%% family-wise level, Bonferroni over "
         "the %zu statistical tests of the run: a correct map fails with probability <= 1%%",
         family());
    return RK_OK;
}

/* Lemma 2 closed forms (PAPER.md section 6), iid projections. */
static double fv_pred(int which, const fv_point *p)
{
    double pos = exp(p->z2) * p->sm * p->sm * (1 - exp(-p->z2)) / FV_M;
    if (which == FC_TRIG) return exp(p->z2) / (p->sm * p->sm) * pow(1 - exp(-p->w2), 2) / (2.0 * FV_M);
    if (which == FC_HYP) return 0.5 * (1 - exp(-p->z2)) * pos;
    return pos;
}

static int fv_mse(const theory_config *cfg, int which, fv_point *pt, fv_cache **c, double *mse,
                  double *se)
{
    int err = fv_point_get(cfg, pt);
    if (!err) err = fv_samples(cfg, which, pt, c);
    if (err) return err;
    size_t n = (*c)->n;
    double *e2 = malloc(n * sizeof *e2);
    if (!e2) return RK_ENOMEM;
    for (size_t t = 0; t < n; t++) e2[t] = ((*c)->est[t] - pt->sm) * ((*c)->est[t] - pt->sm);
    *mse = gsl_stats_mean(e2, 1, n);
    *se = gsl_stats_sd(e2, 1, n) / sqrt((double)n);
    free(e2);
    return RK_OK;
}

static int fv_mse_check(const theory_config *cfg, theory_result *res, int which)
{
    fv_point pt;
    fv_cache *c;
    double mse, se;
    int err = fv_mse(cfg, which, &pt, &c, &mse, &se);
    if (err) return err;
    double pred = fv_pred(which, &pt), t = tcrit(c->n);
    static const char *const formula[FC_N] = {
        "(1/M) e^{|x+y|^2} SM^2 (1 - e^{-|x+y|^2})", "",
        "(1/2M) e^{|x+y|^2} SM^-2 (1 - e^{-|x-y|^2})^2", "(1/2)(1 - e^{-|x+y|^2}) MSE+" };
    res->equation = "Lemma 2";
    res->prec = "f64";
    char su[160];
    setf(res->what, sizeof res->what, "%s features: measured MSE / %s, N = %zu; %s", fc_name[which],
         formula[which], c->n, fv_setup(su, sizeof su, &pt, c));
    res->measured = mse / pred;
    res->cmp = THEORY_NEAR1;
    res->tol = t * se / pred;
    setf(res->detail, sizeof res->detail, "MSE %.5g, predicted %.5g, CI [%.4f, %.4f] x predicted",
         mse, pred, (mse - t * se) / pred, (mse + t * se) / pred);
    setf(res->why, sizeof res->why, "CI of the mean squared error (t x sd/sqrt N) at a 99%% family-wise "
         "level (Bonferroni, %zu tests) must contain 1; norms 0.5 keep the error's 4th moment, "
         "~e^{4|x+y|^2}, small so the CI is reliable", family());
    return RK_OK;
}
static int chk_fv_pos(const theory_config *c, theory_result *r) { return fv_mse_check(c, r, FC_POS_IID); }
static int chk_fv_trig(const theory_config *c, theory_result *r) { return fv_mse_check(c, r, FC_TRIG); }
static int chk_fv_hyp(const theory_config *c, theory_result *r) { return fv_mse_check(c, r, FC_HYP); }

/* Theorem 2: MSE_ort <= MSE_iid - (1 - 1/M) 2/(d+2) (SM - exp(-(|x|^2+|y|^2)/2))^2. */
static int chk_fv_ort_bound(const theory_config *cfg, theory_result *res)
{
    fv_point pt;
    fv_cache *c;
    double mse, se;
    int err = fv_mse(cfg, FC_POS_ORT, &pt, &c, &mse, &se);
    if (err) return err;
    double b = fv_pred(FC_POS_IID, &pt) - (1.0 - 1.0 / FV_M) * 2.0 / (FV_D + 2.0) *
                                              (pt.sm - pt.lam) * (pt.sm - pt.lam);
    double t = tcrit(c->n);
    res->equation = "Theorem 2";
    res->prec = "f64";
    char su[160];
    setf(res->what, sizeof res->what, "orthogonal positive features: MSE_ort / (MSE_iid - (1-1/M) "
         "2/(d+2) (SM - e^{-(|x|^2+|y|^2)/2})^2), N = %zu; %s", c->n, fv_setup(su, sizeof su, &pt, c));
    res->measured = mse / b;
    res->cmp = THEORY_LE;
    res->tol = 1.0 + t * se / b;
    setf(res->detail, sizeof res->detail, "MSE_ort %.5g, bound %.5g, CI [%.4f, %.4f] x bound", mse, b,
         (mse - t * se) / b, (mse + t * se) / b);
    setf(res->why, sizeof res->why, "fails only if MSE_ort is significantly above the bound: the "
         "lower CI end (99%% family-wise, %zu tests) must be <= 1. PAPER.md s. 6 writes SM^2 for "
         "(SM - e^{-..})^2; SM^2 would make the bound negative for small norms", family());
    return RK_OK;
}

static int chk_fv_ort_gain(const theory_config *cfg, theory_result *res)
{
    fv_point pt;
    fv_cache *c;
    double mse, se;
    int err = fv_mse(cfg, FC_POS_ORT, &pt, &c, &mse, &se);
    if (err) return err;
    double iid = fv_pred(FC_POS_IID, &pt), t = tcrit(c->n);
    res->equation = "Theorem 2";
    res->prec = "f64";
    char su[160];
    setf(res->what, sizeof res->what, "orthogonal features lower the MSE: MSE_ort / MSE_iid (Lemma 2), "
         "N = %zu; %s", c->n, fv_setup(su, sizeof su, &pt, c));
    res->measured = mse / iid;
    res->cmp = THEORY_LE;
    res->tol = 1.0 - t * se / iid;
    setf(res->detail, sizeof res->detail, "MSE_ort %.5g vs MSE_iid %.5g; upper CI end %.4f", mse, iid,
         (mse + t * se) / iid);
    setf(res->why, sizeof res->why, "the gain must be significant: the upper CI end of MSE_ort (99%% "
         "family-wise, %zu tests) must be below Lemma 2's iid MSE; power: the gain is ~20%% at "
         "|x+y|^2 = 3/4, the CI half-width ~4%% at N = 20000 (0 misses in 300 seeds at N >= 10000)",
         family());
    return RK_OK;
}

/* ---- registry, running, output -------------------------------------------------------------- */

const theory_check theory_checks[] = {
    { "rel-f64-small",   chk_rel_small,    0 },
    { "rel-f64",         chk_rel_large,    0 },
    { "rel-f32",         chk_rel_f32,      0 },
    { "matrix",          chk_matrix,       0 },
    { "orth",            chk_orth,         0 },
    { "norm-f64",        chk_norm_d,       0 },
    { "norm-f32",        chk_norm_f,       0 },
    { "complex",         chk_complex,      0 },
    { "abel",            chk_abel,         0 },
    { "bound",           chk_bound,        0 },
    { "layout-f64",      chk_layout_d,     0 },
    { "layout-f32",      chk_layout_f,     0 },
    { "eq19-shift",      chk_e19_shift,    0 },
    { "eq19-qk-shift",   chk_e19_qk,       0 },
    { "eq19-den",        chk_e19_den,      0 },
    { "eq19-linear-f64", chk_e19_lin_d,    0 },
    { "eq19-linear-f32", chk_e19_lin_f,    0 },
    { "favor-unbiased",  chk_fv_unbiased,  FC_N },
    { "favor-mse-pos",   chk_fv_pos,       1 },
    { "favor-mse-trig",  chk_fv_trig,      1 },
    { "favor-mse-hyp",   chk_fv_hyp,       1 },
    { "favor-ort-bound", chk_fv_ort_bound, 1 },
    { "favor-ort-gain",  chk_fv_ort_gain,  1 },
};
const size_t theory_ncheck = sizeof theory_checks / sizeof theory_checks[0];

static size_t family(void)
{
    if (theory_family) return theory_family;
    size_t n = 0;
    for (size_t i = 0; i < theory_ncheck; i++) n += (size_t)theory_checks[i].statistical;
    return n;
}

int theory_find(const char *id)
{
    for (size_t i = 0; i < theory_ncheck; i++)
        if (strcmp(theory_checks[i].id, id) == 0) return (int)i;
    return -1;
}

int theory_run(size_t i, const theory_config *cfg, theory_result *res)
{
    memset(res, 0, sizeof *res);
    res->id = theory_checks[i].id;
    res->violations = -1;
    res->equation = res->prec = "";
    int err = theory_checks[i].fn(cfg, res);
    if (err) return err;
    double m = res->measured, t = res->tol;
    switch (res->cmp) {
    case THEORY_LE:    res->pass = m <= t; break;
    case THEORY_GE:    res->pass = m >= t; break;
    case THEORY_GT:    res->pass = m > t; break;
    case THEORY_NEAR1: res->pass = fabs(m - 1.0) <= t; break;
    default:           res->pass = 1; break;
    }
    if (res->violations > 0) res->pass = 0;
    return RK_OK;
}

const char *theory_cmp_str(theory_cmp c)
{
    switch (c) {
    case THEORY_LE:    return "<=";
    case THEORY_GE:    return ">=";
    case THEORY_GT:    return ">";
    case THEORY_NEAR1: return "1+-";
    default:           return "";
    }
}

static const char *result_str(const theory_result *r)
{
    return r->cmp == THEORY_INFO ? "INFO" : r->pass ? "PASS" : "FAIL";
}

void theory_print_header(FILE *f)
{
    fprintf(f, "%3s  %-6s %-16s %-4s %11s %-3s %-10s  %s\n", "#", "result", "equation", "prec",
            "measured", "", "tolerance", "check: what measured [details] (why this tolerance)");
}

void theory_print_row(FILE *f, size_t n, const theory_result *r)
{
    char tol[32] = "", viol[48] = "";
    if (r->cmp != THEORY_INFO) snprintf(tol, sizeof tol, "%.3g", r->tol);
    if (r->violations >= 0) snprintf(viol, sizeof viol, "; violations %ld", r->violations);
    fprintf(f, "%3zu  %-6s %-16s %-4s %11.4g %-3s %-10s  %s: %s [%s%s] (%s)\n", n, result_str(r),
            r->equation, r->prec, r->measured, theory_cmp_str(r->cmp), tol, r->id, r->what,
            r->detail, viol, r->why);
}

static void tsv_field(FILE *f, const char *s, int last)
{
    for (; *s; s++) fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, f);
    fputc(last ? '\n' : '\t', f);
}

void theory_tsv_header(FILE *f)
{
    fputs("id\tequation\tprecision\twhat\tmeasured\tcmp\ttolerance\tviolations\tdetail\twhy\t"
          "result\n", f);
}

void theory_tsv_row(FILE *f, const theory_result *r)
{
    char num[64];
    tsv_field(f, r->id, 0);
    tsv_field(f, r->equation, 0);
    tsv_field(f, r->prec, 0);
    tsv_field(f, r->what, 0);
    snprintf(num, sizeof num, "%.6g", r->measured);
    tsv_field(f, num, 0);
    tsv_field(f, theory_cmp_str(r->cmp), 0);
    if (r->cmp == THEORY_INFO) num[0] = '\0';
    else snprintf(num, sizeof num, "%.6g", r->tol);
    tsv_field(f, num, 0);
    if (r->violations >= 0) snprintf(num, sizeof num, "%ld", r->violations);
    else num[0] = '\0';
    tsv_field(f, num, 0);
    tsv_field(f, r->detail, 0);
    tsv_field(f, r->why, 0);
    tsv_field(f, result_str(r), 1);
}
