/* The batch execute of FAVOR+ and linear attention (lib/performer_exec.c), written once for
 * both precisions: performer_exec.c includes this body twice, with REAL = float and double
 * (and MAT, SFX, SCR, WST, GEMM, ROPE_APPLY to match), as GSL's templates do. The algorithm,
 * the stabiliser and the threading are described at the top of lib/performer.c.
 * Not a header of its own: include only from performer_exec.c. */
/* Features of w rows x (w, d) ld ldx into xf (w, F) (performer.h), for the forward and the
 * backward alike. */
int SFX(rk__perf_features)(rk__perf *f, int nt, const REAL *x, size_t ldx, size_t w,
                           int64_t pos0, size_t row0, int mode, double cin, double *h,
                           double *cc, REAL *xs, REAL *xf, const REAL **xo, size_t *ldo)
{
    size_t d = f->fm.d, m = f->fm.m, F = f->fm.F;
    if (f->rope_qk) {
        for (size_t t = 0; t < w; t++) memcpy(xs + t * d, x + t * ldx, d * sizeof(REAL));
        MAT xv = { xs, w, d, d };
        int rc = ROPE_APPLY(f->rope_qk, &xv, &xv, pos0, NULL, 0);
        if (rc) return rc;
        x = xs;
        ldx = d;
    }
    if (xo) {
        *xo = x;
        *ldo = ldx;
    }
    const REAL *u = x;                  /* the linear maps act on x itself */
    size_t ldu = ldx;
    if (m) {
        /* u (w, m) = x (w, d) . (sqrt(scale) W)^T */
        u = SCR(f)->u;
        ldu = m;
        GEMM(f->isa, nt, w, m, d, x, ldx, 1, WST(&f->fm), m, SCR(f)->u, m);
    }
    RK_PAR_FOR(w * (m + d) > RK_PERF_PAR_MIN, nt, t, w,
        double ss = 0.0;
        if (m)
            for (size_t c = 0; c < d; c++) ss += (double)x[t * ldx + c] * (double)x[t * ldx + c];
        h[t] = 0.5 * f->fm.scale * ss;
        if (mode != 2) cc[t] = SFX(rk__featmap_lmax)(&f->fm, u + t * ldu, h[t]);
    );
    /* |x'|^2 / 2 or a projection beyond the type's range (FAVOR+ only: the linear constants
     * are finite): the features of that row are not representable; NaN rows pass as NaN */
    for (size_t t = 0; t < w; t++) {
        if (isfinite(h[t]) && (mode == 2 || isfinite(cc[t]))) continue;
        const REAL *x_t = x + t * ldx;
        double big = 0.0;
        int finite = 1;
        for (size_t c = 0; c < d; c++) {
            finite &= isfinite(x_t[c]) != 0;
            if (fabs((double)x_t[c]) > big) big = fabs((double)x_t[c]);
        }
        if (finite)
            RK_FAIL(RK_ENONFINITE, "performer: %s row %zu: |x'|^2 / 2 or a projection w . x' "
                    "overflows %s (largest |x| = %g); FAVOR+ features exp(w . x' - |x'|^2 / 2) "
                    "of inputs this large are not representable%s", mode ? "key" : "query",
                    row0 + t, sizeof(REAL) == 4 ? "float32" : "float64", big,
                    sizeof(REAL) == 4 ? ": use the float64 path or scale them down" : "");
    }
    if (mode == 1) {
        double run = cin;
        for (size_t t = 0; t < w; t++) {
            if (cc[t] > run) run = cc[t];
            cc[t] = run;
        }
    }
    RK_PAR_FOR(w * F > RK_PERF_PAR_MIN, nt, t, w,
        SFX(rk__featmap_row)(&f->fm, u + t * ldu, h[t], cc[t], xf + t * F););
    return RK_OK;
}

/* Rows i0 .. i0+nr-1 with denominators den (vis: keys each sees, ns: keys in the state). For
 * maps whose features are all positive (elu+1, FAVOR+ positive and hyperbolic) a row that sees
 * keys has a positive denominator; 0 means every feature product underflowed (inputs whose
 * exponents spread beyond the type's range: q, k ~ -1e20 for elu+1), and the zero row would be
 * a silent wrong answer: RK_ENONFINITE naming the row. relu and trig rows may be 0 honestly. */
int SFX(rk__perf_den_check)(const rk__perf *f, const double *den, const size_t *vis, size_t ns,
                            size_t nr, size_t i0)
{
    int positive = f->fm.favor ? f->fm.kernel != RK_KERNEL_TRIG : f->fm.map == RK_MAP_ELU;
    if (!positive) return RK_OK;
    for (size_t i = 0; i < nr; i++)
        if (den[i] == 0.0 && (vis[i] || ns))
            RK_FAIL(RK_ENONFINITE, "%s: query row %zu: every feature product underflows %s "
                    "(the inputs' exponents spread beyond its range); the attention weights are "
                    "not representable with these features: scale q, k down%s",
                    f->fm.favor ? "performer" : "linear", i0 + i,
                    sizeof(REAL) == 4 ? "float32" : "float64",
                    sizeof(REAL) == 4 ? " or use the float64 path" : "");
    return RK_OK;
}

/* Keys j0 .. j0+w-1 into kf (unrotated) with prefix constants kc from cin, kfac_t =
 * exp(kc_t - cend) and zt = sum_t kfac_t kf_t, their share of z at the block's final constant. */
static int SFX(key_block)(rk__perf *f, int nt, const rk_attn_config *cfg, const MAT *k,
                          size_t j0, size_t w, double cin, double *cend)
{
    REAL *kf = SCR(f)->kf;
    size_t F = f->fm.F;
    int rc = SFX(rk__perf_features)(f, nt, k->data + j0 * k->ld, k->ld, w, rk__attn_kpos(cfg, j0),
                                    j0, 1, cin, f->kh, f->kc, SCR(f)->x, kf, NULL, NULL);
    if (rc) return rc;
    double ce = f->kc[w - 1];
    *cend = ce;
    double *kc = f->kc, *kfac = f->kfac;
    REAL *kfr = SCR(f)->kfr;
    for (size_t t = 0; t < w; t++) {
        kfac[t] = exp(kc[t] - ce);
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
    RK_PAR_FOR(w * F > RK_PERF_PAR_MIN, nt, t, w,
        REAL s = (REAL)(kfac[t] * f->vsc);
        if (s != 1) {
            _Pragma("omp simd")
            for (size_t r = 0; r < F; r++) kf[t * F + r] *= s;
        }
    );
    /* tmp (F, dv) = kf^T (F, w) . V[j0 .. j0+w) (w, dv) */
    GEMM(f->isa, nt, F, dv, w, kf, 1, F, v->data + j0 * v->ld, v->ld, tmp, dv);
    double *S = f->S, *z = f->z;
    const REAL *zt = SCR(f)->ztr;
    SFX(rk__perf_scale_add)(nt, S, e, tmp, F * dv);
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
    RK_PAR_FOR(nr * wi > RK_PERF_PAR_MIN, nt, i, nr,
        for (size_t j = 0; j < wi; j++)
            a[i * T + j] = lo + j < vis[i] ? (REAL)(a[i * T + j] * exp(kc[j] - ci[i])) : 0;
    );
}

/* S = e S + tmp (n values; e == 1, the constant did not grow: S += tmp, the same bits as a
 * multiplication by 1 would give, one multiplication fewer), pieces of RK_PERF_PIECE per thread. */
void SFX(rk__perf_scale_add)(int nt, double *S, double e, const REAL *tmp, size_t n)
{
    const size_t nb = (n + RK_PERF_PIECE - 1) / RK_PERF_PIECE;
    RK_PAR_FOR(n > RK_PERF_PAR_MIN, nt, b, nb,
        const size_t i1 = MIN(n, (b + 1) * RK_PERF_PIECE);
        if (e == 1.0) {
            _Pragma("omp simd")
            for (size_t i = b * RK_PERF_PIECE; i < i1; i++) S[i] += (double)tmp[i];
        } else {
            _Pragma("omp simd")
            for (size_t i = b * RK_PERF_PIECE; i < i1; i++) S[i] = e * S[i] + (double)tmp[i];
        }
    );
}

/* The values' scale for one execute (f->vsc): 1, unless the largest finite |v| of the keys used
 * is so large that a feature (up to 2^32 for the linear maps) times a value, summed over the
 * keys, could overflow the type although the result, a weighted mean of the values, is finite;
 * then a power of 2 that brings it to 2^56 (float) or 2^950 (double): exact, and undone on the
 * output and the state. */
static void SFX(value_scale)(rk__perf *f, const MAT *v, size_t nkeys)
{
    const int top = sizeof(REAL) == 4 ? 56 : 950;
    double vmax = 0.0;
    for (size_t j = 0; j < nkeys; j++)
        for (size_t c = 0; c < f->dv; c++) {
            double a = fabs((double)v->data[j * v->ld + c]);
            if (a > vmax && isfinite(a)) vmax = a;
        }
    int e = vmax > 0.0 ? ilogb(vmax) : 0;
    f->vsc = e > top ? ldexp(1.0, top - e) : 1.0;
}

/* The running state from init (NULL or empty: zero, no key); *C its constant, *ns its count
 * (nonzero: the state holds keys). */
static void SFX(state_in)(rk__perf *f, const rk_kv_state *init, double *C, size_t *ns)
{
    size_t F = f->fm.F, dv = f->dv;
    if (init && init->n) {
        for (size_t i = 0; i < F * dv; i++) f->S[i] = init->s[i] * f->vsc;
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
    for (size_t i = 0; i < F * dv; i++) fin->s[i] = f->S[i] / f->vsc;
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
    SFX(value_scale)(f, v, MIN(kv_len, p->cfg.n_kv));
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
    SFX(value_scale)(f, v, MIN(kv_len, cfg->n_kv));
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
        if ((rc = SFX(rk__perf_features)(f, nt, q->data + i0 * q->ld, q->ld, nr,
                                         rk__attn_qpos(cfg, i0), i0, 0, 0.0, f->qh, f->qc,
                                         SCR(f)->x, qf, NULL, NULL)))
            return rc;
        size_t wi = hi - lo;
        cend = C;
        if (wi && (rc = SFX(key_block)(f, nt, cfg, k, lo, wi, ns ? C : -INFINITY, &cend)))
            return rc;
        for (size_t i = 0; i < nr; i++) {
            f->vis[i] = rk__attn_visible(cfg, i0 + i, kv_len);
            f->ci[i] = f->vis[i] > lo ? f->kc[f->vis[i] - 1 - lo] : C;
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
            if (f->vsc != 1.0)               /* the denominators have been taken from a */
                for (size_t i = 0; i < nr * RK_PERF_QCHUNK; i++) aw[i] *= (REAL)f->vsc;
            /* one product over all masked keys (the weights of keys a row does not see are 0:
             * a 0 term leaves a fused multiply-add chain as it was), then any row that came out
             * NaN or Inf again over only the keys it sees: 0 times a NaN or Inf value row it
             * must not see would otherwise reach it */
            GEMM(f->isa, nt, nr, dv, wi, aw, RK_PERF_QCHUNK, 1, v->data + lo * v->ld, v->ld, ni, dv);
            for (size_t i = 0; i < nr; i++) {
                int bad = 0;
                for (size_t c = 0; c < dv; c++) bad |= !isfinite(ni[i * dv + c]);
                if (!bad) continue;
                size_t kv = f->vis[i] > lo ? (f->vis[i] < hi ? f->vis[i] : hi) - lo : 0;
                if (kv)
                    GEMM(f->isa, 1, 1, dv, kv, aw + i * RK_PERF_QCHUNK, RK_PERF_QCHUNK, 1,
                         v->data + lo * v->ld, v->ld, ni + i * dv, dv);
                else
                    memset(ni + i * dv, 0, dv * sizeof *ni);
            }
        }

        /* 6. out_i = (e_i num_state + num_masked) / (e_i den_state + den_masked),
         *    e_i = exp(C - ci_i) brings the state to the query's constant */
        const double *ci = f->ci;
        const size_t *vis = f->vis;
        RK_PAR_FOR(nr * dv > RK_PERF_PAR_MIN, nt, i, nr,
            REAL *out_i = out->data + (i0 + i) * out->ld;
            double e = ns ? exp(C - ci[i]) : 0.0;
            double den = (ns ? e * (double)nsb[i * ls + dv] : 0.0) + deni[i];
            deni[i] = den;
            f->over[i] = 0;
            if ((vis[i] == 0 && !ns) || den == 0.0) {  /* no key, or every weight is 0 */
                for (size_t c = 0; c < dv; c++) out_i[c] = 0;
                continue;
            }
            for (size_t c = 0; c < dv; c++) {
                double num = (ns ? e * (double)nsb[i * ls + c] : 0.0) +
                             (wi ? (double)ni[i * dv + c] : 0.0);
                double o = f->vsc == 1.0 ? num / den : num / den / f->vsc;
                out_i[c] = (REAL)o;
                f->over[i] |= isfinite(num) && isfinite(den) && !isfinite(out_i[c]);
            }
        );
        /* trig weights are signed: num / den may exceed every value, and the type */
        for (size_t i = 0; i < nr; i++)
            if (f->over[i])
                RK_FAIL(RK_ENONFINITE, "performer: query row %zu: the result exceeds the %s "
                        "range (the trig features' weights are signed, so a row is not a mean "
                        "of the values)%s", i0 + i, sizeof(REAL) == 4 ? "float32" : "float64",
                        sizeof(REAL) == 4 ? ": use the float64 path" : "");

        if ((rc = SFX(rk__perf_den_check)(f, deni, vis, ns, nr, i0))) return rc;

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
