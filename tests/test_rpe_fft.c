/* RK_RPE_FFT (lib/rpe_fft.c): the FFT Toeplitz products against the naive O(n^2) formula
 * (tests/ref_rpe.c) for every feature map, bidirectional and causal, odd and power-of-two n,
 * n_q != n_kv, key padding, l2 normalisation and several biases; zero bias against plain
 * kernelized attention; thread-count invariance; causality up to rounding; non-finite inputs;
 * FFTW wisdom; every error path of create and execute. */
#include "check.h"
#include "ref_rpe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_randist.h>

void rk__alloc_fail_after(long n);    /* lib/core.c test hook */


/* The double path does the same sums as the reference, in another order and through FFTs
 * (rounding ~1e-16 times the column norms); the float path rounds inputs-as-given and outputs. */
#define D_RTOL 1e-9
#define D_ATOL 1e-10
#define F_RTOL 2e-6
#define F_ATOL 1e-6

enum { B_NONE, B_RANDOM, B_ALIBI, B_T5, B_MASKED, B_ZERO };

typedef struct {
    size_t n_q, n_kv, d, dv;
    int    causal;
    rk_kind base;        /* RK_PERFORMER or RK_LINEAR */
    int    fmap;         /* rk_kernel or rk_map */
    size_t m;
    int    bias;         /* B_* */
    size_t kv_len;
    size_t pad;
    int    l2norm;
} rcase;

typedef struct {
    rk_mat  q, k, v, out;
    rk_matd qd, kd, vd, outd, want;
    float  *w;           /* (m, d) projection */
    double *wd;
    double *b;           /* bias or NULL */
} rdata;

#define ALL RK_ALL_KEYS

static double *make_bias(const rcase *cs, gsl_rng *r)
{
    size_t len = rk_bias_len(cs->n_q, cs->n_kv);
    double *b = malloc(len * sizeof *b);
    assert_non_null(b);
    switch (cs->bias) {
    case B_NONE: free(b); return NULL;
    case B_ZERO: for (size_t i = 0; i < len; i++) b[i] = 0.0; break;
    case B_RANDOM: for (size_t i = 0; i < len; i++) b[i] = 1.5 * gsl_ran_gaussian(r, 1.0); break;
    case B_ALIBI: assert_rk_ok(rk_bias_alibi(b, cs->n_q, cs->n_kv, 0.125)); break;
    case B_T5: assert_rk_ok(rk_bias_t5(b, cs->n_q, cs->n_kv, NULL, !cs->causal, 0, 0)); break;
    case B_MASKED:   /* random, a third of the offsets -inf */
        for (size_t i = 0; i < len; i++)
            b[i] = gsl_rng_uniform(r) < 0.33 ? -INFINITY : gsl_ran_gaussian(r, 1.0);
        break;
    }
    return b;
}

static void data_make(rdata *t, const rcase *cs, unsigned long seed, double sigma)
{
    gsl_rng *r = rk_test_rng(seed);
    t->q = rk_test_randn(r, cs->n_q, cs->d, cs->d + cs->pad, sigma);
    t->k = rk_test_randn(r, cs->n_kv, cs->d, cs->d + 2 * cs->pad, sigma);
    t->v = rk_test_randn(r, cs->n_kv, cs->dv, cs->dv + cs->pad, 1.0);
    t->out = rk_test_mat(cs->n_q, cs->dv, cs->dv + cs->pad);
    t->qd = rk_test_matd(cs->n_q, cs->d, cs->d + cs->pad);
    t->kd = rk_test_matd(cs->n_kv, cs->d, cs->d + 2 * cs->pad);
    t->vd = rk_test_matd(cs->n_kv, cs->dv, cs->dv + cs->pad);
    t->outd = rk_test_matd(cs->n_q, cs->dv, cs->dv + cs->pad);
    t->want = rk_test_matd(cs->n_q, cs->dv, cs->dv);
    rk_test_f2d(&t->q, &t->qd);
    rk_test_f2d(&t->k, &t->kd);
    rk_test_f2d(&t->v, &t->vd);
    size_t m = cs->m ? cs->m : 1;
    t->w = malloc(m * cs->d * sizeof *t->w);
    t->wd = malloc(m * cs->d * sizeof *t->wd);
    assert_true(t->w && t->wd);
    for (size_t i = 0; i < m * cs->d; i++) {
        t->w[i] = (float)gsl_ran_gaussian(r, 1.0);
        t->wd[i] = t->w[i];
    }
    t->b = make_bias(cs, r);
    gsl_rng_free(r);
}

static void data_free(rdata *t)
{
    rk_test_free(&t->q); rk_test_free(&t->k); rk_test_free(&t->v); rk_test_free(&t->out);
    rk_test_freed(&t->qd); rk_test_freed(&t->kd); rk_test_freed(&t->vd);
    rk_test_freed(&t->outd); rk_test_freed(&t->want);
    free(t->w); free(t->wd); free(t->b);
}

static rk_attn_config case_config(const rcase *cs, const rdata *t, int nthreads)
{
    rk_attn_config c = { .kind = RK_RPE_FFT, .n_q = cs->n_q, .n_kv = cs->n_kv, .d = cs->d,
                         .d_v = cs->dv, .causal = cs->causal, .nthreads = nthreads,
                         .rpe_base = cs->base, .rpe_l2norm = cs->l2norm };
    if (cs->base == RK_PERFORMER) {
        c.kernel = (rk_kernel)cs->fmap;
        c.n_features = cs->m;
        c.proj_data = t->w;
    } else {
        c.map = (rk_map)cs->fmap;
    }
    if (t->b) {
        c.bias = t->b;
        c.bias_len = rk_bias_len(cs->n_q, cs->n_kv);
    }
    return c;
}

static void reference(const rcase *cs, rdata *t)
{
    ref_rpe_cfg rc = { .lin = { .kind = cs->base, .kernel = (rk_kernel)cs->fmap,
                                .map = (rk_map)cs->fmap, .w = t->wd, .m = cs->m,
                                .scale = 1.0 / sqrt((double)cs->d), .causal = cs->causal },
                       .bias = t->b, .l2norm = cs->l2norm };
    ref_rpe_attention(&rc, &t->qd, &t->kd, &t->vd, &t->want, cs->kv_len);
}

static void check_case(const rcase *cs, int nthreads)
{
    rdata t;
    data_make(&t, cs, 500 + cs->n_q * 31 + cs->n_kv * 7 + cs->d + (size_t)cs->bias, 1.0);
    reference(cs, &t);
    rk_attn *p;
    rk_attn_config c = case_config(cs, &t, nthreads);
    assert_rk_ok(rk_attn_create(&p, &c));
    assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, cs->kv_len));
    assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, cs->kv_len));
    double ef = rk_max_abs_diff(&t.out, &t.want), ed = rk_max_abs_diffd(&t.outd, &t.want);
    if (getenv("RK_TEST_VERBOSE"))
        printf("   n_q %4zu n_kv %4zu d %2zu dv %2zu causal %d base %d map %d m %3zu bias %d "
               "kv_len %5lld l2 %d  float %.2e  double %.2e\n", cs->n_q, cs->n_kv, cs->d, cs->dv,
               cs->causal, (int)cs->base, cs->fmap, cs->m, cs->bias,
               cs->kv_len == ALL ? -1LL : (long long)cs->kv_len, cs->l2norm, ef, ed);
    assert_mat_close(&t.out, &t.want, F_RTOL, F_ATOL);
    assert_matd_close(&t.outd, &t.want, D_RTOL, D_ATOL);
    for (size_t i = 0; i < cs->n_q; i++)     /* padding columns of out never written */
        for (size_t j = cs->dv; j < t.out.ld; j++) assert_true(isnan(t.out.data[i * t.out.ld + j]));
    rk_attn_destroy(p);
    data_free(&t);
}

#define PERF RK_PERFORMER
#define LIN RK_LINEAR
#define POS RK_KERNEL_POSITIVE
#define HYP RK_KERNEL_HYPERBOLIC
#define ELU RK_MAP_ELU
#define RELU RK_MAP_RELU
static const rcase cases[] = {
    /* n_q n_kv  d  dv causal base  map   m  bias      kv_len pad l2 */
    {    1,   1,  4,  3, 0, PERF, POS,  8, B_RANDOM, ALL, 0, 0 },
    {    7,   7,  4,  3, 0, PERF, POS,  8, B_RANDOM, ALL, 1, 0 },
    {    7,   7,  4,  3, 1, PERF, POS,  8, B_RANDOM, ALL, 1, 0 },
    {   64,  64,  8,  4, 1, PERF, POS, 16, B_ALIBI,  ALL, 0, 0 },   /* power of two */
    {   64,  64,  8,  4, 0, PERF, HYP,  8, B_T5,     ALL, 2, 0 },
    {   33,  50,  8,  5, 1, PERF, HYP,  8, B_T5,     ALL, 2, 0 },   /* n_q < n_kv */
    {   50,  33,  8,  5, 1, PERF, POS, 12, B_RANDOM, ALL, 0, 0 },   /* n_q > n_kv: empty rows */
    {   50,  33,  8,  5, 0, LIN,  ELU,  0, B_RANDOM, ALL, 3, 0 },
    {   97,  97,  8,  6, 1, LIN,  RELU, 0, B_MASKED, ALL, 1, 0 },   /* -inf entries */
    {   97,  97,  8,  6, 0, LIN,  RELU, 0, B_MASKED, ALL, 0, 0 },
    {  128, 128, 16,  8, 0, LIN,  ELU,  0, B_ALIBI,   77, 0, 0 },   /* key padding */
    {  101, 101,  8,  4, 1, PERF, POS, 16, B_RANDOM,  60, 1, 1 },   /* padding, causal, l2 */
    {  101, 101,  8,  4, 0, PERF, HYP, 16, B_NONE,   ALL, 0, 1 },
    {    1, 300,  8,  8, 1, PERF, POS, 16, B_T5,     ALL, 0, 0 },   /* one query (decoding) */
    {  300,   1,  8,  8, 1, PERF, POS, 16, B_RANDOM, ALL, 0, 0 },
    {  255, 255,  6,  3, 1, LIN,  ELU,  0, B_ZERO,   ALL, 0, 1 },   /* odd */
    {  256, 256,  6,  3, 1, PERF, POS,  8, B_ALIBI,  ALL, 0, 0 },   /* power of two */
    {   90, 130,  8,  4, 0, PERF, POS,  8, B_MASKED,  50, 1, 0 },
    { 1024, 1024, 8,  2, 1, PERF, POS,  8, B_ALIBI,  ALL, 0, 0 },
    { 1000, 1000, 8,  2, 0, LIN,  ELU,  0, B_T5,     ALL, 0, 0 },
    {  999,  999, 8,  2, 1, LIN,  RELU, 0, B_NONE,   ALL, 0, 0 },
};

static void test_vs_reference(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i], 2);
}

/* Work is split by value column: one thread, more threads than columns, d_v = 1. */
static void test_vs_reference_threads(void **state)
{
    (void)state;
    static const rcase tc[] = {
        {  70,  90,  8, 20, 1, PERF, HYP, 12, B_RANDOM, ALL, 1, 0 },
        {  90,  70,  8,  1, 0, LIN,  ELU,  0, B_ALIBI,   60, 1, 0 },
    };
    for (size_t i = 0; i < 2; i++)
        for (int nth = 1; nth <= 4; nth++) check_case(&tc[i], nth);
}

/* With b = 0 the result is plain kernelized attention: the RK_PERFORMER / RK_LINEAR plan of
 * the same config (same seed: same projection). */
static void test_zero_bias_is_plain(void **state)
{
    (void)state;
    static const rcase tc[] = {
        {  80,  80, 16,  8, 1, PERF, POS, 32, B_ZERO, ALL, 0, 0 },
        {  80,  80, 16,  8, 0, PERF, POS, 32, B_NONE, ALL, 1, 0 },
        {  60, 100, 16,  8, 1, PERF, HYP, 16, B_ZERO, ALL, 0, 0 },
        { 100,  60, 16,  8, 1, LIN,  ELU,  0, B_ZERO, ALL, 0, 0 },
        {  77,  77,  8,  8, 0, LIN,  RELU, 0, B_ZERO,  50, 2, 0 },
        {  64,  64,  8,  4, 1, PERF, RK_KERNEL_TRIG, 16, B_ZERO, ALL, 0, 0 },
    };
    for (size_t ci = 0; ci < sizeof tc / sizeof tc[0]; ci++) {
        const rcase *cs = &tc[ci];
        rdata t;
        data_make(&t, cs, 900 + ci, cs->fmap == RK_KERNEL_TRIG && cs->base == PERF ? 0.3 : 1.0);
        rk_attn_config c = case_config(cs, &t, 2);
        c.proj_data = NULL;
        c.seed = 4242;                          /* the projection comes from the seed */
        rk_attn_config c0 = c;
        c0.kind = cs->base;
        c0.rpe_base = 0;
        c0.bias = NULL;
        c0.bias_len = 0;
        rk_attn *p, *p0;
        assert_rk_ok(rk_attn_create(&p, &c));
        assert_rk_ok(rk_attn_create(&p0, &c0));
        rk_mat o0 = rk_test_mat(cs->n_q, cs->dv, cs->dv);
        rk_matd o0d = rk_test_matd(cs->n_q, cs->dv, cs->dv), of = rk_test_matd(cs->n_q, cs->dv, cs->dv);
        assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, cs->kv_len));
        assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, cs->kv_len));
        assert_rk_ok(rk_attn_execute(p0, &t.q, &t.k, &t.v, &o0, cs->kv_len));
        assert_rk_ok(rk_attn_execute_d(p0, &t.qd, &t.kd, &t.vd, &o0d, cs->kv_len));
        if (getenv("RK_TEST_VERBOSE"))
            printf("   zero bias vs %s: double %.2e float %.2e\n", cs->base == PERF ? "performer"
                   : "linear", rk_max_abs_diffd(&t.outd, &o0d), rk_max_abs_diff(&t.out, &o0d));
        assert_matd_close(&t.outd, &o0d, 1e-9, 1e-10);
        rk_test_f2d(&o0, &of);
        assert_mat_close(&t.out, &of, 1e-4, 1e-5);   /* the performer float path: float features */
        rk_attn_destroy(p);
        rk_attn_destroy(p0);
        rk_test_free(&o0); rk_test_freed(&o0d); rk_test_freed(&of);
        data_free(&t);
    }
}

/* The same bits for 1, 2 and 3 threads, float and double. */
static void test_threads_bitwise(void **state)
{
    (void)state;
    static const rcase tc[] = {
        { 301, 301, 16, 12, 1, PERF, POS, 24, B_ALIBI, ALL, 1, 0 },
        { 250, 400,  8, 20, 0, LIN,  ELU,  0, B_RANDOM, 333, 0, 1 },
        { 400, 250,  8,  5, 1, PERF, HYP, 16, B_MASKED, 200, 2, 0 },
    };
    for (size_t ci = 0; ci < sizeof tc / sizeof tc[0]; ci++) {
        {
            const rcase *cs = &tc[ci];
            rdata t;
            data_make(&t, cs, 77 + ci, 1.0);
            rk_mat o1 = rk_test_mat(cs->n_q, cs->dv, cs->dv);
            rk_matd o1d = rk_test_matd(cs->n_q, cs->dv, cs->dv);
            for (int nth = 1; nth <= 3; nth++) {
                rk_attn *p;
                rk_attn_config c = case_config(cs, &t, nth);
                assert_rk_ok(rk_attn_create(&p, &c));
                rk_mat *o = nth == 1 ? &o1 : &t.out;
                rk_matd *od = nth == 1 ? &o1d : &t.outd;
                assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, o, cs->kv_len));
                assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, od, cs->kv_len));
                for (size_t i = 0; nth > 1 && i < cs->n_q; i++) {
                    assert_memory_equal(o1.data + i * o1.ld, t.out.data + i * t.out.ld,
                                        cs->dv * sizeof(float));
                    assert_memory_equal(o1d.data + i * o1d.ld, t.outd.data + i * t.outd.ld,
                                        cs->dv * sizeof(double));
                }
                rk_attn_destroy(p);
            }
            rk_test_free(&o1);
            rk_test_freed(&o1d);
            data_free(&t);
        }
    }
}

/* Causal: changing keys and values from `cut` on changes rows that cannot see them only at
 * the FFT's rounding level (never exactly: the transforms mix all positions), while rows that
 * see them do change. */
static void test_causal_future_rounding(void **state)
{
    (void)state;
    rcase cs = { 200, 200, 8, 4, 1, PERF, POS, 16, B_ALIBI, ALL, 0, 0 };
    rdata t;
    data_make(&t, &cs, 31, 1.0);
    rk_attn *p;
    rk_attn_config c = case_config(&cs, &t, 2);
    assert_rk_ok(rk_attn_create(&p, &c));
    rk_matd o0 = rk_test_matd(cs.n_q, cs.dv, cs.dv);
    assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &o0, ALL));
    const size_t cut = 120;
    gsl_rng *r = rk_test_rng(5);
    for (size_t j = cut; j < cs.n_kv; j++) {
        for (size_t ch = 0; ch < cs.d; ch++) t.kd.data[j * t.kd.ld + ch] = 3.0 * gsl_ran_gaussian(r, 1.0);
        for (size_t ch = 0; ch < cs.dv; ch++) t.vd.data[j * t.vd.ld + ch] = 100.0 * gsl_ran_gaussian(r, 1.0);
    }
    gsl_rng_free(r);
    assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, ALL));
    double past = 0.0, future = 0.0;
    for (size_t i = 0; i < cs.n_q; i++)
        for (size_t ch = 0; ch < cs.dv; ch++) {
            double e = fabs(t.outd.data[i * t.outd.ld + ch] - o0.data[i * o0.ld + ch]);
            if (i < cut) { if (e > past) past = e; }
            else if (e > future) future = e;
        }
    if (getenv("RK_TEST_VERBOSE")) printf("   past rows moved %.2e, future rows %.2e\n", past, future);
    assert_true(past < 1e-11);
    assert_true(future > 1e-3);
    rk_attn_destroy(p);
    rk_test_freed(&o0);
    data_free(&t);
}

/* Non-finite inputs: refused where they are read (an FFT would spread them to every row),
 * ignored in keys past kv_len. */
static void test_nonfinite(void **state)
{
    (void)state;
    rcase cs = { 40, 50, 8, 4, 0, PERF, POS, 8, B_RANDOM, 30, 1, 0 };
    rdata t;
    data_make(&t, &cs, 41, 1.0);
    rk_attn *p;
    rk_attn_config c = case_config(&cs, &t, 2);
    assert_rk_ok(rk_attn_create(&p, &c));
    rk_matd o0 = rk_test_matd(cs.n_q, cs.dv, cs.dv);
    assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &o0, 30));
    /* past kv_len: allowed, same bits */
    t.kd.data[35 * t.kd.ld + 2] = NAN;
    t.vd.data[40 * t.vd.ld + 1] = INFINITY;
    t.k.data[35 * t.k.ld + 2] = NAN;
    assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, 30));
    for (size_t i = 0; i < cs.n_q; i++)
        assert_memory_equal(o0.data + i * o0.ld, t.outd.data + i * t.outd.ld, cs.dv * sizeof(double));
    assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, 30));
    /* read: refused */
    assert_rk_error(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, ALL), RK_ENONFINITE);
    assert_rk_error(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, ALL), RK_ENONFINITE);
    t.qd.data[3 * t.qd.ld] = NAN;
    assert_rk_error(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, 30), RK_ENONFINITE);
    t.v.data[2 * t.v.ld + 3] = -INFINITY;
    assert_rk_error(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, 30), RK_ENONFINITE);
    rk_attn_destroy(p);
    rk_test_freed(&o0);
    data_free(&t);
}

/* Zero rows: no visible key (kv_len 0, n_q > n_kv causal), every visible bias entry -inf,
 * relu features that never overlap (a denominator that is 0 exactly, FFT noise otherwise). */
static void test_zero_rows(void **state)
{
    (void)state;
    rcase cs = { 30, 20, 4, 3, 1, LIN, RELU, 0, B_RANDOM, ALL, 0, 0 };
    rdata t;
    data_make(&t, &cs, 61, 1.0);
    /* queries and keys with disjoint positive supports: q >= 0 on channels 0, 1 only, k on
     * 2, 3 only, except key 5 which overlaps */
    for (size_t i = 0; i < cs.n_q; i++)
        for (size_t ch = 2; ch < 4; ch++) { t.q.data[i * t.q.ld + ch] = -1.0f; t.qd.data[i * t.qd.ld + ch] = -1.0; }
    for (size_t j = 0; j < cs.n_kv; j++)
        for (size_t ch = 0; ch < 2; ch++) {
            float x = j == 5 ? 0.75f : -1.0f;
            t.k.data[j * t.k.ld + ch] = x;
            t.kd.data[j * t.kd.ld + ch] = x;
        }
    for (size_t i = 0; i < cs.n_q; i++) { t.q.data[i * t.q.ld] = 0.5f; t.qd.data[i * t.qd.ld] = 0.5; }
    /* the bias: -inf for offsets -3 .. 0 */
    for (int off = -3; off <= 0; off++) t.b[off + (int)cs.n_kv - 1] = -INFINITY;
    reference(&cs, &t);
    rk_attn *p;
    rk_attn_config c = case_config(&cs, &t, 2);
    assert_rk_ok(rk_attn_create(&p, &c));
    assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, ALL));
    assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, ALL));
    assert_matd_close(&t.outd, &t.want, D_RTOL, D_ATOL);
    assert_mat_close(&t.out, &t.want, F_RTOL, F_ATOL);
    size_t zero = 0, live = 0;
    for (size_t i = 0; i < cs.n_q; i++) {
        int z = 1;
        for (size_t ch = 0; ch < cs.dv; ch++) z &= t.outd.data[i * t.outd.ld + ch] == 0.0;
        zero += z;
        live += !z;
    }
    assert_true(zero > 10 && live > 5);    /* the premise: both kinds of rows occur */
    assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, 0));
    for (size_t i = 0; i < cs.n_q; i++)
        for (size_t ch = 0; ch < cs.dv; ch++) assert_true(t.outd.data[i * t.outd.ld + ch] == 0.0);
    rk_attn_destroy(p);
    data_free(&t);
}

/* FFTW wisdom: a plan with fft_wisdom measures, saves the wisdom (a file appears), a second
 * plan reads it back; results agree with the FFTW_ESTIMATE plan to rounding. A file that is
 * not wisdom is RK_EFORMAT; a path in a missing directory cannot be saved (RK_EIO). */
static void test_wisdom(void **state)
{
    (void)state;
    char dir[] = "/tmp/rk_rpe_wisdom_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], bad[256], nodir[256];
    snprintf(path, sizeof path, "%s/wisdom", dir);
    snprintf(bad, sizeof bad, "%s/not-wisdom", dir);
    snprintf(nodir, sizeof nodir, "%s/missing/wisdom", dir);
    rcase cs = { 60, 60, 8, 4, 1, PERF, POS, 8, B_ALIBI, ALL, 0, 0 };
    rdata t;
    data_make(&t, &cs, 71, 1.0);
    rk_attn *p0, *p1, *p2;
    rk_attn_config c = case_config(&cs, &t, 2), cw = c;
    cw.fft_wisdom = path;
    assert_rk_ok(rk_attn_create(&p0, &c));
    assert_rk_ok(rk_attn_create(&p1, &cw));
    assert_int_equal(access(path, R_OK), 0);
    assert_string_equal(rk_attn_get_config(p1)->fft_wisdom, path);
    assert_true(rk_attn_get_config(p1)->fft_wisdom != path);     /* the plan's copy */
    assert_rk_ok(rk_attn_create(&p2, &cw));                      /* imports it */
    rk_matd o1 = rk_test_matd(cs.n_q, cs.dv, cs.dv);
    assert_rk_ok(rk_attn_execute_d(p0, &t.qd, &t.kd, &t.vd, &t.outd, ALL));
    assert_rk_ok(rk_attn_execute_d(p1, &t.qd, &t.kd, &t.vd, &o1, ALL));
    assert_matd_close(&o1, &t.outd, 1e-12, 1e-13);
    assert_rk_ok(rk_attn_execute_d(p2, &t.qd, &t.kd, &t.vd, &o1, ALL));
    assert_matd_close(&o1, &t.outd, 1e-12, 1e-13);
    rk_attn_destroy(p0);
    rk_attn_destroy(p1);
    rk_attn_destroy(p2);

    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    fputs("this is not FFTW wisdom\n", f);
    fclose(f);
    cw.fft_wisdom = bad;
    assert_rk_error(rk_attn_create(&p1, &cw), RK_EFORMAT);
    assert_null(p1);
    cw.fft_wisdom = nodir;
    assert_rk_error(rk_attn_create(&p1, &cw), RK_EIO);
    assert_null(p1);
    unlink(path);
    unlink(bad);
    rmdir(dir);
    rk_test_freed(&o1);
    data_free(&t);
}

/* Config resolution, memory, and what an rpe-fft plan does not offer. */
static void test_config_and_extras(void **state)
{
    (void)state;
    rcase cs = { 50, 70, 8, 4, 1, PERF, POS, 0, B_T5, ALL, 0, 0 };
    rdata t;
    data_make(&t, &cs, 81, 1.0);
    rk_attn_config c = case_config(&cs, &t, 2);
    c.proj_data = NULL;
    c.seed = 7;
    c.rpe_base = 0;
    rk_attn *p;
    assert_rk_ok(rk_attn_create(&p, &c));
    const rk_attn_config *g = rk_attn_get_config(p);
    assert_int_equal(g->rpe_base, RK_PERFORMER);
    assert_int_equal(g->n_features, 256);
    assert_true(g->bias != t.b);                           /* the plan's copy */
    assert_memory_equal(g->bias, t.b, rk_bias_len(50, 70) * sizeof(double));
    /* features (n_q + n_kv) F, values n_kv d_v, accumulators n_q (d_v + 1) in double, and per
     * thread one column of N = 120 reals and 61 complex values */
    assert_true(rk_attn_bytes(p) > ((50 + 70) * 256 + 70 * 4 + 50 * 5) * sizeof(double) +
                                   2 * (120 + 61 * 2) * sizeof(double));
    size_t m = 1, d = 1;
    assert_null(rk_attn_proj(p, &m, &d));
    assert_int_equal(m, 0);
    assert_int_equal(rk_attn_feature_dim(p), 0);
    rk_attn_state *st = (rk_attn_state *)&st;
    assert_rk_error(rk_attn_state_create(&st, p), RK_EUNSUP);
    assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, ALL));
    rk_attn_destroy(p);
    data_free(&t);
}

/* Every error of create and execute. */
static void test_errors(void **state)
{
    (void)state;
    rcase cs = { 10, 12, 8, 4, 0, PERF, POS, 8, B_RANDOM, ALL, 1, 0 };
    rdata t;
    data_make(&t, &cs, 91, 1.0);
    rk_attn *p = (rk_attn *)&p;
    rk_attn_config c = case_config(&cs, &t, 2), e;

    e = c; e.rope = RK_ROPE_QK;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    assert_null(p);
    e = c; e.rope_freq_dim_head = 1;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.rpe_base = RK_SOFTMAX;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.bias_len = 20;                                   /* needs 21 */
    assert_rk_error(rk_attn_create(&p, &e), RK_EDIM);
    e = c; e.bias = NULL;                                     /* length without values */
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    double saved = t.b[4];
    t.b[4] = NAN;
    assert_rk_error(rk_attn_create(&p, &c), RK_ENONFINITE);
    t.b[4] = INFINITY;
    assert_rk_error(rk_attn_create(&p, &c), RK_ENONFINITE);
    t.b[4] = -INFINITY;                                       /* allowed */
    assert_rk_ok(rk_attn_create(&p, &c));
    rk_attn_destroy(p);
    t.b[4] = 1e300;                                           /* allowed (exp(b - max)) */
    assert_rk_ok(rk_attn_create(&p, &c));
    rk_attn_destroy(p);
    t.b[4] = saved;
    e = c; e.kernel = (rk_kernel)9;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.proj = (rk_proj)9;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.proj_norm = (rk_proj_norm)9;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.proj_data = NULL; e.seed = 0;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.scale = -1.0;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.n_features = (size_t)1 << 40; e.proj_data = NULL; e.seed = 3;
    assert_rk_error(rk_attn_create(&p, &e), RK_EOVERFLOW);
    e = c; e.rpe_base = RK_LINEAR; e.proj_data = NULL; e.n_features = 0; e.map = (rk_map)5;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.rpe_base = RK_LINEAR; e.proj_data = NULL; e.n_features = 7;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.rpe_base = RK_LINEAR; e.n_features = 0;            /* proj_data with a linear map */
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.proj_data = NULL; e.seed = 3; e.n_q = (size_t)1 << 30; e.n_kv = (size_t)1 << 30;
    e.bias = NULL; e.bias_len = 0;
    assert_rk_error(rk_attn_create(&p, &e), RK_EOVERFLOW);     /* FFT buffers too large */
    e = c; e.xpos_scale_base = 512.0;                           /* xPos is softmax's */
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    /* the rpe fields on other kinds */
    e = c; e.kind = RK_PERFORMER; e.bias = NULL; e.bias_len = 0;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);        /* rpe_base set */
    e.rpe_base = 0; e.rpe_l2norm = 1;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e.rpe_l2norm = 0; e.fft_wisdom = "/tmp/x";
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e.fft_wisdom = NULL;
    assert_rk_ok(rk_attn_create(&p, &e));
    rk_attn_destroy(p);
    e = c; e.kind = RK_LINEAR; e.rpe_base = 0; e.proj_data = NULL; e.n_features = 0;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);        /* a bias on linear */
    assert_null(p);

    /* allocation failure at every allocation of create: ENOMEM, no leak (LSan), then success */
    for (int base = 0; base < 2; base++) {
        e = c;
        if (base) { e.rpe_base = RK_LINEAR; e.proj_data = NULL; e.n_features = 0; }
        long k = 0;
        for (;; k++) {
            rk__alloc_fail_after(k);
            int rc = rk_attn_create(&p, &e);
            rk__alloc_fail_after(-1);
            if (rc == RK_OK) break;
            assert_int_equal(rc, RK_ENOMEM);
            assert_null(p);
            assert_true(k < 100);
        }
        assert_true(k >= 10);
        rk_attn_destroy(p);
    }

    /* execute: shapes (checked by attn.c for every kind) and the plan still works */
    assert_rk_ok(rk_attn_create(&p, &c));
    rk_mat badm = t.q; badm.rows = 9;
    assert_rk_error(rk_attn_execute(p, &badm, &t.k, &t.v, &t.out, ALL), RK_EDIM);
    rk_matd badd = t.vd; badd.cols = 3;
    assert_rk_error(rk_attn_execute_d(p, &t.qd, &t.kd, &badd, &t.outd, ALL), RK_EDIM);
    assert_rk_error(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, 13), RK_EDIM);
    assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, ALL));
    assert_true(rk_last_error()[0] == '\0');
    rk_attn_destroy(p);
    data_free(&t);
}

int main(void)
{
    gsl_set_error_handler_off();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_reference),
        cmocka_unit_test(test_vs_reference_threads),
        cmocka_unit_test(test_zero_bias_is_plain),
        cmocka_unit_test(test_threads_bitwise),
        cmocka_unit_test(test_causal_future_rounding),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_zero_rows),
        cmocka_unit_test(test_wisdom),
        cmocka_unit_test(test_config_and_extras),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("rpe_fft", tests, NULL, NULL);
}
