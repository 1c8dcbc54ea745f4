/* Statistics for the experiment drivers (scaling, approx), on GSL.
 *
 *   stats_summary s;  stats_summarize(times, n, 0.95, &s);   // median, IQR, CI of the median
 *   stats_mean_ci(errs, n, 0.95, &mean, &lo, &hi);            // mean and t-interval
 *   stats_fit f;  stats_fit_line(log_n, log_t, k, 0.95, &f);  // slope b with its CI
 *
 * Conventions: quantiles are GSL's (gsl_stats_quantile_from_sorted_data: linear interpolation
 * between order statistics, (n-1)p). Inputs are never reordered (the functions sort copies).
 *
 * CI of the median: the distribution-free order-statistic interval [x_(j), x_(n+1-j)] (sorted,
 * 1-based) with the largest j whose coverage P(j <= B <= n-j), B ~ Binomial(n, 1/2), is at
 * least `level` (gsl_cdf_binomial_P). With few samples no j reaches the level (n = 5 gives at
 * most 1 - 2/32 = 93.75%, from [min, max]); then j = 1 and the coverage achieved is reported.
 * Mean CI: mean +- t_{n-1}((1+level)/2) sd / sqrt(n) (gsl_cdf_tdist_Pinv).
 * Fit: ordinary least squares y = a + b x (gsl_fit_linear); b +- t_{k-2}((1+level)/2) se(b).
 */
#ifndef RK_STATS_H
#define RK_STATS_H

#include <stddef.h>

typedef struct {
    size_t n;
    double median, q1, q3, iqr;   /* quartiles: GSL quantiles 0.25 / 0.75                    */
    double min, max;
    double ci_lo, ci_hi;          /* CI of the median                                        */
    double ci_level;              /* coverage actually achieved (>= the level asked, unless n
                                     is too small: then [min, max] and its coverage)         */
} stats_summary;

/* Sorted copy helpers: median and p-quantile (0 <= p <= 1) of x[0..n-1]; NaN if n == 0. */
double stats_median(const double *x, size_t n);
double stats_quantile(const double *x, size_t n, double p);

/* The order-statistic CI of the median: 1-based ranks j <= k into *j, *k, coverage returned
 * (0 when n == 0). */
double stats_median_ci_ranks(size_t n, double level, size_t *j, size_t *k);

/* All of the above at once. 0, or -1 if n == 0 or allocation fails. */
int stats_summarize(const double *x, size_t n, double level, stats_summary *s);

/* Mean with its t-interval at `level` (n == 1: lo = hi = NaN, no spread known).
 * Returns 0, or -1 if n == 0. */
int stats_mean_ci(const double *x, size_t n, double level, double *mean, double *lo, double *hi);

typedef struct {
    size_t n;
    double a, b;              /* y = a + b x                                                  */
    double se_a, se_b, cov_ab;
    double b_lo, b_hi;        /* CI of b at `level` (NaN with n < 3: no residual dof)          */
    double sumsq;             /* residual sum of squares                                      */
    double r2;
} stats_fit;

/* Least-squares line through (x_i, y_i), i < n. 0, or -1 if n < 2 or every x is equal. */
int stats_fit_line(const double *x, const double *y, size_t n, double level, stats_fit *f);
/* The same on log-log axes: log y = a + b log x (natural logs); points with x <= 0, y <= 0 or
 * a non-finite value are left out (the count used is f->n). */
int stats_fit_loglog(const double *x, const double *y, size_t n, double level, stats_fit *f);

/* x where the fitted line reaches y (log-log fit: x with exp(a) x^b = y). NaN if b == 0. */
double stats_fit_solve_loglog(const stats_fit *f, double y);

/* Crossover: the first x where curve B is below curve A (both sampled at the increasing
 * x[0..n-1], positive values), interpolated linearly in log x and log(B/A) between the
 * last grid point where B >= A and the first where B < A (exact for power laws).
 * Returns 1 and *x_cross if it happens inside the grid; 0 if B < A already at x[0]
 * (*x_cross = x[0], "at or below"); -1 if never (*x_cross = NaN). Points where either
 * value is not finite and positive are skipped. */
int stats_crossover(const double *x, const double *a, const double *b, size_t n,
                    double *x_cross);

#endif
