/* RoPE module: rk_rope_* against the explicit-matrix reference (tests/ref_rope.c), the
 * paper's properties (relative position, norms, inverse, layouts), docs/theory.md#regression-vectors
 * regression vectors, the scalings, the accuracy of positions outside the cos/sin table
 * against the direct formula, bit-exactness (threads, pos0 vs explicit positions, mirrored
 * positions, SIMD vs scalar) and every error path. */
#include "check.h"
#include "ref_rope.h"
#include "rk_internal.h"     /* rk__alloc_fail_after */

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gsl/gsl_errno.h>

#define U32 (FLT_EPSILON / 2)   /* float unit roundoff, 2^-24 */
#define U64 (DBL_EPSILON / 2)   /* double unit roundoff, 2^-53 */

/* ---------------------------------------------------------------------------------------- */
/* helpers                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static rk_rope *mk(const rk_rope_config *c)
{
    rk_rope *r = NULL;
    assert_rk_ok(rk_rope_create(&r, c));
    assert_non_null(r);
    return r;
}

/* Same values bit for bit over the cols of two views of one shape. */
static int same_bits_f(const rk_mat *a, const rk_mat *b)
{
    for (size_t i = 0; i < a->rows; i++)
        if (memcmp(a->data + i * a->ld, b->data + i * b->ld, a->cols * sizeof(float))) return 0;
    return 1;
}
static int same_bits_d(const rk_matd *a, const rk_matd *b)
{
    for (size_t i = 0; i < a->rows; i++)
        if (memcmp(a->data + i * a->ld, b->data + i * b->ld, a->cols * sizeof(double))) return 0;
    return 1;
}

static rk_mat copy_f(const rk_mat *a)
{
    rk_mat m = rk_test_mat(a->rows, a->cols, a->ld);
    for (size_t i = 0; i < a->rows; i++)
        memcpy(m.data + i * a->ld, a->data + i * a->ld, a->cols * sizeof(float));
    return m;
}
static rk_matd copy_d(const rk_matd *a)
{
    rk_matd m = rk_test_matd(a->rows, a->cols, a->ld);
    for (size_t i = 0; i < a->rows; i++)
        memcpy(m.data + i * a->ld, a->data + i * a->ld, a->cols * sizeof(double));
    return m;
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* The cos/sin a plan applies at each position, read off the library: (1, 0) pairs give
 * (1 c - 0 s', 0 c + 1 s') = (c, s') exactly, s' = the sine as applied (negated for the
 * inverse). Interleaved plans with rotary_dim = dim only. c, s: n * r/2 values, row-major. */
static void plan_cs_d(const rk_rope *r, const int64_t *pos, size_t n, int inv, double *c,
                      double *s)
{
    size_t d = rk_rope_get_config(r)->dim, h = d / 2;
    rk_matd x = rk_test_matd(n, d, d), y = rk_test_matd(n, d, d);
    for (size_t t = 0; t < n; t++)
        for (size_t i = 0; i < h; i++) x.data[t * d + 2 * i] = 1.0;
    assert_rk_ok(rk_rope_apply_d(r, &x, &y, 0, pos, inv));
    for (size_t t = 0; t < n; t++)
        for (size_t i = 0; i < h; i++) {
            c[t * h + i] = y.data[t * d + 2 * i];
            s[t * h + i] = y.data[t * d + 2 * i + 1];
        }
    rk_test_freed(&x); rk_test_freed(&y);
}
static void plan_cs_f(const rk_rope *r, const int64_t *pos, size_t n, int inv, float *c,
                      float *s)
{
    size_t d = rk_rope_get_config(r)->dim, h = d / 2;
    rk_mat x = rk_test_mat(n, d, d), y = rk_test_mat(n, d, d);
    for (size_t t = 0; t < n; t++)
        for (size_t i = 0; i < h; i++) x.data[t * d + 2 * i] = 1.0f;
    assert_rk_ok(rk_rope_apply(r, &x, &y, 0, pos, inv));
    for (size_t t = 0; t < n; t++)
        for (size_t i = 0; i < h; i++) {
            c[t * h + i] = y.data[t * d + 2 * i];
            s[t * h + i] = y.data[t * d + 2 * i + 1];
        }
    rk_test_free(&x); rk_test_free(&y);
}

/* The direct formula (what fills the table): angle p theta formed in double, cos/sin, times
 * mscale (divided by it for the inverse); s as applied (negated for the inverse). */
static void direct_cs(double p, double theta, double ms, int inv, double *c, double *s)
{
    double a = p * theta, cv = cos(a), sv = sin(a);
    if (inv) { cv = cv / ms; sv = sv / ms; }
    else     { cv = cv * ms; sv = sv * ms; }
    *c = cv;
    *s = inv ? -sv : sv;
}

/* Gap from x to the next float away from zero: one float ulp at |x|. */
static double ulp32(double x)
{
    float a = fabsf((float)x);
    return (double)nextafterf(a, INFINITY) - (double)a;
}

/* ---------------------------------------------------------------------------------------- */
/* against the reference on awkward sizes                                                   */
/* ---------------------------------------------------------------------------------------- */

/* Both paths, forward and inverse, out of place and in place, vs ref_rope_apply. maxpos is the
 * largest |position| used: the angle pos * theta carries ~maxpos * 2^-53 absolute error (the
 * reference computes theta its own way, 1 ulp apart), hence the position term of atol. The
 * float tolerance: each output is a*c - b*s with c, s rounded to float and 3 float roundings,
 * so |err| <= ~4u (|a| + |b|) * mscale <= 4u * 10 * 1.25 for N(0,1) data: 4e-6 covers it. */
static void check_case(const rk_rope_config *cfg, size_t heads, size_t rows, size_t pad,
                       int64_t pos0, const int64_t *pos, double maxpos, gsl_rng *rng)
{
    rk_rope *r = mk(cfg);
    size_t cols = heads * cfg->dim, ld = cols + pad;
    double atol_d = 1e-13 + 4e-15 * maxpos, atol_f = 4e-6;

    for (int inv = 0; inv < 2; inv++) {
        /* double path */
        rk_matd x = rk_test_randnd(rng, rows, cols, ld, 1.0);
        rk_matd want = rk_test_matd(rows, cols, ld + 1);
        ref_rope_apply(cfg, &x, &want, pos0, pos, inv);
        rk_matd y = rk_test_matd(rows, cols, ld + 2);
        assert_rk_ok(rk_rope_apply_d(r, &x, &y, pos0, pos, inv));
        assert_matd_close(&y, &want, 1e-12, atol_d);
        /* output padding is never written */
        for (size_t i = 0; i < rows; i++)
            for (size_t j = cols; j < ld + 2; j++) assert_true(isnan(y.data[i * y.ld + j]));
        rk_matd z = copy_d(&x);
        assert_rk_ok(rk_rope_apply_d(r, &z, &z, pos0, pos, inv));
        assert_true(same_bits_d(&z, &y));              /* in place == out of place */

        /* float path: the reference sees exactly the float inputs */
        rk_mat xf = rk_test_mat(rows, cols, ld);
        rk_test_d2f(&x, &xf);
        rk_test_f2d(&xf, &x);
        rk_mat keep = copy_f(&xf);
        ref_rope_apply(cfg, &x, &want, pos0, pos, inv);
        rk_mat yf = rk_test_mat(rows, cols, ld + 3);
        assert_rk_ok(rk_rope_apply(r, &xf, &yf, pos0, pos, inv));
        assert_mat_close(&yf, &want, 1e-6, atol_f);
        assert_true(same_bits_f(&xf, &keep));          /* input untouched */
        rk_mat zf = copy_f(&xf);
        assert_rk_ok(rk_rope_apply(r, &zf, &zf, pos0, pos, inv));
        assert_true(same_bits_f(&zf, &yf));

        rk_test_freed(&x); rk_test_freed(&want); rk_test_freed(&y); rk_test_freed(&z);
        rk_test_free(&xf); rk_test_free(&keep); rk_test_free(&yf); rk_test_free(&zf);
    }
    rk_rope_destroy(r);
}

/* Per-pair arrays for the longrope / freq_factors / freqs cases: up to 100 pairs. */
static double short_f[100], long_f[100], ffac[100], fixed[100];
static void fill_arrays(void)
{
    for (int i = 0; i < 100; i++) {
        short_f[i] = 1.0 + 0.0625 * i;
        long_f[i] = 1.0 + 0.375 * i * i / 7.0;
        ffac[i] = 0.75 + (double)((i * 37) % 11) / 8.0;
        fixed[i] = i % 5 == 4 ? 0.0 : 1.0 / (1.0 + 0.3 * i);      /* zeros: pairs that stay */
    }
}

/* Every scaling, one config tweak each (index sc): */
enum { N_SCAL = 11 };
static rk_rope_config scaled(rk_rope_config cfg, int sc)
{
    switch (sc) {
    case 0: break;                                                      /* none */
    case 1: cfg.scaling = RK_SCALE_LINEAR; cfg.factor = 2.5; break;
    case 2: cfg.scaling = RK_SCALE_NTK; cfg.factor = 4.0; break;
    case 3: cfg.scaling = RK_SCALE_YARN; cfg.factor = 8.0; cfg.orig_ctx = 256.0; break;
    case 4: cfg.scaling = RK_SCALE_YARN_PAPER; cfg.factor = 8.0; cfg.orig_ctx = 256.0; break;
    case 5: cfg.scaling = RK_SCALE_DYNAMIC; cfg.factor = 3.0; cfg.max_pos = 512.0;
            cfg.seq_len = 2000; break;                                  /* length past M */
    case 6: cfg.scaling = RK_SCALE_LLAMA3; cfg.factor = 8.0; cfg.orig_ctx = 200.0; break;
    case 7: cfg.scaling = RK_SCALE_LONGROPE; cfg.short_factor = short_f;
            cfg.long_factor = long_f; cfg.max_pos = 8192.0; cfg.orig_ctx = 1024.0;
            cfg.seq_len = 1025; break;                                  /* long factors */
    case 8: cfg.scaling = RK_SCALE_YARN; cfg.factor = 0.0; cfg.max_pos = 2048.0;
            cfg.orig_ctx = 512.0; cfg.no_truncate = 1; cfg.mscale = 1.0;
            cfg.mscale_all_dim = 0.5; break;                            /* DeepSeek-style */
    case 9: cfg.freq_factors = ffac; cfg.scaling = RK_SCALE_LINEAR; cfg.factor = 1.5; break;
    case 10: cfg.freqs = fixed; cfg.attn_factor = 1.25; break;
    }
    return cfg;
}

static void test_vs_reference(void **state)
{
    (void)state;
    fill_arrays();
    gsl_rng *rng = rk_test_rng(2385);
    /* dim, rotary_dim, heads, rows, ld padding, table_len */
    static const struct { size_t dim, rd, heads, rows, pad, tlen; } sz[] = {
        { 16, 0, 3, 7, 3, 0 },      /* several heads, padded ld                           */
        { 10, 6, 2, 5, 1, 0 },      /* partial rotary, odd pair count 3                    */
        { 2, 0, 1, 3, 0, 0 },       /* one pair                                            */
        { 70, 70, 2, 9, 2, 5 },     /* 35 pairs: SIMD body + tail; tiny table              */
        { 128, 96, 2, 4, 0, 0 },    /* GPT-NeoX-like partial rotary                        */
        { 200, 160, 1, 3, 1, 2 },   /* 80 pairs: more than one direct-path chunk           */
    };
    for (size_t c = 0; c < sizeof sz / sizeof sz[0]; c++)
        for (int st = 0; st < 2; st++)
            for (int sc = 0; sc < N_SCAL; sc++) {
                size_t r = sz[c].rd ? sz[c].rd : sz[c].dim;
                rk_rope_config cfg = { .dim = sz[c].dim, .rotary_dim = sz[c].rd,
                                       .style = (rk_rope_style)st, .table_len = sz[c].tlen };
                cfg = scaled(cfg, sc);
                if ((cfg.scaling == RK_SCALE_NTK || cfg.scaling == RK_SCALE_DYNAMIC) && r == 2)
                    continue;                                   /* invalid, see errors */
                if (sc == 0 && c == 1) cfg.base = 500.0;              /* another base */
                if (sc == 1 && c == 0) cfg.attn_factor = 0.75;        /* explicit factor */
                size_t n = sz[c].rows;
                /* explicit positions: negative, in the table, beyond it, near 1e6 */
                int64_t pos[16];
                for (size_t t = 0; t < n; t++)
                    pos[t] = (int64_t)((t * 37) % 11) - 5 + (t % 3 == 2 ? 1000003 : 0) +
                             (t % 4 == 1 ? 4093 : 0);
                check_case(&cfg, sz[c].heads, n, sz[c].pad, 0, NULL, (double)n, rng);
                check_case(&cfg, sz[c].heads, n, sz[c].pad, -3, NULL, 3.0 + (double)n, rng);
                check_case(&cfg, sz[c].heads, n, sz[c].pad, 4092, NULL, 4092.0 + (double)n, rng);
                check_case(&cfg, sz[c].heads, n, sz[c].pad, 0, pos, 1.0e6 + 4200.0, rng);
            }
    gsl_rng_free(rng);
}

/* ---------------------------------------------------------------------------------------- */
/* docs/theory.md#regression-vectors and a hand-worked d = 2 case                            */
/* ---------------------------------------------------------------------------------------- */

static void test_regression_vectors(void **state)
{
    (void)state;
    static const double inter[8] = { -1.2722325127, -1.8388649851, 1.6839286407, 4.7079065765,
                                     4.8177771675, 6.1472777035, 6.9759685360, 8.0209639685 };
    static const double half[8] = { -1.6955925369, 0.1375517383, 2.7886815998, 3.9759820360,
                                    -4.8088424749, 6.3230593481, 7.0868367369, 8.0119639820 };
    for (int st = 0; st < 2; st++) {
        rk_rope_config cfg = { .dim = 8, .style = (rk_rope_style)st };
        rk_rope *r = mk(&cfg);
        double x[8], y[8];
        float xf[8], yf[8];
        for (int j = 0; j < 8; j++) { x[j] = j + 1; xf[j] = (float)(j + 1); }
        rk_matd X = rk_matd_view(x, 1, 8, 8), Y = rk_matd_view(y, 1, 8, 8);
        assert_rk_ok(rk_rope_apply_d(r, &X, &Y, 3, NULL, 0));
        assert_allclose(y, st ? half : inter, 8, 0.0, 1e-9);
        double w[8];
        rk_matd W = rk_matd_view(w, 1, 8, 8);
        ref_rope_apply(&cfg, &X, &W, 3, NULL, 0);
        assert_allclose(w, st ? half : inter, 8, 0.0, 1e-9);
        rk_mat XF = rk_mat_view(xf, 1, 8, 8), YF = rk_mat_view(yf, 1, 8, 8);
        assert_rk_ok(rk_rope_apply(r, &XF, &YF, 3, NULL, 0));
        double yd[8];
        for (int j = 0; j < 8; j++) yd[j] = yf[j];
        assert_allclose(yd, st ? half : inter, 8, 1e-6, 1e-6);
        rk_rope_destroy(r);
    }
}

static void test_d2_by_hand(void **state)
{
    (void)state;
    /* d = 2: theta_0 = base^0 = 1 for any base; pos m rotates (a, b) by m radians.
     * cos 1 = 0.5403023058681398, sin 1 = 0.8414709848078965;
     * cos 2 = -0.4161468365471424, sin 2 = 0.9092974268256817. */
    rk_rope_config cfg = { .dim = 2, .base = 123.0 };
    rk_rope *r = mk(&cfg);
    assert_true(rk_rope_freqs(r)[0] == 1.0);
    double x[6] = { 2.385, -1.25, 2.385, -1.25, 2.385, -1.25 }, y[6];
    int64_t pos[3] = { 1, 2, -1 };
    rk_matd X = rk_matd_view(x, 3, 2, 2), Y = rk_matd_view(y, 3, 2, 2);
    assert_rk_ok(rk_rope_apply_d(r, &X, &Y, 0, pos, 0));
    const double c1 = 0.5403023058681398, s1 = 0.8414709848078965;
    const double c2 = -0.4161468365471424, s2 = 0.9092974268256817;
    const double want[6] = {
        2.385 * c1 + 1.25 * s1,  2.385 * s1 - 1.25 * c1,     /* (a c - b s, a s + b c) */
        2.385 * c2 + 1.25 * s2,  2.385 * s2 - 1.25 * c2,
        2.385 * c1 - 1.25 * s1, -2.385 * s1 - 1.25 * c1,     /* m = -1: sin flips */
    };
    assert_allclose(y, want, 6, 0.0, 4e-15);   /* a few ulps of |y| ~ 3 */
    rk_rope_destroy(r);
}

/* ---------------------------------------------------------------------------------------- */
/* properties                                                                               */
/* ---------------------------------------------------------------------------------------- */

static void test_relative_property(void **state)
{
    (void)state;
    /* docs/theory.md#regression-vectors: q = 1..8, k = 8..1, (R_5 q).(R_2 k) = 70.27903255028568 = (105, 102) case */
    rk_rope_config cfg = { .dim = 8 };
    rk_rope *r = mk(&cfg);
    double q[8], k[8], rq[8], rk[8];
    for (int j = 0; j < 8; j++) { q[j] = j + 1; k[j] = 8 - j; }
    rk_matd Q = rk_matd_view(q, 1, 8, 8), K = rk_matd_view(k, 1, 8, 8);
    rk_matd RQ = rk_matd_view(rq, 1, 8, 8), RK = rk_matd_view(rk, 1, 8, 8);
    assert_true(dot(q, k, 8) == 120.0);
    const int64_t mn[][2] = { { 5, 2 }, { 105, 102 }, { -95, -98 } };
    for (int c = 0; c < 3; c++) {
        assert_rk_ok(rk_rope_apply_d(r, &Q, &RQ, mn[c][0], NULL, 0));
        assert_rk_ok(rk_rope_apply_d(r, &K, &RK, mn[c][1], NULL, 0));
        double got = dot(rq, rk, 8), want = 70.27903255028568;
        assert_allclose(&got, &want, 1, 1e-12, 0.0);
    }
    rk_rope_destroy(r);

    /* random q, k, d = 128 (one rotation, both layouts and a yarn plan): the score depends
     * only on m - n. In double the shift by D moves the angle by D theta with ~D 2^-53
     * absolute error, so at D = 1e6 the tolerance is 1e-9 |q||k|.
     * In float near 1e6 (angles in double, cos/sin rounded to float): per pair the output
     * error is <= ~4u |(a, b)| (table rounding + 2 products + 1 add), so ||R~q - Rq|| <=
     * 4 sqrt(2) u ||q|| and the score error <= 2 * 5.7u ||q|| ||k|| ~ 11.4u; 16u (~1e-6) is
     * the bound checked, far below the ~1e-1 an angle formed in float at 1e6 would give. */
    gsl_rng *rng = rk_test_rng(77);
    for (int st = 0; st < 2; st++)
        for (int yarn = 0; yarn < 2; yarn++) {
            rk_rope_config c2 = { .dim = 128, .style = (rk_rope_style)st };
            if (yarn) { c2.scaling = RK_SCALE_YARN; c2.factor = 4.0; }
            rk_rope *r2 = mk(&c2);
            double ms = rk_rope_mscale(r2);
            rk_matd qd = rk_test_randnd(rng, 1, 128, 128, 1.0);
            rk_matd kd = rk_test_randnd(rng, 1, 128, 128, 1.0);
            rk_mat qf = rk_test_mat(1, 128, 128), kf = rk_test_mat(1, 128, 128);
            rk_test_d2f(&qd, &qf); rk_test_f2d(&qf, &qd);
            rk_test_d2f(&kd, &kf); rk_test_f2d(&kf, &kd);
            double nq = sqrt(dot(qd.data, qd.data, 128)), nk = sqrt(dot(kd.data, kd.data, 128));
            double scale = ms * ms * nq * nk;
            rk_matd a = rk_test_matd(1, 128, 128), b = rk_test_matd(1, 128, 128);
            ref_rope_apply(&c2, &qd, &a, 5, NULL, 0);
            ref_rope_apply(&c2, &kd, &b, 2, NULL, 0);
            double want = dot(a.data, b.data, 128);
            const int64_t shifts[] = { 0, 37, -1000, 1000000, 999999 };
            for (int s = 0; s < 5; s++) {
                int64_t D = shifts[s];
                assert_rk_ok(rk_rope_apply_d(r2, &qd, &a, 5 + D, NULL, 0));
                assert_rk_ok(rk_rope_apply_d(r2, &kd, &b, 2 + D, NULL, 0));
                double got = dot(a.data, b.data, 128);
                assert_allclose(&got, &want, 1, 0.0, 1e-9 * scale);
                rk_mat af = rk_test_mat(1, 128, 128), bf = rk_test_mat(1, 128, 128);
                assert_rk_ok(rk_rope_apply(r2, &qf, &af, 5 + D, NULL, 0));
                assert_rk_ok(rk_rope_apply(r2, &kf, &bf, 2 + D, NULL, 0));
                double gf = 0.0;
                for (int j = 0; j < 128; j++) gf += (double)af.data[j] * (double)bf.data[j];
                assert_allclose(&gf, &want, 1, 0.0, 16.0 * U32 * scale);
                rk_test_free(&af); rk_test_free(&bf);
            }
            rk_test_freed(&qd); rk_test_freed(&kd); rk_test_freed(&a); rk_test_freed(&b);
            rk_test_free(&qf); rk_test_free(&kf);
            rk_rope_destroy(r2);
        }
    gsl_rng_free(rng);
}

/* R is orthogonal on the rotated channels (times mscale), identity on the rest. */
static void test_norm_preserved(void **state)
{
    (void)state;
    gsl_rng *rng = rk_test_rng(31);
    for (int yarn = 0; yarn < 2; yarn++) {
        rk_rope_config cfg = { .dim = 24, .rotary_dim = 18, .style = RK_ROPE_HALF };
        if (yarn) { cfg.scaling = RK_SCALE_YARN; cfg.factor = 16.0; cfg.orig_ctx = 256.0; }
        rk_rope *r = mk(&cfg);
        double ms = rk_rope_mscale(r);
        size_t n = 33, heads = 2;
        rk_matd x = rk_test_randnd(rng, n, heads * 24, heads * 24 + 1, 1.0);
        rk_matd y = rk_test_matd(n, heads * 24, heads * 24);
        int64_t pos[33];
        for (size_t t = 0; t < n; t++) pos[t] = (int64_t)t * 7919 * (t % 2 ? -1 : 1);
        assert_rk_ok(rk_rope_apply_d(r, &x, &y, 0, pos, 0));
        for (size_t t = 0; t < n; t++)
            for (size_t hd = 0; hd < heads; hd++) {
                const double *xi = x.data + t * x.ld + hd * 24, *yi = y.data + t * y.ld + hd * 24;
                double nx = sqrt(dot(xi, xi, 18)) * ms, ny = sqrt(dot(yi, yi, 18));
                assert_allclose(&ny, &nx, 1, 1e-14, 0.0);
                assert_true(memcmp(xi + 18, yi + 18, 6 * sizeof(double)) == 0);
            }
        rk_test_freed(&x); rk_test_freed(&y);
        rk_rope_destroy(r);
    }
    gsl_rng_free(rng);
}

/* apply then inverse gives x back: R^T R = I, and (R/a)(aR) for a yarn attention factor. */
static void test_inverse(void **state)
{
    (void)state;
    gsl_rng *rng = rk_test_rng(4242);
    static const rk_rope_scaling scal[] = { RK_SCALE_NONE, RK_SCALE_LINEAR, RK_SCALE_NTK,
                                            RK_SCALE_YARN };
    for (int st = 0; st < 2; st++)
        for (int sc = 0; sc < 4; sc++) {
            rk_rope_config cfg = { .dim = 36, .rotary_dim = 34, .style = (rk_rope_style)st,
                                   .scaling = scal[sc], .factor = 3.0, .table_len = 50 };
            if (sc == 1) cfg.attn_factor = 1.7;
            rk_rope *r = mk(&cfg);
            if (sc == 3) assert_true(rk_rope_mscale(r) > 1.1);
            size_t n = 40, cols = 72;
            rk_matd x = rk_test_randnd(rng, n, cols, cols + 2, 1.0);
            rk_matd y = copy_d(&x);
            assert_rk_ok(rk_rope_apply_d(r, &y, &y, 20, NULL, 0));      /* crosses 50 */
            assert_true(rk_max_abs_diffd(&y, &x) > 0.1);
            assert_rk_ok(rk_rope_apply_d(r, &y, &y, 20, NULL, 1));
            assert_matd_close(&y, &x, 1e-13, 1e-13);
            rk_mat xf = rk_test_mat(n, cols, cols + 2);
            rk_test_d2f(&x, &xf);
            rk_test_f2d(&xf, &x);
            rk_mat yf = copy_f(&xf);
            assert_rk_ok(rk_rope_apply(r, &yf, &yf, 20, NULL, 0));
            assert_rk_ok(rk_rope_apply(r, &yf, &yf, 20, NULL, 1));
            assert_mat_close(&yf, &x, 1e-6, 2e-6);
            rk_test_freed(&x); rk_test_freed(&y); rk_test_free(&xf); rk_test_free(&yf);
            rk_rope_destroy(r);
        }
    gsl_rng_free(rng);
}

/* half-split(x[perm]) == interleaved(x)[perm], perm = (0,2,4,...,1,3,5,...) on the rotated
 * channels: the same operations on the same values, so the same bits, and the same scores. */
static void test_layout_permutation(void **state)
{
    (void)state;
    gsl_rng *rng = rk_test_rng(99);
    static const size_t dims[][2] = { { 16, 16 }, { 14, 12 }, { 40, 38 } };
    for (int c = 0; c < 3; c++) {
        size_t d = dims[c][0], rd = dims[c][1], n = 9;
        rk_rope_config ci = { .dim = d, .rotary_dim = rd, .style = RK_ROPE_INTERLEAVED,
                              .scaling = RK_SCALE_YARN, .factor = 4.0, .orig_ctx = 512.0 };
        rk_rope_config ch = ci;
        ch.style = RK_ROPE_HALF;
        rk_rope *ri = mk(&ci), *rh = mk(&ch);
        size_t perm[40];
        for (size_t j = 0; j < d; j++) perm[j] = j < rd / 2 ? 2 * j : j < rd ? 2 * (j - rd / 2) + 1 : j;
        rk_matd x = rk_test_randnd(rng, n, d, d, 1.0), xp = rk_test_matd(n, d, d);
        for (size_t t = 0; t < n; t++)
            for (size_t j = 0; j < d; j++) xp.data[t * d + j] = x.data[t * d + perm[j]];
        rk_matd y = rk_test_matd(n, d, d), yp = rk_test_matd(n, d, d);
        assert_rk_ok(rk_rope_apply_d(ri, &x, &y, 1000, NULL, 0));
        assert_rk_ok(rk_rope_apply_d(rh, &xp, &yp, 1000, NULL, 0));
        for (size_t t = 0; t < n; t++)
            for (size_t j = 0; j < d; j++)
                assert_true(memcmp(&yp.data[t * d + j], &y.data[t * d + perm[j]], sizeof(double)) == 0);
        /* scores between rows 0 and 5 agree */
        double s1 = dot(y.data, y.data + 5 * d, d), s2 = dot(yp.data, yp.data + 5 * d, d);
        assert_allclose(&s2, &s1, 1, 1e-14, 1e-14);
        /* float */
        rk_mat xf = rk_test_mat(n, d, d), xpf = rk_test_mat(n, d, d);
        rk_test_d2f(&x, &xf); rk_test_d2f(&xp, &xpf);
        rk_mat yf = rk_test_mat(n, d, d), ypf = rk_test_mat(n, d, d);
        assert_rk_ok(rk_rope_apply(ri, &xf, &yf, 1000, NULL, 0));
        assert_rk_ok(rk_rope_apply(rh, &xpf, &ypf, 1000, NULL, 0));
        for (size_t t = 0; t < n; t++)
            for (size_t j = 0; j < d; j++)
                assert_true(memcmp(&ypf.data[t * d + j], &yf.data[t * d + perm[j]], sizeof(float)) == 0);
        rk_test_freed(&x); rk_test_freed(&xp); rk_test_freed(&y); rk_test_freed(&yp);
        rk_test_free(&xf); rk_test_free(&xpf); rk_test_free(&yf); rk_test_free(&ypf);
        rk_rope_destroy(ri); rk_rope_destroy(rh);
    }
    gsl_rng_free(rng);
}

/* ---------------------------------------------------------------------------------------- */
/* bit-exactness                                                                            */
/* ---------------------------------------------------------------------------------------- */

/* A 3-row table and the default 4096-row one, positions on both sides of 3, negative ones and
 * large ones, forward and inverse, with an attention factor. For |p| < 3 both plans read their
 * table (its mirror for p < 0): the same bits. Beyond, the 3-row plan combines cos/sin of
 * a*3*theta with its table (combine_d in lib/rope.c) while the big one reads its table, i.e.
 * the direct formula: per cos/sin they differ by <= m [10u + 2 (u |p| theta)^2] (u = 2^-53,
 * m = mscale or 1/mscale). An output a c - b s carries <= 2u m (|a| + |b|) of its own
 * rounding per plan, so in double the two outputs differ by
 * <= (|a| + |b|) m [14u + 2 (u |p| theta_max)^2]. In float both plans use those double
 * cos/sin rounded to float, which agree but for rare rounding flips (one float ulp,
 * <= 2 U32 m), and each output carries <= 2 U32 m (|a| + |b|): <= (|a| + |b|) m 6 U32 apart,
 * and nearly all outputs are the same bits. */
static void test_table_vs_direct(void **state)
{
    (void)state;
    gsl_rng *rng = rk_test_rng(5);
    size_t nflip = 0, nall = 0;
    for (int st = 0; st < 2; st++) {
        rk_rope_config big = { .dim = 20, .rotary_dim = 20, .style = (rk_rope_style)st,
                               .scaling = RK_SCALE_YARN, .factor = 6.0, .orig_ctx = 100.0 };
        rk_rope_config small = big;
        small.table_len = 3;
        rk_rope *rb = mk(&big), *rs = mk(&small);
        double ms = rk_rope_mscale(rb), m = ms > 1.0 ? ms : 1.0 / ms, thmax = 0.0;
        for (size_t i = 0; i < 10; i++)
            thmax = fmax(thmax, rk_rope_freqs(rb)[i]);
        size_t n = 45, cols = 60;
        int64_t pos[45];
        for (size_t t = 0; t < n; t++) pos[t] = (int64_t)(t % 7) * 613 - 9;
        rk_matd x = rk_test_randnd(rng, n, cols, cols, 1.0);
        rk_mat xf = rk_test_mat(n, cols, cols);
        rk_test_d2f(&x, &xf);
        rk_test_f2d(&xf, &x);
        for (int inv = 0; inv < 2; inv++)
            for (int usepos = 0; usepos < 2; usepos++) {
                const int64_t *p = usepos ? pos : NULL;
                rk_matd a = rk_test_matd(n, cols, cols), b = rk_test_matd(n, cols, cols);
                assert_rk_ok(rk_rope_apply_d(rb, &x, &a, -4, p, inv));
                assert_rk_ok(rk_rope_apply_d(rs, &x, &b, -4, p, inv));
                rk_mat af = rk_test_mat(n, cols, cols), bf = rk_test_mat(n, cols, cols);
                assert_rk_ok(rk_rope_apply(rb, &xf, &af, -4, p, inv));
                assert_rk_ok(rk_rope_apply(rs, &xf, &bf, -4, p, inv));
                for (size_t t = 0; t < n; t++) {
                    int64_t pt = p ? p[t] : -4 + (int64_t)t;
                    double xmax = 0.0, ap = fabs((double)pt);
                    for (size_t j = 0; j < cols; j++) xmax = fmax(xmax, fabs(x.data[t * cols + j]));
                    double g = U64 * ap * thmax;
                    double tol_d = 2.0 * xmax * m * (14.0 * U64 + 2.0 * g * g);
                    double tol_f = 2.0 * xmax * m * 6.0 * U32;
                    for (size_t j = 0; j < cols; j++) {
                        size_t k = t * cols + j;
                        if (ap < 3.0) {
                            assert_true(memcmp(&a.data[k], &b.data[k], sizeof(double)) == 0);
                            assert_true(memcmp(&af.data[k], &bf.data[k], sizeof(float)) == 0);
                        }
                        assert_true(fabs(a.data[k] - b.data[k]) <= tol_d);
                        assert_true(fabs((double)af.data[k] - (double)bf.data[k]) <= tol_f);
                        nflip += af.data[k] != bf.data[k];
                        nall++;
                    }
                }
                rk_test_freed(&a); rk_test_freed(&b); rk_test_free(&af); rk_test_free(&bf);
            }
        /* pos0 + t and the explicit array are the same thing (the same decomposition), also
         * across negative, in-table and out-of-table positions and in double */
        for (size_t t = 0; t < n; t++) pos[t] = (int64_t)t - 20;
        rk_mat af = rk_test_mat(n, cols, cols), bf = rk_test_mat(n, cols, cols);
        rk_matd ad = rk_test_matd(n, cols, cols), bd = rk_test_matd(n, cols, cols);
        for (int inv = 0; inv < 2; inv++) {
            assert_rk_ok(rk_rope_apply(rs, &xf, &af, -20, NULL, inv));
            assert_rk_ok(rk_rope_apply(rs, &xf, &bf, 0, pos, inv));
            assert_true(same_bits_f(&af, &bf));
            assert_rk_ok(rk_rope_apply_d(rs, &x, &ad, -20, NULL, inv));
            assert_rk_ok(rk_rope_apply_d(rs, &x, &bd, 0, pos, inv));
            assert_true(same_bits_d(&ad, &bd));
        }
        rk_test_free(&af); rk_test_free(&bf); rk_test_freed(&ad); rk_test_freed(&bd);
        rk_test_freed(&x); rk_test_free(&xf);
        rk_rope_destroy(rb); rk_rope_destroy(rs);
    }
    assert_true(nflip * 1000 <= nall);     /* rounding flips are rare: <= 0.1 % of outputs */
    gsl_rng_free(rng);
}

/* Positions outside the table against the direct formula, cos/sin read off the library
 * (plan_cs_*): tables of 3, 7, 50 and 4096 rows, 300 pairs (more than one stack cache of 256),
 * an attention factor, forward and inverse; positions negative, around +-T, near +-1e6, in long
 * consecutive runs, scattered, and near 2^32 and 2^40.
 *   double: |c - c_direct|, |s - s_direct| <= m [10u + 2 (u |p| theta_i)^2] for |p| <= 2^32
 *           (combine_d in lib/rope.c: five ulps of 1, the angle's rounding included, up to
 *           |p| theta ~ 2^26), m u (2 |p| theta_i + 9) beyond (no rounding correction);
 *   float:  exactly the double values rounded to float (as the table is), hence within one
 *           float ulp (plus the double bound) of the direct formula rounded to float, and the
 *           same float for nearly all (|p| <= 2e6: <= 0.01 %);
 *   mirror: position -p gives (c, -s) of position p bit for bit;
 *   |p| < T: the direct formula's bits (a == 0: the table row itself, or its mirror). */
static void test_out_of_table_accuracy(void **state)
{
    (void)state;
    static const struct { size_t dim, tlen; rk_rope_scaling sc; double fac, af; } cf[] = {
        { 64, 4096, RK_SCALE_NONE, 0.0, 0.0 },
        { 64, 50, RK_SCALE_YARN, 8.0, 0.0 },       /* mscale = 0.1 ln 8 + 1 */
        { 40, 3, RK_SCALE_LINEAR, 2.5, 0.75 },
        { 600, 7, RK_SCALE_NONE, 0.0, 0.0 },       /* 300 pairs */
    };
    enum { NP = 160 };
    double worst = 0.0, worst_ulp1 = 0.0;
    size_t nflip = 0, nall = 0, nflip_big = 0, nall_big = 0;
    for (size_t k = 0; k < sizeof cf / sizeof cf[0]; k++) {
        rk_rope_config cfg = { .dim = cf[k].dim, .scaling = cf[k].sc, .factor = cf[k].fac,
                               .attn_factor = cf[k].af, .table_len = cf[k].tlen };
        rk_rope *r = mk(&cfg);
        const double *th = rk_rope_freqs(r);
        double ms = rk_rope_mscale(r);
        int64_t T = (int64_t)cf[k].tlen, pos[NP], neg[NP];
        size_t n = 0;
        for (int64_t q = -3; q <= 3; q++) pos[n++] = q;
        for (int64_t q = -2; q <= 2; q++) { pos[n++] = T + q; pos[n++] = -T + q; pos[n++] = 2 * T + q; }
        for (int64_t q = 0; q < 40; q++) pos[n++] = 999990 + q;            /* a run near 1e6 */
        for (int64_t q = 0; q < 20; q++) pos[n++] = -1000003 - q;          /* and below -1e6 */
        for (int64_t q = 0; q < 20; q++) pos[n++] = 4090 + 7 * q;
        uint64_t lcg = 2385;
        for (int q = 0; q < 40; q++) {
            lcg = lcg * 6364136223846793005u + 1442695040888963407u;
            pos[n++] = (int64_t)(lcg >> 43);                                 /* [0, 2^21) */
            if (q % 2) pos[n - 1] = -pos[n - 1];
        }
        for (int64_t q = 0; q < 8; q++) pos[n++] = ((int64_t)1 << 40) + q * 1001 - 4;
        for (int64_t q = -3; q <= 3; q++) pos[n++] = ((int64_t)1 << 32) + q;   /* corr ends */
        assert_true(n <= NP);
        for (size_t t = 0; t < n; t++) neg[t] = -pos[t];
        size_t h = cf[k].dim / 2;
        double *c = malloc(n * h * sizeof *c), *s = malloc(n * h * sizeof *s);
        double *cn = malloc(n * h * sizeof *c), *sn = malloc(n * h * sizeof *s);
        float *fc = malloc(n * h * sizeof *fc), *fs = malloc(n * h * sizeof *fs);
        float *fcn = malloc(n * h * sizeof *fc), *fsn = malloc(n * h * sizeof *fs);
        assert_true(c && s && cn && sn && fc && fs && fcn && fsn);
        for (int inv = 0; inv < 2; inv++) {
            double m = inv ? 1.0 / ms : ms;
            plan_cs_d(r, pos, n, inv, c, s);
            plan_cs_d(r, neg, n, inv, cn, sn);
            plan_cs_f(r, pos, n, inv, fc, fs);
            plan_cs_f(r, neg, n, inv, fcn, fsn);
            for (size_t t = 0; t < n; t++) {
                double ap = fabs((double)pos[t]);
                for (size_t i = 0; i < h; i++) {
                    size_t e = t * h + i;
                    double cd, sd;
                    direct_cs((double)pos[t], th[i], ms, inv, &cd, &sd);
                    double g = U64 * ap * th[i];
                    double bound = ap <= 4294967296.0 ? m * (10.0 * U64 + 2.0 * g * g)
                                                      : m * U64 * (2.0 * ap * th[i] + 9.0);
                    double err = fmax(fabs(c[e] - cd), fabs(s[e] - sd));
                    assert_true(err <= bound);
                    worst = fmax(worst, err / bound);
                    if (ap <= 2e6) worst_ulp1 = fmax(worst_ulp1, err / (m * 2.0 * U64));
                    if (ap < (double)T) assert_true(c[e] == cd && s[e] == sd);
                    /* float: the double values rounded */
                    assert_true(fc[e] == (float)c[e] && fs[e] == (float)s[e]);
                    float cdf = (float)cd, sdf = (float)sd;
                    assert_true(fabs((double)fc[e] - cdf) <= bound + ulp32(fmax(fabs(cd), fabs(c[e]))));
                    assert_true(fabs((double)fs[e] - sdf) <= bound + ulp32(fmax(fabs(sd), fabs(s[e]))));
                    if (ap <= 2e6) { nflip += (fc[e] != cdf) + (fs[e] != sdf); nall += 2; }
                    else { nflip_big += (fc[e] != cdf) + (fs[e] != sdf); nall_big += 2; }
                    /* mirror */
                    assert_true(memcmp(&cn[e], &c[e], sizeof(double)) == 0 && sn[e] == -s[e]);
                    assert_true(memcmp(&fcn[e], &fc[e], sizeof(float)) == 0 && fsn[e] == -fs[e]);
                }
            }
        }
        /* the extremes stay finite and on the circle of radius m */
        int64_t ext[4] = { INT64_MIN, INT64_MAX, INT64_MIN + 1, -((int64_t)1 << 62) };
        plan_cs_d(r, ext, 4, 0, c, s);
        for (size_t e = 0; e < 4 * h; e++)
            assert_true(fabs(hypot(c[e], s[e]) - ms) <= 8 * U64 * ms);
        free(c); free(s); free(cn); free(sn); free(fc); free(fs); free(fcn); free(fsn);
        rk_rope_destroy(r);
    }
    assert_true(nflip * 10000 <= nall);
    print_message("rope out of table vs the direct formula: worst %.3g of the bound"
                  " m [10u + 2 (u|p|theta)^2], worst %.2f ulp(1) x m for |p| <= 2e6;"
                  " float flips %zu / %zu (|p| <= 2e6), %zu / %zu (|p| ~ 2^32, 2^40)\n",
                  worst, worst_ulp1, nflip, nall, nflip_big, nall_big);
}

/* The float path equals a plain scalar float model bit for bit: cos/sin in double, rounded to
 * float, then o = a*c - b*s, b*c + a*s in float. The double cos/sin: in the table (positions
 * 0..9) the direct formula ((double)pos * theta_i, times mscale or divided by it for the
 * inverse); outside it the library's own double values (read off the double path, plan_cs_d;
 * test_out_of_table_accuracy bounds their distance to the direct formula). On an AVX2 machine
 * this proves the SIMD kernels (rotation and cos/sin combination) and the portable loops
 * agree; 37 pairs exercise both the vector body and the tail. */
static void test_float_bits_model(void **state)
{
    (void)state;
    gsl_rng *rng = rk_test_rng(11);
    for (int st = 0; st < 2; st++)
        for (int inv = 0; inv < 2; inv++) {
            rk_rope_config cfg = { .dim = 76, .rotary_dim = 74, .style = (rk_rope_style)st,
                                   .scaling = RK_SCALE_YARN, .factor = 2.0, .table_len = 10 };
            rk_rope *r = mk(&cfg);
            /* the same thetas and tables (r = 74), interleaved and no pass-through channels:
             * the double cos/sin of the library */
            rk_rope_config cfg2 = cfg;
            cfg2.dim = 74;
            cfg2.style = RK_ROPE_INTERLEAVED;
            rk_rope *r2 = mk(&cfg2);
            const double *th = rk_rope_freqs(r);
            double ms = rk_rope_mscale(r);
            size_t n = 20, h = 37, cols = 152;
            int64_t pos[20];
            for (size_t t = 0; t < n; t++) pos[t] = (int64_t)t - 5;
            double lc[20 * 37], ls[20 * 37];
            plan_cs_d(r2, pos, n, inv, lc, ls);
            rk_mat x = rk_test_randn(rng, n, cols, cols, 1.0), y = rk_test_mat(n, cols, cols);
            assert_rk_ok(rk_rope_apply(r, &x, &y, -5, NULL, inv));
            for (size_t t = 0; t < n; t++) {
                double p = (double)pos[t];
                for (size_t hd = 0; hd < 2; hd++) {
                    const float *xi = x.data + t * cols + hd * 76;
                    const float *yi = y.data + t * cols + hd * 76;
                    for (size_t i = 0; i < h; i++) {
                        double cd = cos(p * th[i]), sd = sin(p * th[i]);
                        cd = inv ? cd / ms : cd * ms;
                        sd = inv ? sd / ms : sd * ms;
                        float c = (float)cd, s = inv ? -(float)sd : (float)sd;
                        if (pos[t] >= 10) { c = (float)lc[t * h + i]; s = (float)ls[t * h + i]; }
                        size_t ia = st ? i : 2 * i, ib = st ? i + h : 2 * i + 1;
                        float a = xi[ia], b = xi[ib];
                        float oa = a * c - b * s, ob = b * c + a * s;
                        assert_true(memcmp(&oa, &yi[ia], sizeof oa) == 0);
                        assert_true(memcmp(&ob, &yi[ib], sizeof ob) == 0);
                    }
                    assert_true(memcmp(xi + 74, yi + 74, 2 * sizeof(float)) == 0);
                }
            }
            rk_test_free(&x); rk_test_free(&y);
            rk_rope_destroy(r); rk_rope_destroy(r2);
        }
    gsl_rng_free(rng);
}

/* Large enough to go parallel (rows * cols > 32768): 1 and 2 threads give the same bits, also
 * where the split of the rows between threads cuts a run of out-of-table rows. */
static void test_threads_same_bits(void **state)
{
    (void)state;
    int maxt = omp_get_max_threads();
    gsl_rng *rng = rk_test_rng(8);
    for (int st = 0; st < 2; st++) {
        rk_rope_config cfg = { .dim = 64, .rotary_dim = 48, .style = (rk_rope_style)st };
        rk_rope *r = mk(&cfg);
        size_t n = 301, cols = 512;
        rk_matd x = rk_test_randnd(rng, n, cols, cols + 1, 1.0);
        rk_mat xf = rk_test_mat(n, cols, cols + 1);
        rk_test_d2f(&x, &xf);
        rk_matd y1 = rk_test_matd(n, cols, cols), y2 = rk_test_matd(n, cols, cols);
        rk_mat f1 = rk_test_mat(n, cols, cols), f2 = rk_test_mat(n, cols, cols);
        omp_set_num_threads(1);
        assert_rk_ok(rk_rope_apply_d(r, &x, &y1, 3950, NULL, 0));   /* crosses the table end */
        assert_rk_ok(rk_rope_apply(r, &xf, &f1, 3950, NULL, 0));
        omp_set_num_threads(2);
        assert_rk_ok(rk_rope_apply_d(r, &x, &y2, 3950, NULL, 0));
        assert_rk_ok(rk_rope_apply(r, &xf, &f2, 3950, NULL, 0));
        omp_set_num_threads(maxt);
        assert_true(same_bits_d(&y1, &y2));
        assert_true(same_bits_f(&f1, &f2));
        /* explicit positions: runs that the row split cuts, negative ones, scattered ones */
        int64_t pos[301];
        for (size_t t = 0; t < n; t++)
            pos[t] = t < 100 ? 8100 + (int64_t)t : t < 200 ? -4000 - (int64_t)t
                                                 : (int64_t)((t * 7919) % 20011) - 10000;
        omp_set_num_threads(1);
        assert_rk_ok(rk_rope_apply_d(r, &x, &y1, 0, pos, 1));
        assert_rk_ok(rk_rope_apply(r, &xf, &f1, 0, pos, 1));
        omp_set_num_threads(2);
        assert_rk_ok(rk_rope_apply_d(r, &x, &y2, 0, pos, 1));
        assert_rk_ok(rk_rope_apply(r, &xf, &f2, 0, pos, 1));
        omp_set_num_threads(maxt);
        assert_true(same_bits_d(&y1, &y2));
        assert_true(same_bits_f(&f1, &f2));
        rk_test_freed(&x); rk_test_freed(&y1); rk_test_freed(&y2);
        rk_test_free(&xf); rk_test_free(&f1); rk_test_free(&f2);
        rk_rope_destroy(r);
    }
    gsl_rng_free(rng);
}

/* ---------------------------------------------------------------------------------------- */
/* frequencies, scalings, resolved config                                                   */
/* ---------------------------------------------------------------------------------------- */

static void test_freqs_and_scalings(void **state)
{
    (void)state;
    const size_t d = 128, h = 64;
    rk_rope_config c0 = { .dim = d };
    rk_rope *r0 = mk(&c0);
    const double *t0 = rk_rope_freqs(r0);
    const rk_rope_config *g = rk_rope_get_config(r0);
    assert_int_equal(g->rotary_dim, d);
    assert_true(g->base == 10000.0 && g->table_len == 4096 && g->attn_factor == 1.0);
    assert_true(rk_rope_mscale(r0) == 1.0);
    double ref[64], ms;
    assert_int_equal(ref_rope_freqs(&c0, ref, &ms), d);
    assert_allclose(t0, ref, h, 1e-15, 0.0);
    assert_true(t0[0] == 1.0);
    double last = pow(10000.0, -(double)(d - 2) / (double)d);
    assert_allclose(&t0[h - 1], &last, 1, 1e-15, 0.0);

    /* linear: theta / s */
    rk_rope_config cl = { .dim = d, .scaling = RK_SCALE_LINEAR, .factor = 4.0 };
    rk_rope *rl = mk(&cl);
    for (size_t i = 0; i < h; i++) {
        double want = t0[i] / 4.0;
        assert_allclose(&rk_rope_freqs(rl)[i], &want, 1, 1e-15, 0.0);
    }
    assert_true(rk_rope_mscale(rl) == 1.0);

    /* NTK: theta_0 kept, the lowest exactly theta / s, theta_i s^(-2i/(r-2)) between */
    rk_rope_config cn = { .dim = d, .scaling = RK_SCALE_NTK, .factor = 8.0 };
    rk_rope *rn = mk(&cn);
    const double *tn = rk_rope_freqs(rn);
    double one = 1.0, lo = t0[h - 1] / 8.0;
    assert_allclose(&tn[0], &one, 1, 1e-12, 0.0);
    assert_allclose(&tn[h - 1], &lo, 1, 1e-12, 0.0);
    for (size_t i = 0; i < h; i++) {
        double want = t0[i] * pow(8.0, -2.0 * (double)i / (double)(d - 2));
        assert_allclose(&tn[i], &want, 1, 1e-12, 0.0);
    }

    /* YaRN (HF's, yarn-paper alike for these settings): fast dims (r_i > beta_fast)
     * unchanged, slow ones (r_i < beta_slow) theta / s, the transition strictly between;
     * mscale = 0.1 ln s + 1. test_yarn_hf_vs_paper pins where the two differ. */
    rk_rope_config cy = { .dim = d, .scaling = RK_SCALE_YARN, .factor = 16.0 };
    rk_rope *ry = mk(&cy);
    const double *ty = rk_rope_freqs(ry);
    int nfast = 0, nslow = 0, nmid = 0;
    for (size_t i = 0; i < h; i++) {
        double rot = 4096.0 * t0[i] / (2.0 * 3.14159265358979323846);
        if (rot > 32.0) { assert_true(ty[i] == t0[i]); nfast++; }
        else if (rot < 1.0) {
            double want = t0[i] / 16.0;
            assert_allclose(&ty[i], &want, 1, 1e-15, 0.0);
            nslow++;
        } else {
            assert_true(ty[i] < t0[i] && ty[i] > t0[i] / 16.0);
            nmid++;
        }
    }
    assert_true(nfast > 0 && nslow > 0 && nmid > 0);
    double msy = 0.1 * log(16.0) + 1.0;
    assert_true(fabs(rk_rope_mscale(ry) - msy) <= 1e-15);
    assert_true(fabs(rk_rope_get_config(ry)->attn_factor - msy) <= 1e-15);
    assert_true(rk_rope_get_config(ry)->orig_ctx == 4096.0);
    assert_true(rk_rope_get_config(ry)->beta_fast == 32.0 && rk_rope_get_config(ry)->beta_slow == 1.0);
    assert_int_equal(ref_rope_freqs(&cy, ref, &ms), d);
    assert_allclose(ty, ref, h, 1e-14, 0.0);
    assert_true(fabs(ms - msy) <= 1e-15);

    /* attention factor given; s <= 1 keeps mscale 1 (as HF) */
    rk_rope_config ca = cy;
    ca.attn_factor = 1.5;
    rk_rope *ra = mk(&ca);
    assert_true(rk_rope_mscale(ra) == 1.5);
    rk_rope_config cs = cy;
    cs.factor = 0.5;
    rk_rope *rs = mk(&cs);
    assert_true(rk_rope_mscale(rs) == 1.0);
    rk_rope_config cnone = { .dim = 6, .attn_factor = 2.0 };
    rk_rope *rnone = mk(&cnone);
    assert_true(rk_rope_mscale(rnone) == 2.0);

    rk_rope_destroy(r0); rk_rope_destroy(rl); rk_rope_destroy(rn); rk_rope_destroy(ry);
    rk_rope_destroy(ra); rk_rope_destroy(rs); rk_rope_destroy(rnone);
    rk_rope_destroy(NULL);
}

/* HF's yarn (ramp over the pair index) against the YaRN paper's text (ramp over the rotation
 * count), the measurement of issue 15: d = 128, base 10000. For factor 4, original context
 * 4096, HF's correction range is pairs 20 .. 46 (find_correction_range: floor(20.94),
 * ceil(45.03)); 25 of the 64 frequencies differ by more than 1%, the largest by 42.28% (of
 * HF's value); for factor 16, original 2048, by 67.55%. The attention factor is the same. */
static void test_yarn_hf_vs_paper(void **state)
{
    (void)state;
    static const struct { double s, L; int lo, hi, n1pc; double worst; } cs[] = {
        { 4.0, 4096.0, 20, 46, 25, 0.42283719 },
        { 16.0, 2048.0, 16, 41, 24, 0.67553352 },
    };
    rk_rope_config c0 = { .dim = 128 };
    rk_rope *r0 = mk(&c0);
    const double *t0 = rk_rope_freqs(r0);
    for (int k = 0; k < 2; k++) {
        rk_rope_config ch = { .dim = 128, .scaling = RK_SCALE_YARN, .factor = cs[k].s,
                              .orig_ctx = cs[k].L };
        rk_rope_config cp = ch;
        cp.scaling = RK_SCALE_YARN_PAPER;
        rk_rope *rh = mk(&ch), *rp = mk(&cp);
        const double *th = rk_rope_freqs(rh), *tp = rk_rope_freqs(rp);
        int n1pc = 0;
        double worst = 0.0;
        for (int i = 0; i < 64; i++) {
            if (i <= cs[k].lo) assert_true(th[i] == t0[i]);              /* extrapolated */
            else if (i >= cs[k].hi) assert_true(th[i] == t0[i] / cs[k].s);  /* interpolated */
            else {                                                       /* linear in i */
                double g = (double)(i - cs[k].lo) / (double)(cs[k].hi - cs[k].lo);
                double want = t0[i] / cs[k].s * g + t0[i] * (1.0 - g);
                assert_allclose(&th[i], &want, 1, 1e-15, 0.0);
            }
            double rel = fabs(th[i] - tp[i]) / th[i];
            n1pc += rel > 0.01;
            worst = fmax(worst, rel);
        }
        assert_int_equal(n1pc, cs[k].n1pc);
        assert_allclose(&worst, &cs[k].worst, 1, 1e-7, 0.0);
        assert_true(rk_rope_mscale(rh) == rk_rope_mscale(rp));
        assert_true(rk_rope_mscale(rh) == 0.1 * log(cs[k].s) + 1.0);
        rk_rope_destroy(rh); rk_rope_destroy(rp);
    }
    rk_rope_destroy(r0);
}

/* The other HF types, from their definitions (ropekit.h; modeling_rope_utils.py). */
static void test_hf_types(void **state)
{
    (void)state;
    const size_t d = 128, h = 64;
    rk_rope_config c0 = { .dim = d };
    rk_rope *r0 = mk(&c0);
    const double *t0 = rk_rope_freqs(r0);

    /* dynamic: the default frequencies up to M, then base' = b ((s l / M) - (s - 1))^(r/(r-2)),
     * lower frequencies as the sequence grows; theta_0 stays 1 */
    double prev = INFINITY;
    const size_t lens[] = { 0, 1, 511, 512, 513, 1024, 4096, 100000 };
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        rk_rope_config cd = { .dim = d, .scaling = RK_SCALE_DYNAMIC, .factor = 2.0,
                              .max_pos = 512.0, .seq_len = lens[k] };
        rk_rope *rd = mk(&cd);
        const double *td = rk_rope_freqs(rd);
        assert_true(rk_rope_mscale(rd) == 1.0);
        assert_true(td[0] == 1.0);
        if (lens[k] <= 512) {
            assert_memory_equal(td, t0, h * sizeof *td);
        } else {
            double l = (double)lens[k], b = 10000.0 * pow(2.0 * l / 512.0 - 1.0, 128.0 / 126.0);
            for (size_t i = 0; i < h; i++) {
                double want = 1.0 / pow(b, (double)(2 * i) / 128.0);
                assert_allclose(&td[i], &want, 1, 1e-14, 0.0);
            }
            assert_true(td[h - 1] < prev);
        }
        prev = td[h - 1];
        rk_rope_destroy(rd);
    }
    /* static NTK is not dynamic: at l = M (s l / M - (s - 1) = 1) dynamic is unscaled, NTK not */
    rk_rope_config cn = { .dim = d, .scaling = RK_SCALE_NTK, .factor = 2.0 };
    rk_rope *rn = mk(&cn);
    assert_true(rk_rope_freqs(rn)[h - 1] < t0[h - 1]);
    rk_rope_destroy(rn);

    /* llama3 (Llama 3.1: base 500000, s 8, low 1, high 4, L 8192): wavelengths below
     * L / 4 kept, above L / 1 divided by s, smooth between */
    rk_rope_config cb = { .dim = d, .base = 500000.0 };
    rk_rope *rb = mk(&cb);
    const double *tb = rk_rope_freqs(rb);
    rk_rope_config cl = { .dim = d, .base = 500000.0, .scaling = RK_SCALE_LLAMA3, .factor = 8.0,
                          .orig_ctx = 8192.0 };
    rk_rope *rl = mk(&cl);
    const double *tl = rk_rope_freqs(rl);
    assert_true(rk_rope_get_config(rl)->low_freq_factor == 1.0);
    assert_true(rk_rope_get_config(rl)->high_freq_factor == 4.0);
    int nk = 0, ns = 0, nm = 0;
    for (size_t i = 0; i < h; i++) {
        double w = 2.0 * 3.14159265358979323846 / tb[i];
        if (w < 8192.0 / 4.0) { assert_true(tl[i] == tb[i]); nk++; }
        else if (w > 8192.0) { assert_true(tl[i] == tb[i] / 8.0); ns++; }
        else {
            double sm = (8192.0 / w - 1.0) / 3.0, want = (1.0 - sm) * tb[i] / 8.0 + sm * tb[i];
            assert_allclose(&tl[i], &want, 1, 1e-15, 0.0);
            nm++;
        }
    }
    assert_true(nk > 0 && ns > 0 && nm > 0);
    assert_true(rk_rope_mscale(rl) == 1.0);
    rk_rope_destroy(rb); rk_rope_destroy(rl);

    /* longrope: short factors up to L, long ones beyond (seq_len > L); the attention factor
     * sqrt(1 + ln s / ln L) with s = M / L when factor is 0, a given factor, or 1 for s <= 1 */
    fill_arrays();
    const size_t lr_len[] = { 0, 4096, 4097 };
    for (size_t k = 0; k < 3; k++) {
        rk_rope_config cr = { .dim = d, .scaling = RK_SCALE_LONGROPE, .short_factor = short_f,
                              .long_factor = long_f, .orig_ctx = 4096.0, .max_pos = 131072.0,
                              .seq_len = lr_len[k] };
        rk_rope *rr = mk(&cr);
        const double *f = lr_len[k] > 4096 ? long_f : short_f;
        for (size_t i = 0; i < h; i++) assert_true(rk_rope_freqs(rr)[i] == t0[i] / f[i]);
        double want = sqrt(1.0 + log(32.0) / log(4096.0));
        assert_true(rk_rope_get_config(rr)->factor == 32.0);
        assert_allclose((double[]){ rk_rope_mscale(rr) }, &want, 1, 1e-15, 0.0);
        rk_rope_destroy(rr);
    }
    rk_rope_config cr = { .dim = d, .scaling = RK_SCALE_LONGROPE, .short_factor = short_f,
                          .long_factor = long_f, .orig_ctx = 4096.0, .factor = 4.0 };
    rk_rope *rr = mk(&cr);
    double want = sqrt(1.0 + log(4.0) / log(4096.0));
    assert_allclose((double[]){ rk_rope_mscale(rr) }, &want, 1, 1e-15, 0.0);
    rk_rope_destroy(rr);
    cr.factor = 0.5;
    rr = mk(&cr);
    assert_true(rk_rope_mscale(rr) == 1.0);
    rk_rope_destroy(rr);

    /* yarn: factor inferred from M / L, DeepSeek's mscale ratio, truncate = false */
    rk_rope_config cy = { .dim = 64, .scaling = RK_SCALE_YARN, .max_pos = 163840.0,
                          .orig_ctx = 4096.0, .mscale = 1.0, .mscale_all_dim = 0.8 };
    rk_rope *ry = mk(&cy);
    assert_true(rk_rope_get_config(ry)->factor == 40.0);
    want = (0.1 * log(40.0) + 1.0) / (0.08 * log(40.0) + 1.0);
    assert_allclose((double[]){ rk_rope_mscale(ry) }, &want, 1, 1e-15, 0.0);
    rk_rope_destroy(ry);
    cy.mscale_all_dim = 0.0;                    /* only one of the two: get_mscale(s) */
    ry = mk(&cy);
    assert_true(rk_rope_mscale(ry) == 0.1 * log(40.0) + 1.0);
    rk_rope_destroy(ry);
    /* without floor/ceil the ramp ends are fractional: pairs next to them move */
    rk_rope_config ct = { .dim = d, .scaling = RK_SCALE_YARN, .factor = 4.0 };
    rk_rope_config cu = ct;
    cu.no_truncate = 1;
    rk_rope *rt = mk(&ct), *ru = mk(&cu);
    assert_true(rk_rope_freqs(ru)[21] != rk_rope_freqs(rt)[21]);   /* lo 20.94 instead of 20 */
    assert_true(rk_rope_freqs(ru)[45] != rk_rope_freqs(rt)[45]);   /* hi 45.03 instead of 46 */
    assert_true(rk_rope_freqs(ru)[10] == rk_rope_freqs(rt)[10]);   /* far from the ramp */
    assert_true(rk_rope_freqs(ru)[50] == rk_rope_freqs(rt)[50]);
    rk_rope_destroy(rt); rk_rope_destroy(ru);
    rk_rope_destroy(r0);
}

/* Frequencies as data: a plan given another plan's thetas (freqs) and attention factor gives
 * the same bits; freq_factors divide the base frequencies before the scaling; the arrays are
 * copied at create (the caller's may change or go), get_config points at the copies. */
static void test_freq_tables(void **state)
{
    (void)state;
    gsl_rng *rng = rk_test_rng(1515);
    rk_rope_config cy = { .dim = 40, .rotary_dim = 36, .style = RK_ROPE_HALF,
                          .scaling = RK_SCALE_YARN, .factor = 6.0, .orig_ctx = 300.0,
                          .table_len = 20 };
    rk_rope *ry = mk(&cy);
    double tab[18];
    memcpy(tab, rk_rope_freqs(ry), sizeof tab);
    rk_rope_config cf = { .dim = 40, .rotary_dim = 36, .style = RK_ROPE_HALF, .freqs = tab,
                          .attn_factor = rk_rope_mscale(ry), .table_len = 20 };
    rk_rope *rf = mk(&cf);
    assert_true(rk_rope_get_config(rf)->freqs != tab);
    assert_memory_equal(rk_rope_get_config(rf)->freqs, tab, sizeof tab);
    for (int i = 0; i < 18; i++) tab[i] = -1.0;              /* the plan kept its own copy */
    assert_memory_equal(rk_rope_freqs(rf), rk_rope_freqs(ry), sizeof tab);
    size_t n = 30;
    rk_matd x = rk_test_randnd(rng, n, 80, 80, 1.0);
    rk_mat xf = rk_test_mat(n, 80, 80);
    rk_test_d2f(&x, &xf);
    rk_matd a = rk_test_matd(n, 80, 80), b = rk_test_matd(n, 80, 80);
    rk_mat af = rk_test_mat(n, 80, 80), bf = rk_test_mat(n, 80, 80);
    for (int inv = 0; inv < 2; inv++) {
        assert_rk_ok(rk_rope_apply_d(ry, &x, &a, 7, NULL, inv));   /* crosses the table end */
        assert_rk_ok(rk_rope_apply_d(rf, &x, &b, 7, NULL, inv));
        assert_true(same_bits_d(&a, &b));
        assert_rk_ok(rk_rope_apply(ry, &xf, &af, 7, NULL, inv));
        assert_rk_ok(rk_rope_apply(rf, &xf, &bf, 7, NULL, inv));
        assert_true(same_bits_f(&af, &bf));
    }
    rk_test_freed(&x); rk_test_freed(&a); rk_test_freed(&b);
    rk_test_free(&xf); rk_test_free(&af); rk_test_free(&bf);
    rk_rope_destroy(ry); rk_rope_destroy(rf);

    /* freq_factors: theta_i = base^(-2i/r) / f_i, then the scaling */
    fill_arrays();
    rk_rope_config c0 = { .dim = 32 };
    rk_rope *r0 = mk(&c0);
    rk_rope_config cv = { .dim = 32, .freq_factors = ffac };
    rk_rope_config cl = { .dim = 32, .freq_factors = ffac, .scaling = RK_SCALE_LINEAR,
                          .factor = 3.0 };
    rk_rope *rv = mk(&cv), *rl = mk(&cl);
    for (int i = 0; i < 16; i++) {
        assert_true(rk_rope_freqs(rv)[i] == rk_rope_freqs(r0)[i] / ffac[i]);
        assert_true(rk_rope_freqs(rl)[i] == rk_rope_freqs(r0)[i] / ffac[i] / 3.0);
    }
    assert_true(rk_rope_get_config(rv)->freq_factors != ffac);
    rk_rope_destroy(r0); rk_rope_destroy(rv); rk_rope_destroy(rl);
    gsl_rng_free(rng);
}

/* ---------------------------------------------------------------------------------------- */
/* errors                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static void expect_create_error(rk_rope_config c, int code)
{
    rk_rope *r = (rk_rope *)&c;        /* any non-NULL value: must come back NULL */
    assert_rk_error(rk_rope_create(&r, &c), code);
    assert_null(r);
}

static void test_create_errors(void **state)
{
    (void)state;
    const rk_rope_config ok = { .dim = 8 };
    rk_rope_config c;
    c = ok; c.dim = 0;                                          expect_create_error(c, RK_EINVAL);
    c = ok; c.rotary_dim = 5;                                   expect_create_error(c, RK_EDIM);
    c = ok; c.dim = 7;                                          expect_create_error(c, RK_EDIM);
    c = ok; c.rotary_dim = 10;                                  expect_create_error(c, RK_EDIM);
    c = ok; c.base = -2.0;                                      expect_create_error(c, RK_EINVAL);
    c = ok; c.base = NAN;                                       expect_create_error(c, RK_EINVAL);
    c = ok; c.base = INFINITY;                                  expect_create_error(c, RK_EINVAL);
    c = ok; c.base = 1.0;                                       expect_create_error(c, RK_EINVAL);
    c = ok; c.style = (rk_rope_style)7;                         expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = (rk_rope_scaling)9;                     expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = RK_SCALE_LINEAR;                        expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = RK_SCALE_NTK; c.factor = -2.0;          expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = RK_SCALE_YARN; c.factor = NAN;          expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = RK_SCALE_NTK; c.factor = 2.0; c.rotary_dim = 2;
    expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = RK_SCALE_NTK; c.factor = 1e300; c.rotary_dim = 4;   /* base' = inf */
    expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = RK_SCALE_YARN; c.factor = 2.0; c.orig_ctx = -1.0;
    expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = RK_SCALE_YARN; c.factor = 2.0; c.beta_fast = 1.0; c.beta_slow = 2.0;
    expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = RK_SCALE_YARN; c.factor = 2.0; c.beta_slow = -1.0;
    expect_create_error(c, RK_EINVAL);
    /* the HF types and per-pair arrays */
    static const double good[4] = { 1.0, 2.0, 3.0, 4.0 };
    static const double zero[4] = { 1.0, 0.0, 3.0, 4.0 }, nan4[4] = { 1.0, 2.0, NAN, 4.0 };
    static const double neg[4] = { 1.0, 2.0, 3.0, -4.0 };
    c = ok; c.scaling = RK_SCALE_DYNAMIC; c.factor = 2.0; c.rotary_dim = 2;
    expect_create_error(c, RK_EINVAL);                               /* r/(r-2) */
    c = ok; c.scaling = RK_SCALE_DYNAMIC;                       expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = RK_SCALE_YARN;                          expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = RK_SCALE_YARN_PAPER; c.factor = 2.0; c.beta_fast = 0.5;
    expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = RK_SCALE_YARN; c.factor = 2.0; c.no_truncate = 2;
    expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = RK_SCALE_YARN; c.factor = 2.0; c.mscale = NAN;
    expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = RK_SCALE_YARN; c.factor = 40.0; c.mscale = -50.0; c.mscale_all_dim = 1.0;
    expect_create_error(c, RK_EINVAL);                               /* attention factor < 0 */
    c = ok; c.scaling = RK_SCALE_LLAMA3; c.factor = 8.0; c.low_freq_factor = 4.0;
    expect_create_error(c, RK_EINVAL);                               /* high 4 <= low 4 */
    c = ok; c.scaling = RK_SCALE_LLAMA3; c.factor = 8.0; c.high_freq_factor = -1.0;
    expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = RK_SCALE_LONGROPE;                      expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = RK_SCALE_LONGROPE; c.short_factor = good;
    expect_create_error(c, RK_EINVAL);                               /* no long_factor */
    c = ok; c.scaling = RK_SCALE_LONGROPE; c.short_factor = good; c.long_factor = good;
    expect_create_error(c, RK_EINVAL);                               /* no factor, no max_pos */
    c.factor = 2.0; c.orig_ctx = 1.0;                           expect_create_error(c, RK_EINVAL);
    c.orig_ctx = 0.0; c.long_factor = zero;                     expect_create_error(c, RK_EINVAL);
    c.long_factor = nan4;                                       expect_create_error(c, RK_EINVAL);
    c.long_factor = good; c.freq_factors = good;                expect_create_error(c, RK_EINVAL);
    c = ok; c.short_factor = good;                              expect_create_error(c, RK_EINVAL);
    c = ok; c.freqs = good; c.scaling = RK_SCALE_LINEAR; c.factor = 2.0;
    expect_create_error(c, RK_EINVAL);                               /* freqs take no scaling */
    c = ok; c.freqs = good; c.freq_factors = good;              expect_create_error(c, RK_EINVAL);
    c = ok; c.freqs = neg;                                      expect_create_error(c, RK_EINVAL);
    c = ok; c.freq_factors = zero;                              expect_create_error(c, RK_EINVAL);
    c = ok; c.orig_ctx = NAN;                                   expect_create_error(c, RK_EINVAL);
    c = ok; c.max_pos = -1.0;                                   expect_create_error(c, RK_EINVAL);
    c = ok; c.scaling = (rk_rope_scaling)(RK_SCALE_LONGROPE + 1); expect_create_error(c, RK_EINVAL);
    c = ok; c.freq_factors = (const double[]){ 1e-320, 1, 1, 1 };
    expect_create_error(c, RK_EINVAL);                               /* theta_0 = 1 / 1e-320 */
    c = ok; c.attn_factor = -1.0;                               expect_create_error(c, RK_EINVAL);
    c = ok; c.attn_factor = NAN;                                expect_create_error(c, RK_EINVAL);
    c = ok; c.dim = 128; c.table_len = SIZE_MAX / 4;            expect_create_error(c, RK_EOVERFLOW);
    c = ok; c.dim = 128; c.table_len = SIZE_MAX / 512;          expect_create_error(c, RK_EOVERFLOW);
    /* a good config clears the message */
    rk_rope *r = NULL;
    assert_rk_ok(rk_rope_create(&r, &ok));
    assert_string_equal(rk_last_error(), "");
    rk_rope_destroy(r);
}

static void test_apply_errors(void **state)
{
    (void)state;
    rk_rope_config cfg = { .dim = 8 };
    rk_rope *r = mk(&cfg);
    float buf[8 * 40] = { 0 };
    double bufd[8 * 40] = { 0 };
    rk_mat x = rk_mat_view(buf, 4, 16, 16), y;
    rk_matd xd = rk_matd_view(bufd, 4, 16, 16), yd;

    y = rk_mat_view(buf, 4, 12, 12);                       /* 12 not a multiple of 8 */
    assert_rk_error(rk_rope_apply(r, &y, &y, 0, NULL, 0), RK_EDIM);
    y = rk_mat_view(buf + 160, 3, 16, 16);                 /* rows differ */
    assert_rk_error(rk_rope_apply(r, &x, &y, 0, NULL, 0), RK_EDIM);
    y = rk_mat_view(buf + 160, 4, 8, 8);                   /* cols differ */
    assert_rk_error(rk_rope_apply(r, &x, &y, 0, NULL, 0), RK_EDIM);
    y = rk_mat_view(buf + 160, 4, 16, 15);                 /* ld < cols */
    assert_rk_error(rk_rope_apply(r, &x, &y, 0, NULL, 0), RK_EDIM);
    y = rk_mat_view(NULL, 4, 16, 16);                      /* NULL data */
    assert_rk_error(rk_rope_apply(r, &x, &y, 0, NULL, 0), RK_EINVAL);
    y = rk_mat_view(buf + 1, 4, 16, 16);                   /* partial overlap */
    assert_rk_error(rk_rope_apply(r, &x, &y, 0, NULL, 0), RK_EINVAL);
    y = rk_mat_view(buf, 4, 16, 24);                       /* same data, other ld */
    assert_rk_error(rk_rope_apply(r, &x, &y, 0, NULL, 0), RK_EINVAL);
    rk_mat big = rk_mat_view(buf, SIZE_MAX / 2, 16, 16);   /* rows * ld overflows */
    assert_rk_error(rk_rope_apply(r, &big, &big, 0, NULL, 0), RK_EOVERFLOW);
    assert_rk_error(rk_rope_apply(r, &x, &x, INT64_MAX - 2, NULL, 0), RK_EOVERFLOW);
    assert_rk_error(rk_rope_apply(NULL, &x, &x, 0, NULL, 0), RK_EINVAL);

    yd = rk_matd_view(bufd, 4, 12, 12);
    assert_rk_error(rk_rope_apply_d(r, &yd, &yd, 0, NULL, 0), RK_EDIM);
    yd = rk_matd_view(bufd + 150, 4, 16, 16);              /* overlaps the tail of xd */
    rk_matd xd2 = rk_matd_view(bufd + 100, 4, 16, 16);
    assert_rk_error(rk_rope_apply_d(r, &xd2, &yd, 0, NULL, 0), RK_EINVAL);
    assert_rk_error(rk_rope_apply_d(r, &xd, &xd, INT64_MAX, NULL, 0), RK_EOVERFLOW);

    /* fine: exact alias, last position INT64_MAX, empty views, explicit huge positions */
    assert_rk_ok(rk_rope_apply(r, &x, &x, INT64_MAX - 3, NULL, 0));
    assert_string_equal(rk_last_error(), "");
    assert_rk_ok(rk_rope_apply_d(r, &xd, &xd, INT64_MIN, NULL, 1));
    int64_t p[4] = { INT64_MIN, INT64_MAX, -1, 0 };
    assert_rk_ok(rk_rope_apply(r, &x, &x, 0, p, 0));
    for (int i = 0; i < 64; i++) assert_true(buf[i] == 0.0f);
    rk_mat e = rk_mat_view(NULL, 0, 16, 16);
    assert_rk_ok(rk_rope_apply(r, &e, &e, 0, NULL, 0));
    rk_matd ed = rk_matd_view(NULL, 5, 0, 0);
    assert_rk_ok(rk_rope_apply_d(r, &ed, &ed, 0, NULL, 0));
    rk_rope_destroy(r);
}

/* rk_rope_bytes: NULL -> 0; the tables (table_len x r/2 pairs x cos, sin in double and float)
 * dominate; each table row and theta is counted exactly (allocations are whole multiples of 64
 * bytes here), separate inverse tables (yarn, mscale != 1) count twice, the default table
 * covers 4096 positions, the copies of per-pair arrays count once each. */
static void test_bytes(void **state)
{
    (void)state;
    assert_int_equal(rk_rope_bytes(NULL), 0);
    const size_t row = 32 * (sizeof(double) + sizeof(float));    /* dim 32: 16 cos + 16 sin */
    rk_rope_config ca = { .dim = 32, .table_len = 64 };
    rk_rope *a = mk(&ca);
    size_t ba = rk_rope_bytes(a);
    assert_true(ba >= 64 * row + 16 * sizeof(double));
    assert_true(ba < 64 * row + 16 * sizeof(double) + 1024);     /* + the struct */

    rk_rope_config cb = ca;
    cb.table_len = 128;
    rk_rope *b = mk(&cb);
    assert_int_equal(rk_rope_bytes(b), ba + 64 * row);

    rk_rope_config cc = ca;                                       /* separate inverse tables */
    cc.scaling = RK_SCALE_YARN;
    cc.factor = 4.0;
    rk_rope *c = mk(&cc);
    assert_true(rk_rope_mscale(c) != 1.0);
    assert_int_equal(rk_rope_bytes(c), ba + 64 * row);

    rk_rope_config cy = cc;                                       /* yarn, s <= 1: mscale 1 */
    cy.factor = 0.5;
    rk_rope *y = mk(&cy);
    assert_true(rk_rope_mscale(y) == 1.0);
    assert_int_equal(rk_rope_bytes(y), ba);

    rk_rope_config cd = ca;                                       /* partial rotary: half */
    cd.rotary_dim = 16;
    rk_rope *d = mk(&cd);
    assert_int_equal(rk_rope_bytes(d), ba - 64 * row / 2 - 8 * sizeof(double));

    rk_rope_config ce = { .dim = 32 };                            /* default table_len 4096 */
    rk_rope *e = mk(&ce);
    assert_int_equal(rk_rope_bytes(e), ba + (4096 - 64) * row);

    /* per-pair arrays: one copy of 16 values each (longrope: two) */
    fill_arrays();
    rk_rope_config cf = ca;
    cf.freq_factors = ffac;
    rk_rope *f = mk(&cf);
    assert_int_equal(rk_rope_bytes(f), ba + 16 * sizeof(double));      /* 128 B: 2 x 64 */
    rk_rope_config cr = ca;
    cr.scaling = RK_SCALE_LONGROPE;
    cr.short_factor = short_f;
    cr.long_factor = long_f;
    cr.factor = 1.0;                                              /* s <= 1: mscale 1 */
    rk_rope *g = mk(&cr);
    assert_int_equal(rk_rope_bytes(g), ba + 32 * sizeof(double));

    rk_rope_destroy(a); rk_rope_destroy(b); rk_rope_destroy(c);
    rk_rope_destroy(y); rk_rope_destroy(d); rk_rope_destroy(e);
    rk_rope_destroy(f); rk_rope_destroy(g);
}

/* Every allocation of create failing in turn: RK_ENOMEM, *out NULL, nothing leaked (LSan). */
static void test_alloc_failure(void **state)
{
    (void)state;
    fill_arrays();
    const rk_rope_config cfgs[3] = {
        { .dim = 32, .table_len = 64 },
        { .dim = 32, .rotary_dim = 16, .scaling = RK_SCALE_YARN, .factor = 4.0, .table_len = 64 },
        { .dim = 32, .scaling = RK_SCALE_LONGROPE, .factor = 4.0, .short_factor = short_f,
          .long_factor = long_f, .table_len = 64 },                 /* + the arrays' copy */
    };
    for (int c = 0; c < 3; c++) {
        long k = 0;
        for (;; k++) {
            rk_rope *r = (rk_rope *)&k;
            rk__alloc_fail_after(k);
            int rc = rk_rope_create(&r, &cfgs[c]);
            rk__alloc_fail_after(-1);
            if (rc == RK_OK) { assert_non_null(r); rk_rope_destroy(r); break; }
            assert_int_equal(rc, RK_ENOMEM);
            assert_true(rk_last_error()[0] != '\0');
            assert_null(r);
            assert_true(k < 20);
        }
        assert_true(k >= (c ? 4 + (c == 2) : 3));   /* plan, freqs, (arrays), tables (and
                                                       inverse tables) */
    }
}

int main(void)
{
    gsl_set_error_handler_off();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_regression_vectors),
        cmocka_unit_test(test_d2_by_hand),
        cmocka_unit_test(test_vs_reference),
        cmocka_unit_test(test_relative_property),
        cmocka_unit_test(test_norm_preserved),
        cmocka_unit_test(test_inverse),
        cmocka_unit_test(test_layout_permutation),
        cmocka_unit_test(test_table_vs_direct),
        cmocka_unit_test(test_out_of_table_accuracy),
        cmocka_unit_test(test_float_bits_model),
        cmocka_unit_test(test_threads_same_bits),
        cmocka_unit_test(test_freqs_and_scalings),
        cmocka_unit_test(test_yarn_hf_vs_paper),
        cmocka_unit_test(test_hf_types),
        cmocka_unit_test(test_freq_tables),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_apply_errors),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_bytes),
    };
    return cmocka_run_group_tests_name("rope", tests, NULL, NULL);
}
