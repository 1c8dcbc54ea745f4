/* FAVOR+ and linear attention (lib/performer.c, lib/features.c, lib/recurrent.c): every
 * variant (bidirectional, causal, recurrent; no RoPE, rope = qk, rope = features) against the
 * naive O(n^2) reference with the same features (tests/ref_linear.c) on awkward shapes; the
 * docs/theory.md#regression-vectors eq. 19 vector; eq. 19's exact relative property vs the qk form's; causality
 * to the bit (including a stabiliser that must not look ahead); thread and seed determinism;
 * stabiliser range, no eps, zero denominators; projection import/export; every error path and
 * allocation failures. */
#include "check.h"
#include "ref_linear.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <gsl/gsl_errno.h>

void rk__alloc_fail_after(long n);   /* lib/core.c test hook */
void rk__perf_force_portable(int on); /* lib/performer.c test hook */

/* float path vs the double reference: features, products and GEMMs in float, the state in
 * double: ~1e-6 relative to the value scale; 2e-5 leaves room for exp of rounded exponents. */
#define F_TOL 2e-5
#define D_TOL 1e-11

typedef struct {
    rk_kind       kind;
    rk_kernel     kernel;
    rk_map        map;
    rk_rope_mode  rope;
    int           causal;
    size_t        n_q, n_kv, d, dv, m;
    size_t        kv_len;       /* RK_ALL_KEYS or a count */
    size_t        pad;          /* ld = cols + pad (NaN padding) */
    int64_t       pos_offset;
    double        sigma;        /* q, k ~ N(0, sigma^2) */
    rk_rope_style style;
    int           freq_head;    /* rope_freq_dim_head */
    rk_proj       proj;
} tcase;

typedef struct {
    rk_mat  q, k, v, out;
    rk_matd qd, kd, vd, outd, want;
} tdata;

static rk_attn_config config_of(const tcase *t)
{
    rk_attn_config c = {
        .kind = t->kind, .n_q = t->n_q, .n_kv = t->n_kv, .d = t->d, .d_v = t->dv,
        .causal = t->causal, .rope = t->rope, .pos_offset = t->pos_offset,
        .n_features = t->m, .kernel = t->kernel, .map = t->map, .proj = t->proj,
        .seed = 2385, .rope_freq_dim_head = t->freq_head,
    };
    c.rope_cfg.style = t->style;
    return c;
}

static void data_make(tdata *t, const tcase *cs, unsigned long seed)
{
    gsl_rng *r = rk_test_rng(seed);
    double s = cs->sigma ? cs->sigma : 1.0;
    t->q = rk_test_randn(r, cs->n_q, cs->d, cs->d + cs->pad, s);
    t->k = rk_test_randn(r, cs->n_kv, cs->d, cs->d + 2 * cs->pad, s);
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

/* The reference configured like plan p (its resolved config and its projection). */
static ref_linear_cfg ref_of(const rk_attn *p, double **wbuf)
{
    const rk_attn_config *c = rk_attn_get_config(p);
    ref_linear_cfg r = {
        .kind = c->kind, .kernel = c->kernel, .map = c->map, .scale = c->scale, .rope = c->rope,
        .style = c->rope_cfg.style, .base = c->rope_cfg.base, .rotary_dim = c->rope_cfg.rotary_dim,
        .freq_dim = c->rope_freq_dim_head ? c->d : 0, .causal = c->causal,
        .pos_offset = c->pos_offset,
    };
    size_t m = 0, d = 0;
    const float *w = rk_attn_proj(p, &m, &d);
    *wbuf = NULL;
    if (w) {
        *wbuf = malloc(m * d * sizeof(double));
        for (size_t i = 0; i < m * d; i++) (*wbuf)[i] = w[i];
        r.w = *wbuf;
        r.m = m;
    }
    return r;
}

static const char *kind_name(const tcase *t)
{
    if (t->kind == RK_LINEAR) return t->map == RK_MAP_ELU ? "elu+1" : "relu";
    return t->kernel == RK_KERNEL_POSITIVE ? "positive" : t->kernel == RK_KERNEL_HYPERBOLIC ? "hyperbolic" : "trig";
}
static const char *rope_name(rk_rope_mode r)
{
    return r == RK_ROPE_NONE ? "none" : r == RK_ROPE_QK ? "qk" : "features";
}

/* Padding columns of out must still be NaN (out is written, never past cols). */
static void assert_pad_untouched(const rk_mat *o, const rk_matd *od)
{
    for (size_t i = 0; i < o->rows; i++)
        for (size_t j = o->cols; j < o->ld; j++) {
            assert_true(isnan(o->data[i * o->ld + j]));
            assert_true(isnan(od->data[i * od->ld + j]));
        }
}

/* Both precisions against the reference. Returns the float path's max error. */
static double check_case(const tcase *cs, double ftol, double dtol)
{
    rk_attn_config c = config_of(cs);
    rk_attn *p;
    assert_rk_ok(rk_attn_create(&p, &c));
    tdata t;
    data_make(&t, cs, 11 + cs->n_q + 7 * cs->n_kv);
    double *w;
    ref_linear_cfg rc = ref_of(p, &w);
    ref_linear_attention(&rc, &t.qd, &t.kd, &t.vd, &t.want, cs->kv_len);
    assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, cs->kv_len));
    assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, cs->kv_len));
    double ef = rk_max_abs_diff(&t.out, &t.want), ed = rk_max_abs_diffd(&t.outd, &t.want);
    if (!(ef <= ftol) || !(ed <= dtol))
        print_message("%s rope=%s causal=%d n_q=%zu n_kv=%zu d=%zu dv=%zu m=%zu kv_len=%zd: "
                      "float err %.3g, double err %.3g\n", kind_name(cs), rope_name(cs->rope),
                      cs->causal, cs->n_q, cs->n_kv, cs->d, cs->dv, cs->m,
                      cs->kv_len == RK_ALL_KEYS ? (ssize_t)-1 : (ssize_t)cs->kv_len, ef, ed);
    assert_mat_close(&t.out, &t.want, ftol, ftol);
    assert_matd_close(&t.outd, &t.want, dtol, dtol);
    assert_pad_untouched(&t.out, &t.outd);
    free(w);
    data_free(&t);
    rk_attn_destroy(p);
    return ef;
}

static const struct { rk_kind kind; rk_kernel kernel; rk_map map; } KINDS[] = {
    { RK_PERFORMER, RK_KERNEL_POSITIVE, 0 },
    { RK_PERFORMER, RK_KERNEL_HYPERBOLIC, 0 },
    { RK_PERFORMER, RK_KERNEL_TRIG, 0 },
    { RK_LINEAR, 0, RK_MAP_ELU },
    { RK_LINEAR, 0, RK_MAP_RELU },
};
#define NKINDS (sizeof KINDS / sizeof KINDS[0])
static const rk_rope_mode ROPES[] = { RK_ROPE_NONE, RK_ROPE_QK, RK_ROPE_FEATURES };

static tcase base_case(size_t kind, rk_rope_mode rope, int causal)
{
    tcase t = { .kind = KINDS[kind].kind, .kernel = KINDS[kind].kernel, .map = KINDS[kind].map,
                .rope = rope, .causal = causal, .n_q = 37, .n_kv = 53, .d = 8, .dv = 5, .m = 20,
                .kv_len = RK_ALL_KEYS, .pad = 3, .pos_offset = 5, .sigma = 0.7 };
    if (t.kernel == RK_KERNEL_TRIG) t.sigma = 0.4;   /* keeps trig denominators away from 0 */
    if (t.kind == RK_LINEAR) t.m = 0;                 /* feature width d */
    return t;
}

/* ------------------------------------------------------------------------------------------ */

/* docs/theory.md#regression-vectors: eq. 19 with elu+1, N = 4, d = 4, d_v = 2, theta over d = 4. */
static void test_eq19_regression(void **state)
{
    (void)state;
    static const double Q[16] = { -1.6, 0.06, 0.74, 0.15, 0.86, 2.91, -1.48, 0.95,
                                  -1.67, 0.34, -0.51, 1.32, -0.86, 0.52, -1.27, -2.16 };
    static const double K[16] = { 0.43, 1.73, 0.52, -1.0, 0.27, 0.77, 1.19, -1.16,
                                  0.7, 0.35, -0.03, 0.01, -0.68, -0.62, 1.33, 0.26 };
    static const double V[8] = { -0.48, -2.49, -0.88, -0.51, -1.28, -1.33, 0.83, -0.25 };
    static const double want[2][8] = {
        { -0.3778707093, -1.0525182288, -0.5734608963, -0.9418293578,
          -0.1692463609, -0.3010455059, 0.3499868319, 0.7876524554 },
        { -0.48, -2.49, -0.5200803214, -0.9979505402,
          -0.5110941319, -0.3155260586, 0.3499868319, 0.7876524554 },
    };
    float qf[16], kf[16], vf[8], of[8];
    for (int i = 0; i < 16; i++) { qf[i] = (float)Q[i]; kf[i] = (float)K[i]; }
    for (int i = 0; i < 8; i++) vf[i] = (float)V[i];
    for (int causal = 0; causal < 2; causal++) {
        for (int head = 0; head < 2; head++) {       /* F = d: theta over F or d is the same */
            rk_attn_config c = { .kind = RK_LINEAR, .map = RK_MAP_ELU, .n_q = 4, .n_kv = 4, .d = 4,
                                 .d_v = 2, .causal = causal, .rope = RK_ROPE_FEATURES,
                                 .rope_freq_dim_head = head };
            rk_attn *p;
            assert_rk_ok(rk_attn_create(&p, &c));
            double od[8];
            rk_matd q = rk_matd_view((double *)Q, 4, 4, 4), k = rk_matd_view((double *)K, 4, 4, 4);
            rk_matd v = rk_matd_view((double *)V, 4, 2, 2), o = rk_matd_view(od, 4, 2, 2);
            assert_rk_ok(rk_attn_execute_d(p, &q, &k, &v, &o, RK_ALL_KEYS));
            assert_allclose(od, want[causal], 8, 0, 1e-9);
            rk_mat qv = rk_mat_view(qf, 4, 4, 4), kv = rk_mat_view(kf, 4, 4, 4);
            rk_mat vv = rk_mat_view(vf, 4, 2, 2), ov = rk_mat_view(of, 4, 2, 2);
            assert_rk_ok(rk_attn_execute(p, &qv, &kv, &vv, &ov, RK_ALL_KEYS));
            double o2[8];
            for (int i = 0; i < 8; i++) o2[i] = of[i];
            assert_allclose(o2, want[causal], 8, 0, 1e-5);
            if (causal) {          /* recurrent decoding gives the causal rows */
                rk_attn_state *s;
                assert_rk_ok(rk_attn_state_create(&s, p));
                for (int t = 0; t < 4; t++) assert_rk_ok(rk_attn_state_step_d(s, Q + 4 * t, K + 4 * t, V + 2 * t, od + 2 * t));
                assert_allclose(od, want[1], 8, 0, 1e-9);
                rk_attn_state_destroy(s);
            }
            rk_attn_destroy(p);
        }
    }
}

/* Every kind x RoPE form, bidirectional and causal, n_q < n_kv, NaN padding, d_v != d. */
static void test_exact_small(void **state)
{
    (void)state;
    double worst = 0;
    for (size_t kd = 0; kd < NKINDS; kd++)
        for (size_t r = 0; r < 3; r++)
            for (int causal = 0; causal < 2; causal++) {
                tcase t = base_case(kd, ROPES[r], causal);
                double e = check_case(&t, F_TOL, D_TOL);
                if (e > worst) worst = e;
            }
    print_message("worst float error over 30 small cases: %.3g\n", worst);
}

/* Chunk and block boundaries not aligned with n (T = 64 causal chunks, 256-key blocks),
 * n_q > n_kv (early causal rows see nothing), key padding, iid projections, half pairs,
 * theta over d, odd n and d_v. */
static void test_exact_awkward(void **state)
{
    (void)state;
    for (size_t kd = 0; kd < NKINDS; kd++)
        for (size_t r = 0; r < 3; r++) {
            tcase t = base_case(kd, ROPES[r], 1);
            t.n_q = 301; t.n_kv = 267; t.dv = 3; t.pad = 1; t.m = 16; t.kv_len = 250;
            t.proj = RK_PROJ_IID; t.style = RK_ROPE_HALF;
            if (t.kind == RK_LINEAR) { t.m = 0; t.proj = RK_PROJ_ORTHOGONAL; } /* no projection */
            t.freq_head = ROPES[r] == RK_ROPE_FEATURES;
            check_case(&t, F_TOL, D_TOL);
            t.causal = 0; t.n_q = 129; t.n_kv = 521; t.kv_len = 517; t.pos_offset = -3;
            check_case(&t, F_TOL, D_TOL);
            t.causal = 1; t.n_q = 77; t.kv_len = RK_ALL_KEYS;
            check_case(&t, F_TOL, D_TOL);
        }
}

/* Keys at and after kv_len hold NaN: they must never be read. */
static void test_kv_len_nan(void **state)
{
    (void)state;
    for (int causal = 0; causal < 2; causal++)
        for (size_t r = 0; r < 3; r++) {
            tcase cs = base_case(0, ROPES[r], causal);
            cs.n_q = cs.n_kv = 90;
            rk_attn_config c = config_of(&cs);
            rk_attn *p;
            assert_rk_ok(rk_attn_create(&p, &c));
            tdata t;
            data_make(&t, &cs, 5);
            size_t kv_len = 61;
            for (size_t j = kv_len; j < cs.n_kv; j++) {
                for (size_t i = 0; i < cs.d; i++) { t.k.data[j * t.k.ld + i] = NAN; t.kd.data[j * t.kd.ld + i] = NAN; }
                for (size_t i = 0; i < cs.dv; i++) { t.v.data[j * t.v.ld + i] = NAN; t.vd.data[j * t.vd.ld + i] = NAN; }
            }
            double *w;
            ref_linear_cfg rc = ref_of(p, &w);
            ref_linear_attention(&rc, &t.qd, &t.kd, &t.vd, &t.want, kv_len);
            assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, kv_len));
            assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, kv_len));
            assert_mat_close(&t.out, &t.want, F_TOL, F_TOL);
            assert_matd_close(&t.outd, &t.want, D_TOL, D_TOL);
            free(w);
            data_free(&t);
            rk_attn_destroy(p);
        }
}

/* Recurrent decoding equals the causal batch result (and the reference), every kind and form. */
static void test_recurrent(void **state)
{
    (void)state;
    for (size_t kd = 0; kd < NKINDS; kd++)
        for (size_t r = 0; r < 3; r++) {
            tcase cs = base_case(kd, ROPES[r], 1);
            cs.n_q = cs.n_kv = 150;
            cs.pad = 0;
            cs.pos_offset = 9;
            rk_attn_config c = config_of(&cs);
            rk_attn *p;
            assert_rk_ok(rk_attn_create(&p, &c));
            tdata t;
            data_make(&t, &cs, 21);
            assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, RK_ALL_KEYS));
            assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, RK_ALL_KEYS));
            rk_attn_state *s;
            assert_rk_ok(rk_attn_state_create(&s, p));
            rk_matd sd = rk_test_matd(cs.n_q, cs.dv, cs.dv);
            rk_mat sf = rk_test_mat(cs.n_q, cs.dv, cs.dv);
            for (int pass = 0; pass < 2; pass++) {     /* the second pass after a reset */
                for (size_t i = 0; i < cs.n_q; i++)
                    assert_rk_ok(rk_attn_state_step_d(s, t.qd.data + i * cs.d, t.kd.data + i * cs.d,
                                                      t.vd.data + i * cs.dv, sd.data + i * cs.dv));
                assert_matd_close(&sd, &t.outd, 1e-12, 1e-12);
                rk_attn_state_reset(s);
            }
            for (size_t i = 0; i < cs.n_q; i++)
                assert_rk_ok(rk_attn_state_step(s, t.q.data + i * cs.d, t.k.data + i * cs.d,
                                                t.v.data + i * cs.dv, sf.data + i * cs.dv));
            rk_test_f2d(&sf, &sd);
            assert_matd_close(&sd, &t.outd, 1e-6, 1e-6);    /* float in, double inside */
            rk_test_f2d(&t.out, &sd);
            assert_mat_close(&sf, &sd, F_TOL, F_TOL);        /* vs the float batch path */
            rk_attn_state_destroy(s);
            rk_test_freed(&sd);
            rk_test_free(&sf);
            data_free(&t);
            rk_attn_destroy(p);
        }
}

/* eq. 19 is exactly relative: moving every position by the same amount changes nothing but
 * rounding. The qk form (performer-pytorch) is relative only in expectation: for a fixed
 * projection the output moves; the figure is printed. Bidirectional, causal and recurrent. */
static void test_relative_property(void **state)
{
    (void)state;
    size_t kinds[] = { 0, 1, 3 };     /* positive, hyperbolic, elu+1 */
    for (size_t a = 0; a < 3; a++)
        for (size_t r = 1; r < 3; r++)
            for (int causal = 0; causal < 2; causal++) {
                tcase cs = base_case(kinds[a], ROPES[r], causal);
                cs.n_q = cs.n_kv = 70;
                cs.pos_offset = 0;
                cs.sigma = 1.0;
                rk_attn_config c0 = config_of(&cs), c1 = c0;
                c1.pos_offset = 1000;
                rk_attn *p0, *p1;
                assert_rk_ok(rk_attn_create(&p0, &c0));
                assert_rk_ok(rk_attn_create(&p1, &c1));
                tdata t;
                data_make(&t, &cs, 31);
                rk_matd o1 = rk_test_matd(cs.n_q, cs.dv, cs.dv);
                rk_mat f1 = rk_test_mat(cs.n_q, cs.dv, cs.dv);
                assert_rk_ok(rk_attn_execute_d(p0, &t.qd, &t.kd, &t.vd, &t.outd, RK_ALL_KEYS));
                assert_rk_ok(rk_attn_execute_d(p1, &t.qd, &t.kd, &t.vd, &o1, RK_ALL_KEYS));
                assert_rk_ok(rk_attn_execute(p0, &t.q, &t.k, &t.v, &t.out, RK_ALL_KEYS));
                assert_rk_ok(rk_attn_execute(p1, &t.q, &t.k, &t.v, &f1, RK_ALL_KEYS));
                double dd = rk_max_abs_diffd(&o1, &t.outd);
                rk_test_f2d(&f1, &o1);
                double df = rk_max_abs_diff(&t.out, &o1);
                if (ROPES[r] == RK_ROPE_FEATURES) {
                    assert_true(dd < 1e-11);
                    assert_true(df < 1e-5);
                } else {
                    print_message("rope=qk %s causal=%d: shifting positions by 1000 moves the "
                                  "output by %.3g (double), %.3g (float)\n", kind_name(&cs), causal, dd, df);
                    assert_true(dd > 1e-3);
                }
                if (causal && ROPES[r] == RK_ROPE_FEATURES) {    /* recurrent at offset 1000 */
                    rk_attn_state *s;
                    assert_rk_ok(rk_attn_state_create(&s, p1));
                    for (size_t i = 0; i < cs.n_q; i++)
                        assert_rk_ok(rk_attn_state_step_d(s, t.qd.data + i * t.qd.ld, t.kd.data + i * t.kd.ld,
                                                          t.vd.data + i * t.vd.ld, o1.data + i * o1.ld));
                    assert_true(rk_max_abs_diffd(&o1, &t.outd) < 1e-11);
                    rk_attn_state_destroy(s);
                }
                rk_test_freed(&o1);
                rk_test_free(&f1);
                data_free(&t);
                rk_attn_destroy(p0);
                rk_attn_destroy(p1);
            }
}

/* Causality to the bit: keys/values after the last one query t sees are replaced (by much
 * larger keys, which would raise a look-ahead stabiliser's max); rows <= t must not change. */
static void test_causal_bits(void **state)
{
    (void)state;
    size_t shapes[][2] = { { 200, 200 }, { 90, 130 }, { 130, 90 } };
    size_t ts[] = { 0, 40, 63, 64, 100, 127 };
    for (size_t sh = 0; sh < 3; sh++)
        for (size_t r = 0; r < 3; r++)
            for (size_t kd = 0; kd < NKINDS; kd += 2) {      /* positive, trig, relu */
                tcase cs = base_case(kd, ROPES[r], 1);
                cs.n_q = shapes[sh][0]; cs.n_kv = shapes[sh][1];
                rk_attn_config c = config_of(&cs);
                rk_attn *p;
                assert_rk_ok(rk_attn_create(&p, &c));
                tdata t;
                data_make(&t, &cs, 41);
                rk_mat o0 = rk_test_mat(cs.n_q, cs.dv, cs.dv + cs.pad);
                rk_matd od0 = rk_test_matd(cs.n_q, cs.dv, cs.dv + cs.pad);
                assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &o0, RK_ALL_KEYS));
                assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &od0, RK_ALL_KEYS));
                for (size_t a = 0; a < sizeof ts / sizeof ts[0]; a++) {
                    size_t ti = ts[a];
                    if (ti >= cs.n_q) continue;
                    /* query ti sees keys j <= ti + n_kv - n_q */
                    long lastk = (long)ti + (long)cs.n_kv - (long)cs.n_q;
                    tdata u;
                    data_make(&u, &cs, 41);
                    for (size_t j = (size_t)(lastk + 1 > 0 ? lastk + 1 : 0); j < cs.n_kv; j++) {
                        for (size_t i = 0; i < cs.d; i++) {
                            u.k.data[j * u.k.ld + i] *= 6.0f;
                            u.kd.data[j * u.kd.ld + i] = u.k.data[j * u.k.ld + i];
                        }
                        for (size_t i = 0; i < cs.dv; i++) {
                            u.v.data[j * u.v.ld + i] += 1.0f;
                            u.vd.data[j * u.vd.ld + i] = u.v.data[j * u.v.ld + i];
                        }
                    }
                    assert_rk_ok(rk_attn_execute(p, &u.q, &u.k, &u.v, &u.out, RK_ALL_KEYS));
                    assert_rk_ok(rk_attn_execute_d(p, &u.qd, &u.kd, &u.vd, &u.outd, RK_ALL_KEYS));
                    for (size_t i = 0; i <= ti; i++) {
                        assert_memory_equal(u.out.data + i * u.out.ld, o0.data + i * o0.ld, cs.dv * sizeof(float));
                        assert_memory_equal(u.outd.data + i * u.outd.ld, od0.data + i * od0.ld, cs.dv * sizeof(double));
                    }
                    data_free(&u);
                }
                rk_test_free(&o0);
                rk_test_freed(&od0);
                data_free(&t);
                rk_attn_destroy(p);
            }
}

/* The same bits for any OpenMP thread count and any OpenBLAS thread count; the same seed
 * gives the same projection and output, another seed does not. */
static void test_threads_and_seeds(void **state)
{
    (void)state;
    int blas0 = openblas_get_num_threads();
    for (int causal = 0; causal < 2; causal++)
        for (size_t r = 0; r < 3; r += 2) {
            tcase cs = base_case(1, ROPES[r], causal);    /* hyperbolic: F = 2m = 128 */
            cs.n_q = 700; cs.n_kv = 650; cs.d = 32; cs.dv = 24; cs.m = 64;
            tdata t;
            data_make(&t, &cs, 51);
            rk_mat ref = rk_test_mat(cs.n_q, cs.dv, cs.dv + cs.pad);
            rk_matd refd = rk_test_matd(cs.n_q, cs.dv, cs.dv + cs.pad);
            const int nts[] = { 1, 2, 3 }, blas[] = { 1, 2, 1 };
            for (int a = 0; a < 3; a++) {
                openblas_set_num_threads(blas[a]);
                rk_attn_config c = config_of(&cs);
                c.nthreads = nts[a];
                rk_attn *p;
                assert_rk_ok(rk_attn_create(&p, &c));
                rk_mat *o = a ? &t.out : &ref;
                rk_matd *od = a ? &t.outd : &refd;
                assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, o, RK_ALL_KEYS));
                assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, od, RK_ALL_KEYS));
                if (a) {
                    assert_memory_equal(t.out.data, ref.data, (cs.n_q * t.out.ld - cs.pad) * sizeof(float));
                    assert_memory_equal(t.outd.data, refd.data, (cs.n_q * t.outd.ld - cs.pad) * sizeof(double));
                }
                rk_attn_destroy(p);
            }
            openblas_set_num_threads(blas0);
            /* another seed: another projection, another output */
            rk_attn_config c = config_of(&cs);
            c.seed = 2386;
            rk_attn *p;
            assert_rk_ok(rk_attn_create(&p, &c));
            assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, RK_ALL_KEYS));
            assert_true(rk_max_abs_diffd(&t.outd, &refd) > 1e-6);
            rk_attn_destroy(p);
            rk_test_free(&ref);
            rk_test_freed(&refd);
            data_free(&t);
        }
}

/* The portable product kernels (fmaf chains) give the same bits as the AVX2+FMA ones, on
 * shapes that use every tile and tail (rows % 4, columns % 16 and % 8). */
static void test_portable_bits(void **state)
{
    (void)state;
    for (int causal = 0; causal < 2; causal++) {
        tcase cs = base_case(1, RK_ROPE_FEATURES, causal);
        cs.n_q = 203; cs.n_kv = 301; cs.d = 12; cs.dv = 29; cs.m = 27;
        tdata t;
        data_make(&t, &cs, 55);
        rk_mat o = rk_test_mat(cs.n_q, cs.dv, cs.dv + cs.pad);
        rk_matd od = rk_test_matd(cs.n_q, cs.dv, cs.dv + cs.pad);
        rk_attn_config c = config_of(&cs);
        rk_attn *p, *pp;
        assert_rk_ok(rk_attn_create(&p, &c));
        rk__perf_force_portable(1);
        assert_rk_ok(rk_attn_create(&pp, &c));
        rk__perf_force_portable(0);
        assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, RK_ALL_KEYS));
        assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, RK_ALL_KEYS));
        assert_rk_ok(rk_attn_execute(pp, &t.q, &t.k, &t.v, &o, RK_ALL_KEYS));
        assert_rk_ok(rk_attn_execute_d(pp, &t.qd, &t.kd, &t.vd, &od, RK_ALL_KEYS));
        assert_memory_equal(o.data, t.out.data, (cs.n_q * o.ld - cs.pad) * sizeof(float));
        assert_memory_equal(od.data, t.outd.data, (cs.n_q * od.ld - cs.pad) * sizeof(double));
        rk_attn_destroy(p);
        rk_attn_destroy(pp);
        rk_test_free(&o);
        rk_test_freed(&od);
        data_free(&t);
    }
}

/* Inputs large enough that unstabilised features overflow (float: exp > 88; double: > 709):
 * the outputs stay finite and match the reference, bidirectional and causal, every exp map. */
static void test_stabiliser_range(void **state)
{
    (void)state;
    for (size_t kd = 0; kd < 3; kd++)
        for (int causal = 0; causal < 2; causal++)
            for (size_t r = 0; r < 3; r++) {
                tcase cs = base_case(kd, ROPES[r], causal);
                cs.d = 16;
                cs.sigma = kd == 2 ? 15.0 : 8.0;   /* trig: |x'|^2/2 ~ 900; positive: u ~ 100 */
                cs.n_q = 70; cs.n_kv = 90;
                rk_attn_config c = config_of(&cs);
                rk_attn *p;
                assert_rk_ok(rk_attn_create(&p, &c));
                tdata t;
                data_make(&t, &cs, 61);
                double *w;
                ref_linear_cfg rc = ref_of(p, &w);
                ref_linear_attention(&rc, &t.qd, &t.kd, &t.vd, &t.want, RK_ALL_KEYS);
                assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, RK_ALL_KEYS));
                assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, RK_ALL_KEYS));
                for (size_t i = 0; i < cs.n_q * cs.dv; i++) assert_true(isfinite(t.want.data[i]));
                /* peaked weights: float exponents of size ~100 carry ~1e-5 absolute rounding */
                if (kd != 2) assert_mat_close(&t.out, &t.want, 2e-3, 2e-3);
                assert_matd_close(&t.outd, &t.want, 1e-9, 1e-9);
                free(w);
                data_free(&t);
                rk_attn_destroy(p);
            }
}

/* No eps: every kernel value ~ e^-30 relative to 1 (queries point away from the keys), where
 * the official implementation's +1e-6 per feature would dominate. The output still matches the
 * reference to working precision. The size of the eps bias is printed for comparison. */
static void test_no_eps_bias(void **state)
{
    (void)state;
    size_t n = 60, d = 16, dv = 4;
    for (int causal = 0; causal < 2; causal++) {
        tcase cs = base_case(0, RK_ROPE_NONE, causal);
        cs.n_q = cs.n_kv = n; cs.d = d; cs.dv = dv; cs.m = 64; cs.pad = 0;
        rk_attn_config c = config_of(&cs);
        rk_attn *p;
        assert_rk_ok(rk_attn_create(&p, &c));
        tdata t;
        data_make(&t, &cs, 71);
        /* q = +a e_0 + noise, k = -a e_0 + noise: q.k/sqrt(d) ~ -a^2/4 ~ -30 */
        for (size_t i = 0; i < n; i++) {
            t.q.data[i * d] += 11.0f;
            t.k.data[i * d] -= 11.0f;
        }
        rk_test_f2d(&t.q, &t.qd);
        rk_test_f2d(&t.k, &t.kd);
        double *w;
        ref_linear_cfg rc = ref_of(p, &w);
        ref_linear_attention(&rc, &t.qd, &t.kd, &t.vd, &t.want, RK_ALL_KEYS);
        assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, RK_ALL_KEYS));
        assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, RK_ALL_KEYS));
        assert_matd_close(&t.outd, &t.want, 1e-10, 1e-10);
        assert_mat_close(&t.out, &t.want, 1e-4, 1e-4);
        /* the same estimator with Performer's eps: phi + 1e-6 on both sides (unstabilised
         * scale: the official code also subtracts maxima, so its features are <= 1 too) */
        size_t F = rk_attn_feature_dim(p);
        double *pq = malloc(F * sizeof(double)), *pk = malloc(F * sizeof(double)), bias = 0;
        for (size_t i = 0; i < n; i++) {
            double num[4] = { 0 }, den = 0, ck = -INFINITY;
            size_t L = causal ? i + 1 : n;
            for (size_t j = 0; j < n; j++) {
                double l = ref_linear_lmax(&rc, t.kd.data + j * d, d);
                if (l > ck) ck = l;
            }
            ref_linear_phi(&rc, t.qd.data + i * d, d, ref_linear_lmax(&rc, t.qd.data + i * d, d), pq);
            for (size_t j = 0; j < L; j++) {
                ref_linear_phi(&rc, t.kd.data + j * d, d, ck, pk);
                double a = 0;
                for (size_t r = 0; r < F; r++) a += (pq[r] + 1e-6) * (pk[r] + 1e-6);
                den += a;
                for (size_t e = 0; e < dv; e++) num[e] += a * t.vd.data[j * dv + e];
            }
            for (size_t e = 0; e < dv; e++) {
                double b = fabs(num[e] / den - t.want.data[i * dv + e]);
                if (b > bias) bias = b;
            }
        }
        print_message("causal=%d: error without eps %.2g (double), %.2g (float); a 1e-6 eps "
                      "would move the output by %.2g\n", causal, rk_max_abs_diffd(&t.outd, &t.want),
                      rk_max_abs_diff(&t.out, &t.want), bias);
        free(pq); free(pk); free(w);
        data_free(&t);
        rk_attn_destroy(p);
    }
}

/* A zero denominator gives a zero row, never NaN: relu features of a query with no positive
 * coordinate are all 0. */
static void test_zero_denominator(void **state)
{
    (void)state;
    for (int causal = 0; causal < 2; causal++) {
        tcase cs = base_case(4, RK_ROPE_FEATURES, causal);
        cs.n_q = cs.n_kv = 20;
        rk_attn_config c = config_of(&cs);
        rk_attn *p;
        assert_rk_ok(rk_attn_create(&p, &c));
        tdata t;
        data_make(&t, &cs, 81);
        for (size_t i = 0; i < cs.d; i++) { t.q.data[3 * t.q.ld + i] = -1.0f; t.qd.data[3 * t.qd.ld + i] = -1.0; }
        assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, RK_ALL_KEYS));
        assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, RK_ALL_KEYS));
        for (size_t e = 0; e < cs.dv; e++) {
            assert_true(t.out.data[3 * t.out.ld + e] == 0.0f);
            assert_true(t.outd.data[3 * t.outd.ld + e] == 0.0);
        }
        data_free(&t);
        rk_attn_destroy(p);
    }
}

/* Inputs are not written (checksums), and out never overlaps them (attn.c). */
static void test_inputs_untouched(void **state)
{
    (void)state;
    tcase cs = base_case(1, RK_ROPE_QK, 1);
    cs.n_q = cs.n_kv = 100;
    rk_attn_config c = config_of(&cs);
    rk_attn *p;
    assert_rk_ok(rk_attn_create(&p, &c));
    tdata t, u;
    data_make(&t, &cs, 91);
    data_make(&u, &cs, 91);
    assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, RK_ALL_KEYS));
    assert_rk_ok(rk_attn_execute_d(p, &t.qd, &t.kd, &t.vd, &t.outd, RK_ALL_KEYS));
    assert_memory_equal(t.q.data, u.q.data, (cs.n_q * t.q.ld - cs.pad) * sizeof(float));
    assert_memory_equal(t.k.data, u.k.data, (cs.n_kv * t.k.ld - 2 * cs.pad) * sizeof(float));
    assert_memory_equal(t.qd.data, u.qd.data, (cs.n_q * t.qd.ld - cs.pad) * sizeof(double));
    assert_memory_equal(t.kd.data, u.kd.data, (cs.n_kv * t.kd.ld - 2 * cs.pad) * sizeof(double));
    assert_memory_equal(t.vd.data, u.vd.data, (cs.n_kv * t.vd.ld - cs.pad) * sizeof(double));
    data_free(&t);
    data_free(&u);
    rk_attn_destroy(p);
}

/* rk_attn_features_d: the plain map agrees with the reference's; with positions it gives the
 * numerator features of each form; the feature width of every kind. */
static void test_features_api(void **state)
{
    (void)state;
    for (size_t kd = 0; kd < NKINDS; kd++)
        for (size_t r = 0; r < 3; r++) {
            tcase cs = base_case(kd, ROPES[r], 0);
            rk_attn_config c = config_of(&cs);
            rk_attn *p;
            assert_rk_ok(rk_attn_create(&p, &c));
            size_t F = rk_attn_feature_dim(p), n = 6, d = cs.d;
            size_t wantF = cs.kind == RK_LINEAR ? d : cs.kernel == RK_KERNEL_POSITIVE ? cs.m : 2 * cs.m;
            assert_int_equal(F, wantF);
            gsl_rng *g = rk_test_rng(3);
            rk_matd x = rk_test_randnd(g, n, d, d + 1, 0.8);
            rk_matd phi = rk_test_matd(n, F, F + 2), want = rk_test_matd(n, F, F);
            int64_t pos[6] = { 0, 1, 7, 100, -5, 4096 + 3 };
            double *w;
            ref_linear_cfg rc = ref_of(p, &w);
            for (int withpos = 0; withpos < 2; withpos++) {
                assert_rk_ok(rk_attn_features_d(p, &x, withpos ? pos : NULL, &phi));
                for (size_t i = 0; i < n; i++) {
                    double xr[16];
                    memcpy(xr, x.data + i * x.ld, d * sizeof(double));
                    if (withpos && cs.rope == RK_ROPE_QK) ref_linear_rotate(&rc, xr, d, (double)pos[i]);
                    ref_linear_phi(&rc, xr, d, 0.0, want.data + i * F);
                    if (withpos && cs.rope == RK_ROPE_FEATURES) ref_linear_rotate(&rc, want.data + i * F, F, (double)pos[i]);
                }
                assert_matd_close(&phi, &want, 1e-12, 1e-14);
            }
            rk_matd bad = rk_test_matd(n, F + 1, F + 1);
            assert_rk_error(rk_attn_features_d(p, &x, NULL, &bad), RK_EDIM);
            free(w);
            rk_test_freed(&x); rk_test_freed(&phi); rk_test_freed(&want); rk_test_freed(&bad);
            gsl_rng_free(g);
            rk_attn_destroy(p);
        }
    rk_attn_config sc = { .kind = RK_SOFTMAX, .n_q = 4, .n_kv = 4, .d = 4 };
    rk_attn *s;
    assert_rk_ok(rk_attn_create(&s, &sc));
    assert_int_equal(rk_attn_feature_dim(s), 0);
    size_t m = 9, d = 9;
    assert_null(rk_attn_proj(s, &m, &d));
    assert_int_equal(m, 0);
    double xb[4] = { 0 }, pb[4];
    rk_matd x = rk_matd_view(xb, 1, 4, 4), ph = rk_matd_view(pb, 1, 4, 4);
    assert_rk_error(rk_attn_features_d(s, &x, NULL, &ph), RK_EUNSUP);
    rk_attn_destroy(s);
}

/* proj_data reproduces a drawn projection bit for bit; .npy export/import round trip; the
 * import's checks. */
static void test_projection_io(void **state)
{
    (void)state;
    tcase cs = base_case(0, RK_ROPE_FEATURES, 1);
    cs.n_q = cs.n_kv = 80;
    rk_attn_config c = config_of(&cs);
    rk_attn *p;
    assert_rk_ok(rk_attn_create(&p, &c));
    size_t m, d;
    const float *w = rk_attn_proj(p, &m, &d);
    assert_non_null(w);
    assert_int_equal(m, cs.m);
    assert_int_equal(d, cs.d);
    tdata t;
    data_make(&t, &cs, 101);
    rk_mat o2 = rk_test_mat(cs.n_q, cs.dv, cs.dv + cs.pad);
    assert_rk_ok(rk_attn_execute(p, &t.q, &t.k, &t.v, &t.out, RK_ALL_KEYS));

    char path[] = "/tmp/rk_test_proj_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_rk_ok(rk_attn_proj_save(p, path));
    rk_mat wl;
    assert_rk_ok(rk_attn_proj_load(path, cs.d, &wl));
    assert_int_equal(wl.rows, m);
    assert_memory_equal(wl.data, w, m * d * sizeof(float));
    rk_attn_config c2 = c;
    c2.seed = 0;                       /* not needed with proj_data */
    c2.proj_data = wl.data;
    c2.n_features = wl.rows;
    rk_attn *p2;
    assert_rk_ok(rk_attn_create(&p2, &c2));
    rk_mat_free(&wl);                  /* the plan keeps its own copy */
    assert_rk_ok(rk_attn_execute(p2, &t.q, &t.k, &t.v, &o2, RK_ALL_KEYS));
    assert_memory_equal(o2.data, t.out.data, (cs.n_q * o2.ld - cs.pad) * sizeof(float));
    assert_memory_equal(rk_attn_proj(p2, NULL, NULL), w, m * d * sizeof(float));

    /* import checks: wrong d, wrong rank, m = 0, non-finite, missing file */
    assert_rk_error(rk_attn_proj_load(path, cs.d + 1, &wl), RK_EDIM);
    assert_null(wl.data);
    rk_array a;
    size_t sh1[1] = { 8 }, sh0[2] = { 0, 8 }, sh2[2] = { 2, 8 };
    assert_rk_ok(rk_array_alloc(&a, RK_F64, 1, sh1));
    assert_rk_ok(rk_npy_save(path, &a));
    rk_array_free(&a);
    assert_rk_error(rk_attn_proj_load(path, 8, &wl), RK_EDIM);
    assert_rk_ok(rk_array_alloc(&a, RK_F32, 2, sh0));
    assert_rk_ok(rk_npy_save(path, &a));
    rk_array_free(&a);
    assert_rk_error(rk_attn_proj_load(path, 8, &wl), RK_EDIM);
    assert_rk_ok(rk_array_alloc(&a, RK_F64, 2, sh2));
    ((double *)a.data)[5] = NAN;
    assert_rk_ok(rk_npy_save(path, &a));
    assert_rk_error(rk_attn_proj_load(path, 8, &wl), RK_ENONFINITE);
    ((double *)a.data)[5] = 1e300;     /* finite in double, not in float */
    assert_rk_ok(rk_npy_save(path, &a));
    assert_rk_error(rk_attn_proj_load(path, 8, &wl), RK_ENONFINITE);
    ((double *)a.data)[5] = 0.25;      /* f8 is accepted and converted */
    assert_rk_ok(rk_npy_save(path, &a));
    assert_rk_ok(rk_attn_proj_load(path, 8, &wl));
    assert_true(wl.rows == 2 && wl.cols == 8 && wl.data[5] == 0.25f);
    rk_mat_free(&wl);
    rk_array_free(&a);
    unlink(path);
    assert_rk_error(rk_attn_proj_load(path, 8, &wl), RK_EIO);

    rk_test_free(&o2);
    data_free(&t);
    rk_attn_destroy(p2);
    rk_attn_destroy(p);
}

/* Every error path of create, execute, the state and the extras. */
static void test_errors(void **state)
{
    (void)state;
    rk_attn *p = NULL;
    rk_attn_config good = { .kind = RK_PERFORMER, .n_q = 8, .n_kv = 8, .d = 4, .n_features = 6,
                            .seed = 7 };
    rk_attn_config c;
#define BAD(field_set, code) do { c = good; field_set; \
        assert_rk_error(rk_attn_create(&p, &c), code); assert_null(p); } while (0)
    BAD(c.seed = 0, RK_EINVAL);                                  /* no seed */
    BAD(c.kernel = (rk_kernel)7, RK_EINVAL);
    BAD(c.proj = (rk_proj)5, RK_EINVAL);
    BAD(c.proj_norm = (rk_proj_norm)5, RK_EINVAL);
    BAD(c.rope_freq_dim_head = 1, RK_EINVAL);                    /* without rope = features */
    BAD(c.scale = -1.0, RK_EINVAL);                              /* sqrt(scale) */
    BAD((c.rope = RK_ROPE_FEATURES, c.n_features = 7), RK_EDIM);  /* m odd with features */
    BAD((c.rope = RK_ROPE_QK, c.d = 5), RK_EDIM);                /* qk needs even d */
    BAD((c.rope = RK_ROPE_FEATURES, c.rope_cfg.rotary_dim = 8), RK_EDIM);   /* > F = 6 */
    BAD(c.n_features = (size_t)INT_MAX + 1, RK_EOVERFLOW);
    BAD((c.kernel = RK_KERNEL_TRIG, c.n_features = (size_t)INT_MAX / 2 + 1), RK_EOVERFLOW);
    BAD((c.kind = RK_LINEAR, c.map = (rk_map)9), RK_EINVAL);
    BAD((c.kind = RK_LINEAR, c.n_features = 6), RK_EINVAL);     /* linear: F = d */
    BAD((c.kind = RK_LINEAR, c.n_features = 0, c.proj_data = (const float *)&good), RK_EINVAL);
    BAD((c.kind = RK_LINEAR, c.n_features = 0, c.d = 5, c.rope = RK_ROPE_FEATURES), RK_EDIM);
    float nanw[24];
    for (int i = 0; i < 24; i++) nanw[i] = 0.5f;
    nanw[13] = NAN;
    BAD(c.proj_data = nanw, RK_ENONFINITE);
    /* the linear kinds ignore the seed; a linear plan and m = d are fine */
    c = good; c.kind = RK_LINEAR; c.n_features = 4; c.seed = 0;
    assert_rk_ok(rk_attn_create(&p, &c));
    assert_int_equal(rk_attn_get_config(p)->n_features, 4);
    rk_attn_destroy(p);
    /* resolved config: default m, rope dim = feature width */
    c = good; c.n_features = 0; c.rope = RK_ROPE_FEATURES; c.kernel = RK_KERNEL_HYPERBOLIC;
    assert_rk_ok(rk_attn_create(&p, &c));
    assert_int_equal(rk_attn_get_config(p)->n_features, 256);
    assert_int_equal(rk_attn_get_config(p)->rope_cfg.dim, 512);
    assert_int_equal(rk_attn_feature_dim(p), 512);
    assert_true(rk_attn_bytes(p) > 256 * 4 * sizeof(float));
    /* execute: d mismatch, d_v mismatch */
    float buf[8 * 8] = { 0 }, ob[8 * 4];
    rk_mat q = rk_mat_view(buf, 8, 4, 4), k5 = rk_mat_view(buf, 8, 5, 5), o = rk_mat_view(ob, 8, 4, 4);
    rk_mat o3 = rk_mat_view(ob, 8, 3, 3);
    assert_rk_error(rk_attn_execute(p, &q, &k5, &q, &o, RK_ALL_KEYS), RK_EDIM);
    assert_rk_error(rk_attn_execute(p, &q, &q, &q, &o3, RK_ALL_KEYS), RK_EDIM);
    assert_rk_error(rk_attn_execute(p, &q, &q, &q, &o, 9), RK_EDIM);
    /* extras */
    assert_rk_error(rk_attn_state_create(NULL, p), RK_EINVAL);
    rk_attn_state *s = NULL;
    assert_rk_ok(rk_attn_state_create(&s, p));
    assert_rk_error(rk_attn_state_step(s, NULL, buf, buf, ob), RK_EINVAL);
    assert_rk_error(rk_attn_state_step_d(s, NULL, NULL, NULL, NULL), RK_EINVAL);
    rk_attn_state_destroy(s);
    rk_attn_state_destroy(NULL);
    rk_attn_state_reset(NULL);
    rk_attn_destroy(p);
    c = good; c.kind = RK_LINEAR; c.n_features = 0;
    assert_rk_ok(rk_attn_create(&p, &c));
    assert_null(rk_attn_proj(p, NULL, NULL));
    assert_rk_error(rk_attn_proj_save(p, "/tmp/rk_never_written.npy"), RK_EUNSUP);
    rk_attn_destroy(p);
    rk_attn_config sc = { .kind = RK_SOFTMAX, .n_q = 4, .n_kv = 4, .d = 4 };
    assert_rk_ok(rk_attn_create(&p, &sc));
    assert_rk_error(rk_attn_state_create(&s, p), RK_EUNSUP);
    assert_null(s);
    rk_attn_destroy(p);
#undef BAD
}

/* Every allocation of create (plan, projection, scratch, rotation tables) and of the state
 * failing in turn: RK_ENOMEM, nothing leaked (LSan), and the next attempt works. */
static void test_alloc_failures(void **state)
{
    (void)state;
    rk_attn_config cfgs[] = {
        { .kind = RK_PERFORMER, .n_q = 9, .n_kv = 9, .d = 4, .n_features = 6, .seed = 3,
          .rope = RK_ROPE_FEATURES, .causal = 1 },
        { .kind = RK_PERFORMER, .n_q = 9, .n_kv = 9, .d = 4, .n_features = 6, .seed = 3,
          .rope = RK_ROPE_QK, .proj = RK_PROJ_IID },
        { .kind = RK_LINEAR, .n_q = 9, .n_kv = 9, .d = 4, .rope = RK_ROPE_FEATURES },
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        long k;
        for (k = 0; k < 1000; k++) {
            rk_attn *p = NULL;
            rk__alloc_fail_after(k);
            int rc = rk_attn_create(&p, &cfgs[i]);
            rk__alloc_fail_after(-1);
            if (rc == RK_OK) {
                rk_attn_state *s = NULL;
                long j;
                for (j = 0; j < 100; j++) {
                    rk__alloc_fail_after(j);
                    int rs = rk_attn_state_create(&s, p);
                    rk__alloc_fail_after(-1);
                    if (rs == RK_OK) break;
                    assert_int_equal(rs, RK_ENOMEM);
                    assert_null(s);
                }
                assert_true(j > 0 && j < 100);
                rk_attn_state_destroy(s);
                rk_attn_destroy(p);
                break;
            }
            assert_int_equal(rc, RK_ENOMEM);
            assert_null(p);
        }
        assert_true(k > 5 && k < 1000);
    }
}

int main(void)
{
    gsl_set_error_handler_off();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eq19_regression),
        cmocka_unit_test(test_exact_small),
        cmocka_unit_test(test_exact_awkward),
        cmocka_unit_test(test_kv_len_nan),
        cmocka_unit_test(test_recurrent),
        cmocka_unit_test(test_relative_property),
        cmocka_unit_test(test_causal_bits),
        cmocka_unit_test(test_threads_and_seeds),
        cmocka_unit_test(test_portable_bits),
        cmocka_unit_test(test_stabiliser_range),
        cmocka_unit_test(test_no_eps_bias),
        cmocka_unit_test(test_zero_denominator),
        cmocka_unit_test(test_inputs_untouched),
        cmocka_unit_test(test_features_api),
        cmocka_unit_test(test_projection_io),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests_name("performer", tests, NULL, NULL);
}
