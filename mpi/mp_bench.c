/* ropekit-mpi bench: the distributed attention on generated data, no files: each rank makes
 * its own rows (a hash of the global row and column, so the data do not depend on P), runs the
 * ring (softmax) or the prefix scan (performer, linear) and rank 0 prints one line:
 *
 *   ranks threads n d heads dist  time compute wait  sent(max/rank) model ratio  peakRSS(max,min)
 *
 * sent: elements this rank sent; the ring's model is 2 (P - 1) n d / P per rank and head
 * (d_v = d; (P - 1) (n / P) (d + d_v) in general). The run's peak RSS is VmHWM of each rank
 * less its VmHWM before the run allocated anything (MPI's and the libraries' own); the rows a
 * rank holds are O(n d / P), and so is everything the ring allocates (two K/V blocks, the
 * plans' packed copies of one block): no O(n^2) buffer anywhere. */
#include "mp_ring.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cli_opt opts[] = {
    { "n", "N", "sequence length (rows), >= P (default 65536)" },
    { "d", "D", "head width d = d_v (default 64)" },
    { "heads", "H", "heads (default 1)" },
    { "variant", "softmax|performer|linear", "the attention (default softmax)" },
    { "causal", NULL, "causal attention" },
    { "rope", NULL, "RoPE (qk) at global positions" },
    { "dist", "contiguous|zigzag", "softmax rows per rank (default contiguous)" },
    { "threads", "N", "OpenMP threads per rank (default OMP_NUM_THREADS or all cores)" },
    { "precision", "float|double", "arithmetic precision (default float)" },
};
static const cli_spec spec = {
    "bench", "[--n N] [--d D] [--heads H] [--variant V] [--causal] [--dist zigzag] ...",
    "Distributed attention on generated data; rank 0 prints time, elements sent per rank\n"
    "against the ring's model 2 (P-1) n d / P, and peak memory (VmHWM) per rank.",
    opts, sizeof opts / sizeof opts[0],
};

/* A value in about N(0, 1/4) from (slice, row, column): splitmix64, sum of two uniforms. */
static double gen(uint64_t s, uint64_t i, uint64_t c, uint64_t salt)
{
    uint64_t x = (((s * 0x9E3779B97F4A7C15ull) ^ (i * 0xBF58476D1CE4E5B9ull)) + c * 0x94D049BB133111EBull) ^ salt;
    x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ull; x ^= x >> 27; x *= 0x94D049BB133111EBull; x ^= x >> 31;
    double u = (double)(x >> 11) * 0x1p-53, v = (double)((x * 0x9E3779B97F4A7C15ull) >> 11) * 0x1p-53;
    return (u + v - 1.0) * 0.866;
}

static void fill(void *buf, int dbl, size_t S, const mp_block *b, size_t w, uint64_t salt)
{
    const size_t R = b->rows;
    for (size_t s = 0; s < S; s++) {
        size_t ro = 0;
        for (int g = 0; g < b->nseg; ro += b->seg[g].len, g++)
            for (size_t i = 0; i < b->seg[g].len; i++)
                for (size_t c = 0; c < w; c++) {
                    double x = gen(s, b->seg[g].start + i, c, salt);
                    size_t at = (s * R + ro + i) * w + c;
                    if (dbl) ((double *)buf)[at] = x;
                    else ((float *)buf)[at] = (float)x;
                }
    }
}

static void free_ptr(void *p) { free(*(void **)p); }

int mp_cmd_bench(int argc, char **argv)
{
    mp_set_cmd("bench");
    cli_ctx c;
    cli_parse(&c, &spec, argc, argv);
    const size_t n = (size_t)cli_get_integer(&c, "n", 65536, 1, INT32_MAX);
    const size_t d = (size_t)cli_get_integer(&c, "d", 64, 1, 4096);
    const size_t H = (size_t)cli_get_integer(&c, "heads", 1, 1, 4096);
    static const char *const kinds[] = { "softmax", "performer", "linear", NULL };
    static const rk_kind kk[] = { RK_SOFTMAX, RK_PERFORMER, RK_LINEAR };
    const int ki = cli_get_choice(&c, "variant", "variant", kinds, 0);
    static const char *const dists[] = { "contiguous", "zigzag", NULL };
    const int zigzag = cli_get_choice(&c, "dist", "--dist", dists, 0) == 1;
    static const char *const precs[] = { "float", "double", NULL };
    const int dbl = cli_get_choice(&c, "precision", "precision", precs, 0) == 1;
    const int threads = (int)cli_get_integer(&c, "threads", 0, 1, 4096);
    if (zigzag && ki != 0) cli_die(&c, "--dist zigzag applies to softmax");
    if (n < (size_t)mp_size * (zigzag ? 2 : 1))
        cli_die(&c, "--n %zu is too short for %d ranks", n, mp_size);
    mp_agree(0);

    mp_job job;
    memset(&job, 0, sizeof job);
    job.cfg.kind = kk[ki];
    job.cfg.causal = cli_flag(&c, "causal");
    job.cfg.rope = cli_flag(&c, "rope") ? RK_ROPE_QK : RK_ROPE_NONE;
    job.cfg.seed = 1;
    job.cfg.nthreads = threads;
    job.n = n;
    job.d = job.dv = d;
    job.B = 1;
    job.H = job.Hk = H;
    job.dbl = dbl;
    job.zigzag = zigzag;
    const size_t base = mp_peak_rss();       /* the process before the run's buffers */
    mp_block *blkv = calloc((size_t)mp_size, sizeof *blkv);
    if (!blkv) cli_die(&c, "out of memory");
    cli_defer(&c, free, blkv);
    for (int p = 0; p < mp_size; p++) blkv[p] = mp_block_of(n, mp_size, p, zigzag);
    job.blkv = blkv;
    const mp_block *me = &blkv[mp_rank];
    const size_t es = dbl ? 8 : 4, R = me->rows;
    void **bufs[] = { &job.q, &job.k, &job.v, &job.out };
    for (int i = 0; i < 4; i++) {
        if (!(*bufs[i] = calloc(H * R * d, es))) cli_die(&c, "out of memory for %zu rows", R);
        cli_defer(&c, free_ptr, bufs[i]);
    }
    fill(job.q, dbl, H, me, d, 1);
    fill(job.k, dbl, H, me, d, 2);
    fill(job.v, dbl, H, me, d, 3);
    mp_agree(0);
    MPI_Barrier(MPI_COMM_WORLD);
    mp_attention(&job);
    mp_agree(0);

    const size_t peak = mp_peak_rss();
    unsigned long long mine[2] = { job.sent_elems, peak > base ? peak - base : 0 }, mx[2], mn[2];
    double tm[3] = { job.t_total, job.t_compute, job.t_wait }, tx[3];
    MPI_Reduce(mine, mx, 2, MPI_UNSIGNED_LONG_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(mine, mn, 2, MPI_UNSIGNED_LONG_LONG, MPI_MIN, 0, MPI_COMM_WORLD);
    MPI_Reduce(tm, tx, 3, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (mp_rank == 0) {
        const double P = mp_size;
        const double model = ki == 0 ? 2.0 * (P - 1.0) * (double)n * (double)d / P * (double)H : 0.0;
        const double data = 4.0 * (double)H * (double)n / P * (double)d * (double)es;
        printf("ranks %d  threads %d  n %zu  d %zu  heads %zu  %s%s%s  time %.3f s  compute %.3f  "
               "wait %.3f  sent %llu  model %.0f  ratio %.4f  run's peak RSS max %.1f MB min %.1f MB  "
               "(q, k, v, out rows %.1f MB)\n",
               mp_size, threads ? threads : omp_get_max_threads(), n, d, H, kinds[ki],
               job.cfg.causal ? " causal" : "", zigzag ? " zigzag" : "", tx[0], tx[1], tx[2],
               mx[0], model, model > 0 ? (double)mx[0] / model : 0.0, (double)mx[1] / 1048576.0,
               (double)mn[1] / 1048576.0, data / 1048576.0);
    }
    return cli_finish(&c);
}
