/* RoPE bandwidth: rk_rope_apply in place on (n, heads * dim) float32, n = 4096 positions,
 * 32 heads of 128 (the LLaMA-7B q shape), interleaved and half-split, 1 and max threads.
 * RoPE is a streaming kernel (2 multiplies and 1 add per element), so the figure of merit is
 * bandwidth: 8 bytes per element (read + write), compared with a STREAM triad measured in
 * the same run with the same thread count. One extra row: the double path (16 bytes/element). */
#include "bench.h"
#include "ropekit.h"

#include <omp.h>
#include <stdint.h>

#define RK_BENCH_MAXREP 64

/* Median seconds of one in-place apply over `reps` runs after one warm-up. */
static double time_apply(const bench_opts *o, const rk_rope *r, rk_mat *xf, rk_matd *xd)
{
    double t[RK_BENCH_MAXREP];
    int reps = o->repeats < RK_BENCH_MAXREP ? o->repeats : RK_BENCH_MAXREP;
    if (reps < 1) reps = 1;
    for (int k = -1; k < reps; k++) {
        double t0 = bench_now();
        int rc = xf ? rk_rope_apply(r, xf, xf, 0, NULL, 0) : rk_rope_apply_d(r, xd, xd, 0, NULL, 0);
        double dt = bench_now() - t0;
        if (rc) {
            fprintf(o->out, "# rope: apply failed: %s: %s\n", rk_strerror(rc), rk_last_error());
            return 0.0;
        }
        if (k >= 0) t[k] = dt;
    }
    return bench_median(t, (size_t)reps);
}

void bench_rope(const bench_opts *o)
{
    const size_t n = o->quick ? 512 : 4096, heads = 32, dim = 128, cols = heads * dim;
    const size_t elems = n * cols;
    int nts[2] = { 1, o->max_threads > 1 ? o->max_threads : 1 };
    int ntn = nts[1] > 1 ? 2 : 1;
    int saved = omp_get_max_threads();

    fprintf(o->out, "# rope: in-place rk_rope_apply on (%zu, %zu x %zu), table_len %zu; GB/s counts "
            "read + write (8 B/elem float32, 16 double); ratio = GB/s / triad GB/s, same threads\n",
            n, heads, dim, n);
    fprintf(o->out, "rope\tstyle\tprec\tthreads\tn\theads\tdim\tmedian_ms\tGBs\ttriad_GBs\tratio\n");

    rk_mat xf = { 0 };
    rk_matd xd = { 0 };
    if (rk_mat_alloc(&xf, n, cols) || rk_matd_alloc(&xd, n, cols)) {
        fprintf(o->out, "# rope: cannot allocate %zu elements: %s\n", elems, rk_last_error());
        rk_mat_free(&xf);
        rk_matd_free(&xd);
        return;
    }
    for (size_t i = 0; i < elems; i++) {
        float v = (float)((i * 2654435761u) % 2001) * 1e-3f - 1.0f;
        xf.data[i] = v;
        xd.data[i] = v;
    }

    for (int k = 0; k < ntn; k++) {
        int nt = nts[k];
        double triad = bench_triad_gbs(o, elems, nt);
        omp_set_num_threads(nt);
        for (int st = 0; st < 3; st++) {
            /* st 0: interleaved float, 1: half-split float, 2: interleaved double */
            rk_rope_config cfg = { .dim = dim, .style = st == 1 ? RK_ROPE_HALF : RK_ROPE_INTERLEAVED,
                                   .table_len = n };
            rk_rope *r = NULL;
            if (rk_rope_create(&r, &cfg)) {
                fprintf(o->out, "# rope: create failed: %s\n", rk_last_error());
                continue;
            }
            double t = time_apply(o, r, st < 2 ? &xf : NULL, st < 2 ? NULL : &xd);
            double bytes = (double)elems * (st < 2 ? 8.0 : 16.0);
            double gbs = t > 0.0 ? bytes / t * 1e-9 : 0.0;
            fprintf(o->out, "rope\t%s\t%s\t%d\t%zu\t%zu\t%zu\t%.3f\t%.2f\t%.2f\t%.3f\n",
                    st == 1 ? "half" : "interleaved", st < 2 ? "f32" : "f64", nt, n, heads, dim,
                    t * 1e3, gbs, triad, triad > 0.0 ? gbs / triad : 0.0);
            rk_rope_destroy(r);
        }
        omp_set_num_threads(saved);
    }
    rk_mat_free(&xf);
    rk_matd_free(&xd);
}
