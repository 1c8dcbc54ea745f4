/* Exact softmax attention, float32, d = d_v = 64: rk_attn_execute on (n, 64) q, k, v for
 * n = 1024, 4096, 8192, bidirectional and causal, at 1, 2 and all threads, plus one causal +
 * RoPE row. GFLOP/s counts the useful work, 4 d flops (q.k and p v) per (query, key) pair the
 * query sees: 4 n^2 d bidirectional, 4 d n (n + 1) / 2 causal. frac_w / frac_max divide it by
 * the FMA peak (bench_fma_peak, same thread count, same run) of the vector width of the path
 * that ran and of the widest the CPU has; `ratio` divides by OpenBLAS sgemm on the Q K^T shape
 * (n x n x 64, same threads); `causal_bidir` is the time ratio of the two modes. Memory:
 * plan_MB is rk_attn_bytes (packed operands and scratch, O(n d)), rss_MB the resident set right
 * after the runs, peak_rss_MB the process peak so far (earlier sections included).
 * A second table runs every kernel path the CPU has on one shape (n = 2048) at 1 thread. */
#include "bench.h"
#include "ropekit.h"

#include <omp.h>
#include <stdio.h>

static double pairs_of(size_t n, int causal)
{
    return causal ? (double)n * (double)(n + 1) / 2.0 : (double)n * (double)n;
}

/* One plan, timed; *isa gets the path it reports. 0 on failure (reported). */
static double run(const bench_opts *o, const rk_attn_config *c, const rk_mat *q, const rk_mat *k,
                  const rk_mat *v, rk_mat *out, rk_isa *isa, double *plan_mb)
{
    rk_attn *p = NULL;
    if (rk_attn_create(&p, c)) {
        fprintf(o->out, "# softmax: create failed: %s\n", rk_last_error());
        return 0.0;
    }
    *isa = rk_attn_get_config(p)->isa;
    double t = bench_time_attn(o, "softmax", p, q, k, v, out);
    if (plan_mb) *plan_mb = (double)rk_attn_bytes(p) / 1048576.0;
    rk_attn_destroy(p);
    return t;
}

static void paths_table(const bench_opts *o)
{
    const size_t n = o->quick ? 1024 : 2048, d = 64;
    fprintf(o->out, "# softmax paths: every kernel path of this CPU, n = %zu, d = %zu, 1 thread "
            "(the portable path: at most 3 repeats); time_vs_widest = time / the widest path's "
            "time\n", n, d);
    fprintf(o->out, "softmax_path\tmode\tpath\tmedian_ms\tGFLOPs\tfrac_w\tfrac_max\ttime_vs_widest\n");
    rk_mat q = { 0 }, k = { 0 }, v = { 0 }, out = { 0 };
    if (rk_mat_alloc(&q, n, d) || rk_mat_alloc(&k, n, d) || rk_mat_alloc(&v, n, d) ||
        rk_mat_alloc(&out, n, d)) {
        fprintf(o->out, "# softmax: cannot allocate n = %zu\n", n);
        goto done;
    }
    bench_fill(&q, 1); bench_fill(&k, 2); bench_fill(&v, 3);
    static const rk_isa order[3] = { RK_ISA_AVX512, RK_ISA_AVX2, RK_ISA_PORTABLE };
    for (int causal = 0; causal < 2; causal++) {
        double t_widest = 0.0;
        for (int i = 0; i < 3; i++) {
            if (!rk_isa_available(order[i])) continue;
            rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = n, .n_kv = n, .d = d, .causal = causal,
                                 .nthreads = 1, .isa = order[i] };
            rk_isa ran;
            bench_opts few = *o;                   /* the scalar loops are ~100x slower */
            if (order[i] == RK_ISA_PORTABLE && few.repeats > 3) few.repeats = 3;
            double t = run(&few, &c, &q, &k, &v, &out, &ran, NULL);
            if (t <= 0.0) continue;
            if (t_widest == 0.0) t_widest = t;
            double gf = 4.0 * (double)d * pairs_of(n, causal) / t * 1e-9;
            char fw[16], fm[16];
            bench_fracs(o, ran, 1, gf, fw, fm);
            fprintf(o->out, "softmax_path\t%s\t%s\t%.3f\t%.2f\t%s\t%s\t%.2f\n",
                    causal ? "causal" : "bidir", rk_isa_name(ran), t * 1e3, gf, fw, fm, t / t_widest);
            fflush(o->out);
        }
    }
done:
    rk_mat_free(&q); rk_mat_free(&k); rk_mat_free(&v); rk_mat_free(&out);
}

void bench_softmax(const bench_opts *o)
{
    static const size_t full[] = { 1024, 4096, 8192 }, quick[] = { 256, 1024 };
    const size_t *ns = o->quick ? quick : full;
    const size_t nn = o->quick ? 2 : 3, d = 64, nrope = o->quick ? 1024 : 4096;
    int nts[3];
    const size_t ntn = bench_thread_counts(o, nts);

    fprintf(o->out, "# softmax: exact attention, float32, d = d_v = %zu, n_q = n_kv = n; GFLOPs = "
            "4 d (pairs seen) / t (n^2 bidirectional, n (n+1)/2 causal); frac_w, frac_max = "
            "GFLOPs / FMA peak of the path's width, of the widest width (same threads); ratio = "
            "GFLOPs / sgemm(n x n x %zu) GFLOPs, same threads; causal_bidir = causal time / "
            "bidirectional time\n", d, d);
    fprintf(o->out, "softmax\tmode\tthreads\tn\td\tpath\tmedian_ms\tGFLOPs\tfrac_w\tfrac_max\t"
            "sgemm_GFLOPs\tratio\tcausal_bidir\tplan_MB\trss_MB\tpeak_rss_MB\n");

    for (size_t in = 0; in < nn; in++) {
        size_t n = ns[in];
        rk_mat q = { 0 }, k = { 0 }, v = { 0 }, out = { 0 };
        if (rk_mat_alloc(&q, n, d) || rk_mat_alloc(&k, n, d) || rk_mat_alloc(&v, n, d) ||
            rk_mat_alloc(&out, n, d)) {
            fprintf(o->out, "# softmax: cannot allocate n = %zu: %s\n", n, rk_last_error());
            rk_mat_free(&q); rk_mat_free(&k); rk_mat_free(&v); rk_mat_free(&out);
            return;
        }
        bench_fill(&q, 1); bench_fill(&k, 2); bench_fill(&v, 3);

        for (size_t it = 0; it < ntn; it++) {
            int nt = nts[it];
            /* mode 0: bidirectional, 1: causal, 2: causal + RoPE (all threads, one n only).
             * The attention runs first and sgemm after, so the n x n sgemm output is not yet
             * in the memory figures. */
            double t[3] = { 0 }, plan_mb[3] = { 0 }, rss_mb[3] = { 0 }, peak_mb[3] = { 0 };
            rk_isa ran[3] = { RK_ISA_AUTO, RK_ISA_AUTO, RK_ISA_AUTO };
            for (int mode = 0; mode < 3; mode++) {
                if (mode == 2 && (it != ntn - 1 || n != nrope)) continue;
                rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = n, .n_kv = n, .d = d,
                                     .causal = mode > 0, .nthreads = nt,
                                     .rope = mode == 2 ? RK_ROPE_QK : RK_ROPE_NONE };
                t[mode] = run(o, &c, &q, &k, &v, &out, &ran[mode], &plan_mb[mode]);
                rss_mb[mode] = (double)bench_rss_now() / 1048576.0;
                peak_mb[mode] = (double)bench_peak_rss() / 1048576.0;
            }
            double sg = bench_sgemm_gflops(o, n, n, d, nt);
            for (int mode = 0; mode < 3; mode++) {
                if (t[mode] <= 0.0) continue;
                double gf = 4.0 * (double)d * pairs_of(n, mode > 0) / t[mode] * 1e-9;
                char fw[16], fm[16];
                bench_fracs(o, ran[mode], nt, gf, fw, fm);
                fprintf(o->out, "softmax\t%s\t%d\t%zu\t%zu\t%s\t%.3f\t%.2f\t%s\t%s\t%.2f\t%.3f\t%.3f\t"
                        "%.2f\t%.1f\t%.1f\n",
                        mode == 0 ? "bidir" : mode == 1 ? "causal" : "causal+rope", nt, n, d,
                        rk_isa_name(ran[mode]), t[mode] * 1e3, gf, fw, fm, sg,
                        sg > 0.0 ? gf / sg : 0.0, t[0] > 0.0 ? t[mode] / t[0] : 0.0,
                        plan_mb[mode], rss_mb[mode], peak_mb[mode]);
            }
            fflush(o->out);
        }
        rk_mat_free(&q); rk_mat_free(&k); rk_mat_free(&v); rk_mat_free(&out);
    }
    paths_table(o);
}
