/* Long-term decay of RoPE (RoFormer section 3.4.3, eqs. 35-37, Figure 2): the computations
 * behind `ropekit decay` and the (36)/(37) checks of `ropekit theory`.
 *
 * Conventions (docs/theory.md#figure-2): 0-based frequencies theta_i, i = 0 .. h-1 (h = d/2),
 * taken from an rk_rope plan (rk_rope_freqs), so every scaling of the library applies; pair i
 * of q is the complex number q~_i = q[2i] + i q[2i+1] (interleaved, eq. 34); h_i = q~_i conj(k~_i)
 * with h_h = 0; for a relative distance dist = m - n (query position minus key position)
 *   S_j(dist) = sum_{i<j} exp(i dist theta_i)        (S_0 = 0),
 *   z(dist)   = sum_i h_i exp(i dist theta_i),    Re z = (R_m q).(R_n k)       (eq. 35),
 *   |z| <= sum_i |S_{i+1}| |h_{i+1} - h_i|  <=  max_i |h_{i+1} - h_i| * sum_{j=1}^{h} |S_j|  (37),
 *   B(dist) = (1/h) sum_{j=1}^{h} |S_j(dist)|        (Figure 2: "relative upper bound").
 * B(0) = (h + 1)/2 and B(-dist) = B(dist).
 */
#ifndef RK_DECAY_H
#define RK_DECAY_H

#include <stddef.h>
#include <stdio.h>
#include <gsl/gsl_rng.h>

#include "ropekit.h"
#include "rk_file.h"

/* sum_{j=1}^{h} |S_j(dist)| for the h frequencies theta. 0 when h == 0. */
double decay_sum_abs_s(const double *theta, size_t h, double dist);
/* B(dist) = decay_sum_abs_s / h (the Figure 2 curve). */
double decay_bound(const double *theta, size_t h, double dist);
/* |S_j(dist)| for j = 1 .. h into abs_s[0 .. h-1] (abs_s[j-1] = |S_j|); returns their sum. */
double decay_partial_sums(const double *theta, size_t h, double dist, double *abs_s);

/* The frequencies of a RoPE of dimension d (all channels rotated, interleaved) with the given
 * base and scaling (rc->dim, rotary_dim, style and table_len are overridden), copied into
 * theta[0 .. d/2-1]. rc may be NULL (base 10000, no scaling). Returns an rk status; the
 * library's message is in rk_last_error(). */
int decay_freqs(const rk_rope_config *rc, size_t d, double *theta);

/* The column suffix of a curve's scaling: "" (none), "_linear4", "_ntk4", "_dynamic2_4096"
 * (factor, max_pos), "_yarn4_4096", "_yarnpaper4_4096", "_llama3_8_8192" (factor, orig_ctx;
 * "_llama3_8_8192_2_5" with other low / high frequency factors than 1 / 4), "_longrope". */
void decay_curve_tag(const rk_rope_config *rc, char *tag, size_t n);

/* ---- the empirical side: random (q, k) draws -------------------------------------------- */
typedef enum {
    DECAY_NORMAL = 0,   /* q, k independent, entries N(0, 1)                                  */
    DECAY_UNIFORM,      /* entries uniform on (-sqrt 3, sqrt 3): mean 0, variance 1            */
    DECAY_RADEMACHER,   /* entries +-1 with probability 1/2                                   */
    DECAY_SAME,         /* q = k, entries N(0, 1): h_i = |q~_i|^2 >= 0, the mean score decays */
    DECAY_NDIST
} decay_dist;
extern const char *const decay_dist_names[];   /* "normal", ... NULL-terminated */

/* Statistics over the draws at one distance. "score" is Re z = (R_m q).(R_n k), "abs" its
 * absolute value; quantiles are GSL's (gsl_stats_quantile_from_sorted_data). */
typedef struct {
    double score_mean, score_median, score_q05, score_q95;
    double abs_mean, abs_median, abs_q05, abs_q95;
    double abel_median;          /* median of sum_i |S_{i+1}| |h_{i+1} - h_i| (middle of 37)   */
    double perdraw_median;       /* median of max_i |h_{i+1} - h_i| * sum_j |S_j| (right of 37) */
    double min_margin;           /* min over draws of 1 - |z| / (max|dh| sum|S_j|); 1 if both 0 */
    size_t violations;           /* draws with |z| above either bound of (37): must be 0      */
} decay_stats;

typedef struct decay_emp decay_emp;
/* Draw `draws` pairs (q, k) of dimension d (even, > 0) from a GSL mt19937 seeded with seed
 * (nonzero), q then k per draw, entries in channel order. RK_EINVAL / RK_ENOMEM (message in
 * rk_last_error()). */
int decay_emp_create(decay_emp **out, size_t d, size_t draws, decay_dist dist,
                     unsigned long seed);
void decay_emp_destroy(decay_emp *e);          /* NULL-safe */
/* Bytes decay_emp_create would allocate (0 on overflow): for a memory limit check. */
size_t decay_emp_bytes(size_t d, size_t draws);
/* Statistics at distance dist for the frequencies theta (d/2 of them). Not reentrant. */
void decay_emp_stats(decay_emp *e, const double *theta, double dist, decay_stats *st);
/* One draw as decay_emp_create makes it: q then k (d values each) from rng. A generator seeded
 * like decay_emp_create's and called `draws` times reproduces its draws, in order. */
void decay_draw(gsl_rng *rng, decay_dist dist, size_t d, double *q, double *k);
/* The (37) quantities of one (q, k) at one distance, straight from the definitions (no
 * precomputation): |z|, sum_i |S_{i+1}||h_{i+1}-h_i|, max_i|h_{i+1}-h_i| * sum_j |S_j|; and
 * Re z into *score. For tests and for the theory checks. */
void decay_one(const double *theta, size_t h, const double *q, const double *k, double dist,
               double *score, double *absz, double *abel, double *perdraw);

/* ---- a whole `ropekit decay` table -------------------------------------------------------- */
#define DECAY_MAXCURVES 32
typedef struct {
    size_t         d;                         /* even, > 0                                    */
    size_t         ncurves;                   /* >= 1                                         */
    rk_rope_config curve[DECAY_MAXCURVES];    /* base and scaling of each bound curve         */
    char           name[DECAY_MAXCURVES][96]; /* column suffix: "b10000", "b10000_ntk4"
                                                 (decay_curve_tag)                              */
    double         dmin, step;                /* distances dmin + r * step, r < rows           */
    size_t         rows;
    size_t         draws;                     /* 0: no empirical columns                      */
    decay_dist     dist;
    unsigned long  seed;                      /* nonzero                                      */
    double        *theta[DECAY_MAXCURVES];    /* filled by decay_run_prepare                  */
} decay_run;
/* Rows from dmin to dmax (inclusive, up to a relative 1e-9 of a step) every step; 0 if the
 * range is empty or step is not > 0. */
size_t decay_rows(double dmin, double dmax, double step);
/* Compute every curve's frequencies (rk status; the message is in rk_last_error()). */
int  decay_run_prepare(decay_run *r);
void decay_run_free(decay_run *r);             /* frees the thetas; safe to repeat */
/* Write the table: a '#' configuration line, a '#' line defining the columns, the header row,
 * then one row per distance. rk status (RK_ENOMEM, RK_EINVAL; RK_EIO if a write failed). */
int  decay_write(FILE *f, const decay_run *r);

/* ---- atomic text output: the library's one writer (lib/rk_file.h) ---------------------- */
/* Shared by `ropekit decay`, `pattern` and `theory`: a temporary file renamed over the target,
 * devices and FIFOs written directly, symbolic links followed. */
typedef rk__out decay_atomic;
/* 0 or an errno value. On success a->f is open for writing. */
static inline int decay_atomic_open(decay_atomic *a, const char *path)
{ return rk__out_open(a, path); }
/* Flush, fsync, close, rename over the target. 0 or an errno value (the temporary removed). */
static inline int decay_atomic_commit(decay_atomic *a) { return rk__out_commit(a); }
/* Close and remove the temporary (NULL-safe, idempotent): for cleanup on any error. */
static inline void decay_atomic_abort(decay_atomic *a) { rk__out_abort(a); }

#endif
