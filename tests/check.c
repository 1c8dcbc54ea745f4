#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gsl/gsl_randist.h>

/* cmocka 1.1.5 has no fail-with-message-at-line: print, then fail at the caller's line. */
#define _fail_msg_line(file, line, ...) do { print_error("ERROR: " __VA_ARGS__); \
        print_error("\n"); _fail((file), (line)); } while (0)

void rk_check_allclose(const double *got, const double *want, size_t n, double rtol,
                       double atol, const char *what, const char *file, int line)
{
    size_t first = n, worst = 0;
    double worst_err = 0.0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs(got[i] - want[i]);
        int bad = !(err <= atol + rtol * fabs(want[i]));   /* NaN counts as bad */
        if (bad && first == n) first = i;
        if (!(err <= worst_err)) { worst_err = err; worst = i; }
    }
    if (first < n)
        _fail_msg_line(file, line, "%s: element %zu: got %.17g want %.17g; worst |err| %.3g at %zu"
                       " (rtol %.3g atol %.3g, n %zu)", what, first, got[first], want[first],
                       worst_err, worst, rtol, atol, n);
}

static void check_pair(double g, double w, size_t i, size_t j, double rtol, double atol,
                       size_t *bi, size_t *bj, double *bg, double *bw, int *bad,
                       double *worst)
{
    double err = fabs(g - w);
    if (!(err <= atol + rtol * fabs(w)) && !*bad) { *bad = 1; *bi = i; *bj = j; *bg = g; *bw = w; }
    if (!(err <= *worst)) *worst = err;
}

void rk_check_mat_close(const rk_mat *got, const rk_matd *want, double rtol, double atol,
                        const char *what, const char *file, int line)
{
    if (got->rows != want->rows || got->cols != want->cols)
        _fail_msg_line(file, line, "%s: shape %zux%zu vs %zux%zu", what, got->rows, got->cols,
                       want->rows, want->cols);
    size_t bi = 0, bj = 0; double bg = 0, bw = 0, worst = 0; int bad = 0;
    for (size_t i = 0; i < got->rows; i++)
        for (size_t j = 0; j < got->cols; j++)
            check_pair(got->data[i * got->ld + j], want->data[i * want->ld + j], i, j, rtol, atol,
                       &bi, &bj, &bg, &bw, &bad, &worst);
    if (bad)
        _fail_msg_line(file, line, "%s: [%zu,%zu]: got %.9g want %.17g; max |err| %.3g "
                       "(rtol %.3g atol %.3g, %zux%zu)", what, bi, bj, bg, bw, worst, rtol, atol,
                       got->rows, got->cols);
}

void rk_check_matd_close(const rk_matd *got, const rk_matd *want, double rtol, double atol,
                         const char *what, const char *file, int line)
{
    if (got->rows != want->rows || got->cols != want->cols)
        _fail_msg_line(file, line, "%s: shape %zux%zu vs %zux%zu", what, got->rows, got->cols,
                       want->rows, want->cols);
    size_t bi = 0, bj = 0; double bg = 0, bw = 0, worst = 0; int bad = 0;
    for (size_t i = 0; i < got->rows; i++)
        for (size_t j = 0; j < got->cols; j++)
            check_pair(got->data[i * got->ld + j], want->data[i * want->ld + j], i, j, rtol, atol,
                       &bi, &bj, &bg, &bw, &bad, &worst);
    if (bad)
        _fail_msg_line(file, line, "%s: [%zu,%zu]: got %.17g want %.17g; max |err| %.3g "
                       "(rtol %.3g atol %.3g, %zux%zu)", what, bi, bj, bg, bw, worst, rtol, atol,
                       got->rows, got->cols);
}

double rk_max_abs_diff(const rk_mat *a, const rk_matd *b)
{
    double m = 0;
    for (size_t i = 0; i < a->rows; i++)
        for (size_t j = 0; j < a->cols; j++) {
            double e = fabs(a->data[i * a->ld + j] - b->data[i * b->ld + j]);
            if (!(e <= m)) m = e;
        }
    return m;
}

double rk_max_abs_diffd(const rk_matd *a, const rk_matd *b)
{
    double m = 0;
    for (size_t i = 0; i < a->rows; i++)
        for (size_t j = 0; j < a->cols; j++) {
            double e = fabs(a->data[i * a->ld + j] - b->data[i * b->ld + j]);
            if (!(e <= m)) m = e;
        }
    return m;
}

gsl_rng *rk_test_rng(unsigned long seed)
{
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!r) fail_msg("gsl_rng_alloc failed");
    gsl_rng_set(r, seed);
    return r;
}

static void *xalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) fail_msg("test allocation of %zu bytes failed", n);
    return p;
}

rk_mat rk_test_mat(size_t rows, size_t cols, size_t ld)
{
    rk_mat m = { xalloc((rows ? rows : 1) * ld * sizeof(float)), rows, cols, ld };
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < ld; j++) m.data[i * ld + j] = j < cols ? 0.0f : NAN;
    return m;
}

rk_matd rk_test_matd(size_t rows, size_t cols, size_t ld)
{
    rk_matd m = { xalloc((rows ? rows : 1) * ld * sizeof(double)), rows, cols, ld };
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < ld; j++) m.data[i * ld + j] = j < cols ? 0.0 : NAN;
    return m;
}

rk_mat rk_test_randn(gsl_rng *r, size_t rows, size_t cols, size_t ld, double sigma)
{
    rk_mat m = rk_test_mat(rows, cols, ld);
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) m.data[i * ld + j] = (float)gsl_ran_gaussian(r, sigma);
    return m;
}

rk_matd rk_test_randnd(gsl_rng *r, size_t rows, size_t cols, size_t ld, double sigma)
{
    rk_matd m = rk_test_matd(rows, cols, ld);
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) m.data[i * ld + j] = gsl_ran_gaussian(r, sigma);
    return m;
}

void rk_test_f2d(const rk_mat *src, rk_matd *dst)
{
    for (size_t i = 0; i < src->rows; i++)
        for (size_t j = 0; j < src->cols; j++) dst->data[i * dst->ld + j] = src->data[i * src->ld + j];
}

void rk_test_d2f(const rk_matd *src, rk_mat *dst)
{
    for (size_t i = 0; i < src->rows; i++)
        for (size_t j = 0; j < src->cols; j++)
            dst->data[i * dst->ld + j] = (float)src->data[i * src->ld + j];
}

void rk_test_free(rk_mat *m)   { free(m->data); *m = (rk_mat){ 0 }; }
void rk_test_freed(rk_matd *m) { free(m->data); *m = (rk_matd){ 0 }; }
