/* ropekit benchmarks (`make bench`): figures, not pass/fail. Every figure is a median over
 * repeats, reported beside a baseline measured in the same run: the machine's FMA peak (a loop
 * of independent FMAs on 256-bit and on 512-bit vectors, per thread count), a STREAM-style
 * triad for memory bandwidth, OpenBLAS sgemm for the older compute ratios. Each kernel figure
 * names the kernel path that ran (rk_attn_get_config / rk_rope_get_config isa) and is given as
 * a fraction of the FMA peak of that path's vector width and of the widest the CPU has.
 * bench/main.c runs the sections in order. */
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

/* FMA peak in float GFLOP/s (2 flops per lane per FMA) with `nthreads` threads each running
 * 12 independent FMA chains on vectors of `bits` (256: AVX2+FMA, 512: AVX-512F); 0 when the
 * CPU lacks that width. Measured once per (bits, nthreads) and kept: the fastest of the repeats
 * (a peak; kernel figures are medians, so their fractions of it are never flattered). */
double bench_fma_peak(const bench_opts *o, int bits, int nthreads);
/* The triad (DRAM-sized arrays, 3 x 64 MB; 3 x 16 MB with --quick) at `nthreads`, kept. */
double bench_triad(const bench_opts *o, int nthreads);
/* Vector width of a kernel path in bits (avx512: 512, avx2: 256; portable: 0, no FMA peak of
 * its own) and the widest path of this CPU. */
int bench_isa_bits(rk_isa isa);
rk_isa bench_widest(void);
/* gflops as a fraction of the peak of isa's width and of the widest at nthreads ("-" when
 * there is none), written into two short strings. */
void bench_fracs(const bench_opts *o, rk_isa isa, int nthreads, double gflops, char fw[16],
                 char fm[16]);
/* Thread counts of the scaling figures: 1, 2 and all (max_threads), without repeats. */
size_t bench_thread_counts(const bench_opts *o, int nt[3]);
/* The peak section: FMA peaks (256, 512) and triad at 1, 2 and all threads. */
void bench_peak(const bench_opts *o);

/* Median seconds of one rk_attn_execute over o->repeats (at most 64), after one warm-up;
 * 0 (and a '#' line naming `section` on o->out) if execute fails. */
double bench_time_attn(const bench_opts *o, const char *section, rk_attn *p, const rk_mat *q,
                       const rk_mat *k, const rk_mat *v, rk_mat *out);
/* Current resident set size in bytes (Linux /proc/self/statm; 0 elsewhere). Unlike the
 * process peak it is not inflated by earlier sections or the n x n sgemm baseline. */
size_t bench_rss_now(void);
/* Deterministic values in [-1, 1] (a multiplicative hash of the index and salt). */
void bench_fill(rk_mat *m, unsigned salt);

/* Median seconds of a training forward (rk_attn_forward, saving what the backward needs) and
 * of the backward after it, over o->repeats; 0 in *bwd (and a '#' line) when the kind has no
 * backward, 0 in both when the forward fails. */
void bench_time_grad(const bench_opts *o, const char *section, rk_attn *p, const rk_mat *q,
                     const rk_mat *k, const rk_mat *v, double *fwd, double *bwd);

/* Sections, one file each. */
void bench_rope(const bench_opts *o);       /* bench/bench_rope.c       */
void bench_softmax(const bench_opts *o);    /* bench/bench_softmax.c    */
void bench_backward(const bench_opts *o);   /* bench/bench_backward.c   */
void bench_scaling(const bench_opts *o);    /* bench/bench_scaling.c: batched, GQA     */
void bench_decode(const bench_opts *o);     /* bench/bench_scaling.c: n_q = 1 decoding */
void bench_performer(const bench_opts *o);  /* bench/bench_performer.c  */

#endif
