/* RK_RPE_FFT: kernelized attention with a relative position bias, the Toeplitz products done by
 * FFT (Luo et al. 2021, "Stable, Fast and Accurate: Kernelized Attention with Relative
 * Positional Encoding", eq. 10-13 and Algorithm 1; docs/theory.md#relative-biases):
 *
 *   out_i = phi(q_i) . D1_i / phi(q_i) . D2_i,   D1_i = sum_j g_ij phi(k_j) v_j^T  (F x dv),
 *                                                D2_i = sum_j g_ij phi(k_j)        (F),
 *   g_ij = exp(b(t) - bmax) for the keys query i sees (0 for the others), t = j - i - (n_kv - n_q).
 *
 * The bias convention (index j - i + n_q - 1 of cfg.bias) is ropekit.h's. Subtracting bmax (the
 * largest bias entry any pair uses) is one factor on every weight: it cancels.
 *
 * Toeplitz product by FFT. With L = n_q + n_kv - 1 and g[idx] the masked, exponentiated bias
 * (idx = j - i + n_q - 1; causal: g[idx] = 0 for idx > n_kv - 1, the keys after the query), each
 * column a (n_kv values; keys past kv_len set to 0) gives
 *   D_i = sum_j g[j - i + n_q - 1] a_j = (a * gr)[n_kv - 1 + i],   gr[s] = g[L - 1 - s],
 * a linear convolution read at n_kv - 1 .. n_kv + n_q - 2. A circular convolution of any size
 * N >= L has no wrap-around there (the linear one is nonzero on 0 .. n_kv + L - 2, and
 * n_kv - 1 + N > n_kv + L - 2), so: zero-pad a and gr to N, multiply the spectra, transform
 * back. N is the smallest even 2^a 3^b 5^c 7^d >= L (docs/theory.md#relative-biases: 2n for n_q = n_kv = n, or
 * a cheaper size). The spectrum G = FFT(gr) / N is made once at create.
 *
 * Columns. For feature f the dv + 1 columns are phi_f(k_j) v_j[c] (c < dv) and phi_f(k_j) (the
 * denominator, c = dv). Work is split by c: the thread that owns c runs, for f = 0 .. F-1 in
 * order, fill the column (n_kv values, zero-padded to N), r2c, times G, c2r, and adds
 * phi_f(q_i) y[n_kv - 1 + i] to acc[c][i] for every row i. So every accumulator is written by
 * one thread in a fixed order (the same bits for any nthreads), there is no batching and no
 * large FFT buffer: one column (and its spectrum) per thread. All columns go through one pair
 * of plans (fftw_plan_dft_r2c_1d / c2r_1d, made at create on thread 0's buffers) by the
 * new-array execute functions, on per-thread buffers with the same 64-B alignment.
 * Features and values are kept transposed (feature-major, (F, n) and (dv, n_kv)) so filling a
 * column and the accumulation read memory contiguously. This layout replaced batches of columns
 * interleaved in a row-major (N, B) buffer (howmany 8, stride B): FFTW_ESTIMATE transforms of
 * contiguous columns measured 1.9-5.6x faster here (N = 2048 .. 131072, FFTW 3.3.10), and the
 * whole execute 2.9x (n = 8192) to 5x (n = 512) faster (d = d_v = 64, m = 64, 2 threads), in a
 * fraction of the memory. Execute allocates nothing.
 *
 * Precision: features and FFTs in double in both paths. Float32 FFTs were measured against the
 * naive double formula (m = 32, d = 16, dv = 4, 64 sampled rows, bias 0 / ALiBi 1/16 and 1/2 /
 * -ln(1+|t|)): bidirectional max abs errors 1e-8 .. 2.4e-6, but causal with bias 0: 9.4e-4 at
 * n = 1024, 2.1e-3 at 8192, 9.8e-2 at 65536 (early rows have tiny denominators next to whole-
 * column norms), and 4e-5 with ALiBi 1/16 at 65536. Double FFTs: at most 3.6e-12 in every case.
 * A float FFT would roughly halve the transform time; not worth those errors.
 *
 * Stabiliser: query rows subtract their own max exponent; keys one shared constant, the max
 * exponent over all keys any row sees (exact: one factor on every key). Computed key features
 * are exp(l - lmax_j), then multiplied by exp(lmax_j - C) <= 1: nothing overflows.
 * Causal and rounding: see ropekit.h (future keys reach earlier rows through the FFT's rounding
 * only, at ~1e-16 relative to the largest column terms).
 */
#include "attn_impl.h"
#include "featmap.h"
#include "rk_file.h"

#include <errno.h>
#include <fftw3.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RPE_NOISE 16.0                        /* safety factor of the FFT rounding bound    */

typedef struct {
    rk__featmap   fm;        /* the feature map (the same as a performer / linear plan's)        */
    size_t        F, d, dv, m, nq, nkv, L, N, nfreq;
    size_t        ldr, ldc;  /* a column's real / complex length, rounded to 64 B              */
    size_t        ldx;       /* per-thread row scratch: d + max(m, d) doubles                  */
    size_t        slab;      /* per-thread bytes: column, spectrum, row scratch, F features    */
    int           l2norm;
    double       *bias;      /* (L) the bias (zeros when none was given)                       */
    size_t       *cnt;       /* (L + 1) cnt[s]: entries idx < s with g[idx] > 0                 */
    double       *gr;        /* (N) reversed generator, zero-padded                            */
    fftw_complex *G;         /* (nfreq) FFT(gr) / N                                            */
    fftw_plan     pg, pf, pb;
    double       *phq, *phk; /* (F, n_q), (F, n_kv) features, feature-major                     */
    double       *vt;        /* (dv, n_kv) values, transposed                                  */
    double       *lk;        /* (n_kv) key max exponents                                       */
    double       *cn;        /* (F) |phi_f(k_.)|_2 over the keys used: the FFT's noise scale    */
    double        gnorm;     /* |g|_2 of the generator                                          */
    double       *acc;       /* (dv + 1, n_q) numerators, denominator                          */
    unsigned char *thr;      /* nthreads slabs of `slab` bytes                                  */
    char         *wisdom;    /* copy of the path                                               */
} rpe_plan;

/* Thread t's parts: column (ldr doubles), spectrum (ldc complex), row x (d), u (max(m, d)),
 * one row's features (F). */
typedef struct {
    double       *col;
    fftw_complex *spec;
    double       *x, *u, *phi;
} rpe_thr;

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

static rpe_thr thr_at(const rpe_plan *r, int t)
{
    unsigned char *b = r->thr + (size_t)t * r->slab;
    rpe_thr h;
    h.col = (double *)b;                         b += r->ldr * sizeof(double);
    h.spec = (fftw_complex *)b;                  b += r->ldc * sizeof(fftw_complex);
    h.x = (double *)b;                           b += round_up(r->d * sizeof(double), 64);
    h.u = (double *)b;                           b += round_up((r->ldx - r->d) * sizeof(double), 64);
    h.phi = (double *)b;
    return h;
}

/* ------------------------------------------------------------------------------------------ */
/* Create / destroy                                                                           */
/* ------------------------------------------------------------------------------------------ */

/* FFTW's planner is not thread-safe: every plan is made and destroyed under this lock (a
 * mutex rather than a named OpenMP critical section, whose lock would be an exported symbol). */
static pthread_mutex_t fftw_planner = PTHREAD_MUTEX_INITIALIZER;

static void rpe_destroy(void *impl)
{
    rpe_plan *r = impl;
    if (!r) return;
    pthread_mutex_lock(&fftw_planner);
    if (r->pg) fftw_destroy_plan(r->pg);
    if (r->pf) fftw_destroy_plan(r->pf);
    if (r->pb) fftw_destroy_plan(r->pb);
    pthread_mutex_unlock(&fftw_planner);
    rk__featmap_free(&r->fm);
    void *bufs[] = { r->bias, r->cnt, r->gr, r->G, r->phq, r->phk, r->vt, r->lk,
                     r->cn, r->acc, r->thr, r->wisdom };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) rk__free(bufs[i]);
    rk__free(r);
}

#define TAKE(ptr, a, b, elt, what) \
    do { if (!((ptr) = rk__take(&p->bytes, (a), (b), (elt), "rpe-fft", (what), &rc))) return rc; } while (0)

/* Smallest even N >= L whose only prime factors are 2, 3, 5, 7 (FFTW's fast sizes). */
static size_t fft_len(size_t L)
{
    for (size_t n = L + (L & 1);; n += 2) {
        size_t x = n;
        static const size_t primes[] = { 2, 3, 5, 7 };
        for (int i = 0; i < 4; i++)
            while (x % primes[i] == 0) x /= primes[i];
        if (x == 1) return n;
    }
}

/* rpe-fft reads the feature fields of its base: FAVOR+ (kernel, projection, scale) or the
 * elu+1 / relu map. */
static unsigned rpe_fields(const rk_attn_config *c)
{
    unsigned own = RK_FIELD_BIAS | RK_FIELD_FFT | RK_FIELD_FEATURES;
    return own | (c->rpe_base == RK_LINEAR ? RK_FIELD_MAP
                  : RK_FIELD_SCALE | RK_FIELD_KERNEL | RK_FIELD_PROJ);
}

/* The feature map: the same validation, defaults and projection as an RK_PERFORMER or
 * RK_LINEAR plan of this config (featmap.c), so equal configs give equal projections. */
static int rpe_resolve(rk_attn_config *c, rk_attn_info *info)
{
    if (c->rpe_base == 0) c->rpe_base = RK_PERFORMER;
    if (c->rpe_base != RK_PERFORMER && c->rpe_base != RK_LINEAR)
        RK_FAIL(RK_EINVAL, "rpe-fft: rpe_base = %d must be RK_PERFORMER or RK_LINEAR",
                (int)c->rpe_base);
    int rc = rk__bias_check(c, "rpe-fft", 0);
    if (rc) return rc;
    size_t F;
    if ((rc = rk__featmap_resolve(c, c->rpe_base == RK_PERFORMER, "rpe-fft", &F))) return rc;
    const size_t L = rk_bias_len(c->n_q, c->n_kv), N = fft_len(L), cf = c->d_v + 1;
    size_t t;
    if (!rk__fits_int(N) || rk__mul(F, cf, &t) || rk__mul(c->n_q, F, &t) ||
        rk__mul(c->n_kv, F, &t) || rk__mul(c->n_q, cf, &t) || rk__mul(N, 16, &t))
        RK_FAIL(RK_EOVERFLOW, "rpe-fft: FFT size %zu with %zu features is too large", N, F);
    if ((rc = rk__featmap_check_cost(c, c->rpe_base == RK_PERFORMER, "rpe-fft"))) return rc;
    info->feature_dim = F;
    info->fft_len = N;
    return RK_OK;
}

/* The masked generator, its spectrum and the counts of usable entries (bias in r->bias). */
static void make_generator(const rk_attn_config *c, rpe_plan *r)
{
    const size_t L = r->L, hi = c->causal ? r->nkv - 1 : L - 1;   /* last usable index */
    double bmax = -INFINITY;
    for (size_t idx = 0; idx <= hi; idx++)
        if (r->bias[idx] > bmax) bmax = r->bias[idx];
    double ss = 0.0;
    r->cnt[0] = 0;
    for (size_t idx = 0; idx < L; idx++) {
        double g = idx > hi || bmax == -INFINITY ? 0.0 : exp(r->bias[idx] - bmax);
        r->gr[L - 1 - idx] = g;
        r->cnt[idx + 1] = r->cnt[idx] + (g > 0.0);
        ss += g * g;
    }
    r->gnorm = sqrt(ss);
    memset(r->gr + L, 0, (r->N - L) * sizeof(double));
    fftw_execute(r->pg);
    const double inv = 1.0 / (double)r->N;
    for (size_t k = 0; k < r->nfreq; k++) {
        r->G[k][0] *= inv;
        r->G[k][1] *= inv;
    }
}

/* Import wisdom from path if the file exists (a missing file is the first run). */
static int wisdom_import(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT) return RK_OK;
        RK_FAIL(RK_EIO, "rpe-fft: cannot read FFTW wisdom '%s': %s", path, strerror(errno));
    }
    int ok = fftw_import_wisdom_from_file(f);
    fclose(f);
    if (!ok) RK_FAIL(RK_EFORMAT, "rpe-fft: '%s' is not FFTW wisdom (fftw_import_wisdom_from_file "
                     "refused it)", path);
    return RK_OK;
}

/* Save the process's wisdom to path through the one atomic writer (rk_file.h). */
static int wisdom_export(const char *path)
{
    char *text = fftw_export_wisdom_to_string();
    if (!text) RK_FAIL(RK_ENOMEM, "rpe-fft: FFTW could not export its wisdom");
    const char *step = NULL;
    int e = rk__out_write_file(path, text, strlen(text), &step);
    fftw_free(text);
    if (e == ENOMEM) RK_FAIL(RK_ENOMEM, "rpe-fft: cannot write FFTW wisdom '%s': out of memory", path);
    if (e) RK_FAIL(RK_EIO, "rpe-fft: cannot write FFTW wisdom '%s': %s failed: %s", path, step,
                   strerror(e));
    return RK_OK;
}

/* All FFTW planner work (not thread-safe: called under the planner lock). The plans
 * are made on the plan's own buffers (thread 0's column) before anything is stored in them. */
static int make_plans(rpe_plan *r, const char *wisdom)
{
    int rc = RK_OK, n = (int)r->N;
    unsigned flags = FFTW_ESTIMATE;
    if (wisdom) {
        if ((rc = wisdom_import(wisdom))) return rc;
        flags = FFTW_MEASURE;
    }
    rpe_thr h = thr_at(r, 0);
    r->pg = fftw_plan_dft_r2c_1d(n, r->gr, r->G, FFTW_ESTIMATE);
    r->pf = fftw_plan_dft_r2c_1d(n, h.col, h.spec, flags);
    r->pb = fftw_plan_dft_c2r_1d(n, h.spec, h.col, flags);
    if (!r->pg || !r->pf || !r->pb)
        RK_FAIL(RK_EDEP, "rpe-fft: FFTW could not plan real transforms of size %d", n);
    if (wisdom) rc = wisdom_export(wisdom);
    return rc;
}

static int rpe_create(rk_attn *p)
{
    rk_attn_config *c = &p->cfg;
    int rc = RK_OK;
    const int favor = c->rpe_base == RK_PERFORMER;
    const size_t d = c->d, dv = c->d_v, L = rk_bias_len(c->n_q, c->n_kv);
    const size_t m = favor ? c->n_features : 0, F = p->info.feature_dim, N = p->info.fft_len;
    const size_t nfreq = N / 2 + 1, cf = dv + 1;

    rpe_plan *r = rk__alloc(sizeof *r);
    if (!r) RK_FAIL(RK_ENOMEM, "rpe-fft: cannot allocate the plan");
    p->impl = r;                        /* from here on attn.c's destroy frees a partial build */
    p->bytes += rk__alloc_size(sizeof *r);
    r->F = F; r->d = d; r->dv = dv; r->m = m; r->nq = c->n_q; r->nkv = c->n_kv;
    r->L = L; r->N = N; r->nfreq = nfreq;
    r->ldr = round_up(N, 8);
    r->ldc = round_up(nfreq, 4);
    r->ldx = d + (m > d ? m : d);
    r->slab = r->ldr * sizeof(double) + r->ldc * sizeof(fftw_complex) +
              round_up(d * sizeof(double), 64) + round_up((r->ldx - d) * sizeof(double), 64) +
              round_up(F * sizeof(double), 64);
    r->l2norm = c->rpe_l2norm != 0;
    c->isa = RK_ISA_PORTABLE;           /* double feature rows and FFTW: no ropekit vector kernel */
    if ((rc = rk__featmap_init(&r->fm, c, favor, 0, RK_ISA_PORTABLE, &p->bytes, "rpe-fft")))
        return rc;

    TAKE(r->bias, L, 1, sizeof(double), "bias");
    TAKE(r->cnt, L + 1, 1, sizeof(size_t), "bias counts");
    TAKE(r->gr, N, 1, sizeof(double), "generator");
    TAKE(r->G, nfreq, 1, sizeof(fftw_complex), "generator spectrum");
    TAKE(r->phq, F, c->n_q, sizeof(double), "query features");
    TAKE(r->phk, F, c->n_kv, sizeof(double), "key features");
    TAKE(r->vt, dv, c->n_kv, sizeof(double), "values (transposed)");
    TAKE(r->lk, c->n_kv, 1, sizeof(double), "key exponents");
    TAKE(r->cn, F, 1, sizeof(double), "column norms");
    TAKE(r->acc, cf, c->n_q, sizeof(double), "accumulators");
    TAKE(r->thr, (size_t)c->nthreads, r->slab, 1, "per-thread columns");
    if (c->fft_wisdom) {
        size_t len = strlen(c->fft_wisdom);
        TAKE(r->wisdom, len + 1, 1, 1, "wisdom path");
        memcpy(r->wisdom, c->fft_wisdom, len + 1);
        c->fft_wisdom = r->wisdom;
    }

    pthread_mutex_lock(&fftw_planner);
    rc = make_plans(r, r->wisdom);
    pthread_mutex_unlock(&fftw_planner);
    if (rc) return rc;

    if (c->bias) {
        memcpy(r->bias, c->bias, L * sizeof(double));
        c->bias = r->bias;               /* rk_attn_get_config: the plan's copy */
    }
    make_generator(c, r);
    return RK_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Execute                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* A row source: float or double rows with leading dimension ld. */
typedef struct {
    const float  *f;
    const double *d;
    size_t        ld;
} rows_in;

static void get_row(const rows_in *s, size_t i, size_t n, double *dst)
{
    if (s->f) {
        const float *x = s->f + i * s->ld;
        for (size_t c = 0; c < n; c++) dst[c] = (double)x[c];
    } else {
        memcpy(dst, s->d + i * s->ld, n * sizeof(double));
    }
}

static double get_at(const rows_in *s, size_t i, size_t c)
{
    return s->f ? (double)s->f[i * s->ld + c] : s->d[i * s->ld + c];
}

/* The first non-finite entry of rows 0 .. rows-1 (n columns) as (row, col); 0 if none. */
static int find_nonfinite(const rows_in *s, size_t rows, size_t n, size_t *ri, size_t *ci)
{
    for (size_t i = 0; i < rows; i++)
        for (size_t c = 0; c < n; c++)
            if (!isfinite(get_at(s, i, c))) { *ri = i; *ci = c; return 1; }
    return 0;
}

/* Features of row i of s into phi (F values) with the row's own max exponent subtracted
 * (returned; 0 for linear maps), using the thread's x (d) and u (max(m, d)). */
static double row_features(const rpe_plan *r, const rows_in *s, size_t i, const rpe_thr *h)
{
    const size_t d = r->d;
    double *x = h->x, *u = h->u;
    get_row(s, i, d, x);
    if (r->l2norm) {                               /* Luo et al.: q / |q|, k / |k| */
        double ss = 0.0;
        for (size_t c = 0; c < d; c++) ss += x[c] * x[c];
        if (ss > 0.0) {
            double inv = 1.0 / sqrt(ss);
            for (size_t c = 0; c < d; c++) x[c] *= inv;
        }
    }
    double hh, lmax = rk__featmap_project_d(&r->fm, x, u, &hh);
    rk__featmap_row_d(&r->fm, u, hh, r->fm.stab ? lmax : 0.0, h->phi);
    return lmax;
}

/* Accumulator column c (c < dv: values column c; c = dv: the denominator) over every feature,
 * in order: fill, r2c, times G, c2r, add phi_f(q_i) y[n_kv - 1 + i] to acc[c][i]. */
static void column_task(const rpe_plan *r, const rpe_thr *h, size_t c, size_t kv_used)
{
    const size_t nq = r->nq, nkv = r->nkv, N = r->N;
    const double *vc = c < r->dv ? r->vt + c * nkv : NULL;
    double *col = h->col, *acc = r->acc + c * nq;
    for (size_t i = 0; i < nq; i++) acc[i] = 0.0;
    for (size_t f = 0; f < r->F; f++) {
        const double *pk = r->phk + f * nkv, *pq = r->phq + f * nq;
        // 1. the column, zero past the keys used (padding, and up to N)
        if (vc) for (size_t j = 0; j < kv_used; j++) col[j] = pk[j] * vc[j];
        else memcpy(col, pk, kv_used * sizeof *col);
        memset(col + kv_used, 0, (N - kv_used) * sizeof *col);
        // 2. the circular convolution with the generator
        fftw_execute_dft_r2c(r->pf, col, h->spec);
        for (size_t k = 0; k < r->nfreq; k++) {
            const double re = h->spec[k][0], im = h->spec[k][1];
            h->spec[k][0] = re * r->G[k][0] - im * r->G[k][1];
            h->spec[k][1] = re * r->G[k][1] + im * r->G[k][0];
        }
        fftw_execute_dft_c2r(r->pb, h->spec, col);
        // 3. row i reads D_i at n_kv - 1 + i
        const double *y = col + (nkv - 1);
        for (size_t i = 0; i < nq; i++) acc[i] += pq[i] * y[i];
    }
}

static int rpe_exec(rk_attn *p, rows_in q, rows_in k, rows_in v, float *of, double *od,
                    size_t old, size_t kv_len)
{
    rpe_plan *r = p->impl;
    const rk_attn_config *c = &p->cfg;
    const size_t F = r->F, dv = r->dv, cf = dv + 1, nq = r->nq, nkv = r->nkv;
    const int nt = c->nthreads;
    /* keys anyone sees: the last row sees the most (kv_len when n_q >= 1) */
    const size_t kv_used = rk__attn_visible(c, nq - 1, kv_len);
    size_t ri, ci;

    // 0. an FFT spreads a NaN or Inf to every row: refuse them in what is read
    if (find_nonfinite(&q, nq, r->d, &ri, &ci))
        RK_FAIL(RK_ENONFINITE, "rpe-fft: q[%zu][%zu] is not finite (an FFT would spread it to "
                "every output row)", ri, ci);
    if (find_nonfinite(&k, kv_used, r->d, &ri, &ci))
        RK_FAIL(RK_ENONFINITE, "rpe-fft: k[%zu][%zu] is not finite (an FFT would spread it to "
                "every output row)", ri, ci);
    if (find_nonfinite(&v, kv_used, dv, &ri, &ci))
        RK_FAIL(RK_ENONFINITE, "rpe-fft: v[%zu][%zu] is not finite (an FFT would spread it to "
                "every output row)", ri, ci);

    if (kv_used > 0) {
        // 1. features (feature-major): queries with their own constant, keys with theirs;
        //    values transposed
        #pragma omp parallel num_threads(nt)
        {
            rpe_thr h = thr_at(r, omp_get_thread_num());
            #pragma omp for schedule(static)
            for (size_t i = 0; i < nq; i++) {
                (void)row_features(r, &q, i, &h);
                for (size_t f = 0; f < F; f++) r->phq[f * nq + i] = h.phi[f];
            }
            #pragma omp for schedule(static)
            for (size_t j = 0; j < kv_used; j++) {
                r->lk[j] = row_features(r, &k, j, &h);
                for (size_t f = 0; f < F; f++) r->phk[f * nkv + j] = h.phi[f];
                for (size_t ch = 0; ch < dv; ch++) r->vt[ch * nkv + j] = get_at(&v, j, ch);
            }
        }
        // 2. keys to the shared constant C = max over the keys used; the FFT's noise scale
        //    |phi_f(k_.)|_2 per feature (one thread per feature, keys in order)
        double C = 0.0;
        if (r->fm.stab) {
            C = -INFINITY;
            for (size_t j = 0; j < kv_used; j++) if (r->lk[j] > C) C = r->lk[j];
        }
        #pragma omp parallel for schedule(static) num_threads(nt)
        for (size_t f = 0; f < F; f++) {
            double *pk = r->phk + f * nkv, sq = 0.0;
            if (r->fm.stab)
                for (size_t j = 0; j < kv_used; j++) pk[j] *= exp(r->lk[j] - C);
            for (size_t j = 0; j < kv_used; j++) sq += pk[j] * pk[j];
            r->cn[f] = sqrt(sq);
        }
        // 3. the Toeplitz products, one accumulator column per task
        #pragma omp parallel num_threads(nt)
        {
            rpe_thr h = thr_at(r, omp_get_thread_num());
            #pragma omp for schedule(dynamic, 1)
            for (size_t ch = 0; ch < cf; ch++) column_task(r, &h, ch, kv_used);
        }
    }

    // 4. out_i = numerator / denominator; zero rows for no visible key, no visible key with a
    //    nonzero weight (-inf bias), or a denominator not above the FFT's rounding bound
    //    tol_i = RPE_NOISE eps log2(N) |g|_2 sum_f |phi_f(q_i)| |column f|_2 (a product that is
    //    0 in exact arithmetic, e.g. relu features that never overlap, comes out as noise of
    //    that size, and noise / noise would be an arbitrary row)
    const double tol = RPE_NOISE * DBL_EPSILON * log2((double)r->N) * r->gnorm;
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (size_t i = 0; i < nq; i++) {
        size_t vis = rk__attn_visible(c, i, kv_len), lo = nq - 1 - i;
        const double den = r->acc[dv * nq + i];
        int live = vis > 0 && kv_used > 0 && r->cnt[lo + vis] > r->cnt[lo];
        if (live) {
            double bound = 0.0;
            for (size_t f = 0; f < F; f++) bound += fabs(r->phq[f * nq + i]) * r->cn[f];
            live = fabs(den) > tol * bound;
        }
        for (size_t ch = 0; ch < dv; ch++) {
            double o = live ? r->acc[ch * nq + i] / den : 0.0;
            if (of) of[i * old + ch] = (float)o;
            else od[i * old + ch] = o;
        }
    }
    return RK_OK;
}

static int rpe_exec_f(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v, rk_mat *out,
                      size_t kv_len)
{
    rows_in qi = { q->data, NULL, q->ld }, ki = { k->data, NULL, k->ld }, vi = { v->data, NULL, v->ld };
    return rpe_exec(p, qi, ki, vi, out->data, NULL, out->ld, kv_len);
}

static int rpe_exec_d(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                      rk_matd *out, size_t kv_len)
{
    rows_in qi = { NULL, q->data, q->ld }, ki = { NULL, k->data, k->ld }, vi = { NULL, v->data, v->ld };
    return rpe_exec(p, qi, ki, vi, NULL, out->data, out->ld, kv_len);
}

const rk__attn_kind rk__rpe_fft_kind = {
    .kind = RK_RPE_FFT, .name = "rpe-fft",
    .fields = RK_FIELD_SCALE | RK_FIELD_FEATURES | RK_FIELD_KERNEL | RK_FIELD_PROJ | RK_FIELD_MAP |
              RK_FIELD_BIAS | RK_FIELD_FFT,
    .fields_of = rpe_fields, .resolve = rpe_resolve, .create = rpe_create,
    .destroy = rpe_destroy, .exec_f = rpe_exec_f, .exec_d = rpe_exec_d,
};
