/* Exact softmax attention, float32, d = d_v = 64: rk_attn_execute on (n, 64) q, k, v for
 * n = 1024, 4096, 8192, bidirectional and causal, 1 and max threads, plus one causal + RoPE
 * row. GFLOP/s counts 4 n^2 d flops (Q K^T and P V) for causal too, so the causal saving shows
 * as a higher figure; `ratio` divides by OpenBLAS sgemm on the Q K^T shape (n x n x 64, same
 * thread count, same run); `causal_bidir` is the time ratio of the two modes. Memory: plan_MB
 * is rk_attn_bytes (packed operands and scratch, O(n d)), rss_MB the resident set right after
 * the runs, peak_rss_MB the process peak so far (earlier sections included). */
#include "bench.h"
#include "ropekit.h"

#include <omp.h>
#include <stdio.h>



void bench_softmax(const bench_opts *o)
{
    static const size_t full[] = { 1024, 4096, 8192 }, quick[] = { 256, 1024 };
    const size_t *ns = o->quick ? quick : full;
    const size_t nn = o->quick ? 2 : 3, d = 64;
    int nts[2] = { 1, o->max_threads > 1 ? o->max_threads : 1 };
    int ntn = nts[1] > 1 ? 2 : 1;

    fprintf(o->out, "# softmax: exact attention, float32, d = d_v = %zu, n_q = n_kv = n; GFLOPs = "
            "4 n^2 d / t (causal counted the same); ratio = GFLOPs / sgemm(n x n x %zu) GFLOPs, "
            "same threads; causal_bidir = causal time / bidirectional time\n", d, d);
    fprintf(o->out, "softmax\tmode\tthreads\tn\td\tmedian_ms\tGFLOPs\tsgemm_GFLOPs\tratio\t"
            "causal_bidir\tplan_MB\trss_MB\tpeak_rss_MB\n");

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
        double flops = 4.0 * (double)n * (double)n * (double)d;

        for (int it = 0; it < ntn; it++) {
            int nt = nts[it];
            /* mode 0: bidirectional, 1: causal, 2: causal + RoPE (max threads, n = 4096 only).
             * The attention runs first and sgemm after, so the n x n sgemm output is not yet
             * in the memory figures. */
            double t[3] = { 0 }, plan_mb[3] = { 0 }, rss_mb[3] = { 0 }, peak_mb[3] = { 0 };
            int ran[3] = { 0 };
            for (int mode = 0; mode < 3; mode++) {
                if (mode == 2 && (it != ntn - 1 || n != 4096)) continue;
                rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = n, .n_kv = n, .d = d,
                                     .causal = mode > 0, .nthreads = nt,
                                     .rope = mode == 2 ? RK_ROPE_QK : RK_ROPE_NONE };
                rk_attn *p = NULL;
                if (rk_attn_create(&p, &c)) {
                    fprintf(o->out, "# softmax: create failed: %s\n", rk_last_error());
                    continue;
                }
                t[mode] = bench_time_attn(o, "softmax", p, &q, &k, &v, &out);
                plan_mb[mode] = (double)rk_attn_bytes(p) / 1048576.0;
                rss_mb[mode] = (double)bench_rss_now() / 1048576.0;
                peak_mb[mode] = (double)bench_peak_rss() / 1048576.0;
                ran[mode] = 1;
                rk_attn_destroy(p);
            }
            double sg = bench_sgemm_gflops(o, n, n, d, nt);
            for (int mode = 0; mode < 3; mode++) {
                if (!ran[mode]) continue;
                double gf = t[mode] > 0.0 ? flops / t[mode] * 1e-9 : 0.0;
                fprintf(o->out, "softmax\t%s\t%d\t%zu\t%zu\t%.3f\t%.2f\t%.2f\t%.3f\t%.3f\t%.2f\t%.1f\t%.1f\n",
                        mode == 0 ? "bidir" : mode == 1 ? "causal" : "causal+rope", nt, n, d,
                        t[mode] * 1e3, gf, sg, sg > 0.0 ? gf / sg : 0.0,
                        t[0] > 0.0 ? t[mode] / t[0] : 0.0, plan_mb[mode], rss_mb[mode], peak_mb[mode]);
            }
            fflush(o->out);
        }
        rk_mat_free(&q); rk_mat_free(&k); rk_mat_free(&v); rk_mat_free(&out);
    }
}
