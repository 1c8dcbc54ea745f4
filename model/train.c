/* The trainer (see lm.h): one optimizer step is the batch of the step (a function of the seed
 * and the step number), forward, backward, global-norm clipping and AdamW. FAVOR+ layers draw a
 * new projection every `redraw` steps from lm_proj_seed(seed, layer, redraw count), so the
 * whole trajectory is a function of the configuration and the step: a checkpoint needs the
 * parameters, the AdamW moments, the step and the train-loss accumulator, nothing else. */
#include "lm_internal.h"

#include <math.h>
#include <string.h>

unsigned long lm_proj_seed(unsigned long seed, size_t layer, size_t index)
{
    uint64_t x = lm_mix64(lm_mix64(lm_mix64((uint64_t)seed ^ 0xFA7041ULL) + layer) + index);
    /* 32 bits: mt19937 (behind the library's draws) reads only the low 32 bits of a seed */
    unsigned long s = (unsigned long)((x ^ (x >> 32)) & 0xFFFFFFFFULL);
    return s ? s : 1;
}

static int draws_projection(const lm_layout *lay)
{
    return (rk_attn_fields(&lay->cfg.attn) & RK_FIELD_PROJ) != 0;
}

/* The projection seed of every layer for a redraw count. */
static void seeds_for(const lm_trainer *t, size_t index, unsigned long *seeds)
{
    for (size_t l = 0; l < t->lay.cfg.n_layers; l++)
        seeds[l] = lm_proj_seed(t->tc.seed, l, index);
}

static int set_redraw(lm_trainer *t, size_t index)
{
    if (!draws_projection(&t->lay) || index == t->redraw_index) return RK_OK;
    t->redraw_index = index;
    seeds_for(t, index, t->seeds);
    int rc = lm_run_set_seeds(t->run, t->seeds);
    if (!rc && t->eval_run) rc = lm_run_set_seeds(t->eval_run, t->seeds);
    return rc;
}

int lm__trainer_sync_redraw(lm_trainer *t)
{
    size_t idx = t->tc.redraw && t->step ? (t->step - 1) / t->tc.redraw : 0;
    return set_redraw(t, idx);
}

void lm_trainer_destroy(lm_trainer *t)
{
    if (!t) return;
    lm_run_destroy(t->run);
    lm_run_destroy(t->eval_run);
    rk__free(t->params);
    rk__free(t->grads);
    rk__free(t->m);
    rk__free(t->v);
    rk__free(t->seeds);
    rk__free(t->tokens);
    rk__free(t->targets);
    rk__free(t);
}

/* A training forward of the variant on zeros: RK_EUNSUP if it has no backward. */
static int probe_backward(lm_trainer *t)
{
    rk_attn_config a = t->lay.cfg.attn;
    a.n_q = a.n_kv = 4;
    a.d = a.d_v = t->lay.cfg.d_model / t->lay.cfg.n_heads;
    a.causal = 1;
    a.nthreads = 1;
    a.seed = 1;
    rk_attn *p = NULL;
    int rc = rk_attn_create(&p, &a);
    if (rc) return rk__fail(rc, "attention %s: %s", t->lay.cfg.attn_name, rk_last_error());
    size_t n = 4 * a.d, sl = rk_attn_saved_len(p);
    float *buf = rk__alloc((4 * n + sl + 1) * sizeof *buf);
    if (!buf) {
        rk_attn_destroy(p);
        RK_FAIL(RK_ENOMEM, "model: out of memory");
    }
    rk_mat q = rk_mat_view(buf, 4, a.d, a.d), k = rk_mat_view(buf + n, 4, a.d, a.d),
           v = rk_mat_view(buf + 2 * n, 4, a.d, a.d), o = rk_mat_view(buf + 3 * n, 4, a.d, a.d);
    rc = rk_attn_forward(p, &q, &k, &v, &o, RK_ALL_KEYS, buf + 4 * n);
    rk__free(buf);
    rk_attn_destroy(p);
    if (rc == RK_EUNSUP)
        RK_FAIL(RK_EUNSUP, "attention %s has no backward in this build: it cannot be trained",
                t->lay.cfg.attn_name);
    if (rc) return rk__fail(rc, "attention %s: %s", t->lay.cfg.attn_name, rk_last_error());
    return RK_OK;
}

static int check_data(const lm_data *d, size_t T)
{
    if (d->kind == LM_DATA_SHIFT) {
        if (d->shift >= T)
            RK_FAIL(RK_EINVAL, "shift task: the shift %zu must be below the context %zu", d->shift,
                    T);
        return RK_OK;
    }
    size_t nval = d->n - d->n_train;
    if (d->n_train < T + 1 || nval < T + 1)
        RK_FAIL(RK_EINVAL, "data %s: too short for the context %zu: the training part (first 90%%, "
                "%zu bytes) and the validation part (last 10%%, %zu bytes) each need at least "
                "%zu bytes", d->desc, T, d->n_train, nval, T + 1);
    return RK_OK;
}

int lm_trainer_create(lm_trainer **out, const lm_config *cfg, const lm_train_config *tc,
                      const lm_data *data, int nthreads)
{
    *out = NULL;
    if (tc->seed == 0) RK_FAIL(RK_EINVAL, "trainer: the seed must be >= 1");
    if (tc->batch == 0) RK_FAIL(RK_EINVAL, "trainer: the batch must be >= 1");
    if (tc->opt.steps == 0) RK_FAIL(RK_EINVAL, "trainer: the number of steps must be >= 1");
    if (!(tc->opt.lr > 0.0) || !(tc->opt.min_lr >= 0.0) || !(tc->opt.beta1 >= 0.0) ||
        !(tc->opt.beta1 < 1.0) || !(tc->opt.beta2 >= 0.0) || !(tc->opt.beta2 < 1.0) ||
        !(tc->opt.eps > 0.0) || !(tc->opt.weight_decay >= 0.0) || !(tc->opt.clip >= 0.0))
        RK_FAIL(RK_EINVAL, "trainer: optimizer settings out of range");
    if (nthreads < 1) RK_FAIL(RK_EINVAL, "trainer: nthreads must be >= 1");
    lm_trainer *t = rk__alloc(sizeof *t);
    if (!t) RK_FAIL(RK_ENOMEM, "trainer: out of memory");
    t->tc = *tc;
    t->data = data;
    t->nthreads = nthreads;
    t->redraw_index = 0;
    int rc = lm_layout_make(&t->lay, cfg);
    if (!rc) rc = check_data(data, t->lay.cfg.ctx);
    if (!rc) rc = probe_backward(t);
    if (rc) { lm_trainer_destroy(t); return rc; }
    const size_t n = t->lay.nparams, BT = tc->batch * t->lay.cfg.ctx;
    t->params = rk__alloc(n * sizeof(float));
    t->grads = rk__alloc(n * sizeof(float));
    t->m = rk__alloc(n * sizeof(float));
    t->v = rk__alloc(n * sizeof(float));
    t->seeds = rk__alloc(t->lay.cfg.n_layers * sizeof *t->seeds);
    t->tokens = rk__alloc(BT * sizeof *t->tokens);
    t->targets = rk__alloc(BT * sizeof *t->targets);
    if (!t->params || !t->grads || !t->m || !t->v || !t->seeds || !t->tokens || !t->targets) {
        lm_trainer_destroy(t);
        RK_FAIL(RK_ENOMEM, "trainer: cannot allocate %zu parameters with their gradients and "
                "moments", n);
    }
    seeds_for(t, 0, t->seeds);
    if ((rc = lm_init_params(&t->lay, tc->seed, t->params))) { lm_trainer_destroy(t); return rc; }
    lm_run_config rcfg = { .batch = tc->batch, .len = t->lay.cfg.ctx, .training = 1,
                           .nthreads = nthreads };
    if ((rc = lm_run_create(&t->run, &t->lay, &rcfg, t->seeds))) {
        lm_trainer_destroy(t);
        return rc;
    }
    *out = t;
    return RK_OK;
}

int lm_trainer_step(lm_trainer *t, double *loss)
{
    const size_t s = t->step + 1;               /* the step about to run, 1-based */
    if (s > t->tc.opt.steps)
        RK_FAIL(RK_EINVAL, "trainer: all %zu steps are done", t->tc.opt.steps);
    int rc;
    if (t->tc.redraw && (rc = set_redraw(t, (s - 1) / t->tc.redraw))) return rc;
    lm_data_train_batch(t->data, t->tc.seed, s - 1, t->tc.batch, t->lay.cfg.ctx, t->tokens,
                        t->targets);
    lm_loss l;
    if ((rc = lm_forward_f(t->run, t->params, t->tokens, t->targets, &l))) return rc;
    double mean = l.count ? l.sum / (double)l.count : 0.0;
    if (!isfinite(mean))
        RK_FAIL(RK_ENONFINITE, "training diverged at step %zu (loss %g): lower the learning rate",
                s, mean);
    if ((rc = lm_backward_f(t->run, t->params, t->grads))) return rc;
    double t0 = lm__now();
    t->last_norm = lm_adamw_step(t->nthreads, &t->tc.opt, &t->lay, s, t->params, t->grads, t->m,
                                 t->v);
    lm_run_timers(t->run)[LM_T_OPT] += lm__now() - t0;
    if (!isfinite(t->last_norm))
        RK_FAIL(RK_ENONFINITE, "training diverged at step %zu (gradient norm %g)", s,
                t->last_norm);
    t->step = s;
    t->loss_sum += mean;
    t->loss_n++;
    if (loss) *loss = mean;
    return RK_OK;
}

double lm_trainer_take_loss(lm_trainer *t)
{
    double m = t->loss_n ? t->loss_sum / (double)t->loss_n : NAN;
    t->loss_sum = 0.0;
    t->loss_n = 0;
    return m;
}

double *lm_trainer_timers(lm_trainer *t) { return lm_run_timers(t->run); }

int lm_trainer_eval(lm_trainer *t, size_t len, const lm_rope_scaling *scaling, size_t max_tokens,
                    size_t batch, lm_loss *out)
{
    lm_rope_scaling none = { 0 };
    if (!scaling) scaling = &none;
    lm_run_config rcfg = { .batch = batch, .len = len, .training = 0, .nthreads = t->nthreads,
                           .rope = *scaling };
    int rc;
    if (t->eval_run) {
        const lm_run_config *e = lm_run_get_config(t->eval_run);
        if (e->batch != batch || e->len != len || e->rope.scaling != scaling->scaling ||
            e->rope.factor != scaling->factor || e->rope.orig_ctx != scaling->orig_ctx) {
            lm_run_destroy(t->eval_run);
            t->eval_run = NULL;
        }
    }
    if (!t->eval_run && (rc = lm_run_create(&t->eval_run, &t->lay, &rcfg, t->seeds))) return rc;
    if ((rc = lm_run_set_seeds(t->eval_run, t->seeds))) return rc;
    if ((rc = check_data(t->data, len))) return rc;
    const size_t nwin = lm_data_val_windows(t->data, len, max_tokens), BT = batch * len;
    int32_t *tok = rk__alloc(2 * BT * sizeof *tok);
    if (!tok) RK_FAIL(RK_ENOMEM, "trainer: out of memory for an evaluation batch");
    int32_t *tgt = tok + BT;
    lm_loss acc = { 0 };
    for (size_t w0 = 0; w0 < nwin && !rc; w0 += batch) {
        lm_data_val_batch(t->data, len, w0, nwin, batch, tok, tgt);
        lm_loss l;
        rc = lm_forward_f(t->eval_run, t->params, tok, tgt, &l);
        if (rc) break;
        acc.sum += l.sum;
        acc.count += l.count;
        acc.correct += l.correct;
    }
    rk__free(tok);
    if (rc) return rc;
    *out = acc;
    return RK_OK;
}
