/* `ropekit decay` internals (experiments/decay.c) and its command line (cmd_decay, run in a
 * forked child): Figure 2's values at the docs/theory.md#figure-2 checkpoints against 40-digit
 * references, B(0) = (d/2 + 1)/2, symmetry, the scalings, the empirical statistics against brute
 * force, eq. (35) against the library's rotation, no (37) violation ever, a well-formed TSV and
 * every CLI error class. */
#include "check.h"
#include "../experiments/cli.h"
#include "../experiments/decay.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>

/* B(dist) for d = 128, base 10000 in 40-digit arithmetic (mpmath, exact theta): docs/theory.md#figure-2
 * rounds these to 6 decimals; we hold the double computation to 1e-9 relative. */
static const struct { double dist, b; } ref[] = {
    { 0, 32.5 },                      { 1, 31.538166142658084 },  { 2, 28.955988473564468 },
    { 5, 20.845357778356763 },        { 8, 19.817395130407558 },  { 10, 17.954137137084834 },
    { 20, 15.242430108721911 },       { 50, 12.629452488319241 }, { 100, 10.227329948505143 },
    { 150, 7.5884773072321475 },      { 183, 10.720226517855564 }, { 200, 7.2447707485105138 },
    { 236, 6.4149970291104224 },      { 256, 6.5430973229789418 }, { 0.5, 32.254692354643623 },
    { 7.74, 19.971793282534497 },     { 1000, 4.4707610342486829 },
    { 12345.678, 3.6281360792268438 },
};
/* The table of docs/theory.md#figure-2, as printed (6 decimals). */
static const struct { double dist, b; } paper[] = {
    { 0, 32.500000 }, { 1, 31.538166 }, { 2, 28.955988 }, { 5, 20.845358 }, { 10, 17.954137 },
    { 20, 15.242430 }, { 50, 12.629452 }, { 100, 10.227330 }, { 200, 7.244771 },
    { 256, 6.543097 }, { 8, 19.817395 }, { 150, 7.588477 }, { 183, 10.720227 },
    { 236, 6.414997 },
};

static void freqs(double base, size_t d, double *theta)
{
    rk_rope_config rc = { .base = base };
    assert_rk_ok(decay_freqs(&rc, d, theta));
}

static void test_checkpoints(void **state)
{
    (void)state;
    double th[64];
    freqs(10000.0, 128, th);
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
        double b = decay_bound(th, 64, ref[i].dist);
        if (!(fabs(b - ref[i].b) <= 1e-9 * ref[i].b))
            fail_msg("B(%g) = %.17g, want %.17g (rel err %.3g)", ref[i].dist, b, ref[i].b,
                     fabs(b - ref[i].b) / ref[i].b);
    }
    for (size_t i = 0; i < sizeof paper / sizeof paper[0]; i++) {
        double b = decay_bound(th, 64, paper[i].dist);
        if (!(fabs(b - paper[i].b) <= 5.000001e-7))
            fail_msg("B(%g) = %.9f does not round to the reference %.6f", paper[i].dist, b, paper[i].b);
    }
    /* the global minimum over integer distances 0..256 is at 236 (docs/theory.md#figure-2) */
    size_t arg = 0;
    double mn = INFINITY;
    for (size_t t = 0; t <= 256; t++) {
        double b = decay_bound(th, 64, (double)t);
        if (b < mn) { mn = b; arg = t; }
    }
    assert_int_equal(arg, 236);
    /* other bases and d, against mpmath too */
    double th5[64], th16[8];
    freqs(500000.0, 128, th5);
    freqs(10000.0, 16, th16);
    double got2[2] = { decay_bound(th5, 64, 100), decay_bound(th16, 8, 37) };
    double want2[2] = { 13.708787005639564, 2.5183042570862548 };
    assert_allclose(got2, want2, 2, 1e-9, 0);
    /* theta_i = base^(-2i/d), i = 0..: theta_0 = 1 (0-based, docs/theory.md#conventions) */
    assert_true(th[0] == 1.0);
    assert_allclose(&th[63], (double[]){ pow(10000.0, -126.0 / 128) }, 1, 1e-15, 0);
}

static void test_b0_and_symmetry(void **state)
{
    (void)state;
    static const size_t ds[] = { 2, 4, 16, 64, 128, 1024 };
    static const double bases[] = { 100, 10000, 500000, 1e6, 0.5 };
    double *th = malloc(512 * sizeof *th);
    assert_non_null(th);
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++)
        for (size_t j = 0; j < sizeof bases / sizeof bases[0]; j++) {
            size_t d = ds[i], h = d / 2;
            freqs(bases[j], d, th);
            /* S_j(0) = j exactly, so B(0) = (d/2 + 1)/2 exactly */
            assert_true(decay_bound(th, h, 0.0) == ((double)h + 1.0) / 2.0);
            assert_true(decay_bound(th, h, -0.0) == ((double)h + 1.0) / 2.0);
            for (double x = 0.37; x < 3000; x = x * 1.7 + 1) {
                double bp = decay_bound(th, h, x), bm = decay_bound(th, h, -x);
                if (!(bp == bm)) fail_msg("B(%g) = %.17g but B(-%g) = %.17g (d %zu base %g)", x, bp,
                                          x, bm, d, bases[j]);
                assert_true(bp > 0 && bp <= ((double)h + 1.0) / 2.0);
            }
        }
    free(th);
    /* decay_partial_sums: |S_j| <= j and the sum is the total */
    double t128[64], as[64];
    freqs(10000.0, 128, t128);
    double tot = decay_partial_sums(t128, 64, 42.5, as), s = 0.0;
    for (size_t j = 0; j < 64; j++) { assert_true(as[j] <= (double)(j + 1) + 1e-12); s += as[j]; }
    assert_allclose(&tot, &s, 1, 1e-15, 0);
    assert_allclose((double[]){ decay_sum_abs_s(t128, 64, 42.5) / 64 },
                    ((double[]){ decay_bound(t128, 64, 42.5) }), 1, 1e-15, 0);
    assert_true(decay_bound(t128, 0, 3.0) == 0.0);
}

static void test_scalings(void **state)
{
    (void)state;
    double th[64], lin[64], ntk[64], yarn[64];
    freqs(10000.0, 128, th);
    rk_rope_config rl = { .base = 10000, .scaling = RK_SCALE_LINEAR, .factor = 4 };
    rk_rope_config rn = { .base = 10000, .scaling = RK_SCALE_NTK, .factor = 4 };
    rk_rope_config ry = { .base = 10000, .scaling = RK_SCALE_YARN, .factor = 4, .orig_ctx = 4096 };
    assert_rk_ok(decay_freqs(&rl, 128, lin));
    assert_rk_ok(decay_freqs(&rn, 128, ntk));
    assert_rk_ok(decay_freqs(&ry, 128, yarn));
    /* linear: theta / s, so B_lin(x) = B(x / s) */
    for (double x = 0; x <= 1024; x += 13.25)
        assert_allclose((double[]){ decay_bound(lin, 64, x) }, ((double[]){ decay_bound(th, 64, x / 4) }),
                        1, 1e-12, 1e-12);
    /* NTK keeps theta_0 and ends at theta_{h-1} / s */
    assert_true(ntk[0] == 1.0);
    assert_allclose(&ntk[63], (double[]){ th[63] / 4 }, 1, 1e-13, 0);
    /* yarn keeps the fast dims (L theta / 2pi > 32) and interpolates the slow ones */
    assert_true(yarn[0] == th[0]);
    assert_allclose(&yarn[63], (double[]){ th[63] / 4 }, 1, 1e-15, 0);
    /* the same frequencies as the library's plan */
    rk_rope *r;
    rk_rope_config rc = rn;
    rc.dim = 128;
    assert_rk_ok(rk_rope_create(&r, &rc));
    assert_memory_equal(rk_rope_freqs(r), ntk, sizeof ntk);
    rk_rope_destroy(r);
    /* a configuration the library refuses is reported, not computed */
    rk_rope_config bad = { .base = 10000, .scaling = RK_SCALE_NTK, .factor = 2 };
    assert_int_equal(decay_freqs(&bad, 2, th), RK_EINVAL);
}

/* (35): Re sum_i h_i e^{i(m-n) theta_i} = (R_m q).(R_n k) with the library's rotation; the
 * (37) chain |z| <= abel <= perdraw. */
static void test_decay_one(void **state)
{
    (void)state;
    gsl_rng *g = rk_test_rng(11);
    double th[64], q[128], k[128], a[128], b[128];
    freqs(10000.0, 128, th);
    rk_rope *r;
    rk_rope_config rc = { .dim = 128 };
    assert_rk_ok(rk_rope_create(&r, &rc));
    for (int t = 0; t < 200; t++) {
        decay_draw(g, (decay_dist)(t % DECAY_NDIST), 128, q, k);
        int64_t m = (int64_t)gsl_rng_uniform_int(g, 5000), n = (int64_t)gsl_rng_uniform_int(g, 5000);
        rk_matd qv = rk_matd_view(q, 1, 128, 128), kv = rk_matd_view(k, 1, 128, 128);
        rk_matd av = rk_matd_view(a, 1, 128, 128), bv = rk_matd_view(b, 1, 128, 128);
        assert_rk_ok(rk_rope_apply_d(r, &qv, &av, m, NULL, 0));
        assert_rk_ok(rk_rope_apply_d(r, &kv, &bv, n, NULL, 0));
        double want = 0.0, nq = 0.0, nk = 0.0;
        for (size_t c = 0; c < 128; c++) { want += a[c] * b[c]; nq += q[c] * q[c]; nk += k[c] * k[c]; }
        double sc, az, abel, pb;
        decay_one(th, 64, q, k, (double)(m - n), &sc, &az, &abel, &pb);
        if (!(fabs(sc - want) <= 1e-11 * sqrt(nq * nk)))
            fail_msg("draw %d: Re z = %.17g, rotated score %.17g", t, sc, want);
        assert_true(fabs(sc) <= az * (1 + 1e-15));
        assert_true(az <= abel * (1 + 1e-12));
        assert_true(abel <= pb * (1 + 1e-12));
    }
    rk_rope_destroy(r);
    gsl_rng_free(g);
    /* the hand-checked d = 2 case: z = h_0 e^{i dist}, abel = |S_1||0 - h_0| = |h_0| */
    double q2[2] = { 3, 4 }, k2[2] = { 1, 0 }, t2[1] = { 1.0 }, sc, az, abel, pb;
    decay_one(t2, 1, q2, k2, 0.5, &sc, &az, &abel, &pb);
    double got4[4] = { sc, az, abel, pb }, want4[4] = { 3 * cos(0.5) - 4 * sin(0.5), 5, 5, 5 };
    assert_allclose(got4, want4, 4, 1e-15, 0);
}

/* decay_emp_stats against brute force over the same draws (decay_draw, same seed). */
static void test_emp_stats(void **state)
{
    (void)state;
    enum { D = 16, H = 8, N = 301 };
    double th[H];
    freqs(10000.0, D, th);
    for (int dist = 0; dist < DECAY_NDIST; dist++) {
        decay_emp *e;
        assert_rk_ok(decay_emp_create(&e, D, N, (decay_dist)dist, 77));
        gsl_rng *g = gsl_rng_alloc(gsl_rng_mt19937);
        gsl_rng_set(g, 77);
        static double Q[N][D], K[N][D];
        for (int t = 0; t < N; t++) decay_draw(g, (decay_dist)dist, D, Q[t], K[t]);
        gsl_rng_free(g);
        for (double x = -40; x <= 40; x += 9.5) {
            decay_stats st;
            decay_emp_stats(e, th, x, &st);
            double sc[N], ab[N], ae[N], pbs[N], mn = INFINITY;
            for (int t = 0; t < N; t++) {
                double az;
                decay_one(th, H, Q[t], K[t], x, &sc[t], &az, &ae[t], &pbs[t]);
                ab[t] = fabs(sc[t]);
                double m = 1 - az / pbs[t];
                if (m < mn) mn = m;
            }
            double mean = gsl_stats_mean(sc, 1, N), amean = gsl_stats_mean(ab, 1, N);
            gsl_sort(sc, 1, N);
            gsl_sort(ab, 1, N);
            gsl_sort(ae, 1, N);
            gsl_sort(pbs, 1, N);
            double got[] = { st.score_mean, st.score_median, st.score_q05, st.score_q95, st.abs_mean,
                             st.abs_median, st.abs_q05, st.abs_q95, st.abel_median, st.perdraw_median,
                             st.min_margin };
            double want[] = { mean, gsl_stats_median_from_sorted_data(sc, 1, N),
                              gsl_stats_quantile_from_sorted_data(sc, 1, N, 0.05),
                              gsl_stats_quantile_from_sorted_data(sc, 1, N, 0.95), amean,
                              gsl_stats_median_from_sorted_data(ab, 1, N),
                              gsl_stats_quantile_from_sorted_data(ab, 1, N, 0.05),
                              gsl_stats_quantile_from_sorted_data(ab, 1, N, 0.95),
                              gsl_stats_median_from_sorted_data(ae, 1, N),
                              gsl_stats_median_from_sorted_data(pbs, 1, N), mn };
            assert_allclose(got, want, 11, 1e-11, 1e-11);
            assert_int_equal(st.violations, 0);
            assert_true(st.score_q05 <= st.score_median && st.score_median <= st.score_q95);
            assert_true(st.abs_q95 <= st.abel_median * 10);   /* the bound is loose */
        }
        decay_emp_destroy(e);
    }
}

/* (37) is never violated: several d, distributions and distances, including d = 2 where it is an
 * equality for every draw (rounding must not count as a violation). */
static void test_no_violation(void **state)
{
    (void)state;
    static const size_t ds[] = { 2, 4, 16, 128 };
    double th[64];
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
        size_t d = ds[i];
        freqs(10000.0, d, th);
        for (int dist = 0; dist < DECAY_NDIST; dist++) {
            decay_emp *e;
            assert_rk_ok(decay_emp_create(&e, d, 400, (decay_dist)dist, 5 + (unsigned long)dist));
            for (double x = -300; x <= 300; x += 7.3) {
                decay_stats st;
                decay_emp_stats(e, th, x, &st);
                if (st.violations) fail_msg("d %zu dist %d distance %g: %zu violations", d, dist, x,
                                            st.violations);
                assert_true(st.min_margin >= -1e-12);
                assert_true(st.min_margin <= 1.0);
                if (d == 2) assert_true(fabs(st.min_margin) <= 1e-12);
            }
            decay_emp_destroy(e);
        }
    }
    /* q = k: the mean score decays (it is sum_i E|q~_i|^2 cos(dist theta_i) = 2 sum cos) */
    decay_emp *e;
    double t128[64];
    freqs(10000.0, 128, t128);
    assert_rk_ok(decay_emp_create(&e, 128, 2000, DECAY_SAME, 3));
    decay_stats s0, s1;
    decay_emp_stats(e, t128, 0.0, &s0);
    decay_emp_stats(e, t128, 200.0, &s1);
    double want = 0.0;
    for (size_t i = 0; i < 64; i++) want += 2 * cos(200.0 * t128[i]);
    assert_true(fabs(s0.score_mean - 128.0) < 5 * sqrt(2.0 * 128 / 2000) * 2);
    assert_true(fabs(s1.score_mean - want) < 2.0);
    assert_true(s1.score_mean < s0.score_mean / 2);
    decay_emp_destroy(e);
    /* invalid arguments */
    assert_int_equal(decay_emp_create(&e, 7, 10, DECAY_NORMAL, 1), RK_EDIM);
    assert_int_equal(decay_emp_create(&e, 8, 10, DECAY_NORMAL, 0), RK_EINVAL);
    assert_int_equal(decay_emp_create(&e, 8, 0, DECAY_NORMAL, 1), RK_EINVAL);
    assert_int_equal(decay_emp_create(&e, 8, 10, DECAY_NDIST, 1), RK_EINVAL);
    assert_int_equal(decay_emp_bytes(SIZE_MAX / 2, SIZE_MAX / 2), 0);
}

/* ---- the TSV ---------------------------------------------------------------------------------- */

/* Split s (modified) at tabs; returns the count. */
static size_t fields(char *s, char **f, size_t max)
{
    size_t n = 0;
    for (char *p = s;; ) {
        if (n < max) f[n] = p;
        n++;
        char *t = strchr(p, '\t');
        if (!t) break;
        *t = '\0';
        p = t + 1;
    }
    return n;
}

/* Check a whole decay table in buf (modified); returns the number of data rows. */
static size_t check_table(char *buf, size_t want_rows, const char *must_col)
{
    char *save, *line = strtok_r(buf, "\n", &save);
    assert_non_null(line);
    assert_true(strncmp(line, "# ropekit decay ", 16) == 0);
    assert_true(!strstr(line, "draws=") || strstr(line, "draws=0") || strstr(line, "seed="));
    line = strtok_r(NULL, "\n", &save);
    assert_true(line && line[0] == '#');
    line = strtok_r(NULL, "\n", &save);
    assert_non_null(line);
    char *hdr[64];
    size_t nh = fields(line, hdr, 64);
    assert_true(nh >= 2 && nh <= 64);
    assert_string_equal(hdr[0], "distance");
    assert_string_equal(hdr[1], "bound");
    int found = must_col == NULL;
    for (size_t i = 0; i < nh; i++) found |= must_col && strcmp(hdr[i], must_col) == 0;
    assert_true(found);
    size_t rows = 0;
    double prev = -INFINITY;
    while ((line = strtok_r(NULL, "\n", &save))) {
        char *f[64];
        size_t n = fields(line, f, 64);
        if (n != nh) fail_msg("row %zu has %zu fields, header %zu", rows, n, nh);
        for (size_t i = 0; i < n; i++) {
            char *end;
            errno = 0;
            double v = strtod(f[i], &end);
            if (end == f[i] || *end || !isfinite(v)) fail_msg("row %zu field %zu '%s'", rows, i, f[i]);
        }
        double dist = strtod(f[0], NULL);
        assert_true(dist > prev);
        prev = dist;
        rows++;
    }
    assert_int_equal(rows, want_rows);
    return rows;
}

static void test_tsv(void **state)
{
    (void)state;
    decay_run run;
    memset(&run, 0, sizeof run);
    run.d = 128;
    run.ncurves = 3;
    double bases[3] = { 10000, 100, 500000 };
    for (int c = 0; c < 3; c++) {
        run.curve[c].base = bases[c];
        snprintf(run.name[c], sizeof run.name[c], "b%g", bases[c]);
    }
    run.dmin = -8;
    run.step = 0.5;
    run.rows = decay_rows(-8, 24, 0.5);
    assert_int_equal(run.rows, 65);
    run.draws = 50;
    run.dist = DECAY_RADEMACHER;
    run.seed = 9;
    assert_rk_ok(decay_run_prepare(&run));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_rk_ok(decay_write(f, &run));
    fclose(f);
    char *copy = strdup(buf);
    check_table(buf, 65, "bound_b500000");
    /* bound == bound_b10000, and symmetric: row dist = -x equals row x */
    char *save, *line = strtok_r(copy, "\n", &save);
    line = strtok_r(NULL, "\n", &save);
    line = strtok_r(NULL, "\n", &save);
    char *h[64];
    size_t nh = fields(line, h, 64);
    assert_string_equal(h[2], "bound_b10000");
    assert_string_equal(h[nh - 1], "violations");
    double bd[65];
    size_t r = 0;
    while ((line = strtok_r(NULL, "\n", &save))) {
        char *fl[64];
        fields(line, fl, 64);
        assert_string_equal(fl[1], fl[2]);
        assert_string_equal(fl[nh - 1], "0");
        bd[r++] = strtod(fl[1], NULL);
    }
    for (size_t i = 0; i < 17; i++) assert_true(bd[i] == bd[32 - i]);   /* -8..8 by 0.5 */
    free(copy);
    free(buf);

    /* bound only */
    run.draws = 0;
    run.ncurves = 1;
    run.rows = decay_rows(0, 256, 1);
    assert_int_equal(run.rows, 257);
    buf = NULL;
    f = open_memstream(&buf, &len);
    assert_rk_ok(decay_write(f, &run));
    fclose(f);
    assert_null(strstr(buf, "score_mean"));
    check_table(buf, 257, NULL);
    free(buf);
    decay_run_free(&run);
    decay_run_free(&run);

    /* decay_rows edge cases */
    assert_int_equal(decay_rows(0, 1, 0.1), 11);          /* 1.0 reached despite 0.1 rounding */
    assert_int_equal(decay_rows(0, 0, 1), 1);
    assert_int_equal(decay_rows(1, 0, 1), 0);
    assert_int_equal(decay_rows(0, 1, 0), 0);
    assert_int_equal(decay_rows(0, 2.5, 1), 3);
}

/* ---- the command line, in a forked child ------------------------------------------------------- */

static char tmpdir[256];

/* Run cmd_decay(argv) in a child with stdout/stderr captured; returns the exit status. */
static int run_cmd(int (*cmd)(int, char **), const char *const *args, char *out, size_t outlen,
                   char *err, size_t errlen)
{
    char po[300], pe[300];
    snprintf(po, sizeof po, "%s/stdout", tmpdir);
    snprintf(pe, sizeof pe, "%s/stderr", tmpdir);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0600), fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fo < 0 || fe < 0) _exit(99);
        dup2(fo, 1);
        dup2(fe, 2);
        char *argv[32];
        int argc = 0;
        for (; args[argc]; argc++) argv[argc] = (char *)args[argc];
        argv[argc] = NULL;
        int rc = cmd(argc, argv);
        fflush(stdout);
        _exit(rc);
    }
    int st;
    assert_true(waitpid(pid, &st, 0) == pid);
    assert_true(WIFEXITED(st));
    FILE *f;
    if (out && (f = fopen(po, "r"))) { size_t n = fread(out, 1, outlen - 1, f); out[n] = '\0'; fclose(f); }
    if (err && (f = fopen(pe, "r"))) { size_t n = fread(err, 1, errlen - 1, f); err[n] = '\0'; fclose(f); }
    return WEXITSTATUS(st);
}

static void test_cli_errors(void **state)
{
    (void)state;
    char out[4096], err[4096], path[400];
    snprintf(path, sizeof path, "%s/x.tsv", tmpdir);
    static const struct { const char *args[8]; const char *msg; } cases[] = {
        { { "decay", "--dim", "7" }, "--dim 7 must be even" },
        { { "decay", "--dim", "0" }, "--dim 0 must be >= 2" },
        { { "decay", "--dim", "x" }, "not an integer" },
        { { "decay", "--base", "1" }, "must be > 0 and != 1" },
        { { "decay", "--base", "-3" }, "must be > 0 and != 1" },
        { { "decay", "--base", "10000,abc" }, "'abc' is not a number" },
        { { "decay", "--base", "10000,,100" }, "empty entry" },
        { { "decay", "--scaling", "foo" }, "unknown scaling" },
        { { "decay", "--scaling", "ntk" }, "one field, the factor" },
        { { "decay", "--scaling", "yarn:4" }, "two fields" },
        { { "decay", "--scaling", "linear:0" }, "must be > 0" },
        { { "decay", "--scaling", "none:3" }, "takes no value" },
        { { "decay", "--dim", "2", "--scaling", "ntk:4" }, "NTK" },
        { { "decay", "--base", "100,100" }, "given twice" },
        { { "decay", "--step", "0" }, "must be > 0" },
        { { "decay", "--max-distance", "-1" }, "below --min-distance" },
        { { "decay", "--step", "1e-9" }, "rows; at most" },
        { { "decay", "--draws", "-1" }, "must be >= 0" },
        { { "decay", "--dist", "cauchy" }, "unknown distribution 'cauchy'" },
        { { "decay", "--draws", "0", "--dist", "same" }, "--dist needs draws" },
        { { "decay", "--seed", "0" }, "must be >= 1" },
        { { "decay", "--draws", "10000000", "--dim", "1048576" }, "GiB" },
        { { "decay", "--out", "/nonexistent-dir/x.tsv" }, "cannot create a temporary file" },
        { { "decay", "--bogus" }, "unknown option '--bogus'" },
        { { "decay", "stray" }, "unexpected argument" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = run_cmd(cmd_decay, cases[i].args, out, sizeof out, err, sizeof err);
        if (rc != 2 || !strstr(err, cases[i].msg) || !strstr(err, "ropekit decay: ") ||
            strchr(err, '\n') != err + strlen(err) - 1)
            fail_msg("case %zu (%s %s): exit %d, stderr '%s', want '%s'", i, cases[i].args[1],
                     cases[i].args[2] ? cases[i].args[2] : "", rc, err, cases[i].msg);
    }
    /* success to a file: well formed, atomic (no temporary left), stdout empty */
    const char *ok[] = { "decay", "--max-distance", "64", "--draws", "20", "--base", "10000,500000",
                         "--scaling", "none,ntk:4", "--out", path, NULL };
    assert_int_equal(run_cmd(cmd_decay, ok, out, sizeof out, err, sizeof err), 0);
    assert_string_equal(out, "");
    assert_string_equal(err, "");
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_non_null(strstr(buf, "bound_b500000_ntk4"));
    check_table(buf, 65, "bound_b10000");
    int files = 0;
    struct stat sb;
    for (int k = 0; k < 3; k++) {
        const char *names[] = { "x.tsv", "stdout", "stderr" };
        char p2[400];
        snprintf(p2, sizeof p2, "%s/%s", tmpdir, names[k]);
        files += stat(p2, &sb) == 0;
    }
    assert_int_equal(files, 3);
    /* a failing run leaves the existing output untouched */
    const char *bad[] = { "decay", "--dim", "3", "--out", path, NULL };
    assert_int_equal(run_cmd(cmd_decay, bad, out, sizeof out, err, sizeof err), 2);
    f = fopen(path, "r");
    assert_non_null(f);
    static char buf2[1 << 20];
    size_t n2 = fread(buf2, 1, sizeof buf2 - 1, f);
    fclose(f);
    assert_int_equal(n2, n);
    /* stdout by default, --help exits 0 */
    const char *so[] = { "decay", "--draws", "0", "--max-distance", "3", NULL };
    assert_int_equal(run_cmd(cmd_decay, so, out, sizeof out, err, sizeof err), 0);
    assert_true(strncmp(out, "# ropekit decay", 15) == 0);
    const char *help[] = { "decay", "--help", NULL };
    assert_int_equal(run_cmd(cmd_decay, help, out, sizeof out, err, sizeof err), 0);
    assert_non_null(strstr(out, "--max-distance"));
}

/* No file other than the expected ones may remain in the directory (temporaries cleaned). */
static void test_cli_no_temporaries(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s | grep -v -x -e x.tsv -e stdout -e stderr)\"", tmpdir);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "%s/rk_decay_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    const char *names[] = { "x.tsv", "stdout", "stderr" };
    for (int k = 0; k < 3; k++) {
        char p[400];
        snprintf(p, sizeof p, "%s/%s", tmpdir, names[k]);
        unlink(p);
    }
    rmdir(tmpdir);
    return 0;
}

int main(void)
{
    gsl_set_error_handler_off();
    /* The forking tests run first, before any OpenMP or BLAS thread pool exists in this process
     * (neither survives a fork). */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_errors),
        cmocka_unit_test(test_cli_no_temporaries),
        cmocka_unit_test(test_checkpoints),
        cmocka_unit_test(test_b0_and_symmetry),
        cmocka_unit_test(test_scalings),
        cmocka_unit_test(test_decay_one),
        cmocka_unit_test(test_emp_stats),
        cmocka_unit_test(test_no_violation),
        cmocka_unit_test(test_tsv),
    };
    return cmocka_run_group_tests_name("drv_decay", tests, setup, teardown);
}
