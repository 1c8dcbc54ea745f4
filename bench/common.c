/* Timing, medians and the baselines every figure is divided by: FMA peaks, triad, sgemm. */
#include "bench.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <cblas.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#  define BENCH_X86 1
#  include <immintrin.h>
#else
#  define BENCH_X86 0
#endif

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

/* ---- FMA peak ---------------------------------------------------------------------------- */

#define BENCH_MAXT 256
#define FMA_CHAINS 12     /* independent chains: >= latency x FMA pipes on current cores */

#if BENCH_X86
/* x <- x m + c on 12 vectors, iters times: 12 independent FMA chains per iteration, converging
 * to the fixed point 1 (no overflow, no subnormals). Returns a sum so nothing is dead. */
#define FMA_LOOP(NAME, TARGET, VEC, SET1, FMA, ADD, STORE, LANES)                                \
    __attribute__((target(TARGET), noinline)) static float NAME(long iters)                     \
    {                                                                                            \
        const VEC m = SET1(0.999f), c = SET1(0.001f);                                            \
        VEC a0 = SET1(0.5f), a1 = SET1(0.6f), a2 = SET1(0.7f), a3 = SET1(0.8f);                  \
        VEC a4 = SET1(0.9f), a5 = SET1(1.1f), a6 = SET1(1.2f), a7 = SET1(1.3f);                  \
        VEC a8 = SET1(1.4f), a9 = SET1(1.5f), a10 = SET1(1.6f), a11 = SET1(1.7f);                \
        for (long i = 0; i < iters; i++) {                                                       \
            a0 = FMA(a0, m, c); a1 = FMA(a1, m, c); a2 = FMA(a2, m, c); a3 = FMA(a3, m, c);      \
            a4 = FMA(a4, m, c); a5 = FMA(a5, m, c); a6 = FMA(a6, m, c); a7 = FMA(a7, m, c);      \
            a8 = FMA(a8, m, c); a9 = FMA(a9, m, c); a10 = FMA(a10, m, c); a11 = FMA(a11, m, c);  \
        }                                                                                        \
        VEC t = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));               \
        t = ADD(t, ADD(ADD(a8, a9), ADD(a10, a11)));                                             \
        float out[LANES];                                                                        \
        STORE(out, t);                                                                           \
        float sum = 0.0f;                                                                        \
        for (int i = 0; i < LANES; i++) sum += out[i];                                           \
        return sum;                                                                              \
    }
FMA_LOOP(fma_loop_256, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps,
         _mm256_storeu_ps, 8)
FMA_LOOP(fma_loop_512, "avx512f", __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps,
         _mm512_storeu_ps, 16)
#undef FMA_LOOP
#endif

int bench_isa_bits(rk_isa isa)
{
    return isa == RK_ISA_AVX512 ? 512 : isa == RK_ISA_AVX2 ? 256 : 0;
}

rk_isa bench_widest(void)
{
    return rk_isa_available(RK_ISA_AVX512) ? RK_ISA_AVX512
         : rk_isa_available(RK_ISA_AVX2) ? RK_ISA_AVX2 : RK_ISA_PORTABLE;
}

double bench_fma_peak(const bench_opts *o, int bits, int nthreads)
{
    static double kept[2][BENCH_MAXT + 1];
    if (nthreads < 1 || nthreads > BENCH_MAXT || (bits != 256 && bits != 512)) return 0.0;
    double *slot = &kept[bits == 512][nthreads];
    if (*slot != 0.0) return *slot > 0.0 ? *slot : 0.0;
    *slot = -1.0;                                       /* absent unless measured below */
#if BENCH_X86
    if (!rk_isa_available(bits == 512 ? RK_ISA_AVX512 : RK_ISA_AVX2)) return 0.0;
    const long iters = o->quick ? 2000000 : 10000000;
    double t[64];
    int reps = o->repeats < 64 ? o->repeats : 64;
    volatile float sink = 0.0f;
    for (int r = -1; r < reps; r++) {
        double t0 = bench_now();
        #pragma omp parallel num_threads(nthreads)
        {
            float v = bits == 512 ? fma_loop_512(iters) : fma_loop_256(iters);
            #pragma omp atomic
            sink += v;
        }
        if (r >= 0) t[r] = bench_now() - t0;
    }
    (void)sink;
    /* the fastest repeat: a peak, so a kernel's median over it is never flattered by a
     * repeat the peak loop lost to another process */
    double flops = (double)nthreads * (double)iters * FMA_CHAINS * (bits / 32) * 2.0, best = t[0];
    for (int r = 1; r < reps; r++) best = t[r] < best ? t[r] : best;
    *slot = flops / best * 1e-9;
    return *slot;
#else
    (void)o;
    return 0.0;
#endif
}

double bench_triad(const bench_opts *o, int nthreads)
{
    static double kept[BENCH_MAXT + 1];
    if (nthreads < 1 || nthreads > BENCH_MAXT) return 0.0;
    if (kept[nthreads] == 0.0)
        kept[nthreads] = bench_triad_gbs(o, o->quick ? (size_t)1 << 22 : (size_t)1 << 24, nthreads);
    return kept[nthreads];
}

void bench_fracs(const bench_opts *o, rk_isa isa, int nthreads, double gflops, char fw[16],
                 char fm[16])
{
    double pw = bench_isa_bits(isa) ? bench_fma_peak(o, bench_isa_bits(isa), nthreads) : 0.0;
    double pm = bench_isa_bits(bench_widest()) ? bench_fma_peak(o, bench_isa_bits(bench_widest()),
                                                                nthreads) : 0.0;
    if (pw > 0.0) snprintf(fw, 16, "%.3f", gflops / pw); else snprintf(fw, 16, "-");
    if (pm > 0.0) snprintf(fm, 16, "%.3f", gflops / pm); else snprintf(fm, 16, "-");
}

size_t bench_thread_counts(const bench_opts *o, int nt[3])
{
    size_t n = 0;
    nt[n++] = 1;
    if (o->max_threads >= 2) nt[n++] = 2;
    if (o->max_threads > 2) nt[n++] = o->max_threads;
    return n;
}

void bench_peak(const bench_opts *o)
{
    int nt[3];
    size_t nn = bench_thread_counts(o, nt);
    fprintf(o->out, "# peak: FMA peak, float GFLOP/s (fastest of the repeats), %d independent "
            "FMA chains per thread (2 flops per lane); triad a = b + s c over 3 x %d MB, GB/s counting 12 bytes per "
            "element; widest path of this CPU: %s\n", FMA_CHAINS, o->quick ? 16 : 64,
            rk_isa_name(bench_widest()));
    fprintf(o->out, "peak\tthreads\tfma256_GFLOPs\tfma512_GFLOPs\t512_over_256\ttriad_GBs\n");
    for (size_t i = 0; i < nn; i++) {
        double p2 = bench_fma_peak(o, 256, nt[i]), p5 = bench_fma_peak(o, 512, nt[i]);
        char r[16] = "-";
        if (p2 > 0.0 && p5 > 0.0) snprintf(r, sizeof r, "%.2f", p5 / p2);
        fprintf(o->out, "peak\t%d\t%.1f\t%.1f\t%s\t%.2f\n", nt[i], p2, p5, r, bench_triad(o, nt[i]));
        fflush(o->out);
    }
}

void bench_time_grad(const bench_opts *o, const char *section, rk_attn *p, const rk_mat *q,
                     const rk_mat *k, const rk_mat *v, double *fwd, double *bwd)
{
    *fwd = *bwd = 0.0;
    const rk_attn_config *c = rk_attn_get_config(p);
    size_t ns = rk_attn_saved_len(p), dv = c->d_v ? c->d_v : c->d;
    float *saved = malloc((ns ? ns : 1) * sizeof *saved);
    rk_mat out = { 0 }, dout = { 0 }, dq = { 0 }, dk = { 0 }, dvm = { 0 };
    if (!saved || rk_mat_alloc(&out, c->n_q, dv) || rk_mat_alloc(&dout, c->n_q, dv) ||
        rk_mat_alloc(&dq, c->n_q, c->d) || rk_mat_alloc(&dk, c->n_kv, c->d) ||
        rk_mat_alloc(&dvm, c->n_kv, dv)) {
        fprintf(o->out, "# %s: cannot allocate the gradient buffers\n", section);
        goto done;
    }
    bench_fill(&dout, 4);
    double tf[64], tb[64];
    int reps = o->repeats < 64 ? o->repeats : 64, has_bwd = 1;
    for (int r = -1; r < reps; r++) {
        double t0 = bench_now();
        int rc = rk_attn_forward(p, q, k, v, &out, RK_ALL_KEYS, saved);
        double t1 = bench_now();
        if (rc) {
            fprintf(o->out, "# %s: %s: %s\n", section, rc == RK_EUNSUP ? "no training forward"
                    : "forward failed", rk_last_error());
            goto done;
        }
        if (has_bwd) {
            rc = rk_attn_backward(p, q, k, v, &out, saved, &dout, &dq, &dk, &dvm, RK_ALL_KEYS);
            if (rc == RK_EUNSUP) {
                fprintf(o->out, "# %s: %s has no backward yet (%s)\n", section, c->kind == RK_LINEAR
                        ? "linear" : c->kind == RK_PERFORMER ? "performer" : "this kind", rk_last_error());
                has_bwd = 0;
            } else if (rc) {
                fprintf(o->out, "# %s: backward failed: %s: %s\n", section, rk_strerror(rc),
                        rk_last_error());
                has_bwd = 0;
            }
        }
        double t2 = bench_now();
        if (r >= 0) { tf[r] = t1 - t0; tb[r] = t2 - t1; }
    }
    *fwd = bench_median(tf, (size_t)reps);
    *bwd = has_bwd ? bench_median(tb, (size_t)reps) : 0.0;
done:
    free(saved);
    rk_mat_free(&out); rk_mat_free(&dout); rk_mat_free(&dq); rk_mat_free(&dk); rk_mat_free(&dvm);
}
