/* ropekit approx: the error of FAVOR+ against exact softmax attention on the same inputs.
 *
 * For each input norm r, seed s (inputs), variant (performer, and its RoPE forms against
 * softmax + RoPE), kernel (positive, hyperbolic, trig), projection (iid, orthogonal) and
 * number of features m on a geometric grid, in double precision:
 *   inputs   q_i, k_j: r times independent uniform directions (|q_i| = |k_j| = r), v ~ N(0, 1),
 *            drawn from seed `seed + s` (the same directions for every r: a paired design);
 *   features projection seed 1000003 (seed + s) + (index of m) + 1, the same for every kernel
 *            and projection kind (paired as well);
 *   output error   |O~ - O|_F / |O|_F, O from the exact plan (softmax or softmax-rope);
 *   row-sum error  |D~ - D| / |D| with D_i = sum_j exp(scale q'_i . k'_j) over the keys query i
 *            sees (q', k' rotated for the RoPE reference) and D~_i = sum_j phi'(q_i) . phi'(k_j)
 *            with the features as the plan's numerator sees them (rk_attn_features_d), i.e. the
 *            row sums of the approximate (unnormalised) attention matrix.
 * Each (variant, kernel, projection, r, m) is one row: mean over seeds with a t-interval, and
 * the root mean square. Rows are deterministic (seeds; bitwise identical for any thread count).
 *
 * Summary: the slope of log(mean error) against log(m) (gsl_fit_linear) with its interval
 * (theory: -1/2 for an unbiased estimator's root-mean-square error; the RoPE-on-features form
 * is not an estimator of softmax + RoPE, so its error levels off), and the m the fitted line
 * needs for --target.
 */
#include "cli.h"
#include "machine.h"
#include "progress.h"
#include "stats.h"
#include "sweep.h"
#include "table.h"
#include "variant.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#define MAXVAR 16
#define MAXM 32
#define MAXNORM 32

static const cli_opt opts[] = {
    { "out", "FILE", "the TSV table (rows flushed as they finish); default: none" },
    { "resume", NULL, "continue the table in --out: keep its finished rows, run the rest" },
    { "quick", NULL, "a short run (m = 16..1024, norms 1,2,3, 8 seeds, n = 128): < 1 minute" },
    { "variants", "LIST", "FAVOR+ variants (default: performer, performer-rope-features,\n"
      "performer-rope-qk); each is compared with its exact reference" },
    { "kernels", "LIST", "positive,hyperbolic,trig (default all)" },
    { "projs", "LIST", "iid,orthogonal (default both)" },
    { "m-min", "M", "fewest features (default 16)" },
    { "m-max", "M", "most features (default 4096; quick 1024)" },
    { "m-factor", "F", "grid ratio of m, > 1 (default 2)" },
    { "norms", "LIST", "row norms |q| = |k| = r (default 1,2,3,4,5; quick 1,2,3)" },
    { "n", "N", "sequence length (default 256; quick 128)" },
    { "d", "D", "head width (default 64)" },
    { "seeds", "S", "seeds per point (default 20; quick 8)" },
    { "seed", "S", "first seed, >= 1 (default 1)" },
    { "causal", NULL, "causal attention (default bidirectional)" },
    { "target", "E", "report the m a fitted line needs for this error (default 0.05)" },
    { "level", "P", "confidence level of the intervals (default 0.95)" },
    { "threads", "N", "OpenMP threads (default: all; results do not depend on it)" },
};

static const cli_spec spec = {
    "approx", "[--quick] [--out FILE [--resume]] [options]",
    "Approximation error of FAVOR+ (positive, hyperbolic, trigonometric features; iid and\n"
    "orthogonal projections; m features) against exact softmax attention on the same\n"
    "inputs, and of its RoPE forms against softmax + RoPE: relative Frobenius error of the\n"
    "output and of the attention matrix's row sums, mean and CI over seeds, for several input\n"
    "norms; the fitted slope of log(error) against log(m) (theory -1/2) and the m needed\n"
    "for a target error.",
    opts, sizeof opts / sizeof opts[0],
};

static const char *const HEADER =
    "variant\tkernel\tproj\tnorm\tm\tn\td\tcausal\tseeds\tnorm2_sqrtd\tout_err_mean\tout_err_lo"
    "\tout_err_hi\tout_err_rms\trowsum_err_mean\trowsum_err_lo\trowsum_err_hi\trowsum_err_rms"
    "\tnonfinite";

static const char *const kernel_names[] = { "positive", "hyperbolic", "trig", NULL };
static const char *const proj_names[] = { "orthogonal", "iid", NULL };   /* rk_proj order */

typedef struct {
    const variant *var[MAXVAR];
    size_t nvar;
    int kernel[3], proj[2];
    size_t nkernel, nproj;
    size_t m[MAXM], nm;
    double norm[MAXNORM];
    size_t nnorm;
    size_t n, d, seeds;
    unsigned long seed;
    int causal, threads;
    double target, level, m_factor;
} settings;

/* ---- options ------------------------------------------------------------------------------ */

/* Names of a list option as indices into `names` (or all of `dflt` if absent). */
static size_t parse_names(cli_ctx *c, const char *opt, const char *const *names, int *out,
                          size_t max, const char *dflt)
{
    char buf[256];
    const char *s = cli_get(c, opt);
    if (!s) s = dflt;
    if (strlen(s) >= sizeof buf) cli_die(c, "--%s: list too long", opt);
    strcpy(buf, s);
    char *item[8];
    size_t n = cli_split_list(c, opt, buf, item, max);
    for (size_t i = 0; i < n; i++) {
        int k = -1;
        for (int j = 0; names[j]; j++)
            if (strcmp(names[j], item[i]) == 0) k = j;
        if (k < 0) {
            char list[128] = "";
            for (int j = 0; names[j]; j++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof list - l, "%s%s", j ? ", " : "", names[j]);
            }
            cli_die(c, "--%s: unknown name '%s' (expected: %s)", opt, item[i], list);
        }
        for (size_t j = 0; j < i; j++)
            if (out[j] == k) cli_die(c, "--%s: '%s' given twice", opt, item[i]);
        out[i] = k;
    }
    return n;
}

static void parse_settings(cli_ctx *c, settings *s, int quick)
{
    memset(s, 0, sizeof *s);
    const char *vs = cli_get(c, "variants");
    if (vs) {
        char buf[1024];
        if (strlen(vs) >= sizeof buf) cli_die(c, "--variants: list too long");
        strcpy(buf, vs);
        char *item[MAXVAR];
        size_t n = cli_split_list(c, "variants", buf, item, MAXVAR);
        for (size_t i = 0; i < n; i++) {
            const variant *v = variant_find(item[i]);
            if (!v) {
                char list[1024];
                cli_die(c, "--variants: unknown variant '%s' (expected: %s)", item[i],
                        variant_names(list, sizeof list));
            }
            if (v->kind != RK_PERFORMER || !v->reference)
                cli_die(c, "--variants: '%s' is not a random-feature approximation (expected "
                        "a performer variant)", item[i]);
            for (size_t j = 0; j < s->nvar; j++)
                if (s->var[j] == v) cli_die(c, "--variants: '%s' given twice", item[i]);
            s->var[s->nvar++] = v;
        }
    } else {
        for (size_t i = 0; i < variant_count(); i++)
            if (variant_at(i)->flags & VARIANT_APPROX) s->var[s->nvar++] = variant_at(i);
    }
    s->nkernel = parse_names(c, "kernels", kernel_names, s->kernel, 3,
                             "positive,hyperbolic,trig");
    s->nproj = parse_names(c, "projs", proj_names, s->proj, 2, "iid,orthogonal");

    long long m_min = cli_get_integer(c, "m-min", 16, 1, 1 << 20);
    long long m_max = cli_get_integer(c, "m-max", quick ? 1024 : 4096, 1, 1 << 20);
    if (m_max < m_min) cli_die(c, "--m-max %lld is below --m-min %lld", m_max, m_min);
    s->m_factor = cli_get_double(c, "m-factor", 2.0, 1.0, 1e6, CLI_GT_LO);
    for (int k = 0;; k++) {
        double x = (double)m_min * pow(s->m_factor, k);
        if (x > (double)m_max * (1.0 + 1e-12)) break;
        size_t m = (size_t)llround(x);
        if (s->nm && m == s->m[s->nm - 1]) continue;
        if (s->nm == MAXM) cli_die(c, "the m grid has more than %d points (raise --m-factor)",
                                   MAXM);
        s->m[s->nm++] = m;
    }
    {
        char buf[512];
        const char *ns = cli_get(c, "norms");
        if (!ns) ns = quick ? "1,2,3" : "1,2,3,4,5";
        if (strlen(ns) >= sizeof buf) cli_die(c, "--norms: list too long");
        strcpy(buf, ns);
        char *item[MAXNORM];
        s->nnorm = cli_split_list(c, "norms", buf, item, MAXNORM);
        for (size_t i = 0; i < s->nnorm; i++) {
            s->norm[i] = cli_double(c, "--norms", item[i]);
            if (!(s->norm[i] > 0.0) || s->norm[i] > 1e3)
                cli_die(c, "--norms: %s must be > 0 and <= 1000", item[i]);
            for (size_t j = 0; j < i; j++)
                if (s->norm[j] == s->norm[i]) cli_die(c, "--norms: %s given twice", item[i]);
        }
    }
    s->n = (size_t)cli_get_integer(c, "n", quick ? 128 : 256, 1, 1 << 20);
    s->d = (size_t)cli_get_integer(c, "d", 64, 1, 1 << 16);
    s->seeds = (size_t)cli_get_integer(c, "seeds", quick ? 8 : 20, 1, 100000);
    s->seed = (unsigned long)cli_get_integer(c, "seed", 1, 1, INT32_MAX);
    s->causal = cli_flag(c, "causal");
    s->target = cli_get_double(c, "target", 0.05, 0.0, INFINITY, CLI_GT_LO);
    s->level = cli_get_double(c, "level", 0.95, 0.0, 1.0, CLI_GT_LO | CLI_LT_HI);
    s->threads = (int)cli_get_integer(c, "threads", 0, 1, 4096);
    if (cli_flag(c, "resume") && !cli_get(c, "out"))
        cli_die(c, "--resume needs --out FILE (the table to continue)");
    for (size_t i = 0; i < s->nvar; i++)
        if (s->var[i]->rope == RK_ROPE_FEATURES)
            for (size_t k = 0; k < s->nkernel; k++)
                for (size_t j = 0; j < s->nm; j++)
                    if (s->kernel[k] == RK_KERNEL_POSITIVE && s->m[j] % 2)
                        cli_die(c, "%s rotates its features in pairs: m = %zu on the grid is "
                                "odd (positive features have width m)", s->var[i]->name,
                                s->m[j]);
}

static void config_line(const settings *s, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "ropekit approx v1 variants=");
    for (size_t i = 0; i < s->nvar && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "," : "", s->var[i]->name);
    for (size_t i = 0; i < s->nkernel && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "," : " kernels=",
                              kernel_names[s->kernel[i]]);
    for (size_t i = 0; i < s->nproj && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "," : " projs=",
                              proj_names[s->proj[i]]);
    for (size_t i = 0; i < s->nm && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%zu", i ? "," : " m=", s->m[i]);
    for (size_t i = 0; i < s->nnorm && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%g", i ? "," : " norms=", s->norm[i]);
    if (n < len)
        snprintf(buf + n, len - n, " n=%zu d=%zu seeds=%zu seed=%lu causal=%d", s->n, s->d,
                 s->seeds, s->seed, s->causal);
}

/* ---- state ---------------------------------------------------------------------------------- */

/* The exact side of one seed at one norm. */
typedef struct {
    rk_matd q, k, v;
    rk_matd out[2];      /* exact outputs: [0] softmax, [1] softmax-rope                       */
    double *rowsum[2];   /* exact row sums D_i                                                */
} exact_seed;

typedef struct {
    gsl_rng    *rng;
    exact_seed *ex;      /* seeds entries                                                     */
    size_t      nex;
    rk_matd     out, phq, phk, qr, kr;
    double     *zk, *rs;
    int64_t    *pos;
    rk_attn    *plan;
    rk_rope    *rope;
} resources;

static void free_exact(resources *r)
{
    for (size_t i = 0; r->ex && i < r->nex; i++) {
        exact_seed *e = &r->ex[i];
        rk_matd_free(&e->q); rk_matd_free(&e->k); rk_matd_free(&e->v);
        for (int j = 0; j < 2; j++) { rk_matd_free(&e->out[j]); free(e->rowsum[j]); }
    }
    free(r->ex);
    r->ex = NULL;
    r->nex = 0;
}

static void free_resources(void *p)
{
    resources *r = p;
    free_exact(r);
    rk_matd_free(&r->out); rk_matd_free(&r->phq); rk_matd_free(&r->phk);
    rk_matd_free(&r->qr); rk_matd_free(&r->kr);
    free(r->zk);
    free(r->rs);
    free(r->pos);
    rk_attn_destroy(r->plan);
    rk_rope_destroy(r->rope);
    gsl_rng_free(r->rng);
    memset(r, 0, sizeof *r);
}

static const char *num(char *buf, double x)
{
    if (isnan(x)) return "nan";
    if (isinf(x)) return x > 0 ? "inf" : "-inf";
    snprintf(buf, 32, "%.9g", x);
    return buf;
}

static double frob_rel(const rk_matd *a, const rk_matd *ref)
{
    double num2 = 0.0, den2 = 0.0;
    for (size_t i = 0; i < a->rows; i++)
        for (size_t j = 0; j < a->cols; j++) {
            double x = a->data[i * a->ld + j], y = ref->data[i * ref->ld + j];
            num2 += (x - y) * (x - y);
            den2 += y * y;
        }
    return sqrt(num2 / den2);
}

static double vec_rel(const double *a, const double *ref, size_t n)
{
    double num2 = 0.0, den2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        num2 += (a[i] - ref[i]) * (a[i] - ref[i]);
        den2 += ref[i] * ref[i];
    }
    return sqrt(num2 / den2);
}

/* Row i of `x` scaled to norm r along a uniform direction (normalised Gaussian). */
static void draw_rows(gsl_rng *g, rk_matd *x, double r)
{
    for (size_t i = 0; i < x->rows; i++) {
        double *row = x->data + i * x->ld, ss = 0.0;
        for (size_t j = 0; j < x->cols; j++) {
            row[j] = gsl_ran_gaussian_ziggurat(g, 1.0);
            ss += row[j] * row[j];
        }
        double f = ss > 0.0 ? r / sqrt(ss) : 0.0;
        for (size_t j = 0; j < x->cols; j++) row[j] *= f;
    }
}

/* The exact side for every seed at norm r (only the references in use). */
static void prepare_exact(cli_ctx *c, resources *r, const settings *s, double norm,
                          const int need[2])
{
    free_exact(r);
    r->ex = calloc(s->seeds, sizeof *r->ex);
    if (!r->ex) cli_die(c, "out of memory");
    r->nex = s->seeds;
    const size_t n = s->n, d = s->d;
    const double scale = 1.0 / sqrt((double)d);
    for (size_t si = 0; si < s->seeds; si++) {
        exact_seed *e = &r->ex[si];
        if (rk_matd_alloc(&e->q, n, d) || rk_matd_alloc(&e->k, n, d) ||
            rk_matd_alloc(&e->v, n, d))
            cli_die(c, "out of memory");
        gsl_rng_set(r->rng, s->seed + si);
        draw_rows(r->rng, &e->q, norm);
        draw_rows(r->rng, &e->k, norm);
        for (size_t i = 0; i < n * d; i++) e->v.data[i] = gsl_ran_gaussian_ziggurat(r->rng, 1.0);
        for (int ref = 0; ref < 2; ref++) {
            if (!need[ref]) continue;
            rk_attn_config ac;
            variant_config(ref ? "softmax-rope" : "softmax", n, n, d, d, s->causal, 0, 0, &ac);
            ac.nthreads = s->threads;
            int err = rk_attn_create(&r->plan, &ac);
            if (err) cli_die_rk(c, err, "cannot create the exact plan");
            if (rk_matd_alloc(&e->out[ref], n, d)) cli_die(c, "out of memory");
            err = rk_attn_execute_d(r->plan, &e->q, &e->k, &e->v, &e->out[ref], RK_ALL_KEYS);
            if (err) cli_die_rk(c, err, "exact attention failed");
            rk_attn_destroy(r->plan);
            r->plan = NULL;
            /* row sums D_i = sum_j exp(scale q'_i . k'_j), q' = R_i q_i for the RoPE reference */
            const rk_matd *q = &e->q, *k = &e->k;
            if (ref) {
                if ((err = rk_rope_apply_d(r->rope, &e->q, &r->qr, 0, NULL, 0)) ||
                    (err = rk_rope_apply_d(r->rope, &e->k, &r->kr, 0, NULL, 0)))
                    cli_die_rk(c, err, "RoPE failed");
                q = &r->qr;
                k = &r->kr;
            }
            e->rowsum[ref] = malloc(n * sizeof(double));
            if (!e->rowsum[ref]) cli_die(c, "out of memory");
            for (size_t i = 0; i < n; i++) {
                size_t last = s->causal ? i + 1 : n;
                double sum = 0.0;
                for (size_t j = 0; j < last; j++) {
                    double dot = 0.0;
                    for (size_t t = 0; t < d; t++) dot += q->data[i * d + t] * k->data[j * d + t];
                    sum += exp(scale * dot);
                }
                e->rowsum[ref][i] = sum;
            }
        }
    }
}

/* One row: all seeds of (variant, kernel, proj, norm, m), appended to t. Returns 1 if
 * stopped (no row written). */
static int measure(cli_ctx *c, resources *r, table *tab, sweep_progress *p, const settings *s,
                   const variant *v, int kernel, int proj, double norm, size_t mi)
{
    const size_t n = s->n, d = s->d, m = s->m[mi];
    const int ref = v->reference && strcmp(v->reference, "softmax-rope") == 0;
    double *eo = malloc(s->seeds * sizeof *eo), *er = malloc(s->seeds * sizeof *er);
    if (!eo || !er) { free(eo); free(er); cli_die(c, "out of memory"); }
    size_t good = 0, nonfinite = 0;
    for (size_t si = 0; si < s->seeds; si++) {
        exact_seed *e = &r->ex[si];
        rk_attn_config ac;
        unsigned long fseed = 1000003UL * (s->seed + si) + mi + 1;
        variant_fill(v, n, n, d, d, s->causal, m, fseed, &ac);
        ac.kernel = (rk_kernel)kernel;
        ac.proj = (rk_proj)proj;
        ac.nthreads = s->threads;
        int err = rk_attn_create(&r->plan, &ac);
        if (err) { free(eo); free(er); cli_die_rk(c, err, "cannot create the FAVOR+ plan"); }
        err = rk_attn_execute_d(r->plan, &e->q, &e->k, &e->v, &r->out, RK_ALL_KEYS);
        size_t F = rk_attn_feature_dim(r->plan);
        rk_matd phq = rk_matd_view(r->phq.data, n, F, F), phk = rk_matd_view(r->phk.data, n, F, F);
        if (!err) err = rk_attn_features_d(r->plan, &e->q, r->pos, &phq);
        if (!err) err = rk_attn_features_d(r->plan, &e->k, r->pos, &phk);
        rk_attn_destroy(r->plan);
        r->plan = NULL;
        if (err) { free(eo); free(er); cli_die_rk(c, err, "FAVOR+ failed"); }
        /* approximate row sums: phi'(q_i) . sum_{j visible} phi'(k_j) */
        memset(r->zk, 0, F * sizeof *r->zk);
        if (!s->causal)
            for (size_t j = 0; j < n; j++)
                for (size_t t = 0; t < F; t++) r->zk[t] += phk.data[j * F + t];
        for (size_t i = 0; i < n; i++) {
            if (s->causal)
                for (size_t t = 0; t < F; t++) r->zk[t] += phk.data[i * F + t];
            double sum = 0.0;
            for (size_t t = 0; t < F; t++) sum += phq.data[i * F + t] * r->zk[t];
            r->rs[i] = sum;
        }
        double xo = frob_rel(&r->out, &e->out[ref]), xr = vec_rel(r->rs, e->rowsum[ref], n);
        if (isfinite(xo) && isfinite(xr)) {
            eo[good] = xo;
            er[good] = xr;
            good++;
        } else {
            nonfinite++;
        }
        if (sweep_stopped(p)) { free(eo); free(er); return 1; }
    }
    double om = NAN, olo = NAN, ohi = NAN, rm = NAN, rlo = NAN, rhi = NAN, orms = NAN,
           rrms = NAN;
    if (good) {
        stats_mean_ci(eo, good, s->level, &om, &olo, &ohi);
        stats_mean_ci(er, good, s->level, &rm, &rlo, &rhi);
        double so = 0.0, sr = 0.0;
        for (size_t i = 0; i < good; i++) { so += eo[i] * eo[i]; sr += er[i] * er[i]; }
        orms = sqrt(so / (double)good);
        rrms = sqrt(sr / (double)good);
    }
    free(eo);
    free(er);
    char b[10][32];
    if (table_addf(tab, "%s\t%s\t%s\t%g\t%zu\t%zu\t%zu\t%d\t%zu\t%s\t%s\t%s\t%s\t%s\t%s\t%s"
                   "\t%s\t%s\t%zu", v->name, kernel_names[kernel], proj_names[proj], norm, m,
                   n, d, s->causal, s->seeds, num(b[0], norm * norm / sqrt((double)d)),
                   num(b[1], om), num(b[2], olo), num(b[3], ohi), num(b[4], orms),
                   num(b[5], rm), num(b[6], rlo), num(b[7], rhi), num(b[8], rrms), nonfinite))
        cli_die(c, "--out: %s", tab->err);
    return 0;
}

/* ---- summary ------------------------------------------------------------------------------ */

static void summarize(cli_ctx *c, table *t, const settings *s)
{
    int pct = (int)lround(100.0 * s->level);
    for (size_t vi = 0; vi < s->nvar; vi++)
        for (size_t ki = 0; ki < s->nkernel; ki++)
            for (size_t pi = 0; pi < s->nproj; pi++)
                for (size_t ni = 0; ni < s->nnorm; ni++) {
                    const variant *v = s->var[vi];
                    const char *kn = kernel_names[s->kernel[ki]], *pn = proj_names[s->proj[pi]];
                    double mm[MAXM], eo[MAXM], er[MAXM];
                    size_t k = 0;
                    for (size_t mi = 0; mi < s->nm; mi++) {
                        char key[256];
                        snprintf(key, sizeof key, "%s\t%s\t%s\t%g\t%zu", v->name, kn, pn,
                                 s->norm[ni], s->m[mi]);
                        long r = table_find(t, key);
                        if (r < 0) continue;
                        mm[k] = (double)s->m[mi];
                        eo[k] = table_getd(t, (size_t)r, "out_err_mean");
                        er[k] = table_getd(t, (size_t)r, "rowsum_err_mean");
                        k++;
                    }
                    stats_fit fo, fr;
                    int oko = stats_fit_loglog(mm, eo, k, s->level, &fo) == 0;
                    int okr = stats_fit_loglog(mm, er, k, s->level, &fr) == 0;
                    char so[128], sr[128], st[128];
                    if (oko && fo.n >= 3)
                        snprintf(so, sizeof so, "%.2f [%.2f, %.2f]", fo.b, fo.b_lo, fo.b_hi);
                    else if (oko) snprintf(so, sizeof so, "%.2f", fo.b);
                    else snprintf(so, sizeof so, "n/a");
                    if (okr && fr.n >= 3)
                        snprintf(sr, sizeof sr, "%.2f [%.2f, %.2f]", fr.b, fr.b_lo, fr.b_hi);
                    else if (okr) snprintf(sr, sizeof sr, "%.2f", fr.b);
                    else snprintf(sr, sizeof sr, "n/a");
                    double mt = oko && fo.b < 0.0 ? stats_fit_solve_loglog(&fo, s->target) : NAN;
                    if (isfinite(mt) && mt > 1000.0 * mm[k - 1])
                        snprintf(st, sizeof st, "m for output error %g: beyond 1000x the largest "
                                 "m (the error hardly falls)", s->target);
                    else if (isfinite(mt))
                        snprintf(st, sizeof st, "m for output error %g: %.0f%s", s->target, mt,
                                 mt > mm[k - 1] || mt < mm[0] ? " (extrapolated)" : "");
                    else
                        snprintf(st, sizeof st, "m for output error %g: not reached by the fit",
                                 s->target);
                    const char *inside = oko && fo.n >= 3
                        ? (fo.b_lo <= -0.5 && -0.5 <= fo.b_hi ? "holds -1/2" : "excludes -1/2")
                        : "no interval";
                    printf("%s %s %s norm=%g: output slope = %s (%d%% CI: %s), row-sum slope = "
                           "%s; %s\n", v->name, kn, pn, s->norm[ni], so, pct, inside, sr, st);
                    if (table_comment(t, "summary\tslope\t%s\t%s\t%s\t%g\t%.6g\t%.6g\t%.6g\t%.6g"
                                      "\t%.6g\t%.6g\t%.6g\t%.6g\t%.6g", v->name, kn, pn,
                                      s->norm[ni], oko ? fo.b : NAN, oko ? fo.b_lo : NAN,
                                      oko ? fo.b_hi : NAN, oko ? fo.a : NAN, okr ? fr.b : NAN,
                                      okr ? fr.b_lo : NAN, okr ? fr.b_hi : NAN,
                                      okr ? fr.a : NAN, mt))
                        cli_die(c, "--out: %s", t->err);
                }
    fflush(stdout);
}

/* ---- the sweep (sweep.h): a unit is one row, in the order norm, variant, kernel, proj, m ---- */

typedef struct {
    settings  s;
    resources r;
    int       need[2];    /* the exact references in use: softmax, softmax-rope               */
    size_t    prepared;   /* 1 + the norm whose exact side r.ex holds; 0: none                */
} state;

typedef struct { size_t ni, vi, ki, pi, mi; } point;

static point point_of(const settings *s, size_t u)
{
    point q;
    q.mi = u % s->nm; u /= s->nm;
    q.pi = u % s->nproj; u /= s->nproj;
    q.ki = u % s->nkernel; u /= s->nkernel;
    q.vi = u % s->nvar;
    q.ni = u / s->nvar;
    return q;
}

static void row_key(char *key, size_t len, const settings *s, const point *q)
{
    snprintf(key, len, "%s\t%s\t%s\t%g\t%zu", s->var[q->vi]->name, kernel_names[s->kernel[q->ki]],
             proj_names[s->proj[q->pi]], s->norm[q->ni], s->m[q->mi]);
}

static void *setup(cli_ctx *c)
{
    static state S;
    memset(&S, 0, sizeof S);
    settings *s = &S.s;
    resources *r = &S.r;
    parse_settings(c, s, cli_flag(c, "quick"));
    machine_set_threads(s->threads);
    cli_defer(c, free_resources, r);
    r->rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (!r->rng) cli_die(c, "cannot allocate a random number generator");
    const size_t n = s->n, d = s->d;
    size_t Fmax = 2 * s->m[s->nm - 1] > d ? 2 * s->m[s->nm - 1] : d;
    if (rk_matd_alloc(&r->out, n, d) || rk_matd_alloc(&r->phq, n, Fmax) ||
        rk_matd_alloc(&r->phk, n, Fmax) || rk_matd_alloc(&r->qr, n, d) ||
        rk_matd_alloc(&r->kr, n, d))
        cli_die(c, "out of memory (n = %zu, features up to %zu)", n, Fmax);
    r->zk = malloc(Fmax * sizeof *r->zk);
    r->rs = malloc(n * sizeof *r->rs);
    r->pos = malloc(n * sizeof *r->pos);
    if (!r->zk || !r->rs || !r->pos) cli_die(c, "out of memory");
    for (size_t i = 0; i < n; i++) r->pos[i] = (int64_t)i;

    for (size_t i = 0; i < s->nvar; i++)
        S.need[strcmp(s->var[i]->reference, "softmax-rope") == 0] = 1;
    if (S.need[1]) {
        rk_rope_config rc = { .dim = d };
        int err = rk_rope_create(&r->rope, &rc);
        if (err) cli_die_rk(c, err, "softmax-rope reference");
    }
    /* every plan of the sweep can be made (fail before any row, not in the middle) */
    for (size_t vi = 0; vi < s->nvar; vi++)
        for (size_t ki = 0; ki < s->nkernel; ki++)
            for (size_t pi = 0; pi < s->nproj; pi++)
                for (size_t mi = 0; mi < s->nm; mi += s->nm - 1 ? s->nm - 1 : 1) {
                    rk_attn_config ac;
                    variant_fill(s->var[vi], n, n, d, d, s->causal, s->m[mi], s->seed, &ac);
                    ac.kernel = (rk_kernel)s->kernel[ki];
                    ac.proj = (rk_proj)s->proj[pi];
                    int err = rk_attn_create(&r->plan, &ac);
                    if (err) {
                        char what[160];
                        snprintf(what, sizeof what, "%s %s %s m=%zu", s->var[vi]->name,
                                 kernel_names[ac.kernel], proj_names[ac.proj], s->m[mi]);
                        cli_die_rk(c, err, what);
                    }
                    rk_attn_destroy(r->plan);
                    r->plan = NULL;
                }
    return &S;
}

static void table_of(cli_ctx *c, void *st, size_t k, sweep_table *tt)
{
    (void)k;
    sweep_out_table(c, HEADER, 5, tt);
    config_line(&((state *)st)->s, tt->config, sizeof tt->config);
}

static size_t units(void *st)
{
    const settings *s = &((state *)st)->s;
    return s->nnorm * s->nvar * s->nkernel * s->nproj * s->nm;
}

/* progress in units of seeds x features */
static size_t todo(void *st, const table *t, size_t u, double *work, double *done)
{
    const settings *s = &((state *)st)->s;
    point q = point_of(s, u);
    char key[256];
    row_key(key, sizeof key, s, &q);
    const int have = table_find(t, key) >= 0;
    const double w = (double)s->seeds * (double)(s->m[q.mi] + s->d);
    if (work) *work = w;
    if (done) *done = have ? w : 0.0;
    return !have;
}

static int run(cli_ctx *c, void *st, table *t, size_t u, sweep_progress *p)
{
    state *S = st;
    const settings *s = &S->s;
    point q = point_of(s, u);
    char key[256];
    row_key(key, sizeof key, s, &q);
    if (table_find(t, key) >= 0) return 0;
    const variant *v = s->var[q.vi];
    const int kernel = s->kernel[q.ki], proj = s->proj[q.pi];
    progress_update(&p->pr, p->done, "norm %g %s %s %s m=%zu", s->norm[q.ni], v->name,
                    kernel_names[kernel], proj_names[proj], s->m[q.mi]);
    /* the exact side of a norm, once for all its rows (units come in norm order) */
    if (S->prepared != q.ni + 1) {
        prepare_exact(c, &S->r, s, s->norm[q.ni], S->need);
        S->prepared = q.ni + 1;
    }
    if (measure(c, &S->r, t, p, s, v, kernel, proj, s->norm[q.ni], q.mi)) return 1;
    p->done += (double)s->seeds * (double)(s->m[q.mi] + s->d);
    return 0;
}

static void summary(cli_ctx *c, void *st, table *t) { summarize(c, t, &((state *)st)->s); }

const sweep_driver approx_driver = {
    &spec, 1, setup, table_of, units, todo, run, NULL, summary, 0, NULL,
};

int cmd_approx(int argc, char **argv) { return sweep_main(&approx_driver, argc, argv); }
