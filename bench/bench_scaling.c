/* Batches of heads through rk_attn_execute_batch, exact softmax, float32, d = d_v = 64, (b, h,
 * n, d) contiguous tensors:
 *   - thread scaling at 1, 2 and all threads: batched (b = 4, h = 16, n = 2048) and grouped-
 *     query (b = 4, 16 query heads, 4 key/value heads, n = 2048), bidirectional and causal;
 *     GFLOPs counts 4 d flops per (query, key) pair seen, frac_w / frac_max as in the softmax
 *     section, efficiency = t(1 thread) / (threads t);
 *   - decoding: one query (n_q = 1) against n_kv = 32768 keys, 32 heads, K and V float32: the
 *     bytes of K and V (2 heads n_kv d 4) over the time, as a fraction of the triad (same
 *     threads, same run).
 * --quick: b = 1, h = 4 (1 kv head for GQA), n = 512; decoding n_kv = 4096. */
#include "bench.h"
#include "ropekit.h"

#include <stdio.h>
#include <stdlib.h>

static double time_batch(const bench_opts *o, rk_attn *p, const rk_tensor *q, const rk_tensor *k,
                         const rk_tensor *v, rk_tensor *out)
{
    double t[64];
    int reps = o->repeats < 64 ? o->repeats : 64;
    for (int r = -1; r < reps; r++) {
        double t0 = bench_now();
        int rc = rk_attn_execute_batch(p, q, k, v, out, NULL);
        double dt = bench_now() - t0;
        if (rc) {
            fprintf(o->out, "# scaling: execute_batch failed: %s: %s\n", rk_strerror(rc),
                    rk_last_error());
            return 0.0;
        }
        if (r >= 0) t[r] = dt;
    }
    return bench_median(t, (size_t)reps);
}

/* (b, h, n, d) contiguous tensor of deterministic values. */
static float *tensor_of(size_t b, size_t h, size_t n, size_t d, unsigned salt, rk_tensor *t)
{
    size_t len = b * h * n * d;
    float *x = malloc(len * sizeof *x);
    if (!x) return NULL;
    rk_mat m = { x, b * h * n, d, d };
    bench_fill(&m, salt);
    *t = rk_tensor_bhnd(x, b, h, n, d);
    return x;
}

void bench_scaling(const bench_opts *o)
{
    const size_t d = 64, B = o->quick ? 1 : 4, H = o->quick ? 4 : 16, n = o->quick ? 512 : 2048;
    const size_t kvh[2] = { H, o->quick ? 1 : 4 };
    int nts[3];
    const size_t ntn = bench_thread_counts(o, nts);
    fprintf(o->out, "# scaling: rk_attn_execute_batch, exact softmax, float32, d = %zu, (b, h, n, d) "
            "tensors, n_q = n_kv = n; GFLOPs = 4 d (pairs seen) b h / t; efficiency = t(1) / "
            "(threads t)\n", d);
    fprintf(o->out, "scaling\tshape\tb\theads\tkv_heads\tn\tmode\tthreads\tpath\tmedian_ms\tGFLOPs\t"
            "frac_w\tfrac_max\tefficiency\n");
    for (int s = 0; s < 2; s++) {
        rk_tensor q, k, v, out;
        float *qb = tensor_of(B, H, n, d, 1, &q), *kb = tensor_of(B, kvh[s], n, d, 2, &k);
        float *vb = tensor_of(B, kvh[s], n, d, 3, &v), *ob = tensor_of(B, H, n, d, 4, &out);
        if (!qb || !kb || !vb || !ob) {
            fprintf(o->out, "# scaling: cannot allocate the tensors\n");
            free(qb); free(kb); free(vb); free(ob);
            return;
        }
        for (int causal = 0; causal < 2; causal++) {
            double t1 = 0.0;
            for (size_t it = 0; it < ntn; it++) {
                rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = n, .n_kv = n, .d = d,
                                     .causal = causal, .nthreads = nts[it], .batch = B,
                                     .heads = H, .kv_heads = kvh[s] };
                rk_attn *p = NULL;
                if (rk_attn_create(&p, &c)) {
                    fprintf(o->out, "# scaling: create failed: %s\n", rk_last_error());
                    continue;
                }
                rk_isa isa = rk_attn_get_config(p)->isa;
                double t = time_batch(o, p, &q, &k, &v, &out);
                rk_attn_destroy(p);
                if (t <= 0.0) continue;
                if (nts[it] == 1) t1 = t;
                double pairs = causal ? (double)n * (double)(n + 1) / 2.0 : (double)n * (double)n;
                double gf = 4.0 * (double)d * pairs * (double)(B * H) / t * 1e-9;
                char fw[16], fm[16], eff[16] = "-";
                bench_fracs(o, isa, nts[it], gf, fw, fm);
                if (t1 > 0.0) snprintf(eff, sizeof eff, "%.2f", t1 / ((double)nts[it] * t));
                fprintf(o->out, "scaling\t%s\t%zu\t%zu\t%zu\t%zu\t%s\t%d\t%s\t%.3f\t%.2f\t%s\t%s\t%s\n",
                        s ? "gqa" : "batched", B, H, kvh[s], n, causal ? "causal" : "bidir", nts[it],
                        rk_isa_name(isa), t * 1e3, gf, fw, fm, eff);
                fflush(o->out);
            }
        }
        free(qb); free(kb); free(vb); free(ob);
    }
}

void bench_decode(const bench_opts *o)
{
    const size_t d = 64, H = 32, nkv = o->quick ? 4096 : 32768;
    int nts[3];
    const size_t ntn = bench_thread_counts(o, nts);
    const double bytes = 2.0 * (double)H * (double)nkv * (double)d * sizeof(float);
    fprintf(o->out, "# decode: n_q = 1, n_kv = %zu, %zu heads, d = %zu, K and V float32 (%.0f MB); "
            "GB/s = K and V bytes / t; ratio = GB/s / triad GB/s, same threads\n", nkv, H, d,
            bytes / 1e6);
    fprintf(o->out, "decode\tn_kv\theads\tthreads\tpath\tmedian_ms\tGBs\ttriad_GBs\tratio\n");
    rk_tensor q, k, v, out;
    float *qb = tensor_of(1, H, 1, d, 1, &q), *kb = tensor_of(1, H, nkv, d, 2, &k);
    float *vb = tensor_of(1, H, nkv, d, 3, &v), *ob = tensor_of(1, H, 1, d, 4, &out);
    if (!qb || !kb || !vb || !ob) {
        fprintf(o->out, "# decode: cannot allocate the tensors\n");
        goto done;
    }
    for (size_t it = 0; it < ntn; it++) {
        rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = 1, .n_kv = nkv, .d = d, .causal = 1,
                             .nthreads = nts[it], .heads = H };
        rk_attn *p = NULL;
        if (rk_attn_create(&p, &c)) {
            fprintf(o->out, "# decode: create failed: %s\n", rk_last_error());
            continue;
        }
        rk_isa isa = rk_attn_get_config(p)->isa;
        double t = time_batch(o, p, &q, &k, &v, &out);
        rk_attn_destroy(p);
        if (t <= 0.0) continue;
        double gbs = bytes / t * 1e-9, tr = bench_triad(o, nts[it]);
        fprintf(o->out, "decode\t%zu\t%zu\t%d\t%s\t%.3f\t%.2f\t%.2f\t%.3f\n", nkv, H, nts[it],
                rk_isa_name(isa), t * 1e3, gbs, tr, tr > 0.0 ? gbs / tr : 0.0);
        fflush(o->out);
    }
done:
    free(qb); free(kb); free(vb); free(ob);
}
