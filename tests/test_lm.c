/* The language model's layers and whole network (model/): every backward against central
 * finite differences of the double forward, with a tolerance derived from the step, a measured
 * third derivative and a rounding bound of the forward (printed on failure); the float32 path
 * against the double one; the same bits for 1 and 2 threads; the parameter layout and
 * initialisation; the optimizer and its schedule.
 *
 * Tolerance of a central difference with step h of a loss L computed with rounding error at
 * most epsL:  |fd - L'| <= h^2/6 |L'''| + epsL / h  (h = epsL^(1/3) max(1, |x|): the best step
 * when |L'''| ~ 1).  L''' is estimated from a third difference
 * (whose own rounding is <= 3 epsL / h^3), and the analytic gradient carries its own rounding
 * epsG; the check allows twice the sum (tests/grad_check.c uses the same rule). epsL is a
 * first-order bound: a sum of products of length n has relative error <= n u, and a network
 * of depth D compounds D such sums, so epsL = 16 D n_max u S with S the sum of |terms| of L. */
#include "check.h"
#include "../model/lm.h"
#include "../experiments/variant.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_errno.h>
#include <gsl/gsl_randist.h>

#define UD DBL_EPSILON
#define UF ((double)FLT_EPSILON)

static double *randv(gsl_rng *r, size_t n, double sd)
{
    double *x = malloc((n ? n : 1) * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) x[i] = gsl_ran_gaussian(r, sd);
    return x;
}

/* ---- the finite-difference check ------------------------------------------------------------ */
typedef double (*loss_fn)(void *ctx);

/* Check g[i] = dL/dx[i] for every i in idx (all of x when idx is NULL, n of them). Returns the
 * worst |g - fd| / tol. */
static double fd_check(const char *what, loss_fn L, void *ctx, double *x, const double *g,
                       const size_t *idx, size_t n, double epsL, double epsG)
{
    double worst = 0.0;
    for (size_t k = 0; k < n; k++) {
        size_t i = idx ? idx[k] : k;
        double x0 = x[i];
        /* h balances the two error terms for a third derivative of order 1 */
        volatile double xh = x0 + cbrt(fmax(epsL, UD)) * fmax(1.0, fabs(x0));
        double h = xh - x0, v[4];
        static const double off[4] = { 2.0, 1.0, -1.0, -2.0 };
        for (int s = 0; s < 4; s++) {
            x[i] = x0 + off[s] * h;
            v[s] = L(ctx);
        }
        x[i] = x0;
        double fd = (v[1] - v[2]) / (2.0 * h);
        double t3 = (v[0] - 2.0 * v[1] + 2.0 * v[2] - v[3]) / (2.0 * h * h * h);
        double m3 = fabs(t3) + 3.0 * epsL / (h * h * h);
        double tol = 2.0 * (h * h / 6.0 * m3 + epsL / h) + epsG;
        double err = fabs(g[i] - fd);
        if (getenv("LM_FD_DEBUG")) printf("    g %.3e fd %.3e err %.2e tol %.2e\n", g[i], fd, err, tol);
        if (err / tol > worst) worst = err / tol;
        if (!(err <= tol))
            fail_msg("%s: gradient[%zu] = %.17g, central difference %.17g: |diff| %.3g > tol %.3g "
                     "(h %.3g, third derivative ~ %.3g, epsL %.3g, epsG %.3g)", what, i, g[i], fd,
                     err, tol, h, t3, epsL, epsG);
    }
    return worst;
}

static double max_abs(const double *x, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

/* ---- layers: L = sum(dy .* y) for a fixed random dy ----------------------------------------- */
typedef struct {
    size_t N, C, OC;
    double *x, *w, *b, *y, *dy, *wt, *mean, *rstd;
    int kind;   /* 0 linear, 1 layernorm, 2 gelu, 3 embedding */
    int32_t *tok;
    double S;   /* sum |dy .* y| at the last evaluation */
} layer_ctx;

static double layer_loss(void *p)
{
    layer_ctx *c = p;
    size_t ny;
    switch (c->kind) {
    case 0:
        lm_linear_fwd_d(1, c->N, c->C, c->OC, c->x, c->w, c->b, c->y, c->wt);
        ny = c->N * c->OC;
        break;
    case 1:
        lm_layernorm_fwd_d(1, c->N, c->C, c->x, c->w, c->b, c->y, c->mean, c->rstd);
        ny = c->N * c->C;
        break;
    case 2:
        lm_gelu_fwd_d(1, c->N * c->C, c->x, c->y, NULL);
        ny = c->N * c->C;
        break;
    default:   /* embedding: x = wte (OC = V rows), b = pos (T = C rows... see test) */
        lm_embed_fwd_d(1, c->N, c->OC, c->C, c->tok, c->x, c->b, c->y);
        ny = c->N * c->OC * c->C;
        break;
    }
    double s = 0.0, a = 0.0;
    for (size_t i = 0; i < ny; i++) {
        s += c->dy[i] * c->y[i];
        a += fabs(c->dy[i] * c->y[i]);
    }
    c->S = a;
    return s;
}

static void test_linear(void **state)
{
    (void)state;
    gsl_rng *r = rk_test_rng(11);
    const size_t N = 7, C = 5, OC = 6;
    layer_ctx c = { .N = N, .C = C, .OC = OC, .kind = 0 };
    c.x = randv(r, N * C, 1.0);
    c.w = randv(r, OC * C, 0.7);
    c.b = randv(r, OC, 0.3);
    c.dy = randv(r, N * OC, 1.0);
    c.y = randv(r, N * OC, 1.0);
    c.wt = randv(r, OC * C, 1.0);
    double *dx = randv(r, N * C, 1.0), *dw = randv(r, OC * C, 1.0), *db = randv(r, OC, 1.0);
    lm_linear_bwd_d(1, N, C, OC, c.x, c.w, c.dy, dx, dw, db);
    layer_loss(&c);
    /* one product of length C per output, then the sum over outputs: D = 1, n = C + N OC */
    double epsL = 16.0 * (double)(C + N * OC) * UD * c.S;
    double G = fmax(fmax(max_abs(dx, N * C), max_abs(dw, OC * C)), max_abs(db, OC));
    double epsG = 16.0 * (double)(N + OC) * UD * G;
    fd_check("linear dx", layer_loss, &c, c.x, dx, NULL, N * C, epsL, epsG);
    fd_check("linear dw", layer_loss, &c, c.w, dw, NULL, OC * C, epsL, epsG);
    fd_check("linear db", layer_loss, &c, c.b, db, NULL, OC, epsL, epsG);
    /* without a bias, and without dx */
    free(c.b);
    c.b = NULL;
    double *dw2 = randv(r, OC * C, 1.0);
    lm_linear_bwd_d(1, N, C, OC, c.x, c.w, c.dy, NULL, dw2, NULL);
    assert_memory_equal(dw, dw2, OC * C * sizeof *dw);
    free(c.x); free(c.w); free(c.dy); free(c.y); free(c.wt); free(dx); free(dw); free(db); free(dw2);
    gsl_rng_free(r);
}

static void test_layernorm(void **state)
{
    (void)state;
    gsl_rng *r = rk_test_rng(12);
    const size_t N = 6, C = 9;
    layer_ctx c = { .N = N, .C = C, .kind = 1 };
    c.x = randv(r, N * C, 1.3);
    for (size_t i = 0; i < N * C; i++) c.x[i] += (double)(i % C) * 0.2;  /* nonzero means */
    c.w = randv(r, C, 0.5);
    for (size_t i = 0; i < C; i++) c.w[i] += 1.0;
    c.b = randv(r, C, 0.3);
    c.dy = randv(r, N * C, 1.0);
    c.y = randv(r, N * C, 1.0);
    c.mean = randv(r, N, 1.0);
    c.rstd = randv(r, N, 1.0);
    double *dx = calloc(N * C, sizeof *dx), *dw = randv(r, C, 1.0), *db = randv(r, C, 1.0);
    layer_loss(&c);
    lm_layernorm_bwd_d(1, N, C, c.x, c.w, c.mean, c.rstd, c.dy, dx, dw, db);
    /* dx accumulates: a second call adds the same again */
    double *dx2 = malloc(N * C * sizeof *dx2);
    memcpy(dx2, dx, N * C * sizeof *dx);
    lm_layernorm_bwd_d(1, N, C, c.x, c.w, c.mean, c.rstd, c.dy, dx2, dw, db);
    for (size_t i = 0; i < N * C; i++) assert_true(fabs(dx2[i] - 2.0 * dx[i]) <= 1e-14 * (1.0 + fabs(dx[i])));
    double epsL = 16.0 * 3.0 * (double)(C + N * C) * UD * c.S;
    double G = fmax(fmax(max_abs(dx, N * C), max_abs(dw, C)), max_abs(db, C));
    double epsG = 16.0 * (double)(N + 3 * C) * UD * G;
    fd_check("layernorm dx", layer_loss, &c, c.x, dx, NULL, N * C, epsL, epsG);
    fd_check("layernorm dw", layer_loss, &c, c.w, dw, NULL, C, epsL, epsG);
    fd_check("layernorm db", layer_loss, &c, c.b, db, NULL, C, epsL, epsG);
    free(c.x); free(c.w); free(c.b); free(c.dy); free(c.y); free(c.mean); free(c.rstd);
    free(dx); free(dx2); free(dw); free(db);
    gsl_rng_free(r);
}

static void test_gelu(void **state)
{
    (void)state;
    gsl_rng *r = rk_test_rng(13);
    const size_t N = 5, C = 8;
    layer_ctx c = { .N = N, .C = C, .kind = 2 };
    c.x = randv(r, N * C, 2.0);
    c.x[0] = 30.0;      /* the tails: sigma saturates to 1 and 0 */
    c.x[1] = -30.0;
    c.dy = randv(r, N * C, 1.0);
    c.y = randv(r, N * C, 1.0);
    double *dx = randv(r, N * C, 1.0), *dydx = randv(r, N * C, 1.0);
    lm_gelu_fwd_d(1, N * C, c.x, c.y, dydx);
    lm_gelu_bwd_d(1, N * C, dydx, c.dy, dx);
    layer_loss(&c);
    double epsL = 16.0 * (double)(8 + N * C) * UD * c.S;
    double epsG = 16.0 * 8.0 * UD * max_abs(dx, N * C);
    fd_check("gelu", layer_loss, &c, c.x, dx, NULL, N * C, epsL, epsG);
    /* the tanh form of GPT-2, and the derivative kept in place of x */
    double *xx = malloc(N * C * sizeof *xx), *y2 = malloc(N * C * sizeof *y2);
    memcpy(xx, c.x, N * C * sizeof *xx);
    lm_gelu_fwd_d(1, N * C, xx, y2, xx);
    for (size_t i = 0; i < N * C; i++) {
        double v = c.x[i], want = 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
        assert_true(fabs(y2[i] - want) <= 4 * UD * (1.0 + fabs(want)));
        assert_true(xx[i] == dydx[i]);
    }
    assert_true(y2[0] == 30.0 && y2[1] == 0.0 && dydx[0] == 1.0 && fabs(dydx[1]) < 1e-300);
    /* the float path against the double one: a few float units per element */
    float xf[40], yf[40], gf[40];
    for (size_t i = 0; i < N * C; i++) xf[i] = (float)c.x[i];
    lm_gelu_fwd_f(1, N * C, xf, yf, gf);
    for (size_t i = 0; i < N * C; i++) {
        double xd = xf[i], yd, gd;
        lm_gelu_fwd_d(1, 1, &xd, &yd, &gd);
        assert_true(fabs((double)yf[i] - yd) <= 16 * UF * (1.0 + fabs(yd)));
        assert_true(fabs((double)gf[i] - gd) <= 64 * UF * (1.0 + fabs(xd)));
    }
    free(c.x); free(c.dy); free(c.y); free(dx); free(dydx); free(xx); free(y2);
    gsl_rng_free(r);
}

static void test_embedding(void **state)
{
    (void)state;
    gsl_rng *r = rk_test_rng(14);
    const size_t B = 3, T = 4, C = 5, V = 7;
    int32_t tok[12] = { 1, 3, 3, 6, 0, 1, 1, 1, 5, 6, 2, 3 };
    layer_ctx c = { .N = B, .C = C, .OC = T, .kind = 3, .tok = tok };
    c.x = randv(r, V * C, 1.0);
    c.b = randv(r, T * C, 1.0);
    c.dy = randv(r, B * T * C, 1.0);
    c.y = randv(r, B * T * C, 1.0);
    double *dwte = randv(r, V * C, 1.0), *dpos = randv(r, T * C, 1.0);
    lm_embed_bwd_d(1, B, T, C, V, tok, c.dy, dwte, dpos);
    layer_loss(&c);
    double epsL = 16.0 * (double)(B * T * C) * UD * c.S, epsG = 16.0 * (double)(B * T) * UD * 4;
    fd_check("embedding dwte", layer_loss, &c, c.x, dwte, NULL, V * C, epsL, epsG);
    fd_check("embedding dpos", layer_loss, &c, c.b, dpos, NULL, T * C, epsL, epsG);
    /* token 4 never occurs: its row is exactly 0 */
    for (size_t j = 0; j < C; j++) assert_true(dwte[4 * C + j] == 0.0);
    free(c.x); free(c.b); free(c.dy); free(c.y); free(dwte); free(dpos);
    gsl_rng_free(r);
}

typedef struct {
    size_t N, V;
    double *logits, *probs, *nll;
    const int32_t *tg;
    double S;
} xent_ctx;

static double xent_loss(void *p)
{
    xent_ctx *c = p;
    memcpy(c->probs, c->logits, c->N * c->V * sizeof *c->probs);
    size_t count;
    lm_xent_fwd_d(1, c->N, c->V, c->probs, c->tg, c->nll, &count);
    double s = 0.0;
    for (size_t i = 0; i < c->N; i++) s += c->nll[i];
    c->S = s;
    return s / (double)count;
}

static void test_xent(void **state)
{
    (void)state;
    gsl_rng *r = rk_test_rng(15);
    const size_t N = 5, V = 11;
    const int32_t tg[5] = { 3, -1, 10, 0, 3 };
    xent_ctx c = { .N = N, .V = V, .tg = tg };
    c.logits = randv(r, N * V, 2.0);
    c.probs = randv(r, N * V, 1.0);
    c.nll = randv(r, N, 1.0);
    double L = xent_loss(&c);
    /* the loss by hand */
    double want = 0.0;
    for (size_t i = 0; i < N; i++) {
        if (tg[i] < 0) continue;
        double z = 0.0;
        for (size_t v = 0; v < V; v++) z += exp(c.logits[i * V + v]);
        want += log(z) - c.logits[i * V + (size_t)tg[i]];
    }
    assert_true(fabs(L - want / 4.0) <= 1e-14 * fabs(want));
    size_t count;
    memcpy(c.probs, c.logits, N * V * sizeof *c.probs);
    lm_xent_fwd_d(1, N, V, c.probs, tg, c.nll, &count);
    assert_int_equal(count, 4);
    lm_xent_bwd_d(1, N, V, c.probs, tg, 1.0 / (double)count);
    double *g = c.probs;
    c.probs = randv(r, N * V, 1.0);
    double epsL = 16.0 * (double)(V + N) * UD * c.S, epsG = 16.0 * (double)V * UD;
    fd_check("cross-entropy", xent_loss, &c, c.logits, g, NULL, N * V, epsL, epsG);
    for (size_t v = 0; v < V; v++) assert_true(g[V + v] == 0.0);   /* the ignored row */
    free(c.logits); free(c.probs); free(c.nll); free(g);
    gsl_rng_free(r);
}

/* ---- the whole network ---------------------------------------------------------------------- */
typedef struct {
    lm_layout lay;
    lm_run   *rd;
    double   *p;
    int32_t  *tok, *tgt;
    double    S;
} model_ctx;

static double model_loss(void *q)
{
    model_ctx *c = q;
    lm_loss l;
    assert_rk_ok(lm_forward_d(c->rd, c->p, c->tok, c->tgt, &l));
    c->S = l.sum;
    return l.sum / (double)l.count;
}

/* A tiny config of a variant; returns 0 if the variant has no backward in this build. */
static int tiny_config(lm_config *cfg, const char *vname, lm_pe pe, size_t T, size_t C,
                       size_t H, size_t L)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->ctx = T;
    cfg->d_model = C;
    cfg->n_heads = H;
    cfg->n_layers = L;
    cfg->d_ff = 2 * C;
    cfg->pe = pe;
    snprintf(cfg->attn_name, sizeof cfg->attn_name, "%s", vname);
    assert_int_equal(variant_config(vname, T, T, C / H, C / H, 1, 8, 1, &cfg->attn), 0);
    /* has it a backward? */
    rk_attn *p;
    rk_attn_config a = cfg->attn;
    assert_rk_ok(rk_attn_create(&p, &a));
    size_t n = T * a.d;
    float *buf = calloc(4 * n + rk_attn_saved_len(p) + 1, sizeof *buf);
    rk_mat q = rk_mat_view(buf, T, a.d, a.d), o = rk_mat_view(buf + 3 * n, T, a.d, a.d);
    int rc = rk_attn_forward(p, &q, &q, &q, &o, RK_ALL_KEYS, buf + 4 * n);
    free(buf);
    rk_attn_destroy(p);
    if (rc == RK_EUNSUP) {
        printf("  %s: no backward in this build, skipped\n", vname);
        return 0;
    }
    assert_rk_ok(rc);
    return 1;
}

static void fill_tokens(gsl_rng *r, size_t n, int32_t *tok, int32_t *tgt)
{
    for (size_t i = 0; i < n; i++) {
        tok[i] = (int32_t)gsl_rng_uniform_int(r, LM_VOCAB);
        tgt[i] = i % 5 == 3 ? -1 : (int32_t)gsl_rng_uniform_int(r, LM_VOCAB);
    }
}

/* Random parameters (not the GPT-2 init: larger, so every path carries signal), float-exact. */
static float *random_params(gsl_rng *r, const lm_layout *lay)
{
    float *p = malloc(lay->nparams * sizeof *p);
    assert_non_null(p);
    assert_rk_ok(lm_init_params(lay, 7, p));
    for (size_t i = 0; i < lay->nparams; i++) p[i] += (float)gsl_ran_gaussian(r, 0.3);
    return p;
}

static void model_fd(const char *vname, lm_pe pe, int check_f32)
{
    const size_t T = 6, C = 8, H = 2, L = 2, B = 2;
    lm_config cfg;
    if (!tiny_config(&cfg, vname, pe, T, C, H, L)) return;
    model_ctx c;
    assert_rk_ok(lm_layout_make(&c.lay, &cfg));
    gsl_rng *r = rk_test_rng(21);
    const size_t n = c.lay.nparams;
    float *pf = random_params(r, &c.lay);
    c.p = malloc(n * sizeof *c.p);
    for (size_t i = 0; i < n; i++) c.p[i] = pf[i];
    c.tok = malloc(2 * B * T * sizeof *c.tok);
    c.tgt = c.tok + B * T;
    fill_tokens(r, B * T, c.tok, c.tgt);
    unsigned long seeds[2] = { 5, 6 };
    lm_run_config rcd = { .batch = B, .len = T, .dbl = 1, .training = 1, .nthreads = 1 };
    assert_rk_ok(lm_run_create(&c.rd, &c.lay, &rcd, seeds));
    double *g = malloc(n * sizeof *g);
    lm_loss l;
    assert_rk_ok(lm_forward_d(c.rd, c.p, c.tok, c.tgt, &l));
    assert_rk_ok(lm_backward_d(c.rd, c.p, g));
    model_loss(&c);
    /* depth D = 4 L + 2 sums (LN, qkv, attention, projection per half-layer, the head), the
     * longest of them over max(C, F, T, V) terms */
    const double D = 4.0 * (double)L + 2.0, nmax = (double)LM_VOCAB;
    const double epsL = 16.0 * D * nmax * UD * c.S / (double)l.count;
    const double epsG = 16.0 * D * nmax * UD * max_abs(g, n);
    /* a sample of every tensor: its first, last and a few seeded elements */
    char what[128];
    double worst = 0.0;
    for (size_t t = 0; t < c.lay.ntensors; t++) {
        const lm_tensor *tn = &c.lay.tensors[t];
        size_t cnt = tn->rows * tn->cols, idx[6];
        idx[0] = tn->offset;
        idx[1] = tn->offset + cnt - 1;
        for (int k = 2; k < 6; k++) idx[k] = tn->offset + gsl_rng_uniform_int(r, cnt);
        if (tn->kind == LM_WTE)   /* rows of tokens in the batch (the others are 0) */
            for (int k = 0; k < 6; k++)
                idx[k] = tn->offset + (size_t)c.tok[gsl_rng_uniform_int(r, B * T)] * C +
                         gsl_rng_uniform_int(r, C);
        snprintf(what, sizeof what, "%s pe=%s %s", vname, lm_pe_name(pe), tn->name);
        double w = fd_check(what, model_loss, &c, c.p, g, idx, 6, epsL, epsG);
        worst = fmax(worst, w);
    }
    printf("  %-24s pe=%-10s %zu params: worst |g - fd| / tol = %.3f\n", vname, lm_pe_name(pe),
           n, worst);
    if (check_f32) {
        /* float path vs double: each gradient is a chain of D sums of at most nmax products,
         * float rounding u_f each: |g_f - g_d| <= 8 D nmax u_f max|g| */
        lm_run *rf;
        lm_run_config rcf = rcd;
        rcf.dbl = 0;
        assert_rk_ok(lm_run_create(&rf, &c.lay, &rcf, seeds));
        float *gf = malloc(n * sizeof *gf);
        lm_loss lf;
        assert_rk_ok(lm_forward_f(rf, pf, c.tok, c.tgt, &lf));
        assert_rk_ok(lm_backward_f(rf, pf, gf));
        assert_true(fabs(lf.sum - l.sum) <= 8.0 * D * nmax * UF * l.sum);
        const double tol = 8.0 * D * nmax * UF * max_abs(g, n);
        for (size_t i = 0; i < n; i++)
            if (!(fabs((double)gf[i] - g[i]) <= tol))
                fail_msg("%s: float gradient[%zu] = %.9g, double %.17g (tol %.3g)", vname, i,
                         (double)gf[i], g[i], tol);
        free(gf);
        lm_run_destroy(rf);
    }
    lm_run_destroy(c.rd);
    free(g); free(c.p); free(pf); free(c.tok);
    gsl_rng_free(r);
}

static void test_model_fd_uniform(void **state)
{
    (void)state;
    model_fd("uniform", LM_PE_LEARNED, 1);
    model_fd("uniform", LM_PE_SINUSOIDAL, 0);
}

static void test_model_fd_softmax(void **state)
{
    (void)state;
    model_fd("softmax", LM_PE_LEARNED, 1);
    model_fd("softmax", LM_PE_NONE, 0);
    model_fd("softmax-rope", LM_PE_NONE, 1);
}

static void test_model_fd_performer(void **state)
{
    (void)state;
    model_fd("performer", LM_PE_LEARNED, 1);
    model_fd("performer-rope-qk", LM_PE_NONE, 1);
    model_fd("performer-rope-features", LM_PE_NONE, 1);
    model_fd("linear-elu", LM_PE_SINUSOIDAL, 1);
}

/* ---- threads -------------------------------------------------------------------------------- */
static void run_threads(const char *vname, lm_pe pe)
{
    /* large enough that every loop and product runs in parallel */
    const size_t T = 64, C = 64, H = 4, L = 2, B = 6;
    lm_config cfg;
    if (!tiny_config(&cfg, vname, pe, T, C, H, L)) return;
    lm_layout lay;
    assert_rk_ok(lm_layout_make(&lay, &cfg));
    gsl_rng *r = rk_test_rng(31);
    float *p = random_params(r, &lay);
    int32_t *tok = malloc(2 * B * T * sizeof *tok), *tgt = tok + B * T;
    fill_tokens(r, B * T, tok, tgt);
    float *g[2];
    double loss[2];
    unsigned long seeds[2] = { 9, 10 };
    for (int k = 0; k < 2; k++) {
        lm_run *run;
        lm_run_config rc = { .batch = B, .len = T, .training = 1, .nthreads = k + 1 };
        assert_rk_ok(lm_run_create(&run, &lay, &rc, seeds));
        lm_loss l;
        g[k] = malloc(lay.nparams * sizeof *g[k]);
        assert_rk_ok(lm_forward_f(run, p, tok, tgt, &l));
        assert_rk_ok(lm_backward_f(run, p, g[k]));
        loss[k] = l.sum;
        lm_run_destroy(run);
    }
    assert_memory_equal(&loss[0], &loss[1], sizeof loss[0]);
    assert_memory_equal(g[0], g[1], lay.nparams * sizeof *g[0]);
    free(g[0]); free(g[1]); free(p); free(tok);
    gsl_rng_free(r);
}

static void test_threads(void **state)
{
    (void)state;
    run_threads("softmax-rope", LM_PE_NONE);
    run_threads("performer-rope-qk", LM_PE_LEARNED);
    run_threads("uniform", LM_PE_SINUSOIDAL);
}

/* ---- layout, initialisation, errors --------------------------------------------------------- */
static void test_layout(void **state)
{
    (void)state;
    lm_config cfg;
    assert_true(tiny_config(&cfg, "softmax", LM_PE_LEARNED, 16, 12, 3, 2));
    cfg.d_ff = 0;
    lm_layout a, b;
    assert_rk_ok(lm_layout_make(&a, &cfg));
    assert_int_equal(a.cfg.d_ff, 48);
    const size_t C = 12, F = 48, V = LM_VOCAB;
    size_t per = 2 * C + 3 * C * C + 3 * C + C * C + C + 2 * C + F * C + F + C * F + C;
    assert_int_equal(a.nparams, V * C + 16 * C + 2 * per + 2 * C + V * C + V);
    assert_int_equal(a.ntensors, 2 + 24 + 4);
    assert_int_equal(lm_offset(&a, LM_WPE, 0), V * C);
    assert_string_equal(a.tensors[4].name, "h0.qkvw");
    /* without wpe: the shared tensors get the same initial values */
    cfg.pe = LM_PE_NONE;
    assert_rk_ok(lm_layout_make(&b, &cfg));
    assert_int_equal(lm_offset(&b, LM_WPE, 0), (size_t)-1);
    assert_int_equal(b.nparams, a.nparams - 16 * C);
    float *pa = malloc(a.nparams * sizeof *pa), *pb = malloc(b.nparams * sizeof *pb);
    assert_rk_ok(lm_init_params(&a, 3, pa));
    assert_rk_ok(lm_init_params(&b, 3, pb));
    assert_memory_equal(pa, pb, V * C * sizeof *pa);
    assert_memory_equal(pa + V * C + 16 * C, pb + V * C, (b.nparams - V * C) * sizeof *pa);
    /* GPT-2 init: LayerNorm weights 1, biases 0, weights with the right spread */
    size_t o = lm_offset(&a, LM_LN1W, 1);
    for (size_t i = 0; i < C; i++) assert_true(pa[o + i] == 1.0f);
    o = lm_offset(&a, LM_QKVB, 0);
    for (size_t i = 0; i < 3 * C; i++) assert_true(pa[o + i] == 0.0f);
    o = lm_offset(&a, LM_FCW, 0);
    double s2 = 0.0;
    for (size_t i = 0; i < F * C; i++) s2 += (double)pa[o + i] * pa[o + i];
    double sd = sqrt(s2 / (double)(F * C));
    /* 576 draws of N(0, 0.02^2): the sample sd is within 20% with overwhelming probability
     * (its relative sd is 1/sqrt(2 576) = 3%) */
    assert_true(fabs(sd - 0.02) < 0.2 * 0.02);
    free(pa); free(pb);
    /* errors */
    lm_config bad = cfg;
    bad.n_heads = 5;
    assert_rk_error(lm_layout_make(&a, &bad), RK_EINVAL);
    bad = cfg;
    bad.n_layers = 0;
    assert_rk_error(lm_layout_make(&a, &bad), RK_EINVAL);
    lm_run *run;
    lm_run_config rc = { .batch = 2, .len = 17, .training = 1, .nthreads = 1 };
    cfg.pe = LM_PE_LEARNED;
    assert_rk_ok(lm_layout_make(&a, &cfg));
    assert_rk_error(lm_run_create(&run, &a, &rc, NULL), RK_EINVAL);   /* 17 > 16 positions */
    rc.len = 4;
    assert_rk_ok(lm_run_create(&run, &a, &rc, NULL));
    int32_t tok[8] = { 0, 1, 2, 300, 4, 5, 6, 7 }, tgt[8] = { 0 };
    float *p = calloc(a.nparams, sizeof *p), *g = calloc(a.nparams, sizeof *g);
    lm_loss l;
    assert_rk_error(lm_forward_f(run, p, tok, tgt, &l), RK_EINVAL);   /* token 300 */
    assert_rk_error(lm_backward_f(run, p, g), RK_EINVAL);            /* no forward */
    double *pd = calloc(a.nparams, sizeof *pd);
    tok[3] = 3;
    assert_rk_error(lm_forward_d(run, pd, tok, tgt, &l), RK_EINVAL);  /* float run */
    free(p); free(g); free(pd);
    lm_run_destroy(run);
}

/* ---- optimizer ------------------------------------------------------------------------------ */
static void test_optimizer(void **state)
{
    (void)state;
    lm_adamw_config oc = { .lr = 1e-2, .min_lr = 1e-3, .warmup = 10, .steps = 110,
                           .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1,
                           .clip = 1.0 };
    assert_true(fabs(lm_lr_at(&oc, 1) - 1e-3) < 1e-15);
    assert_true(fabs(lm_lr_at(&oc, 10) - 1e-2) < 1e-15);
    assert_true(fabs(lm_lr_at(&oc, 60) - 5.5e-3) < 1e-15);   /* half way down the cosine */
    assert_true(fabs(lm_lr_at(&oc, 110) - 1e-3) < 1e-15);
    for (size_t t = 11; t < 110; t++) assert_true(lm_lr_at(&oc, t + 1) < lm_lr_at(&oc, t));
    /* AdamW against a double reference on a tiny layout */
    lm_config cfg;
    assert_true(tiny_config(&cfg, "uniform", LM_PE_NONE, 4, 4, 1, 1));
    lm_layout lay;
    assert_rk_ok(lm_layout_make(&lay, &cfg));
    const size_t n = lay.nparams;
    gsl_rng *r = rk_test_rng(41);
    float *p = malloc(n * sizeof *p), *g = malloc(n * sizeof *g), *m = calloc(n, sizeof *m),
          *v = calloc(n, sizeof *v);
    double *pr = malloc(n * sizeof *pr), *mr = calloc(n, sizeof *mr), *vr = calloc(n, sizeof *vr);
    for (size_t i = 0; i < n; i++) pr[i] = p[i] = (float)gsl_ran_gaussian(r, 1.0);
    for (size_t t = 1; t <= 3; t++) {
        double ss = 0.0;
        for (size_t i = 0; i < n; i++) {
            g[i] = (float)gsl_ran_gaussian(r, 0.05);
            ss += (double)g[i] * g[i];
        }
        double norm = lm_adamw_step(2, &oc, &lay, t, p, g, m, v);
        assert_true(fabs(norm - sqrt(ss)) <= 1e-12 * sqrt(ss));
        double sc = norm > oc.clip ? oc.clip / norm : 1.0, lr = lm_lr_at(&oc, t);
        for (size_t k = 0; k < lay.ntensors; k++) {
            const lm_tensor *tn = &lay.tensors[k];
            for (size_t i = tn->offset; i < tn->offset + tn->rows * tn->cols; i++) {
                double gg = g[i] * sc;
                mr[i] = 0.9 * mr[i] + 0.1 * gg;
                vr[i] = 0.95 * vr[i] + 0.05 * gg * gg;
                double mh = mr[i] / (1 - pow(0.9, (double)t)), vh = vr[i] / (1 - pow(0.95, (double)t));
                pr[i] -= lr * (mh / (sqrt(vh) + 1e-8) + (tn->decay ? 0.1 * pr[i] : 0.0));
            }
        }
    }
    /* float updates of size ~lr: a few float units of |p| */
    for (size_t i = 0; i < n; i++) assert_true(fabs((double)p[i] - pr[i]) <= 1e-6 * (1.0 + fabs(pr[i])));
    /* the gradient norm: the same bits for 1 and 2 threads over many chunks */
    float *big = malloc(100000 * sizeof *big);
    for (size_t i = 0; i < 100000; i++) big[i] = (float)gsl_ran_gaussian(r, 1.0);
    double n1 = lm_grad_norm(1, big, 100000), n2 = lm_grad_norm(2, big, 100000);
    assert_memory_equal(&n1, &n2, sizeof n1);
    free(big); free(p); free(g); free(m); free(v); free(pr); free(mr); free(vr);
    gsl_rng_free(r);
}

int main(void)
{
    gsl_set_error_handler_off();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_xent),
        cmocka_unit_test(test_model_fd_uniform),
        cmocka_unit_test(test_model_fd_softmax),
        cmocka_unit_test(test_model_fd_performer),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_optimizer),
    };
    return cmocka_run_group_tests_name("lm", tests, NULL, NULL);
}
