/* The batch execute of FAVOR+ and linear attention (lib/performer_exec.c), written once for
 * both precisions: performer_exec.c includes this body twice, with REAL = float and double
 * (and MAT, SFX, SCR, WST, GEMM, ROPE_APPLY to match), as GSL's templates do. The algorithm,
 * the stabiliser and the threading are described at the top of lib/performer.c.
 * Not a header of its own: include only from performer_exec.c. */
/* Features of w rows x (w, d) ld ldx, into xf (w, F), with h and the constants into h[], cc[].
 * Rows are at positions pos0 + t (rope = qk rotates them first, in scratch).
 * key == 0 (queries): each row subtracts its own lmax.
 * key != 0: row t subtracts the running max P_t = max(cin, lmax_0 .. lmax_t).
 * Linear maps use no constant (cc = 0). */
static int SFX(phi)(rk__perf *f, int nt, const REAL *x, size_t ldx, size_t w, int64_t pos0,
                    int key, double cin, double *h, double *cc, REAL *xf)
{
    size_t d = f->fm.d, m = f->fm.m, F = f->fm.F;
    if (f->rope_qk) {
        REAL *xs = SCR(f)->x;
        for (size_t t = 0; t < w; t++) memcpy(xs + t * d, x + t * ldx, d * sizeof(REAL));
        MAT xv = { xs, w, d, d };
        int rc = ROPE_APPLY(f->rope_qk, &xv, &xv, pos0, NULL, 0);
        if (rc) return rc;
        x = xs;
        ldx = d;
    }
    const REAL *u = x;
    size_t ldu = ldx;
    if (m) {
        /* u (w, m) = x (w, d) . (sqrt(scale) W)^T */
        u = SCR(f)->u;
        ldu = m;
        GEMM(f->isa, nt, w, m, d, x, ldx, 1, WST(&f->fm), m, SCR(f)->u, m);
        #pragma omp parallel for schedule(static) num_threads(nt) if (w * m > RK_PERF_PAR_MIN)
        for (size_t t = 0; t < w; t++) {
            const REAL *x_t = x + t * ldx;
            double ss = 0.0;
            for (size_t c = 0; c < d; c++) ss += (double)x_t[c] * (double)x_t[c];
            h[t] = 0.5 * f->fm.scale * ss;
            cc[t] = SFX(rk__featmap_lmax)(&f->fm, u + t * m, h[t]);
        }
        if (key) {
            double run = cin;
            for (size_t t = 0; t < w; t++) {
                if (cc[t] > run) run = cc[t];
                cc[t] = run;
            }
        }
    } else {
        for (size_t t = 0; t < w; t++) h[t] = cc[t] = 0.0;
    }
    #pragma omp parallel for schedule(static) num_threads(nt) if (w * F > RK_PERF_PAR_MIN)
    for (size_t t = 0; t < w; t++)
        SFX(rk__featmap_row)(&f->fm, u + t * ldu, h[t], cc[t], xf + t * F);
    return RK_OK;
}

/* Keys j0 .. j0+w-1 into kf (unrotated) with prefix constants kc from cin, kfac_t =
 * exp(kc_t - cend) and zt = sum_t kfac_t kf_t, their share of z at the block's final constant. */
static int SFX(key_block)(rk__perf *f, int nt, const rk_attn_config *cfg, const MAT *k,
                          size_t j0, size_t w, double cin, double *cend)
{
    REAL *kf = SCR(f)->kf;
    size_t F = f->fm.F;
    int rc = SFX(phi)(f, nt, k->data + j0 * k->ld, k->ld, w, rk__attn_kpos(cfg, j0), 1, cin,
                      f->kh, f->kc, kf);
    if (rc) return rc;
    double ce = f->kc[w - 1];
    *cend = ce;
    double *kc = f->kc, *kfac = f->kfac;
    REAL *kfr = SCR(f)->kfr;
    for (size_t t = 0; t < w; t++) {
        kfac[t] = f->fm.stab ? exp(kc[t] - ce) : 1.0;
        kfr[t] = (REAL)kfac[t];
    }
    /* zt (1, F) = kfac (1, w) . kf (w, F) */
    GEMM(f->isa, nt, 1, F, w, kfr, 0, 1, kf, F, SCR(f)->ztr, F);
    return RK_OK;
}

/* kf rows (rotated if eq. 19) join the state: with e = exp(C - cend),
 * S = e S + sum_t kfac_t kf_t v_t^T,  z = e z + zt,  C = cend  (kfac_t = exp(kc_t - cend), from
 * key_block). */
static void SFX(absorb)(rk__perf *f, int nt, const MAT *v, size_t j0, size_t w, double *C,
                        double cend, size_t *ns)
{
    REAL *kf = SCR(f)->kf, *tmp = SCR(f)->tmp;
    size_t F = f->fm.F, dv = f->dv;
    double e = *ns ? exp(*C - cend) : 0.0, *kfac = f->kfac;
    if (f->fm.stab) {
        #pragma omp parallel for schedule(static) num_threads(nt) if (w * F > RK_PERF_PAR_MIN)
        for (size_t t = 0; t < w; t++) {
            REAL s = (REAL)kfac[t];
            if (s != 1) {
                #pragma omp simd
                for (size_t r = 0; r < F; r++) kf[t * F + r] *= s;
            }
        }
    }
    /* tmp (F, dv) = kf^T (F, w) . V[j0 .. j0+w) (w, dv) */
    GEMM(f->isa, nt, F, dv, w, kf, 1, F, v->data + j0 * v->ld, v->ld, tmp, dv);
    double *S = f->S, *z = f->z;
    const REAL *zt = SCR(f)->ztr;
    /* e == 1 (the max did not grow) skips a multiplication by 1: the same bits */
    if (e == 1.0) {
        #pragma omp parallel for simd schedule(static) num_threads(nt) if (F * dv > RK_PERF_PAR_MIN)
        for (size_t i = 0; i < F * dv; i++) S[i] += (double)tmp[i];
    } else {
        #pragma omp parallel for simd schedule(static) num_threads(nt) if (F * dv > RK_PERF_PAR_MIN)
        for (size_t i = 0; i < F * dv; i++) S[i] = e * S[i] + (double)tmp[i];
    }
    for (size_t r = 0; r < F; r++) z[r] = e * z[r] + (double)zt[r];
    *C = cend;
    *ns += w;
}

/* a (nr, wi) ld T: a_ij = phi(q_i) . phi(k_{lo+j}) exp(kc_j - ci_i) for keys the query sees,
 * 0 for the others (never read, so a masked key cannot leak even as NaN). */
static void SFX(masked)(rk__perf *f, int nt, const REAL *qf, const REAL *kf, size_t nr,
                        size_t lo, size_t wi, REAL *a)
{
    size_t F = f->fm.F, T = RK_PERF_QCHUNK;
    REAL *kt = SCR(f)->kt;                  /* kf^T (F, T), columns wi .. T-1 zero */
    for (size_t r = 0; r < F; r++) {
        for (size_t j = 0; j < wi; j++) kt[r * T + j] = kf[j * F + r];
        for (size_t j = wi; j < T; j++) kt[r * T + j] = 0;
    }
    /* all T columns: full vector tiles; the padding columns are never read */
    GEMM(f->isa, nt, nr, T, F, qf, F, 1, kt, T, a, T);
    const double *kc = f->kc, *ci = f->ci;
    const size_t *vis = f->vis;
    #pragma omp parallel for schedule(static) num_threads(nt) if (nr * wi > RK_PERF_PAR_MIN)
    for (size_t i = 0; i < nr; i++)
        for (size_t j = 0; j < wi; j++)
            a[i * T + j] = lo + j < vis[i] ? (REAL)(a[i * T + j] * exp(kc[j] - ci[i])) : 0;
}

/* The running state from init (NULL or empty: zero, no key); *C its constant, *ns its count
 * (nonzero: the state holds keys). */
static void SFX(state_in)(rk__perf *f, const rk_kv_state *init, double *C, size_t *ns)
{
    size_t F = f->fm.F, dv = f->dv;
    if (init && init->n) {
        memcpy(f->S, init->s, F * dv * sizeof(double));
        memcpy(f->z, init->z, F * sizeof(double));
        *C = init->c;
        *ns = init->n > SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)init->n;
    } else {
        memset(f->S, 0, F * dv * sizeof(double));
        memset(f->z, 0, F * sizeof(double));
        *C = 0.0;
        *ns = 0;
    }
}

/* Keys nk .. kend - 1 join the state, a block at a time (rotated for eq. 19). */
static int SFX(absorb_range)(rk__perf *f, int nt, const rk_attn_config *cfg, const MAT *k,
                             const MAT *v, size_t nk, size_t kend, double *C, size_t *ns)
{
    size_t F = f->fm.F;
    REAL *kf = SCR(f)->kf;
    int rc;
    while (nk < kend) {
        size_t w = MIN(RK_PERF_BLOCK, kend - nk);
        double cend;
        if ((rc = SFX(key_block)(f, nt, cfg, k, nk, w, *ns ? *C : -INFINITY, &cend))) return rc;
        if (f->rope_f) {
            MAT kv = { kf, w, F, F };
            if ((rc = ROPE_APPLY(f->rope_f, &kv, &kv, rk__attn_kpos(cfg, nk), NULL, 0))) return rc;
        }
        SFX(absorb)(f, nt, v, nk, w, C, cend, ns);
        nk += w;
    }
    return RK_OK;
}

/* The running state out to fin: init's keys plus n0 more (the block's kv_len). */
static void SFX(state_out)(const rk__perf *f, const rk_kv_state *init, size_t nkeys, double C,
                           size_t ns, rk_kv_state *fin)
{
    size_t F = f->fm.F, dv = f->dv;
    uint64_t n0 = init ? init->n : 0;
    fin->n = n0 + nkeys;
    if (!ns) {          /* nothing held: the empty state (also for kv_len = 0 and no init) */
        memset(fin->s, 0, F * dv * sizeof(double));
        memset(fin->z, 0, F * sizeof(double));
        fin->c = fin->n ? 0.0 : -INFINITY;
        return;
    }
    if (fin->s != f->S) memcpy(fin->s, f->S, F * dv * sizeof(double));
    if (fin->z != f->z) memcpy(fin->z, f->z, F * sizeof(double));
    fin->c = C;
}

/* rk_attn_kv_reduce: keys 0 .. kv_len - 1 into the state from init. */
int SFX(rk__perf_reduce)(rk_attn *p, const MAT *k, const MAT *v, size_t kv_len,
                         const rk_kv_state *init, rk_kv_state *st)
{
    rk__perf *f = p->impl;
    double C;
    size_t ns;
    SFX(state_in)(f, init, &C, &ns);
    int rc = SFX(absorb_range)(f, p->cfg.nthreads, &p->cfg, k, v, 0, kv_len, &C, &ns);
    if (rc) return rc;
    SFX(state_out)(f, init, kv_len, C, ns, st);
    return RK_OK;
}

int SFX(rk__perf_exec)(rk_attn *p, const MAT *q, const MAT *k, const MAT *v, MAT *out,
                     size_t kv_len)
{
    return SFX(rk__perf_exec_state)(p, q, k, v, out, kv_len, NULL, NULL);
}

/* The execute, from the state init (NULL: none) and into fin (NULL: not wanted). ns counts the
 * keys in the state (init's too), nk is the next key of k to join it. */
int SFX(rk__perf_exec_state)(rk_attn *p, const MAT *q, const MAT *k, const MAT *v, MAT *out,
                             size_t kv_len, const rk_kv_state *init, rk_kv_state *fin)
{
    rk__perf *f = p->impl;
    const rk_attn_config *cfg = &p->cfg;
    /* q (n_q, d) ld q->ld; k (n_kv, d); v (n_kv, dv); out (n_q, dv); features (rows, F) */
    size_t F = f->fm.F, dv = f->dv, nq = cfg->n_q, T = cfg->causal ? RK_PERF_QCHUNK : RK_PERF_BLOCK;
    int nt = cfg->nthreads, rc;
    REAL *qf = SCR(f)->qf, *kf = SCR(f)->kf, *a = SCR(f)->a, *an = SCR(f)->an;
    REAL *nsb = SCR(f)->ns, *ni = SCR(f)->ni, *st = SCR(f)->st;
    double C;             /* the state's key constant                */
    size_t ns;            /* keys in the state (nonzero: it holds some) */
    SFX(state_in)(f, init, &C, &ns);
    size_t nk = 0;        /* keys of k in the state: 0 .. nk-1       */

    for (size_t i0 = 0; i0 < nq; i0 += T) {
        size_t nr = MIN(T, nq - i0);
        size_t lo = rk__attn_visible(cfg, i0, kv_len), hi = rk__attn_visible(cfg, i0 + nr - 1, kv_len);
        double cend;

        /* 1. keys every query of the chunk sees join the state, a block at a time */
        if ((rc = SFX(absorb_range)(f, nt, cfg, k, v, nk, lo, &C, &ns))) return rc;
        nk = lo;

        /* 2. query features; the masked keys lo .. hi-1 (causal, fewer than T); the key
         *    constant of each query: the prefix max over the keys it sees */
        if ((rc = SFX(phi)(f, nt, q->data + i0 * q->ld, q->ld, nr, rk__attn_qpos(cfg, i0), 0, 0.0,
                           f->qh, f->qc, qf)))
            return rc;
        size_t wi = hi - lo;
        cend = C;
        if (wi && (rc = SFX(key_block)(f, nt, cfg, k, lo, wi, ns ? C : -INFINITY, &cend)))
            return rc;
        for (size_t i = 0; i < nr; i++) {
            f->vis[i] = rk__attn_visible(cfg, i0 + i, kv_len);
            f->ci[i] = !f->fm.stab ? 0.0 : f->vis[i] > lo ? f->kc[f->vis[i] - 1 - lo] : C;
        }

        /* 3. denominators from unrotated features: phi(q_i) . z (one product with the state
         *    st = [S | z 0 0 0 0 0 0 0], F x (dv + 8): the padding keeps it in vector tiles;
         *    for eq. 19 only its z block now, the S block after the rotation) and the masked part */
        size_t ls = dv + 8;
        if (ns) {
            for (size_t r = 0; r < F; r++) {
                #pragma omp simd
                for (size_t c = 0; c < dv; c++) st[r * ls + c] = (REAL)f->S[r * dv + c];
                st[r * ls + dv] = (REAL)f->z[r];          /* columns dv+1 .. dv+7 stay 0 */
            }
            if (f->rope_f) GEMM(f->isa, nt, nr, 8, F, qf, F, 1, st + dv, ls, nsb + dv, ls);
            else GEMM(f->isa, nt, nr, ls, F, qf, F, 1, st, ls, nsb, ls);
        }
        double *deni = f->deni;
        if (wi) SFX(masked)(f, nt, qf, kf, nr, lo, wi, a);
        for (size_t i = 0; i < nr; i++) {
            double s = 0.0;
            for (size_t j = 0; j < wi; j++) s += (double)a[i * RK_PERF_QCHUNK + j];
            deni[i] = s;
        }

        /* 4. eq. 19: numerators use features rotated at their positions */
        if (f->rope_f) {
            MAT qv = { qf, nr, F, F }, kv = { kf, wi, F, F };
            if ((rc = ROPE_APPLY(f->rope_f, &qv, &qv, rk__attn_qpos(cfg, i0), NULL, 0))) return rc;
            if (wi && (rc = ROPE_APPLY(f->rope_f, &kv, &kv, rk__attn_kpos(cfg, lo), NULL, 0)))
                return rc;
        }

        /* 5. numerators: phi(q) S (state) and the masked weights times V */
        if (ns && f->rope_f) GEMM(f->isa, nt, nr, dv, F, qf, F, 1, st, ls, nsb, ls);
        if (wi) {
            REAL *aw = a;
            if (f->rope_f) { SFX(masked)(f, nt, qf, kf, nr, lo, wi, an); aw = an; }
            /* each row over the masked keys it sees only (a prefix: visibility grows with the
             * row): a weight of 0 times a value row it must not see would still be NaN if that
             * value is NaN or Inf. Rows of equal visibility share one product. */
            for (size_t i0r = 0; i0r < nr;) {
                size_t kv = f->vis[i0r] > lo ? (f->vis[i0r] < hi ? f->vis[i0r] : hi) - lo : 0, n1 = 1;
                while (i0r + n1 < nr && f->vis[i0r + n1] == f->vis[i0r]) n1++;
                if (kv)
                    GEMM(f->isa, nt, n1, dv, kv, aw + i0r * RK_PERF_QCHUNK, RK_PERF_QCHUNK, 1,
                         v->data + lo * v->ld, v->ld, ni + i0r * dv, dv);
                else
                    memset(ni + i0r * dv, 0, n1 * dv * sizeof *ni);
                i0r += n1;
            }
        }

        /* 6. out_i = (e_i num_state + num_masked) / (e_i den_state + den_masked),
         *    e_i = exp(C - ci_i) brings the state to the query's constant */
        const double *ci = f->ci;
        const size_t *vis = f->vis;
        #pragma omp parallel for schedule(static) num_threads(nt) if (nr * dv > RK_PERF_PAR_MIN)
        for (size_t i = 0; i < nr; i++) {
            REAL *out_i = out->data + (i0 + i) * out->ld;
            double e = ns ? exp(C - ci[i]) : 0.0;
            double den = (ns ? e * (double)nsb[i * ls + dv] : 0.0) + deni[i];
            if ((vis[i] == 0 && !ns) || den == 0.0) {  /* no key, or every weight is 0 */
                for (size_t c = 0; c < dv; c++) out_i[c] = 0;
                continue;
            }
            for (size_t c = 0; c < dv; c++) {
                double num = (ns ? e * (double)nsb[i * ls + c] : 0.0) +
                             (wi ? (double)ni[i * dv + c] : 0.0);
                out_i[c] = (REAL)(num / den);
            }
        }

        /* 7. the masked keys join the state */
        if (wi) SFX(absorb)(f, nt, v, lo, wi, &C, cend, &ns);
        nk = hi;
    }
    /* the final state: every key 0 .. kv_len - 1 (keys no query saw join it now) */
    if (fin) {
        if ((rc = SFX(absorb_range)(f, nt, cfg, k, v, nk, kv_len, &C, &ns))) return rc;
        SFX(state_out)(f, init, kv_len, C, ns, fin);
    }
    return RK_OK;
}
