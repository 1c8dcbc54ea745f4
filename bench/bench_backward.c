/* Training: the forward that saves what the backward needs (rk_attn_forward) and the backward
 * (rk_attn_backward), float32, d = d_v = 64, n_q = n_kv = n, each timed separately (medians),
 * and their ratio. Exact softmax at n = 1024 and 4096, bidirectional and causal, 1, 2 and all
 * threads: bwd_GFLOPs counts 10 d flops per (query, key) pair the query sees (five products of
 * 2 d: S = Q K^T again, dP = dO V^T, dQ += dS K, dK += dS^T Q, dV += P^T dO), frac_w /
 * frac_max divide it by the FMA peak of the path's width / of the widest. FAVOR+ (positive,
 * m = 256) at n = 4096 and 16384 and linear elu+1 at the same n, all threads: their time ratio
 * only (a kind without a backward says so in a '#' line). */
#include "bench.h"
#include "ropekit.h"

#include <stdio.h>

static void row(const bench_opts *o, const char *kind, const rk_attn_config *c, const rk_mat *q,
                const rk_mat *k, const rk_mat *v, double flops_bwd)
{
    rk_attn *p = NULL;
    if (rk_attn_create(&p, c)) {
        fprintf(o->out, "# backward: create failed: %s\n", rk_last_error());
        return;
    }
    rk_isa isa = rk_attn_get_config(p)->isa;
    double tf, tb;
    bench_time_grad(o, "backward", p, q, k, v, &tf, &tb);
    rk_attn_destroy(p);
    if (tf <= 0.0) return;
    char gf[16] = "-", fw[16] = "-", fm[16] = "-", ratio[16] = "-", bms[16] = "-";
    if (tb > 0.0) {
        snprintf(bms, sizeof bms, "%.3f", tb * 1e3);
        snprintf(ratio, sizeof ratio, "%.2f", tb / tf);
        if (flops_bwd > 0.0) {
            double g = flops_bwd / tb * 1e-9;
            snprintf(gf, sizeof gf, "%.2f", g);
            bench_fracs(o, isa, c->nthreads, g, fw, fm);
        }
    }
    fprintf(o->out, "backward\t%s\t%s\t%d\t%zu\t%s\t%.3f\t%s\t%s\t%s\t%s\t%s\n", kind,
            c->causal ? "causal" : "bidir", c->nthreads, c->n_q, rk_isa_name(isa), tf * 1e3, bms,
            ratio, gf, fw, fm);
    fflush(o->out);
}

void bench_backward(const bench_opts *o)
{
    const size_t d = 64;
    static const size_t sm_full[] = { 1024, 4096 }, sm_quick[] = { 256, 1024 };
    static const size_t lin_full[] = { 4096, 16384 }, lin_quick[] = { 1024, 4096 };
    const size_t *sn = o->quick ? sm_quick : sm_full, *ln = o->quick ? lin_quick : lin_full;
    int nts[3];
    const size_t ntn = bench_thread_counts(o, nts);

    fprintf(o->out, "# backward: training forward (saving) and backward, float32, d = d_v = %zu, "
            "n_q = n_kv = n; bwd_fwd = backward time / forward time; softmax bwd_GFLOPs = 10 d "
            "(pairs seen) / t, frac_w / frac_max of the FMA peak of the path's width / the widest "
            "(same threads)\n", d);
    fprintf(o->out, "backward\tkind\tmode\tthreads\tn\tpath\tfwd_ms\tbwd_ms\tbwd_fwd\tbwd_GFLOPs\t"
            "frac_w\tfrac_max\n");
    for (int part = 0; part < 2; part++)
        for (size_t in = 0; in < 2; in++) {
            size_t n = part == 0 ? sn[in] : ln[in];
            rk_mat q = { 0 }, k = { 0 }, v = { 0 };
            if (rk_mat_alloc(&q, n, d) || rk_mat_alloc(&k, n, d) || rk_mat_alloc(&v, n, d)) {
                fprintf(o->out, "# backward: cannot allocate n = %zu\n", n);
                rk_mat_free(&q); rk_mat_free(&k); rk_mat_free(&v);
                return;
            }
            bench_fill(&q, 1); bench_fill(&k, 2); bench_fill(&v, 3);
            for (int causal = 0; causal < 2; causal++) {
                if (part == 0) {
                    double pairs = causal ? (double)n * (double)(n + 1) / 2.0 : (double)n * (double)n;
                    for (size_t it = 0; it < ntn; it++) {
                        rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = n, .n_kv = n, .d = d,
                                             .causal = causal, .nthreads = nts[it] };
                        row(o, "softmax", &c, &q, &k, &v, 10.0 * (double)d * pairs);
                    }
                } else {
                    rk_attn_config c = { .kind = RK_PERFORMER, .n_q = n, .n_kv = n, .d = d,
                                         .causal = causal, .nthreads = o->max_threads,
                                         .n_features = 256, .seed = 1 };
                    row(o, "performer", &c, &q, &k, &v, 0.0);
                    rk_attn_config l = { .kind = RK_LINEAR, .n_q = n, .n_kv = n, .d = d,
                                         .causal = causal, .nthreads = o->max_threads,
                                         .map = RK_MAP_ELU };
                    row(o, "linear-elu", &l, &q, &k, &v, 0.0);
                }
            }
            rk_mat_free(&q); rk_mat_free(&k); rk_mat_free(&v);
        }
}
