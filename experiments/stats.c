/* Statistics helpers on GSL (see stats.h). */
#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_fit.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>

static double *sorted_copy(const double *x, size_t n)
{
    double *c = malloc((n ? n : 1) * sizeof *c);
    if (!c) return NULL;
    memcpy(c, x, n * sizeof *c);
    gsl_sort(c, 1, n);
    return c;
}

double stats_quantile(const double *x, size_t n, double p)
{
    if (n == 0) return NAN;
    double *c = sorted_copy(x, n);
    if (!c) return NAN;
    double q = gsl_stats_quantile_from_sorted_data(c, 1, n, p);
    free(c);
    return q;
}

double stats_median(const double *x, size_t n)
{
    if (n == 0) return NAN;
    double *c = sorted_copy(x, n);
    if (!c) return NAN;
    double q = gsl_stats_median_from_sorted_data(c, 1, n);
    free(c);
    return q;
}

/* P(j <= B <= n - j) for B ~ Binomial(n, 1/2): the coverage of [x_(j), x_(n+1-j)]. */
static double coverage(size_t j, size_t n)
{
    if (j == 0 || 2 * j > n) return 0.0;
    /* P(B <= n-j) - P(B <= j-1) */
    return gsl_cdf_binomial_P((unsigned)(n - j), 0.5, (unsigned)n) -
           gsl_cdf_binomial_P((unsigned)(j - 1), 0.5, (unsigned)n);
}

double stats_median_ci_ranks(size_t n, double level, size_t *j, size_t *k)
{
    if (n == 0) { *j = *k = 0; return 0.0; }
    size_t best = 1;
    /* coverage falls as j grows: take the largest j that still reaches the level */
    for (size_t t = 1; 2 * t <= n + 1; t++) {
        if (coverage(t, n) >= level) best = t;
        else break;
    }
    *j = best;
    *k = n + 1 - best;
    return n == 1 ? 0.0 : coverage(best, n);
}

int stats_summarize(const double *x, size_t n, double level, stats_summary *s)
{
    memset(s, 0, sizeof *s);
    if (n == 0) return -1;
    double *c = sorted_copy(x, n);
    if (!c) return -1;
    s->n = n;
    s->median = gsl_stats_median_from_sorted_data(c, 1, n);
    s->q1 = gsl_stats_quantile_from_sorted_data(c, 1, n, 0.25);
    s->q3 = gsl_stats_quantile_from_sorted_data(c, 1, n, 0.75);
    s->iqr = s->q3 - s->q1;
    s->min = c[0];
    s->max = c[n - 1];
    size_t j, k;
    s->ci_level = stats_median_ci_ranks(n, level, &j, &k);
    s->ci_lo = c[j - 1];
    s->ci_hi = c[k - 1];
    free(c);
    return 0;
}

int stats_mean_ci(const double *x, size_t n, double level, double *mean, double *lo, double *hi)
{
    if (n == 0) { *mean = *lo = *hi = NAN; return -1; }
    *mean = gsl_stats_mean(x, 1, n);
    if (n < 2) { *lo = *hi = NAN; return 0; }
    double sd = gsl_stats_sd_m(x, 1, n, *mean);
    double t = gsl_cdf_tdist_Pinv(0.5 + level / 2.0, (double)(n - 1));
    double h = t * sd / sqrt((double)n);
    *lo = *mean - h;
    *hi = *mean + h;
    return 0;
}

int stats_fit_line(const double *x, const double *y, size_t n, double level, stats_fit *f)
{
    memset(f, 0, sizeof *f);
    f->n = n;
    f->a = f->b = f->b_lo = f->b_hi = f->se_a = f->se_b = f->r2 = NAN;
    if (n < 2) return -1;
    double c00, c01, c11, sumsq;
    if (gsl_fit_linear(x, 1, y, 1, n, &f->a, &f->b, &c00, &c01, &c11, &sumsq) != 0) return -1;
    if (!isfinite(f->a) || !isfinite(f->b)) return -1;   /* all x equal */
    f->sumsq = sumsq;
    f->cov_ab = c01;
    f->se_a = sqrt(c00);
    f->se_b = sqrt(c11);
    double tss = gsl_stats_tss(y, 1, n);
    f->r2 = tss > 0.0 ? 1.0 - sumsq / tss : 1.0;
    if (n >= 3) {
        /* gsl_fit_linear's covariance uses s^2 = sumsq / (n - 2) already */
        double t = gsl_cdf_tdist_Pinv(0.5 + level / 2.0, (double)(n - 2));
        f->b_lo = f->b - t * f->se_b;
        f->b_hi = f->b + t * f->se_b;
    }
    return 0;
}

int stats_fit_loglog(const double *x, const double *y, size_t n, double level, stats_fit *f)
{
    double *lx = malloc((n ? n : 1) * sizeof *lx), *ly = malloc((n ? n : 1) * sizeof *ly);
    int rc = -1;
    if (lx && ly) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (isfinite(x[i]) && isfinite(y[i]) && x[i] > 0.0 && y[i] > 0.0) {
                lx[k] = log(x[i]);
                ly[k] = log(y[i]);
                k++;
            }
        rc = stats_fit_line(lx, ly, k, level, f);
    } else {
        memset(f, 0, sizeof *f);
    }
    free(lx);
    free(ly);
    return rc;
}

double stats_fit_solve_loglog(const stats_fit *f, double y)
{
    if (!(f->b != 0.0) || !(y > 0.0)) return NAN;
    return exp((log(y) - f->a) / f->b);
}

int stats_crossover(const double *x, const double *a, const double *b, size_t n,
                    double *x_cross)
{
    *x_cross = NAN;
    int have_prev = 0;
    double px = 0.0, pr = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!(isfinite(a[i]) && isfinite(b[i]) && a[i] > 0.0 && b[i] > 0.0 && x[i] > 0.0))
            continue;
        double r = log(b[i] / a[i]);   /* < 0: B is below A */
        if (r < 0.0) {
            if (!have_prev) { *x_cross = x[i]; return 0; }
            /* r goes from pr >= 0 to r < 0 between log px and log x[i] */
            double lx = log(px) + (log(x[i]) - log(px)) * pr / (pr - r);
            *x_cross = exp(lx);
            return 1;
        }
        have_prev = 1;
        px = x[i];
        pr = r;
    }
    return -1;
}
