/* Gradients of FAVOR+ (RK_PERFORMER: positive, hyperbolic, trig) and linear attention
 * (RK_LINEAR: elu+1, relu), bidirectional and causal, rope none / qk / features (eq. 19), with
 * the checks of tests/grad_check.c: the double backward against central differences, float
 * against double, the same bits for 1 and 2 threads, padded and unseen keys holding NaN.
 * Shapes are awkward on purpose: odd n, n_q < n_kv and n_q > n_kv (causal rows that see
 * nothing), d_v != d, kv_len padding, the causal 64-row query chunks and the 256-row key
 * blocks (and bidirectional query chunks) crossed. Also: RoPE's relative property for eq. 19's
 * gradients, what holds for rope = qk instead, large-norm inputs that only the stabiliser keeps
 * in float range, the portable and AVX2 product kernels, the API. */
#include "grad_check.h"
#include "featmap.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gsl/gsl_randist.h>

void rk__perf_force_portable(int on); /* lib/performer.c test hook */

#define UF ((double)FLT_EPSILON)

typedef struct { rk_kind kind; rk_kernel kernel; rk_map map; const char *name; } fmap;
static const fmap MAPS[] = {
    { RK_PERFORMER, RK_KERNEL_POSITIVE, RK_MAP_ELU, "positive" },
    { RK_PERFORMER, RK_KERNEL_HYPERBOLIC, RK_MAP_ELU, "hyperbolic" },
    { RK_PERFORMER, RK_KERNEL_TRIG, RK_MAP_ELU, "trig" },
    { RK_LINEAR, RK_KERNEL_POSITIVE, RK_MAP_ELU, "elu+1" },
    { RK_LINEAR, RK_KERNEL_POSITIVE, RK_MAP_RELU, "relu" },
};
#define NMAPS (sizeof MAPS / sizeof MAPS[0])
static const rk_rope_mode ROPES[] = { RK_ROPE_NONE, RK_ROPE_QK, RK_ROPE_FEATURES };
static const char *const ROPE_NAME[] = { "none", "qk", "features" };

typedef struct { size_t nq, nkv, d, dv, m, kv_len; } shape;

static grad_case make_case(const fmap *fm, int rope, int causal, shape s, double sigma,
                           unsigned long seed)
{
    grad_case g;
    memset(&g, 0, sizeof g);
    g.cfg.kind = fm->kind;
    g.cfg.n_q = s.nq;
    g.cfg.n_kv = s.nkv;
    g.cfg.d = s.d;
    g.cfg.d_v = s.dv;
    g.cfg.causal = causal;
    g.cfg.rope = ROPES[rope];
    if (fm->kind == RK_PERFORMER) {
        g.cfg.kernel = fm->kernel;
        g.cfg.n_features = s.m;
        g.cfg.seed = 11 + seed;
    } else {
        g.cfg.map = fm->map;
    }
    g.kv_len = s.kv_len;
    g.sigma = sigma;
    g.seed = seed;
    return g;
}

static void name_case(char *buf, size_t len, const fmap *fm, int rope, int causal, const char *tag)
{
    snprintf(buf, len, "%s, rope %s, %s, %s", fm->name, ROPE_NAME[rope],
             causal ? "causal" : "bidirectional", tag);
}

/* Keys query i sees (bottom-right causal alignment, then the padding). */
static size_t visible(const rk_attn_config *c, size_t i, size_t kv_len)
{
    size_t lim = kv_len == RK_ALL_KEYS ? c->n_kv : kv_len;
    if (c->causal) {
        if (c->n_kv + i + 1 <= c->n_q) return 0;
        size_t last = c->n_kv + i + 1 - c->n_q;
        if (last < lim) lim = last;
    }
    return lim;
}

/* Unstabilised double features of the rows of x at positions pos0 + t as the denominator
 * (num = 0: phi(x), phi(R x) for rope = qk) or the numerator (num = 1: R phi(x) for eq. 19)
 * sees them. */
static rk_matd features(rk_attn *p, const rk_matd *x, int64_t pos0, int num)
{
    const rk_attn_config *c = rk_attn_get_config(p);
    size_t F = rk_attn_feature_dim(p);
    rk_matd phi = rk_test_matd(x->rows, F, F);
    int64_t *pos = malloc(x->rows * sizeof *pos);
    for (size_t t = 0; t < x->rows; t++) pos[t] = pos0 + (int64_t)t;
    int rotate = c->rope == RK_ROPE_QK || (num && c->rope == RK_ROPE_FEATURES);
    assert_rk_ok(rk_attn_features_d(p, x, rotate ? pos : NULL, &phi));
    free(pos);
    return phi;
}

/* |R^T y| (or |R y|) for y >= 0, elementwise, without knowing the angles: each rotated pair
 * (a, b) gets mscale (y_a + y_b); the channels past rotary_dim pass. */
static void rot_abs(const rk_rope *r, double *y, size_t n)
{
    const rk_rope_config *c = rk_rope_get_config(r);
    const double ms = rk_rope_mscale(r);
    const size_t rd = c->rotary_dim ? c->rotary_dim : n;
    for (size_t t = 0; t < rd / 2; t++) {
        size_t a = c->style == RK_ROPE_HALF ? t : 2 * t, b = c->style == RK_ROPE_HALF ? t + rd / 2 : 2 * t + 1;
        double s = ms * (y[a] + y[b]);
        y[a] = y[b] = s;
    }
}

/* o (d) = |J|^T y: |d phi_r / d x_c| bounded from phi and x (featmap.h's derivatives). */
static void jac_abs(const rk_attn_config *c, const double *wp, size_t m, const double *x,
                    const double *phi, const double *y, double *o)
{
    const size_t d = c->d;
    if (c->kind == RK_LINEAR) {
        for (size_t i = 0; i < d; i++)
            o[i] = x[i] > 0 ? y[i] : c->map == RK_MAP_ELU ? y[i] * fabs(phi[i]) : 0.0;
        return;
    }
    for (size_t i = 0; i < d; i++) o[i] = 0.0;
    for (size_t r = 0; r < m; r++) {
        double w_part, x_part;            /* coefficients of |W'_rc| and of scale |x_c| */
        if (c->kernel == RK_KERNEL_POSITIVE) {
            w_part = x_part = y[r] * fabs(phi[r]);
        } else if (c->kernel == RK_KERNEL_HYPERBOLIC) {
            w_part = x_part = y[r] * fabs(phi[r]) + y[m + r] * fabs(phi[m + r]);
        } else {
            w_part = y[r] * fabs(phi[m + r]) + y[m + r] * fabs(phi[r]);
            x_part = y[r] * fabs(phi[r]) + y[m + r] * fabs(phi[m + r]);
        }
        for (size_t i = 0; i < d; i++)
            o[i] += w_part * fabs(wp[r * d + i]) + x_part * c->scale * fabs(x[i]);
    }
}

/* First-order bounds, in units of K u_f, on the float path's error in every element of out,
 * dq, dk and dv (see f32_check), from the plan's unstabilised double features (the
 * stabiliser's constants cancel in every ratio here). A sum the float path forms carries at
 * most K u_f of the sum of the absolute values of its terms, and an error in a factor moves a
 * product by that error times the other factors; per query i, with Z_i = sum_j sum_r
 * |phi_r(q_i) phi_r(k_j)| and r_i = Z_i / |D_i| (D's relative error is r_i K u_f):
 *   out_i:       N^abs_i / |D_i| + |out_i| r_i           (N^abs = sum_j sum_r |a_r b_jr| |v_j|)
 *   e_i:         |g_i| . (err out_i) / |D_i| + e^abs_i (1 + r_i),   e^abs_i = |g_i| . |out_i| / |D_i|
 *   d a_i:       (1 + r_i) sum_j |b_j| (|g_i| . |v_j|) / |D_i|     (the sum and gh = g / D)
 *   d phi(q_i):  |R|(err d a_i) + (e^abs_i + err e_i) sum_j |phi(k_j)|
 * then the map's transposed Jacobian (|J|^T, bounded elementwise from phi and x) of the error
 * plus the terms themselves (J's own rounding), and |R| for rope = qk (|R| y: each rotated pair
 * gets mscale (y_a + y_b)). Keys: the same sums over the queries that see them (U_j v_j,
 * U_j^T b_j, W_j). These are the terms a gradient that is a small difference of large sums
 * (saturated attention, trig's cancelling denominators) is judged against. */
typedef struct { rk_matd out, dq, dk, dv; } bounds;

static bounds error_bounds(const grad_case *gc)
{
    const rk_attn_config *c = &gc->cfg;
    rk_attn *p = NULL;
    assert_rk_ok(rk_attn_create(&p, c));
    const rk_attn_config *pc = rk_attn_get_config(p);
    grad_data dd;
    grad_data_make(gc, &dd);
    const size_t nq = c->n_q, nkv = c->n_kv, d = c->d, dv = pc->d_v, F = rk_attn_feature_dim(p);
    const int64_t qp0 = pc->pos_offset + (int64_t)nkv - (int64_t)nq, kp0 = pc->pos_offset;
    rk_matd fq = features(p, &dd.q, qp0, 0), fk = features(p, &dd.k, kp0, 0);
    rk_matd aq = features(p, &dd.q, qp0, 1), bk = features(p, &dd.k, kp0, 1);
    rk_rope *rope = NULL;
    if (pc->rope != RK_ROPE_NONE) assert_rk_ok(rk_rope_create(&rope, &pc->rope_cfg));
    /* the rows the map sees (rope = qk: rotated) and W' = sqrt(scale) W */
    rk_matd qx = rk_test_matd(nq, d, d), kx = rk_test_matd(nkv, d, d);
    for (size_t i = 0; i < nq; i++) memcpy(qx.data + i * d, dd.q.data + i * dd.q.ld, d * sizeof(double));
    for (size_t j = 0; j < nkv; j++) memcpy(kx.data + j * d, dd.k.data + j * dd.k.ld, d * sizeof(double));
    if (pc->rope == RK_ROPE_QK) {
        assert_rk_ok(rk_rope_apply_d(rope, &qx, &qx, qp0, NULL, 0));
        assert_rk_ok(rk_rope_apply_d(rope, &kx, &kx, kp0, NULL, 0));
    }
    size_t m = 0, dw = 0;
    const float *w = rk_attn_proj(p, &m, &dw);
    double *wp = calloc(m * d + 1, sizeof *wp);
    for (size_t i = 0; i < m * d; i++) wp[i] = (double)w[i] * sqrt(pc->scale);
    bounds b = { rk_test_matd(nq, dv, dv), rk_test_matd(nq, d, d), rk_test_matd(nkv, d, d),
                 rk_test_matd(nkv, dv, dv) };
    double *aD = calloc(nq, sizeof *aD), *rr = calloc(nq, sizeof *rr);
    double *ea = calloc(nq, sizeof *ea), *ee = calloc(nq, sizeof *ee);
    double *oa = calloc(dv, sizeof *oa), *na = calloc(dv, sizeof *na);
    double *y1 = calloc(F, sizeof *y1), *y2 = calloc(F, sizeof *y2), *za = calloc(F, sizeof *za);
    double *o = calloc(d, sizeof *o);
    for (size_t i = 0; i < nq; i++) {
        const size_t L = visible(c, i, gc->kv_len);
        const double *g = dd.dout.data + i * dd.dout.ld, *pq = fq.data + i * fq.ld, *pa = aq.data + i * aq.ld;
        double D = 0.0, Z = 0.0;
        for (size_t c2 = 0; c2 < dv; c2++) oa[c2] = na[c2] = 0.0;
        for (size_t r = 0; r < F; r++) y1[r] = za[r] = 0.0;
        for (size_t j = 0; j < L; j++) {
            const double *pk = fk.data + j * fk.ld, *pb = bk.data + j * bk.ld, *v = dd.v.data + j * dd.v.ld;
            double wn = 0.0, wa = 0.0, gv = 0.0;
            for (size_t r = 0; r < F; r++) {
                D += pq[r] * pk[r];
                Z += fabs(pq[r] * pk[r]);
                wn += pa[r] * pb[r];
                wa += fabs(pa[r] * pb[r]);
                za[r] += fabs(pk[r]);
            }
            for (size_t c2 = 0; c2 < dv; c2++) {
                oa[c2] += wn * v[c2];
                na[c2] += wa * fabs(v[c2]);
                gv += fabs(g[c2] * v[c2]);
            }
            for (size_t r = 0; r < F; r++) y1[r] += fabs(pb[r]) * gv;
        }
        if (L == 0 || D == 0.0) continue;          /* exact zeros in both paths */
        aD[i] = fabs(D);
        rr[i] = Z / aD[i];
        double eerr = 0.0;
        for (size_t c2 = 0; c2 < dv; c2++) {
            double out = oa[c2] / D, err = na[c2] / aD[i] + fabs(out) * rr[i];
            b.out.data[i * b.out.ld + c2] = err + na[c2] / aD[i];
            ea[i] += fabs(g[c2] * out) / aD[i];
            eerr += fabs(g[c2]) * err / aD[i];
        }
        ee[i] = eerr + ea[i] * (1.0 + rr[i]);
        /* d phi(q_i): error and terms, then |J|^T and (qk) |R| */
        for (size_t r = 0; r < F; r++) { y1[r] /= aD[i]; y2[r] = (1.0 + rr[i]) * y1[r]; }
        if (pc->rope == RK_ROPE_FEATURES) { rot_abs(rope, y1, F); rot_abs(rope, y2, F); }
        for (size_t r = 0; r < F; r++) y1[r] += y2[r] + (2.0 * ea[i] + ee[i]) * za[r];
        jac_abs(pc, wp, m, qx.data + i * d, pq, y1, o);
        if (pc->rope == RK_ROPE_QK) rot_abs(rope, o, d);
        memcpy(b.dq.data + i * b.dq.ld, o, d * sizeof(double));
    }
    for (size_t j = 0; j < nkv; j++) {
        const double *pk = fk.data + j * fk.ld, *pb = bk.data + j * bk.ld, *v = dd.v.data + j * dd.v.ld;
        for (size_t r = 0; r < F; r++) y1[r] = za[r] = 0.0;
        for (size_t i = 0; i < nq; i++) {
            if (aD[i] == 0.0 || j >= visible(c, i, gc->kv_len)) continue;
            const double *g = dd.dout.data + i * dd.dout.ld, *pq = fq.data + i * fq.ld, *pa = aq.data + i * aq.ld;
            double gv = 0.0, wa = 0.0;
            for (size_t c2 = 0; c2 < dv; c2++) gv += fabs(g[c2] * v[c2]);
            for (size_t r = 0; r < F; r++) {
                y1[r] += (2.0 + rr[i]) * fabs(pa[r]) * gv / aD[i];      /* U_j v_j: terms + error */
                za[r] += (2.0 * ea[i] + ee[i]) * fabs(pq[r]);           /* W_j: terms + error     */
                wa += fabs(pa[r] * pb[r]);
            }
            for (size_t c2 = 0; c2 < dv; c2++)
                b.dv.data[j * b.dv.ld + c2] += (2.0 + rr[i]) * wa * fabs(g[c2]) / aD[i];
        }
        if (pc->rope == RK_ROPE_FEATURES) rot_abs(rope, y1, F);
        for (size_t r = 0; r < F; r++) y1[r] += za[r];
        jac_abs(pc, wp, m, kx.data + j * d, pk, y1, o);
        if (pc->rope == RK_ROPE_QK) rot_abs(rope, o, d);
        memcpy(b.dk.data + j * b.dk.ld, o, d * sizeof(double));
    }
    free(wp); free(aD); free(rr); free(ea); free(ee); free(oa); free(na);
    free(y1); free(y2); free(za); free(o);
    rk_test_freed(&qx); rk_test_freed(&kx);
    rk_test_freed(&fq); rk_test_freed(&fk); rk_test_freed(&aq); rk_test_freed(&bk);
    rk_rope_destroy(rope);
    grad_data_free(&dd);
    rk_attn_destroy(p);
    return b;
}
static void bounds_free(bounds *b)
{
    rk_test_freed(&b->out); rk_test_freed(&b->dq); rk_test_freed(&b->dk); rk_test_freed(&b->dv);
}

/* Double gradients at (q, k, v, dout). */
typedef struct { rk_matd dq, dk, dv; } dgrads;

static dgrads grads_at(const rk_attn_config *c, size_t kv_len, const rk_matd *q, const rk_matd *k,
                       const rk_matd *v, const rk_matd *dout)
{
    rk_attn *p = NULL;
    assert_rk_ok(rk_attn_create(&p, c));
    dgrads g = { rk_test_matd(c->n_q, c->d, c->d), rk_test_matd(c->n_kv, c->d, c->d),
                 rk_test_matd(c->n_kv, c->d_v, c->d_v) };
    rk_matd out = rk_test_matd(c->n_q, c->d_v, c->d_v);
    assert_rk_ok(rk_attn_forward_d(p, q, k, v, &out, kv_len, NULL));
    assert_rk_ok(rk_attn_backward_d(p, q, k, v, &out, NULL, dout, &g.dq, &g.dk, &g.dv, kv_len));
    rk_test_freed(&out);
    rk_attn_destroy(p);
    return g;
}
static void dgrads_free(dgrads *g) { rk_test_freed(&g->dq); rk_test_freed(&g->dk); rk_test_freed(&g->dv); }

static double max_diff_d(const rk_matd *a, const rk_matd *b)
{
    double x = 0.0;
    for (size_t i = 0; i < a->rows; i++)
        for (size_t j = 0; j < a->cols; j++)
            x = fmax(x, fabs(a->data[i * a->ld + j] - b->data[i * b->ld + j]));
    return x;
}
/* x (1 + eta s), s = +-1 at random */
static rk_matd perturbed(const rk_matd *x, gsl_rng *r, double eta)
{
    rk_matd y = rk_test_matd(x->rows, x->cols, x->ld);
    for (size_t i = 0; i < x->rows; i++)
        for (size_t j = 0; j < x->cols; j++)
            y.data[i * y.ld + j] = x->data[i * x->ld + j] * (1.0 + (gsl_rng_uniform(r) < 0.5 ? -eta : eta));
    return y;
}

/* Float against double, with the bound derived here. Every float number of the forward and
 * the backward comes out of chains of float fused multiply-adds (lib/gemm.c) of lengths d
 * (projection), F (features against states and each other), d_v (values), m (the map's
 * backward, t W') and B = min(256, max(n_q, n_kv)) (rows of one key block or query chunk; the
 * running states themselves are double), plus expf, sinf, cosf, divisions and the rotation (a
 * few units each, 16 in all). With K = d + F + d_v + m + B + 16, a chain of sums carries at
 * most K u_f of the sum of the absolute values of its terms (Higham's gamma_K; the stages'
 * bounds add up). So, to first order, element by element:
 *  - the sums: K u_f E, E from error_bounds above;
 *  - the operands of the feature maps (the projection u = W' x, exponents, phases) are
 *    rounded too, which is the exact map of inputs perturbed by K u_f relative: that moves
 *    the gradients by the map's sensitivity H = |g(x (1 + eta s)) - g(x)| / eta, measured in
 *    double along random signs s (the largest of 3 draws, eta = 2^-24), doubled for
 *    directions worse than random ones.
 *   |g_f - g_d| <= K u_f (E + 2 H)
 * checked for every element of out, dq, dk, dv here, and with the largest E through
 * grad_check_f32. Measured errors stay below a few percent of it. Returns the worst ratio. */
static double f32_worst;       /* the largest ratio so far, reported per test */
static void f32_report(const char *test)
{
    print_message("%s: float against double, worst error %.4f of the bound\n", test, f32_worst);
    f32_worst = 0.0;
}

static double f32_check(const grad_case *gc, const char *what)
{
    const rk_attn_config *c = &gc->cfg;
    rk_attn *p = NULL;
    assert_rk_ok(rk_attn_create(&p, c));
    const double F = (double)rk_attn_feature_dim(p);
    const double m = (double)rk_attn_get_config(p)->n_features;
    size_t B = c->n_q > c->n_kv ? c->n_q : c->n_kv;
    if (B > 256) B = 256;
    const double K = (double)c->d + F + (double)c->d_v + m + (double)B + 16.0;
    bounds eb = error_bounds(gc);
    grad_data d;
    grad_data_make(gc, &d);
    dgrads g0 = grads_at(c, gc->kv_len, &d.q, &d.k, &d.v, &d.dout);
    const double eta = 0x1p-24;
    gsl_rng *r = rk_test_rng(gc->seed + 1000);
    double H = 0.0;
    for (int t = 0; t < 3; t++) {
        rk_matd q = perturbed(&d.q, r, eta), k = perturbed(&d.k, r, eta), v = perturbed(&d.v, r, eta);
        dgrads g1 = grads_at(c, gc->kv_len, &q, &k, &v, &d.dout);
        H = fmax(H, fmax(fmax(max_diff_d(&g1.dq, &g0.dq), max_diff_d(&g1.dk, &g0.dk)),
                         max_diff_d(&g1.dv, &g0.dv)) / eta);
        dgrads_free(&g1);
        rk_test_freed(&q); rk_test_freed(&k); rk_test_freed(&v);
    }
    gsl_rng_free(r);
    /* element by element */
    rk_mat outf = rk_test_mat(c->n_q, c->d_v, c->d_v), dqf = rk_test_mat(c->n_q, c->d, c->d);
    rk_mat dkf = rk_test_mat(c->n_kv, c->d, c->d), dvf = rk_test_mat(c->n_kv, c->d_v, c->d_v);
    rk_matd outd = rk_test_matd(c->n_q, c->d_v, c->d_v);
    assert_rk_ok(rk_attn_execute_d(p, &d.q, &d.k, &d.v, &outd, gc->kv_len));
    assert_rk_ok(rk_attn_forward(p, &d.qf, &d.kf, &d.vf, &outf, gc->kv_len, NULL));
    assert_rk_ok(rk_attn_backward(p, &d.qf, &d.kf, &d.vf, &outf, NULL, &d.doutf, &dqf, &dkf, &dvf,
                                  gc->kv_len));
    const rk_mat *gf[4] = { &outf, &dqf, &dkf, &dvf };
    const rk_matd *gd[4] = { &outd, &g0.dq, &g0.dk, &g0.dv }, *be[4] = { &eb.out, &eb.dq, &eb.dk, &eb.dv };
    static const char *const nm[4] = { "out", "dq", "dk", "dv" };
    double worst = 0.0, emax = 0.0;
    for (int t = 0; t < 4; t++)
        for (size_t i = 0; i < gf[t]->rows; i++)
            for (size_t j = 0; j < gf[t]->cols; j++) {
                double a = gf[t]->data[i * gf[t]->ld + j], bd = gd[t]->data[i * gd[t]->ld + j];
                double e = be[t]->data[i * be[t]->ld + j], tol = K * UF * (e + 2.0 * H);
                emax = fmax(emax, e);
                if (!(fabs(a - bd) <= tol))
                    fail_msg("%s: float %s[%zu][%zu] = %.9g, double %.17g: |diff| %.3g > K u_f (E + 2 H) "
                             "= %.3g (K = %g, E = %.3g, H = %.3g)", what, nm[t], i, j, a, bd,
                             fabs(a - bd), tol, K, e, H);
                if (tol > 0.0) worst = fmax(worst, fabs(a - bd) / tol);
            }
    (void)grad_check_f32(gc, what, 0.0, K * UF * (emax + 2.0 * H));
    if (worst > f32_worst) f32_worst = worst;
    rk_test_free(&outf); rk_test_free(&dqf); rk_test_free(&dkf); rk_test_free(&dvf);
    rk_test_freed(&outd);
    dgrads_free(&g0);
    bounds_free(&eb);
    grad_data_free(&d);
    rk_attn_destroy(p);
    return worst;
}

/* ---- the feature maps' backward (featmap.h) ----------------------------------------------------- */

/* dL/dx of L = dphi . phi_c(x) with the constant c held fixed, for every map, against central
 * differences (h = cbrt(u_d) max(1, |x|): error ~ h^2 |L'''| + u_d |L| / h, both < 1e-9 here
 * for |x| < 3, so 1e-8 of the scale); the float rows against the double ones (sums of m terms
 * of float products and the operands' own rounding: 8 (m + d) u_f of the scale). */
static void test_featmap_backward(void **state)
{
    (void)state;
    const size_t d = 5, m = 7;
    for (size_t f = 0; f < NMAPS; f++) {
        rk_attn_config c;
        memset(&c, 0, sizeof c);
        c.kind = MAPS[f].kind;
        c.n_q = c.n_kv = 1;
        c.d = d;
        c.seed = 3;
        c.kernel = MAPS[f].kernel;
        c.map = MAPS[f].map;
        const int favor = MAPS[f].kind == RK_PERFORMER;
        if (favor) {
            c.n_features = m;
            c.scale = 0.6;
        }
        size_t F = 0, bytes = 0;
        assert_rk_ok(rk__featmap_resolve(&c, favor, "test", &F));
        rk__featmap fm;
        assert_rk_ok(rk__featmap_init(&fm, &c, favor, 1, 0, &bytes, "test"));
        assert_rk_ok(rk__featmap_init_grad(&fm, &bytes, "test"));
        gsl_rng *r = rk_test_rng(70 + f);
        double x[8], u[8], phi[16], dphi[16], t[8], dx[8];
        float xf[8], phif[16], dphif[16], tf[8];
        const double cst = favor ? 0.25 : 0.0;
        for (int trial = 0; trial < 4; trial++) {
            for (size_t i = 0; i < d; i++) x[i] = (double)(float)(0.9 * gsl_ran_gaussian_ziggurat(r, 1.0));
            for (size_t i = 0; i < F; i++) dphi[i] = (double)(float)gsl_ran_gaussian_ziggurat(r, 1.0);
            double h0;
            (void)rk__featmap_project_d(&fm, x, u, &h0);
            rk__featmap_row_d(&fm, u, h0, cst, phi);
            double s = rk__featmap_bwd_row_d(&fm, x, phi, dphi, t), scale = 1.0;
            for (size_t i = 0; i < d; i++) {
                dx[i] = favor ? s * x[i] : t[i];
                if (favor)
                    for (size_t k = 0; k < m; k++) dx[i] += fm.wsd[k * d + i] * t[k];
                scale = fmax(scale, fabs(dx[i]));
            }
            for (size_t i = 0; i < d; i++) {
                double x0 = x[i], hh = cbrt(DBL_EPSILON) * fmax(1.0, fabs(x0)), L[2];
                for (int sg = 0; sg < 2; sg++) {
                    x[i] = x0 + (sg ? -hh : hh);
                    double hx, ph[16];
                    (void)rk__featmap_project_d(&fm, x, u, &hx);
                    rk__featmap_row_d(&fm, u, hx, cst, ph);
                    L[sg] = 0.0;
                    for (size_t k = 0; k < F; k++) L[sg] += dphi[k] * ph[k];
                }
                x[i] = x0;
                double fd = (L[0] - L[1]) / (2.0 * hh);
                if (fabs(fd - dx[i]) > 1e-8 * scale)
                    fail_msg("%s: dx[%zu] = %.17g, central difference %.17g", MAPS[f].name, i, dx[i], fd);
            }
            /* float: the same row through the float backward */
            for (size_t i = 0; i < d; i++) xf[i] = (float)x[i];
            for (size_t i = 0; i < F; i++) { phif[i] = (float)phi[i]; dphif[i] = (float)dphi[i]; }
            double sf = rk__featmap_bwd_row_f(&fm, xf, phif, dphif, tf);
            for (size_t i = 0; i < d; i++) {
                double a = favor ? sf * (double)xf[i] : (double)tf[i];
                if (favor)
                    for (size_t k = 0; k < m; k++) a += (double)fm.wsf[k * d + i] * (double)tf[k];
                if (fabs(a - dx[i]) > 8.0 * (double)(m + d) * UF * scale)
                    fail_msg("%s: float dx[%zu] = %.9g, double %.17g", MAPS[f].name, i, a, dx[i]);
            }
        }
        gsl_rng_free(r);
        rk__featmap_free(&fm);
    }
}

/* ---- every map and rope mode, small shapes ------------------------------------------------- */

static void test_fd_small(void **state)
{
    (void)state;
    const shape shapes[] = {
        { 7, 9, 4, 3, 6, 8 },               /* n_q < n_kv, padding                        */
        { 9, 5, 2, 5, 4, RK_ALL_KEYS },     /* n_q > n_kv: causal rows 0..3 see nothing    */
    };
    for (size_t s = 0; s < 2; s++)
        for (size_t f = 0; f < NMAPS; f++)
            for (int r = 0; r < 3; r++)
                for (int causal = 0; causal < 2; causal++) {
                    grad_case g = make_case(&MAPS[f], r, causal, shapes[s], 0.7, 3 + f + 5 * s);
                    char what[128];
                    name_case(what, sizeof what, &MAPS[f], r, causal, s ? "9 x 5" : "7 x 9");
                    grad_check_fd(&g, what);
                    f32_check(&g, what);
                    grad_check_threads(&g, what);
                    grad_check_masks(&g, what);
                }
    f32_report("fd_small");
}

/* ---- chunk and block boundaries -------------------------------------------------------------- */

/* Every map x rope x causal once on one of these (rotating), all four checks. Central
 * differences cost (elements) x (forwards), so d is small where n is large. */
static void test_chunks(void **state)
{
    (void)state;
    const shape shapes[] = {
        { 70, 75, 2, 3, 4, 73 },            /* two 64-row chunks, n_q < n_kv, padding      */
        { 75, 70, 2, 1, 4, RK_ALL_KEYS },   /* n_q > n_kv                                   */
        { 130, 67, 2, 3, 4, 66 },           /* three chunks, the first sees nothing          */
        { 300, 280, 2, 1, 2, 279 },         /* query chunks (bidirectional) and key blocks of 256 */
        { 21, 300, 2, 1, 2, 297 },          /* causal too: 280 keys every query sees, two blocks */
    };
    size_t combo = 0;
    for (size_t f = 0; f < NMAPS; f++)
        for (int r = 0; r < 3; r++)
            for (int causal = 0; causal < 2; causal++, combo++) {
                size_t s = combo % 5;
                grad_case g = make_case(&MAPS[f], r, causal, shapes[s], 0.7, 20 + combo);
                char what[128], tag[48];
                snprintf(tag, sizeof tag, "%zu x %zu", shapes[s].nq, shapes[s].nkv);
                name_case(what, sizeof what, &MAPS[f], r, causal, tag);
                /* central differences everywhere but on 300 x 280 causal (five chunks of a
                 * slow forward each; the chunk logic is the 70 .. 130 shapes') */
                if (!(s == 3 && causal))
                    grad_check_fd(&g, what);
                f32_check(&g, what);
                grad_check_threads(&g, what);
                grad_check_masks(&g, what);
            }
    f32_report("chunks");
}

/* Widths that fill the AVX2 tiles (16 float / 8 double columns, 4-row tiles): float against
 * double, thread bits, masks, and the portable kernels giving the same bits. */
static void test_wide(void **state)
{
    (void)state;
    const shape sh = { 83, 97, 16, 12, 20, 95 };
    for (size_t f = 0; f < NMAPS; f++)
        for (int r = 0; r < 3; r++) {
            int causal = (int)((f + (size_t)r) % 2);
            grad_case g = make_case(&MAPS[f], r, causal, sh, 0.5, 40 + f);
            char what[128];
            name_case(what, sizeof what, &MAPS[f], r, causal, "wide");
            f32_check(&g, what);
            grad_check_threads(&g, what);
            grad_check_masks(&g, what);
            /* portable product and exp kernels: the same bits */
            grad_data d;
            grad_data_make(&g, &d);
            rk_attn *p1 = NULL, *p2 = NULL;
            assert_rk_ok(rk_attn_create(&p1, &g.cfg));
            rk__perf_force_portable(1);
            assert_rk_ok(rk_attn_create(&p2, &g.cfg));
            rk__perf_force_portable(0);
            rk_mat o = rk_test_mat(sh.nq, sh.dv, sh.dv), dq[2], dk[2], dv[2];
            rk_attn *ps[2] = { p1, p2 };
            for (int t = 0; t < 2; t++) {
                dq[t] = rk_test_mat(sh.nq, sh.d, sh.d);
                dk[t] = rk_test_mat(sh.nkv, sh.d, sh.d);
                dv[t] = rk_test_mat(sh.nkv, sh.dv, sh.dv);
                assert_rk_ok(rk_attn_forward(ps[t], &d.qf, &d.kf, &d.vf, &o, g.kv_len, NULL));
                assert_rk_ok(rk_attn_backward(ps[t], &d.qf, &d.kf, &d.vf, &o, NULL, &d.doutf,
                                              &dq[t], &dk[t], &dv[t], g.kv_len));
            }
            assert_memory_equal(dq[0].data, dq[1].data, sh.nq * sh.d * sizeof(float));
            assert_memory_equal(dk[0].data, dk[1].data, sh.nkv * sh.d * sizeof(float));
            assert_memory_equal(dv[0].data, dv[1].data, sh.nkv * sh.dv * sizeof(float));
            for (int t = 0; t < 2; t++) { rk_test_free(&dq[t]); rk_test_free(&dk[t]); rk_test_free(&dv[t]); }
            rk_test_free(&o);
            rk_attn_destroy(p1);
            rk_attn_destroy(p2);
            grad_data_free(&d);
        }
    f32_report("wide");
}

/* RoPE configurations beyond the default: partial rotary, half-split pairs, YaRN's attention
 * factor (the backward is m R^T, not the inverse rotation), theta over the head width. */
static void test_rope_configs(void **state)
{
    (void)state;
    const shape sh = { 11, 13, 6, 3, 6, 12 };
    for (int r = 1; r < 3; r++)
        for (size_t f = 0; f < NMAPS; f += 2) {
            grad_case g = make_case(&MAPS[f], r, (int)(f / 2) % 2, sh, 0.6, 60 + f);
            g.cfg.rope_cfg.style = RK_ROPE_HALF;
            g.cfg.rope_cfg.rotary_dim = 4;
            g.cfg.rope_cfg.scaling = RK_SCALE_YARN;
            g.cfg.rope_cfg.factor = 4;
            g.cfg.rope_cfg.orig_ctx = 4;
            g.cfg.pos_offset = 3;
            if (r == 2 && f == 0) g.cfg.rope_freq_dim_head = 1;
            char what[128];
            name_case(what, sizeof what, &MAPS[f], r, g.cfg.causal, "half, partial, yarn");
            grad_check_fd(&g, what);
            f32_check(&g, what);
        }
    f32_report("rope_configs");
}

/* ---- RoPE's relative property ----------------------------------------------------------------- */

/* Eq. 19: the numerator weight (R_m phi(q)) . (R_n phi(k)) = phi(q)^T R_{n-m} phi(k) depends on
 * positions only through n - m and the denominator not at all, so for any fixed projection
 * the output, and so every gradient, is unchanged when all positions shift: exact up to the
 * rounding of the angles (pos theta, formed in double: ~pos u_d) times the weights' condition.
 * Shifts inside the cos/sin table and past it (angle addition). */
static void test_shift_features(void **state)
{
    (void)state;
    const shape sh = { 70, 74, 4, 3, 6, 72 };
    for (size_t f = 0; f < NMAPS; f++)
        for (int causal = 0; causal < 2; causal++) {
            grad_case g = make_case(&MAPS[f], 2, causal, sh, 0.7, 80 + f);
            char what[128];
            name_case(what, sizeof what, &MAPS[f], 2, causal, "shift");
            grad_check_shift(&g, 1000, 1e-9, what);
            grad_check_shift(&g, 9000, 1e-9, what);
        }
}

/* rope = qk: phi(R_m q) . phi(R_n k) is not a function of n - m for a fixed projection W:
 * W^T R_m q depends on m itself (and elu+1 / relu act on the rotated coordinates). What holds:
 *  1. the chain rule through the rotation, exactly: the qk plan's gradients are m R^T of the
 *     gradients of the same plan without rope at pre-rotated inputs (R_m q, R_n k), dv equal;
 *  2. FAVOR+ only: iid or orthogonal (Haar) Gaussian rows have a law invariant under any
 *     rotation, and W R_s has the law of W, so the random gradients at pos_offset = s have the
 *     same distribution over draws as at 0. Their means over many draws agree within the
 *     sampling error (a paired test: the same seeds at both offsets), while one draw's
 *     gradients move by far more than rounding. */
static void test_qk(void **state)
{
    (void)state;
    const shape sh = { 13, 16, 4, 3, 8, 15 };
    for (size_t f = 0; f < NMAPS; f++)
        for (int causal = 0; causal < 2; causal++) {
            grad_case g = make_case(&MAPS[f], 1, causal, sh, 0.8, 90 + f);
            g.cfg.pos_offset = 5;
            char what[128];
            name_case(what, sizeof what, &MAPS[f], 1, causal, "chain rule");
            grad_data d;
            grad_data_make(&g, &d);
            rk_attn *p = NULL;
            assert_rk_ok(rk_attn_create(&p, &g.cfg));
            rk_rope *rope = NULL;
            assert_rk_ok(rk_rope_create(&rope, &rk_attn_get_config(p)->rope_cfg));
            rk_attn_destroy(p);
            const int64_t qp = g.cfg.pos_offset + (int64_t)sh.nkv - (int64_t)sh.nq;
            const int64_t kp = g.cfg.pos_offset;
            rk_matd rq = rk_test_matd(sh.nq, sh.d, sh.d), rkk = rk_test_matd(sh.nkv, sh.d, sh.d);
            assert_rk_ok(rk_rope_apply_d(rope, &d.q, &rq, qp, NULL, 0));
            assert_rk_ok(rk_rope_apply_d(rope, &d.k, &rkk, kp, NULL, 0));
            dgrads a = grads_at(&g.cfg, g.kv_len, &d.q, &d.k, &d.v, &d.dout);
            rk_attn_config none = g.cfg;
            none.rope = RK_ROPE_NONE;
            dgrads b = grads_at(&none, g.kv_len, &rq, &rkk, &d.v, &d.dout);
            assert_rk_ok(rk_rope_backward_d(rope, &b.dq, &b.dq, qp, NULL));
            assert_rk_ok(rk_rope_backward_d(rope, &b.dk, &b.dk, kp, NULL));
            /* the same operations in the same order up to the rotation's rounding */
            assert_matd_close(&a.dq, &b.dq, 1e-12, 1e-12);
            assert_matd_close(&a.dk, &b.dk, 1e-12, 1e-12);
            assert_matd_close(&a.dv, &b.dv, 1e-12, 1e-12);
            dgrads_free(&a);
            dgrads_free(&b);
            rk_test_freed(&rq);
            rk_test_freed(&rkk);
            rk_rope_destroy(rope);
            grad_data_free(&d);
        }

    /* 2. FAVOR+: the mean over draws does not move with a shift of every position */
    const size_t N = 400;
    const shape sm = { 5, 6, 4, 2, 8, RK_ALL_KEYS };
    for (size_t f = 0; f < 3; f++) {
        grad_case g = make_case(&MAPS[f], 1, 1, sm, 0.6, 7);
        grad_data d;
        grad_data_make(&g, &d);
        const size_t ne = sm.nq * sm.d + sm.nkv * sm.d + sm.nkv * sm.dv;
        double *s1 = calloc(ne, sizeof *s1), *s2 = calloc(ne, sizeof *s2), one = 0.0, scale = 0.0;
        for (size_t draw = 0; draw < N; draw++) {
            rk_attn_config c0 = g.cfg, c1 = g.cfg;
            c0.seed = c1.seed = 1000 + draw;
            c1.pos_offset = 37;
            dgrads a = grads_at(&c0, g.kv_len, &d.q, &d.k, &d.v, &d.dout);
            dgrads b = grads_at(&c1, g.kv_len, &d.q, &d.k, &d.v, &d.dout);
            const rk_matd *x[3] = { &a.dq, &a.dk, &a.dv }, *y[3] = { &b.dq, &b.dk, &b.dv };
            size_t e = 0;
            for (int t = 0; t < 3; t++)
                for (size_t i = 0; i < x[t]->rows; i++)
                    for (size_t j = 0; j < x[t]->cols; j++, e++) {
                        double u = x[t]->data[i * x[t]->ld + j], w = y[t]->data[i * y[t]->ld + j];
                        s1[e] += u - w;
                        s2[e] += (u - w) * (u - w);
                        if (draw == 0) { one = fmax(one, fabs(u - w)); scale = fmax(scale, fabs(u)); }
                    }
            dgrads_free(&a);
            dgrads_free(&b);
        }
        /* one draw: not invariant (so the mean test below has something to average) */
        if (!(one > 1e-3 * scale))
            fail_msg("%s qk: one draw's gradients moved by only %.3g (scale %.3g)", MAPS[f].name,
                     one, scale);
        /* paired means: |mean difference| <= 5 standard errors for every element (with
         * ~60 elements, a chance failure has probability < 1e-4; the seeds are fixed) */
        for (size_t e = 0; e < ne; e++) {
            double mean = s1[e] / (double)N, var = (s2[e] - N * mean * mean) / (double)(N - 1);
            double se = sqrt(fmax(var, 0.0) / (double)N);
            if (!(fabs(mean) <= 5.0 * se + 1e-12 * scale))
                fail_msg("%s qk: element %zu: mean shift difference %.3g > 5 standard errors (%.3g)",
                         MAPS[f].name, e, mean, se);
        }
        free(s1);
        free(s2);
        grad_data_free(&d);
    }
}

/* ---- the stabiliser ----------------------------------------------------------------------------- */

/* q, k ~ N(0, 4^2), d = 12, scale 1: |x|^2/2 is ~96. Unstabilised, a trig feature is
 * e^{|x|^2/2} (sin, cos) / sqrt(m): past FLT_MAX for some query rows (checked on the plan's own
 * double features), and a positive / hyperbolic feature exp(w.x - |x|^2/2) / sqrt(m) is
 * below FLT_MIN for every feature of some rows, so a float computation without the
 * stabiliser would give those rows inf / NaN or zero denominators. With it: double gradients
 * match central differences, float ones are finite and match double within the bound above,
 * causal (prefix-max constants across two chunks, the reverse state rescaled) and not. */
static void test_stabiliser(void **state)
{
    (void)state;
    const shape shs[2] = { { 20, 24, 12, 3, 12, 23 }, { 66, 66, 12, 2, 12, 65 } };
    for (size_t f = 0; f < 3; f++)
        for (int causal = 0; causal < 2; causal++) {
            int r = causal ? 2 : 0;
            const shape sh = shs[causal];
            grad_case g = make_case(&MAPS[f], r, causal, sh, 4.0, 100 + f);
            g.cfg.scale = 1.0;
            char what[128];
            name_case(what, sizeof what, &MAPS[f], r, causal, "sigma 4");
            /* the unstabilised features, in double */
            rk_attn *p = NULL;
            assert_rk_ok(rk_attn_create(&p, &g.cfg));
            grad_data d;
            grad_data_make(&g, &d);
            rk_matd fq = features(p, &d.q, 0, 0);
            size_t out_of_range = 0;
            for (size_t i = 0; i < sh.nq; i++) {
                double mx = 0.0;
                for (size_t c = 0; c < fq.cols; c++) mx = fmax(mx, fabs(fq.data[i * fq.ld + c]));
                if (MAPS[f].kernel == RK_KERNEL_TRIG ? mx > FLT_MAX : mx < FLT_MIN) out_of_range++;
            }
            print_message("%s: %zu of %zu query rows have every unstabilised feature %s float's range\n",
                          what, out_of_range, sh.nq, MAPS[f].kernel == RK_KERNEL_TRIG ? "above" : "below");
            assert_true(out_of_range > 0);
            rk_test_freed(&fq);
            grad_data_free(&d);
            rk_attn_destroy(p);
            grad_check_fd(&g, what);
            f32_check(&g, what);
        }
    f32_report("stabiliser");
}

/* ---- API ---------------------------------------------------------------------------------------- */

/* Nothing is saved (the backward recomputes features and keeps per-row numbers in the plan):
 * saved_len 0, saved may be NULL, the training forward is execute. */
static void test_api(void **state)
{
    (void)state;
    const shape sh = { 5, 6, 4, 3, 4, RK_ALL_KEYS };
    for (size_t f = 0; f < NMAPS; f += 3) {
        grad_case g = make_case(&MAPS[f], 2, 1, sh, 1.0, 1);
        rk_attn *p = NULL;
        assert_rk_ok(rk_attn_create(&p, &g.cfg));
        assert_int_equal(rk_attn_saved_len(p), 0);
        grad_data d;
        grad_data_make(&g, &d);
        rk_mat o1 = rk_test_mat(sh.nq, sh.dv, sh.dv), o2 = rk_test_mat(sh.nq, sh.dv, sh.dv);
        assert_rk_ok(rk_attn_execute(p, &d.qf, &d.kf, &d.vf, &o1, RK_ALL_KEYS));
        assert_rk_ok(rk_attn_forward(p, &d.qf, &d.kf, &d.vf, &o2, RK_ALL_KEYS, NULL));
        assert_memory_equal(o1.data, o2.data, sh.nq * sh.dv * sizeof(float));
        /* dq overlapping dk is refused before the kind runs */
        rk_mat g1 = rk_test_mat(sh.nkv, sh.d, sh.d), g2 = rk_test_mat(sh.nkv, sh.dv, sh.dv);
        rk_mat gq = rk_mat_sub(g1, 0, 0, sh.nq, sh.d);
        assert_rk_error(rk_attn_backward(p, &d.qf, &d.kf, &d.vf, &o1, NULL, &d.doutf, &gq, &g1,
                                         &g2, RK_ALL_KEYS), RK_EINVAL);
        /* kv_len = 0: no query sees a key; every gradient is zero, even with NaN in dout and
         * in every key and value */
        rk_mat dq = rk_test_mat(sh.nq, sh.d, sh.d), dk = rk_test_mat(sh.nkv, sh.d, sh.d);
        rk_mat dv = rk_test_mat(sh.nkv, sh.dv, sh.dv);
        for (size_t i = 0; i < sh.nq * sh.dv; i++) d.doutf.data[i / sh.dv * d.doutf.ld + i % sh.dv] = NAN;
        for (size_t i = 0; i < sh.nkv * sh.d; i++) d.kf.data[i / sh.d * d.kf.ld + i % sh.d] = NAN;
        for (size_t i = 0; i < sh.nkv * sh.dv; i++) d.vf.data[i / sh.dv * d.vf.ld + i % sh.dv] = NAN;
        assert_rk_ok(rk_attn_forward(p, &d.qf, &d.kf, &d.vf, &o1, 0, NULL));
        assert_rk_ok(rk_attn_backward(p, &d.qf, &d.kf, &d.vf, &o1, NULL, &d.doutf, &dq, &dk, &dv, 0));
        for (size_t i = 0; i < sh.nq * sh.d; i++) assert_true(dq.data[i] == 0.0f);
        for (size_t i = 0; i < sh.nkv * sh.d; i++) assert_true(dk.data[i] == 0.0f);
        for (size_t i = 0; i < sh.nkv * sh.dv; i++) assert_true(dv.data[i] == 0.0f);
        rk_test_free(&dq); rk_test_free(&dk); rk_test_free(&dv);
        rk_test_free(&o1); rk_test_free(&o2); rk_test_free(&g1); rk_test_free(&g2);
        grad_data_free(&d);
        rk_attn_destroy(p);
    }
}

/* The forward's causal masked product: a NaN or Inf value row reaches only the rows that see
 * it (rows of the same 64-row chunk before it must not turn NaN through 0 x NaN). */
static void test_forward_masked_nan(void **state)
{
    (void)state;
    static const rk_kind kinds[2] = { RK_LINEAR, RK_PERFORMER };
    static const rk_rope_mode ropes[3] = { RK_ROPE_NONE, RK_ROPE_QK, RK_ROPE_FEATURES };
    enum { N = 70, D = 4 };
    for (int t = 0; t < 2; t++)
        for (int r = 0; r < 3; r++) {
            rk_attn_config c = { .kind = kinds[t], .n_q = N, .n_kv = N, .d = D, .causal = 1,
                                 .rope = ropes[r], .seed = kinds[t] == RK_PERFORMER ? 5 : 0,
                                 .n_features = kinds[t] == RK_PERFORMER ? 8 : 0 };
            rk_attn *p;
            assert_rk_ok(rk_attn_create(&p, &c));
            gsl_rng *g = rk_test_rng(91);
            rk_matd q = rk_test_randnd(g, N, D, D, 1.0), v = rk_test_randnd(g, N, D, D, 1.0);
            gsl_rng_free(g);
            rk_mat qf = rk_test_mat(N, D, D), vf = rk_test_mat(N, D, D);
            const size_t bad = 6, bad2 = 67;             /* in chunk 0 and in chunk 1 */
            v.data[bad * D + 1] = NAN;
            v.data[bad2 * D + 2] = INFINITY;
            rk_test_d2f(&q, &qf);
            rk_test_d2f(&v, &vf);
            rk_matd o = rk_test_matd(N, D, D);
            rk_mat of = rk_test_mat(N, D, D);
            assert_rk_ok(rk_attn_execute_d(p, &q, &q, &v, &o, RK_ALL_KEYS));
            assert_rk_ok(rk_attn_execute(p, &qf, &qf, &vf, &of, RK_ALL_KEYS));
            for (size_t i = 0; i < bad; i++)
                for (size_t ch = 0; ch < D; ch++)
                    if (!isfinite(o.data[i * D + ch]) || !isfinite(of.data[i * D + ch]))
                        fail_msg("%s rope %d: row %zu, before the NaN value row %zu, is not finite",
                                 rk_attn_kind_name(kinds[t]), (int)ropes[r], i, bad);
            assert_true(isnan(o.data[bad * D + 1]) && isnan(of.data[bad * D + 1]));
            rk_test_freed(&q); rk_test_freed(&v); rk_test_freed(&o);
            rk_test_free(&qf); rk_test_free(&vf); rk_test_free(&of);
            rk_attn_destroy(p);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_masked_nan),
        cmocka_unit_test(test_featmap_backward),
        cmocka_unit_test(test_fd_small),
        cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_wide),
        cmocka_unit_test(test_rope_configs),
        cmocka_unit_test(test_shift_features),
        cmocka_unit_test(test_qk),
        cmocka_unit_test(test_stabiliser),
        cmocka_unit_test(test_api),
    };
    return cmocka_run_group_tests_name("grad_linear", tests, NULL, NULL);
}
