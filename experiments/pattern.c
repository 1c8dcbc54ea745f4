/* Attention patterns of position encodings: scores and weights against relative distance, the
 * shift test and the library check. Definitions in pattern.h. */
#include "pattern.h"
#include "ropekit.h"
#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <gsl/gsl_version.h>

const char *const pattern_enc_names[] = {
    "none", "sinusoidal", "t5", "alibi", "rope", "xpos", "linear-rope-eq19", "linear-rope-qk",
    "rpe-fft", NULL,
};

int pattern_is_linear(pattern_enc e) { return e >= PAT_LIN_EQ19 && e < PAT_N; }

/* Everything one encoding's run holds. */
typedef struct {
    const pattern_cfg *c;
    pattern_enc e;
    size_t   n, d, F;
    double   scale;
    rk_matd  q, k;           /* (1, d), (n, d): the draw                                    */
    rk_matd  qe, ke;         /* encoded copies (sinusoidal, rope, xpos)                      */
    double  *bias;           /* (n): offsets -(n-1) .. 0, i.e. key j reads bias[j] (t5, alibi,
                                rpe-fft)                                                     */
    double  *zeta;           /* (d/2) xpos                                                   */
    int64_t *kpos;           /* (n) key positions                                            */
    rk_rope *rope;           /* rope, xpos                                                   */
    rk_attn *feat;           /* FAVOR+ plan whose features the linear family uses            */
    rk_matd  phq, phk, phqr, phkr;   /* (1, F), (n, F); numerator (rotated) versions         */
    rk_attn *lib;            /* the library check: n_q = 1, n_kv = n, d_v = n               */
    rk_matd  eye, wlib;      /* V = I (n, n); out (1, n)                                      */
    double  *s0, *w0, *s1, *w1;      /* (n) scores, weights at P = 0 and P = shift           */
    double  *S, *W;          /* (draws, n) scores and weights at P = 0                        */
    double  *col;            /* (draws) one distance's values                                 */
} prun;

static void prun_free(prun *r)
{
    rk_matd *mats[] = { &r->q, &r->k, &r->qe, &r->ke, &r->phq, &r->phk, &r->phqr, &r->phkr,
                        &r->eye, &r->wlib };
    for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) rk_matd_free(mats[i]);
    free(r->bias); free(r->zeta); free(r->kpos);
    free(r->s0); free(r->w0); free(r->s1); free(r->w1); free(r->S); free(r->W); free(r->col);
    rk_rope_destroy(r->rope);
    rk_attn_destroy(r->feat);
    rk_attn_destroy(r->lib);
}

void pattern_res_free(pattern_res *r)
{
    if (!r) return;
    double *a[] = { r->mean_score, r->score_median, r->score_q05, r->score_q95, r->mean_weight,
                    r->weight_median, r->weight_q05, r->weight_q95, r->shift_diff };
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) free(a[i]);
    memset(r, 0, sizeof *r);
}

/* The library plan for the check (and, for the linear family, the feature plan). */
static int make_plans(prun *r)
{
    const pattern_cfg *c = r->c;
    const size_t n = r->n, d = r->d;
    rk_attn_config lc = { .kind = RK_SOFTMAX, .n_q = 1, .n_kv = n, .d = d, .d_v = n,
                          .causal = 1, .nthreads = 1 };
    int rc;
    switch (r->e) {
    case PAT_T5: case PAT_ALIBI:
        lc.bias = r->bias;
        lc.bias_len = n;
        break;
    case PAT_ROPE:
        lc.rope = RK_ROPE_QK;
        break;
    case PAT_XPOS:
        lc.rope = RK_ROPE_QK;
        lc.xpos_scale_base = c->xpos_scale_base;
        break;
    case PAT_LIN_EQ19: case PAT_LIN_QK: case PAT_RPE_FFT: {
        rk_attn_config fc = { .kind = RK_PERFORMER, .n_q = 1, .n_kv = n, .d = d, .d_v = n,
                              .causal = 1, .nthreads = 1, .n_features = c->m, .seed = c->seed };
        fc.rope = r->e == PAT_LIN_EQ19 ? RK_ROPE_FEATURES : r->e == PAT_LIN_QK ? RK_ROPE_QK
                                                                                : RK_ROPE_NONE;
        if ((rc = rk_attn_create(&r->feat, &fc))) return rc;
        r->F = rk_attn_feature_dim(r->feat);
        lc = fc;
        if (r->e == PAT_RPE_FFT) {
            lc.kind = RK_RPE_FFT;
            lc.bias = r->bias;
            lc.bias_len = n;
        }
        break;
    }
    default:
        break;
    }
    if (c->checks && (rc = rk_attn_create(&r->lib, &lc))) return rc;
    if (r->feat) {
        if ((rc = rk_matd_alloc(&r->phq, 1, r->F)) || (rc = rk_matd_alloc(&r->phk, n, r->F)) ||
            (rc = rk_matd_alloc(&r->phqr, 1, r->F)) || (rc = rk_matd_alloc(&r->phkr, n, r->F)))
            return rc;
    }
    return RK_OK;
}

/* One draw: q, then the n noise rows, keys k_j = corr q + sqrt(1 - corr^2) g_j. */
static void draw(prun *r, gsl_rng *rng)
{
    const size_t d = r->d;
    const double a = r->c->corr, b = sqrt(1.0 - a * a);
    for (size_t t = 0; t < d; t++) r->q.data[t] = gsl_ran_gaussian_ziggurat(rng, 1.0);
    for (size_t j = 0; j < r->n; j++)
        for (size_t t = 0; t < d; t++)
            r->k.data[j * d + t] = a * r->q.data[t] + b * gsl_ran_gaussian_ziggurat(rng, 1.0);
}

static double dot(const double *x, const double *y, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += x[i] * y[i];
    return s;
}

/* Scores and weights of the current draw with the query at P + n - 1, keys at P + j. */
static int scores(prun *r, int64_t P, double *s, double *w)
{
    const size_t n = r->n, d = r->d;
    const int64_t qpos = P + (int64_t)n - 1;
    int rc = RK_OK;
    for (size_t j = 0; j < n; j++) r->kpos[j] = P + (int64_t)j;
    if (!pattern_is_linear(r->e)) {
        memcpy(r->qe.data, r->q.data, d * sizeof(double));
        memcpy(r->ke.data, r->k.data, n * d * sizeof(double));
        if (r->e == PAT_SINUSOIDAL) {
            if ((rc = rk_sinusoidal_add_d(&r->qe, qpos, 0.0)) ||
                (rc = rk_sinusoidal_add_d(&r->ke, P, 0.0)))
                return rc;
        } else if (r->e == PAT_ROPE || r->e == PAT_XPOS) {
            if ((rc = rk_rope_apply_d(r->rope, &r->q, &r->qe, qpos, NULL, 0)) ||
                (rc = rk_rope_apply_d(r->rope, &r->k, &r->ke, P, NULL, 0)))
                return rc;
        }
        double mx = -INFINITY;
        for (size_t j = 0; j < n; j++) {
            const double *k_j = r->ke.data + j * d;
            double v;
            if (r->e == PAT_XPOS) {       /* pair i times zeta_i^(dist / B), interleaved pairs */
                double dist = (double)(n - 1 - j);
                v = 0.0;
                for (size_t i = 0; i < d / 2; i++)
                    v += pow(r->zeta[i], dist / r->c->xpos_scale_base) *
                         (r->qe.data[2 * i] * k_j[2 * i] + r->qe.data[2 * i + 1] * k_j[2 * i + 1]);
            } else {
                v = dot(r->qe.data, k_j, d);
            }
            s[j] = r->scale * v + (r->bias ? r->bias[j] : 0.0);
            if (s[j] > mx) mx = s[j];
        }
        double sum = 0.0;
        for (size_t j = 0; j < n; j++) sum += (w[j] = exp(s[j] - mx));
        for (size_t j = 0; j < n; j++) w[j] /= sum;
        return RK_OK;
    }
    // linear family: features at the positions (numerator) and without them (denominator)
    const int64_t *qp = r->e == PAT_RPE_FFT ? NULL : &qpos, *kp = r->e == PAT_RPE_FFT ? NULL : r->kpos;
    if ((rc = rk_attn_features_d(r->feat, &r->q, qp, &r->phqr)) ||
        (rc = rk_attn_features_d(r->feat, &r->k, kp, &r->phkr)))
        return rc;
    const rk_matd *dq = &r->phqr, *dk = &r->phkr;
    if (r->e == PAT_LIN_EQ19) {          /* eq. 19: the denominator is not rotated */
        if ((rc = rk_attn_features_d(r->feat, &r->q, NULL, &r->phq)) ||
            (rc = rk_attn_features_d(r->feat, &r->k, NULL, &r->phk)))
            return rc;
        dq = &r->phq;
        dk = &r->phk;
    }
    double den = 0.0;
    for (size_t j = 0; j < n; j++) {
        double c = r->e == PAT_RPE_FFT ? exp(r->bias[j]) : 1.0;
        s[j] = c * dot(r->phqr.data, r->phkr.data + j * r->F, r->F);
        den += c * dot(dq->data, dk->data + j * r->F, r->F);
    }
    for (size_t j = 0; j < n; j++) w[j] = den != 0.0 ? s[j] / den : 0.0;
    return RK_OK;
}

/* The library's weights for the current draw at P = 0 against w; returns max |difference|. */
static int library_check(prun *r, const double *w, double *maxdiff)
{
    const rk_matd *q = r->e == PAT_SINUSOIDAL ? &r->qe : &r->q;
    const rk_matd *k = r->e == PAT_SINUSOIDAL ? &r->ke : &r->k;
    int rc = rk_attn_execute_d(r->lib, q, k, &r->eye, &r->wlib, RK_ALL_KEYS);
    if (rc) return rc;
    for (size_t j = 0; j < r->n; j++) {
        double e = fabs(r->wlib.data[j] - w[j]);
        if (!(e <= *maxdiff)) *maxdiff = e;
    }
    return RK_OK;
}

static int run(prun *r, pattern_res *out)
{
    const pattern_cfg *c = r->c;
    const size_t n = r->n, d = r->d, D = c->draws;
    int rc;
    r->scale = 1.0 / sqrt((double)d);
    if ((rc = rk_matd_alloc(&r->q, 1, d)) || (rc = rk_matd_alloc(&r->k, n, d)) ||
        (rc = rk_matd_alloc(&r->qe, 1, d)) || (rc = rk_matd_alloc(&r->ke, n, d)) ||
        (rc = rk_matd_alloc(&r->eye, n, n)) || (rc = rk_matd_alloc(&r->wlib, 1, n)))
        return rc;
    for (size_t j = 0; j < n; j++) r->eye.data[j * n + j] = 1.0;
    r->kpos = malloc(n * sizeof *r->kpos);
    r->s0 = malloc(n * sizeof(double)); r->w0 = malloc(n * sizeof(double));
    r->s1 = malloc(n * sizeof(double)); r->w1 = malloc(n * sizeof(double));
    r->S = malloc(D * n * sizeof(double)); r->W = malloc(D * n * sizeof(double));
    r->col = malloc(D * sizeof(double));
    if (!r->kpos || !r->s0 || !r->w0 || !r->s1 || !r->w1 || !r->S || !r->W || !r->col)
        return RK_ENOMEM;
    if (r->e == PAT_T5 || r->e == PAT_ALIBI || r->e == PAT_RPE_FFT) {
        if (!(r->bias = malloc(n * sizeof(double)))) return RK_ENOMEM;
        rc = r->e == PAT_T5 ? rk_bias_t5(r->bias, 1, n, NULL, 0, 0, 0)
                            : rk_bias_alibi(r->bias, 1, n, c->alibi_slope);
        if (rc) return rc;
    }
    if (r->e == PAT_ROPE || r->e == PAT_XPOS) {
        rk_rope_config rc_ = { .dim = d };
        if ((rc = rk_rope_create(&r->rope, &rc_))) return rc;
    }
    if (r->e == PAT_XPOS) {
        if (!(r->zeta = malloc(d / 2 * sizeof(double)))) return RK_ENOMEM;
        if ((rc = rk_xpos_zeta(r->zeta, d, 0.0))) return rc;
    }
    if ((rc = make_plans(r))) return rc;

    // draws: scores and weights at P = 0 and at the shift; the library check on the first ones
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (!rng) return RK_ENOMEM;
    gsl_rng_set(rng, c->seed);
    out->check_max = 0.0;
    out->score_absmax = 0.0;
    double *sd = out->shift_diff;
    for (size_t t = 0; t < n; t++) sd[t] = 0.0;
    for (size_t dr = 0; dr < D && !rc; dr++) {
        draw(r, rng);
        if ((rc = scores(r, 0, r->s0, r->w0))) break;
        if (dr < c->checks && (rc = library_check(r, r->w0, &out->check_max))) break;
        if ((rc = scores(r, c->shift, r->s1, r->w1))) break;
        for (size_t j = 0; j < n; j++) {
            size_t dist = n - 1 - j;
            r->S[dr * n + dist] = r->s0[j];
            r->W[dr * n + dist] = r->w0[j];
            double e = fabs(r->s1[j] - r->s0[j]);
            if (!(e <= sd[dist])) sd[dist] = e;
            if (fabs(r->s0[j]) > out->score_absmax) out->score_absmax = fabs(r->s0[j]);
        }
    }
    gsl_rng_free(rng);
    if (rc) return rc;

    // per distance: mean, median and 5% / 95% quantiles over the draws
    out->shift_max = 0.0;
    for (size_t t = 0; t < n; t++) {
        if (!(sd[t] <= out->shift_max)) out->shift_max = sd[t];
        for (int which = 0; which < 2; which++) {
            const double *A = which ? r->W : r->S;
            double mean = 0.0;
            for (size_t dr = 0; dr < D; dr++) mean += (r->col[dr] = A[dr * n + t]);
            mean /= (double)D;
            double q05 = stats_quantile(r->col, D, 0.05), q95 = stats_quantile(r->col, D, 0.95);
            double med = stats_quantile(r->col, D, 0.5);
            if (isnan(q05) || isnan(q95) || isnan(med)) return RK_ENOMEM;  /* a copy failed */
            (which ? out->mean_weight : out->mean_score)[t] = mean;
            (which ? out->weight_median : out->score_median)[t] = med;
            (which ? out->weight_q05 : out->score_q05)[t] = q05;
            (which ? out->weight_q95 : out->score_q95)[t] = q95;
        }
    }
    out->exactly_relative = out->shift_max <= 1e-9 * (1.0 + out->score_absmax);
    return RK_OK;
}

int pattern_run(const pattern_cfg *c, pattern_enc e, pattern_res *out)
{
    memset(out, 0, sizeof *out);
    out->e = e;
    if (c->n < 2 || c->d < 2 || c->d % 2 || c->draws == 0 || c->seed == 0 || (int)e < 0 ||
        e >= PAT_N || !(c->corr >= 0.0 && c->corr <= 1.0) || c->checks > c->draws)
        return RK_EINVAL;
    double **a[] = { &out->mean_score, &out->score_median, &out->score_q05, &out->score_q95,
                     &out->mean_weight, &out->weight_median, &out->weight_q05, &out->weight_q95,
                     &out->shift_diff };
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++)
        if (!(*a[i] = malloc(c->n * sizeof(double)))) { pattern_res_free(out); return RK_ENOMEM; }
    prun r;
    memset(&r, 0, sizeof r);
    r.c = c;
    r.e = e;
    r.n = c->n;
    r.d = c->d;
    int rc = run(&r, out);
    prun_free(&r);
    if (rc) pattern_res_free(out);
    return rc;
}

int pattern_write(FILE *f, const pattern_cfg *c, const pattern_res *res, size_t nres)
{
    fprintf(f, "# ropekit pattern %s (GSL %s): n=%zu d=%zu draws=%zu corr=%.17g seed=%lu "
               "rng=mt19937 m=%zu scale=1/sqrt(d) alibi_slope=%.17g t5=causal,32,128,stand-in "
               "xpos_scale_base=%.17g xpos_gamma=0.4 rope_base=10000 shift=%lld checks=%zu "
               "encodings=", rk_version(), GSL_VERSION, c->n, c->d, c->draws, c->corr, c->seed,
            c->m, c->alibi_slope, c->xpos_scale_base, (long long)c->shift, c->checks);
    for (size_t i = 0; i < nres; i++) fprintf(f, "%s%s", i ? "," : "", pattern_enc_names[res[i].e]);
    fputc('\n', f);
    fprintf(f, "# query at P + n - 1, keys at P + j, distance = n - 1 - j (query minus key); "
               "q ~ N(0, I), k_j = corr q + sqrt(1 - corr^2) g_j; softmax family: score = logit "
               "(scale q.k + bias), weight = softmax; linear family (FAVOR+ positive, m "
               "features): score = numerator weight, weight = score / denominator (eq. 19: "
               "unrotated denominator); mean, median and 5%%/95%% quantiles over the draws at P = 0; "
               "shift_diff = max over draws of |score(P = shift) - score(P = 0)|; "
               "exactly_relative = max shift_diff <= 1e-9 (1 + max |score|)\n");
    fprintf(f, "encoding\tfamily\tdistance\tmean_score\tscore_median\tscore_q05\tscore_q95\t"
               "mean_weight\tweight_median\tweight_q05\tweight_q95\tshift_diff\texactly_relative\n");
    for (size_t i = 0; i < nres; i++) {
        const pattern_res *r = &res[i];
        for (size_t t = 0; t < c->n; t++)
            fprintf(f, "%s\t%s\t%zu\t%.10g\t%.10g\t%.10g\t%.10g\t%.10g\t%.10g\t%.10g\t%.10g\t"
                       "%.3g\t%s\n",
                    pattern_enc_names[r->e], pattern_is_linear(r->e) ? "linear" : "softmax", t,
                    r->mean_score[t], r->score_median[t], r->score_q05[t], r->score_q95[t],
                    r->mean_weight[t], r->weight_median[t], r->weight_q05[t], r->weight_q95[t],
                    r->shift_diff[t],
                    r->exactly_relative ? "yes" : "no");
    }
    for (size_t i = 0; i < nres; i++) {
        const pattern_res *r = &res[i];
        fprintf(f, "# summary\t%s\tshift_max_diff=%.3g\tmax_abs_score=%.6g\texactly_relative=%s"
                   "\tlibrary_check_max_diff=%.3g\n", pattern_enc_names[r->e], r->shift_max,
                r->score_absmax, r->exactly_relative ? "yes" : "no", r->check_max);
    }
    fflush(f);
    return ferror(f) ? RK_EIO : RK_OK;
}
