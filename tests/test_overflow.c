/* Finite inputs never give NaN silently (issue 16). Exact softmax's result is a convex
 * combination of the values, finite whatever the logits: q, k of 1e20 (float32) or 1e200
 * (float64), a scale of 1e300, values near the type's maximum all give the right finite rows
 * (against a long double reference); a training forward whose log-sum-exp is beyond the type
 * says so (RK_ENONFINITE naming the row) instead of saving Inf. The kernelized kinds likewise:
 * linear attention at +-1e20 / 1e200 and FAVOR+ at 1e20 (float32) and 1e150 (float64) against
 * a log-domain long double reference; FAVOR+ at 1e200 in float64, where |x'|^2 / 2 itself
 * overflows, says so (RK_ENONFINITE naming the row). RoPE of a pair near the maximum likewise. */
#include "check.h"
#include "run_cli.h"

#include <gsl/gsl_randist.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { N = 7, D = 4, DV = 3 };

/* The reference in long double (range to 1e4932): the softmax of scale q . k_j + b_j over the
 * keys row i sees (bottom-right causal), times v. */
static void reference(const double *q, const double *k, const double *v, double scale,
                      const double *bias, int causal, long double *out)
{
    for (int i = 0; i < N; i++) {
        long double z[N], mx = -INFINITY, sum = 0;
        int nv = causal ? i + 1 : N;
        for (int j = 0; j < nv; j++) {
            long double dot = 0;
            for (int c = 0; c < D; c++) dot += (long double)q[i * D + c] * (long double)k[j * D + c];
            z[j] = (long double)scale * dot + (bias ? (long double)bias[j - i + N - 1] : 0);
            if (z[j] > mx) mx = z[j];
        }
        for (int c = 0; c < DV; c++) out[i * DV + c] = 0;
        for (int j = 0; j < nv; j++) {
            long double w = expl(z[j] - mx);
            sum += w;
            for (int c = 0; c < DV; c++) out[i * DV + c] += w * (long double)v[j * DV + c];
        }
        for (int c = 0; c < DV; c++) out[i * DV + c] /= sum;
    }
}

static void check_case(double qk_mag, double scale, double v_mag, int causal, int with_bias,
                       const char *what)
{
    double q[N * D], k[N * D], v[N * DV], od[N * DV], bias[2 * N - 1];
    float qf[N * D], kf[N * D], vf[N * DV], of[N * DV];
    long double want[N * DV];
    gsl_rng *r = rk_test_rng(77);
    for (int i = 0; i < N * D; i++) {
        q[i] = qk_mag * gsl_ran_gaussian_ziggurat(r, 1.0);
        k[i] = qk_mag * gsl_ran_gaussian_ziggurat(r, 1.0);
    }
    for (int i = 0; i < N * DV; i++) v[i] = v_mag * (0.25 + 0.75 * gsl_rng_uniform(r));
    for (int i = 0; i < 2 * N - 1; i++) bias[i] = i % 4 == 1 ? -INFINITY : -0.5 * fabs(i - N + 1.0);
    gsl_rng_free(r);
    int f32 = qk_mag < 1e30 && v_mag < 1e30;
    if (f32) {   /* float inputs: the double reference sees the same rounded values */
        for (int i = 0; i < N * D; i++) { qf[i] = (float)q[i]; q[i] = qf[i]; kf[i] = (float)k[i]; k[i] = kf[i]; }
        for (int i = 0; i < N * DV; i++) { vf[i] = (float)v[i]; v[i] = vf[i]; }
    }
    reference(q, k, v, scale, with_bias ? bias : NULL, causal, want);
    rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = N, .n_kv = N, .d = D, .d_v = DV,
                         .causal = causal, .scale = scale, .nthreads = 2 };
    if (with_bias) { c.bias = bias; c.bias_len = 2 * N - 1; }
    rk_attn *p;
    assert_rk_ok(rk_attn_create(&p, &c));
    rk_matd Q = rk_matd_view(q, N, D, D), K = rk_matd_view(k, N, D, D), V = rk_matd_view(v, N, DV, DV);
    rk_matd O = rk_matd_view(od, N, DV, DV);
    assert_rk_ok(rk_attn_execute_d(p, &Q, &K, &V, &O, RK_ALL_KEYS));
    for (int i = 0; i < N * DV; i++) {
        /* the logits carry d + 2 roundings of relative size u: at |z| ~ 1e200 any tie-break of
         * a near-equal pair is within them; compare against the mean's scale */
        double tol = 1e-12 * (double)fabsl(want[i]) + 1e-300;
        if (!isfinite(od[i]) || fabs(od[i] - (double)want[i]) > tol)
            fail_msg("%s: double out[%d] = %.17g, want %.17Lg", what, i, od[i], want[i]);
    }
    if (f32) {
        rk_mat Qf = rk_mat_view(qf, N, D, D), Kf = rk_mat_view(kf, N, D, D);
        rk_mat Vf = rk_mat_view(vf, N, DV, DV), Of = rk_mat_view(of, N, DV, DV);
        assert_rk_ok(rk_attn_execute(p, &Qf, &Kf, &Vf, &Of, RK_ALL_KEYS));
        for (int i = 0; i < N * DV; i++)
            if (!isfinite(of[i]) || fabs(of[i] - (double)want[i]) > 4e-7 * (double)fabsl(want[i]))
                fail_msg("%s: float out[%d] = %.9g, want %.17Lg", what, i, (double)of[i], want[i]);
    }
    rk_attn_destroy(p);
}

static void test_huge_logits(void **state)
{
    (void)state;
    for (int causal = 0; causal < 2; causal++)
        for (int b = 0; b < 2; b++) {
            char what[96];
            snprintf(what, sizeof what, "q, k ~ 1e20 causal %d bias %d", causal, b);
            check_case(1e20, 0.5, 1.0, causal, b, what);
            snprintf(what, sizeof what, "q, k ~ 1e200 causal %d bias %d", causal, b);
            check_case(1e200, 0.5, 1.0, causal, b, what);
            snprintf(what, sizeof what, "scale 1e300 causal %d bias %d", causal, b);
            check_case(1.0, 1e300, 1.0, causal, b, what);
            snprintf(what, sizeof what, "scale -1e300 causal %d bias %d", causal, b);
            check_case(1.0, -1e300, 1.0, causal, b, what);
        }
}

static void test_huge_values(void **state)
{
    (void)state;
    /* values near float's maximum: their mean is finite and must come out so */
    check_case(1.0, 0.5, 3e38, 0, 0, "v ~ 3e38 (float range)");
    check_case(1.0, 0.5, 1.7e308, 1, 0, "v ~ 1.7e308");
    check_case(1e20, 0.5, 3e38, 1, 1, "q, k ~ 1e20 and v ~ 3e38");
}

/* ---- the kernelized kinds ------------------------------------------------------------------ */

typedef struct { rk_kind kind; rk_kernel kernel; rk_map map; const char *name; } kcase;
static const kcase KCASES[] = {
    { RK_LINEAR, 0, RK_MAP_ELU, "linear elu+1" },
    { RK_LINEAR, 0, RK_MAP_RELU, "linear relu" },
    { RK_PERFORMER, RK_KERNEL_POSITIVE, 0, "FAVOR+ positive" },
    { RK_PERFORMER, RK_KERNEL_HYPERBOLIC, 0, "FAVOR+ hyperbolic" },
    { RK_PERFORMER, RK_KERNEL_TRIG, 0, "FAVOR+ trig" },
};
enum { M = 8 };

/* log phi_r(x) of the plan's map in long double (F values; -inf for a zero feature). */
static size_t log_features(const kcase *kc, const float *w, const double *x, long double *lp)
{
    if (kc->kind == RK_LINEAR) {
        for (int c = 0; c < D; c++) {
            long double a = x[c];
            lp[c] = kc->map == RK_MAP_ELU ? (a > 0 ? log1pl(a) : a) : (a > 0 ? logl(a) : -INFINITY);
        }
        return D;
    }
    long double sq = sqrtl(1.0L / sqrtl((long double)D)), h = 0, u[M];
    for (int c = 0; c < D; c++) h += 0.5L * (sq * x[c]) * (sq * x[c]);
    for (int r = 0; r < M; r++) {
        u[r] = 0;
        for (int c = 0; c < D; c++) u[r] += (long double)w[r * D + c] * sq * x[c];
    }
    long double ln = kc->kernel == RK_KERNEL_HYPERBOLIC ? -0.5L * logl(2.0L * M) : -0.5L * logl(M);
    for (int r = 0; r < M; r++) {
        lp[r] = u[r] - h + ln;
        if (kc->kernel == RK_KERNEL_HYPERBOLIC) lp[M + r] = -u[r] - h + ln;
    }
    return kc->kernel == RK_KERNEL_HYPERBOLIC ? 2 * M : M;
}

/* out_i = sum_j w_ij v_j / sum_j w_ij, w_ij = phi(q_i) . phi(k_j), from log features: log w_ij
 * = logsumexp_r (lq_r + lk_r), then a softmax over j. No scale can overflow. */
static void log_reference(const kcase *kc, const float *w, const double *q, const double *k,
                          const double *v, int causal, long double *out)
{
    long double lq[2 * M], lk[N][2 * M];
    size_t F = 0;
    for (int j = 0; j < N; j++) F = log_features(kc, w, k + j * D, lk[j]);
    for (int i = 0; i < N; i++) {
        (void)log_features(kc, w, q + i * D, lq);
        long double lw[N], mx = -INFINITY;
        int nv = causal ? i + 1 : N;
        for (int j = 0; j < nv; j++) {
            long double a = -INFINITY, s = 0;
            for (size_t r = 0; r < F; r++) if (lq[r] + lk[j][r] > a) a = lq[r] + lk[j][r];
            if (a > -INFINITY)
                for (size_t r = 0; r < F; r++) s += expl(lq[r] + lk[j][r] - a);
            lw[j] = a > -INFINITY ? a + logl(s) : -INFINITY;
            if (lw[j] > mx) mx = lw[j];
        }
        long double den = 0;
        for (int c = 0; c < DV; c++) out[i * DV + c] = 0;
        for (int j = 0; j < nv && mx > -INFINITY; j++) {
            long double e = expl(lw[j] - mx);
            den += e;
            for (int c = 0; c < DV; c++) out[i * DV + c] += e * (long double)v[j * DV + c];
        }
        for (int c = 0; c < DV; c++) out[i * DV + c] = den > 0 ? out[i * DV + c] / den : 0;
    }
}

/* q, k ~ mag N(0, 1) (sign: +1 as drawn, -1 all negative), v ~ U(0.25, 1): float32 (when mag
 * fits) and float64 against the reference, within tol of max |v| (trig: only finite, its
 * signed estimator has no stable value at this scale). may_underflow: a run may instead
 * refuse with RK_ENONFINITE because every feature product of a row underflows (at |x| ~ 1e20
 * a row's FAVOR+ features are exp(u_r - max u) ~ exp(-1e20) but in one channel, and a query
 * and a key whose channels differ have a product of 0); a zero or wrong row never passes. */
static void check_kernelized_v(const kcase *kc, double mag, int sign, int causal, double tol32,
                               double tol64, int may_underflow, double vmag)
{
    double q[N * D], k[N * D], v[N * DV], od[N * DV];
    float qf[N * D], kf[N * D], vf[N * DV], of[N * DV];
    long double want[N * DV];
    gsl_rng *r = rk_test_rng(91);
    for (int i = 0; i < N * D; i++) {
        q[i] = mag * gsl_ran_gaussian_ziggurat(r, 1.0);
        k[i] = mag * gsl_ran_gaussian_ziggurat(r, 1.0);
        if (sign < 0) { q[i] = -fabs(q[i]); k[i] = -fabs(k[i]); }
    }
    for (int i = 0; i < N * DV; i++) v[i] = vmag * (0.25 + 0.75 * gsl_rng_uniform(r));
    gsl_rng_free(r);
    int f32 = mag < 1e30 && vmag <= 3e38;
    if (f32) {
        for (int i = 0; i < N * D; i++) { qf[i] = (float)q[i]; q[i] = qf[i]; kf[i] = (float)k[i]; k[i] = kf[i]; }
        for (int i = 0; i < N * DV; i++) { vf[i] = (float)v[i]; v[i] = vf[i]; }
    }
    rk_attn_config c = { .kind = kc->kind, .n_q = N, .n_kv = N, .d = D, .d_v = DV, .causal = causal,
                         .kernel = kc->kernel, .map = kc->map, .n_features = kc->kind == RK_PERFORMER ? M : 0,
                         .seed = 5 };
    rk_attn *p;
    assert_rk_ok(rk_attn_create(&p, &c));
    const float *w = rk_attn_proj(p, NULL, NULL);
    log_reference(kc, w, q, k, v, causal, want);
    int trig = kc->kind == RK_PERFORMER && kc->kernel == RK_KERNEL_TRIG;
    rk_matd Q = rk_matd_view(q, N, D, D), K = rk_matd_view(k, N, D, D), V = rk_matd_view(v, N, DV, DV);
    rk_matd O = rk_matd_view(od, N, DV, DV);
    int rc = rk_attn_execute_d(p, &Q, &K, &V, &O, RK_ALL_KEYS);
    if (rc && trig && rc == RK_ENONFINITE && strstr(rk_last_error(), "exceeds")) {
        rk_attn_destroy(p);                /* a signed estimate beyond double: said so */
        return;
    }
    if (rc && may_underflow && rc == RK_ENONFINITE && strstr(rk_last_error(), "underflows")) {
        print_message("%s |x| ~ %g causal %d: refused (%.60s...)\n", kc->name, sign * mag,
                      causal, rk_last_error());
        rk_attn_destroy(p);
        return;
    }
    assert_rk_ok(rc);
    for (int i = 0; i < N * DV; i++)
        if (!isfinite(od[i]) || (!trig && fabs(od[i] - (double)want[i]) > tol64 * vmag))
            fail_msg("%s |x| ~ %g causal %d: double out[%d] = %.17g, want %.17Lg", kc->name,
                     sign * mag, causal, i, od[i], want[i]);
    if (f32) {
        rk_mat Qf = rk_mat_view(qf, N, D, D), Kf = rk_mat_view(kf, N, D, D);
        rk_mat Vf = rk_mat_view(vf, N, DV, DV), Of = rk_mat_view(of, N, DV, DV);
        rc = rk_attn_execute(p, &Qf, &Kf, &Vf, &Of, RK_ALL_KEYS);
        if (rc && trig && rc == RK_ENONFINITE && strstr(rk_last_error(), "exceeds")) {
            rk_attn_destroy(p);            /* a signed estimate beyond float: said so */
            return;
        }
        if (rc && may_underflow && rc == RK_ENONFINITE && strstr(rk_last_error(), "underflows")) {
            rk_attn_destroy(p);
            return;
        }
        assert_rk_ok(rc);
        for (int i = 0; i < N * DV; i++)
            if (!isfinite(of[i]) || (!trig && fabs(of[i] - (double)want[i]) > tol32 * vmag))
                fail_msg("%s |x| ~ %g causal %d: float out[%d] = %.9g, want %.17Lg", kc->name,
                         sign * mag, causal, i, (double)of[i], want[i]);
    }
    rk_attn_destroy(p);
}

static void check_kernelized(const kcase *kc, double mag, int sign, int causal, double tol32,
                             double tol64, int may_underflow)
{
    check_kernelized_v(kc, mag, sign, causal, tol32, tol64, may_underflow, 1.0);
}

/* Values near the type's maximum: their weighted mean is finite (a power-of-2 scale inside). */
static void test_kernelized_huge_values(void **state)
{
    (void)state;
    for (size_t t = 0; t < sizeof KCASES / sizeof *KCASES; t++)
        for (int causal = 0; causal < 2; causal++) {
            check_kernelized_v(&KCASES[t], 1.0, 1, causal, 2e-6, 1e-13, 0, 3e38);
            check_kernelized_v(&KCASES[t], 1.0, 1, causal, 2e-6, 1e-13, 0, 1.7e308);
        }
}

static void test_kernelized_huge(void **state)
{
    (void)state;
    for (size_t t = 0; t < sizeof KCASES / sizeof *KCASES; t++)
        for (int causal = 0; causal < 2; causal++) {
            const kcase *kc = &KCASES[t];
            check_kernelized(kc, 1.0, 1, causal, 2e-6, 1e-13, 0);     /* the reference itself */
            int positive = kc->kind == RK_PERFORMER && kc->kernel != RK_KERNEL_TRIG;
            /* |x| ~ 10: h ~ 100, exp(-h) is below float's range; the constants must bring it back */
            check_kernelized(kc, 10.0, 1, causal, 2e-5, 1e-12, 0);
            check_kernelized(kc, 1e20, 1, causal, 2e-6, 1e-13, positive);
            if (kc->kind == RK_LINEAR) {
                check_kernelized(kc, 1e200, 1, causal, 0, 1e-13, 0);
                if (kc->map == RK_MAP_RELU) {     /* all features 0: zero rows, as the reference */
                    check_kernelized(kc, 1e20, -1, causal, 2e-6, 1e-13, 0);
                    check_kernelized(kc, 1e200, -1, causal, 0, 1e-13, 0);
                }
            } else {
                check_kernelized(kc, 1e150, 1, causal, 0, 1e-13, positive);
            }
        }
}

/* FAVOR+ in float64 at 1e200: |x'|^2 / 2 overflows double, the features are not representable:
 * RK_ENONFINITE naming the row, no output claimed. */
static void test_favor_beyond_double(void **state)
{
    (void)state;
    double q[N * D], v[N * DV], o[N * DV];
    for (int i = 0; i < N * D; i++) q[i] = ((i % 3) - 1) * 1e200;
    for (int i = 0; i < N * DV; i++) v[i] = 1.0;
    rk_attn_config c = { .kind = RK_PERFORMER, .n_q = N, .n_kv = N, .d = D, .d_v = DV,
                         .n_features = M, .seed = 5 };
    rk_attn *p;
    assert_rk_ok(rk_attn_create(&p, &c));
    rk_matd Q = rk_matd_view(q, N, D, D), V = rk_matd_view(v, N, DV, DV), O = rk_matd_view(o, N, DV, DV);
    assert_rk_error(rk_attn_execute_d(p, &Q, &Q, &V, &O, RK_ALL_KEYS), RK_ENONFINITE);
    assert_non_null(strstr(rk_last_error(), "row 0"));
    assert_non_null(strstr(rk_last_error(), "float64"));
    rk_attn_destroy(p);
}

/* elu+1 features of q, k ~ -1e20 are exp(x): the products of the stabilised features of a
 * query and a key underflow whenever their largest entries sit in different channels, so the
 * denominator is 0 where the true one is positive. Not a zero row: RK_ENONFINITE naming the
 * row, in both precisions, for the execute and the backward. */
static void test_elu_underflow_refused(void **state)
{
    (void)state;
    double q[N * D], v[N * DV], o[N * DV], g[N * DV], dq[N * D], dk[N * D], dvv[N * DV];
    float qf[N * D], vf[N * DV], of[N * DV];
    gsl_rng *r = rk_test_rng(92);
    for (int i = 0; i < N * D; i++) { q[i] = -1e20 * fabs(gsl_ran_gaussian_ziggurat(r, 1.0)); qf[i] = (float)q[i]; }
    for (int i = 0; i < N * DV; i++) { v[i] = g[i] = 1.0; vf[i] = 1.0f; }
    gsl_rng_free(r);
    for (int causal = 0; causal < 2; causal++) {
        rk_attn_config c = { .kind = RK_LINEAR, .n_q = N, .n_kv = N, .d = D, .d_v = DV, .causal = causal };
        rk_attn *p;
        assert_rk_ok(rk_attn_create(&p, &c));
        rk_matd Q = rk_matd_view(q, N, D, D), V = rk_matd_view(v, N, DV, DV), O = rk_matd_view(o, N, DV, DV);
        rk_mat Qf = rk_mat_view(qf, N, D, D), Vf = rk_mat_view(vf, N, DV, DV), Of = rk_mat_view(of, N, DV, DV);
        assert_rk_error(rk_attn_execute_d(p, &Q, &Q, &V, &O, RK_ALL_KEYS), RK_ENONFINITE);
        assert_non_null(strstr(rk_last_error(), "underflows"));
        assert_non_null(strstr(rk_last_error(), "row"));
        assert_rk_error(rk_attn_execute(p, &Qf, &Qf, &Vf, &Of, RK_ALL_KEYS), RK_ENONFINITE);
        rk_matd G = rk_matd_view(g, N, DV, DV), DQ = rk_matd_view(dq, N, D, D);
        rk_matd DK = rk_matd_view(dk, N, D, D), DVm = rk_matd_view(dvv, N, DV, DV);
        assert_rk_error(rk_attn_backward_d(p, &Q, &Q, &V, &O, NULL, &G, &DQ, &DK, &DVm, RK_ALL_KEYS),
                        RK_ENONFINITE);
        rk_attn_destroy(p);
    }
}

/* The backward of the kernelized kinds with values near float's maximum or q, k ~ 1e20: finite
 * gradients, or RK_ENONFINITE naming what overflowed; never a NaN handed back as success. */
static void test_kernelized_backward_huge(void **state)
{
    (void)state;
    float q[N * D], k[N * D], v[N * DV], o[N * DV], g[N * DV], dq[N * D], dk[N * D], dv[N * DV];
    const double mags[][2] = { { 1.0, 3e38 }, { 1e20, 1.0 } };
    int refused = 0, done = 0;
    for (size_t t = 0; t < sizeof KCASES / sizeof *KCASES; t++)
        for (size_t mg = 0; mg < 2; mg++)
            for (int causal = 0; causal < 2; causal++) {
                gsl_rng *r = rk_test_rng(93);
                for (int i = 0; i < N * D; i++) {
                    q[i] = (float)(mags[mg][0] * gsl_ran_gaussian_ziggurat(r, 1.0));
                    k[i] = (float)(mags[mg][0] * gsl_ran_gaussian_ziggurat(r, 1.0));
                }
                for (int i = 0; i < N * DV; i++) {
                    v[i] = (float)(mags[mg][1] * (0.25 + 0.75 * gsl_rng_uniform(r)));
                    g[i] = (float)gsl_ran_gaussian_ziggurat(r, 1.0);
                }
                gsl_rng_free(r);
                const kcase *kc = &KCASES[t];
                rk_attn_config c = { .kind = kc->kind, .n_q = N, .n_kv = N, .d = D, .d_v = DV,
                                     .causal = causal, .kernel = kc->kernel, .map = kc->map,
                                     .n_features = kc->kind == RK_PERFORMER ? M : 0, .seed = 5 };
                rk_attn *p;
                assert_rk_ok(rk_attn_create(&p, &c));
                rk_mat Q = rk_mat_view(q, N, D, D), K = rk_mat_view(k, N, D, D);
                rk_mat V = rk_mat_view(v, N, DV, DV), O = rk_mat_view(o, N, DV, DV);
                rk_mat G = rk_mat_view(g, N, DV, DV), DQ = rk_mat_view(dq, N, D, D);
                rk_mat DK = rk_mat_view(dk, N, D, D), DVm = rk_mat_view(dv, N, DV, DV);
                int rc = rk_attn_forward(p, &Q, &K, &V, &O, RK_ALL_KEYS, NULL);
                if (!rc) rc = rk_attn_backward(p, &Q, &K, &V, &O, NULL, &G, &DQ, &DK, &DVm, RK_ALL_KEYS);
                if (rc) {
                    if (rc != RK_ENONFINITE || !strstr(rk_last_error(), "row"))
                        fail_msg("%s mag %g/%g: rc %d (%s)", kc->name, mags[mg][0], mags[mg][1], rc,
                                 rk_last_error());
                    refused++;
                } else {
                    for (int i = 0; i < N * D; i++) assert_true(isfinite(dq[i]) && isfinite(dk[i]));
                    for (int i = 0; i < N * DV; i++) assert_true(isfinite(dv[i]) && isfinite(o[i]));
                    done++;
                }
                rk_attn_destroy(p);
            }
    print_message("backward at extreme magnitudes: %d finite, %d refused with a row named\n", done,
                  refused);
    assert_true(done > 0);
}

/* RoPE of a pair near the type's maximum: the rotated pair's length is the same, so at most
 * angles one entry exceeds the range: RK_ENONFINITE naming the row and position (also in place,
 * where the input is gone by then, and beyond the table, the other kernel); angle 0 and a row
 * that is already Inf pass; the command exits 2 with the message and writes nothing. */
static void test_rope_overflow(void **state)
{
    (void)state;
    for (int dbl = 0; dbl < 2; dbl++)
        for (int far = 0; far < 2; far++)
            for (int inplace = 0; inplace < 2; inplace++) {
                double big = dbl ? 1.5e308 : 3e38;
                double xd[12] = { big, big, 1, 1, 1, 1, 1, 1, big, -big, 1, 1 }, od[12];
                float xf[12], of[12];
                for (int i = 0; i < 12; i++) xf[i] = (float)xd[i];
                rk_rope *r;
                rk_rope_config c = { .dim = 4 };
                assert_rk_ok(rk_rope_create(&r, &c));
                int64_t pos0 = far ? 10000000 : 1;
                int rc;
                if (dbl) {
                    rk_matd X = rk_matd_view(xd, 3, 4, 4), O = rk_matd_view(od, 3, 4, 4);
                    rc = rk_rope_apply_d(r, &X, inplace ? &X : &O, pos0, NULL, 0);
                } else {
                    rk_mat X = rk_mat_view(xf, 3, 4, 4), O = rk_mat_view(of, 3, 4, 4);
                    rc = rk_rope_apply(r, &X, inplace ? &X : &O, pos0, NULL, 0);
                }
                assert_int_equal(rc, RK_ENONFINITE);
                char want[64];
                snprintf(want, sizeof want, "row 0 (position %lld)", (long long)pos0);
                if (!strstr(rk_last_error(), want)) fail_msg("%s: want '%s'", rk_last_error(), want);
                rk_rope_destroy(r);
            }
    /* position 0 (no rotation) and an Inf input: no error */
    float x[4] = { 3e38f, 3e38f, 1, 1 }, o[4];
    rk_rope *r;
    rk_rope_config c = { .dim = 4 };
    assert_rk_ok(rk_rope_create(&r, &c));
    rk_mat X = rk_mat_view(x, 1, 4, 4), O = rk_mat_view(o, 1, 4, 4);
    assert_rk_ok(rk_rope_apply(r, &X, &O, 0, NULL, 0));
    x[0] = INFINITY;
    assert_rk_ok(rk_rope_apply(r, &X, &O, 5, NULL, 0));
    rk_rope_destroy(r);

    char dir[] = "/tmp/rk_ovf_XXXXXX", in[64], out[64];
    assert_non_null(mkdtemp(dir));
    snprintf(in, sizeof in, "%s/x.npy", dir);
    snprintf(out, sizeof out, "%s/y.npy", dir);
    float big[8] = { 3e38f, 3e38f, 1, 1, 3e38f, 3e38f, 1, 1 };
    rk_array a = { .dtype = RK_F32, .ndim = 2, .shape = { 2, 4 }, .count = 8, .data = big };
    assert_rk_ok(rk_npy_save(in, &a));
    const char *args[] = { "rope", "--in", in, "--out", out, NULL };
    run_cli_result res;
    assert_int_equal(run_cli(args, NULL, 60, &res), 2);
    assert_non_null(strstr(res.err, "overflows float32"));
    assert_int_not_equal(access(out, F_OK), 0);
    unlink(in);
    rmdir(dir);
}

/* A training forward cannot save a log-sum-exp beyond float32: RK_ENONFINITE naming the row. */
static void test_training_forward_refuses(void **state)
{
    (void)state;
    float q[N * D], v[N * DV], o[N * DV], saved[N];
    for (int i = 0; i < N * D; i++) q[i] = (float)((i % 3) * 1e20);
    for (int i = 0; i < N * DV; i++) v[i] = 1.0f;
    rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = N, .n_kv = N, .d = D, .d_v = DV };
    rk_attn *p;
    assert_rk_ok(rk_attn_create(&p, &c));
    rk_mat Q = rk_mat_view(q, N, D, D), V = rk_mat_view(v, N, DV, DV), O = rk_mat_view(o, N, DV, DV);
    assert_rk_error(rk_attn_forward(p, &Q, &Q, &V, &O, RK_ALL_KEYS, saved), RK_ENONFINITE);
    assert_non_null(strstr(rk_last_error(), "row"));
    /* the plain execute of the same inputs is fine */
    assert_rk_ok(rk_attn_execute(p, &Q, &Q, &V, &O, RK_ALL_KEYS));
    for (int i = 0; i < N * DV; i++) assert_true(isfinite(o[i]));
    rk_attn_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_huge_logits),
        cmocka_unit_test(test_huge_values),
        cmocka_unit_test(test_training_forward_refuses),
        cmocka_unit_test(test_kernelized_huge),
        cmocka_unit_test(test_kernelized_huge_values),
        cmocka_unit_test(test_kernelized_backward_huge),
        cmocka_unit_test(test_rope_overflow),
        cmocka_unit_test(test_favor_beyond_double),
        cmocka_unit_test(test_elu_underflow_refused),
    };
    return cmocka_run_group_tests_name("overflow", tests, NULL, NULL);
}
