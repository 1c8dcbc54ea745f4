/* `ropekit theory`: RoFormer eq. (19), RoPE with linear attention (elu+1 and FAVOR+ features):
 * the numerator's shift invariance (and, beside it, the pre-map qk form's lack of it), the
 * positive denominator, and the linear-time execute against the quadratic definition. */
#include "theory_internal.h"

#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>

/* ---- eq. (19): RoPE with linear attention --------------------------------------------------- */

#define E19_N  80          /* tokens: more than one causal chunk of the library (64)          */
#define E19_D  8
#define E19_DV 4
#define E19_M  16          /* FAVOR+ projections                                               */

typedef struct {
    double Q[E19_N * E19_D], K[E19_N * E19_D], V[E19_N * E19_DV];
} e19_data;

static int e19_inputs(const theory_config *cfg, unsigned long tag, e19_data *x)
{
    gsl_rng *r = rng_for(cfg, tag);
    if (!r) return RK_ENOMEM;
    randn(r, x->Q, E19_N * E19_D);
    randn(r, x->K, E19_N * E19_D);
    randn(r, x->V, E19_N * E19_DV);
    gsl_rng_free(r);
    return RK_OK;
}

/* kind 0: linear elu+1 (F = d); kind 1: FAVOR+ positive, m = 16 (trig with THEORY_FEAT_TRIG
 * when trig_ok). rope = features, positions from pos_offset. */
static int e19_plan(const theory_config *cfg, int kind, int causal, int64_t off, int trig_ok,
                    rk_attn **out)
{
    rk_attn_config c = {
        .kind = kind ? RK_PERFORMER : RK_LINEAR, .n_q = E19_N, .n_kv = E19_N, .d = E19_D,
        .d_v = E19_DV, .causal = causal, .rope = RK_ROPE_FEATURES, .pos_offset = off,
        .n_features = kind ? E19_M : 0, .seed = cfg->seed + 5000000UL, .nthreads = 1,
        .kernel = kind && trig_ok && cfg->feat == THEORY_FEAT_TRIG ? RK_KERNEL_TRIG
                                                                   : RK_KERNEL_POSITIVE,
    };
    return rk_attn_create(out, &c);
}

/* Unrotated features of the N rows of X (N x d) into Phi (N x F). */
static int e19_features(rk_attn *p, const double *X, double *Phi)
{
    size_t F = rk_attn_feature_dim(p);
    rk_matd x = rk_matd_view((double *)X, E19_N, E19_D, E19_D), phi = rk_matd_view(Phi, E19_N, F, F);
    return rk_attn_features_d(p, &x, NULL, &phi);
}

/* (19): the numerator weight (R_m phi(q)).(R_n phi(k)) is invariant to a common shift; beside
 * it, the qk form phi(R_m q).phi(R_n k) is not (fixed draw of the projection). */
int theory__chk_e19_shift(const theory_config *cfg, theory_result *res)
{
    const theory_rope *R = cfg->rope;
    e19_data x;
    if (e19_inputs(cfg, 13, &x)) return RK_ENOMEM;
    gsl_rng *r = rng_for(cfg, 113);
    rk_attn *p[2] = { NULL, NULL };
    double *Pq = malloc(E19_N * 2 * E19_M * sizeof *Pq), *Pk = malloc(E19_N * 2 * E19_M * sizeof *Pk);
    int err = RK_OK;
    if (!r || !Pq || !Pk) { err = RK_ENOMEM; goto done; }
    double a[2 * E19_M], b[2 * E19_M], a2[2 * E19_M], b2[2 * E19_M], worst = 0.0;
    const int64_t P = 1000000;
    size_t Fmax = 0;
    for (int kind = 0; kind < 2; kind++) {
        TRY(e19_plan(cfg, kind, 0, 0, 0, &p[kind]));
        size_t F = rk_attn_feature_dim(p[kind]);
        if (F > Fmax) Fmax = F;
        TRY(e19_features(p[kind], x.Q, Pq));
        TRY(e19_features(p[kind], x.K, Pk));
        for (size_t t = 0; t < cfg->draws; t++) {
            size_t i = gsl_rng_uniform_int(r, E19_N), j = gsl_rng_uniform_int(r, E19_N);
            int64_t m = rpos(r, P), n = rpos(r, P), s = rpos(r, P);
            TRY(rot1(R, RK_ROPE_INTERLEAVED, Pq + i * F, a, F, m));
            TRY(rot1(R, RK_ROPE_INTERLEAVED, Pk + j * F, b, F, n));
            TRY(rot1(R, RK_ROPE_INTERLEAVED, Pq + i * F, a2, F, m + s));
            TRY(rot1(R, RK_ROPE_INTERLEAVED, Pk + j * F, b2, F, n + s));
            double e = fabs(dot(a, b, F) - dot(a2, b2, F)) / (nrm(Pq + i * F, F) * nrm(Pk + j * F, F));
            if (!(e <= worst)) worst = e;
        }
    }
    res->equation = "(19) num";
    res->prec = "f64";
    setf(res->what, sizeof res->what, "numerator weight (R_m phi(q)).(R_n phi(k)) under a common shift s: "
         "max |w(m+s,n+s) - w(m,n)|/(|phi q||phi k|), %zu draws per map (elu+1 F=8; FAVOR+ F=16), "
         "|m|,|n|,|s| <= 1e6", cfg->draws);
    res->measured = worst;
    res->cmp = THEORY_LE;
    res->tol = 2 * erot((double)P) + 2 * erot(2.0 * (double)P) + 2 * gam((double)Fmax, U);
    setf(res->why, sizeof res->why, "R_{m+s}^T R_{n+s} = R_{n-m} exactly, so only rounding: 4 rotations "
         "within e(p)|phi| and 2 dots within g_F: tol = 2 e(1e6) + 2 e(2e6) + 2 g_16");
done:
    gsl_rng_free(r);
    rk_attn_destroy(p[0]);
    rk_attn_destroy(p[1]);
    free(Pq);
    free(Pk);
    return err;
}

int theory__chk_e19_qk(const theory_config *cfg, theory_result *res)
{
    const theory_rope *R = cfg->rope;
    e19_data x;
    if (e19_inputs(cfg, 13, &x)) return RK_ENOMEM;
    gsl_rng *r = rng_for(cfg, 114);
    rk_attn *p = NULL;
    size_t nd = cfg->draws;
    double *rel = malloc(nd * sizeof *rel);
    int err = RK_OK;
    if (!r || !rel) { err = RK_ENOMEM; goto done; }
    TRY(e19_plan(cfg, 1, 0, 0, 0, &p));
    double qr[4][E19_D], f[4][E19_M];
    for (size_t t = 0; t < nd; t++) {
        size_t i = gsl_rng_uniform_int(r, E19_N), j = gsl_rng_uniform_int(r, E19_N);
        int64_t m = (int64_t)gsl_rng_uniform_int(r, 4096), n = (int64_t)gsl_rng_uniform_int(r, 4096);
        int64_t s = 1 + (int64_t)gsl_rng_uniform_int(r, 1000);
        TRY(rot1(R, RK_ROPE_INTERLEAVED, x.Q + i * E19_D, qr[0], E19_D, m));
        TRY(rot1(R, RK_ROPE_INTERLEAVED, x.K + j * E19_D, qr[1], E19_D, n));
        TRY(rot1(R, RK_ROPE_INTERLEAVED, x.Q + i * E19_D, qr[2], E19_D, m + s));
        TRY(rot1(R, RK_ROPE_INTERLEAVED, x.K + j * E19_D, qr[3], E19_D, n + s));
        rk_matd xv = rk_matd_view(&qr[0][0], 4, E19_D, E19_D), fv = rk_matd_view(&f[0][0], 4, E19_M, E19_M);
        TRY(rk_attn_features_d(p, &xv, NULL, &fv));
        double w = dot(f[0], f[1], E19_M), w2 = dot(f[2], f[3], E19_M);
        rel[t] = fabs(w2 - w) / w;
    }
    gsl_sort(rel, 1, nd);
    res->equation = "(19) qk form";
    res->prec = "f64";
    setf(res->what, sizeof res->what, "figure: RoPE before the FAVOR+ map, phi(R_m q).phi(R_n k) under a "
         "common shift s in 1..1000: median |w(m+s,n+s) - w(m,n)|/w(m,n), %zu draws, m = 16, one "
         "projection", nd);
    res->measured = gsl_stats_median_from_sorted_data(rel, 1, nd);
    res->cmp = THEORY_INFO;
    res->tol = NAN;
    setf(res->detail, sizeof res->detail, "5%%..95%%: %.3g .. %.3g, max %.3g: relative only in "
         "expectation over the projection (docs/theory.md#eq-19)",
         gsl_stats_quantile_from_sorted_data(rel, 1, nd, 0.05),
         gsl_stats_quantile_from_sorted_data(rel, 1, nd, 0.95), rel[nd - 1]);
    setf(res->why, sizeof res->why, "not a check: omega . (R_m q) depends on m itself, so eq. 19's "
         "exact shift invariance does not hold for the performer-pytorch (pre-map) variant");
done:
    gsl_rng_free(r);
    rk_attn_destroy(p);
    free(rel);
    return err;
}

/* (19): the denominator phi(q_m).sum_n phi(k_n) of unrotated positive features stays > 0. */
int theory__chk_e19_den(const theory_config *cfg, theory_result *res)
{
    e19_data x;
    if (e19_inputs(cfg, 15, &x)) return RK_ENOMEM;
    rk_attn *p = NULL;
    double *Pq = malloc(E19_N * 2 * E19_M * sizeof *Pq), *Pk = malloc(E19_N * 2 * E19_M * sizeof *Pk);
    int err = RK_OK;
    if (!Pq || !Pk) { err = RK_ENOMEM; goto done; }
    double worst = INFINITY;
    const char *kname[2] = { "elu+1", cfg->feat == THEORY_FEAT_TRIG ? "FAVOR+ trig" : "FAVOR+ positive" };
    int wk = 0;
    for (int kind = 0; kind < 2; kind++) {
        TRY(e19_plan(cfg, kind, 0, 0, 1, &p));
        size_t F = rk_attn_feature_dim(p);
        TRY(e19_features(p, x.Q, Pq));
        TRY(e19_features(p, x.K, Pk));
        for (size_t i = 0; i < E19_N; i++) {
            double den = 0.0, sc = 0.0;
            for (size_t j = 0; j < E19_N; j++) {
                den += dot(Pq + i * F, Pk + j * F, F);
                sc += nrm(Pq + i * F, F) * nrm(Pk + j * F, F);
                /* causal prefixes (j <= i) and the full sum: every partial sum must be > 0 */
                if ((j == i || j == E19_N - 1) && den / sc < worst) { worst = den / sc; wk = kind; }
            }
        }
        rk_attn_destroy(p);
        p = NULL;
    }
    res->equation = "(19) den";
    res->prec = "f64";
    setf(res->what, sizeof res->what, "denominator sum_n phi(q_m).phi(k_n) (unrotated): smallest value "
         "over queries, causal and full, relative to sum |phi q||phi k|; %d tokens, elu+1 and %s",
         E19_N, kname[1]);
    res->measured = worst;
    res->cmp = THEORY_GT;
    res->tol = 0.0;
    setf(res->detail, sizeof res->detail, "smallest with %s", kname[wk]);
    setf(res->why, sizeof res->why, "positive maps (exp, elu+1 > 0): every term is > 0 and sums of "
         "positive floats cannot cancel, so > 0 holds exactly (barring underflow of every term); "
         "trigonometric features break it");
done:
    rk_attn_destroy(p);
    free(Pq);
    free(Pk);
    return err;
}

/* (19): the library's linear-time execute equals the quadratic definition computed here with the
 * RoPE under test: out_m = sum_n (R_m phi q_m).(R_n phi k_n) v_n / sum_n phi q_m . phi k_n. */
static int e19_linear(const theory_config *cfg, theory_result *res, int f32)
{
    const theory_rope *R = cfg->rope;
    e19_data x;
    if (e19_inputs(cfg, f32 ? 17 : 16, &x)) return RK_ENOMEM;
    if (f32) {   /* the float path sees float inputs; the reference uses the same values */
        for (size_t i = 0; i < E19_N * E19_D; i++) { x.Q[i] = (float)x.Q[i]; x.K[i] = (float)x.K[i]; }
        for (size_t i = 0; i < E19_N * E19_DV; i++) x.V[i] = (float)x.V[i];
    }
    rk_attn *p = NULL;
    size_t FM = 2 * E19_M;
    double *Pq = malloc(E19_N * FM * sizeof *Pq), *Pk = malloc(E19_N * FM * sizeof *Pk);
    double *Rq = malloc(E19_N * FM * sizeof *Rq), *Rk = malloc(E19_N * FM * sizeof *Rk);
    double *out = malloc(E19_N * E19_DV * sizeof *out);
    float *qf = malloc(E19_N * E19_D * sizeof *qf), *kf = malloc(E19_N * E19_D * sizeof *kf);
    float *vf = malloc(E19_N * E19_DV * sizeof *vf), *of = malloc(E19_N * E19_DV * sizeof *of);
    int64_t pos[E19_N];
    int err = RK_OK;
    if (!Pq || !Pk || !Rq || !Rk || !out || !qf || !kf || !vf || !of) { err = RK_ENOMEM; goto done; }
    for (size_t i = 0; i < E19_N * E19_D; i++) { qf[i] = (float)x.Q[i]; kf[i] = (float)x.K[i]; }
    for (size_t i = 0; i < E19_N * E19_DV; i++) vf[i] = (float)x.V[i];
    double worst = 0.0, kappa = 0.0, hmax = 0.0, up = f32 ? UF : U;
    const int64_t offs[2] = { 0, 1000000 - E19_N };
    char wcase[64] = "";
    for (int kind = 0; kind < 2; kind++)
        for (int causal = 0; causal < 2; causal++)
            for (int oi = 0; oi < 2; oi++) {
                TRY(e19_plan(cfg, kind, causal, offs[oi], 0, &p));
                size_t F = rk_attn_feature_dim(p);
                const rk_attn_config *ac = rk_attn_get_config(p);
                if (kind == 1) {       /* kappa = max_r sum_c |w_rc x'_c|, h = |x'|^2/2 */
                    size_t mm, dd;
                    const float *W = rk_attn_proj(p, &mm, &dd);
                    double sq = sqrt(ac->scale);
                    for (size_t t = 0; t < 2 * E19_N; t++) {
                        const double *row = t < E19_N ? x.Q + t * E19_D : x.K + (t - E19_N) * E19_D;
                        double hh = 0.5 * ac->scale * dot(row, row, E19_D);
                        if (hh > hmax) hmax = hh;
                        for (size_t rr = 0; rr < mm; rr++) {
                            double s = 0.0;
                            for (size_t c = 0; c < dd; c++) s += fabs((double)W[rr * dd + c] * sq * row[c]);
                            if (s > kappa) kappa = s;
                        }
                    }
                }
                TRY(e19_features(p, x.Q, Pq));
                TRY(e19_features(p, x.K, Pk));
                for (size_t t = 0; t < E19_N; t++) pos[t] = offs[oi] + (int64_t)t;
                rk_matd pqv = rk_matd_view(Pq, E19_N, F, F), pkv = rk_matd_view(Pk, E19_N, F, F);
                rk_matd rqv = rk_matd_view(Rq, E19_N, F, F), rkv = rk_matd_view(Rk, E19_N, F, F);
                TRY(R->apply_d(R, RK_ROPE_INTERLEAVED, &pqv, &rqv, pos));
                TRY(R->apply_d(R, RK_ROPE_INTERLEAVED, &pkv, &rkv, pos));
                if (f32) {
                    rk_mat q = rk_mat_view(qf, E19_N, E19_D, E19_D), k = rk_mat_view(kf, E19_N, E19_D, E19_D);
                    rk_mat v = rk_mat_view(vf, E19_N, E19_DV, E19_DV), o = rk_mat_view(of, E19_N, E19_DV, E19_DV);
                    TRY(rk_attn_execute(p, &q, &k, &v, &o, RK_ALL_KEYS));
                    for (size_t i = 0; i < E19_N * E19_DV; i++) out[i] = of[i];
                } else {
                    rk_matd q = rk_matd_view(x.Q, E19_N, E19_D, E19_D), k = rk_matd_view(x.K, E19_N, E19_D, E19_D);
                    rk_matd v = rk_matd_view(x.V, E19_N, E19_DV, E19_DV), o = rk_matd_view(out, E19_N, E19_DV, E19_DV);
                    TRY(rk_attn_execute_d(p, &q, &k, &v, &o, RK_ALL_KEYS));
                }
                for (size_t i = 0; i < E19_N; i++) {
                    size_t vis = causal ? i + 1 : E19_N;
                    double num[E19_DV] = { 0 }, den = 0.0, sc = 0.0;
                    for (size_t j = 0; j < vis; j++) {
                        double w = dot(Rq + i * F, Rk + j * F, F), vmax = 0.0;
                        den += dot(Pq + i * F, Pk + j * F, F);
                        for (size_t c = 0; c < E19_DV; c++) {
                            num[c] += w * x.V[j * E19_DV + c];
                            if (fabs(x.V[j * E19_DV + c]) > vmax) vmax = fabs(x.V[j * E19_DV + c]);
                        }
                        sc += nrm(Pq + i * F, F) * nrm(Pk + j * F, F) * vmax;
                    }
                    for (size_t c = 0; c < E19_DV; c++) {
                        double e = fabs(out[i * E19_DV + c] - num[c] / den) / (sc / den);
                        if (!(e <= worst)) {
                            worst = e;
                            setf(wcase, sizeof wcase, "%s %s offset %lld", kind ? "FAVOR+" : "elu+1",
                                 causal ? "causal" : "full", (long long)offs[oi]);
                        }
                    }
                }
                rk_attn_destroy(p);
                p = NULL;
            }
    res->equation = "(19) linear";
    res->prec = f32 ? "f32" : "f64";
    setf(res->what, sizeof res->what, "linear-time rk_attn_execute%s (rope = features) vs the O(N^2) sum "
         "of eq. 19 with the RoPE under test: max |diff|/(sum|phi q||phi k||v|/den), N = %d, d = %d, "
         "elu+1 and FAVOR+ (m = %d), full and causal, offsets 0 and %lld",
         f32 ? "" : "_d", E19_N, E19_D, E19_M, (long long)offs[1]);
    res->measured = worst;
    res->cmp = THEORY_LE;
    double phie = ((E19_D + 6) * kappa + 3 * hmax + 4) * up;
    double ep = f32 ? erot_f(1e6) : erot(1e6);
    res->tol = 2 * (2 * phie + 2 * ep + 2 * gam(2 * E19_M, up) + 2 * gam(E19_N, up) + 8 * up);
    setf(res->detail, sizeof res->detail, "worst: %s; kappa = %.3g, max |x'|^2/2 = %.3g", wcase, kappa, hmax);
    setf(res->why, sizeof res->why, "each feature within ((d+6) kappa + 3h + 4) u (projection dot, "
         "exponent, exp), rotations e(P), dots and sums g_F, g_N, stabiliser rescales 8u; a weight "
         "error relative to |phi q||phi k|, the output twice that (num and den): tol = 2 (2 phi_err + "
         "2 e(P) + 2 g_2m + 2 g_N + 8u), u = %s", f32 ? "2^-24" : "2^-53");
done:
    rk_attn_destroy(p);
    free(Pq); free(Pk); free(Rq); free(Rk); free(out);
    free(qf); free(kf); free(vf); free(of);
    return err;
}
int theory__chk_e19_lin_d(const theory_config *c, theory_result *r)
{
    return e19_linear(c, r, 0);
}
int theory__chk_e19_lin_f(const theory_config *c, theory_result *r)
{
    return e19_linear(c, r, 1);
}
