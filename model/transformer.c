/* The transformer: configuration, parameter layout and initialisation, the run workspace
 * (activations, attention plans), and the forward and backward passes (transformer_tmpl.h,
 * included once per precision). See lm.h for the architecture. */
#include "lm_internal.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

const char *lm_pe_name(lm_pe pe)
{
    switch (pe) {
    case LM_PE_NONE: return "none";
    case LM_PE_LEARNED: return "learned";
    case LM_PE_SINUSOIDAL: return "sinusoidal";
    }
    return "?";
}

static const char *const timer_names[LM_T_COUNT] = {
    "attn_fwd", "attn_bwd", "attn_proj", "mlp", "norm_embed", "head", "optimizer",
};
const char *lm_timer_name(lm_timer t) { return (unsigned)t < LM_T_COUNT ? timer_names[t] : "?"; }

/* The attention plan config of one layer: the template with the model's sizes. */
static rk_attn_config layer_attn(const lm_config *c, size_t len, unsigned long seed,
                                 const lm_rope_scaling *sc)
{
    rk_attn_config a = c->attn;
    a.n_q = a.n_kv = len;
    a.d = a.d_v = c->d_model / c->n_heads;
    a.causal = 1;
    a.nthreads = 1;
    a.batch = a.heads = a.kv_heads = 0;
    a.pos_offset = 0;
    a.seed = seed ? seed : 1;
    if (a.rope != RK_ROPE_NONE && sc && sc->scaling != RK_SCALE_NONE) {
        a.rope_cfg.scaling = sc->scaling;
        a.rope_cfg.factor = sc->factor;
        if (sc->scaling == RK_SCALE_YARN) a.rope_cfg.orig_ctx = sc->orig_ctx;
    }
    return a;
}

int lm_config_resolve(lm_config *c)
{
    if (c->ctx == 0) RK_FAIL(RK_EINVAL, "model: the context length must be at least 1");
    if (c->d_model == 0 || c->n_heads == 0)
        RK_FAIL(RK_EINVAL, "model: d_model and the number of heads must be at least 1");
    if (c->d_model % c->n_heads)
        RK_FAIL(RK_EINVAL, "model: d_model %zu is not a multiple of the %zu heads", c->d_model,
                c->n_heads);
    if (c->n_layers == 0 || c->n_layers > LM_MAX_LAYERS)
        RK_FAIL(RK_EINVAL, "model: %zu layers (1 .. %d)", c->n_layers, LM_MAX_LAYERS);
    if (c->d_ff == 0) c->d_ff = 4 * c->d_model;
    if ((unsigned)c->pe > LM_PE_SINUSOIDAL) RK_FAIL(RK_EINVAL, "model: unknown position encoding");
    if (c->attn.bias) RK_FAIL(RK_EINVAL, "model: attention with a relative bias is not supported");
    size_t big = c->d_ff > 3 * c->d_model ? c->d_ff : 3 * c->d_model;
    size_t t;
    if (rk__mul(big, c->ctx, &t) || rk__mul(t, LM_VOCAB, &t) || t > ((size_t)1 << 50))
        RK_FAIL(RK_EOVERFLOW, "model: sizes too large");
    rk_attn_config a = layer_attn(c, c->ctx, 1, NULL);
    int rc = rk_attn_resolve(&a, NULL);
    if (rc) return rk__fail(rc, "attention %s: %s", c->attn_name, rk_last_error());
    return RK_OK;
}

/* ---- layout and initialisation ------------------------------------------------------------ */

static int add_tensor(lm_layout *lay, lm_kind kind, int layer, size_t rows, size_t cols)
{
    static const char *const base[LM_NKINDS] = {
        "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "projw", "projb", "ln2w", "ln2b",
        "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb", "outw", "outb",
    };
    if (lay->ntensors == LM_MAX_TENSORS) RK_FAIL(RK_EINVAL, "model: too many tensors");
    lm_tensor *t = &lay->tensors[lay->ntensors++];
    if (layer >= 0) snprintf(t->name, sizeof t->name, "h%d.%s", layer, base[kind]);
    else snprintf(t->name, sizeof t->name, "%s", base[kind]);
    t->kind = kind;
    t->layer = layer;
    t->rows = rows;
    t->cols = cols;
    t->offset = lay->nparams;
    t->decay = rows > 1 && cols > 1;
    size_t n;
    if (rk__mul(rows, cols, &n) || rk__add(lay->nparams, n, &lay->nparams))
        RK_FAIL(RK_EOVERFLOW, "model: parameter count overflows");
    return RK_OK;
}

int lm_layout_make(lm_layout *lay, const lm_config *cfg)
{
    memset(lay, 0, sizeof *lay);
    lay->cfg = *cfg;
    int rc = lm_config_resolve(&lay->cfg);
    if (rc) return rc;
    const lm_config *c = &lay->cfg;
    const size_t V = LM_VOCAB, C = c->d_model, F = c->d_ff;
    if ((rc = add_tensor(lay, LM_WTE, -1, V, C))) return rc;
    if (c->pe == LM_PE_LEARNED && (rc = add_tensor(lay, LM_WPE, -1, c->ctx, C))) return rc;
    for (size_t l = 0; l < c->n_layers; l++) {
        int L = (int)l;
        if ((rc = add_tensor(lay, LM_LN1W, L, C, 1)) || (rc = add_tensor(lay, LM_LN1B, L, C, 1)) ||
            (rc = add_tensor(lay, LM_QKVW, L, 3 * C, C)) ||
            (rc = add_tensor(lay, LM_QKVB, L, 3 * C, 1)) ||
            (rc = add_tensor(lay, LM_PROJW, L, C, C)) || (rc = add_tensor(lay, LM_PROJB, L, C, 1)) ||
            (rc = add_tensor(lay, LM_LN2W, L, C, 1)) || (rc = add_tensor(lay, LM_LN2B, L, C, 1)) ||
            (rc = add_tensor(lay, LM_FCW, L, F, C)) || (rc = add_tensor(lay, LM_FCB, L, F, 1)) ||
            (rc = add_tensor(lay, LM_FCPROJW, L, C, F)) ||
            (rc = add_tensor(lay, LM_FCPROJB, L, C, 1)))
            return rc;
    }
    if ((rc = add_tensor(lay, LM_LNFW, -1, C, 1)) || (rc = add_tensor(lay, LM_LNFB, -1, C, 1)) ||
        (rc = add_tensor(lay, LM_OUTW, -1, V, C)) || (rc = add_tensor(lay, LM_OUTB, -1, V, 1)))
        return rc;
    return RK_OK;
}

size_t lm_offset(const lm_layout *lay, lm_kind kind, size_t layer)
{
    for (size_t i = 0; i < lay->ntensors; i++) {
        const lm_tensor *t = &lay->tensors[i];
        if (t->kind == kind && (t->layer < 0 || (size_t)t->layer == layer)) return t->offset;
    }
    return (size_t)-1;
}

int lm_init_params(const lm_layout *lay, unsigned long seed, float *params)
{
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!r) RK_FAIL(RK_ENOMEM, "model: cannot allocate a random number generator");
    const double resid = 0.02 / sqrt(2.0 * (double)lay->cfg.n_layers);
    for (size_t i = 0; i < lay->ntensors; i++) {
        const lm_tensor *t = &lay->tensors[i];
        float *p = params + t->offset;
        const size_t n = t->rows * t->cols;
        double sd;
        switch (t->kind) {
        case LM_LN1W: case LM_LN2W: case LM_LNFW:
            for (size_t j = 0; j < n; j++) p[j] = 1.0f;
            continue;
        case LM_QKVB: case LM_PROJB: case LM_FCB: case LM_FCPROJB: case LM_LN1B: case LM_LN2B:
        case LM_LNFB: case LM_OUTB:
            for (size_t j = 0; j < n; j++) p[j] = 0.0f;
            continue;
        case LM_WPE: sd = 0.01; break;
        case LM_PROJW: case LM_FCPROJW: sd = resid; break;
        default: sd = 0.02; break;
        }
        /* the tensor's own stream: (seed, kind, layer) */
        uint64_t key = lm_mix64((uint64_t)seed * 0x9E3779B97F4A7C15ULL ^
                                lm_mix64(((uint64_t)t->kind << 32) | (uint64_t)(t->layer + 1)));
        gsl_rng_set(r, (unsigned long)(key | 1u));
        for (size_t j = 0; j < n; j++) p[j] = (float)gsl_ran_gaussian_ziggurat(r, sd);
    }
    gsl_rng_free(r);
    return RK_OK;
}

/* ---- the run workspace -------------------------------------------------------------------- */

struct lm_run {
    const lm_layout *lay;
    lm_run_config    rc;
    size_t B, T, C, L, H, hs, F, V, BT;
    int    nt;
    size_t elt;                  /* sizeof(REAL)                                             */
    rk_attn **plans;             /* one per layer, for the whole batch of heads              */
    unsigned long *seeds;        /* per layer                                                */
    size_t saved_len;            /* per layer (every head)                                   */
    size_t lstride;              /* 1 in training runs (every layer keeps its activations);
                                    0 in inference runs (the layers share one set)           */
    /* activations (REAL) */
    void *res;                   /* (2L + 1) x (BT, C): res[2l] enters layer l, res[2l+1] after
                                    its attention, res[2l+2] after its MLP                   */
    void *ln1, *ln1_mean, *ln1_rstd, *qkv, *atty, *saved;
    void *ln2, *ln2_mean, *ln2_rstd, *fch, *fcg;
    void *lnf, *lnf_mean, *lnf_rstd, *probs;
    void *pos;                   /* (T, C) sinusoidal table (NULL otherwise)                  */
    /* backward scratch */
    void *dres, *dtmp, *dbig, *dthr, *wt;   /* dthr: dq, dk, dv planes (3, BT, C)        */
    double  *nll;                /* (BT)                                                      */
    int32_t *tokens, *targets;   /* the forward's, for the backward                          */
    size_t   count;              /* counted targets of the forward                           */
    int      have_fwd;
    double   timers[LM_T_COUNT];
    size_t   bytes;
};

const lm_run_config *lm_run_get_config(const lm_run *r) { return &r->rc; }
size_t lm_run_bytes(const lm_run *r) { return r->bytes; }
double *lm_run_timers(lm_run *r) { return r->timers; }

static void destroy_plans(lm_run *r)
{
    if (!r->plans) return;
    for (size_t i = 0; i < r->L; i++) {
        rk_attn_destroy(r->plans[i]);
        r->plans[i] = NULL;
    }
}

void lm_run_destroy(lm_run *r)
{
    if (!r) return;
    destroy_plans(r);
    rk__free(r->plans);
    rk__free(r->seeds);
    void *bufs[] = { r->res, r->ln1, r->ln1_mean, r->ln1_rstd, r->qkv, r->atty, r->saved,
                     r->ln2, r->ln2_mean, r->ln2_rstd, r->fch, r->fcg, r->lnf, r->lnf_mean,
                     r->lnf_rstd, r->probs, r->pos, r->dres, r->dtmp, r->dbig, r->dthr, r->wt,
                     r->nll, r->tokens, r->targets };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) rk__free(bufs[i]);
    rk__free(r);
}

static int make_plans(lm_run *r)
{
    destroy_plans(r);
    const lm_config *c = &r->lay->cfg;
    for (size_t l = 0; l < r->L; l++) {
        rk_attn_config a = layer_attn(c, r->T, r->seeds[l], &r->rc.rope);
        a.batch = r->B;
        a.heads = a.kv_heads = r->H;
        a.nthreads = r->nt;
        int rc = rk_attn_create(&r->plans[l], &a);
        if (rc) return rk__fail(rc, "attention %s (layer %zu): %s", c->attn_name, l,
                                rk_last_error());
    }
    r->saved_len = r->rc.training ? rk_attn_saved_len(r->plans[0]) : 0;
    return RK_OK;
}

int lm_run_set_seeds(lm_run *r, const unsigned long *seeds)
{
    int same = 1;
    for (size_t l = 0; l < r->L; l++) {
        unsigned long s = seeds ? seeds[l] : 1;
        same &= r->seeds[l] == s;
        r->seeds[l] = s;
    }
    if (same && r->plans[0]) return RK_OK;
    size_t before = r->saved_len;
    int rc = make_plans(r);
    if (!rc && r->saved_len != before)
        RK_FAIL(RK_EINVAL, "attention %s: the saved state changed size between draws",
                r->lay->cfg.attn_name);
    return rc;
}

/* n elements of elt bytes, counted in r->bytes. */
static void *take(lm_run *r, size_t n, size_t elt, int *rc)
{
    size_t b;
    if (*rc) return NULL;
    if (rk__mul(n ? n : 1, elt, &b)) {
        *rc = rk__fail(RK_EOVERFLOW, "model: workspace size overflows");
        return NULL;
    }
    void *p = rk__alloc(b);
    if (!p) {
        *rc = rk__fail(RK_ENOMEM, "model: cannot allocate %zu bytes of workspace", b);
        return NULL;
    }
    r->bytes += rk__alloc_size(b);
    return p;
}

int lm_run_create(lm_run **out, const lm_layout *lay, const lm_run_config *rc,
                  const unsigned long *seeds)
{
    *out = NULL;
    const lm_config *c = &lay->cfg;
    if (rc->batch == 0 || rc->len == 0) RK_FAIL(RK_EINVAL, "model: batch and length must be >= 1");
    if (c->pe == LM_PE_LEARNED && rc->len > c->ctx)
        RK_FAIL(RK_EINVAL, "model: length %zu exceeds the %zu learned positions", rc->len, c->ctx);
    if (rc->nthreads < 1) RK_FAIL(RK_EINVAL, "model: nthreads must be >= 1");
    lm_run *r = rk__alloc(sizeof *r);
    if (!r) RK_FAIL(RK_ENOMEM, "model: cannot allocate the run");
    r->lay = lay;
    r->rc = *rc;
    r->B = rc->batch;
    r->T = rc->len;
    r->C = c->d_model;
    r->L = c->n_layers;
    r->H = c->n_heads;
    r->hs = c->d_model / c->n_heads;
    r->F = c->d_ff;
    r->V = LM_VOCAB;
    r->nt = rc->nthreads;
    r->elt = rc->dbl ? sizeof(double) : sizeof(float);
    r->lstride = rc->training ? 1 : 0;
    int err = RK_OK;
    size_t BT = 0;
    if (rk__mul(r->B, r->T, &BT)) err = rk__fail(RK_EOVERFLOW, "model: batch x length overflows");
    r->BT = BT;
    const size_t C = r->C, F = r->F, L = r->L, E = r->elt, NL = r->lstride ? L : 1;
    r->bytes = rk__alloc_size(sizeof *r);
    r->plans = take(r, L, sizeof *r->plans, &err);
    r->seeds = take(r, L, sizeof *r->seeds, &err);
    if (err) { lm_run_destroy(r); return err; }
    for (size_t l = 0; l < L; l++) r->seeds[l] = seeds ? seeds[l] : 1;
    if ((err = make_plans(r))) { lm_run_destroy(r); return err; }
    r->res = take(r, (2 * L + 1) * BT * C, E, &err);
    r->ln1 = take(r, NL * BT * C, E, &err);
    r->ln1_mean = take(r, NL * BT, E, &err);
    r->ln1_rstd = take(r, NL * BT, E, &err);
    r->qkv = take(r, NL * BT * 3 * C, E, &err);
    r->atty = take(r, NL * BT * C, E, &err);
    r->saved = take(r, NL * r->saved_len, E, &err);
    r->ln2 = take(r, NL * BT * C, E, &err);
    r->ln2_mean = take(r, NL * BT, E, &err);
    r->ln2_rstd = take(r, NL * BT, E, &err);
    r->fch = take(r, NL * BT * F, E, &err);
    r->fcg = take(r, NL * BT * F, E, &err);
    r->lnf = take(r, BT * C, E, &err);
    r->lnf_mean = take(r, BT, E, &err);
    r->lnf_rstd = take(r, BT, E, &err);
    r->probs = take(r, BT * r->V, E, &err);
    r->nll = take(r, BT, sizeof(double), &err);
    r->tokens = take(r, BT, sizeof(int32_t), &err);
    r->targets = take(r, BT, sizeof(int32_t), &err);
    size_t wmax = F * C > r->V * C ? F * C : r->V * C;
    if (3 * C * C > wmax) wmax = 3 * C * C;
    r->wt = take(r, wmax, E, &err);
    if (rc->training) {
        size_t big = F > 3 * C ? F : 3 * C;
        r->dres = take(r, BT * C, E, &err);
        r->dtmp = take(r, BT * C, E, &err);
        r->dbig = take(r, BT * big, E, &err);
        r->dthr = take(r, 3 * BT * C, E, &err);
    }
    if (!err && c->pe == LM_PE_SINUSOIDAL) {
        r->pos = take(r, r->T * C, E, &err);
        if (!err) {
            if (rc->dbl) {
                rk_matd m = rk_matd_view(r->pos, r->T, C, C);
                err = rk_sinusoidal_add_d(&m, 0, 0.0);
            } else {
                rk_mat m = rk_mat_view(r->pos, r->T, C, C);
                err = rk_sinusoidal_add(&m, 0, 0.0);
            }
        }
    }
    if (err) { lm_run_destroy(r); return err; }
    *out = r;
    return RK_OK;
}

/* ---- forward and backward, per precision --------------------------------------------------- */

#define REAL float
#define S(f) f##_f
#define TENSOR rk_tensor
#define TVIEW rk_tensor_bnhd
#define ATTN_FWD rk_attn_forward_batch
#define ATTN_EXEC rk_attn_execute_batch
#define ATTN_BWD rk_attn_backward_batch
#define IS_DBL 0
#include "transformer_tmpl.h"
#undef REAL
#undef S
#undef TENSOR
#undef TVIEW
#undef ATTN_FWD
#undef ATTN_EXEC
#undef ATTN_BWD
#undef IS_DBL

#define REAL double
#define S(f) f##_d
#define TENSOR rk_tensord
#define TVIEW rk_tensord_bnhd
#define ATTN_FWD rk_attn_forward_batch_d
#define ATTN_EXEC rk_attn_execute_batch_d
#define ATTN_BWD rk_attn_backward_batch_d
#define IS_DBL 1
#include "transformer_tmpl.h"
#undef REAL
#undef S
#undef TENSOR
#undef TVIEW
#undef ATTN_FWD
#undef ATTN_EXEC
#undef ATTN_BWD
#undef IS_DBL
