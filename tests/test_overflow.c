/* Finite inputs never give NaN silently (issue 16). Exact softmax's result is a convex
 * combination of the values, finite whatever the logits: q, k of 1e20 (float32) or 1e200
 * (float64), a scale of 1e300, values near the type's maximum all give the right finite rows
 * (against a long double reference); a training forward whose log-sum-exp is beyond the type
 * says so (RK_ENONFINITE naming the row) instead of saving Inf. */
#include "check.h"

#include <gsl/gsl_randist.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    };
    return cmocka_run_group_tests_name("overflow", tests, NULL, NULL);
}
