/* Statistics helpers of the drivers (experiments/stats.c) against values worked out by hand:
 * median and GSL quantiles, the binomial order-statistic CI of the median, the t-interval of a
 * mean, least squares with the slope's t-interval (against the textbook formulas), exponents
 * recovered from synthetic power laws, and the log-log crossover. */
#include "check.h"
#include "../experiments/stats.h"

#include <math.h>
#include <string.h>
#include <gsl/gsl_errno.h>

#define CLOSE(got, want, tol) do { double g_ = (got), w_ = (want); \
        if (!(fabs(g_ - w_) <= (tol))) fail_msg("%s = %.17g, want %.17g (tol %g)", #got, g_, w_, \
                                                (double)(tol)); } while (0)

static void test_median_quantiles(void **state)
{
    (void)state;
    double x[] = { 3.1, 1.2, 2.385, 9.7, 4.4 }, copy[5];
    memcpy(copy, x, sizeof x);
    CLOSE(stats_median(x, 5), 3.1, 0);
    assert_memory_equal(x, copy, sizeof x);            /* the input is not reordered */
    double y[] = { 3.1, 1.2, 2.385, 9.7, 4.4, 5.5 };
    CLOSE(stats_median(y, 6), (3.1 + 4.4) / 2, 1e-15);
    /* GSL quantiles interpolate at (n - 1) p: sorted 1.2 2.385 3.1 4.4 9.7 */
    CLOSE(stats_quantile(x, 5, 0.25), 2.385, 0);
    CLOSE(stats_quantile(x, 5, 0.75), 4.4, 0);
    CLOSE(stats_quantile(x, 5, 0.1), 1.2 + 0.4 * (2.385 - 1.2), 1e-15);
    assert_true(isnan(stats_median(x, 0)));
    stats_summary s;
    assert_int_equal(stats_summarize(x, 5, 0.95, &s), 0);
    CLOSE(s.median, 3.1, 0);
    CLOSE(s.iqr, 4.4 - 2.385, 1e-15);
    CLOSE(s.min, 1.2, 0);
    CLOSE(s.max, 9.7, 0);
    /* n = 5 cannot reach 95%: [min, max] with coverage 1 - 2/32 */
    CLOSE(s.ci_lo, 1.2, 0);
    CLOSE(s.ci_hi, 9.7, 0);
    CLOSE(s.ci_level, 0.9375, 1e-15);
    assert_int_equal(stats_summarize(x, 0, 0.95, &s), -1);
}

/* [x_(j), x_(n+1-j)] covers the median with P(j <= B <= n - j), B ~ Bin(n, 1/2). */
static void test_median_ci_ranks(void **state)
{
    (void)state;
    size_t j, k;
    CLOSE(stats_median_ci_ranks(5, 0.95, &j, &k), 1.0 - 2.0 / 32.0, 1e-15);
    assert_int_equal(j, 1);
    assert_int_equal(k, 5);
    CLOSE(stats_median_ci_ranks(6, 0.95, &j, &k), 1.0 - 2.0 / 64.0, 1e-15);
    assert_int_equal(j, 1);
    assert_int_equal(k, 6);
    /* n = 10: j = 2 gives 1 - 2 (1 + 10) / 1024; j = 3 only 1 - 2 (1 + 10 + 45) / 1024 */
    CLOSE(stats_median_ci_ranks(10, 0.95, &j, &k), 1.0 - 22.0 / 1024.0, 1e-14);
    assert_int_equal(j, 2);
    assert_int_equal(k, 9);
    /* n = 20: the textbook (6, 15), P(B <= 5) = 21700 / 2^20 */
    CLOSE(stats_median_ci_ranks(20, 0.95, &j, &k), 1.0 - 2.0 * 21700.0 / 1048576.0, 1e-13);
    assert_int_equal(j, 6);
    assert_int_equal(k, 15);
    /* a lower level narrows it: n = 20 at 80% -> (7, 14), coverage 1 - 2 * 60460 / 2^20 */
    CLOSE(stats_median_ci_ranks(20, 0.80, &j, &k), 1.0 - 2.0 * 60460.0 / 1048576.0, 1e-13);
    assert_int_equal(j, 7);
    assert_int_equal(k, 14);
    /* and summarize picks those order statistics */
    double x[20];
    for (int i = 0; i < 20; i++) x[i] = 100.0 - 3.0 * i;   /* sorted: 43, 46, ..., 100 */
    stats_summary s;
    assert_int_equal(stats_summarize(x, 20, 0.95, &s), 0);
    CLOSE(s.ci_lo, 43.0 + 3.0 * 5, 0);
    CLOSE(s.ci_hi, 43.0 + 3.0 * 14, 0);
    CLOSE(s.median, (43.0 + 27 + 43.0 + 30) / 2, 1e-12);
}

static void test_mean_ci(void **state)
{
    (void)state;
    double x[] = { 2.385, 1.1, 3.3, 2.9, 4.0, 2.2, 3.7, 1.9, 2.6, 3.05 };
    double mean = 0.0, ss = 0.0;
    for (int i = 0; i < 10; i++) mean += x[i] / 10;
    for (int i = 0; i < 10; i++) ss += (x[i] - mean) * (x[i] - mean);
    double sd = sqrt(ss / 9), t = 2.2621571627982053;   /* t_{0.975, 9} */
    double m, lo, hi;
    assert_int_equal(stats_mean_ci(x, 10, 0.95, &m, &lo, &hi), 0);
    CLOSE(m, mean, 1e-14);
    CLOSE(lo, mean - t * sd / sqrt(10.0), 1e-12);
    CLOSE(hi, mean + t * sd / sqrt(10.0), 1e-12);
    assert_int_equal(stats_mean_ci(x, 1, 0.95, &m, &lo, &hi), 0);
    CLOSE(m, 2.385, 0);
    assert_true(isnan(lo) && isnan(hi));
    assert_int_equal(stats_mean_ci(x, 0, 0.95, &m, &lo, &hi), -1);
}

/* OLS against the textbook formulas: b = Sxy / Sxx, se(b) = sqrt(s^2 / Sxx),
 * s^2 = RSS / (n - 2), interval b -+ t_{n-2} se(b). */
static void test_fit_line(void **state)
{
    (void)state;
    double x[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
    double y[] = { 1.1, 1.9, 3.2, 3.9, 5.1, 6.2, 6.8, 8.1, 9.05 };
    const size_t n = 9;
    double mx = 0, my = 0, sxx = 0, sxy = 0, rss = 0;
    for (size_t i = 0; i < n; i++) { mx += x[i] / n; my += y[i] / n; }
    for (size_t i = 0; i < n; i++) {
        sxx += (x[i] - mx) * (x[i] - mx);
        sxy += (x[i] - mx) * (y[i] - my);
    }
    double b = sxy / sxx, a = my - b * mx;
    for (size_t i = 0; i < n; i++) rss += (y[i] - a - b * x[i]) * (y[i] - a - b * x[i]);
    double se = sqrt(rss / (n - 2) / sxx), t = 2.3646242515927849;   /* t_{0.975, 7} */
    stats_fit f;
    assert_int_equal(stats_fit_line(x, y, n, 0.95, &f), 0);
    assert_int_equal(f.n, n);
    CLOSE(f.b, b, 1e-13);
    CLOSE(f.a, a, 1e-13);
    CLOSE(f.se_b, se, 1e-13);
    CLOSE(f.b_lo, b - t * se, 1e-12);
    CLOSE(f.b_hi, b + t * se, 1e-12);
    CLOSE(f.sumsq, rss, 1e-13);
    assert_true(f.r2 > 0.99 && f.r2 <= 1.0);
    /* two points: a line but no interval; one point or equal x: no fit */
    assert_int_equal(stats_fit_line(x, y, 2, 0.95, &f), 0);
    CLOSE(f.b, 0.8, 1e-14);
    assert_true(isnan(f.b_lo) && isnan(f.b_hi));
    assert_int_equal(stats_fit_line(x, y, 1, 0.95, &f), -1);
    double same[] = { 3, 3, 3 };
    assert_int_equal(stats_fit_line(same, y, 3, 0.95, &f), -1);
}

/* Synthetic timings with a known exponent: exact power laws give it to rounding, noisy ones
 * inside the interval; non-positive and non-finite points are left out. */
static void test_fit_exponent(void **state)
{
    (void)state;
    double n[9], t[9], u[9];
    static const double noise[9] = { 0.02, -0.01, 0.015, -0.02, 0.005, 0.01, -0.015, 0.0, 0.01 };
    for (int i = 0; i < 9; i++) {
        n[i] = 256.0 * pow(2.0, i);
        t[i] = 3e-10 * n[i] * n[i];                           /* exponent 2 exactly */
        u[i] = 2e-7 * n[i] * exp(noise[i]);                   /* exponent 1, +-2% noise */
    }
    stats_fit f;
    assert_int_equal(stats_fit_loglog(n, t, 9, 0.95, &f), 0);
    CLOSE(f.b, 2.0, 1e-12);
    CLOSE(f.a, log(3e-10), 1e-9);
    assert_true(f.b_hi - f.b_lo < 1e-10);
    CLOSE(stats_fit_solve_loglog(&f, 3e-10 * 5000.0 * 5000.0), 5000.0, 1e-6);
    assert_int_equal(stats_fit_loglog(n, u, 9, 0.95, &f), 0);
    assert_true(f.b_lo < 1.0 && 1.0 < f.b_hi);
    assert_true(fabs(f.b - 1.0) < 0.02);
    assert_true(f.b_hi - f.b_lo < 0.05);
    /* a zero time, a NaN and a negative length are skipped */
    t[0] = 0.0;
    t[3] = NAN;
    n[5] = -1.0;
    assert_int_equal(stats_fit_loglog(n, t, 9, 0.95, &f), 0);
    assert_int_equal(f.n, 6);
    CLOSE(f.b, 2.0, 1e-12);
}

/* t_exact = c n^2 and t_linear = e n cross at n = e / c; log-log interpolation is exact. */
static void test_crossover(void **state)
{
    (void)state;
    double n[] = { 256, 512, 1024, 2048, 4096 }, a[5], b[5], x;
    for (int i = 0; i < 5; i++) { a[i] = 1e-9 * n[i] * n[i]; b[i] = 1e-6 * n[i]; }
    assert_int_equal(stats_crossover(n, a, b, 5, &x), 1);
    CLOSE(x, 1000.0, 1e-9);
    /* B below A from the start: "at or below the first length" */
    for (int i = 0; i < 5; i++) b[i] = 1e-9 * n[i];
    assert_int_equal(stats_crossover(n, a, b, 5, &x), 0);
    CLOSE(x, 256.0, 0);
    /* never below */
    for (int i = 0; i < 5; i++) b[i] = 1e-3 * n[i];
    assert_int_equal(stats_crossover(n, a, b, 5, &x), -1);
    assert_true(isnan(x));
    /* a missing point (NaN) is skipped: crossing between 512 and 2048 */
    for (int i = 0; i < 5; i++) b[i] = 1e-6 * n[i];
    a[2] = NAN;
    assert_int_equal(stats_crossover(n, a, b, 5, &x), 1);
    CLOSE(x, 1000.0, 1e-9);
}

int main(void)
{
    gsl_set_error_handler_off();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_median_quantiles),
        cmocka_unit_test(test_median_ci_ranks),
        cmocka_unit_test(test_mean_ci),
        cmocka_unit_test(test_fit_line),
        cmocka_unit_test(test_fit_exponent),
        cmocka_unit_test(test_crossover),
    };
    return cmocka_run_group_tests_name("drv_stats", tests, NULL, NULL);
}
