/* ropekit scaling: time, throughput and memory of each attention variant against sequence
 * length, with the growth exponent fitted per variant and the crossover where each linear
 * variant first beats exact attention.
 *
 * The sweep: for each variant (variant.c), mask (bidirectional, causal) and length n on a
 * geometric grid, one plan (n_q = n_kv = n, d, d_v = d, m features) on seeded uniform inputs:
 * warm-up executes, then timed repeats (CLOCK_MONOTONIC; more repeats, up to a limit, while
 * the interquartile range is wider than --spread times the median). A point whose time,
 * predicted from the previous length with the variant's expected exponent, would exceed
 * --max-seconds is skipped and recorded as such. Each finished point is one row of the TSV
 * (--out), on disk before the next point starts; --resume continues an interrupted table.
 *
 * Summary (stdout and '# summary' lines of the TSV), computed from the table's rows:
 *   exponent b of log t = a + b log n (gsl_fit_linear, points with n >= --fit-min) with its
 *   t-interval, and whether the interval holds the expected exponent (2 exact, 1 linear);
 *   crossover: the first length where a linear variant's median time is below its exact
 *   reference's (log-log interpolation), with the range given by the medians' CIs, and where
 *   the fitted lines cross.
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
#include <time.h>

#include <gsl/gsl_rng.h>

#define MAXVAR 32
#define MAXLEN 64

static const cli_opt opts[] = {
    { "out", "FILE", "the TSV table (rows flushed as points finish); default: none" },
    { "resume", NULL, "continue the table in --out: keep its finished rows, run the rest" },
    { "quick", NULL, "a short run (n = 256..32768, 3 repeats, cap 0.3 s): about a minute" },
    { "variants", "LIST", "comma-separated variant names (default: all of the scaling set)" },
    { "masks", "LIST", "bidirectional,causal (default both)" },
    { "n-min", "N", "smallest length (default 256)" },
    { "n-max", "N", "largest length (default 65536; quick 32768)" },
    { "factor", "F", "grid ratio between lengths, > 1 (default 2)" },
    { "d", "D", "head width of q, k, v (default 64)" },
    { "m", "M", "FAVOR+ random features (default 256)" },
    { "repeats", "R", "timed repeats per point (default 5; quick 3)" },
    { "max-repeats", "R", "repeats allowed when the spread is wide (default 3 x repeats)" },
    { "spread", "X", "add repeats while IQR > X * median (default 0.1)" },
    { "warmup", "W", "untimed executes before the repeats (default 1)" },
    { "max-seconds", "S", "skip a point predicted to take more than S per execute\n"
      "(default 2; quick 0.3)" },
    { "fit-min", "N", "fit the exponent over lengths >= N (default 1024)" },
    { "level", "P", "confidence level of the intervals (default 0.95)" },
    { "precision", "float|double", "arithmetic of the timed executes (default float)" },
    { "threads", "N", "OpenMP threads (default: all)" },
    { "seed", "S", "seed of the inputs and of the FAVOR+ projections, >= 1 (default 1)" },
};

static const cli_spec spec = {
    "scaling", "[--quick] [--out FILE [--resume]] [options]",
    "Sequence-length scaling of the attention variants: median time per execute with its\n"
    "95% CI, tokens/s, GFLOP/s, plan and peak memory per length; the fitted growth exponent\n"
    "per variant (expected 2 for exact attention, 1 for linear) and the length where each\n"
    "linear variant first beats exact attention. Points predicted to exceed --max-seconds\n"
    "are skipped (and reported). Progress on stderr when it is a terminal.",
    opts, sizeof opts / sizeof opts[0],
};

static const char *const HEADER =
    "variant\tmask\tn\tstatus\td\tm\tthreads\trepeats\tmedian_s\tq1_s\tq3_s\tci_lo_s\tci_hi_s"
    "\tci_level\ttokens_per_s\tgflops\tplan_bytes\tio_bytes\trss_peak_kb\trss_max_kb"
    "\tpredicted_s";

typedef struct {
    const variant *var[MAXVAR];
    size_t nvar;
    int mask[2];
    size_t nmask;
    size_t len[MAXLEN];
    size_t nlen;
    size_t d, m;
    long repeats, max_repeats, warmup;
    double spread, max_seconds, level, factor;
    size_t fit_min;
    int threads;
    unsigned long seed;
    int dbl;
} settings;

static const char *const mask_names[] = { "bidirectional", "causal", NULL };

static void release_variants(void *p) { (void)p; variant_release(); }

/* ---- resources of the point being measured (freed by cli_die too) ------------------------ */
typedef struct {
    rk_attn *plan;
    rk_mat   q, k, v, o;
    rk_matd  qd, kd, vd, od;
    gsl_rng *rng;
} resources;

static void free_point(resources *r)
{
    rk_attn_destroy(r->plan);
    r->plan = NULL;
    rk_mat_free(&r->q); rk_mat_free(&r->k); rk_mat_free(&r->v); rk_mat_free(&r->o);
    rk_matd_free(&r->qd); rk_matd_free(&r->kd); rk_matd_free(&r->vd); rk_matd_free(&r->od);
}
static void free_resources(void *p)
{
    resources *r = p;
    free_point(r);
    gsl_rng_free(r->rng);
    r->rng = NULL;
}

/* ---- options ------------------------------------------------------------------------------ */

static void parse_settings(cli_ctx *c, settings *s, int quick)
{
    static char vbuf[1024], mbuf[128];
    memset(s, 0, sizeof *s);
    const char *vs = cli_get(c, "variants");
    if (vs) {
        if (strlen(vs) >= sizeof vbuf) cli_die(c, "--variants: list too long");
        strcpy(vbuf, vs);
        char *item[MAXVAR];
        size_t n = cli_split_list(c, "variants", vbuf, item, MAXVAR);
        for (size_t i = 0; i < n; i++) {
            const variant *v = variant_find(item[i]);
            if (!v) {
                char list[1024];
                cli_die(c, "--variants: unknown variant '%s' (expected: %s)", item[i],
                        variant_names(list, sizeof list));
            }
            for (size_t j = 0; j < s->nvar; j++)
                if (s->var[j] == v) cli_die(c, "--variants: '%s' given twice", item[i]);
            s->var[s->nvar++] = v;
        }
    } else {
        for (size_t i = 0; i < variant_count(); i++)
            if (variant_at(i)->flags & VARIANT_SCALING) s->var[s->nvar++] = variant_at(i);
    }
    const char *ms = cli_get(c, "masks");
    if (ms) {
        if (strlen(ms) >= sizeof mbuf) cli_die(c, "--masks: list too long");
        strcpy(mbuf, ms);
        char *item[4];
        size_t n = cli_split_list(c, "masks", mbuf, item, 2);
        for (size_t i = 0; i < n; i++) {
            int k = strcmp(item[i], "bidirectional") == 0 ? 0
                  : strcmp(item[i], "causal") == 0 ? 1 : -1;
            if (k < 0) cli_die(c, "--masks: unknown mask '%s' (expected: bidirectional, causal)",
                               item[i]);
            if (s->nmask == 1 && s->mask[0] == k) cli_die(c, "--masks: '%s' given twice", item[i]);
            s->mask[s->nmask++] = k;
        }
    } else {
        s->mask[0] = 0;
        s->mask[1] = 1;
        s->nmask = 2;
    }
    long long n_min = cli_get_integer(c, "n-min", 256, 1, (long long)1 << 30);
    long long n_max = cli_get_integer(c, "n-max", quick ? 32768 : 65536, 1,
                                      (long long)1 << 30);
    if (n_max < n_min) cli_die(c, "--n-max %lld is below --n-min %lld", n_max, n_min);
    s->factor = cli_get_double(c, "factor", 2.0, 1.0, 1e6, CLI_GT_LO);
    /* the grid: round(n_min f^k) <= n_max, distinct */
    for (int k = 0;; k++) {
        double x = (double)n_min * pow(s->factor, k);
        if (x > (double)n_max * (1.0 + 1e-12)) break;
        size_t n = (size_t)llround(x);
        if (s->nlen && n == s->len[s->nlen - 1]) continue;
        if (s->nlen == MAXLEN) cli_die(c, "the length grid has more than %d points (raise "
                                       "--factor)", MAXLEN);
        s->len[s->nlen++] = n;
    }
    s->d = (size_t)cli_get_integer(c, "d", 64, 1, 1 << 20);
    s->m = (size_t)cli_get_integer(c, "m", 256, 1, 1 << 20);
    s->repeats = (long)cli_get_integer(c, "repeats", quick ? 3 : 5, 1, 100000);
    s->max_repeats = (long)cli_get_integer(c, "max-repeats", quick ? 2 * s->repeats
                                                                   : 3 * s->repeats,
                                           1, 100000);
    if (s->max_repeats < s->repeats)
        cli_die(c, "--max-repeats %ld is below --repeats %ld", s->max_repeats, s->repeats);
    s->spread = cli_get_double(c, "spread", 0.1, 0.0, INFINITY, 0);
    s->warmup = (long)cli_get_integer(c, "warmup", 1, 0, 100000);
    s->max_seconds = cli_get_double(c, "max-seconds", quick ? 0.3 : 2.0, 0.0, INFINITY,
                                    CLI_GT_LO);
    s->fit_min = (size_t)cli_get_integer(c, "fit-min", 1024, 1, (long long)1 << 30);
    s->level = cli_get_double(c, "level", 0.95, 0.0, 1.0, CLI_GT_LO | CLI_LT_HI);
    static const char *const precisions[] = { "float", "double", NULL };
    s->dbl = cli_get_choice(c, "precision", "precision", precisions, 0) == 1;
    s->threads = (int)cli_get_integer(c, "threads", 0, 1, 4096);
    s->seed = (unsigned long)cli_get_integer(c, "seed", 1, 1, INT64_MAX);
    if (cli_flag(c, "resume") && !cli_get(c, "out"))
        cli_die(c, "--resume needs --out FILE (the table to continue)");
}

/* Everything that determines the rows, as one line (line 1 of the table). */
static void config_line(const settings *s, int threads, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "ropekit scaling v1 variants=");
    for (size_t i = 0; i < s->nvar && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "," : "", s->var[i]->name);
    for (size_t i = 0; i < s->nmask && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "," : " masks=",
                              mask_names[s->mask[i]]);
    if (n < len)
        snprintf(buf + n, len - n,
                 " n=%zu..%zu factor=%g d=%zu m=%zu repeats=%ld max_repeats=%ld spread=%g "
                 "warmup=%ld max_seconds=%g threads=%d seed=%lu precision=%s",
                 s->len[0], s->len[s->nlen - 1], s->factor, s->d, s->m, s->repeats,
                 s->max_repeats, s->spread, s->warmup, s->max_seconds, threads, s->seed,
                 s->dbl ? "double" : "float");
}

/* ---- one point ---------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fill(gsl_rng *r, float *f, double *dd, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        double x = 2.0 * gsl_rng_uniform(r) - 1.0;
        if (f) f[i] = (float)x;
        else dd[i] = x;
    }
}

static int execute(resources *r, int dbl)
{
    if (dbl) return rk_attn_execute_d(r->plan, &r->qd, &r->kd, &r->vd, &r->od, RK_ALL_KEYS);
    return rk_attn_execute(r->plan, &r->q, &r->k, &r->v, &r->o, RK_ALL_KEYS);
}

/* A number for the table: "nan" for NaN (never "-nan"). */
static const char *num(char *buf, double x)
{
    if (isnan(x)) return "nan";
    snprintf(buf, 32, "%.6g", x);
    return buf;
}

/* Measure one point and append its row to t. Returns 0, or 1 if stopped (no row written). */
static int measure(cli_ctx *c, resources *r, table *t, sweep_progress *p, const settings *s,
                   const variant *v, int mask, size_t n, int threads, double predicted)
{
    int rss_reset = machine_rss_reset() == 0;
    rk_attn_config ac;
    int err = variant_fill(v, n, n, s->d, s->d, mask, s->m, s->seed, &ac);
    if (err) cli_die_rk(c, err, "variant setup failed");
    ac.nthreads = threads;
    err = rk_attn_create(&r->plan, &ac);
    if (err) {
        char what[128];
        snprintf(what, sizeof what, "%s n=%zu: cannot create the plan", v->name, n);
        cli_die_rk(c, err, what);
    }
    size_t elt = s->dbl ? sizeof(double) : sizeof(float);
    int e1, e2, e3, e4;
    if (s->dbl) {
        e1 = rk_matd_alloc(&r->qd, n, s->d); e2 = rk_matd_alloc(&r->kd, n, s->d);
        e3 = rk_matd_alloc(&r->vd, n, s->d); e4 = rk_matd_alloc(&r->od, n, s->d);
    } else {
        e1 = rk_mat_alloc(&r->q, n, s->d); e2 = rk_mat_alloc(&r->k, n, s->d);
        e3 = rk_mat_alloc(&r->v, n, s->d); e4 = rk_mat_alloc(&r->o, n, s->d);
    }
    if (e1 || e2 || e3 || e4) cli_die(c, "%s n=%zu: out of memory for the inputs", v->name, n);
    /* the same inputs for every variant at this length */
    gsl_rng_set(r->rng, s->seed * 1000003UL + n);
    fill(r->rng, s->dbl ? NULL : r->q.data, r->qd.data, n * s->d);
    fill(r->rng, s->dbl ? NULL : r->k.data, r->kd.data, n * s->d);
    fill(r->rng, s->dbl ? NULL : r->v.data, r->vd.data, n * s->d);

    for (long w = 0; w < s->warmup; w++) {
        if ((err = execute(r, s->dbl))) cli_die_rk(c, err, "attention failed");
        if (sweep_stopped(p)) { free_point(r); return 1; }
    }
    double *tv = malloc((size_t)s->max_repeats * sizeof *tv);
    if (!tv) cli_die(c, "out of memory");
    stats_summary sm;
    long k = 0;
    while (k < s->max_repeats) {
        double t0 = now_s();
        err = execute(r, s->dbl);
        double t1 = now_s();
        if (err) { free(tv); cli_die_rk(c, err, "attention failed"); }
        if (sweep_stopped(p)) { free(tv); free_point(r); return 1; }
        tv[k++] = t1 - t0;
        if (k < s->repeats) continue;
        stats_summarize(tv, (size_t)k, s->level, &sm);
        if (sm.iqr <= s->spread * sm.median) break;
    }
    stats_summarize(tv, (size_t)k, s->level, &sm);
    free(tv);

    const rk_attn_config *rc = rk_attn_get_config(r->plan);
    double flops = v->flops ? v->flops(rc, rk_attn_get_info(r->plan)) : NAN;
    size_t plan_bytes = rk_attn_bytes(r->plan);
    size_t io_bytes = 4 * n * s->d * elt;
    long rss_peak = rss_reset ? machine_rss_peak_kb() : -1, rss_max = machine_rss_max_kb();
    size_t m_used = variant_random(v) ? rc->n_features : 0;
    free_point(r);

    char b[12][32];
    if (table_addf(t, "%s\t%s\t%zu\tok\t%zu\t%zu\t%d\t%ld\t%s\t%s\t%s\t%s\t%s\t%.4f\t%s\t%s"
                   "\t%zu\t%zu\t%ld\t%ld\t%s",
                   v->name, mask_names[mask], n, s->d, m_used, threads, k,
                   num(b[0], sm.median), num(b[1], sm.q1), num(b[2], sm.q3),
                   num(b[3], sm.ci_lo), num(b[4], sm.ci_hi), sm.ci_level,
                   num(b[5], (double)n / sm.median), num(b[6], flops / sm.median * 1e-9),
                   plan_bytes, io_bytes, rss_peak, rss_max, num(b[7], predicted)))
        cli_die(c, "--out: %s", t->err);
    return 0;
}

/* ---- summary ------------------------------------------------------------------------------ */

typedef struct {
    size_t n;
    double x[MAXLEN], med[MAXLEN], lo[MAXLEN], hi[MAXLEN];
} series;

/* The ok rows of (variant, mask), in grid order. */
static void get_series(const table *t, const settings *s, const char *var, int mask,
                       series *out)
{
    out->n = 0;
    for (size_t i = 0; i < s->nlen; i++) {
        char key[160];
        snprintf(key, sizeof key, "%s\t%s\t%zu", var, mask_names[mask], s->len[i]);
        long r = table_find(t, key);
        if (r < 0 || strcmp(table_get(t, (size_t)r, "status"), "ok") != 0) continue;
        out->x[out->n] = (double)s->len[i];
        out->med[out->n] = table_getd(t, (size_t)r, "median_s");
        out->lo[out->n] = table_getd(t, (size_t)r, "ci_lo_s");
        out->hi[out->n] = table_getd(t, (size_t)r, "ci_hi_s");
        out->n++;
    }
}

/* Fit over the points at or above the cut (all points if fewer than 3 there). Returns the
 * number of points used (0: none possible); *all_used tells which. */
static size_t fit_series(const series *sr, size_t cut, double level, stats_fit *f,
                         int *all_used)
{
    double x[MAXLEN], y[MAXLEN];
    size_t k = 0;
    for (size_t i = 0; i < sr->n; i++)
        if (sr->x[i] >= (double)cut) { x[k] = sr->x[i]; y[k] = sr->med[i]; k++; }
    *all_used = 0;
    if (k < 3 && sr->n > k) {
        memcpy(x, sr->x, sr->n * sizeof *x);
        memcpy(y, sr->med, sr->n * sizeof *y);
        k = sr->n;
        *all_used = 1;
    }
    if (k < 2 || stats_fit_loglog(x, y, k, level, f)) return 0;
    return f->n;
}

static const variant *exact_reference(const settings *s, const variant *v)
{
    const char *want = v->reference ? v->reference
                     : v->rope != RK_ROPE_NONE ? "softmax-rope" : "softmax";
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < s->nvar; i++)
            if (strcmp(s->var[i]->name, want) == 0) return s->var[i];
        want = "softmax";
    }
    return NULL;
}

static void summarize(cli_ctx *c, table *t, const settings *s)
{
    int pct = (int)lround(100.0 * s->level);
    for (size_t vi = 0; vi < s->nvar; vi++)
        for (size_t mi = 0; mi < s->nmask; mi++) {
            const variant *v = s->var[vi];
            int mask = s->mask[mi];
            series sr;
            get_series(t, s, v->name, mask, &sr);
            stats_fit f;
            int all_used;
            size_t used = fit_series(&sr, s->fit_min, s->level, &f, &all_used);
            char line[512];
            if (!used) {
                snprintf(line, sizeof line, "%s %s: exponent = n/a (%zu measured length%s)",
                         v->name, mask_names[mask], sr.n, sr.n == 1 ? "" : "s");
            } else if (used < 3) {
                snprintf(line, sizeof line, "%s %s: exponent = %.2f (2 points: no interval)",
                         v->name, mask_names[mask], f.b);
            } else {
                int inside = f.b_lo <= v->exponent && v->exponent <= f.b_hi;
                snprintf(line, sizeof line,
                         "%s %s: exponent = %.2f [%.2f, %.2f] (%d%% CI, n = %.0f..%.0f, %zu "
                         "points%s); expected %g: %s", v->name, mask_names[mask], f.b, f.b_lo,
                         f.b_hi, pct, sr.x[all_used ? 0 : sr.n - used],
                         sr.x[sr.n - 1], used, all_used ? ", all lengths: too few above the "
                         "cut" : "", v->exponent, inside ? "inside the interval"
                                                         : "outside the interval");
            }
            puts(line);
            if (table_comment(t, "summary\texponent\t%s\t%s\t%.6g\t%.6g\t%.6g\t%.6g\t%.6g\t%.6g"
                              "\t%zu\t%g", v->name, mask_names[mask], used ? f.b : NAN,
                              used >= 3 ? f.b_lo : NAN, used >= 3 ? f.b_hi : NAN,
                              used ? f.a : NAN, used ? sr.x[all_used ? 0 : sr.n - used] : NAN,
                              sr.n ? sr.x[sr.n - 1] : NAN, used, v->exponent))
                cli_die(c, "--out: %s", t->err);

            /* crossover against the exact reference */
            if (v->exponent >= 2.0) continue;
            const variant *ref = exact_reference(s, v);
            if (!ref) continue;
            series er;
            get_series(t, s, ref->name, mask, &er);
            /* the lengths both measured */
            double x[MAXLEN], ta[MAXLEN], tb[MAXLEN], ahi[MAXLEN], alo[MAXLEN], blo[MAXLEN],
                   bhi[MAXLEN];
            size_t k = 0;
            for (size_t i = 0; i < sr.n; i++)
                for (size_t j = 0; j < er.n; j++)
                    if (er.x[j] == sr.x[i]) {
                        x[k] = sr.x[i];
                        ta[k] = er.med[j]; alo[k] = er.lo[j]; ahi[k] = er.hi[j];
                        tb[k] = sr.med[i]; blo[k] = sr.lo[i]; bhi[k] = sr.hi[i];
                        k++;
                    }
            stats_fit ef;
            int eall;
            size_t eused = fit_series(&er, s->fit_min, s->level, &ef, &eall);
            double nfit = NAN;
            if (used && eused && ef.b > f.b) nfit = exp((f.a - ef.a) / (ef.b - f.b));
            char fitpart[96] = "";
            if (isfinite(nfit))
                snprintf(fitpart, sizeof fitpart, "; fitted lines cross at n = %.0f", nfit);
            double xc, xlo, xhi;
            int rc = k ? stats_crossover(x, ta, tb, k, &xc) : -1;
            int rlo = k ? stats_crossover(x, ahi, blo, k, &xlo) : -1;
            int rhi = k ? stats_crossover(x, alo, bhi, k, &xhi) : -1;
            if (k == 0) {
                snprintf(line, sizeof line, "%s %s vs %s: no length measured for both%s",
                         v->name, mask_names[mask], ref->name, fitpart);
            } else if (rc == 0) {
                snprintf(line, sizeof line, "%s %s: faster than %s already at n = %.0f (the "
                         "smallest common length)%s", v->name, mask_names[mask], ref->name,
                         xc, fitpart);
            } else if (rc < 0) {
                snprintf(line, sizeof line, "%s %s: not faster than %s up to n = %.0f (the "
                         "largest common length)%s", v->name, mask_names[mask], ref->name,
                         x[k - 1], fitpart);
            } else {
                char lo_s[32], hi_s[32];
                if (rlo >= 0) snprintf(lo_s, sizeof lo_s, "%.0f", xlo);
                else snprintf(lo_s, sizeof lo_s, ">%.0f", x[k - 1]);
                if (rhi >= 0) snprintf(hi_s, sizeof hi_s, "%.0f", xhi);
                else snprintf(hi_s, sizeof hi_s, ">%.0f", x[k - 1]);
                snprintf(line, sizeof line, "%s %s: faster than %s from n = %.0f [%s, %s] "
                         "(interpolated; range from the medians' %d%% CIs)%s", v->name,
                         mask_names[mask], ref->name, xc, lo_s, hi_s, pct, fitpart);
            }
            puts(line);
            if (table_comment(t, "summary\tcrossover\t%s\t%s\t%s\t%.6g\t%.6g\t%.6g\t%.6g",
                              v->name, mask_names[mask], ref->name, rc >= 0 ? xc : NAN,
                              rlo >= 0 ? xlo : NAN, rhi >= 0 ? xhi : NAN, nfit))
                cli_die(c, "--out: %s", t->err);
        }
    fflush(stdout);
}

/* ---- the sweep (sweep.h): a unit is one (variant, mask) series over the lengths ------------ */

typedef struct {
    settings  s;
    resources r;
    int       threads;
} state;

/* Progress weight of a point: its predicted seconds (flops at an assumed 5 GFLOP/s, capped
 * per execute, times the executes). */
static double weight(const settings *s, const variant *v, int mask, size_t n)
{
    rk_attn_config ac;
    rk_attn_info info;
    if (variant_fill(v, n, n, s->d, s->d, mask, s->m, s->seed, &ac) ||
        rk_attn_resolve(&ac, &info))
        return 0.01;
    double per = v->flops ? fmin(v->flops(&ac, &info) / 5e9, s->max_seconds) : s->max_seconds;
    return (double)(s->warmup + s->repeats) * per + 0.01;
}

static void *setup(cli_ctx *c)
{
    static state S;
    memset(&S, 0, sizeof S);
    settings *s = &S.s;
    parse_settings(c, s, cli_flag(c, "quick"));
    S.threads = machine_set_threads(s->threads);
    S.r.rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (!S.r.rng) cli_die(c, "cannot allocate a random number generator");
    cli_defer(c, free_resources, &S.r);
    cli_defer(c, release_variants, NULL);   /* the T5 bias buffer of the bias rows */
    /* every variant can be set up (fail before any row, not in the middle of the sweep) */
    for (size_t vi = 0; vi < s->nvar; vi++) {
        rk_attn_config ac;
        int err = variant_fill(s->var[vi], s->len[0], s->len[0], s->d, s->d, 0, s->m, s->seed,
                               &ac);
        if (!err) err = rk_attn_create(&S.r.plan, &ac);
        if (err) cli_die_rk(c, err, s->var[vi]->name);
        rk_attn_destroy(S.r.plan);
        S.r.plan = NULL;
    }
    return &S;
}

static void table_of(cli_ctx *c, void *st, size_t k, sweep_table *tt)
{
    const state *S = st;
    (void)k;
    sweep_out_table(c, HEADER, 3, tt);
    config_line(&S->s, S->threads, tt->config, sizeof tt->config);
}

static size_t units(void *st)
{
    const settings *s = &((state *)st)->s;
    return s->nvar * s->nmask;
}

static void point_key(char *key, size_t len, const variant *v, int mask, size_t n)
{
    snprintf(key, len, "%s\t%s\t%zu", v->name, mask_names[mask], n);
}

static size_t todo(void *st, const table *t, size_t u, double *work, double *done)
{
    const settings *s = &((state *)st)->s;
    const variant *v = s->var[u / s->nmask];
    const int mask = s->mask[u % s->nmask];
    size_t missing = 0;
    double w = 0.0, dn = 0.0;
    for (size_t li = 0; li < s->nlen; li++) {
        char key[160];
        point_key(key, sizeof key, v, mask, s->len[li]);
        const double wi = work ? weight(s, v, mask, s->len[li]) : 0.0;
        w += wi;
        if (table_find(t, key) >= 0) dn += wi;
        else missing++;
    }
    if (work) *work = w;
    if (done) *done = dn;
    return missing;
}

static int run(cli_ctx *c, void *st, table *t, size_t u, sweep_progress *p)
{
    state *S = st;
    const settings *s = &S->s;
    const variant *v = s->var[u / s->nmask];
    const int mask = s->mask[u % s->nmask];
    double last_n = 0.0, last_t = NAN;
    for (size_t li = 0; li < s->nlen; li++) {
        const size_t n = s->len[li];
        double w = weight(s, v, mask, n);
        char key[160];
        point_key(key, sizeof key, v, mask, n);
        long r = table_find(t, key);
        if (r >= 0) {   /* finished in an earlier run */
            if (strcmp(table_get(t, (size_t)r, "status"), "ok") == 0) {
                last_n = (double)n;
                last_t = table_getd(t, (size_t)r, "median_s");
            }
            continue;
        }
        double predicted = last_n > 0.0 && isfinite(last_t)
                         ? last_t * pow((double)n / last_n, v->exponent) : NAN;
        if (predicted > s->max_seconds) {
            char b[32];
            if (table_addf(t, "%s\t%s\t%zu\tskipped\t%zu\t%zu\t%d\t0\tnan\tnan\tnan\tnan\tnan"
                           "\tnan\tnan\tnan\t0\t0\t-1\t-1\t%s", v->name, mask_names[mask], n,
                           s->d, variant_random(v) ? s->m : 0, S->threads, num(b, predicted)))
                cli_die(c, "--out: %s", t->err);
            p->done += w;
            continue;
        }
        progress_update(&p->pr, p->done, "%s %s n=%zu", v->name, mask_names[mask], n);
        if (measure(c, &S->r, t, p, s, v, mask, n, S->threads, predicted)) return 1;
        p->done += w;
        long rr = table_find(t, key);
        last_n = (double)n;
        last_t = table_getd(t, (size_t)rr, "median_s");
        progress_update(&p->pr, p->done, "%s %s n=%zu", v->name, mask_names[mask], n);
    }
    return 0;
}

/* A skipped point, as the run decided it. */
static int echo(void *st, const table *t, size_t row, char *buf, size_t len)
{
    const settings *s = &((state *)st)->s;
    if (strcmp(table_get(t, row, "status"), "skipped") != 0) return 0;
    snprintf(buf, len, "skipped %s %s n=%s (predicted %.3g s > cap %g s)",
             table_get(t, row, "variant"), table_get(t, row, "mask"), table_get(t, row, "n"),
             table_getd(t, row, "predicted_s"), s->max_seconds);
    return 1;
}

static void summary(cli_ctx *c, void *st, table *t) { summarize(c, t, &((state *)st)->s); }

const sweep_driver scaling_driver = {
    &spec, 1, setup, table_of, units, todo, run, echo, summary, 0, NULL,
};

int cmd_scaling(int argc, char **argv) { return sweep_main(&scaling_driver, argc, argv); }
