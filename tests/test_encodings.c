/* Classic encodings (lib/encodings.c) on hand-computed cases: T5 buckets (bidirectional and
 * causal, defaults 32 / 128), the bias array layout, ALiBi slopes (power-of-two and other head
 * counts, as the official get_slopes), the sinusoidal encoding (eq. 4), xPos factors; and
 * every error. */
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gsl/gsl_errno.h>

static size_t bucket(int64_t t, int bidir)
{
    size_t b = 999;
    assert_rk_ok(rk_t5_bucket(t, bidir, 0, 0, &b));
    return b;
}

/* Bidirectional, 32 buckets, max distance 128: 16 per side, exact below 8, then
 * 8 + trunc(ln(n/8) / ln(16) * 8) up to 15; t > 0 (key after the query) adds 16.
 * Worked by hand: n = 11: ln 1.375 / ln 16 * 8 = 0.919 -> 8; 12: 1.170 -> 9; 16: 2 -> 10;
 * 22: 2.919 -> 10; 23: 3.047 -> 11; 32: 4 -> 12; 45: 4.984 -> 12; 46: 5.047 -> 13;
 * 64: 6 -> 14; 90: 6.984 -> 14; 91: 7.016 -> 15; 128: 8 -> capped 15. */
static void test_t5_bidirectional(void **state)
{
    (void)state;
    static const struct { int64_t n; size_t b; } tab[] = {
        { 0, 0 }, { 1, 1 }, { 7, 7 }, { 8, 8 }, { 11, 8 }, { 12, 9 }, { 15, 9 }, { 16, 10 },
        { 22, 10 }, { 23, 11 }, { 31, 11 }, { 32, 12 }, { 45, 12 }, { 46, 13 }, { 63, 13 },
        { 64, 14 }, { 90, 14 }, { 91, 15 }, { 127, 15 }, { 128, 15 }, { 100000, 15 },
        { INT64_MAX, 15 },
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        /* key before the query (t = -n) and, for n > 0, after it (t = +n: + 16) */
        if (bucket(-tab[i].n, 1) != tab[i].b)
            fail_msg("t = -%lld: bucket %zu, want %zu", (long long)tab[i].n, bucket(-tab[i].n, 1),
                     tab[i].b);
        if (tab[i].n > 0 && bucket(tab[i].n, 1) != tab[i].b + 16)
            fail_msg("t = +%lld: bucket %zu, want %zu", (long long)tab[i].n, bucket(tab[i].n, 1),
                     tab[i].b + 16);
    }
    assert_int_equal(bucket(INT64_MIN, 1), 15);
}

/* Causal: 32 buckets on n = max(-t, 0), exact below 16, then 16 + trunc(ln(n/16) / ln 8 * 16)
 * up to 31; keys after the query share bucket 0. By hand: 19: 1.322 -> 17; 20: 1.717 -> 17;
 * 22: 2.451 -> 18; 32: 5.333 -> 21; 64: 10.667 -> 26; 127: 15.94 -> 31; 128: 16 -> 31. */
static void test_t5_causal(void **state)
{
    (void)state;
    static const struct { int64_t t; size_t b; } tab[] = {
        { 5, 0 }, { 1, 0 }, { 0, 0 }, { -1, 1 }, { -15, 15 }, { -16, 16 }, { -19, 17 },
        { -20, 17 }, { -22, 18 }, { -32, 21 }, { -64, 26 }, { -127, 31 }, { -128, 31 },
        { -5000, 31 },
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (bucket(tab[i].t, 0) != tab[i].b)
            fail_msg("t = %lld: bucket %zu, want %zu", (long long)tab[i].t, bucket(tab[i].t, 0),
                     tab[i].b);
    /* other parameters: 8 buckets causal, max distance 20: exact below 4, then
     * 4 + trunc(ln(n/4) / ln 5 * 4): n = 9: 2.015 -> 6; n = 8: 1.723 -> 5 */
    size_t b;
    assert_rk_ok(rk_t5_bucket(-8, 0, 8, 20, &b));
    assert_int_equal(b, 5);
    assert_rk_ok(rk_t5_bucket(-9, 0, 8, 20, &b));
    assert_int_equal(b, 6);
    assert_rk_ok(rk_t5_bucket(-3, 0, 8, 20, &b));
    assert_int_equal(b, 3);
}

/* The bias layout: index idx holds offset t = idx - (n_kv - 1); a table maps buckets to values. */
static void test_bias_t5_layout(void **state)
{
    (void)state;
    const size_t n_q = 3, n_kv = 40, len = n_q + n_kv - 1;
    assert_int_equal(rk_bias_len(n_q, n_kv), len);
    assert_int_equal(rk_bias_len(0, 5), 0);
    double table[32], *b = malloc(len * sizeof *b);
    assert_non_null(b);
    for (size_t i = 0; i < 32; i++) table[i] = 0.5 * (double)i - 3.0;
    for (int bidir = 0; bidir < 2; bidir++) {
        assert_rk_ok(rk_bias_t5(b, n_q, n_kv, table, bidir, 0, 0));
        for (size_t idx = 0; idx < len; idx++) {
            int64_t t = (int64_t)idx - (int64_t)(n_kv - 1);
            assert_true(b[idx] == table[bucket(t, bidir)]);
        }
        assert_true(b[0] == table[bidir ? 12 : 22]);          /* t = -39 */
        assert_true(b[len - 1] == table[bidir ? 18 : 0]);     /* t = +2 */
    }
    /* the stand-in table: -ln(1 + smallest distance of the bucket) */
    assert_rk_ok(rk_bias_t5(b, n_q, n_kv, NULL, 1, 0, 0));
    assert_true(b[n_kv - 1] == 0.0);                          /* t = 0: bucket 0 */
    assert_true(b[n_kv - 2] == -log1p(1.0));                  /* t = -1 */
    assert_true(b[n_kv - 1 - 11] == -log1p(8.0));             /* t = -11: bucket 8 from 8 */
    assert_true(b[n_kv - 1 - 13] == -log1p(12.0));            /* bucket 9 starts at 12 */
    assert_true(b[n_kv - 1 + 1] == -log1p(1.0));              /* t = +1: same distance */
    assert_true(b[0] == -log1p(32.0));                        /* t = -39: bucket 12 from 32 */
    assert_rk_ok(rk_bias_t5(b, n_q, n_kv, NULL, 0, 0, 0));
    assert_true(b[n_kv - 1 - 20] == -log1p(19.0));            /* bucket 17 starts at 19 */
    assert_true(b[len - 1] == 0.0);                           /* future: bucket 0 */
    free(b);
}

/* ALiBi slopes, the official rule: 8 heads 1/2 .. 1/256; 12 heads: the 8 of 8, then 2^-0.5,
 * 2^-1.5, 2^-2.5, 2^-3.5 (every other slope of 16 heads); 1 head: 2^-8; 6: 4 of 4, then
 * 2^-1, 2^-3. */
static void test_alibi(void **state)
{
    (void)state;
    double s[16];
    assert_rk_ok(rk_alibi_slopes(s, 8));
    for (int h = 0; h < 8; h++) assert_true(s[h] == ldexp(1.0, -(h + 1)));
    assert_rk_ok(rk_alibi_slopes(s, 4));
    for (int h = 0; h < 4; h++) assert_true(s[h] == ldexp(1.0, -2 * (h + 1)));
    assert_rk_ok(rk_alibi_slopes(s, 1));
    assert_true(s[0] == 1.0 / 256.0);
    assert_rk_ok(rk_alibi_slopes(s, 16));
    for (int h = 0; h < 16; h++) {
        double want = pow(2.0, -0.5 * (h + 1));
        assert_allclose(&s[h], &want, 1, 1e-15, 0.0);
    }
    assert_rk_ok(rk_alibi_slopes(s, 12));
    for (int h = 0; h < 8; h++) assert_true(s[h] == ldexp(1.0, -(h + 1)));
    double want12[4] = { pow(2.0, -0.5), pow(2.0, -1.5), pow(2.0, -2.5), pow(2.0, -3.5) };
    assert_allclose(s + 8, want12, 4, 1e-15, 0.0);
    assert_rk_ok(rk_alibi_slopes(s, 6));
    double want6[6] = { 0.25, 0.0625, 1.0 / 64, 1.0 / 256, 0.5, 0.125 };
    assert_allclose(s, want6, 6, 1e-15, 0.0);
    assert_rk_error(rk_alibi_slopes(s, 0), RK_EINVAL);

    /* the bias: -slope |t|, offsets -(n_kv - 1) .. n_q - 1 */
    double b[7];
    assert_rk_ok(rk_bias_alibi(b, 3, 5, 0.5));
    double want[7] = { -2.0, -1.5, -1.0, -0.5, 0.0, -0.5, -1.0 };
    assert_allclose(b, want, 7, 0.0, 0.0);
    assert_false(signbit(b[4]));                               /* +0 at t = 0 */
    assert_rk_error(rk_bias_alibi(b, 3, 5, -0.1), RK_EINVAL);
    assert_rk_error(rk_bias_alibi(b, 3, 5, NAN), RK_EINVAL);
    assert_rk_error(rk_bias_alibi(b, 0, 5, 0.5), RK_EDIM);
}

/* Sinusoidal encoding, eq. 4: d = 4, position 1: (sin 1, cos 1, sin 0.01, cos 0.01); odd d;
 * a base; float and double; added to x. */
static void test_sinusoidal(void **state)
{
    (void)state;
    rk_matd x = rk_test_matd(3, 4, 6);
    for (size_t r = 0; r < 3; r++)
        for (size_t c = 0; c < 4; c++) x.data[r * x.ld + c] = (double)c;
    assert_rk_ok(rk_sinusoidal_add_d(&x, 0, 0.0));
    double row0[4] = { 0.0, 2.0, 2.0, 4.0 };            /* sin 0 = 0, cos 0 = 1 added */
    double row1[4] = { sin(1.0), 1.0 + cos(1.0), 2.0 + sin(0.01), 3.0 + cos(0.01) };
    double row2[4] = { sin(2.0), 1.0 + cos(2.0), 2.0 + sin(0.02), 3.0 + cos(0.02) };
    assert_allclose(x.data, row0, 4, 1e-15, 1e-15);
    assert_allclose(x.data + x.ld, row1, 4, 1e-15, 1e-15);
    assert_allclose(x.data + 2 * x.ld, row2, 4, 1e-15, 1e-15);
    assert_true(isnan(x.data[4]));                       /* padding untouched */
    rk_test_freed(&x);

    /* odd d = 3, base 100, positions from -2: (sin(p), cos(p), sin(p / 100^(2/3))) */
    rk_mat y = rk_test_mat(2, 3, 3);
    memset(y.data, 0, 6 * sizeof(float));
    assert_rk_ok(rk_sinusoidal_add(&y, -2, 100.0));
    double f = pow(100.0, -2.0 / 3.0);
    double w0[3] = { sin(-2.0), cos(-2.0), sin(-2.0 * f) }, w1[3] = { sin(-1.0), cos(-1.0), sin(-f) };
    for (int c = 0; c < 3; c++) {
        double g0 = y.data[c], g1 = y.data[3 + c];
        assert_allclose(&g0, &w0[c], 1, 1e-7, 1e-7);
        assert_allclose(&g1, &w1[c], 1, 1e-7, 1e-7);
    }
    assert_rk_error(rk_sinusoidal_add(&y, 0, 1.0), RK_EINVAL);
    assert_rk_error(rk_sinusoidal_add(&y, 0, -5.0), RK_EINVAL);
    rk_mat bad = y;
    bad.ld = 2;
    assert_rk_error(rk_sinusoidal_add(&bad, 0, 0.0), RK_EDIM);
    rk_matd badd = { NULL, 2, 3, 3 };
    assert_rk_error(rk_sinusoidal_add_d(&badd, 0, 0.0), RK_EINVAL);
    rk_test_free(&y);
}

/* xPos factors: zeta_i = (2i/r + gamma) / (1 + gamma); r = 8, gamma 0.4: (i/4 + 0.4) / 1.4. */
static void test_xpos_zeta(void **state)
{
    (void)state;
    double z[4], want[4] = { 0.4 / 1.4, 0.65 / 1.4, 0.9 / 1.4, 1.15 / 1.4 };
    assert_rk_ok(rk_xpos_zeta(z, 8, 0.0));
    assert_allclose(z, want, 4, 1e-15, 0.0);
    assert_rk_ok(rk_xpos_zeta(z, 4, 1.0));
    double want2[2] = { 0.5, 0.75 };
    assert_allclose(z, want2, 2, 1e-15, 0.0);
    assert_rk_error(rk_xpos_zeta(z, 7, 0.4), RK_EDIM);
    assert_rk_error(rk_xpos_zeta(z, 0, 0.4), RK_EDIM);
    assert_rk_error(rk_xpos_zeta(z, 8, -1.0), RK_EINVAL);
    assert_rk_error(rk_xpos_zeta(z, 8, INFINITY), RK_EINVAL);
}

static void test_t5_errors(void **state)
{
    (void)state;
    size_t b;
    double out[9], table[4] = { 0, 1, NAN, 3 };
    assert_rk_error(rk_t5_bucket(0, 1, 3, 0, &b), RK_EINVAL);     /* 1 per side, max_exact 0 */
    assert_rk_error(rk_t5_bucket(0, 0, 1, 0, &b), RK_EINVAL);
    assert_rk_ok(rk_t5_bucket(-1, 0, 2, 2, &b));                  /* the smallest valid */
    assert_int_equal(b, 1);
    assert_rk_error(rk_t5_bucket(0, 1, 32, 8, &b), RK_EINVAL);    /* max_distance <= max_exact */
    assert_rk_error(rk_bias_t5(out, 5, 5, table, 0, 4, 16), RK_ENONFINITE);
    table[2] = INFINITY;
    assert_rk_error(rk_bias_t5(out, 5, 5, table, 0, 4, 16), RK_ENONFINITE);
    table[2] = -INFINITY;                                          /* a masked bucket: fine */
    assert_rk_ok(rk_bias_t5(out, 5, 5, table, 0, 4, 16));
    assert_rk_error(rk_bias_t5(out, 5, 0, NULL, 0, 0, 0), RK_EDIM);
    assert_rk_error(rk_bias_t5(out, 5, 5, NULL, 1, 2, 0), RK_EINVAL);
}

int main(void)
{
    gsl_set_error_handler_off();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_t5_bidirectional),
        cmocka_unit_test(test_t5_causal),
        cmocka_unit_test(test_bias_t5_layout),
        cmocka_unit_test(test_alibi),
        cmocka_unit_test(test_sinusoidal),
        cmocka_unit_test(test_xpos_zeta),
        cmocka_unit_test(test_t5_errors),
    };
    return cmocka_run_group_tests_name("encodings", tests, NULL, NULL);
}
