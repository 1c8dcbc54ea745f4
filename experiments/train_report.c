/* Statistics of `ropekit train --compare` (see train_report.h). */
#include "train_report.h"

#include "rk_file.h"
#include "stats.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- atomic TSV files --------------------------------------------------------------------- */
struct train_tsv {
    rk__out o;
    int     bad;
};

train_tsv *train_tsv_open(const char *path, const char *config, const char *header, char *err,
                          size_t errlen)
{
    train_tsv *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int e = rk__out_open(&t->o, path);
    if (e) {
        snprintf(err, errlen, "cannot %s %s: %s", t->o.step, path, strerror(e));
        free(t);
        return NULL;
    }
    fprintf(t->o.f, "# %s\n%s\n", config, header);
    return t;
}

void train_tsv_row(train_tsv *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vfprintf(t->o.f, fmt, ap) < 0) t->bad = errno ? errno : EIO;
    va_end(ap);
    if (fputc('\n', t->o.f) == EOF) t->bad = errno ? errno : EIO;
}

void train_tsv_abort(train_tsv *t)
{
    if (!t) return;
    rk__out_abort(&t->o);
    free(t);
}

int train_tsv_commit(train_tsv *t, char *err, size_t errlen)
{
    if (t->bad || ferror(t->o.f)) {
        snprintf(err, errlen, "cannot write %s: %s", t->o.path, strerror(t->bad ? t->bad : EIO));
        rk__out_abort(&t->o);
        free(t);
        return -1;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s", t->o.path);
    int e = rk__out_commit(&t->o);
    if (e) snprintf(err, errlen, "cannot %s %s: %s", t->o.step, path, strerror(e));
    free(t);
    return e ? -1 : 0;
}

/* ---- pairs -------------------------------------------------------------------------------- */
void train_pair_arms(train_arm *arms, size_t narms)
{
    for (size_t i = 0; i < narms; i++) {
        arms[i].baseline = -1;
        if (arms[i].rope == RK_ROPE_NONE) continue;
        for (int pass = 0; pass < 2 && arms[i].baseline < 0; pass++)
            for (size_t j = 0; j < narms; j++) {
                const train_arm *b = &arms[j];
                if (b->rope != RK_ROPE_NONE || b->kind != arms[i].kind ||
                    (b->kind == RK_LINEAR && b->map != arms[i].map))
                    continue;
                if (pass == 0 && b->pe != 1 /* LM_PE_LEARNED */) continue;
                arms[i].baseline = (int)j;
                break;
            }
    }
}

/* val_bpc of (arm, seed, step), NaN if absent. */
static double bpc_of(const table *t, const char *arm, unsigned long seed, size_t step)
{
    char key[160];
    snprintf(key, sizeof key, "%s\t%lu\t%zu", arm, seed, step);
    long r = table_find(t, key);
    return r < 0 ? NAN : table_getd(t, (size_t)r, "val_bpc");
}

static const char *num(char *b, double x)
{
    if (isnan(x)) return "nan";
    snprintf(b, 32, "%.6f", x);
    return b;
}

/* Mean and interval of the finite values among x[0..n-1]; returns how many. */
static size_t mean_ci(const double *x, size_t n, double level, double *m, double *lo, double *hi)
{
    double y[TRAIN_MAX_SEEDS];
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i])) y[k++] = x[i];
    *m = *lo = *hi = NAN;
    if (k) stats_mean_ci(y, k, level, m, lo, hi);
    return k;
}

/* The primary arm of a claim: see train_report.h. */
static int primary_arm(const train_report_cfg *rc, int softmax)
{
    int first = -1;
    for (size_t i = 0; i < rc->narms; i++) {
        const train_arm *a = &rc->arms[i];
        if (a->baseline < 0 || a->kind != (softmax ? RK_SOFTMAX : RK_PERFORMER)) continue;
        if (a->rope == RK_ROPE_QK) return (int)i;
        if (first < 0) first = (int)i;
    }
    return first;
}

int train_report(const table *runs, const train_report_cfg *rc, const char *dir, FILE *out,
                 char *err, size_t errlen)
{
    char path[1024], b1[32], b2[32], b3[32];
    const int pct = (int)lround(100.0 * rc->level);
    /* curves */
    snprintf(path, sizeof path, "%s/curves.tsv", dir);
    train_tsv *tc = train_tsv_open(path, rc->config, "arm\tvariant\tpe\tstep\tseeds\tmean_bpc"
                                   "\tci_lo\tci_hi", err, errlen);
    if (!tc) return -1;
    double x[TRAIN_MAX_SEEDS];
    for (size_t a = 0; a < rc->narms; a++)
        for (size_t s = 0; s < rc->nsteps; s++) {
            for (size_t k = 0; k < rc->nseeds; k++)
                x[k] = bpc_of(runs, rc->arms[a].label, rc->seeds[k], rc->steps[s]);
            double m, lo, hi;
            size_t n = mean_ci(x, rc->nseeds, rc->level, &m, &lo, &hi);
            if (!n) continue;
            train_tsv_row(tc, "%s\t%s\t%s\t%zu\t%zu\t%s\t%s\t%s", rc->arms[a].label,
                          rc->arms[a].variant, rc->arms[a].pe == 0 ? "none"
                          : rc->arms[a].pe == 1 ? "learned" : "sinusoidal", rc->steps[s], n,
                          num(b1, m), num(b2, lo), num(b3, hi));
        }
    if (train_tsv_commit(tc, err, errlen)) return -1;

    /* paired differences, per seed and summarised */
    snprintf(path, sizeof path, "%s/paired.tsv", dir);
    train_tsv *tp = train_tsv_open(path, rc->config, "arm\tbaseline\tstep\tseeds\tmean_diff"
                                   "\tci_lo\tci_hi", err, errlen);
    if (!tp) return -1;
    snprintf(path, sizeof path, "%s/paired_seeds.tsv", dir);
    train_tsv *ts = train_tsv_open(path, rc->config, "arm\tbaseline\tstep\tseed\tdiff", err,
                                   errlen);
    if (!ts) {
        train_tsv_abort(tp);
        return -1;
    }
    for (size_t a = 0; a < rc->narms; a++) {
        const train_arm *A = &rc->arms[a];
        if (A->baseline < 0) continue;
        const train_arm *Bs = &rc->arms[A->baseline];
        for (size_t s = 0; s < rc->nsteps; s++) {
            for (size_t k = 0; k < rc->nseeds; k++) {
                x[k] = bpc_of(runs, A->label, rc->seeds[k], rc->steps[s]) -
                       bpc_of(runs, Bs->label, rc->seeds[k], rc->steps[s]);
                if (isfinite(x[k]))
                    train_tsv_row(ts, "%s\t%s\t%zu\t%lu\t%s", A->label, Bs->label, rc->steps[s],
                                  rc->seeds[k], num(b1, x[k]));
            }
            double m, lo, hi;
            size_t n = mean_ci(x, rc->nseeds, rc->level, &m, &lo, &hi);
            if (!n) continue;
            train_tsv_row(tp, "%s\t%s\t%zu\t%zu\t%s\t%s\t%s", A->label, Bs->label, rc->steps[s],
                          n, num(b1, m), num(b2, lo), num(b3, hi));
        }
    }
    int e1 = train_tsv_commit(ts, err, errlen);
    int e2 = train_tsv_commit(tp, err, errlen);
    if (e1 || e2) return -1;

    /* the summary at the reported step */
    const size_t st = rc->report_step;
    fprintf(out, "validation bits per character at step %zu (mean [%d%% CI] over the seeds):\n",
            st, pct);
    for (size_t a = 0; a < rc->narms; a++) {
        for (size_t k = 0; k < rc->nseeds; k++)
            x[k] = bpc_of(runs, rc->arms[a].label, rc->seeds[k], st);
        double m, lo, hi;
        size_t n = mean_ci(x, rc->nseeds, rc->level, &m, &lo, &hi);
        fprintf(out, "  %-28s %s [%s, %s]  (%zu seed%s)\n", rc->arms[a].label, num(b1, m),
                num(b2, lo), num(b3, hi), n, n == 1 ? "" : "s");
    }
    snprintf(path, sizeof path, "%s/claims.tsv", dir);
    train_tsv *tl = train_tsv_open(path, rc->config, "claim\ttext\tprimary\tarm\tbaseline\tstep"
                                   "\tseeds\tmean_diff\tci_lo\tci_hi\tverdict", err, errlen);
    if (!tl) return -1;
    fprintf(out, "RoPE arm minus its baseline at step %zu (paired by seed, bits per character):\n",
            st);
    const int prim[2] = { primary_arm(rc, 0), primary_arm(rc, 1) };
    for (size_t a = 0; a < rc->narms; a++) {
        const train_arm *A = &rc->arms[a];
        if (A->baseline < 0) continue;
        const train_arm *Bs = &rc->arms[A->baseline];
        for (size_t k = 0; k < rc->nseeds; k++)
            x[k] = bpc_of(runs, A->label, rc->seeds[k], st) -
                   bpc_of(runs, Bs->label, rc->seeds[k], st);
        double m, lo, hi;
        size_t n = mean_ci(x, rc->nseeds, rc->level, &m, &lo, &hi);
        const char *verdict = n >= 2 && hi < 0.0 ? "PASS" : "NOT CONFIRMED";
        fprintf(out, "  %s - %s: %s [%s, %s]  (%zu seed%s)\n", A->label, Bs->label, num(b1, m),
                num(b2, lo), num(b3, hi), n, n == 1 ? "" : "s");
        const char *id = A->kind == RK_PERFORMER ? "performer" : A->kind == RK_SOFTMAX ? "softmax"
                       : "other";
        const char *text = A->kind == RK_PERFORMER ? TRAIN_CLAIM_PERFORMER
                         : A->kind == RK_SOFTMAX ? TRAIN_CLAIM_SOFTMAX
                         : "RoPE speeds up training";
        int is_primary = (int)a == prim[0] || (int)a == prim[1];
        train_tsv_row(tl, "%s\t%s\t%d\t%s\t%s\t%zu\t%zu\t%s\t%s\t%s\t%s", id, text, is_primary,
                      A->label, Bs->label, st, n, num(b1, m), num(b2, lo), num(b3, hi), verdict);
    }
    for (int c = 0; c < 2; c++) {
        if (prim[c] < 0) continue;
        const train_arm *A = &rc->arms[prim[c]], *Bs = &rc->arms[A->baseline];
        for (size_t k = 0; k < rc->nseeds; k++)
            x[k] = bpc_of(runs, A->label, rc->seeds[k], st) -
                   bpc_of(runs, Bs->label, rc->seeds[k], st);
        double m, lo, hi;
        size_t n = mean_ci(x, rc->nseeds, rc->level, &m, &lo, &hi);
        int pass = n >= 2 && hi < 0.0;
        fprintf(out, "claim: %s: %s (%s - %s = %s [%s, %s] bits per character at step %zu, %d%% "
                "CI over %zu seed%s%s)\n", c == 0 ? TRAIN_CLAIM_PERFORMER : TRAIN_CLAIM_SOFTMAX,
                pass ? "PASS" : "NOT CONFIRMED", A->label, Bs->label, num(b1, m), num(b2, lo),
                num(b3, hi), st, pct, n, n == 1 ? "" : "s",
                n < 2 ? "; an interval needs 2 seeds" : pass ? "" : "; the interval does not "
                "lie below zero");
    }
    return train_tsv_commit(tl, err, errlen);
}

int train_report_extrapolation(const table *ext, const train_report_cfg *rc, const char *dir,
                               FILE *out, char *err, size_t errlen)
{
    char path[1024], b1[32], b2[32], b3[32];
    snprintf(path, sizeof path, "%s/extrapolation_summary.tsv", dir);
    train_tsv *t = train_tsv_open(path, rc->config, "arm\tscaling\tfactor\tlength\tseeds"
                                  "\tmean_bpc\tci_lo\tci_hi", err, errlen);
    if (!t) return -1;
    /* the (arm, scaling, factor) combinations in table order */
    int printed = 0;
    for (size_t r = 0; r < ext->nrows; r++) {
        const char *arm = table_get(ext, r, "arm"), *sc = table_get(ext, r, "scaling");
        const char *fac = table_get(ext, r, "factor");
        /* first occurrence of this combination only */
        int seen = 0;
        for (size_t q = 0; q < r && !seen; q++)
            seen = !strcmp(table_get(ext, q, "arm"), arm) &&
                   !strcmp(table_get(ext, q, "scaling"), sc) &&
                   !strcmp(table_get(ext, q, "factor"), fac);
        if (seen) continue;
        double x[TRAIN_MAX_SEEDS];
        size_t k = 0;
        for (size_t q = r; q < ext->nrows && k < TRAIN_MAX_SEEDS; q++)
            if (!strcmp(table_get(ext, q, "arm"), arm) && !strcmp(table_get(ext, q, "scaling"), sc)
                && !strcmp(table_get(ext, q, "factor"), fac))
                x[k++] = table_getd(ext, q, "val_bpc");
        double m, lo, hi;
        size_t n = mean_ci(x, k, rc->level, &m, &lo, &hi);
        train_tsv_row(t, "%s\t%s\t%s\t%s\t%zu\t%s\t%s\t%s", arm, sc, fac,
                      table_get(ext, r, "length"), n, num(b1, m), num(b2, lo), num(b3, hi));
        if (!printed++)
            fprintf(out, "length extrapolation (validation bits per character, mean over the "
                    "seeds):\n");
        fprintf(out, "  %-28s %-8s x%-3s (length %5s): %s [%s, %s]\n", arm, sc, fac,
                table_get(ext, r, "length"), num(b1, m), num(b2, lo), num(b3, hi));
    }
    return train_tsv_commit(t, err, errlen);
}
