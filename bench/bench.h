/* ropekit benchmarks (`make bench`): figures, not pass/fail. Every figure is a median over
 * repeats, reported beside a baseline measured in the same run (OpenBLAS sgemm for compute,
 * a STREAM-style triad for memory bandwidth). bench/main.c runs the sections in order. */
#ifndef RK_BENCH_H
#define RK_BENCH_H

#include <stddef.h>
#include <stdio.h>

#include "ropekit.h"

typedef struct {
    int    repeats;     /* timed repeats per point (median reported); warm-up is one extra run */
    int    quick;       /* smaller sizes, for a smoke run                                       */
    int    max_threads; /* threads available (omp_get_max_threads at start)                   */
    FILE  *out;         /* where rows go (stdout)                                               */
} bench_opts;

double bench_now(void);                          /* monotonic seconds                        */
double bench_median(const double *t, size_t n);  /* does not reorder t                       */
/* Process peak resident set size in bytes (getrusage), for "memory must not grow as n^2".   */
size_t bench_peak_rss(void);

/* Baselines (median over o->repeats, with `nthreads` OpenMP/OpenBLAS threads):
 * sgemm C = A B^T with A (m x k), B (n x k): GFLOP/s = 2 m n k / t.
 * triad a[i] = b[i] + s * c[i] over n floats: GB/s = 12 n / t (3 streams of 4 bytes). */
double bench_sgemm_gflops(const bench_opts *o, size_t m, size_t n, size_t k, int nthreads);
double bench_triad_gbs(const bench_opts *o, size_t n, int nthreads);

/* Median seconds of one rk_attn_execute over o->repeats (at most 64), after one warm-up;
 * 0 (and a '#' line naming `section` on o->out) if execute fails. */
double bench_time_attn(const bench_opts *o, const char *section, rk_attn *p, const rk_mat *q,
                       const rk_mat *k, const rk_mat *v, rk_mat *out);
/* Current resident set size in bytes (Linux /proc/self/statm; 0 elsewhere). Unlike the
 * process peak it is not inflated by earlier sections or the n x n sgemm baseline. */
size_t bench_rss_now(void);
/* Deterministic values in [-1, 1] (a multiplicative hash of the index and salt). */
void bench_fill(rk_mat *m, unsigned salt);

/* Sections, one file each. */
void bench_rope(const bench_opts *o);       /* bench/bench_rope.c       */
void bench_softmax(const bench_opts *o);    /* bench/bench_softmax.c    */
void bench_performer(const bench_opts *o);  /* bench/bench_performer.c  */

#endif
