/* Shared test helpers: cmocka includes, closeness assertions that report the worst element,
 * and seeded random views whose padding (columns cols..ld-1) is filled with NaN, so a kernel
 * that reads past cols poisons its output and the comparison fails. */
#ifndef RK_TEST_CHECK_H
#define RK_TEST_CHECK_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <gsl/gsl_rng.h>
#include "ropekit.h"

/* Assert |got - want| <= atol + rtol * |want| elementwise; on failure report the first bad
 * index, the worst error and both values (cmocka 1.1.5 has no assert_double_equal). */
#define assert_allclose(got, want, n, rtol, atol) \
    rk_check_allclose((got), (want), (n), (rtol), (atol), #got, __FILE__, __LINE__)
void rk_check_allclose(const double *got, const double *want, size_t n, double rtol,
                       double atol, const char *what, const char *file, int line);

/* The same for views: a float32 result against a float64 reference, and double vs double. */
#define assert_mat_close(got, want, rtol, atol) \
    rk_check_mat_close((got), (want), (rtol), (atol), #got, __FILE__, __LINE__)
void rk_check_mat_close(const rk_mat *got, const rk_matd *want, double rtol, double atol,
                        const char *what, const char *file, int line);
#define assert_matd_close(got, want, rtol, atol) \
    rk_check_matd_close((got), (want), (rtol), (atol), #got, __FILE__, __LINE__)
void rk_check_matd_close(const rk_matd *got, const rk_matd *want, double rtol, double atol,
                         const char *what, const char *file, int line);

/* Largest |a - b| over two views of the same shape. */
double rk_max_abs_diff(const rk_mat *a, const rk_matd *b);
double rk_max_abs_diffd(const rk_matd *a, const rk_matd *b);

/* Seeded mt19937 (freed by the caller with gsl_rng_free). Never seed 0. */
gsl_rng *rk_test_rng(unsigned long seed);

/* Allocate rows x cols with leading dimension ld >= cols; fill with N(0, sigma^2) and the
 * padding with NaN. Aborts the test on allocation failure. */
rk_mat  rk_test_randn(gsl_rng *r, size_t rows, size_t cols, size_t ld, double sigma);
rk_matd rk_test_randnd(gsl_rng *r, size_t rows, size_t cols, size_t ld, double sigma);
/* Empty views of the given shape (zeros, NaN padding), for outputs. */
rk_mat  rk_test_mat(size_t rows, size_t cols, size_t ld);
rk_matd rk_test_matd(size_t rows, size_t cols, size_t ld);
/* Copy between precisions (same shape, any ld). */
void rk_test_f2d(const rk_mat *src, rk_matd *dst);
void rk_test_d2f(const rk_matd *src, rk_mat *dst);
void rk_test_free(rk_mat *m);
void rk_test_freed(rk_matd *m);

/* Assert an rk_* call returns `code` and that rk_last_error() is a non-empty message. */
#define assert_rk_error(call, code) do { \
        int rk__got = (call); \
        if (rk__got != (code)) fail_msg("%s returned %d (%s), expected %d (%s): %s", #call, \
                                        rk__got, rk_strerror(rk__got), (code), \
                                        rk_strerror(code), rk_last_error()); \
        assert_true(rk_last_error()[0] != '\0'); \
    } while (0)
#define assert_rk_ok(call) do { \
        int rk__got = (call); \
        if (rk__got != RK_OK) fail_msg("%s failed: %s: %s", #call, rk_strerror(rk__got), \
                                       rk_last_error()); \
    } while (0)

#endif
