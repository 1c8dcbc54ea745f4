/* Gradients of exact attention (softmax, with every option) and of the uniform baseline, the
 * RoPE backward, and the API's refusals. The checks are tests/grad_check.c's. */
#include "grad_check.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UF ((double)FLT_EPSILON)

void rk__sm_force_portable(int on);   /* lib/softmax_kern.c test hook: the portable kernels */

/* ---- the uniform baseline ------------------------------------------------------------------- */

static void test_uniform(void **state)
{
    (void)state;
    const grad_case cases[] = {
        { { .kind = RK_UNIFORM, .n_q = 7, .n_kv = 9, .d = 3, .d_v = 2 }, RK_ALL_KEYS, 1, 3 },
        { { .kind = RK_UNIFORM, .n_q = 9, .n_kv = 5, .d = 4, .causal = 1 }, 4, 1, 4 },
        { { .kind = RK_UNIFORM, .n_q = 5, .n_kv = 8, .d = 2, .d_v = 3, .causal = 1 }, 6, 1, 5 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "uniform case %zu", i);
        grad_check_fd(&cases[i], what);
        /* float sums rounded once per output: a few float units */
        grad_check_f32(&cases[i], what, 4 * UF, 0);
        grad_check_threads(&cases[i], what);
        grad_check_masks(&cases[i], what);
    }
}

/* ---- exact softmax ----------------------------------------------------------------------- */

static double bias_buf[4][512];

/* A relative bias for (n_q, n_kv): ALiBi-like decay plus a few -inf entries (masks). */
static const double *bias_for(int slot, size_t n_q, size_t n_kv, int with_masks)
{
    size_t L = rk_bias_len(n_q, n_kv);
    assert_true(L <= 512);
    for (size_t t = 0; t < L; t++) {
        double off = (double)t - (double)(n_kv - 1);
        bias_buf[slot][t] = -0.3 * fabs(off) + 0.1 * sin((double)t);
        if (with_masks && t % 5 == 2) bias_buf[slot][t] = -INFINITY;
    }
    return bias_buf[slot];
}

/* Float path bound: every gradient element is a sum of at most n terms, each a probability
 * (relative error <= (d + 8) u: the logit's d products, the exp2 polynomial's ~2 ulp, the
 * saved log2-domain lse rounded to float) times a product of length d or d_v; the sums add
 * n u. With K = 8 for cancellation against max |g|: rtol = K (n + 2 d + 8) u. */
static double sm_rtol(const rk_attn_config *c)
{
    size_t n = c->n_q > c->n_kv ? c->n_q : c->n_kv, dv = c->d_v ? c->d_v : c->d;
    return 8.0 * (double)(n + c->d + dv + 8) * UF;
}

static void softmax_case(const grad_case *gc, const char *what, int fd)
{
    if (fd) grad_check_fd(gc, what);
    grad_check_f32(gc, what, sm_rtol(&gc->cfg), 0);
    grad_check_threads(gc, what);
    grad_check_masks(gc, what);
}

static void test_softmax_plain(void **state)
{
    (void)state;
    const grad_case cases[] = {
        { { .kind = RK_SOFTMAX, .n_q = 7, .n_kv = 9, .d = 6, .d_v = 5 }, RK_ALL_KEYS, 1, 11 },
        { { .kind = RK_SOFTMAX, .n_q = 9, .n_kv = 7, .d = 5, .causal = 1 }, RK_ALL_KEYS, 1, 12 },
        { { .kind = RK_SOFTMAX, .n_q = 5, .n_kv = 13, .d = 4, .d_v = 3, .causal = 1 }, 11, 1.5, 13 },
        { { .kind = RK_SOFTMAX, .n_q = 6, .n_kv = 6, .d = 3, .scale = 0.9 }, 4, 1, 14 },
        { { .kind = RK_SOFTMAX, .n_q = 11, .n_kv = 11, .d = 2, .d_v = 1, .causal = 1 }, 9, 2, 15 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "softmax case %zu", i);
        softmax_case(&cases[i], what, 1);
    }
}

/* Tiles (48 query rows, 64 keys) and groups crossed: the float path's structure. */
static void test_softmax_tiles(void **state)
{
    (void)state;
    const grad_case cases[] = {
        { { .kind = RK_SOFTMAX, .n_q = 70, .n_kv = 67, .d = 5, .d_v = 3, .causal = 1 }, RK_ALL_KEYS, 1, 21 },
        { { .kind = RK_SOFTMAX, .n_q = 131, .n_kv = 150, .d = 18, .d_v = 17, .causal = 1,
            .rope = RK_ROPE_QK }, 140, 1, 22 },
        { { .kind = RK_SOFTMAX, .n_q = 100, .n_kv = 200, .d = 8 }, 190, 1, 23 },
        { { .kind = RK_SOFTMAX, .n_q = 250, .n_kv = 90, .d = 16, .causal = 1 }, RK_ALL_KEYS, 1, 24 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "softmax tiles case %zu", i);
        softmax_case(&cases[i], what, i == 0);
    }
}

/* The portable kernels (the fallback without AVX2) against the double path as well. */
static void test_softmax_portable(void **state)
{
    (void)state;
    grad_case cases[3] = {
        { { .kind = RK_SOFTMAX, .n_q = 70, .n_kv = 67, .d = 5, .d_v = 3, .causal = 1 }, 60, 1, 41 },
        { { .kind = RK_SOFTMAX, .n_q = 30, .n_kv = 90, .d = 18, .rope = RK_ROPE_QK }, RK_ALL_KEYS, 1, 42 },
        { { .kind = RK_SOFTMAX, .n_q = 9, .n_kv = 9, .d = 6, .causal = 1 }, 8, 1, 43 },
    };
    cases[2].cfg.bias = bias_for(2, 9, 9, 1);
    cases[2].cfg.bias_len = rk_bias_len(9, 9);
    rk__sm_force_portable(1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "softmax portable case %zu", i);
        softmax_case(&cases[i], what, 0);
    }
    rk__sm_force_portable(0);
}

static void test_softmax_rope_bias_xpos(void **state)
{
    (void)state;
    grad_case cases[6] = {
        { { .kind = RK_SOFTMAX, .n_q = 7, .n_kv = 9, .d = 6, .rope = RK_ROPE_QK }, RK_ALL_KEYS, 1, 31 },
        { { .kind = RK_SOFTMAX, .n_q = 8, .n_kv = 8, .d = 10, .causal = 1, .rope = RK_ROPE_QK,
            .pos_offset = 5000 }, 7, 1, 32 },
        { { .kind = RK_SOFTMAX, .n_q = 6, .n_kv = 9, .d = 8, .causal = 1, .rope = RK_ROPE_QK }, RK_ALL_KEYS, 1, 33 },
        { { .kind = RK_SOFTMAX, .n_q = 7, .n_kv = 5, .d = 4, .d_v = 2 }, RK_ALL_KEYS, 1, 34 },
        { { .kind = RK_SOFTMAX, .n_q = 9, .n_kv = 9, .d = 6, .causal = 1 }, 8, 1, 35 },
        { { .kind = RK_SOFTMAX, .n_q = 9, .n_kv = 12, .d = 8, .causal = 1, .rope = RK_ROPE_QK,
            .xpos_scale_base = 16 }, RK_ALL_KEYS, 1, 36 },
    };
    /* half pairs with partial rotary; YaRN (attention factor != 1) */
    cases[1].cfg.rope_cfg = (rk_rope_config){ .style = RK_ROPE_HALF, .rotary_dim = 6 };
    cases[2].cfg.rope_cfg = (rk_rope_config){ .scaling = RK_SCALE_YARN, .factor = 4, .orig_ctx = 8 };
    /* biases: plain, and with -inf masks (causal, padded) */
    cases[3].cfg.bias = bias_for(0, 7, 5, 0);
    cases[3].cfg.bias_len = rk_bias_len(7, 5);
    cases[4].cfg.bias = bias_for(1, 9, 9, 1);
    cases[4].cfg.bias_len = rk_bias_len(9, 9);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "softmax rope/bias/xpos case %zu", i);
        softmax_case(&cases[i], what, 1);
    }
    /* the relative property for gradients: a common shift of every position */
    grad_check_shift(&cases[0], 1000, 1e-10, "softmax rope shift");
    grad_check_shift(&cases[2], 77, 1e-10, "softmax yarn shift");
}

/* ---- RoPE on its own ------------------------------------------------------------------------- */

/* dx = m R^T dy: against the explicit derivative of y = rope(x) by central differences, which
 * is exact here up to rounding (y is linear in x). */
static void test_rope_backward(void **state)
{
    (void)state;
    const rk_rope_config cfgs[] = {
        { .dim = 8 },
        { .dim = 10, .rotary_dim = 6, .style = RK_ROPE_HALF },
        { .dim = 8, .scaling = RK_SCALE_YARN, .factor = 4, .orig_ctx = 64 },
    };
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        rk_rope *r = NULL;
        assert_rk_ok(rk_rope_create(&r, &cfgs[c]));
        const size_t n = 5, w = 2 * cfgs[c].dim;          /* two heads per row */
        gsl_rng *g = rk_test_rng(40 + c);
        rk_matd x = rk_test_randnd(g, n, w, w + 1, 1.0), dy = rk_test_randnd(g, n, w, w, 1.0);
        rk_matd y = rk_test_matd(n, w, w), dx = rk_test_matd(n, w, w + 3);
        gsl_rng_free(g);
        const int64_t pos0 = 4090;                          /* across the table's end */
        assert_rk_ok(rk_rope_backward_d(r, &dy, &dx, pos0, NULL));
        /* L = sum(dy .* rope(x)) is linear in x: dL/dx_tj = sum(dy .* rope(e_tj)) */
        for (size_t t = 0; t < n; t++)
            for (size_t j = 0; j < w; j++) {
                double keep = x.data[t * x.ld + j];
                for (size_t jj = 0; jj < w; jj++) x.data[t * x.ld + jj] = jj == j ? 1.0 : 0.0;
                rk_matd xt = rk_matd_sub(x, t, 0, 1, w), yt = rk_matd_sub(y, t, 0, 1, w);
                assert_rk_ok(rk_rope_apply_d(r, &xt, &yt, pos0 + (int64_t)t, NULL, 0));
                double want = 0.0;
                for (size_t jj = 0; jj < w; jj++) want += dy.data[t * dy.ld + jj] * y.data[t * y.ld + jj];
                double got = dx.data[t * dx.ld + j];
                if (fabs(got - want) > 8 * DBL_EPSILON * (1.0 + fabs(want)) * rk_rope_mscale(r))
                    fail_msg("rope config %zu: dx[%zu][%zu] = %.17g, want %.17g", c, t, j, got, want);
                x.data[t * x.ld + j] = keep;
            }
        /* float path against double */
        rk_mat dyf = rk_test_mat(n, w, w), dxf = rk_test_mat(n, w, w);
        rk_test_d2f(&dy, &dyf);
        rk_test_f2d(&dyf, &dy);
        assert_rk_ok(rk_rope_backward_d(r, &dy, &dx, pos0, NULL));
        assert_rk_ok(rk_rope_backward(r, &dyf, &dxf, pos0, NULL));
        assert_mat_close(&dxf, &dx, 8 * UF, 8 * UF);
        rk_test_free(&dyf); rk_test_free(&dxf);
        rk_test_freed(&x); rk_test_freed(&dy); rk_test_freed(&y); rk_test_freed(&dx);
        rk_rope_destroy(r);
    }
}

/* ---- the API's refusals ---------------------------------------------------------------------- */

static void test_api_errors(void **state)
{
    (void)state;
    rk_attn_config c = { .kind = RK_UNIFORM, .n_q = 4, .n_kv = 4, .d = 2 };
    rk_attn *p = NULL;
    assert_rk_ok(rk_attn_create(&p, &c));
    double buf[6][16];
    memset(buf, 0, sizeof buf);
    rk_matd m[6];
    for (int i = 0; i < 6; i++) m[i] = rk_matd_view(buf[i], 4, 2, 2);
    /* q k v out dout dq ... dk dv alias: refused */
    assert_rk_error(rk_attn_backward_d(p, &m[0], &m[1], &m[2], &m[3], NULL, &m[4], &m[5], &m[5],
                                       &m[0], RK_ALL_KEYS), RK_EINVAL);
    assert_rk_error(rk_attn_backward_d(p, &m[0], &m[1], &m[2], &m[3], NULL, &m[4], &m[0], &m[5],
                                       &m[2], RK_ALL_KEYS), RK_EINVAL);
    assert_rk_error(rk_attn_backward_d(p, &m[0], &m[1], &m[2], &m[3], NULL, NULL, &m[5], &m[4],
                                       &m[2], RK_ALL_KEYS), RK_EINVAL);
    rk_matd bad = rk_matd_view(buf[5], 3, 2, 2);
    double o1[8], o2[8], o3[8];
    rk_matd g1 = rk_matd_view(o1, 4, 2, 2), g2 = rk_matd_view(o2, 4, 2, 2), g3 = rk_matd_view(o3, 4, 2, 2);
    assert_rk_error(rk_attn_backward_d(p, &m[0], &m[1], &m[2], &m[3], NULL, &bad, &g1, &g2, &g3,
                                       RK_ALL_KEYS), RK_EDIM);
    assert_rk_error(rk_attn_backward_d(p, &m[0], &m[1], &m[2], &m[3], NULL, &m[4], &g1, &g2, &g3,
                                       5), RK_EDIM);
    assert_rk_ok(rk_attn_backward_d(p, &m[0], &m[1], &m[2], &m[3], NULL, &m[4], &g1, &g2, &g3,
                                    RK_ALL_KEYS));
    assert_int_equal(rk_attn_saved_len(p), 0);
    assert_int_equal(rk_attn_saved_len(NULL), 0);
    rk_attn_destroy(p);
    /* a kind without a backward */
    rk_attn_config r = { .kind = RK_RPE_FFT, .n_q = 4, .n_kv = 4, .d = 2, .seed = 1 };
    assert_rk_ok(rk_attn_create(&p, &r));
    assert_rk_error(rk_attn_forward_d(p, &m[0], &m[1], &m[2], &g1, RK_ALL_KEYS, NULL), RK_EUNSUP);
    assert_rk_error(rk_attn_backward_d(p, &m[0], &m[1], &m[2], &m[3], NULL, &m[4], &g1, &g2, &g3,
                                       RK_ALL_KEYS), RK_EUNSUP);
    assert_non_null(strstr(rk_last_error(), "rpe-fft"));
    rk_attn_destroy(p);
    assert_rk_error(rk_attn_backward(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                     RK_ALL_KEYS), RK_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_softmax_plain),
        cmocka_unit_test(test_softmax_tiles),
        cmocka_unit_test(test_softmax_portable),
        cmocka_unit_test(test_softmax_rope_bias_xpos),
        cmocka_unit_test(test_rope_backward),
        cmocka_unit_test(test_api_errors),
    };
    return cmocka_run_group_tests_name("grad", tests, NULL, NULL);
}
