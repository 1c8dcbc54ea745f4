/* FAVOR+ (positive features, orthogonal projection), float32, d = d_v = 64, m = 256:
 * rk_attn_execute on (n, 64) q, k, v for n = 1024 ... 65536, bidirectional and causal, max
 * threads, next to exact softmax attention at the same n (skipped above n = 16384 unless a full
 * run predicts it under RK_BENCH_SOFTMAX_MAX_S). GFLOP/s counts the model
 * 4 n m d (q W^T, k W^T) + 4 n F d_v (phi(K)^T V, phi(Q) S), the same for causal (whose masked
 * 64 x 64 blocks add ~2 n 64 (F + d_v) uncounted flops); `ratio` divides by OpenBLAS sgemm on
 * the projection shape (1024 x 256 x 64), same run, same threads; frac_w / frac_max divide the
 * model GFLOP/s by the FMA peak of the path's width / the widest (bench_fma_peak). Memory: plan_MB is
 * rk_attn_bytes (independent of n: O(m d) state + O(256 (d + m + F)) scratch), rss_MB the
 * resident set after the runs (inputs are 4 n d floats), peak_rss_MB the process peak so far.
 * The crossover is the first n at which FAVOR+ beats softmax, interpolated in log-log between
 * measured sizes (softmax extrapolated as n^2 where it was skipped; marked so). */
#include "bench.h"
#include "ropekit.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>

#define RK_BENCH_SOFTMAX_MAX_S 3.0   /* full runs: time softmax beyond 16384 while one run < this */
#define NSIZES 7


/* One timed plan; 0 on failure (reported). */
static double run(const bench_opts *o, const rk_attn_config *c, const rk_mat *q, const rk_mat *k,
                  const rk_mat *v, rk_mat *out, double *plan_mb, rk_isa *isa)
{
    rk_attn *p = NULL;
    if (rk_attn_create(&p, c)) {
        fprintf(o->out, "# performer: create failed: %s\n", rk_last_error());
        return 0.0;
    }
    if (isa) *isa = rk_attn_get_config(p)->isa;
    double t = bench_time_attn(o, "performer", p, q, k, v, out);
    *plan_mb = (double)rk_attn_bytes(p) / 1048576.0;
    rk_attn_destroy(p);
    return t;
}

void bench_performer(const bench_opts *o)
{
    static const size_t full[NSIZES] = { 1024, 2048, 4096, 8192, 16384, 32768, 65536 };
    static const size_t quick[] = { 1024, 2048, 4096 };
    const size_t *ns = o->quick ? quick : full;
    const size_t nn = o->quick ? 3 : NSIZES, d = 64, m = 256, F = m;
    const int nt = o->max_threads > 1 ? o->max_threads : 1;
    double sg = bench_sgemm_gflops(o, 1024, m, d, nt);

    fprintf(o->out, "# performer: FAVOR+ positive, orthogonal, m = %zu, float32, d = d_v = %zu, "
            "n_q = n_kv = n, %d threads; GFLOPs = (4 n m d + 4 n F d_v) / t; ratio = GFLOPs / "
            "sgemm(1024 x %zu x %zu) = %.2f GFLOPs; softmax_ms = exact attention, same mode "
            "(- = skipped); speedup = softmax / performer; frac_w / frac_max = GFLOPs / FMA peak "
            "of the path's width / the widest\n", m, d, nt, m, d, sg);
    fprintf(o->out, "performer\tmode\tthreads\tn\tm\tpath\tmedian_ms\tGFLOPs\tfrac_w\tfrac_max\t"
            "ratio\tsoftmax_ms\tspeedup\tplan_MB\trss_MB\tpeak_rss_MB\n");

    double tf[2][NSIZES] = { { 0 } }, ts[2][NSIZES] = { { 0 } };
    for (size_t in = 0; in < nn; in++) {
        size_t n = ns[in];
        rk_mat q = { 0 }, k = { 0 }, v = { 0 }, out = { 0 };
        if (rk_mat_alloc(&q, n, d) || rk_mat_alloc(&k, n, d) || rk_mat_alloc(&v, n, d) ||
            rk_mat_alloc(&out, n, d)) {
            fprintf(o->out, "# performer: cannot allocate n = %zu: %s\n", n, rk_last_error());
            rk_mat_free(&q); rk_mat_free(&k); rk_mat_free(&v); rk_mat_free(&out);
            break;
        }
        bench_fill(&q, 1); bench_fill(&k, 2); bench_fill(&v, 3);
        double flops = 4.0 * (double)n * (double)m * (double)d + 4.0 * (double)n * (double)F * (double)d;
        for (int mode = 0; mode < 2; mode++) {
            rk_attn_config c = { .kind = RK_PERFORMER, .n_q = n, .n_kv = n, .d = d, .causal = mode,
                                 .nthreads = nt, .n_features = m, .seed = 1 };
            double plan_mb = 0, smb = 0;
            rk_isa isa = RK_ISA_AUTO;
            double t = run(o, &c, &q, &k, &v, &out, &plan_mb, &isa);
            tf[mode][in] = t;
            /* softmax: always up to 16384; beyond, on full runs while predicted < the cap */
            double pred = in ? ts[mode][in - 1] * 4.0 : 0.0;
            int do_sm = n <= 16384 || (!o->quick && pred > 0.0 && pred < RK_BENCH_SOFTMAX_MAX_S);
            if (do_sm) {
                rk_attn_config sc = { .kind = RK_SOFTMAX, .n_q = n, .n_kv = n, .d = d, .causal = mode,
                                      .nthreads = nt };
                ts[mode][in] = run(o, &sc, &q, &k, &v, &out, &smb, NULL);
            }
            double gf = t > 0.0 ? flops / t * 1e-9 : 0.0;
            char sm[32] = "-", sp[32] = "-";
            if (ts[mode][in] > 0.0) {
                snprintf(sm, sizeof sm, "%.3f", ts[mode][in] * 1e3);
                snprintf(sp, sizeof sp, "%.2f", t > 0.0 ? ts[mode][in] / t : 0.0);
            }
            char fw[16], fm[16];
            bench_fracs(o, isa, nt, gf, fw, fm);
            fprintf(o->out, "performer\t%s\t%d\t%zu\t%zu\t%s\t%.3f\t%.2f\t%s\t%s\t%.3f\t%s\t%s\t%.2f\t%.1f\t%.1f\n",
                    mode ? "causal" : "bidir", nt, n, m, rk_isa_name(isa), t * 1e3, gf, fw, fm,
                    sg > 0.0 ? gf / sg : 0.0, sm, sp,
                    plan_mb, (double)bench_rss_now() / 1048576.0, (double)bench_peak_rss() / 1048576.0);
            fflush(o->out);
        }
        rk_mat_free(&q); rk_mat_free(&k); rk_mat_free(&v); rk_mat_free(&out);
    }

    /* crossover: first n with performer < softmax, log-log interpolation of the time ratio */
    for (int mode = 0; mode < 2; mode++) {
        double prev_r = 0.0, prev_n = 0.0, last_s = 0.0, last_n = 0.0;
        int found = 0, extrap = 0;
        for (size_t in = 0; in < nn && !found; in++) {
            double n = (double)ns[in], s = ts[mode][in];
            if (tf[mode][in] <= 0.0) break;
            if (s > 0.0) { last_s = s; last_n = n; }
            else if (last_s > 0.0) { s = last_s * (n / last_n) * (n / last_n); extrap = 1; }
            else break;
            double r = log(tf[mode][in] / s);          /* < 0: performer faster */
            if (r < 0.0) {
                if (in == 0)
                    fprintf(o->out, "# performer: %s crossover below n = %.0f (faster at every size)\n",
                            mode ? "causal" : "bidir", n);
                else {
                    double x = log(prev_n) + (log(n) - log(prev_n)) * prev_r / (prev_r - r);
                    fprintf(o->out, "# performer: %s crossover n ~ %.0f (between %.0f and %.0f%s)\n",
                            mode ? "causal" : "bidir", exp(x), prev_n, n,
                            extrap ? "; softmax extrapolated as n^2" : "");
                }
                found = 1;
            }
            prev_r = r;
            prev_n = n;
        }
        if (!found)
            fprintf(o->out, "# performer: %s: no crossover up to n = %zu\n", mode ? "causal" : "bidir",
                    ns[nn - 1]);
    }
}
