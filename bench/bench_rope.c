/* RoPE bandwidth: rk_rope_apply in place on (n, heads * dim) float32, n = 4096 positions,
 * 32 heads of 128 (the LLaMA-7B q shape), interleaved and half-split, on every kernel path the
 * CPU has, at 1, 2 and all threads. RoPE is a streaming kernel (2 multiplies and 1 add per
 * element), so the figure of merit is bandwidth: 8 bytes per element (read + write), compared
 * with the triad measured in the same run with the same thread count. The two pairings are
 * timed alternately (one apply of each per repeat, medians of each), so both see the same
 * machine; inter_half = interleaved time / half-split time. One extra row per thread count:
 * the double path (16 bytes/element). */
#include "bench.h"
#include "ropekit.h"

#include <omp.h>
#include <stdint.h>

#define RK_BENCH_MAXREP 64

/* Medians of in-place applies of r0 and r1 (alternating) over `reps` runs after a warm-up of
 * each; r1 may be NULL. xd != NULL: the double path. */
static int time_apply(const bench_opts *o, const rk_rope *r0, const rk_rope *r1, rk_mat *xf,
                      rk_matd *xd, double t[2])
{
    double s[2][RK_BENCH_MAXREP];
    int reps = o->repeats < RK_BENCH_MAXREP ? o->repeats : RK_BENCH_MAXREP;
    if (reps < 1) reps = 1;
    const rk_rope *rr[2] = { r0, r1 };
    for (int k = -1; k < reps; k++)
        for (int w = 0; w < 2; w++) {
            if (!rr[w]) continue;
            double t0 = bench_now();
            int rc = xd ? rk_rope_apply_d(rr[w], xd, xd, 0, NULL, 0)
                        : rk_rope_apply(rr[w], xf, xf, 0, NULL, 0);
            double dt = bench_now() - t0;
            if (rc) {
                fprintf(o->out, "# rope: apply failed: %s: %s\n", rk_strerror(rc), rk_last_error());
                return 0;
            }
            if (k >= 0) s[w][k] = dt;
        }
    t[0] = bench_median(s[0], (size_t)reps);
    t[1] = r1 ? bench_median(s[1], (size_t)reps) : 0.0;
    return 1;
}

void bench_rope(const bench_opts *o)
{
    const size_t n = o->quick ? 512 : 4096, heads = 32, dim = 128, cols = heads * dim;
    const size_t elems = n * cols;
    int nts[3];
    const size_t ntn = bench_thread_counts(o, nts);
    int saved = omp_get_max_threads();

    fprintf(o->out, "# rope: in-place rk_rope_apply on (%zu, %zu x %zu), table_len %zu; GB/s counts "
            "read + write (8 B/elem float32, 16 double); ratio = GB/s / triad GB/s, same threads; "
            "inter_half = interleaved time / half-split time, same path and threads\n",
            n, heads, dim, n);
    fprintf(o->out, "rope\tstyle\tprec\tthreads\tpath\tn\theads\tdim\tmedian_ms\tGBs\ttriad_GBs\t"
            "ratio\tinter_half\n");

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

    static const rk_isa order[3] = { RK_ISA_AVX512, RK_ISA_AVX2, RK_ISA_PORTABLE };
    for (size_t k = 0; k < ntn; k++) {
        int nt = nts[k];
        double triad = bench_triad(o, nt);
        omp_set_num_threads(nt);
        for (int pi = 0; pi < 4; pi++) {
            /* pi < 3: both float pairings on path order[pi]; pi == 3: the double path */
            if (pi < 3 && !rk_isa_available(order[pi])) continue;
            rk_rope *r[2] = { NULL, NULL };
            int ok = 1;
            for (int st = 0; st < (pi < 3 ? 2 : 1); st++) {
                rk_rope_config cfg = { .dim = dim, .style = st ? RK_ROPE_HALF : RK_ROPE_INTERLEAVED,
                                       .table_len = n, .isa = pi < 3 ? order[pi] : RK_ISA_AUTO };
                if (rk_rope_create(&r[st], &cfg)) {
                    fprintf(o->out, "# rope: create failed: %s\n", rk_last_error());
                    ok = 0;
                }
            }
            double t[2];
            if (ok && time_apply(o, r[0], r[1], pi < 3 ? &xf : NULL, pi < 3 ? NULL : &xd, t)) {
                const char *path = rk_isa_name(rk_rope_get_config(r[0])->isa);
                for (int st = 0; st < (pi < 3 ? 2 : 1); st++) {
                    double bytes = (double)elems * (pi < 3 ? 8.0 : 16.0);
                    double gbs = t[st] > 0.0 ? bytes / t[st] * 1e-9 : 0.0;
                    char ih[16] = "-";
                    if (pi < 3 && t[1] > 0.0) snprintf(ih, sizeof ih, "%.2f", t[0] / t[1]);
                    fprintf(o->out, "rope\t%s\t%s\t%d\t%s\t%zu\t%zu\t%zu\t%.3f\t%.2f\t%.2f\t%.3f\t%s\n",
                            st == 1 ? "half" : "interleaved", pi < 3 ? "f32" : "f64", nt, path, n,
                            heads, dim, t[st] * 1e3, gbs, triad, triad > 0.0 ? gbs / triad : 0.0, ih);
                }
                fflush(o->out);
            }
            rk_rope_destroy(r[0]);
            rk_rope_destroy(r[1]);
        }
        omp_set_num_threads(saved);
    }
    rk_mat_free(&xf);
    rk_matd_free(&xd);
}
