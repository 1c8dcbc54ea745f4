/* The checks of tests/grad_check.h. */
#include "grad_check.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U_D DBL_EPSILON          /* 2^-52: the double unit (a bound twice the rounding unit) */

static rk_attn *plan_of(const grad_case *gc, int nthreads, int64_t pos_offset)
{
    rk_attn_config c = gc->cfg;
    c.nthreads = nthreads;
    c.pos_offset = pos_offset;
    rk_attn *p = NULL;
    int rc = rk_attn_create(&p, &c);
    if (rc) fail_msg("rk_attn_create: %s: %s", rk_strerror(rc), rk_last_error());
    return p;
}

static size_t dv_of(const rk_attn_config *c) { return c->d_v ? c->d_v : c->d; }

/* Float-representable data: drawn in double, rounded to float and back, so both paths see
 * the same values. */
void grad_data_make(const grad_case *gc, grad_data *d)
{
    const rk_attn_config *c = &gc->cfg;
    const size_t dv = dv_of(c);
    gsl_rng *r = rk_test_rng(gc->seed ? gc->seed : 1);
    double s = gc->sigma > 0 ? gc->sigma : 1.0;
    d->q = rk_test_randnd(r, c->n_q, c->d, c->d + 1, s);
    d->k = rk_test_randnd(r, c->n_kv, c->d, c->d + 2, s);
    d->v = rk_test_randnd(r, c->n_kv, dv, dv + 1, 1.0);
    d->dout = rk_test_randnd(r, c->n_q, dv, dv + 3, 1.0);
    gsl_rng_free(r);
    d->qf = rk_test_mat(c->n_q, c->d, c->d + 1);
    d->kf = rk_test_mat(c->n_kv, c->d, c->d + 2);
    d->vf = rk_test_mat(c->n_kv, dv, dv + 1);
    d->doutf = rk_test_mat(c->n_q, dv, dv + 3);
    rk_test_d2f(&d->q, &d->qf);
    rk_test_d2f(&d->k, &d->kf);
    rk_test_d2f(&d->v, &d->vf);
    rk_test_d2f(&d->dout, &d->doutf);
    rk_test_f2d(&d->qf, &d->q);
    rk_test_f2d(&d->kf, &d->k);
    rk_test_f2d(&d->vf, &d->v);
    rk_test_f2d(&d->doutf, &d->dout);
}

void grad_data_free(grad_data *d)
{
    rk_test_freed(&d->q); rk_test_freed(&d->k); rk_test_freed(&d->v); rk_test_freed(&d->dout);
    rk_test_free(&d->qf); rk_test_free(&d->kf); rk_test_free(&d->vf); rk_test_free(&d->doutf);
}

/* Gradients of one run, both precisions. */
typedef struct { rk_matd dq, dk, dv, out; rk_mat dqf, dkf, dvf, outf; } grads;

static void grads_alloc(const rk_attn_config *c, grads *g)
{
    const size_t dv = dv_of(c);
    g->dq = rk_test_matd(c->n_q, c->d, c->d + 1);
    g->dk = rk_test_matd(c->n_kv, c->d, c->d);
    g->dv = rk_test_matd(c->n_kv, dv, dv + 2);
    g->out = rk_test_matd(c->n_q, dv, dv);
    g->dqf = rk_test_mat(c->n_q, c->d, c->d + 1);
    g->dkf = rk_test_mat(c->n_kv, c->d, c->d);
    g->dvf = rk_test_mat(c->n_kv, dv, dv + 2);
    g->outf = rk_test_mat(c->n_q, dv, dv);
}

static void grads_free(grads *g)
{
    rk_test_freed(&g->dq); rk_test_freed(&g->dk); rk_test_freed(&g->dv); rk_test_freed(&g->out);
    rk_test_free(&g->dqf); rk_test_free(&g->dkf); rk_test_free(&g->dvf); rk_test_free(&g->outf);
}

#define OK(call) do { int rc_ = (call); \
        if (rc_) fail_msg("%s: %s: %s", #call, rk_strerror(rc_), rk_last_error()); } while (0)

/* Training forward and backward in double (and float when f32). */
static void run(rk_attn *p, const grad_case *gc, const grad_data *d, grads *g, int f32)
{
    size_t n = rk_attn_saved_len(p);
    double *sd = n ? malloc(n * sizeof *sd) : NULL;
    float *sf = n ? malloc(n * sizeof *sf) : NULL;
    OK(rk_attn_forward_d(p, &d->q, &d->k, &d->v, &g->out, gc->kv_len, sd));
    OK(rk_attn_backward_d(p, &d->q, &d->k, &d->v, &g->out, sd, &d->dout, &g->dq, &g->dk, &g->dv,
                          gc->kv_len));
    if (f32) {
        OK(rk_attn_forward(p, &d->qf, &d->kf, &d->vf, &g->outf, gc->kv_len, sf));
        OK(rk_attn_backward(p, &d->qf, &d->kf, &d->vf, &g->outf, sf, &d->doutf, &g->dqf,
                            &g->dkf, &g->dvf, gc->kv_len));
    }
    free(sd);
    free(sf);
}

/* L = sum(dout .* out) of the double forward, in a fixed order; *abs_sum = sum |dout .* out|. */
static double loss(rk_attn *p, const grad_case *gc, const grad_data *d, rk_matd *out,
                   double *abs_sum)
{
    OK(rk_attn_execute_d(p, &d->q, &d->k, &d->v, out, gc->kv_len));
    double s = 0.0, a = 0.0;
    for (size_t i = 0; i < out->rows; i++)
        for (size_t j = 0; j < out->cols; j++) {
            double t = d->dout.data[i * d->dout.ld + j] * out->data[i * out->ld + j];
            s += t;
            a += fabs(t);
        }
    if (abs_sum) *abs_sum = a;
    return s;
}

static double max_abs(const rk_matd *m)
{
    double x = 0.0;
    for (size_t i = 0; i < m->rows; i++)
        for (size_t j = 0; j < m->cols; j++) x = fmax(x, fabs(m->data[i * m->ld + j]));
    return x;
}

double grad_check_fd(const grad_case *gc, const char *what)
{
    const rk_attn_config *c = &gc->cfg;
    grad_data d;
    grad_data_make(gc, &d);
    rk_attn *p = plan_of(gc, 1, c->pos_offset);
    grads g;
    grads_alloc(c, &g);
    run(p, gc, &d, &g, 0);
    rk_matd out = rk_test_matd(c->n_q, dv_of(c), dv_of(c));
    double S;
    (void)loss(p, gc, &d, &out, &S);
    /* rounding of L: each output element is a ratio of sums over at most n_kv keys of terms
     * of d (and F) products; 16 (n_kv + d + d_v + F) units of each |dout .* out| term */
    const size_t F = rk_attn_get_info(p)->feature_dim;
    const double epsL = 16.0 * (double)(c->n_kv + c->d + dv_of(c) + F) * U_D * (S + 1e-300);
    const double G = fmax(fmax(max_abs(&g.dq), max_abs(&g.dk)), max_abs(&g.dv)) + 1.0;
    const double epsG = 16.0 * (double)(c->n_kv + c->n_q + c->d + dv_of(c) + F) * U_D * G;
    rk_matd *in[3] = { &d.q, &d.k, &d.v }, *an[3] = { &g.dq, &g.dk, &g.dv };
    static const char *const nm[3] = { "dq", "dk", "dv" };
    double worst = 0.0;
    for (int t = 0; t < 3; t++)
        for (size_t i = 0; i < in[t]->rows; i++)
            for (size_t j = 0; j < in[t]->cols; j++) {
                double *x = &in[t]->data[i * in[t]->ld + j], x0 = *x;
                volatile double xh = x0 + cbrt(U_D) * fmax(1.0, fabs(x0));
                double h = xh - x0;            /* exactly representable step */
                double L[4];
                static const double off[4] = { 2.0, 1.0, -1.0, -2.0 };
                for (int s = 0; s < 4; s++) {
                    *x = x0 + off[s] * h;
                    L[s] = loss(p, gc, &d, &out, NULL);
                }
                *x = x0;
                double fd = (L[1] - L[2]) / (2.0 * h);
                double t3 = (L[0] - 2.0 * L[1] + 2.0 * L[2] - L[3]) / (2.0 * h * h * h);
                /* |fd - L'| <= h^2/6 |L'''| + epsL/h; L''' estimated by t3 (whose own rounding
                 * is <= 6 epsL / (2 h^3)), doubled for the distance between the points */
                double m3 = fabs(t3) + 3.0 * epsL / (h * h * h);
                double tol = 2.0 * (h * h / 6.0 * m3 + epsL / h) + epsG;
                double a = an[t]->data[i * an[t]->ld + j], err = fabs(a - fd);
                if (err / tol > worst) worst = err / tol;
                if (!(err <= tol))
                    fail_msg("%s: %s[%zu][%zu] = %.17g, central difference %.17g: |diff| %.3g > "
                             "tol %.3g = 2 (h^2/6 M3 + epsL/h) + epsG with h = %.3g, M3 = %.3g "
                             "(third difference %.3g), epsL = %.3g, epsG = %.3g", what, nm[t], i,
                             j, a, fd, err, tol, h, m3, t3, epsL, epsG);
            }
    rk_test_freed(&out);
    grads_free(&g);
    rk_attn_destroy(p);
    grad_data_free(&d);
    return worst;
}

static double cmp_f32(const rk_mat *f, const rk_matd *dd, double rtol, double atol,
                      const char *what, const char *nm)
{
    double scale = max_abs(dd), worst = 0.0;
    for (size_t i = 0; i < f->rows; i++)
        for (size_t j = 0; j < f->cols; j++) {
            double a = f->data[i * f->ld + j], b = dd->data[i * dd->ld + j];
            double tol = rtol * scale + atol, err = fabs(a - b);
            if (err / tol > worst) worst = err / tol;
            if (!(err <= tol))
                fail_msg("%s: float %s[%zu][%zu] = %.9g, double %.17g: |diff| %.3g > %.3g "
                         "(rtol %.3g of max |%s| = %.3g, atol %.3g)", what, nm, i, j, a, b, err,
                         tol, rtol, nm, scale, atol);
        }
    return worst;
}

double grad_check_f32(const grad_case *gc, const char *what, double rtol, double atol)
{
    grad_data d;
    grad_data_make(gc, &d);
    rk_attn *p = plan_of(gc, 2, gc->cfg.pos_offset);
    grads g;
    grads_alloc(&gc->cfg, &g);
    run(p, gc, &d, &g, 1);
    double w = cmp_f32(&g.outf, &g.out, rtol, atol, what, "out");
    w = fmax(w, cmp_f32(&g.dqf, &g.dq, rtol, atol, what, "dq"));
    w = fmax(w, cmp_f32(&g.dkf, &g.dk, rtol, atol, what, "dk"));
    w = fmax(w, cmp_f32(&g.dvf, &g.dv, rtol, atol, what, "dv"));
    grads_free(&g);
    rk_attn_destroy(p);
    grad_data_free(&d);
    return w;
}

static int same_d(const rk_matd *a, const rk_matd *b)
{
    for (size_t i = 0; i < a->rows; i++)
        if (memcmp(a->data + i * a->ld, b->data + i * b->ld, a->cols * sizeof(double))) return 0;
    return 1;
}
static int same_f(const rk_mat *a, const rk_mat *b)
{
    for (size_t i = 0; i < a->rows; i++)
        if (memcmp(a->data + i * a->ld, b->data + i * b->ld, a->cols * sizeof(float))) return 0;
    return 1;
}

void grad_check_threads(const grad_case *gc, const char *what)
{
    grad_data d;
    grad_data_make(gc, &d);
    grads g1, g2;
    grads_alloc(&gc->cfg, &g1);
    grads_alloc(&gc->cfg, &g2);
    rk_attn *p1 = plan_of(gc, 1, gc->cfg.pos_offset), *p2 = plan_of(gc, 2, gc->cfg.pos_offset);
    run(p1, gc, &d, &g1, 1);
    run(p2, gc, &d, &g2, 1);
    if (!same_d(&g1.dq, &g2.dq) || !same_d(&g1.dk, &g2.dk) || !same_d(&g1.dv, &g2.dv))
        fail_msg("%s: double gradients differ between 1 and 2 threads", what);
    if (!same_f(&g1.dqf, &g2.dqf) || !same_f(&g1.dkf, &g2.dkf) || !same_f(&g1.dvf, &g2.dvf))
        fail_msg("%s: float gradients differ between 1 and 2 threads", what);
    rk_attn_destroy(p1);
    rk_attn_destroy(p2);
    grads_free(&g1);
    grads_free(&g2);
    grad_data_free(&d);
}

/* Keys query i sees, restated (bottom-right causal alignment, then padding). */
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

static void set_rows_nan(rk_matd *m, rk_mat *f, size_t r0, size_t r1)
{
    for (size_t i = r0; i < r1; i++)
        for (size_t j = 0; j < m->cols; j++) {
            m->data[i * m->ld + j] = NAN;
            f->data[i * f->ld + j] = NAN;
        }
}

static void expect_rows_same(const rk_matd *a, const rk_matd *b, const rk_mat *af,
                             const rk_mat *bf, size_t r0, size_t r1, const char *what,
                             const char *nm)
{
    for (size_t i = r0; i < r1; i++) {
        if (memcmp(a->data + i * a->ld, b->data + i * b->ld, a->cols * sizeof(double)))
            fail_msg("%s: double %s row %zu changed", what, nm, i);
        if (memcmp(af->data + i * af->ld, bf->data + i * bf->ld, af->cols * sizeof(float)))
            fail_msg("%s: float %s row %zu changed", what, nm, i);
    }
}

void grad_check_masks(const grad_case *gc, const char *what)
{
    const rk_attn_config *c = &gc->cfg;
    rk_attn *p = plan_of(gc, 2, c->pos_offset);
    grad_data d;
    grad_data_make(gc, &d);
    grads clean, dirty;
    grads_alloc(c, &clean);
    grads_alloc(c, &dirty);
    run(p, gc, &d, &clean, 1);
    const size_t kv = gc->kv_len == RK_ALL_KEYS ? c->n_kv : gc->kv_len;

    /* 1. padded keys hold NaN: nothing changes, they get zero gradients */
    if (kv < c->n_kv) {
        set_rows_nan(&d.k, &d.kf, kv, c->n_kv);
        set_rows_nan(&d.v, &d.vf, kv, c->n_kv);
        run(p, gc, &d, &dirty, 1);
        expect_rows_same(&clean.dq, &dirty.dq, &clean.dqf, &dirty.dqf, 0, c->n_q, what, "dq");
        expect_rows_same(&clean.dk, &dirty.dk, &clean.dkf, &dirty.dkf, 0, kv, what, "dk");
        expect_rows_same(&clean.dv, &dirty.dv, &clean.dvf, &dirty.dvf, 0, kv, what, "dv");
        for (size_t j = kv; j < c->n_kv; j++) {
            for (size_t ch = 0; ch < c->d; ch++)
                if (dirty.dk.data[j * dirty.dk.ld + ch] != 0.0 || dirty.dkf.data[j * dirty.dkf.ld + ch] != 0.0f)
                    fail_msg("%s: padded key %zu has a nonzero dk", what, j);
            for (size_t ch = 0; ch < dv_of(c); ch++)
                if (dirty.dv.data[j * dirty.dv.ld + ch] != 0.0 || dirty.dvf.data[j * dirty.dvf.ld + ch] != 0.0f)
                    fail_msg("%s: padded key %zu has a nonzero dv", what, j);
        }
        grad_data_free(&d);
        grad_data_make(gc, &d);
    }
    if (c->causal) {
        /* 2. rows that cannot see key j: NaN in their dout leaves dk_j, dv_j as they were */
        size_t j = kv / 2, i_end = 0;
        while (i_end < c->n_q && visible(c, i_end, gc->kv_len) <= j) i_end++;
        if (i_end > 0 && j < kv) {
            set_rows_nan(&d.dout, &d.doutf, 0, i_end);
            run(p, gc, &d, &dirty, 1);
            expect_rows_same(&clean.dk, &dirty.dk, &clean.dkf, &dirty.dkf, j, kv, what, "dk");
            expect_rows_same(&clean.dv, &dirty.dv, &clean.dvf, &dirty.dvf, j, kv, what, "dv");
            grad_data_free(&d);
            grad_data_make(gc, &d);
        }
        /* 3. keys after row i0's last visible one hold NaN: dq of rows <= i0 unchanged */
        size_t i0 = c->n_q / 2, vis = visible(c, i0, gc->kv_len);
        if (vis < kv) {
            set_rows_nan(&d.k, &d.kf, vis, c->n_kv);
            set_rows_nan(&d.v, &d.vf, vis, c->n_kv);
            run(p, gc, &d, &dirty, 1);
            expect_rows_same(&clean.dq, &dirty.dq, &clean.dqf, &dirty.dqf, 0, i0 + 1, what, "dq");
        }
    }
    grads_free(&clean);
    grads_free(&dirty);
    grad_data_free(&d);
    rk_attn_destroy(p);
}

void grad_check_shift(const grad_case *gc, int64_t shift, double rtol, const char *what)
{
    grad_data d;
    grad_data_make(gc, &d);
    grads a, b;
    grads_alloc(&gc->cfg, &a);
    grads_alloc(&gc->cfg, &b);
    rk_attn *p0 = plan_of(gc, 2, 0), *p1 = plan_of(gc, 2, shift);
    run(p0, gc, &d, &a, 0);
    run(p1, gc, &d, &b, 0);
    rk_matd *x[3] = { &a.dq, &a.dk, &a.dv }, *y[3] = { &b.dq, &b.dk, &b.dv };
    static const char *const nm[3] = { "dq", "dk", "dv" };
    for (int t = 0; t < 3; t++) {
        double scale = max_abs(x[t]) + 1e-300;
        for (size_t i = 0; i < x[t]->rows; i++)
            for (size_t j = 0; j < x[t]->cols; j++) {
                double e = fabs(x[t]->data[i * x[t]->ld + j] - y[t]->data[i * y[t]->ld + j]);
                if (!(e <= rtol * scale))
                    fail_msg("%s: %s[%zu][%zu] moves by %.3g (> %.3g of max %.3g) when every "
                             "position shifts by %lld", what, nm[t], i, j, e, rtol, scale,
                             (long long)shift);
            }
    }
    rk_attn_destroy(p0);
    rk_attn_destroy(p1);
    grads_free(&a);
    grads_free(&b);
    grad_data_free(&d);
}
