/* Forward and backward of the whole model in one precision (included by model/transformer.c
 * twice): REAL, S(f) (suffix), TENSOR / TVIEW (rk_tensor or rk_tensord, bnhd views), ATTN_FWD /
 * (the library's float or double entry points), IS_DBL.
 *
 * Shapes (B batch rows, T positions, C = d_model, H heads of hs, F = d_ff, V = 256, BT = B T):
 *   res   (2L+1, BT, C)  residual stream: res[2l] into layer l, res[2l+1] = res[2l] + attention,
 *                        res[2l+2] = res[2l+1] + MLP
 *   ln1, ln2 (BT, C), ln*_mean, ln*_rstd (BT)   per layer (training runs)
 *   qkv   (BT, 3C)       [q | k | v]; head h of row b: columns h hs .. of each third, ld 3C
 *   atty  (BT, C)        attention output, head h in columns h hs ..
 *   saved (saved_len)    what rk_attn_forward_batch keeps for the backward (every head)
 *   fch, fcg (BT, F)     MLP: gelu'(pre-activation) (training; the pre-activation itself in
 *                        inference runs) and gelu(pre-activation)
 *   probs (BT, V)        softmax of the logits (the backward turns it into dlogits) */

#define RP(p) ((REAL *)(p))

static int S(check_inputs)(const lm_run *r, const int32_t *tokens, const int32_t *targets)
{
    if (r->rc.dbl != IS_DBL)
        RK_FAIL(RK_EINVAL, "model: a %s run given to the %s path", r->rc.dbl ? "double" : "float",
                IS_DBL ? "double" : "float");
    for (size_t i = 0; i < r->BT; i++) {
        if (tokens[i] < 0 || tokens[i] >= (int32_t)r->V)
            RK_FAIL(RK_EINVAL, "model: token %ld at %zu is outside [0, %zu)", (long)tokens[i], i,
                    r->V);
        if (targets[i] >= (int32_t)r->V)
            RK_FAIL(RK_EINVAL, "model: target %ld at %zu is outside [0, %zu)", (long)targets[i], i,
                    r->V);
    }
    return RK_OK;
}

/* Views of the heads: q, k, v of (batch row b, head h) are columns h hs .. of the thirds of
 * qkv (B, T, 3C) (the bnhd layout with a row stride of 3C); out, dout in atty (B, T, C). */
static void S(qkv_views)(const lm_run *r, REAL *qkv, TENSOR *q, TENSOR *k, TENSOR *v)
{
    const size_t B = r->B, T = r->T, C = r->C, H = r->H, hs = r->hs;
    *q = TVIEW(qkv, B, H, T, hs);
    q->sb = T * 3 * C;
    q->sn = 3 * C;
    *k = *q;
    k->data = qkv + C;
    *v = *q;
    v->data = qkv + 2 * C;
}

/* Attention of layer l: every (batch row, head) of the layer in one call of the library's
 * batched entry (parallel inside, the same bits for any thread count). */
static int S(attn_fwd)(lm_run *r, size_t l, REAL *qkv, REAL *atty, REAL *saved)
{
    TENSOR q, k, v, o = TVIEW(atty, r->B, r->H, r->T, r->hs);
    S(qkv_views)(r, qkv, &q, &k, &v);
    int rc = r->rc.training ? ATTN_FWD(r->plans[l], &q, &k, &v, &o, NULL, saved)
                            : ATTN_EXEC(r->plans[l], &q, &k, &v, &o, NULL);
    if (rc) return rk__fail(rc, "attention %s (layer %zu): %s", r->lay->cfg.attn_name, l,
                            rk_last_error());
    return RK_OK;
}

/* Its backward: dq, dk, dv go to three (B, T, C) planes of dthr (the library wants gradients
 * that overlap nothing), then into the thirds of dqkv (BT, 3C). */
static int S(attn_bwd)(lm_run *r, size_t l, REAL *qkv, REAL *atty, const REAL *saved,
                       REAL *datty, REAL *dqkv)
{
    const size_t BT = r->BT, C = r->C;
    REAL *pq = RP(r->dthr), *pk = pq + BT * C, *pv = pk + BT * C;
    TENSOR q, k, v, o = TVIEW(atty, r->B, r->H, r->T, r->hs),
           dout = TVIEW(datty, r->B, r->H, r->T, r->hs), dq = TVIEW(pq, r->B, r->H, r->T, r->hs),
           dk = TVIEW(pk, r->B, r->H, r->T, r->hs), dv = TVIEW(pv, r->B, r->H, r->T, r->hs);
    S(qkv_views)(r, qkv, &q, &k, &v);
    int rc = ATTN_BWD(r->plans[l], &q, &k, &v, &o, saved, &dout, &dq, &dk, &dv, NULL);
    if (rc) return rk__fail(rc, "attention %s backward (layer %zu): %s", r->lay->cfg.attn_name, l,
                            rk_last_error());
    #pragma omp parallel for schedule(static) num_threads(r->nt) if (BT * C > LM_PAR_MIN)
    for (size_t i = 0; i < BT; i++) {
        REAL *row = dqkv + i * 3 * C;
        memcpy(row, pq + i * C, C * sizeof *row);
        memcpy(row + C, pk + i * C, C * sizeof *row);
        memcpy(row + 2 * C, pv + i * C, C * sizeof *row);
    }
    return RK_OK;
}

static void S(add_into)(int nt, size_t n, REAL *y, const REAL *x)
{
    #pragma omp parallel for schedule(static) num_threads(nt) if (n > LM_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

int S(lm_forward)(lm_run *r, const REAL *params, const int32_t *tokens, const int32_t *targets,
                  lm_loss *loss)
{
    int rc = S(check_inputs)(r, tokens, targets);
    if (rc) return rc;
    const lm_layout *lay = r->lay;
    const size_t B = r->B, T = r->T, C = r->C, F = r->F, V = r->V, BT = r->BT;
    const int nt = r->nt;
    double *tm = r->timers;
    r->have_fwd = 0;
    memcpy(r->tokens, tokens, BT * sizeof *tokens);
    memcpy(r->targets, targets, BT * sizeof *targets);
#define P(kind, l) (params + lm_offset(lay, (kind), (l)))

    double t0 = lm__now(), t1;
    REAL *res = RP(r->res);
    const REAL *pos = lay->cfg.pe == LM_PE_LEARNED ? P(LM_WPE, 0)
                    : lay->cfg.pe == LM_PE_SINUSOIDAL ? RP(r->pos) : NULL;
    S(lm_embed_fwd)(nt, B, T, C, tokens, P(LM_WTE, 0), pos, res);
    t1 = lm__now(); tm[LM_T_NORM] += t1 - t0; t0 = t1;

    for (size_t l = 0; l < r->L; l++) {
        const size_t ls = l * r->lstride;
        REAL *x = res + 2 * l * BT * C, *xm = x + BT * C, *xo = xm + BT * C;
        REAL *ln1 = RP(r->ln1) + ls * BT * C, *m1 = RP(r->ln1_mean) + ls * BT,
             *s1 = RP(r->ln1_rstd) + ls * BT, *qkv = RP(r->qkv) + ls * BT * 3 * C,
             *atty = RP(r->atty) + ls * BT * C,
             *saved = RP(r->saved) + ls * r->saved_len,
             *ln2 = RP(r->ln2) + ls * BT * C, *m2 = RP(r->ln2_mean) + ls * BT,
             *s2 = RP(r->ln2_rstd) + ls * BT, *fch = RP(r->fch) + ls * BT * F,
             *fcg = RP(r->fcg) + ls * BT * F;

        S(lm_layernorm_fwd)(nt, BT, C, x, P(LM_LN1W, l), P(LM_LN1B, l), ln1, m1, s1);
        t1 = lm__now(); tm[LM_T_NORM] += t1 - t0; t0 = t1;
        S(lm_linear_fwd)(nt, BT, C, 3 * C, ln1, P(LM_QKVW, l), P(LM_QKVB, l), qkv, RP(r->wt));
        t1 = lm__now(); tm[LM_T_ATTN_PROJ] += t1 - t0; t0 = t1;
        if ((rc = S(attn_fwd)(r, l, qkv, atty, saved))) return rc;
        t1 = lm__now(); tm[LM_T_ATTN_FWD] += t1 - t0; t0 = t1;
        S(lm_linear_fwd)(nt, BT, C, C, atty, P(LM_PROJW, l), P(LM_PROJB, l), xm, RP(r->wt));
        t1 = lm__now(); tm[LM_T_ATTN_PROJ] += t1 - t0; t0 = t1;
        S(add_into)(nt, BT * C, xm, x);
        S(lm_layernorm_fwd)(nt, BT, C, xm, P(LM_LN2W, l), P(LM_LN2B, l), ln2, m2, s2);
        t1 = lm__now(); tm[LM_T_NORM] += t1 - t0; t0 = t1;
        S(lm_linear_fwd)(nt, BT, C, F, ln2, P(LM_FCW, l), P(LM_FCB, l), fch, RP(r->wt));
        S(lm_gelu_fwd)(nt, BT * F, fch, fcg, r->rc.training ? fch : NULL);  /* fch: gelu' */
        S(lm_linear_fwd)(nt, BT, F, C, fcg, P(LM_FCPROJW, l), P(LM_FCPROJB, l), xo, RP(r->wt));
        t1 = lm__now(); tm[LM_T_MLP] += t1 - t0; t0 = t1;
        S(add_into)(nt, BT * C, xo, xm);
        t1 = lm__now(); tm[LM_T_NORM] += t1 - t0; t0 = t1;
    }
    REAL *xl = res + 2 * r->L * BT * C;
    S(lm_layernorm_fwd)(nt, BT, C, xl, P(LM_LNFW, 0), P(LM_LNFB, 0), RP(r->lnf), RP(r->lnf_mean),
                        RP(r->lnf_rstd));
    t1 = lm__now(); tm[LM_T_NORM] += t1 - t0; t0 = t1;
    S(lm_linear_fwd)(nt, BT, C, V, RP(r->lnf), P(LM_OUTW, 0), P(LM_OUTB, 0), RP(r->probs),
                     RP(r->wt));
    size_t count = 0;
    size_t correct = S(lm_xent_fwd)(nt, BT, V, RP(r->probs), targets, r->nll, &count);
    double sum = 0.0;
    for (size_t i = 0; i < BT; i++) sum += r->nll[i];   /* in order */
    t1 = lm__now(); tm[LM_T_HEAD] += t1 - t0;
    r->count = count;
    r->have_fwd = r->rc.training;
    if (loss) {
        loss->sum = sum;
        loss->count = count;
        loss->correct = correct;
    }
    return RK_OK;
}

int S(lm_backward)(lm_run *r, const REAL *params, REAL *grads)
{
    if (r->rc.dbl != IS_DBL)
        RK_FAIL(RK_EINVAL, "model: a %s run given to the %s path", r->rc.dbl ? "double" : "float",
                IS_DBL ? "double" : "float");
    if (!r->rc.training) RK_FAIL(RK_EINVAL, "model: backward on an inference run");
    if (!r->have_fwd) RK_FAIL(RK_EINVAL, "model: backward without a forward before it");
    r->have_fwd = 0;    /* the backward overwrites probs */
    const lm_layout *lay = r->lay;
    const size_t B = r->B, T = r->T, C = r->C, F = r->F, V = r->V, BT = r->BT;
    const int nt = r->nt;
    double *tm = r->timers;
    int rc;
#define G(kind, l) (grads + lm_offset(lay, (kind), (l)))
    REAL *dres = RP(r->dres), *dtmp = RP(r->dtmp), *dbig = RP(r->dbig), *res = RP(r->res);

    /* loss = sum nll / count */
    double t0 = lm__now(), t1;
    S(lm_xent_bwd)(nt, BT, V, RP(r->probs), r->targets, r->count ? 1.0 / (double)r->count : 0.0);
    S(lm_linear_bwd)(nt, BT, C, V, RP(r->lnf), P(LM_OUTW, 0), RP(r->probs), dtmp, G(LM_OUTW, 0),
                     G(LM_OUTB, 0));
    t1 = lm__now(); tm[LM_T_HEAD] += t1 - t0; t0 = t1;
    memset(dres, 0, BT * C * sizeof *dres);
    S(lm_layernorm_bwd)(nt, BT, C, res + 2 * r->L * BT * C, P(LM_LNFW, 0), RP(r->lnf_mean),
                        RP(r->lnf_rstd), dtmp, dres, G(LM_LNFW, 0), G(LM_LNFB, 0));
    t1 = lm__now(); tm[LM_T_NORM] += t1 - t0; t0 = t1;

    for (size_t l = r->L; l-- > 0;) {
        REAL *x = res + 2 * l * BT * C, *xm = x + BT * C;
        REAL *ln1 = RP(r->ln1) + l * BT * C, *m1 = RP(r->ln1_mean) + l * BT,
             *s1 = RP(r->ln1_rstd) + l * BT, *qkv = RP(r->qkv) + l * BT * 3 * C,
             *atty = RP(r->atty) + l * BT * C,
             *saved = RP(r->saved) + l * r->saved_len,
             *ln2 = RP(r->ln2) + l * BT * C, *m2 = RP(r->ln2_mean) + l * BT,
             *s2 = RP(r->ln2_rstd) + l * BT, *fch = RP(r->fch) + l * BT * F,
             *fcg = RP(r->fcg) + l * BT * F;
        /* dres holds d res[2l+2]; the MLP branch */
        S(lm_linear_bwd)(nt, BT, F, C, fcg, P(LM_FCPROJW, l), dres, dbig, G(LM_FCPROJW, l),
                         G(LM_FCPROJB, l));
        S(lm_gelu_bwd)(nt, BT * F, fch, dbig, dbig);
        S(lm_linear_bwd)(nt, BT, C, F, ln2, P(LM_FCW, l), dbig, dtmp, G(LM_FCW, l), G(LM_FCB, l));
        t1 = lm__now(); tm[LM_T_MLP] += t1 - t0; t0 = t1;
        S(lm_layernorm_bwd)(nt, BT, C, xm, P(LM_LN2W, l), m2, s2, dtmp, dres, G(LM_LN2W, l),
                            G(LM_LN2B, l));
        t1 = lm__now(); tm[LM_T_NORM] += t1 - t0; t0 = t1;
        /* dres holds d res[2l+1]; the attention branch */
        S(lm_linear_bwd)(nt, BT, C, C, atty, P(LM_PROJW, l), dres, dtmp, G(LM_PROJW, l),
                         G(LM_PROJB, l));
        t1 = lm__now(); tm[LM_T_ATTN_PROJ] += t1 - t0; t0 = t1;
        if ((rc = S(attn_bwd)(r, l, qkv, atty, saved, dtmp, dbig))) return rc;
        t1 = lm__now(); tm[LM_T_ATTN_BWD] += t1 - t0; t0 = t1;
        S(lm_linear_bwd)(nt, BT, C, 3 * C, ln1, P(LM_QKVW, l), dbig, dtmp, G(LM_QKVW, l),
                         G(LM_QKVB, l));
        t1 = lm__now(); tm[LM_T_ATTN_PROJ] += t1 - t0; t0 = t1;
        S(lm_layernorm_bwd)(nt, BT, C, x, P(LM_LN1W, l), m1, s1, dtmp, dres, G(LM_LN1W, l),
                            G(LM_LN1B, l));
        t1 = lm__now(); tm[LM_T_NORM] += t1 - t0; t0 = t1;
    }
    /* dres holds d res[0] */
    REAL *dpos = NULL;
    if (lay->cfg.pe == LM_PE_LEARNED) {
        dpos = G(LM_WPE, 0);
        for (size_t i = T * C; i < lay->cfg.ctx * C; i++) dpos[i] = 0;  /* positions not used */
    }
    S(lm_embed_bwd)(nt, B, T, C, V, r->tokens, dres, G(LM_WTE, 0), dpos);
    t1 = lm__now(); tm[LM_T_NORM] += t1 - t0;
    return RK_OK;
#undef G
#undef P
}

#undef RP
