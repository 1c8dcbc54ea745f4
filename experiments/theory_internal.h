/* Internal to `ropekit theory` (theory.c, theory_under_test.c, theory_rope.c, theory_e19.c,
 * theory_favor.c): the helpers every group of checks shares, and the checks the registry in
 * theory.c lists. Notation and the rotation error bound e(p) are described at the top of
 * theory.c. */
#ifndef RK_THEORY_INTERNAL_H
#define RK_THEORY_INTERNAL_H

#include "theory.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#define U  (DBL_EPSILON / 2)
#define UF (FLT_EPSILON / 2)
#define MAXD 128

static inline double gam(double n, double u) { return n * u / (1.0 - n * u); }
static inline double erot(double p) { return 6.0 * U * fabs(p) + 8.0 * U; }
static inline double erot_f(double p) { return 6.0 * U * fabs(p) + 4.0 * U + 6.0 * UF; }

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static inline void setf(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

static inline double dot(const double *a, const double *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
static inline double dotf(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}
static inline double nrm(const double *a, size_t n) { return sqrt(dot(a, a, n)); }
static inline double nrmf(const float *a, size_t n) { return sqrt(dotf(a, a, n)); }

static inline gsl_rng *rng_for(const theory_config *cfg, unsigned long tag)
{
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (r) gsl_rng_set(r, cfg->seed + tag);
    return r;
}
static inline void randn(gsl_rng *r, double *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = gsl_ran_gaussian_ziggurat(r, 1.0);
}
/* A position uniform in [-P, P] (integers). */
static inline int64_t rpos(gsl_rng *r, int64_t P)
{
    return (int64_t)floor(gsl_ran_flat(r, -(double)P, (double)P + 1.0));
}

/* ---- the paper's rotation, written out (eqs. 13-15, 34; 0-based theta: docs/theory.md) ---- */

static inline double paper_theta(double base, size_t i, size_t d)
{
    return pow(base, -2.0 * (double)i / (double)d);
}

/* ---- RoPE under test: helpers ------------------------------------------------------------- */

static inline int rot1(const theory_rope *r, rk_rope_style st, const double *x, double *y,
                       size_t d, int64_t pos)
{
    rk_matd X = rk_matd_view((double *)x, 1, d, d), Y = rk_matd_view(y, 1, d, d);
    return r->apply_d(r, st, &X, &Y, &pos);
}
static inline int rot1f(const theory_rope *r, rk_rope_style st, const float *x, float *y,
                        size_t d, int64_t pos)
{
    rk_mat X = rk_mat_view((float *)x, 1, d, d), Y = rk_mat_view(y, 1, d, d);
    return r->apply_f(r, st, &X, &Y, &pos);
}

#define TRY(call) do { int rk__e = (call); if (rk__e) { err = rk__e; goto done; } } while (0)

/* The FAVOR+ cases (theory_favor.c); Lemma 1 tests each one, so it counts FC_N times in the
 * Bonferroni family. */
enum { FC_POS_IID, FC_POS_ORT, FC_TRIG, FC_HYP, FC_N };

/* Number of statistical checks in the run: theory_family, or all of them (theory.c). */
size_t theory__family(void);

/* The checks (theory_rope.c, theory_e19.c, theory_favor.c), listed by theory_checks[]. */
int theory__chk_rel_small(const theory_config *cfg, theory_result *res);
int theory__chk_rel_large(const theory_config *cfg, theory_result *res);
int theory__chk_rel_f32(const theory_config *cfg, theory_result *res);
int theory__chk_matrix(const theory_config *cfg, theory_result *res);
int theory__chk_orth(const theory_config *cfg, theory_result *res);
int theory__chk_norm_d(const theory_config *cfg, theory_result *res);
int theory__chk_norm_f(const theory_config *cfg, theory_result *res);
int theory__chk_complex(const theory_config *cfg, theory_result *res);
int theory__chk_abel(const theory_config *cfg, theory_result *res);
int theory__chk_bound(const theory_config *cfg, theory_result *res);
int theory__chk_layout_d(const theory_config *cfg, theory_result *res);
int theory__chk_layout_f(const theory_config *cfg, theory_result *res);
int theory__chk_e19_shift(const theory_config *cfg, theory_result *res);
int theory__chk_e19_qk(const theory_config *cfg, theory_result *res);
int theory__chk_e19_den(const theory_config *cfg, theory_result *res);
int theory__chk_e19_lin_d(const theory_config *cfg, theory_result *res);
int theory__chk_e19_lin_f(const theory_config *cfg, theory_result *res);
int theory__chk_fv_unbiased(const theory_config *cfg, theory_result *res);
int theory__chk_fv_pos(const theory_config *cfg, theory_result *res);
int theory__chk_fv_trig(const theory_config *cfg, theory_result *res);
int theory__chk_fv_hyp(const theory_config *cfg, theory_result *res);
int theory__chk_fv_ort_bound(const theory_config *cfg, theory_result *res);
int theory__chk_fv_ort_gain(const theory_config *cfg, theory_result *res);

#endif
