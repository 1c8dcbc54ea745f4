/* The backward of FAVOR+ and linear attention (lib/performer_bwd.c), written once for both
 * precisions: performer_bwd.c includes this body twice, with REAL = float and double (and MAT,
 * SFX, SCR, BSC, WST, WSF, GEMM, ROPE_APPLY, ROPE_BWD to match), as performer_exec.h does for
 * the forward. The algorithm is described at the top of performer_bwd.c.
 * Not a header of its own: include only from performer_bwd.c. */

/* The map's backward for w rows: o (w, d) ld ldo = dL/dx from phi, dphi (w, F) and the rows x
 * the map saw; rope = qk then takes o back through the rotation (o = m R^T o at pos0 + t).
 * den != NULL (query rows): rows with den[t] == 0 have no gradient and are written as zeros,
 * and the map's s x term is left out: s = -+scale sum dphi .* phi is the derivative of the loss
 * along phi(q_i) -> lambda phi(q_i), and out_i does not change when row i's features (a_i and
 * phi(q_i) alike) are scaled, so it is exactly 0 (computed, it would be rounding noise times
 * |x|). Keys keep it (a key's scale moves its weight against the others). */
static int SFX(bmap)(rk__perf *f, int nt, const REAL *x, size_t ldx, const REAL *phi,
                     const REAL *dphi, size_t w, int64_t pos0, const double *den, REAL *o,
                     size_t ldo)
{
    const size_t d = f->fm.d, m = f->fm.m, F = f->fm.F;
    if (m) {
        REAL *t = SCR(f)->u;
        double *s = f->sx;
        RK_PAR_FOR(w * F > RK_PERF_PAR_MIN, nt, r, w,
            s[r] = SFX(rk__featmap_bwd_row)(&f->fm, x + r * ldx, phi + r * F, dphi + r * F,
                                            t + r * m);
        );
        /* o (w, d) = t (w, m) . W' (m, d), then (keys) + s x */
        GEMM(f->isa, nt, w, d, m, t, m, 1, WSF(&f->fm), d, o, ldo);
        if (!den) {
            RK_PAR_FOR(w * d > RK_PERF_PAR_MIN, nt, r, w,
                for (size_t c = 0; c < d; c++)
                    o[r * ldo + c] = (REAL)((double)o[r * ldo + c] + s[r] * (double)x[r * ldx + c]);
            );
        }
    } else {
        RK_PAR_FOR(w * F > RK_PERF_PAR_MIN, nt, r, w,
            (void)SFX(rk__featmap_bwd_row)(&f->fm, x + r * ldx, phi + r * F, dphi + r * F,
                                           o + r * ldo);
        );
    }
    if (den)
        for (size_t r = 0; r < w; r++)
            if (den[r] == 0.0)
                for (size_t c = 0; c < d; c++) o[r * ldo + c] = 0;
    if (f->rope_qk) {
        MAT ov = { o, w, d, ldo };
        return ROPE_BWD(f->rope_qk, &ov, &ov, pos0, NULL);
    }
    return RK_OK;
}

/* Keys j0 .. j0+w-1 join the forward state, as the forward's absorb: with kfac_t =
 * exp(P_t - P_last), z = e z + sum_t kfac_t kf_t (unrotated) and S = e S + sum_t kfac_t kb_t
 * v_t^T, e = exp(C - P_last). kb: the rotated features (eq. 19), or NULL: kf, rotated in place
 * here for eq. 19. kf and kb are scaled in place. */
static int SFX(absorb_k)(rk__perf *f, int nt, const rk_attn_config *cfg, const MAT *v, REAL *kf,
                         REAL *kb, size_t j0, size_t w, double *C, size_t *ns)
{
    const size_t F = f->fm.F, dv = f->dv;
    const double cend = f->pk[j0 + w - 1];
    REAL *kfr = SCR(f)->kfr, *zt = SCR(f)->ztr, *tmp = SCR(f)->tmp;
    for (size_t t = 0; t < w; t++) kfr[t] = (REAL)exp(f->pk[j0 + t] - cend);
    /* zt (1, F) = kfac (1, w) . kf (w, F) */
    GEMM(f->isa, nt, 1, F, w, kfr, 0, 1, kf, F, zt, F);
    if (!kb) {
        kb = kf;
        if (f->rope_f) {
            MAT kv = { kf, w, F, F };
            int rc = ROPE_APPLY(f->rope_f, &kv, &kv, rk__attn_kpos(cfg, j0), NULL, 0);
            if (rc) return rc;
        }
    }
    RK_PAR_FOR(w * F > RK_PERF_PAR_MIN, nt, t, w,
        if (kfr[t] != 1)
            for (size_t r = 0; r < F; r++) kb[t * F + r] *= kfr[t];
    );
    /* tmp (F, dv) = kb^T (F, w) . V[j0 .. j0+w) (w, dv) */
    GEMM(f->isa, nt, F, dv, w, kb, 1, F, v->data + j0 * v->ld, v->ld, tmp, dv);
    double *S = f->S, *z = f->z, e = *ns ? exp(*C - cend) : 0.0;
    SFX(rk__perf_scale_add)(nt, S, e, tmp, F * dv);
    for (size_t r = 0; r < F; r++) z[r] = e * z[r] + (double)zt[r];
    *C = cend;
    *ns += w;
    return RK_OK;
}

/* The reverse state: U = sum_i exp(Rc - C_i) a_i gh_i^T, W = sum_i exp(Rc - C_i) e_i phi(q_i)
 * over the queries absorbed so far (nu: any with a gradient); Rc = their smallest C_i. */
typedef struct {
    double Rc;
    int    nu;
    int    dirty;      /* U changed since its copy in this precision was made */
} SFX(rstate);

/* Queries i0 .. i0+nr-1 (features qa rotated, qf unrotated, gh = dout / D) join U and W.
 * gh is scaled in place. Rows without a gradient (D = 0) add nothing. */
static void SFX(absorb_q)(rk__perf *f, int nt, size_t i0, size_t nr, const REAL *qa,
                          const REAL *qf, REAL *gh, SFX(rstate) *rs)
{
    const size_t F = f->fm.F, dv = f->dv;
    const double *den = f->dq_den + i0, *cq = f->dq_c + i0, *eh = f->dq_e + i0;
    size_t first = 0;
    while (first < nr && den[first] == 0.0) first++;
    if (first == nr) return;
    /* the smallest C_i (live rows' C_i grow with i) */
    double rn = 0.0;
    rn = rs->nu && rs->Rc < cq[first] ? rs->Rc : cq[first];
    REAL *ehs = SCR(f)->kfr, *tmp = SCR(f)->tmp, *zt = SCR(f)->ztr;
    RK_PAR_FOR(nr * dv > RK_PERF_PAR_MIN, nt, i, nr,
        double fac = den[i] == 0.0 ? 0.0 : exp(rn - cq[i]);
        ehs[i] = (REAL)(fac * eh[i]);
        if (fac != 1.0)
            for (size_t c = 0; c < dv; c++) gh[i * dv + c] = (REAL)(fac * (double)gh[i * dv + c]);
    );
    /* tmp (F, dv) = qa^T (F, nr) . gh (nr, dv);  zt (F) = qf^T (F, nr) . ehs (nr) */
    GEMM(f->isa, nt, F, dv, nr, qa, 1, F, gh, dv, tmp, dv);
    GEMM(f->isa, nt, F, 1, nr, qf, 1, F, ehs, 1, zt, 1);
    double *U = f->U, *W = f->W;
    if (!rs->nu) {
        for (size_t i = 0; i < F * dv; i++) U[i] = (double)tmp[i];
        for (size_t r = 0; r < F; r++) W[r] = (double)zt[r];
    } else {
        double sc = exp(rn - rs->Rc);
        SFX(rk__perf_scale_add)(nt, U, sc, tmp, F * dv);
        for (size_t r = 0; r < F; r++) W[r] = sc * W[r] + (double)zt[r];
    }
    rs->Rc = rn;
    rs->nu = 1;
    rs->dirty = 1;
}

/* The queries of a chunk whose masked keys a keys_grad call also handles. */
typedef struct {
    size_t i0, nr;                 /* the chunk's rows                                       */
    const size_t *vis;             /* keys each row sees                                     */
    const REAL *qa, *qf, *gh;      /* their features (rotated, unrotated) and dout / D       */
} SFX(chunk);

/* dk, dv of keys j0 .. j0+w-1 (w <= the block rows): the reverse state's share (every query in
 * it sees these keys) plus, with ch, the intra-chunk share of the chunk's queries that see
 * them (masked keys; w < T). Key j's share of the state is exp(P_j - Rc) <= 1. */
static int SFX(keys_grad)(rk__perf *f, int nt, const rk_attn_config *cfg, const MAT *k,
                          const MAT *v, MAT *dk, MAT *dvo, size_t j0, size_t w,
                          SFX(rstate) *rs, const SFX(chunk) *ch)
{
    const size_t F = f->fm.F, dv = f->dv, T = RK_PERF_QCHUNK;
    const int64_t kp = rk__attn_kpos(cfg, j0);
    REAL *kf = SCR(f)->kf, *kb = kf, *g1 = BSC(f)->g1, *g2 = BSC(f)->g2, *g3 = BSC(f)->g3;
    REAL *vm = BSC(f)->vm, *dvm = SCR(f)->ni, *ut = SCR(f)->st, *utT = BSC(f)->stT;
    const REAL *xk;
    size_t ldxk;
    int rc = SFX(rk__perf_features)(f, nt, k->data + j0 * k->ld, k->ld, w, kp, j0, 2, 0.0,
                                    f->kh, f->pk + j0, BSC(f)->xk, kf, &xk, &ldxk);
    if (rc) return rc;
    if (f->rope_f) {
        kb = BSC(f)->kb;
        memcpy(kb, kf, w * F * sizeof(REAL));
        MAT kv = { kb, w, F, F };
        if ((rc = ROPE_APPLY(f->rope_f, &kv, &kv, kp, NULL, 0))) return rc;
    }
    const int nu = rs->nu;
    double *fj = f->kfac;
    if (nu) {
        if (rs->dirty) {
            /* U in this precision, (F, dv) and transposed (dv, F) */
            for (size_t r = 0; r < F; r++)
                for (size_t c = 0; c < dv; c++) {
                    REAL x = (REAL)f->U[r * dv + c];
                    ut[r * dv + c] = x;
                    utT[c * F + r] = x;
                }
            rs->dirty = 0;
        }
        /* g1 (w, F) = V (w, dv) . U^T (dv, F);  vm (w, dv) = kb (w, F) . U (F, dv) */
        GEMM(f->isa, nt, w, F, dv, v->data + j0 * v->ld, v->ld, 1, utT, F, g1, F);
        GEMM(f->isa, nt, w, dv, F, kb, F, 1, ut, dv, vm, dv);
        for (size_t t = 0; t < w; t++) fj[t] = exp(f->pk[j0 + t] - rs->Rc);
    }
    if (ch) {
        /* rows i >= fr[t] see key j0 + t (visible counts grow with the row) */
        const size_t nr = ch->nr, *vis = ch->vis, i0 = ch->i0;
        const double *cq = f->dq_c + i0, *eh = f->dq_e + i0;
        size_t *fr = f->kfirst;
        for (size_t t = 0, i = 0; t < w; t++) {
            while (i < nr && vis[i] <= j0 + t) i++;
            fr[t] = i;
        }
        /* P (nr, T) = gh . V_m^T and Q (nr, T) = qa . kb^T: all T columns (vector tiles), the
         * padding columns zero; entries of pairs a query does not see are never read */
        REAL *vt = BSC(f)->vt, *kbt = SCR(f)->kt, *P = SCR(f)->a, *Q = SCR(f)->an;
        REAL *c1 = BSC(f)->c1, *c2 = BSC(f)->c2, *c3 = BSC(f)->c3;
        for (size_t c = 0; c < dv; c++)
            for (size_t t = 0; t < T; t++) vt[c * T + t] = t < w ? v->data[(j0 + t) * v->ld + c] : 0;
        for (size_t r = 0; r < F; r++)
            for (size_t t = 0; t < T; t++) kbt[r * T + t] = t < w ? kb[t * F + r] : 0;
        GEMM(f->isa, nt, nr, T, dv, ch->gh, dv, 1, vt, T, P, T);
        GEMM(f->isa, nt, nr, T, F, ch->qa, F, 1, kbt, T, Q, T);
        /* coefficients, key-major ([t][i]), of the rows that see the key:
         *   c1 = x (g_i . v_j) (+ x e_i without eq. 19: a = phi)  onto qa rows -> d b_j
         *   c2 = x (a_i . b_j)                                     onto gh rows -> dv_j
         *   c3 = x e_i  (eq. 19)                                   onto qf rows -> d phi(k_j)
         * with x = exp(P_j - C_i) */
        RK_PAR_FOR(w * nr > RK_PERF_PAR_MIN, nt, t, w,
            for (size_t i = fr[t]; i < nr; i++) {
                double x = exp(f->pk[j0 + t] - cq[i]);
                double pe = (double)P[i * T + t] + (f->rope_f ? 0.0 : eh[i]);
                c1[t * T + i] = (REAL)(x * pe);
                c2[t * T + i] = (REAL)(x * (double)Q[i * T + t]);
                if (f->rope_f) c3[t * T + i] = (REAL)(x * eh[i]);
            }
        );
        /* per key, over the rows that see it only (a masked pair is never multiplied) */
        RK_PAR_FOR(w * nr * F > RK_PERF_PAR_MIN, nt, t, w,
            size_t a = fr[t], K = nr - a;
            GEMM(f->isa, 1, 1, F, K, c1 + t * T + a, T, 1, ch->qa + a * F, F, g2 + t * F, F);
            GEMM(f->isa, 1, 1, dv, K, c2 + t * T + a, T, 1, ch->gh + a * dv, dv, dvm + t * dv, dv);
            if (f->rope_f)
                GEMM(f->isa, 1, 1, F, K, c3 + t * T + a, T, 1, ch->qf + a * F, F, g3 + t * F, F);
        );
    }
    /* d b_j (into g1) and dv_j */
    RK_PAR_FOR(w * F > RK_PERF_PAR_MIN, nt, t, w,
        for (size_t r = 0; r < F; r++) {
            double x = nu ? fj[t] * (double)g1[t * F + r] : 0.0;
            if (ch) x += (double)g2[t * F + r];
            g1[t * F + r] = (REAL)x;
        }
        REAL *o = dvo->data + (j0 + t) * dvo->ld;
        for (size_t c = 0; c < dv; c++) {
            double y = nu ? fj[t] * (double)vm[t * dv + c] : 0.0;
            if (ch) y += (double)dvm[t * dv + c];
            o[c] = (REAL)y;
        }
    );
    /* d phi(k_j): eq. 19 takes d b_j back through the rotation; the denominator's share */
    if (f->rope_f) {
        MAT gv = { g1, w, F, F };
        if ((rc = ROPE_BWD(f->rope_f, &gv, &gv, kp, NULL))) return rc;
    }
    if (nu || (ch && f->rope_f)) {
        RK_PAR_FOR(w * F > RK_PERF_PAR_MIN, nt, t, w,
            for (size_t r = 0; r < F; r++) {
                double x = (double)g1[t * F + r];
                if (nu) x += fj[t] * f->W[r];
                if (ch && f->rope_f) x += (double)g3[t * F + r];
                g1[t * F + r] = (REAL)x;
            }
        );
    }
    return SFX(bmap)(f, nt, xk, ldxk, kf, g1, w, kp, NULL, dk->data + j0 * dk->ld, dk->ld);
}

/* Pass 1, in the forward's order: the forward state (S, z) chunk by chunk, each query's
 * D_i, C_i, e_i (kept per row) and dq; the keys' constants P_j. Bidirectional plans (one
 * chunk sees every key) also absorb each chunk's queries into the reverse state here. */
static int SFX(pass1)(rk__perf *f, int nt, const rk_attn_config *cfg, const MAT *q,
                      const MAT *k, const MAT *v, const MAT *dout, MAT *dq, size_t kv_len,
                      SFX(rstate) *rs)
{
    const size_t F = f->fm.F, dv = f->dv, nq = cfg->n_q;
    const size_t T = cfg->causal ? RK_PERF_QCHUNK : RK_PERF_BLOCK, TQ = RK_PERF_QCHUNK;
    REAL *qf = SCR(f)->qf, *kf = SCR(f)->kf, *qa = qf, *kb = NULL;
    REAL *g1 = BSC(f)->g1, *g2 = BSC(f)->g2, *g3 = BSC(f)->g3, *gh = BSC(f)->gh;
    REAL *stT = BSC(f)->stT, *c1 = BSC(f)->c1, *c2 = BSC(f)->c2, *P = SCR(f)->a;
    double *ci = f->ci;
    size_t *vis = f->vis;
    int rc;
    memset(f->S, 0, F * dv * sizeof(double));
    memset(f->z, 0, F * sizeof(double));
    double C = 0.0;         /* the state's key constant   */
    size_t ns = 0;          /* keys in the state           */
    int conv = 0;           /* stT holds S^T of the state  */

    for (size_t i0 = 0; i0 < nq; i0 += T) {
        const size_t nr = MIN(T, nq - i0);
        const size_t lo = rk__attn_visible(cfg, i0, kv_len);
        const size_t hi = rk__attn_visible(cfg, i0 + nr - 1, kv_len), wi = hi - lo;
        const int64_t qp = rk__attn_qpos(cfg, i0);

        /* 1. keys every query of the chunk sees join the state */
        while (ns < lo) {
            size_t w = MIN(RK_PERF_BLOCK, lo - ns);
            const REAL *xo;
            size_t ldo;
            if ((rc = SFX(rk__perf_features)(f, nt, k->data + ns * k->ld, k->ld, w,
                                             rk__attn_kpos(cfg, ns), ns, 1, ns ? C : -INFINITY,
                                             f->kh, f->pk + ns, BSC(f)->xk, kf, &xo, &ldo)))
                return rc;
            if ((rc = SFX(absorb_k)(f, nt, cfg, v, kf, NULL, ns, w, &C, &ns))) return rc;
            conv = 0;
        }
        if (ns && !conv) {
            for (size_t r = 0; r < F; r++)
                for (size_t c = 0; c < dv; c++) stT[c * F + r] = (REAL)f->S[r * dv + c];
            conv = 1;
        }

        /* 2. query features; the masked keys lo .. hi-1 (causal: fewer than T); each query's
         *    key constant C_i, the prefix max over the keys it sees */
        const REAL *xq;
        size_t ldxq;
        if ((rc = SFX(rk__perf_features)(f, nt, q->data + i0 * q->ld, q->ld, nr, qp, i0, 0, 0.0,
                                         f->kh, f->qc, SCR(f)->x, qf, &xq, &ldxq)))
            return rc;
        if (wi) {
            const REAL *xo;
            size_t ldo;
            if ((rc = SFX(rk__perf_features)(f, nt, k->data + lo * k->ld, k->ld, wi,
                                             rk__attn_kpos(cfg, lo), lo, 1, ns ? C : -INFINITY,
                                             f->kh, f->pk + lo, BSC(f)->xk, kf, &xo, &ldo)))
                return rc;
            kb = kf;
            if (f->rope_f) {
                kb = BSC(f)->kb;
                memcpy(kb, kf, wi * F * sizeof(REAL));
                MAT kv = { kb, wi, F, F };
                if ((rc = ROPE_APPLY(f->rope_f, &kv, &kv, rk__attn_kpos(cfg, lo), NULL, 0)))
                    return rc;
            }
        }
        for (size_t i = 0; i < nr; i++) {
            vis[i] = rk__attn_visible(cfg, i0 + i, kv_len);
            ci[i] = vis[i] > lo ? f->pk[vis[i] - 1] : C;
            f->dq_c[i0 + i] = ci[i];
        }

        /* 3. the denominator's key sums at C_i: g1_i = e_i z + sum_{masked j seen} x_ij phi(k_j),
         *    x_ij = exp(P_j - C_i), e_i = exp(C - C_i); D_i = phi(q_i) . g1_i */
        RK_PAR_FOR(nr * wi * F > RK_PERF_PAR_MIN, nt, i, nr,
            size_t K = vis[i] > lo ? vis[i] - lo : 0;
            if (K) {
                for (size_t j = 0; j < K; j++)
                    c1[i * TQ + j] = (REAL)exp(f->pk[lo + j] - ci[i]);
                GEMM(f->isa, 1, 1, F, K, c1 + i * TQ, TQ, 1, kf, F, g1 + i * F, F);
            } else {
                for (size_t r = 0; r < F; r++) g1[i * F + r] = 0;
            }
            double e = ns ? exp(C - ci[i]) : 0.0, den = 0.0;
            for (size_t r = 0; r < F; r++) {
                double s = (double)g1[i * F + r];
                if (ns) s += e * f->z[r];
                g1[i * F + r] = (REAL)s;
                den += (double)qf[i * F + r] * (double)g1[i * F + r];
            }
            /* no key, or every weight 0: a zero output row, no gradient */
            f->dq_den[i0 + i] = vis[i] == 0 ? 0.0 : den;
            const REAL *g_i = dout->data + (i0 + i) * dout->ld;
            for (size_t c = 0; c < dv; c++)
                gh[i * dv + c] = f->dq_den[i0 + i] == 0.0 ? (REAL)0 : (REAL)((double)g_i[c] / den);
        );
        if ((rc = SFX(rk__perf_den_check)(f, f->dq_den + i0, vis, ns, nr, i0))) return rc;

        /* 4. d a_i = S_i gh_i: the state's e_i S gh_i plus the masked sum_j x_ij (gh_i . v_j) b_j */
        if (ns) GEMM(f->isa, nt, nr, F, dv, gh, dv, 1, stT, F, g2, F);
        if (wi) {
            REAL *vt = BSC(f)->vt;
            for (size_t c = 0; c < dv; c++)
                for (size_t t = 0; t < TQ; t++) vt[c * TQ + t] = t < wi ? v->data[(lo + t) * v->ld + c] : 0;
            /* P (nr, TQ) = gh . V_m^T; entries of unseen pairs are never read */
            GEMM(f->isa, nt, nr, TQ, dv, gh, dv, 1, vt, TQ, P, TQ);
        }
        RK_PAR_FOR(nr * wi * F > RK_PERF_PAR_MIN, nt, i, nr,
            size_t K = vis[i] > lo ? vis[i] - lo : 0;
            if (K) {
                for (size_t j = 0; j < K; j++)
                    c2[i * TQ + j] = (REAL)((double)c1[i * TQ + j] * (double)P[i * TQ + j]);
                GEMM(f->isa, 1, 1, F, K, c2 + i * TQ, TQ, 1, kb, F, g3 + i * F, F);
            }
            double e = ns ? exp(C - ci[i]) : 0.0;
            int live = f->dq_den[i0 + i] != 0.0;
            for (size_t r = 0; r < F; r++) {
                double s = 0.0;
                if (live && ns) s = e * (double)g2[i * F + r];
                if (live && K) s += (double)g3[i * F + r];
                g2[i * F + r] = (REAL)s;
            }
        );

        /* 5. e_i = -(gh_i . out_i) = -(a_i . d a_i) / D_i (gh_i . N_i = a_i^T S_i gh_i); then
         *    d phi(q_i) = R^T d a_i (eq. 19; else d a_i) + e_i g1_i */
        if (f->rope_f) {
            qa = BSC(f)->qa;
            memcpy(qa, qf, nr * F * sizeof(REAL));
            MAT qv = { qa, nr, F, F };
            if ((rc = ROPE_APPLY(f->rope_f, &qv, &qv, qp, NULL, 0))) return rc;
        }
        for (size_t i = 0; i < nr; i++) {
            double den = f->dq_den[i0 + i], s = 0.0;
            if (den != 0.0)
                for (size_t r = 0; r < F; r++) s += (double)qa[i * F + r] * (double)g2[i * F + r];
            f->dq_e[i0 + i] = den != 0.0 ? -s / den : 0.0;
        }
        if (f->rope_f) {
            MAT gv = { g2, nr, F, F };
            if ((rc = ROPE_BWD(f->rope_f, &gv, &gv, qp, NULL))) return rc;
        }
        RK_PAR_FOR(nr * F > RK_PERF_PAR_MIN, nt, i, nr,
            double e = f->dq_e[i0 + i];
            if (f->dq_den[i0 + i] != 0.0)
                for (size_t r = 0; r < F; r++)
                    g2[i * F + r] = (REAL)((double)g2[i * F + r] + e * (double)g1[i * F + r]);
        );

        /* 6. dq through the map (and the rotation of rope = qk) */
        if ((rc = SFX(bmap)(f, nt, xq, ldxq, qf, g2, nr, qp, f->dq_den + i0,
                            dq->data + i0 * dq->ld, dq->ld)))
            return rc;

        /* 7. bidirectional: the chunk's queries join the reverse state now (there is no order) */
        if (!cfg->causal) SFX(absorb_q)(f, nt, i0, nr, qa, qf, gh, rs);

        /* 8. the masked keys join the state */
        if (wi) {
            if ((rc = SFX(absorb_k)(f, nt, cfg, v, kf, f->rope_f ? kb : NULL, lo, wi, &C, &ns)))
                return rc;
            conv = 0;
        }
    }
    return RK_OK;
}

/* The first row of m (rows x cols) holding a NaN or Inf, or rows. */
static size_t SFX(first_nonfinite)(const MAT *m, size_t rows, size_t cols)
{
    for (size_t i = 0; i < rows; i++)
        for (size_t c = 0; c < cols; c++)
            if (!isfinite(m->data[i * m->ld + c])) return i;
    return rows;
}

/* The last check of the backward: gradients that overflowed although every input is finite
 * (values or dout near the type's maximum: the products behind dq and dk are not scaled the way
 * the forward's are) give RK_ENONFINITE naming the row, never a NaN. Inputs with NaN or Inf pass
 * their NaN on. The inputs are read only when a gradient is not finite. */
static int SFX(grads_finite)(const rk_attn_config *cfg, const MAT *q, const MAT *k, const MAT *v,
                             const MAT *dout, const MAT *dq, const MAT *dk, const MAT *dv)
{
    const size_t nq = cfg->n_q, nkv = cfg->n_kv, d = cfg->d, dvw = cfg->d_v;
    size_t iq = SFX(first_nonfinite)(dq, nq, d), jk = SFX(first_nonfinite)(dk, nkv, d);
    size_t jv = SFX(first_nonfinite)(dv, nkv, dvw);
    if (iq == nq && jk == nkv && jv == nkv) return RK_OK;
    if (SFX(first_nonfinite)(q, nq, d) < nq || SFX(first_nonfinite)(k, nkv, d) < nkv ||
        SFX(first_nonfinite)(v, nkv, dvw) < nkv || SFX(first_nonfinite)(dout, nq, dvw) < nq)
        return RK_OK;
    const char *what = iq < nq ? "dq" : jk < nkv ? "dk" : "dv";
    size_t row = iq < nq ? iq : jk < nkv ? jk : jv;
    RK_FAIL(RK_ENONFINITE, "%s backward: %s row %zu overflows %s although every input is "
            "finite (values or dout near the type's maximum)%s", cfg->kind == RK_PERFORMER ?
            "performer" : "linear", what, row, sizeof(REAL) == 4 ? "float32" : "float64",
            sizeof(REAL) == 4 ? ": use the float64 path or smaller values" : "");
}

int SFX(rk__perf_bwd)(rk_attn *p, const MAT *q, const MAT *k, const MAT *v, const MAT *out,
                      const REAL *saved, const MAT *dout, MAT *dq, MAT *dk, MAT *dv,
                      size_t kv_len)
{
    (void)out;     /* not read: e_i = -(g_i . out_i) / D_i is formed as -(a_i . d a_i) / D_i */
    (void)saved;
    rk__perf *f = p->impl;
    const rk_attn_config *cfg = &p->cfg;
    const size_t F = f->fm.F, dvw = f->dv, nq = cfg->n_q, d = cfg->d;
    const size_t T = cfg->causal ? RK_PERF_QCHUNK : RK_PERF_BLOCK;
    const int nt = cfg->nthreads;
    int rc;
    /* keys no query sees: zero gradients, never read */
    const size_t hi_last = rk__attn_visible(cfg, nq - 1, kv_len);
    for (size_t j = hi_last; j < cfg->n_kv; j++) {
        for (size_t c = 0; c < d; c++) dk->data[j * dk->ld + c] = 0;
        for (size_t c = 0; c < dvw; c++) dv->data[j * dv->ld + c] = 0;
    }
    SFX(rstate) rs = { 0.0, 0, 1 };
    if ((rc = SFX(pass1)(f, nt, cfg, q, k, v, dout, dq, kv_len, &rs))) return rc;

    /* Pass 2 (causal), chunks in reverse: the keys that exactly the later chunks see take their
     * share of the reverse state, the chunk's masked keys add the intra-chunk part, then the
     * chunk's queries join the state. Bidirectional: every query is in the state already. */
    size_t next_lo = hi_last;
    if (cfg->causal) {
        REAL *qf = SCR(f)->qf, *qa = qf, *gh = BSC(f)->gh;
        for (size_t c = (nq + T - 1) / T; c-- > 0;) {
            const size_t i0 = c * T, nr = MIN(T, nq - i0);
            const size_t lo = rk__attn_visible(cfg, i0, kv_len);
            const size_t hi = rk__attn_visible(cfg, i0 + nr - 1, kv_len);
            const int64_t qp = rk__attn_qpos(cfg, i0);
            for (size_t j = hi; j < next_lo; j += RK_PERF_BLOCK)
                if ((rc = SFX(keys_grad)(f, nt, cfg, k, v, dk, dv, j, MIN(RK_PERF_BLOCK, next_lo - j),
                                         &rs, NULL)))
                    return rc;
            const REAL *xq;
            size_t ldxq;
            if ((rc = SFX(rk__perf_features)(f, nt, q->data + i0 * q->ld, q->ld, nr, qp, i0, 0,
                                             0.0, f->kh, f->qc, SCR(f)->x, qf, &xq, &ldxq)))
                return rc;
            if (f->rope_f) {
                qa = BSC(f)->qa;
                memcpy(qa, qf, nr * F * sizeof(REAL));
                MAT qv = { qa, nr, F, F };
                if ((rc = ROPE_APPLY(f->rope_f, &qv, &qv, qp, NULL, 0))) return rc;
            }
            for (size_t i = 0; i < nr; i++) {
                double den = f->dq_den[i0 + i];
                const REAL *g_i = dout->data + (i0 + i) * dout->ld;
                for (size_t cc = 0; cc < dvw; cc++)
                    gh[i * dvw + cc] = den == 0.0 ? (REAL)0 : (REAL)((double)g_i[cc] / den);
                f->vis[i] = rk__attn_visible(cfg, i0 + i, kv_len);
            }
            if (hi > lo) {
                SFX(chunk) ch = { i0, nr, f->vis, qa, qf, gh };
                if ((rc = SFX(keys_grad)(f, nt, cfg, k, v, dk, dv, lo, hi - lo, &rs, &ch)))
                    return rc;
            }
            SFX(absorb_q)(f, nt, i0, nr, qa, qf, gh, &rs);
            next_lo = lo;
        }
    }
    for (size_t j = 0; j < next_lo; j += RK_PERF_BLOCK)
        if ((rc = SFX(keys_grad)(f, nt, cfg, k, v, dk, dv, j, MIN(RK_PERF_BLOCK, next_lo - j), &rs,
                                 NULL)))
            return rc;
    return SFX(grads_finite)(cfg, q, k, v, dout, dq, dk, dv);
}
