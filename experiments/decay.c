/* Long-term decay (RoFormer eqs. 35-37, Figure 2): partial sums S_j, the bound B, and the
 * empirical scores of random (q, k) beside the per-draw bound. See decay.h for conventions. */
#include "decay.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_version.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>

/* ---- the bound ---------------------------------------------------------------------------- */

double decay_partial_sums(const double *theta, size_t h, double dist, double *abs_s)
{
    /* docs/theory.md#figure-2 recipe: S += exp(i dist theta_i), tot += |S|; the angle is formed in
     * double as dist * theta_i, never by repeated rotation. */
    double sr = 0.0, si = 0.0, tot = 0.0;
    for (size_t i = 0; i < h; i++) {
        double a = dist * theta[i];
        sr += cos(a);
        si += sin(a);
        double s = hypot(sr, si);
        if (abs_s) abs_s[i] = s;
        tot += s;
    }
    return tot;
}

double decay_sum_abs_s(const double *theta, size_t h, double dist)
{
    return decay_partial_sums(theta, h, dist, NULL);
}

double decay_bound(const double *theta, size_t h, double dist)
{
    return h ? decay_partial_sums(theta, h, dist, NULL) / (double)h : 0.0;
}

int decay_freqs(const rk_rope_config *rc, size_t d, double *theta)
{
    rk_rope_config c = { 0 };
    if (rc) c = *rc;
    c.dim = d;
    c.rotary_dim = 0;
    c.style = RK_ROPE_INTERLEAVED;
    c.table_len = 1;               /* only the frequencies are wanted */
    rk_rope *r = NULL;
    int err = rk_rope_create(&r, &c);
    if (err) return err;
    memcpy(theta, rk_rope_freqs(r), d / 2 * sizeof *theta);
    rk_rope_destroy(r);
    return RK_OK;
}

/* ---- draws -------------------------------------------------------------------------------- */

const char *const decay_dist_names[] = { "normal", "uniform", "rademacher", "same", NULL };

void decay_draw(gsl_rng *rng, decay_dist dist, size_t d, double *q, double *k)
{
    const double a = sqrt(3.0);
    for (int side = 0; side < 2; side++) {
        double *x = side ? k : q;
        if (side && dist == DECAY_SAME) {
            memcpy(k, q, d * sizeof *k);
            break;
        }
        for (size_t c = 0; c < d; c++) {
            switch (dist) {
            case DECAY_UNIFORM:    x[c] = gsl_ran_flat(rng, -a, a); break;
            case DECAY_RADEMACHER: x[c] = gsl_rng_uniform_int(rng, 2) ? 1.0 : -1.0; break;
            default:               x[c] = gsl_ran_gaussian_ziggurat(rng, 1.0); break;
            }
        }
    }
}

/* h_i = q~_i conj(k~_i), q~_i = q[2i] + i q[2i+1]. */
static void pair_products(const double *q, const double *k, size_t h, double *hr, double *hi)
{
    for (size_t i = 0; i < h; i++) {
        double a = q[2 * i], b = q[2 * i + 1], c = k[2 * i], e = k[2 * i + 1];
        hr[i] = a * c + b * e;
        hi[i] = b * c - a * e;
    }
}

void decay_one(const double *theta, size_t h, const double *q, const double *k, double dist,
               double *score, double *absz, double *abel, double *perdraw)
{
    double sr = 0.0, si = 0.0, zr = 0.0, zi = 0.0, ab = 0.0, mx = 0.0, tot = 0.0;
    for (size_t i = 0; i < h; i++) {
        double a = dist * theta[i], c = cos(a), s = sin(a);
        double hr = q[2 * i] * k[2 * i] + q[2 * i + 1] * k[2 * i + 1];
        double hi = q[2 * i + 1] * k[2 * i] - q[2 * i] * k[2 * i + 1];
        zr += hr * c - hi * s;
        zi += hr * s + hi * c;
        sr += c;                                   /* S_{i+1} */
        si += s;
        double nr = 0.0, ni = 0.0;                 /* h_{i+1}, with h_h = 0 */
        if (i + 1 < h) {
            nr = q[2 * i + 2] * k[2 * i + 2] + q[2 * i + 3] * k[2 * i + 3];
            ni = q[2 * i + 3] * k[2 * i + 2] - q[2 * i + 2] * k[2 * i + 3];
        }
        double dh = hypot(nr - hr, ni - hi), sa = hypot(sr, si);
        ab += sa * dh;
        tot += sa;
        if (dh > mx) mx = dh;
    }
    *score = zr;
    *absz = hypot(zr, zi);
    *abel = ab;
    *perdraw = mx * tot;
}

/* ---- the empirical statistics ------------------------------------------------------------- */

struct decay_emp {
    size_t d, h, draws;
    double *hr, *hi;      /* (draws, h) h_i of each draw                                       */
    double *dh;           /* (draws, h) |h_{i+1} - h_i|, h_h = 0                                */
    double *mx;           /* (draws)    max_i |h_{i+1} - h_i|                                   */
    double *sh;           /* (draws)    sum_i |h_i| (rounding allowance of the violation test)  */
    double *score, *absv, *abel, *marg;   /* (draws) per-distance scratch                      */
    double *er, *ei, *abs_s;              /* (h) exp(i dist theta_i), |S_j|                     */
    double mx_median;
};

/* Every array of the structure, for allocation and freeing in one place. */
#define EMP_ARRAYS(e) { &(e)->hr, &(e)->hi, &(e)->dh, &(e)->mx, &(e)->sh, &(e)->score, \
                        &(e)->absv, &(e)->abel, &(e)->marg, &(e)->er, &(e)->ei, &(e)->abs_s }

size_t decay_emp_bytes(size_t d, size_t draws)
{
    size_t h = d / 2, per, n, bytes;
    /* 3 (draws, h) arrays, 6 (draws) arrays, 3 (h) arrays */
    if (__builtin_mul_overflow(h, (size_t)3, &per) || __builtin_add_overflow(per, (size_t)6, &per) ||
        __builtin_mul_overflow(per, draws, &n) || __builtin_add_overflow(n, 3 * h, &n) ||
        __builtin_mul_overflow(n, sizeof(double), &bytes))
        return 0;
    return bytes;
}

void decay_emp_destroy(decay_emp *e)
{
    if (!e) return;
    double **arr[] = EMP_ARRAYS(e);
    for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++) free(*arr[i]);
    free(e);
}

int decay_emp_create(decay_emp **out, size_t d, size_t draws, decay_dist dist,
                     unsigned long seed)
{
    *out = NULL;
    if (d == 0 || d % 2) return RK_EDIM;
    if (seed == 0 || (int)dist < 0 || dist >= DECAY_NDIST || draws == 0) return RK_EINVAL;
    if (!decay_emp_bytes(d, draws)) return RK_EOVERFLOW;
    decay_emp *e = calloc(1, sizeof *e);
    if (!e) return RK_ENOMEM;
    size_t h = d / 2;
    e->d = d;
    e->h = h;
    e->draws = draws;
    double **arr[] = EMP_ARRAYS(e);
    size_t len[] = { draws * h, draws * h, draws * h, draws, draws, draws, draws, draws, draws,
                     h, h, h };
    for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++)
        if (!(*arr[i] = malloc(len[i] * sizeof(double)))) { decay_emp_destroy(e); return RK_ENOMEM; }

    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    double *q = malloc(2 * d * sizeof *q);
    if (!rng || !q) { gsl_rng_free(rng); free(q); decay_emp_destroy(e); return RK_ENOMEM; }
    gsl_rng_set(rng, seed);
    for (size_t t = 0; t < draws; t++) {
        double *hr = e->hr + t * h, *hi = e->hi + t * h, *dh = e->dh + t * h;
        decay_draw(rng, dist, d, q, q + d);
        pair_products(q, q + d, h, hr, hi);
        double mx = 0.0, sh = 0.0;
        for (size_t i = 0; i < h; i++) {
            double nr = i + 1 < h ? hr[i + 1] : 0.0, ni = i + 1 < h ? hi[i + 1] : 0.0;
            dh[i] = hypot(nr - hr[i], ni - hi[i]);
            if (dh[i] > mx) mx = dh[i];
            sh += hypot(hr[i], hi[i]);
        }
        e->mx[t] = mx;
        e->sh[t] = sh;
    }
    gsl_rng_free(rng);
    free(q);
    memcpy(e->score, e->mx, draws * sizeof(double));
    gsl_sort(e->score, 1, draws);
    e->mx_median = gsl_stats_median_from_sorted_data(e->score, 1, draws);
    *out = e;
    return RK_OK;
}

void decay_emp_stats(decay_emp *e, const double *theta, double dist, decay_stats *st)
{
    size_t h = e->h, n = e->draws;
    double tot = 0.0, sr = 0.0, si = 0.0, tmax = 0.0;
    for (size_t i = 0; i < h; i++) {
        double a = dist * theta[i];
        e->er[i] = cos(a);
        e->ei[i] = sin(a);
        sr += e->er[i];
        si += e->ei[i];
        e->abs_s[i] = hypot(sr, si);
        tot += e->abs_s[i];
        if (fabs(theta[i]) > tmax) tmax = fabs(theta[i]);
    }
    /* Rounding allowance of the violation test: z carries <= (h + 4) u sum|h_i| from the sums
     * and products plus 2 u |dist| theta_max sum|h_i| from the angles; each bound <= (h + 4) u of
     * itself. A draw violates (37) only beyond that (d = 2 is always tight: |z| = |h_0|). */
    const double u = DBL_EPSILON / 2;
    const double eps = ((double)h + 4.0) * u + 2.0 * u * fabs(dist) * tmax;
    size_t viol = 0;
    double mmin = INFINITY;
    const double *er = e->er, *ei = e->ei, *as = e->abs_s;
    #pragma omp parallel for schedule(static) reduction(+ : viol) reduction(min : mmin) \
        if (n * h > 65536)
    for (size_t t = 0; t < n; t++) {
        const double *hr = e->hr + t * h, *hi = e->hi + t * h, *dh = e->dh + t * h;
        double zr = 0.0, zi = 0.0, ab = 0.0;
        for (size_t i = 0; i < h; i++) {
            zr += hr[i] * er[i] - hi[i] * ei[i];
            zi += hr[i] * ei[i] + hi[i] * er[i];
            ab += as[i] * dh[i];
        }
        double az = hypot(zr, zi), pb = e->mx[t] * tot;
        e->score[t] = zr;
        e->absv[t] = fabs(zr);
        e->abel[t] = ab;
        double m = pb > 0.0 ? 1.0 - az / pb : az > 0.0 ? -INFINITY : 1.0;
        e->marg[t] = m;
        if (m < mmin) mmin = m;
        double slack = eps * e->sh[t];
        if (az > ab + slack + eps * ab || az > pb + slack + eps * pb) viol++;
    }
    st->score_mean = gsl_stats_mean(e->score, 1, n);
    st->abs_mean = gsl_stats_mean(e->absv, 1, n);
    gsl_sort(e->score, 1, n);
    gsl_sort(e->absv, 1, n);
    gsl_sort(e->abel, 1, n);
    st->score_median = gsl_stats_median_from_sorted_data(e->score, 1, n);
    st->score_q05 = gsl_stats_quantile_from_sorted_data(e->score, 1, n, 0.05);
    st->score_q95 = gsl_stats_quantile_from_sorted_data(e->score, 1, n, 0.95);
    st->abs_median = gsl_stats_median_from_sorted_data(e->absv, 1, n);
    st->abs_q05 = gsl_stats_quantile_from_sorted_data(e->absv, 1, n, 0.05);
    st->abs_q95 = gsl_stats_quantile_from_sorted_data(e->absv, 1, n, 0.95);
    st->abel_median = gsl_stats_median_from_sorted_data(e->abel, 1, n);
    st->perdraw_median = e->mx_median * tot;
    st->min_margin = mmin;
    st->violations = viol;
}

/* ---- the table ------------------------------------------------------------------------------ */

size_t decay_rows(double dmin, double dmax, double step)
{
    if (!(step > 0.0) || !(dmax >= dmin) || !isfinite(dmin) || !isfinite(dmax)) return 0;
    double n = floor((dmax - dmin) / step * (1.0 + 1e-12) + 1e-9) + 1.0;
    return n >= (double)SIZE_MAX ? SIZE_MAX : (size_t)n;
}

int decay_run_prepare(decay_run *r)
{
    if (r->d == 0 || r->d % 2 || r->ncurves == 0 || r->ncurves > DECAY_MAXCURVES) return RK_EINVAL;
    for (size_t c = 0; c < r->ncurves; c++) {
        if (!r->theta[c] && !(r->theta[c] = malloc(r->d / 2 * sizeof(double)))) return RK_ENOMEM;
        int err = decay_freqs(&r->curve[c], r->d, r->theta[c]);
        if (err) return err;
    }
    return RK_OK;
}

void decay_run_free(decay_run *r)
{
    for (size_t c = 0; c < DECAY_MAXCURVES; c++) {
        free(r->theta[c]);
        r->theta[c] = NULL;
    }
}

void decay_curve_tag(const rk_rope_config *rc, char *tag, size_t n)
{
    rk_rope_scaling sc = rc->scaling;
    switch (sc) {
    case RK_SCALE_NONE:
        snprintf(tag, n, "%s", "");
        break;
    case RK_SCALE_LINEAR:
    case RK_SCALE_NTK:
        snprintf(tag, n, "_%s%.6g", rk_rope_scaling_name(sc), rc->factor);
        break;
    case RK_SCALE_DYNAMIC:
        snprintf(tag, n, "_dynamic%.6g_%.6g", rc->factor, rc->max_pos);
        break;
    case RK_SCALE_YARN:
    case RK_SCALE_YARN_PAPER:
        snprintf(tag, n, "_%s%.6g_%.6g", sc == RK_SCALE_YARN ? "yarn" : "yarnpaper", rc->factor,
                 rc->orig_ctx);
        break;
    case RK_SCALE_LLAMA3: {
        double lo = rc->low_freq_factor, hi = rc->high_freq_factor;
        if ((lo == 0.0 || lo == 1.0) && (hi == 0.0 || hi == 4.0))    /* the defaults */
            snprintf(tag, n, "_llama3_%.6g_%.6g", rc->factor, rc->orig_ctx);
        else
            snprintf(tag, n, "_llama3_%.6g_%.6g_%.6g_%.6g", rc->factor, rc->orig_ctx, lo, hi);
        break;
    }
    default:
        snprintf(tag, n, "_%s", rk_rope_scaling_name(sc));
    }
}

/* The curve's entry of the '#' line: its configuration as the library resolved it. */
static int curve_header(FILE *f, const char *name, const rk_rope_config *rc, size_t d, int first)
{
    rk_rope_config c = *rc;
    c.dim = d;
    c.rotary_dim = 0;
    c.style = RK_ROPE_INTERLEAVED;
    c.table_len = 1;
    rk_rope *rope = NULL;
    int err = rk_rope_create(&rope, &c);
    if (err) return err;
    const rk_rope_config *g = rk_rope_get_config(rope);
    rk_rope_scaling sc = g->scaling;
    fprintf(f, "%s%s[base=%.17g scaling=%s", first ? "" : ",", name, g->base,
            rk_rope_scaling_name(sc));
    if (sc != RK_SCALE_NONE) fprintf(f, " factor=%.17g", g->factor);
    if (sc == RK_SCALE_YARN || sc == RK_SCALE_YARN_PAPER || sc == RK_SCALE_LLAMA3 ||
        sc == RK_SCALE_LONGROPE)
        fprintf(f, " orig_ctx=%.17g", g->orig_ctx);
    if (sc == RK_SCALE_YARN || sc == RK_SCALE_YARN_PAPER)
        fprintf(f, " beta_fast=%g beta_slow=%g", g->beta_fast, g->beta_slow);
    if (sc == RK_SCALE_YARN && (g->no_truncate || g->mscale != 0.0 || g->mscale_all_dim != 0.0))
        fprintf(f, " truncate=%s mscale=%g mscale_all_dim=%g", g->no_truncate ? "false" : "true",
                g->mscale, g->mscale_all_dim);
    if (sc == RK_SCALE_LLAMA3)
        fprintf(f, " low_freq_factor=%g high_freq_factor=%g", g->low_freq_factor,
                g->high_freq_factor);
    if (sc == RK_SCALE_DYNAMIC) fprintf(f, " max_pos=%.17g", g->max_pos);
    if (sc == RK_SCALE_DYNAMIC || sc == RK_SCALE_LONGROPE) fprintf(f, " seq_len=%zu", g->seq_len);
    if (sc == RK_SCALE_LONGROPE)
        fprintf(f, " factors=%s", (double)g->seq_len > g->orig_ctx ? "long" : "short");
    if (rk_rope_mscale(rope) != 1.0) fprintf(f, " attention_factor=%.17g", rk_rope_mscale(rope));
    fputc(']', f);
    rk_rope_destroy(rope);
    return RK_OK;
}

int decay_write(FILE *f, const decay_run *r)
{
    size_t h = r->d / 2;
    decay_emp *e = NULL;
    if (r->draws) {
        int err = decay_emp_create(&e, r->d, r->draws, r->dist, r->seed);
        if (err) return err;
    }
    fprintf(f, "# ropekit decay %s (GSL %s): dim=%zu curves=", rk_version(), GSL_VERSION, r->d);
    for (size_t c = 0; c < r->ncurves; c++) {
        int err = curve_header(f, r->name[c], &r->curve[c], r->d, c == 0);
        if (err) { decay_emp_destroy(e); return err; }
    }
    fprintf(f, " min_distance=%.17g step=%.17g rows=%zu max_distance=%.17g draws=%zu",
            r->dmin, r->step, r->rows, r->rows ? r->dmin + (double)(r->rows - 1) * r->step : r->dmin,
            r->draws);
    if (r->draws)
        fprintf(f, " dist=%s seed=%lu rng=mt19937", decay_dist_names[r->dist], r->seed);
    fputc('\n', f);
    fprintf(f, "# distance = m - n (query minus key position); theta_i = base^(-2i/d), i = 0..d/2-1, "
               "then the scaling (rk_rope_freqs); bound = B(distance) = mean_{j=1..d/2} |S_j|, "
               "S_j = sum_{i<j} exp(i distance theta_i) (Figure 2, first curve)");
    if (r->ncurves > 1) fprintf(f, "; bound_<curve> = B for each curve");
    if (r->draws)
        fprintf(f, "; over %zu draws of (q, k) with the first curve's theta, pairs (q[2i], q[2i+1]): "
                   "score = (R_m q).(R_n k) = Re z, z = sum_i h_i exp(i distance theta_i), "
                   "h_i = q~_i conj(k~_i); abs = |score|; q05/q95 = 5%%/95%% quantiles; "
                   "abel_median = median of sum_i |S_{i+1}||h_{i+1}-h_i| (middle of eq. 37); "
                   "perdraw_bound_median = median of max_i|h_{i+1}-h_i| * sum_j |S_j| (right of eq. 37); "
                   "perdraw_bound_min_margin = min over draws of 1 - |z|/(max_i|h_{i+1}-h_i| sum_j |S_j|); "
                   "violations = draws with |z| above either bound of eq. 37 (beyond rounding); "
                   "an attention factor m (yarn, longrope: attention_factor above) would multiply "
                   "scores and bounds alike by m^2 and is left out",
                r->draws);
    fputc('\n', f);
    fprintf(f, "distance\tbound");
    if (r->ncurves > 1)
        for (size_t c = 0; c < r->ncurves; c++) fprintf(f, "\tbound_%s", r->name[c]);
    if (r->draws)
        fprintf(f, "\tscore_mean\tscore_median\tscore_q05\tscore_q95\tabs_mean\tabs_median\t"
                   "abs_q05\tabs_q95\tabel_median\tperdraw_bound_median\tperdraw_bound_min_margin\t"
                   "violations");
    fputc('\n', f);
    for (size_t i = 0; i < r->rows; i++) {
        double dist = r->dmin + (double)i * r->step;
        fprintf(f, "%.12g\t%.12g", dist, decay_bound(r->theta[0], h, dist));
        if (r->ncurves > 1)
            for (size_t c = 0; c < r->ncurves; c++)
                fprintf(f, "\t%.12g", decay_bound(r->theta[c], h, dist));
        if (e) {
            decay_stats st;
            decay_emp_stats(e, r->theta[0], dist, &st);
            fprintf(f, "\t%.10g\t%.10g\t%.10g\t%.10g\t%.10g\t%.10g\t%.10g\t%.10g\t%.10g\t%.10g"
                       "\t%.6g\t%zu",
                    st.score_mean, st.score_median, st.score_q05, st.score_q95, st.abs_mean,
                    st.abs_median, st.abs_q05, st.abs_q95, st.abel_median, st.perdraw_median,
                    st.min_margin, st.violations);
        }
        fputc('\n', f);
    }
    decay_emp_destroy(e);
    return ferror(f) ? RK_EIO : RK_OK;
}

