/* Timing, medians and the two baselines every figure is divided by. */
#include "bench.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <cblas.h>

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(const double *t, size_t n)
{
    if (n == 0) return 0.0;
    double *s = malloc(n * sizeof *s);
    if (!s) return t[0];
    memcpy(s, t, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

size_t bench_peak_rss(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024;   /* Linux reports KiB */
}

/* Median of `repeats` timings of one sgemm C = A B^T, after one warm-up call. */
double bench_sgemm_gflops(const bench_opts *o, size_t m, size_t n, size_t k, int nthreads)
{
    float *a = malloc(m * k * sizeof *a), *b = malloc(n * k * sizeof *b);
    float *c = malloc(m * n * sizeof *c);
    if (!a || !b || !c) { free(a); free(b); free(c); return 0.0; }
    for (size_t i = 0; i < m * k; i++) a[i] = (float)((i * 7919u) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < n * k; i++) b[i] = (float)((i * 104729u) % 1000) * 1e-3f - 0.5f;
    int saved = omp_get_max_threads();
    omp_set_num_threads(nthreads);
    openblas_set_num_threads(nthreads);
    double t[64];
    int reps = o->repeats < 64 ? o->repeats : 64;
    for (int r = -1; r < reps; r++) {
        double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, a,
                    (int)k, b, (int)k, 0.0f, c, (int)n);
        if (r >= 0) t[r] = bench_now() - t0;
    }
    omp_set_num_threads(saved);
    openblas_set_num_threads(saved);
    free(a); free(b); free(c);
    return 2.0 * (double)m * (double)n * (double)k / bench_median(t, (size_t)reps) * 1e-9;
}

/* STREAM-style triad a = b + s c over n floats, static OpenMP schedule. */
double bench_triad_gbs(const bench_opts *o, size_t n, int nthreads)
{
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
    if (!a || !b || !c) { free(a); free(b); free(c); return 0.0; }
    /* First touch in the same static partition the timed loop uses. */
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (size_t i = 0; i < n; i++) { a[i] = 0.0f; b[i] = 1.0f; c[i] = 2.0f; }
    double t[64];
    int reps = o->repeats < 64 ? o->repeats : 64;
    const float s = 3.0f;
    for (int r = -1; r < reps; r++) {
        double t0 = bench_now();
        #pragma omp parallel for schedule(static) num_threads(nthreads)
        for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
        if (r >= 0) t[r] = bench_now() - t0;
    }
    volatile float sink = a[n / 2];
    (void)sink;
    free(a); free(b); free(c);
    return 12.0 * (double)n / bench_median(t, (size_t)reps) * 1e-9;
}

double bench_time_attn(const bench_opts *o, const char *section, rk_attn *p, const rk_mat *q,
                       const rk_mat *k, const rk_mat *v, rk_mat *out)
{
    double t[64];
    int reps = o->repeats < 64 ? o->repeats : 64;
    if (reps < 1) reps = 1;
    for (int r = -1; r < reps; r++) {
        double t0 = bench_now();
        int rc = rk_attn_execute(p, q, k, v, out, RK_ALL_KEYS);
        double dt = bench_now() - t0;
        if (rc) {
            fprintf(o->out, "# %s: execute failed: %s: %s\n", section, rk_strerror(rc),
                    rk_last_error());
            return 0.0;
        }
        if (r >= 0) t[r] = dt;
    }
    return bench_median(t, (size_t)reps);
}

size_t bench_rss_now(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages_total = 0, pages_res = 0;
    if (!f) return 0;
    int ok = fscanf(f, "%lu %lu", &pages_total, &pages_res) == 2;
    fclose(f);
    return ok ? (size_t)pages_res * 4096u : 0;
}

void bench_fill(rk_mat *m, unsigned salt)
{
    for (size_t i = 0; i < m->rows * m->cols; i++)
        m->data[i] = (float)(((i + salt) * 2654435761u) % 2001) * 1e-3f - 1.0f;
}
