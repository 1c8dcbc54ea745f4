/* Exact softmax attention (lib/softmax.c): the float32 kernels (AVX2 and portable) and the
 * float64 path against the naive reference (tests/ref_attn.c) on awkward shapes, then
 * properties (convex weights, shift invariance, causality, thread-count invariance, large
 * logits, inputs untouched) and every error path of create/execute; then the relative bias and
 * xPos (issue 6) against the reference, zero bias = no bias bit for bit, -inf masking, threads,
 * xPos's relative property, and their errors. */
#include "check.h"
#include "ref_attn.h"
#include "softmax_kern.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gsl/gsl_errno.h>

void rk__alloc_fail_after(long n);   /* lib/core.c test hook */

/* float32 against the double reference: the kernels use float products and sums (fp32
 * accumulators in the vector kernels), so ~1e-6 relative to the value scale is expected. */
#define F_RTOL 2e-5
#define F_ATOL 2e-6
#define D_RTOL 1e-12
#define D_ATOL 1e-13

typedef struct {
    size_t  n_q, n_kv, d, dv;
    int     causal;
    int     rope;          /* 0 none, 1 interleaved, 2 half */
    int64_t pos_offset;
    size_t  kv_len;        /* RK_ALL_KEYS or a count */
    size_t  pad;           /* ld = cols + pad */
    size_t  rotary_dim;    /* 0: d */
    double  base;          /* 0: 10000 */
} tcase;

typedef struct {           /* one case's inputs, float and their exact double copies */
    rk_mat  q, k, v, out;
    rk_matd qd, kd, vd, outd, want;
} tdata;

static void data_make(tdata *t, const tcase *cs, unsigned long seed, double sigma)
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
    gsl_rng_free(r);
}

static void data_free(tdata *t)
{
    rk_test_free(&t->q); rk_test_free(&t->k); rk_test_free(&t->v); rk_test_free(&t->out);
    rk_test_freed(&t->qd); rk_test_freed(&t->kd); rk_test_freed(&t->vd);
    rk_test_freed(&t->outd); rk_test_freed(&t->want);
}

static rk_attn_config case_config(const tcase *cs, int nthreads)
{
    rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = cs->n_q, .n_kv = cs->n_kv, .d = cs->d,
                         .d_v = cs->dv, .causal = cs->causal, .pos_offset = cs->pos_offset,
                         .nthreads = nthreads };
    if (cs->rope) {
        c.rope = RK_ROPE_QK;
        c.rope_cfg.style = cs->rope == 2 ? RK_ROPE_HALF : RK_ROPE_INTERLEAVED;
        c.rope_cfg.base = cs->base;
        c.rope_cfg.rotary_dim = cs->rotary_dim;
    }
    return c;
}

static void reference(const tcase *cs, tdata *t)
{
    ref_attn_rope rr = { cs->rope == 2 ? RK_ROPE_HALF : RK_ROPE_INTERLEAVED, cs->base,
                         cs->rotary_dim, cs->pos_offset };
    ref_softmax_attention(&t->qd, &t->kd, &t->vd, &t->want, 1.0 / sqrt((double)cs->d),
                          cs->causal, cs->kv_len, cs->rope ? &rr : NULL);
}

/* Run both precisions of one plan (portable or vector float kernels) against the reference. */
static void check_case(const tcase *cs, int portable, int nthreads)
{
    tdata t;
    data_make(&t, cs, 1000 + cs->n_q * 31 + cs->n_kv * 7 + cs->d, 1.0);
    reference(cs, &t);
    rk__sm_force_portable(portable);
    rk_attn *p;
    rk_attn_config c = case_config(cs, nthreads);
    assert_rk_ok(rk_attn_create(&p, &c));
    rk__sm_force_portable(0);
    assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, cs->kv_len));
    assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, cs->kv_len));
    double ef = rk_max_abs_diff(&t.out, &t.want), ed = rk_max_abs_diffd(&t.outd, &t.want);
    if (getenv("RK_TEST_VERBOSE"))
        printf("   n_q %4zu n_kv %4zu d %3zu dv %3zu causal %d rope %d kv_len %5lld  "
               "float %.2e  double %.2e\n", cs->n_q, cs->n_kv, cs->d, cs->dv, cs->causal,
               cs->rope, cs->kv_len == RK_ALL_KEYS ? -1LL : (long long)cs->kv_len, ef, ed);
    assert_mat_close(&t.out, &t.want, F_RTOL, F_ATOL);
    assert_matd_close(&t.outd, &t.want, D_RTOL, D_ATOL);
    /* padding columns of out are never written (still NaN) */
    for (size_t i = 0; i < cs->n_q; i++)
        for (size_t j = cs->dv; j < t.out.ld; j++) assert_true(isnan(t.out.data[i * t.out.ld + j]));
    rk_attn_destroy(p);
    data_free(&t);
}

#define ALL RK_ALL_KEYS
static const tcase cases[] = {
    /* n_q n_kv   d  dv  causal rope  off  kv_len pad rot base */
    {    1,   1,   1,  1, 0, 0,     0, ALL, 0, 0, 0 },
    {    7,   7,   3,  3, 1, 0,     0, ALL, 1, 0, 0 },
    {   33,  50,  17,  5, 1, 0,     0, ALL, 2, 0, 0 },   /* n_q < n_kv */
    {   50,  33,  17,  9, 1, 0,     0, ALL, 0, 0, 0 },   /* n_q > n_kv: first rows see nothing */
    {   50,  33,  17,  9, 0, 0,     0, ALL, 3, 0, 0 },
    {   97, 131,  64, 64, 0, 1,     5, ALL, 3, 0, 0 },
    {   97, 131,  64, 80, 1, 2,  1000, ALL, 1, 0, 0 },
    {  130, 130,  80, 64, 1, 0,     0,  77, 0, 0, 0 },   /* key padding */
    {   65, 200,  16, 16, 0, 0,     0,   0, 1, 0, 0 },   /* kv_len = 0: zero rows */
    {   49,  49,  64, 64, 1, 0,     0,  20, 0, 0, 0 },
    {  200,  70,   8, 24, 1, 1,   -30,  50, 2, 4, 500 }, /* partial rotary, negative positions */
    {    1, 300,  64, 64, 1, 0,     0, ALL, 0, 0, 0 },   /* one query (decoding) */
    {  300,   1,  64, 64, 1, 0,     0, ALL, 0, 0, 0 },
    {  145, 145,   2,  1, 1, 2,     0, ALL, 1, 0, 0 },
    {   64,  64,  64, 64, 1, 0,     0, ALL, 0, 0, 0 },   /* whole tiles */
    {  144, 192,  32, 32, 0, 0,     0, ALL, 0, 0, 0 },
    {  144, 192,  32, 48, 1, 1,     0, 190, 0, 0, 0 },
    {  500, 500, 128, 40, 1, 2,     7, ALL, 1, 0, 0 },
    {  257, 700,  64, 64, 1, 1,     0, ALL, 0, 0, 0 },
    {   40,  50,  16, 16, 1, 1, 1000000, ALL, 0, 0, 0 },  /* positions past the RoPE table */
    {   70,  30, 1000,  8, 1, 2,     0, ALL, 1, 0, 0 },   /* wide heads: RoPE on big blocks */
};

static void test_vs_reference(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i], 0, 2);
}

static void test_vs_reference_portable(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i], 1, 2);
}

/* The vector exp2: relative error of a few ulp on [-126, 0] (the range the kernels use),
 * exact 1 at 0, exact 0 at -inf and below -127, NaN kept. */
static void test_exp2(void **state)
{
    (void)state;
    enum { N = 200001 };
    float *x = malloc(N * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < N; i++) x[i] = (float)(-126.0 + 126.0 * (double)i / (N - 1));
    float *y = malloc(N * sizeof *y);
    assert_non_null(y);
    memcpy(y, x, N * sizeof *x);
    if (!rk__sm_exp2_array(y, N)) { free(x); free(y); skip(); }
    double worst = 0.0;
    for (size_t i = 0; i < N; i++) {
        double want = exp2((double)x[i]), err = fabs(y[i] - want) / want;
        if (err > worst) worst = err;
    }
    printf("   exp2: max relative error %.3g (%.2f ulp of 1)\n", worst, worst / 0x1p-23);
    assert_true(worst < 3.0 * 0x1p-23);
    float sp[9] = { 0.0f, -INFINITY, -127.0f, -1000.0f, -1e30f, NAN, 1.0f, 10.5f, -0.5f };
    assert_true(rk__sm_exp2_array(sp, 9));
    assert_true(sp[0] == 1.0f);
    assert_true(sp[1] == 0.0f && sp[2] == 0.0f && sp[3] == 0.0f && sp[4] == 0.0f);
    assert_true(isnan(sp[5]));
    assert_true(sp[6] == 2.0f);
    assert_true(fabs(sp[7] - exp2(10.5)) < 4e-7 * exp2(10.5));
    assert_true(fabs(sp[8] - exp2(-0.5)) < 4e-7);
    free(x);
    free(y);
}

/* Same bits for 1, 2 and 3 threads, float (both kernel sets) and double. */
static void test_threads_bitwise(void **state)
{
    (void)state;
    static const tcase tc[] = {
        {  301, 301, 64, 64, 1, 1, 3, ALL, 1, 0, 0 },
        {  250, 400, 24, 40, 0, 0, 0, 333, 0, 0, 0 },
        {  400, 250, 24, 40, 1, 2, 0, 200, 2, 0, 0 },
    };
    for (size_t ci = 0; ci < sizeof tc / sizeof tc[0]; ci++)
        for (int portable = 0; portable < 2; portable++) {
            const tcase *cs = &tc[ci];
            tdata t;
            data_make(&t, cs, 77 + ci, 1.0);
            rk_mat o1 = rk_test_mat(cs->n_q, cs->dv, cs->dv);
            rk_matd o1d = rk_test_matd(cs->n_q, cs->dv, cs->dv);
            for (int nth = 1; nth <= 3; nth++) {
                rk_attn *p;
                rk_attn_config c = case_config(cs, nth);
                rk__sm_force_portable(portable);
                assert_rk_ok(rk_attn_create(&p, &c));
                rk__sm_force_portable(0);
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

/* V = identity (d_v = n_kv): out row i is the weight vector of query i. Weights are >= 0,
 * sum to 1, and are exactly 0 on every key the row must not see. */
static void test_convex_weights(void **state)
{
    (void)state;
    const size_t n_q = 90, n_kv = 70, d = 20, kv_len = 61;
    for (int causal = 0; causal < 2; causal++) {
        tcase cs = { n_q, n_kv, d, n_kv, causal, 1, 0, kv_len, 0, 0, 0 };
        tdata t;
        data_make(&t, &cs, 5 + causal, 1.5);
        for (size_t j = 0; j < n_kv; j++)
            for (size_t c = 0; c < n_kv; c++) {
                t.v.data[j * t.v.ld + c] = j == c ? 1.0f : 0.0f;
                t.vd.data[j * t.vd.ld + c] = j == c ? 1.0 : 0.0;
            }
        rk_attn *p;
        rk_attn_config c = case_config(&cs, 2);
        assert_rk_ok(rk_attn_create(&p, &c));
        assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, kv_len));
        assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, kv_len));
        for (size_t i = 0; i < n_q; i++) {
            size_t vis = kv_len;
            if (causal) vis = i + n_kv + 1 <= n_q ? 0 : (i + n_kv + 1 - n_q < vis ? i + n_kv + 1 - n_q : vis);
            double sf = 0.0, sd = 0.0;
            for (size_t j = 0; j < n_kv; j++) {
                float wf = t.out.data[i * t.out.ld + j];
                double wd = t.outd.data[i * t.outd.ld + j];
                assert_true(wf >= 0.0f && wd >= 0.0);
                if (j >= vis) assert_true(wf == 0.0f && wd == 0.0);
                sf += wf;
                sd += wd;
            }
            double want = vis ? 1.0 : 0.0;
            assert_allclose(&sf, &want, 1, 0.0, 1e-5);
            assert_allclose(&sd, &want, 1, 0.0, 1e-13);
        }
        reference(&cs, &t);
        assert_mat_close(&t.out, &t.want, F_RTOL, F_ATOL);
        assert_matd_close(&t.outd, &t.want, D_RTOL, D_ATOL);
        rk_attn_destroy(p);
        data_free(&t);
    }
}

/* Adding the same constant to every logit of a row changes nothing: q' = [q, 1] and
 * k' = [k, c] add scale * c to all logits. */
static void test_shift_invariance(void **state)
{
    (void)state;
    const size_t n = 150, d = 32;
    const double scale = 0.2, shift = 37.25;
    for (int causal = 0; causal < 2; causal++) {
        tcase cs = { n, n, d, d, causal, 0, 0, ALL, 0, 0, 0 };
        tdata t;
        data_make(&t, &cs, 11 + causal, 1.0);
        rk_mat q1 = rk_test_mat(n, d + 1, d + 1), k1 = rk_test_mat(n, d + 1, d + 1);
        rk_matd q1d = rk_test_matd(n, d + 1, d + 1), k1d = rk_test_matd(n, d + 1, d + 1);
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j < d; j++) {
                q1.data[i * (d + 1) + j] = t.q.data[i * t.q.ld + j];
                k1.data[i * (d + 1) + j] = t.k.data[i * t.k.ld + j];
                q1d.data[i * (d + 1) + j] = t.qd.data[i * t.qd.ld + j];
                k1d.data[i * (d + 1) + j] = t.kd.data[i * t.kd.ld + j];
            }
            q1.data[i * (d + 1) + d] = 1.0f;
            q1d.data[i * (d + 1) + d] = 1.0;
            k1.data[i * (d + 1) + d] = (float)(shift / scale);
            k1d.data[i * (d + 1) + d] = shift / scale;
        }
        rk_attn_config c0 = { .kind = RK_SOFTMAX, .n_q = n, .n_kv = n, .d = d, .causal = causal,
                              .scale = scale };
        rk_attn_config c1 = c0;
        c1.d = d + 1;
        c1.d_v = d;
        rk_attn *p0, *p1;
        assert_rk_ok(rk_attn_create(&p0, &c0));
        assert_rk_ok(rk_attn_create(&p1, &c1));
        rk_mat o1 = rk_test_mat(n, d, d);
        rk_matd o1d = rk_test_matd(n, d, d);
        assert_rk_ok(rk_attn_execute(p0, &t.q, &t.k, &t.v, &t.out, ALL));
        assert_rk_ok(rk_attn_execute(p1, &q1, &k1, &t.v, &o1, ALL));
        assert_rk_ok(rk_attn_execute_d(p0, &t.qd, &t.kd, &t.vd, &t.outd, ALL));
        assert_rk_ok(rk_attn_execute_d(p1, &q1d, &k1d, &t.vd, &o1d, ALL));
        rk_matd of = rk_test_matd(n, d, d);
        rk_test_f2d(&t.out, &of);
        assert_mat_close(&o1, &of, 1e-4, 1e-5);   /* the shifted float logits round differently */
        assert_matd_close(&o1d, &t.outd, 1e-11, 1e-12);
        rk_attn_destroy(p0);
        rk_attn_destroy(p1);
        rk_test_free(&q1); rk_test_free(&k1); rk_test_free(&o1);
        rk_test_freed(&q1d); rk_test_freed(&k1d); rk_test_freed(&o1d); rk_test_freed(&of);
        data_free(&t);
    }
}

/* Causal: rows that cannot see keys >= cut are bit-identical when those keys and values
 * change (even to NaN-free garbage); with kv_len, keys >= kv_len never matter at all. */
static void test_causal_future(void **state)
{
    (void)state;
    const size_t n_q = 140, n_kv = 170, d = 64, cut = 100, kv_len = 150;
    for (int causal = 0; causal < 2; causal++) {
        tcase cs = { n_q, n_kv, d, d, causal, 1, 0, causal ? ALL : kv_len, 1, 0, 0 };
        tdata t;
        data_make(&t, &cs, 21 + causal, 1.0);
        rk_attn *p;
        rk_attn_config c = case_config(&cs, 2);
        assert_rk_ok(rk_attn_create(&p, &c));
        rk_mat o0 = rk_test_mat(n_q, d, d);
        rk_matd o0d = rk_test_matd(n_q, d, d);
        assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &o0, cs.kv_len));
        assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &o0d, cs.kv_len));
        size_t from = causal ? cut : kv_len;       /* keys changed from here on */
        gsl_rng *r = rk_test_rng(99);
        for (size_t j = from; j < n_kv; j++)
            for (size_t ch = 0; ch < d; ch++) {
                double a = 50.0 * gsl_rng_uniform(r) - 25.0, b = 1e6 * gsl_rng_uniform(r);
                t.k.data[j * t.k.ld + ch] = (float)a;
                t.v.data[j * t.v.ld + ch] = (float)b;
                t.kd.data[j * t.kd.ld + ch] = a;
                t.vd.data[j * t.vd.ld + ch] = b;
            }
        gsl_rng_free(r);
        assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, cs.kv_len));
        assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, cs.kv_len));
        /* causal: query i sees j <= i + n_kv - n_q, so rows i + 30 < cut are unaffected */
        size_t rows = causal ? cut - (n_kv - n_q) : n_q;
        for (size_t i = 0; i < rows; i++) {
            assert_memory_equal(o0.data + i * o0.ld, t.out.data + i * t.out.ld, d * sizeof(float));
            assert_memory_equal(o0d.data + i * o0d.ld, t.outd.data + i * t.outd.ld,
                                d * sizeof(double));
        }
        if (causal) {   /* and the later rows did change */
            assert_true(memcmp(o0.data + (n_q - 1) * o0.ld, t.out.data + (n_q - 1) * t.out.ld,
                               d * sizeof(float)) != 0);
        }
        rk_attn_destroy(p);
        rk_test_free(&o0);
        rk_test_freed(&o0d);
        data_free(&t);
    }
}

/* Keys query i sees (the rule of rk__attn_visible, restated). */
static size_t visible(const tcase *cs, size_t i, size_t kv_len)
{
    size_t lim = kv_len < cs->n_kv ? kv_len : cs->n_kv;
    if (cs->causal) {
        if (cs->n_kv + i + 1 <= cs->n_q) return 0;
        size_t last = cs->n_kv + i + 1 - cs->n_q;
        if (last < lim) lim = last;
    }
    return lim;
}

/* Non-finite values in keys or values from index `cut` on: mode 0 V rows NaN, 1 one V entry
 * +Inf, 2 K rows NaN, 3 one K entry +Inf, 4 a mix by key (V -Inf, K NaN, V NaN, K -Inf). */
static void plant(tdata *t, const tcase *cs, size_t cut, int mode)
{
    for (size_t j = cut; j < cs->n_kv; j++) {
        int m = mode < 4 ? mode : (int)((j - cut) % 4) + 5;
        float *v = t->v.data + j * t->v.ld, *k = t->k.data + j * t->k.ld;
        double *vd = t->vd.data + j * t->vd.ld, *kd = t->kd.data + j * t->kd.ld;
        switch (m) {
        case 0: case 7:
            for (size_t c = 0; c < cs->dv; c++) { v[c] = NAN; vd[c] = NAN; }
            break;
        case 1: v[cs->dv / 2] = INFINITY; vd[cs->dv / 2] = INFINITY; break;
        case 5: v[0] = -INFINITY; vd[0] = -INFINITY; break;
        case 2: case 6:
            for (size_t c = 0; c < cs->d; c++) { k[c] = NAN; kd[c] = NAN; }
            break;
        case 3: k[cs->d - 1] = INFINITY; kd[cs->d - 1] = INFINITY; break;
        default: k[0] = -INFINITY; kd[0] = -INFINITY; break;
        }
    }
}

/* A NaN or Inf in a key or value a row cannot see (causal future, or past kv_len) never
 * reaches that row: its output stays finite and bit-identical to the run without it. Covers
 * every offset of the first planted key inside a 6-row block of the diagonal tile (the
 * micro-kernels' partial blocks), n_q = n_kv, n_q < n_kv, n_q > n_kv (rows that see nothing
 * next to rows that do), key padding alone and with causality, RoPE; both float kernel sets
 * and the double path. */
static void test_nonfinite_invisible(void **state)
{
    (void)state;
    static const tcase tc[] = {
        /* n_q n_kv   d  dv  causal rope off kv_len pad rot base */
        {   100, 100, 16, 24, 1, 0, 0, ALL, 1, 0, 0 },
        {    70, 100, 16, 16, 1, 1, 0, ALL, 0, 0, 0 },   /* n_q < n_kv */
        {   100,  70,  8, 16, 1, 0, 0, ALL, 2, 0, 0 },   /* n_q > n_kv */
        {    90, 130, 16, 16, 0, 0, 0,  50, 1, 0, 0 },   /* key padding */
        {   130, 130, 16, 32, 1, 2, 0,  70, 0, 0, 0 },   /* key padding and causal */
    };
    for (size_t ci = 0; ci < sizeof tc / sizeof tc[0]; ci++) {
        const tcase *cs = &tc[ci];
        tdata t0, t;
        data_make(&t0, cs, 300 + ci, 1.0);
        data_make(&t, cs, 300 + ci, 1.0);
        size_t bk = cs->n_kv * t.k.ld * sizeof(float), bv = cs->n_kv * t.v.ld * sizeof(float),
               bkd = cs->n_kv * t.kd.ld * sizeof(double), bvd = cs->n_kv * t.vd.ld * sizeof(double);
        /* cuts: 8 consecutive ones around a place rows can see up to, and one past a tile */
        size_t base = cs->kv_len != ALL ? cs->kv_len - 3 : cs->n_kv / 2 - 3;
        for (int portable = 0; portable < 2; portable++) {
            rk_attn *p;
            rk_attn_config c = case_config(cs, 2);
            rk__sm_force_portable(portable);
            assert_rk_ok(rk_attn_create(&p, &c));
            rk__sm_force_portable(0);
            rk_mat o0 = rk_test_mat(cs->n_q, cs->dv, cs->dv);
            rk_matd o0d = rk_test_matd(cs->n_q, cs->dv, cs->dv);
            assert_rk_ok(rk_attn_execute(p, &t0.q, &t0.k, &t0.v, &o0, cs->kv_len));
            assert_rk_ok(rk_attn_execute_d(p, &t0.qd, &t0.kd, &t0.vd, &o0d, cs->kv_len));
            for (size_t cut = base; cut < base + 9; cut++)
                for (int mode = 0; mode < 5; mode++) {
                    size_t cut_j = cut == base + 8 ? 65 : cut;    /* one past key tile 0 */
                    memcpy(t.k.data, t0.k.data, bk);
                    memcpy(t.v.data, t0.v.data, bv);
                    memcpy(t.kd.data, t0.kd.data, bkd);
                    memcpy(t.vd.data, t0.vd.data, bvd);
                    plant(&t, cs, cut_j, mode);
                    assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, cs->kv_len));
                    assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, cs->kv_len));
                    size_t checked = 0;
                    for (size_t i = 0; i < cs->n_q; i++) {
                        if (visible(cs, i, cs->kv_len) > cut_j) continue;
                        checked++;
                        const float *a = t.out.data + i * t.out.ld;
                        const double *ad = t.outd.data + i * t.outd.ld;
                        for (size_t j = 0; j < cs->dv; j++)
                            if (!isfinite(a[j]) || !isfinite(ad[j]))
                                fail_msg("case %zu portable %d cut %zu mode %d: row %zu (sees "
                                         "%zu keys) col %zu: float %g double %g", ci, portable,
                                         cut_j, mode, i, visible(cs, i, cs->kv_len), j,
                                         (double)a[j], ad[j]);
                        assert_memory_equal(a, o0.data + i * o0.ld, cs->dv * sizeof(float));
                        assert_memory_equal(ad, o0d.data + i * o0d.ld, cs->dv * sizeof(double));
                    }
                    if (cs->causal || cut_j >= cs->kv_len) assert_true(checked > 0);
                    /* premise: with NaN values, a row that sees them does turn NaN */
                    if (mode == 0 && visible(cs, cs->n_q - 1, cs->kv_len) > cut_j) {
                        assert_true(isnan(t.out.data[(cs->n_q - 1) * t.out.ld]));
                        assert_true(isnan(t.outd.data[(cs->n_q - 1) * t.outd.ld]));
                    }
                }
            rk_attn_destroy(p);
            rk_test_free(&o0);
            rk_test_freed(&o0d);
        }
        data_free(&t0);
        data_free(&t);
    }
}

/* |scale q.k| ~ 1e3: no overflow, no NaN, and still the reference answer. */
static void test_large_logits(void **state)
{
    (void)state;
    tcase cs = { 120, 130, 64, 64, 1, 1, 0, ALL, 0, 0, 0 };
    tdata t;
    data_make(&t, &cs, 31, 32.0);
    reference(&cs, &t);
    double mx = 0.0;   /* check the premise: logits really are ~1e3 */
    for (size_t j = 0; j < cs.d; j++) mx += t.qd.data[j] * t.kd.data[j];
    assert_true(fabs(mx) / 8.0 > 100.0);
    rk_attn *p;
    rk_attn_config c = case_config(&cs, 2);
    assert_rk_ok(rk_attn_create(&p, &c));
    assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, ALL));
    assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, ALL));
    for (size_t i = 0; i < cs.n_q; i++)
        for (size_t j = 0; j < cs.dv; j++) {
            assert_true(isfinite(t.out.data[i * t.out.ld + j]));
            assert_true(isfinite(t.outd.data[i * t.outd.ld + j]));
        }
    /* float logits of size 1e3 carry ~1e-4 absolute rounding error: loose tolerance */
    assert_mat_close(&t.out, &t.want, 1e-2, 1e-2);
    assert_matd_close(&t.outd, &t.want, 1e-9, 1e-10);
    rk_attn_destroy(p);
    data_free(&t);
}

/* A NaN in one query row poisons that output row only (no silent zeros), in both paths and
 * with both kernel sets. */
static void test_nan_row(void **state)
{
    (void)state;
    tcase cs = { 60, 70, 16, 8, 0, 0, 0, ALL, 0, 0, 0 };
    for (int portable = 0; portable < 2; portable++) {
        tdata t;
        data_make(&t, &cs, 71, 1.0);
        t.q.data[5 * t.q.ld + 3] = NAN;
        t.qd.data[5 * t.qd.ld + 3] = NAN;
        rk_attn *p;
        rk_attn_config c = case_config(&cs, 2);
        rk__sm_force_portable(portable);
        assert_rk_ok(rk_attn_create(&p, &c));
        rk__sm_force_portable(0);
        assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, ALL));
        assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, ALL));
        for (size_t i = 0; i < cs.n_q; i++)
            for (size_t j = 0; j < cs.dv; j++) {
                assert_int_equal(isnan(t.out.data[i * t.out.ld + j]) != 0, i == 5);
                assert_int_equal(isnan(t.outd.data[i * t.outd.ld + j]) != 0, i == 5);
            }
        rk_attn_destroy(p);
        data_free(&t);
    }
}

/* Inputs (with their NaN padding) are byte-identical after execute; a plan can be reused
 * with different leading dimensions and gives the same bits. */
static void test_inputs_untouched_and_ld(void **state)
{
    (void)state;
    tcase cs = { 77, 91, 40, 24, 1, 2, 3, ALL, 3, 0, 0 };
    tdata t;
    data_make(&t, &cs, 41, 1.0);
    size_t bq = t.q.rows * t.q.ld * sizeof(float), bk = t.k.rows * t.k.ld * sizeof(float),
           bv = t.v.rows * t.v.ld * sizeof(float);
    float *cq = malloc(bq), *ck = malloc(bk), *cv = malloc(bv);
    assert_true(cq && ck && cv);
    memcpy(cq, t.q.data, bq); memcpy(ck, t.k.data, bk); memcpy(cv, t.v.data, bv);
    size_t bqd = t.qd.rows * t.qd.ld * sizeof(double);
    double *cqd = malloc(bqd);
    assert_non_null(cqd);
    memcpy(cqd, t.qd.data, bqd);
    rk_attn *p;
    rk_attn_config c = case_config(&cs, 2);
    assert_rk_ok(rk_attn_create(&p, &c));
    assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, ALL));
    assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, ALL));
    assert_memory_equal(cq, t.q.data, bq);
    assert_memory_equal(ck, t.k.data, bk);
    assert_memory_equal(cv, t.v.data, bv);
    assert_memory_equal(cqd, t.qd.data, bqd);
    /* same inputs in compact views: same bits */
    rk_mat q2 = rk_test_mat(cs.n_q, cs.d, cs.d), k2 = rk_test_mat(cs.n_kv, cs.d, cs.d),
           v2 = rk_test_mat(cs.n_kv, cs.dv, cs.dv), o2 = rk_test_mat(cs.n_q, cs.dv, cs.dv);
    rk_matd tmp = rk_test_matd(cs.n_q, cs.d, cs.d);
    rk_test_f2d(&t.q, &tmp); rk_test_d2f(&tmp, &q2);
    rk_test_freed(&tmp);
    tmp = rk_test_matd(cs.n_kv, cs.d, cs.d);
    rk_test_f2d(&t.k, &tmp); rk_test_d2f(&tmp, &k2);
    rk_test_freed(&tmp);
    tmp = rk_test_matd(cs.n_kv, cs.dv, cs.dv);
    rk_test_f2d(&t.v, &tmp); rk_test_d2f(&tmp, &v2);
    rk_test_freed(&tmp);
    assert_rk_ok(rk_attn_execute(p, &q2, &k2, &v2, &o2, ALL));
    for (size_t i = 0; i < cs.n_q; i++)
        assert_memory_equal(o2.data + i * o2.ld, t.out.data + i * t.out.ld, cs.dv * sizeof(float));
    rk_attn_destroy(p);
    free(cq); free(ck); free(cv); free(cqd);
    rk_test_free(&q2); rk_test_free(&k2); rk_test_free(&v2); rk_test_free(&o2);
    data_free(&t);
}

/* RoPE makes logits depend on relative position only: moving every position by 100 changes
 * the outputs only by rounding. */
static void test_rope_relative(void **state)
{
    (void)state;
    tcase cs = { 60, 80, 32, 16, 1, 1, 0, ALL, 0, 0, 0 };
    tdata t;
    data_make(&t, &cs, 51, 1.0);
    rk_attn *p0, *p1;
    rk_attn_config c0 = case_config(&cs, 2), c1 = c0;
    c1.pos_offset = 100;
    assert_rk_ok(rk_attn_create(&p0, &c0));
    assert_rk_ok(rk_attn_create(&p1, &c1));
    rk_matd o1 = rk_test_matd(cs.n_q, cs.dv, cs.dv);
    assert_rk_ok(rk_attn_execute_d(p0, &t.qd, &t.kd, &t.vd, &t.outd, ALL));
    assert_rk_ok(rk_attn_execute_d(p1, &t.qd, &t.kd, &t.vd, &o1, ALL));
    assert_matd_close(&o1, &t.outd, 1e-10, 1e-11);
    rk_mat o1f = rk_test_mat(cs.n_q, cs.dv, cs.dv);
    assert_rk_ok(rk_attn_execute(p0, &t.q, &t.k, &t.v, &t.out, ALL));
    assert_rk_ok(rk_attn_execute(p1, &t.q, &t.k, &t.v, &o1f, ALL));
    rk_matd of = rk_test_matd(cs.n_q, cs.dv, cs.dv);
    rk_test_f2d(&t.out, &of);
    assert_mat_close(&o1f, &of, 1e-4, 1e-5);
    rk_attn_destroy(p0);
    rk_attn_destroy(p1);
    rk_test_freed(&o1); rk_test_free(&o1f); rk_test_freed(&of);
    data_free(&t);
}

/* rk_attn_bytes counts the RoPE plan: a RK_ROPE_QK plan holds exactly the rope plan's bytes
 * (rk_rope_bytes; its table covers positions 0 .. pos_offset + n_kv - 1 when that is modest)
 * and the two rotated float64 copies more than the same plan without RoPE. */
static void test_bytes(void **state)
{
    (void)state;
    rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = 100, .n_kv = 120, .d = 32, .d_v = 16,
                         .causal = 1, .pos_offset = 5, .nthreads = 2 };
    rk_attn *p0, *p1;
    assert_rk_ok(rk_attn_create(&p0, &c));
    c.rope = RK_ROPE_QK;
    assert_rk_ok(rk_attn_create(&p1, &c));
    rk_rope *r;
    rk_rope_config rc = { .dim = 32, .table_len = 5 + 120 };
    assert_rk_ok(rk_rope_create(&r, &rc));
    size_t copies = 100 * 32 * sizeof(double) + 120 * 32 * sizeof(double);   /* 64-B multiples */
    assert_true(rk_rope_bytes(r) > 125 * 32 * (sizeof(double) + sizeof(float)));
    assert_int_equal(rk_attn_bytes(p1), rk_attn_bytes(p0) + rk_rope_bytes(r) + copies);
    rk_rope_destroy(r);
    rk_attn_destroy(p0);
    rk_attn_destroy(p1);
}

/* Every error code of create and execute, through the public API. */
static void test_errors(void **state)
{
    (void)state;
    rk_attn *p = (rk_attn *)&p;
    rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = 10, .n_kv = 12, .d = 8, .d_v = 4 };

    rk_attn_config e = c; e.kind = (rk_kind)0;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    assert_null(p);
    e = c; e.kind = (rk_kind)42;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.n_q = 0;
    assert_rk_error(rk_attn_create(&p, &e), RK_EDIM);
    e = c; e.n_kv = 0;
    assert_rk_error(rk_attn_create(&p, &e), RK_EDIM);
    e = c; e.d = 0;
    assert_rk_error(rk_attn_create(&p, &e), RK_EDIM);
    e = c; e.rope = RK_ROPE_FEATURES;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.rope = (rk_rope_mode)7;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.nthreads = -1;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.scale = INFINITY;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.n_q = (size_t)1 << 40;
    assert_rk_error(rk_attn_create(&p, &e), RK_EOVERFLOW);
    e = c; e.d = 7; e.rope = RK_ROPE_QK;                       /* odd width cannot rotate */
    assert_rk_error(rk_attn_create(&p, &e), RK_EDIM);
    e = c; e.rope = RK_ROPE_QK; e.rope_cfg.rotary_dim = 10;    /* rotary_dim > d */
    assert_rk_error(rk_attn_create(&p, &e), RK_EDIM);
    e = c; e.rope = RK_ROPE_QK; e.rope_cfg.base = -1.0;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.rope = RK_ROPE_QK; e.pos_offset = INT64_MAX - 3;
    assert_rk_error(rk_attn_create(&p, &e), RK_EOVERFLOW);
    assert_null(p);

    /* allocation failure at every allocation of create, with and without RoPE: ENOMEM, no
     * leak (LSan), then success */
    for (int rope = 0; rope < 2; rope++) {
        e = c;
        e.rope = rope ? RK_ROPE_QK : RK_ROPE_NONE;
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
        assert_true(k >= 5);
        rk_attn_destroy(p);
    }

    /* execute */
    tcase cs = { 10, 12, 8, 4, 1, 0, 0, ALL, 1, 0, 0 };
    tdata t;
    data_make(&t, &cs, 61, 1.0);
    assert_rk_ok(rk_attn_create(&p, &c));
    assert_true(rk_attn_bytes(p) > 0);
    assert_int_equal(rk_attn_get_config(p)->d_v, 4);
    rk_mat bad = t.q; bad.rows = 9;
    assert_rk_error(rk_attn_execute(p, &bad, &t.k, &t.v, &t.out, ALL), RK_EDIM);
    bad = t.k; bad.cols = 7;
    assert_rk_error(rk_attn_execute(p, &t.q, &bad, &t.v, &t.out, ALL), RK_EDIM);
    bad = t.v; bad.rows = 13;
    assert_rk_error(rk_attn_execute(p, &t.q, &t.k, &bad, &t.out, ALL), RK_EDIM);
    bad = t.out; bad.cols = 8;
    assert_rk_error(rk_attn_execute(p, &t.q, &t.k, &t.v, &bad, ALL), RK_EDIM);
    bad = t.q; bad.ld = 7;                                      /* ld < cols */
    assert_rk_error(rk_attn_execute(p, &bad, &t.k, &t.v, &t.out, ALL), RK_EDIM);
    bad = t.q; bad.data = NULL;
    assert_rk_error(rk_attn_execute(p, &bad, &t.k, &t.v, &t.out, ALL), RK_EINVAL);
    assert_rk_error(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, 13), RK_EDIM);  /* kv_len */
    rk_mat alias = rk_mat_view(t.q.data + 2, 10, 4, t.q.ld);   /* out overlaps q */
    assert_rk_error(rk_attn_execute(p, &t.q, &t.k, &t.v, &alias, ALL), RK_EINVAL);
    rk_matd badd = t.kd; badd.ld = 3;
    assert_rk_error(rk_attn_execute_d(p, &t.qd, &badd, &t.vd, &t.outd, ALL), RK_EDIM);
    assert_rk_error(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, 100), RK_EDIM);
    rk_matd aliasd = rk_matd_view(t.vd.data, 10, 4, t.vd.ld);
    assert_rk_error(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &aliasd, ALL), RK_EINVAL);
    /* the plan still works after the errors */
    assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, ALL));
    assert_true(rk_last_error()[0] == '\0');
    rk_attn_destroy(p);
    rk_attn_destroy(NULL);
    data_free(&t);
}

/* ------------------------------------------------------------------------------------ */
/* Relative bias and xPos (issue 6)                                                     */
/* ------------------------------------------------------------------------------------ */

enum { SB_RANDOM = 1, SB_ALIBI, SB_T5, SB_MASKED, SB_ZERO };

/* bias of a case (rk_bias_len values), malloc'ed */
static double *bias_make(const tcase *cs, int kind, unsigned long seed)
{
    size_t len = rk_bias_len(cs->n_q, cs->n_kv);
    double *b = malloc(len * sizeof *b);
    assert_non_null(b);
    gsl_rng *r = rk_test_rng(seed);
    for (size_t i = 0; i < len; i++) {
        double u = gsl_rng_uniform(r);
        switch (kind) {
        case SB_RANDOM: b[i] = 6.0 * u - 3.0; break;
        case SB_MASKED: b[i] = u < 0.3 ? -INFINITY : 4.0 * u - 2.0; break;
        default: b[i] = 0.0; break;
        }
    }
    gsl_rng_free(r);
    if (kind == SB_ALIBI) assert_rk_ok(rk_bias_alibi(b, cs->n_q, cs->n_kv, 0.25));
    if (kind == SB_T5) assert_rk_ok(rk_bias_t5(b, cs->n_q, cs->n_kv, NULL, !cs->causal, 0, 0));
    return b;
}

typedef struct {
    tcase  tc;
    int    bias;       /* SB_* or 0 */
    double xpos;       /* scale base, 0: off */
} bcase;

/* One case through both kernel sets and both paths against ref_softmax_attention_ex. */
static void check_bias_case(const bcase *bc, int portable, int nthreads)
{
    const tcase *cs = &bc->tc;
    tdata t;
    data_make(&t, cs, 2000 + cs->n_q * 31 + cs->n_kv * 7 + cs->d, 1.0);
    double *b = bc->bias ? bias_make(cs, bc->bias, 17 + cs->n_q) : NULL;
    ref_attn_rope rr = { cs->rope == 2 ? RK_ROPE_HALF : RK_ROPE_INTERLEAVED, cs->base,
                         cs->rotary_dim, cs->pos_offset };
    ref_attn_xpos xp = { bc->xpos, 0.0 };
    ref_softmax_attention_ex(&t.qd, &t.kd, &t.vd, &t.want, 1.0 / sqrt((double)cs->d),
                             cs->causal, cs->kv_len, cs->rope ? &rr : NULL, b,
                             bc->xpos ? &xp : NULL);
    rk_attn_config c = case_config(cs, nthreads);
    c.bias = b;
    c.bias_len = b ? rk_bias_len(cs->n_q, cs->n_kv) : 0;
    c.xpos_scale_base = bc->xpos;
    rk__sm_force_portable(portable);
    rk_attn *p;
    assert_rk_ok(rk_attn_create(&p, &c));
    rk__sm_force_portable(0);
    assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, cs->kv_len));
    assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, cs->kv_len));
    if (getenv("RK_TEST_VERBOSE"))
        printf("   n_q %4zu n_kv %4zu d %3zu causal %d rope %d bias %d xpos %g kv_len %5lld  "
               "float %.2e  double %.2e\n", cs->n_q, cs->n_kv, cs->d, cs->causal, cs->rope,
               bc->bias, bc->xpos, cs->kv_len == ALL ? -1LL : (long long)cs->kv_len,
               rk_max_abs_diff(&t.out, &t.want), rk_max_abs_diffd(&t.outd, &t.want));
    assert_mat_close(&t.out, &t.want, F_RTOL, F_ATOL);
    assert_matd_close(&t.outd, &t.want, D_RTOL, D_ATOL);
    for (size_t i = 0; i < cs->n_q; i++)
        for (size_t j = cs->dv; j < t.out.ld; j++) assert_true(isnan(t.out.data[i * t.out.ld + j]));
    rk_attn_destroy(p);
    free(b);
    data_free(&t);
}

static const bcase bcases[] = {
    /*  n_q n_kv   d  dv causal rope  off  kv_len pad rot base   bias   xpos */
    { {    1,   1,   1,  1, 0, 0,     0, ALL, 0, 0, 0 }, SB_RANDOM, 0 },
    { {    7,   7,   3,  3, 1, 0,     0, ALL, 1, 0, 0 }, SB_RANDOM, 0 },
    { {   33,  50,  17,  5, 1, 0,     0, ALL, 2, 0, 0 }, SB_ALIBI, 0 },    /* n_q < n_kv */
    { {   50,  33,  17,  9, 1, 0,     0, ALL, 0, 0, 0 }, SB_RANDOM, 0 },   /* n_q > n_kv */
    { {   50,  33,  17,  9, 0, 0,     0, ALL, 3, 0, 0 }, SB_T5, 0 },
    { {   97, 131,  64, 64, 0, 1,     5, ALL, 3, 0, 0 }, SB_MASKED, 0 },
    { {   97, 131,  64, 80, 1, 2,  1000, ALL, 1, 0, 0 }, SB_T5, 0 },
    { {  130, 130,  80, 64, 1, 0,     0,  77, 0, 0, 0 }, SB_MASKED, 0 },   /* key padding */
    { {   65, 200,  16, 16, 0, 0,     0,   0, 1, 0, 0 }, SB_RANDOM, 0 },   /* kv_len 0 */
    { {  144, 192,  32, 48, 1, 1,     0, 190, 0, 0, 0 }, SB_ALIBI, 0 },
    { {  257, 700,  64, 64, 1, 1,     0, ALL, 0, 0, 0 }, SB_RANDOM, 0 },
    { {    1, 300,  64, 64, 1, 0,     0, ALL, 0, 0, 0 }, SB_T5, 0 },       /* decoding */
    { {  300,   1,  64, 64, 1, 0,     0, ALL, 0, 0, 0 }, SB_RANDOM, 0 },
    /* xPos: causal RoPE with the decay, with and without a bias */
    { {   64,  64,  64, 64, 1, 1,     0, ALL, 0, 0, 0 }, 0, 512.0 },
    { {   97, 131,  32, 16, 1, 2,    -7, ALL, 1, 0, 0 }, SB_ALIBI, 64.0 },
    { {  200,  70,   8, 24, 1, 1,   -30,  50, 2, 4, 500 }, 0, 32.0 },   /* partial rotary */
    { {  144, 192,  32, 48, 1, 1,     0, 190, 0, 0, 0 }, SB_MASKED, 128.0 },
};

static void test_bias_vs_reference(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bcases / sizeof bcases[0]; i++) {
        check_bias_case(&bcases[i], 0, 2);
        check_bias_case(&bcases[i], 1, 2);
    }
}

/* A zero bias gives the same bits as no bias (adding 0 changes no logit), both kernel sets
 * and the double path. */
static void test_bias_zero_bitwise(void **state)
{
    (void)state;
    static const tcase tc[] = {
        {  97, 131, 64, 64, 0, 1, 5, ALL, 3, 0, 0 },
        { 130, 130, 80, 64, 1, 0, 0,  77, 0, 0, 0 },
        {  50,  33, 18,  9, 1, 2, 0, ALL, 1, 0, 0 },
    };
    for (size_t ci = 0; ci < sizeof tc / sizeof tc[0]; ci++)
        for (int portable = 0; portable < 2; portable++) {
            const tcase *cs = &tc[ci];
            tdata t;
            data_make(&t, cs, 3000 + ci, 1.0);
            double *b = bias_make(cs, SB_ZERO, 1);
            rk_attn_config c0 = case_config(cs, 2), c1 = c0;
            c1.bias = b;
            c1.bias_len = rk_bias_len(cs->n_q, cs->n_kv);
            rk_attn *p0, *p1;
            rk__sm_force_portable(portable);
            assert_rk_ok(rk_attn_create(&p0, &c0));
            assert_rk_ok(rk_attn_create(&p1, &c1));
            rk__sm_force_portable(0);
            rk_mat o1 = rk_test_mat(cs->n_q, cs->dv, cs->dv);
            rk_matd o1d = rk_test_matd(cs->n_q, cs->dv, cs->dv);
            assert_rk_ok(rk_attn_execute(p0, &t.q, &t.k, &t.v, &t.out, cs->kv_len));
            assert_rk_ok(rk_attn_execute(p1, &t.q, &t.k, &t.v, &o1, cs->kv_len));
            assert_rk_ok(rk_attn_execute_d(p0, &t.qd, &t.kd, &t.vd, &t.outd, cs->kv_len));
            assert_rk_ok(rk_attn_execute_d(p1, &t.qd, &t.kd, &t.vd, &o1d, cs->kv_len));
            for (size_t i = 0; i < cs->n_q; i++) {
                assert_memory_equal(o1.data + i * o1.ld, t.out.data + i * t.out.ld,
                                    cs->dv * sizeof(float));
                assert_memory_equal(o1d.data + i * o1d.ld, t.outd.data + i * t.outd.ld,
                                    cs->dv * sizeof(double));
            }
            rk_attn_destroy(p0);
            rk_attn_destroy(p1);
            rk_test_free(&o1);
            rk_test_freed(&o1d);
            free(b);
            data_free(&t);
        }
}

/* -inf entries: masked keys get weight 0 (V = I reads the weights), a row whose every visible
 * key is masked is zero, and the bias's bits do not depend on the thread count. */
static void test_bias_masking(void **state)
{
    (void)state;
    const size_t n_q = 60, n_kv = 70, d = 16;
    for (int causal = 0; causal < 2; causal++)
        for (int portable = 0; portable < 2; portable++) {
            tcase cs = { n_q, n_kv, d, n_kv, causal, 0, 0, ALL, 0, 0, 0 };
            tdata t;
            data_make(&t, &cs, 4000 + (unsigned long)causal, 1.0);
            for (size_t j = 0; j < n_kv; j++)
                for (size_t c = 0; c < n_kv; c++) {
                    t.v.data[j * t.v.ld + c] = j == c ? 1.0f : 0.0f;
                    t.vd.data[j * t.vd.ld + c] = j == c ? 1.0 : 0.0;
                }
            /* only offsets t <= -20 (with a small slope) and t = 3 are not -inf */
            size_t len = rk_bias_len(n_q, n_kv);
            double *b = malloc(len * sizeof *b);
            assert_non_null(b);
            for (size_t idx = 0; idx < len; idx++) {
                long long off = (long long)idx - (long long)(n_kv - 1);
                b[idx] = off <= -20 ? -0.01 * (double)off : off == 3 ? 0.5 : -INFINITY;
            }
            rk_attn_config c = case_config(&cs, 2);
            c.bias = b;
            c.bias_len = len;
            rk_attn *p;
            rk__sm_force_portable(portable);
            assert_rk_ok(rk_attn_create(&p, &c));
            rk__sm_force_portable(0);
            assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, ALL));
            assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, ALL));
            ref_softmax_attention_ex(&t.qd, &t.kd, &t.vd, &t.want, 0.25, causal, ALL, NULL, b, NULL);
            assert_mat_close(&t.out, &t.want, F_RTOL, F_ATOL);
            assert_matd_close(&t.outd, &t.want, D_RTOL, D_ATOL);
            size_t empty = 0;
            for (size_t i = 0; i < n_q; i++) {
                double sf = 0.0, sd = 0.0;
                for (size_t j = 0; j < n_kv; j++) {
                    long long off = (long long)j - (long long)i - (long long)(n_kv - n_q);
                    float wf = t.out.data[i * t.out.ld + j];
                    double wd = t.outd.data[i * t.outd.ld + j];
                    if (!(off <= -20 || off == 3)) assert_true(wf == 0.0f && wd == 0.0);
                    sf += wf;
                    sd += wd;
                }
                if (sd == 0.0) { empty++; assert_true(sf == 0.0); }
                else { assert_true(fabs(sd - 1.0) < 1e-12 && fabs(sf - 1.0) < 1e-5); }
            }
            /* the premise: causal rows 0 .. 9 see no allowed key (bidirectional: every row
             * has one) */
            if (causal) assert_true(empty > 0 && empty < n_q);
            else assert_int_equal(empty, 0);
            rk_attn_destroy(p);
            free(b);
            data_free(&t);
        }
}

/* Bias and xPos: the same bits for 1, 2 and 3 threads. */
static void test_bias_threads_bitwise(void **state)
{
    (void)state;
    static const bcase bc[] = {
        { {  301, 301, 64, 64, 1, 1, 3, ALL, 1, 0, 0 }, SB_T5, 256.0 },
        { {  250, 400, 24, 40, 0, 0, 0, 333, 0, 0, 0 }, SB_MASKED, 0.0 },
    };
    for (size_t ci = 0; ci < sizeof bc / sizeof bc[0]; ci++)
        for (int portable = 0; portable < 2; portable++) {
            const tcase *cs = &bc[ci].tc;
            tdata t;
            data_make(&t, cs, 177 + ci, 1.0);
            double *b = bias_make(cs, bc[ci].bias, 5);
            rk_mat o1 = rk_test_mat(cs->n_q, cs->dv, cs->dv);
            rk_matd o1d = rk_test_matd(cs->n_q, cs->dv, cs->dv);
            for (int nth = 1; nth <= 3; nth++) {
                rk_attn *p;
                rk_attn_config c = case_config(cs, nth);
                c.bias = b;
                c.bias_len = rk_bias_len(cs->n_q, cs->n_kv);
                c.xpos_scale_base = bc[ci].xpos;
                rk__sm_force_portable(portable);
                assert_rk_ok(rk_attn_create(&p, &c));
                rk__sm_force_portable(0);
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
            free(b);
            data_free(&t);
        }
}

/* xPos keeps RoPE's relative property (the centred exponents cancel): moving every position
 * by 300 changes the outputs by rounding only; and it does decay: with q = k = a fixed
 * vector at every position, the last row's weights fall with distance faster than RoPE's. */
static void test_xpos_relative(void **state)
{
    (void)state;
    tcase cs = { 60, 80, 32, 16, 1, 1, 0, ALL, 0, 0, 0 };
    tdata t;
    data_make(&t, &cs, 151, 1.0);
    rk_attn *p0, *p1;
    rk_attn_config c0 = case_config(&cs, 2), c1;
    c0.xpos_scale_base = 16.0;
    c0.xpos_gamma = 0.2;
    c1 = c0;
    c1.pos_offset = 300;
    assert_rk_ok(rk_attn_create(&p0, &c0));
    assert_rk_ok(rk_attn_create(&p1, &c1));
    assert_true(rk_attn_get_config(p0)->xpos_gamma == 0.2);
    rk_matd o1 = rk_test_matd(cs.n_q, cs.dv, cs.dv);
    assert_rk_ok(rk_attn_execute_d(p0, &t.qd, &t.kd, &t.vd, &t.outd, ALL));
    assert_rk_ok(rk_attn_execute_d(p1, &t.qd, &t.kd, &t.vd, &o1, ALL));
    assert_matd_close(&o1, &t.outd, 1e-10, 1e-11);
    rk_mat o1f = rk_test_mat(cs.n_q, cs.dv, cs.dv);
    assert_rk_ok(rk_attn_execute(p0, &t.q, &t.k, &t.v, &t.out, ALL));
    assert_rk_ok(rk_attn_execute(p1, &t.q, &t.k, &t.v, &o1f, ALL));
    rk_matd of = rk_test_matd(cs.n_q, cs.dv, cs.dv);
    rk_test_f2d(&t.out, &of);
    assert_mat_close(&o1f, &of, 1e-4, 1e-5);
    /* and it is not plain RoPE */
    rk_attn *pr;
    rk_attn_config cr = case_config(&cs, 2);
    assert_rk_ok(rk_attn_create(&pr, &cr));
    assert_rk_ok(rk_attn_execute_d(pr, &t.qd, &t.kd, &t.vd, &o1, ALL));
    assert_true(rk_max_abs_diffd(&o1, &t.outd) > 1e-3);
    rk_attn_destroy(pr);
    rk_attn_destroy(p0);
    rk_attn_destroy(p1);
    rk_test_freed(&o1); rk_test_free(&o1f); rk_test_freed(&of);
    data_free(&t);
}

/* Errors of the bias and xPos fields; allocation failures with both on; the bias in the
 * resolved config and in rk_attn_bytes. */
static void test_bias_errors(void **state)
{
    (void)state;
    rk_attn *p = (rk_attn *)&p;
    rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = 10, .n_kv = 12, .d = 8, .d_v = 4,
                         .causal = 1, .rope = RK_ROPE_QK };
    double b[21];
    for (size_t i = 0; i < 21; i++) b[i] = 0.125 * (double)i - 1.0;
    assert_int_equal(rk_bias_len(10, 12), 21);
    c.bias = b;
    c.bias_len = 21;
    rk_attn_config e;
    e = c; e.bias_len = 20;
    assert_rk_error(rk_attn_create(&p, &e), RK_EDIM);
    assert_null(p);
    e = c; e.bias_len = 23;                      /* 2 n_kv - 1 is not the length for n_q < n_kv */
    assert_rk_error(rk_attn_create(&p, &e), RK_EDIM);
    e = c; e.bias = NULL;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    b[3] = NAN;
    assert_rk_error(rk_attn_create(&p, &c), RK_ENONFINITE);
    b[3] = INFINITY;
    assert_rk_error(rk_attn_create(&p, &c), RK_ENONFINITE);
    b[3] = 2e30;
    assert_rk_error(rk_attn_create(&p, &c), RK_EINVAL);
    b[3] = -1e300;                               /* finite, very negative: allowed */
    assert_rk_ok(rk_attn_create(&p, &c));
    rk_attn_destroy(p);
    b[3] = -INFINITY;
    assert_rk_ok(rk_attn_create(&p, &c));
    rk_attn_destroy(p);
    b[3] = 0.0;
    /* xPos */
    e = c; e.xpos_scale_base = -1.0;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.xpos_scale_base = INFINITY;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.xpos_scale_base = 512.0; e.rope = RK_ROPE_NONE;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.xpos_scale_base = 512.0; e.causal = 0;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.xpos_scale_base = 512.0; e.xpos_gamma = -0.5;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.xpos_gamma = 0.5;                   /* gamma without xPos */
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.xpos_scale_base = 512.0; e.n_q = 40000; e.n_kv = 60000; e.bias = NULL; e.bias_len = 0;
    assert_rk_error(rk_attn_create(&p, &e), RK_EOVERFLOW);   /* factors beyond e^64 */
    e.xpos_scale_base = 2048.0;                  /* a larger base covers the span */
    assert_rk_ok(rk_attn_create(&p, &e));
    rk_attn_destroy(p);
    e = c; e.kind = RK_PERFORMER; e.seed = 1; e.rope = RK_ROPE_NONE;   /* bias on FAVOR+ */
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.kind = RK_LINEAR; e.bias = NULL; e.bias_len = 0; e.rope = RK_ROPE_NONE;
    e.xpos_scale_base = 512.0;
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    e = c; e.rpe_l2norm = 1;                     /* an rpe-fft field on softmax */
    assert_rk_error(rk_attn_create(&p, &e), RK_EINVAL);
    assert_null(p);

    /* allocation failure at every allocation, with bias and xPos: ENOMEM, no leak */
    e = c;
    e.xpos_scale_base = 512.0;
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
    assert_true(k >= 8);
    /* the resolved config points at the plan's copy; gamma resolved; bytes count the bias */
    const rk_attn_config *g = rk_attn_get_config(p);
    assert_true(g->bias != b);
    assert_memory_equal(g->bias, b, sizeof b);
    assert_true(g->xpos_gamma == 0.4);
    rk_attn *p0;
    e.bias = NULL;
    e.bias_len = 0;
    assert_rk_ok(rk_attn_create(&p0, &e));
    /* 21 doubles (168 B) and 21 floats (84 B), each rounded up to 64 B */
    assert_int_equal(rk_attn_bytes(p), rk_attn_bytes(p0) + 192 + 128);
    rk_attn_destroy(p0);
    rk_attn_destroy(p);
}

int main(void)
{
    gsl_set_error_handler_off();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp2),
        cmocka_unit_test(test_vs_reference),
        cmocka_unit_test(test_vs_reference_portable),
        cmocka_unit_test(test_threads_bitwise),
        cmocka_unit_test(test_convex_weights),
        cmocka_unit_test(test_shift_invariance),
        cmocka_unit_test(test_causal_future),
        cmocka_unit_test(test_nonfinite_invisible),
        cmocka_unit_test(test_large_logits),
        cmocka_unit_test(test_nan_row),
        cmocka_unit_test(test_inputs_untouched_and_ld),
        cmocka_unit_test(test_rope_relative),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_bias_vs_reference),
        cmocka_unit_test(test_bias_zero_bitwise),
        cmocka_unit_test(test_bias_masking),
        cmocka_unit_test(test_bias_threads_bitwise),
        cmocka_unit_test(test_xpos_relative),
        cmocka_unit_test(test_bias_errors),
    };
    return cmocka_run_group_tests_name("softmax", tests, NULL, NULL);
}
