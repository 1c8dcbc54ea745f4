/* ropekit-mpi attend: `ropekit attend` on one sequence spread over the ranks.
 *
 * The options are ropekit attend's (experiments/attend.h parses them the same way), plus
 * --dist, --shard and --stats. Q, K, V are (n, d), (h, n, d) or (b, h, n, d) (or bnhd with
 * --layout) with n_q = n_kv: the rows of the sequence are spread over the ranks (contiguous
 * blocks; --dist zigzag for causal softmax balance). Rank 0 reads the files and sends each rank
 * its rows (--shard: every rank reads only its own rows from the same files), the ranks
 * compute (mp_ring.c), rank 0 gathers and writes the outputs (staged and renamed into place
 * only if the whole run succeeded). What ropekit attend does that this does not: a relative
 * bias (its index convention is the bottom-right one), --kv-len, rpe-fft and uniform, --proj
 * (FAVOR+ draws the same projection from --seed on every rank), the backward of the linear
 * kinds. Each is refused with a message. */
#include "mp_ring.h"
#include "attend.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const cli_opt mpi_opts[] = {
    { "dist", "contiguous|zigzag", "rows per rank: contiguous blocks (default), or zigzag:\n"
      "2P chunks, rank r holding chunks r and 2P-1-r (balances causal softmax)" },
    { "shard", NULL, "every rank reads its own rows from the files (default: rank 0 reads\n"
      "them and sends them)" },
    { "stats", NULL, "print time, elements sent per rank (and the ring's model) and peak\n"
      "memory per rank on standard output" },
};

static cli_opt all_opts[CLI_MAXOPT];
static cli_spec spec;

static void make_spec(void)
{
    size_t n;
    const cli_opt *a = attend_options(&n);
    memcpy(all_opts, a, n * sizeof *a);
    memcpy(all_opts + n, mpi_opts, sizeof mpi_opts);
    spec.cmd = "attend";
    spec.synopsis = "--variant NAME --q Q.npy --k K.npy --v V.npy --out O.npy [options]\n"
                    "(under mpirun -np P; the options of ropekit attend, and --dist, --shard, "
                    "--stats)";
    spec.description = attend_description();
    spec.opts = all_opts;
    spec.nopts = n + sizeof mpi_opts / sizeof mpi_opts[0];
}

/* ---- geometry of an array: (b, h, n, w) in a layout --------------------------------------- */

typedef struct { size_t b, h, n, w; int bnhd; } geom;

static geom geom_of(int ndim, const size_t *s, int bnhd)
{
    if (ndim == 2) return (geom){ 1, 1, s[0], s[1], 0 };
    if (ndim == 3) return bnhd ? (geom){ 1, s[1], s[0], s[2], 1 } : (geom){ 1, s[0], s[1], s[2], 0 };
    return bnhd ? (geom){ s[0], s[2], s[1], s[3], 1 } : (geom){ s[0], s[1], s[2], s[3], 0 };
}

/* Element offset of (b, h, i, 0). */
static size_t goff(const geom *g, size_t b, size_t h, size_t i)
{
    return g->bnhd ? ((b * g->n + i) * g->h + h) * g->w : ((b * g->h + h) * g->n + i) * g->w;
}

static double get_el(const void *p, rk_dtype t, size_t i)
{
    return t == RK_F64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}
static void put_el(void *p, int dbl, size_t i, double x)
{
    if (dbl) ((double *)p)[i] = x;
    else ((float *)p)[i] = (float)x;
}

/* ---- .npy headers and row reads (--shard) ---------------------------------------------------- */

typedef struct {
    rk_dtype dtype;
    int      ndim;
    size_t   shape[RK_NPY_MAXDIM];
    size_t   data_at;    /* byte offset of the data */
} npy_head;

/* Parse the header of `path`; on failure a message into err. */
static int read_head(const char *path, npy_head *h, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) { snprintf(err, errlen, "'%s': %s", path, strerror(errno)); return -1; }
    unsigned char pre[12];
    ssize_t got = pread(fd, pre, sizeof pre, 0);
    if (got < 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        close(fd);
        snprintf(err, errlen, "'%s': not a .npy file (no \\x93NUMPY magic)", path);
        return -1;
    }
    size_t hl, ho;
    if (pre[6] == 1) { hl = (size_t)pre[8] | (size_t)pre[9] << 8; ho = 10; }
    else if (pre[6] == 2 || pre[6] == 3) {
        if (got < 12) { close(fd); snprintf(err, errlen, "'%s': truncated header", path); return -1; }
        hl = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
        ho = 12;
    } else {
        close(fd);
        snprintf(err, errlen, "'%s': .npy format version %d is not supported", path, pre[6]);
        return -1;
    }
    char *txt = malloc(hl + 1);
    if (!txt || pread(fd, txt, hl, (off_t)ho) != (ssize_t)hl) {
        free(txt);
        close(fd);
        snprintf(err, errlen, "'%s': truncated header", path);
        return -1;
    }
    close(fd);
    txt[hl] = '\0';
    int ok = 1;
    const char *p = strstr(txt, "'descr'");
    if (p && (p = strchr(p + 7, '\''))) {
        if (strncmp(p, "'<f4'", 5) == 0) h->dtype = RK_F32;
        else if (strncmp(p, "'<f8'", 5) == 0) h->dtype = RK_F64;
        else ok = 0;
    } else ok = 0;
    if (!ok) snprintf(err, errlen, "'%s': --shard reads little-endian float32 or float64 only", path);
    const char *fo = strstr(txt, "'fortran_order'");
    if (ok && (!fo || !strstr(fo, "False"))) {
        ok = 0;
        snprintf(err, errlen, "'%s': Fortran order is not supported", path);
    }
    const char *sh = strstr(txt, "'shape'");
    if (ok && sh && (sh = strchr(sh, '('))) {
        h->ndim = 0;
        sh++;
        while (ok) {
            while (*sh == ' ' || *sh == ',') sh++;
            if (*sh == ')') break;
            char *end;
            errno = 0;
            unsigned long long x = strtoull(sh, &end, 10);
            if (end == sh || errno || h->ndim == RK_NPY_MAXDIM) { ok = 0; break; }
            h->shape[h->ndim++] = (size_t)x;
            sh = end;
        }
        if (!ok) snprintf(err, errlen, "'%s': malformed shape in the header", path);
    } else if (ok) {
        ok = 0;
        snprintf(err, errlen, "'%s': the header has no shape", path);
    }
    free(txt);
    h->data_at = ho + hl;
    return ok ? 0 : -1;
}

/* This rank's rows of the array at path (geometry g, dtype t) into local (work precision),
 * laid out (b, h, rows, w). */
static int read_rows(const char *path, const npy_head *hd, const geom *g, const mp_block *blk,
                     void *local, int dbl, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) { snprintf(err, errlen, "'%s': %s", path, strerror(errno)); return -1; }
    const size_t es = hd->dtype == RK_F64 ? 8 : 4, R = blk->rows;
    size_t span = 0;
    for (int s = 0; s < blk->nseg; s++)
        if (blk->seg[s].len > span) span = blk->seg[s].len;
    /* one segment's rows of one (b, h), or of one b and every h (bnhd) */
    size_t cap = span * g->w * (g->bnhd ? g->h : 1);
    unsigned char *buf = malloc(cap * es + 1);
    int rc = buf ? 0 : -1;
    if (!buf) snprintf(err, errlen, "out of memory reading '%s'", path);
    for (size_t b = 0; b < g->b && !rc; b++) {
        size_t ro = 0;
        for (int s = 0; s < blk->nseg && !rc; ro += blk->seg[s].len, s++) {
            const mp_seg sg = blk->seg[s];
            for (size_t h = 0; h < g->h && !rc; h++) {
                if (g->bnhd && h > 0) break;      /* one read gave every head */
                size_t first = goff(g, b, g->bnhd ? 0 : h, sg.start);
                size_t n = sg.len * g->w * (g->bnhd ? g->h : 1);
                ssize_t want = (ssize_t)(n * es);
                if (pread(fd, buf, n * es, (off_t)(hd->data_at + first * es)) != want) {
                    snprintf(err, errlen, "'%s': short read (the file is shorter than its "
                             "header says)", path);
                    rc = -1;
                    break;
                }
                for (size_t hh = 0; hh < g->h; hh++) {
                    if (!g->bnhd && hh != h) continue;
                    for (size_t i = 0; i < sg.len; i++) {
                        size_t src = g->bnhd ? (i * g->h + hh) * g->w : i * g->w;
                        size_t dst = ((b * g->h + hh) * R + ro + i) * g->w;
                        for (size_t c = 0; c < g->w; c++)
                            put_el(local, dbl, dst + c, get_el(buf, hd->dtype, src + c));
                    }
                }
            }
        }
    }
    free(buf);
    close(fd);
    return rc;
}

/* NaN or Inf in this rank's rows: the global index in err. */
static int check_rows(const char *opt, const char *path, const void *local, int dbl, const geom *g,
                      const mp_block *blk, char *err, size_t errlen)
{
    const size_t R = blk->rows;
    for (size_t s = 0; s < g->b * g->h; s++) {
        size_t ro = 0;
        for (int k = 0; k < blk->nseg; ro += blk->seg[k].len, k++)
            for (size_t i = 0; i < blk->seg[k].len; i++)
                for (size_t c = 0; c < g->w; c++) {
                    size_t at = (s * R + ro + i) * g->w + c;
                    double x = dbl ? ((const double *)local)[at] : (double)((const float *)local)[at];
                    if (!isfinite(x)) {
                        snprintf(err, errlen, "--%s: %s: %s at (b %zu, h %zu, row %zu, col %zu); "
                                 "the inputs must be finite (--allow-nonfinite accepts it)", opt,
                                 path, isnan(x) ? "NaN" : "Inf", s / g->h, s % g->h,
                                 blk->seg[k].start + i, c);
                        return -1;
                    }
                }
    }
    return 0;
}

/* ---- rank 0 <-> the others ------------------------------------------------------------------- */

/* Rows of rank p of the full array a (geometry g) packed (b, h, rows, w) into dst (work). */
static void pack_rows(const rk_array *a, const geom *g, const mp_block *blk, void *dst, int dbl)
{
    const size_t R = blk->rows;
    for (size_t b = 0; b < g->b; b++)
        for (size_t h = 0; h < g->h; h++) {
            size_t ro = 0;
            for (int s = 0; s < blk->nseg; ro += blk->seg[s].len, s++)
                for (size_t i = 0; i < blk->seg[s].len; i++) {
                    size_t src = goff(g, b, h, blk->seg[s].start + i);
                    size_t d0 = ((b * g->h + h) * R + ro + i) * g->w;
                    for (size_t c = 0; c < g->w; c++)
                        put_el(dst, dbl, d0 + c, get_el(a->data, a->dtype, src + c));
                }
        }
}

static void unpack_rows(rk_array *a, const geom *g, const mp_block *blk, const void *src, int dbl)
{
    const size_t R = blk->rows;
    for (size_t b = 0; b < g->b; b++)
        for (size_t h = 0; h < g->h; h++) {
            size_t ro = 0;
            for (int s = 0; s < blk->nseg; ro += blk->seg[s].len, s++)
                for (size_t i = 0; i < blk->seg[s].len; i++) {
                    size_t dst = goff(g, b, h, blk->seg[s].start + i);
                    size_t s0 = ((b * g->h + h) * R + ro + i) * g->w;
                    for (size_t c = 0; c < g->w; c++)
                        ((double *)a->data)[dst + c] = get_el(src, dbl ? RK_F64 : RK_F32, s0 + c);
                }
        }
}

static size_t local_elems(const geom *g, const mp_block *blk) { return g->b * g->h * blk->rows * g->w; }

/* Rank 0 sends every rank its rows of a (full array on rank 0); the others receive into
 * local. All ranks call it. */
static void scatter_rows(const rk_array *a, const geom *g, const mp_block *blkv, void *local,
                         int dbl)
{
    MPI_Datatype t = dbl ? MPI_DOUBLE : MPI_FLOAT;
    const size_t es = dbl ? 8 : 4;
    if (mp_rank == 0) {
        size_t cap = 0;
        for (int p = 1; p < mp_size; p++)
            if (local_elems(g, &blkv[p]) > cap) cap = local_elems(g, &blkv[p]);
        void *buf = malloc(cap * es + 1);
        for (int p = 1; p < mp_size; p++) {
            size_t n = local_elems(g, &blkv[p]);
            if (buf) pack_rows(a, g, &blkv[p], buf, dbl);
            else mp_fail("out of memory while sending the rows");
            if (MPI_Send(buf ? buf : local, (int)(buf ? n : 0), t, p, 7, MPI_COMM_WORLD) != MPI_SUCCESS)
                mp_fail("MPI_Send of the rows failed");
        }
        free(buf);
        pack_rows(a, g, &blkv[0], local, dbl);
    } else {
        MPI_Status st;
        if (MPI_Recv(local, (int)local_elems(g, &blkv[mp_rank]), t, 0, 7, MPI_COMM_WORLD, &st) !=
            MPI_SUCCESS)
            mp_fail("MPI_Recv of the rows failed");
    }
}

/* Every rank's rows of a local array come to rank 0, into the full array a (double). */
static void gather_rows(rk_array *a, const geom *g, const mp_block *blkv, const void *local,
                        int dbl)
{
    MPI_Datatype t = dbl ? MPI_DOUBLE : MPI_FLOAT;
    const size_t es = dbl ? 8 : 4;
    if (mp_rank == 0) {
        size_t cap = 0;
        for (int p = 1; p < mp_size; p++)
            if (local_elems(g, &blkv[p]) > cap) cap = local_elems(g, &blkv[p]);
        void *buf = malloc(cap * es + 1);
        if (!buf) mp_fail("out of memory while gathering the output");
        unpack_rows(a, g, &blkv[0], local, dbl);
        for (int p = 1; p < mp_size; p++) {
            MPI_Status st;
            size_t n = local_elems(g, &blkv[p]);
            void *to = buf ? buf : malloc(n * es + 1);
            if (MPI_Recv(to, (int)n, t, p, 8, MPI_COMM_WORLD, &st) != MPI_SUCCESS)
                mp_fail("MPI_Recv of the output failed");
            if (buf) unpack_rows(a, g, &blkv[p], buf, dbl);
            else free(to);
        }
        free(buf);
    } else {
        if (MPI_Send(local, (int)local_elems(g, &blkv[mp_rank]), t, 0, 8, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
            mp_fail("MPI_Send of the output failed");
    }
}

/* ---- the command ----------------------------------------------------------------------------- */

static void free_ptr(void *p) { free(*(void **)p); }

int mp_cmd_attend(int argc, char **argv)
{
    mp_set_cmd("attend");
    make_spec();
    cli_ctx c;
    cli_parse(&c, &spec, argc, argv);

    /* 1. options (every rank, the same way) */
    rk_attn_config ac;
    memset(&ac, 0, sizeof ac);
    const int fixed_bias = attend_config(&c, &ac);
    if (ac.kind != RK_SOFTMAX && ac.kind != RK_PERFORMER && ac.kind != RK_LINEAR)
        cli_die(&c, "--variant %s: ropekit-mpi distributes softmax (ring attention), performer "
                "and linear (prefix scan of states) only", cli_get(&c, "variant"));
    static const char *const refused[] = { "bias", "bias-kind", "alibi-slope", "kv-len", "proj",
                                           "save-proj", NULL };
    static const char *const why[] = {
        "the relative bias is indexed by bottom-right offsets of one plan",
        "the relative bias is indexed by bottom-right offsets of one plan",
        "the relative bias is indexed by bottom-right offsets of one plan",
        "per-sequence key lengths are not distributed",
        "every rank draws the same projection from --seed",
        "every rank draws the same projection from --seed" };
    for (int i = 0; refused[i]; i++)
        if (cli_flag(&c, refused[i]))
            cli_die(&c, "--%s is not supported by ropekit-mpi (%s); use ropekit attend",
                    refused[i], why[i]);
    if (fixed_bias)
        cli_die(&c, "--variant %s has a relative bias, which ropekit-mpi does not distribute",
                cli_get(&c, "variant"));
    static const char *const dists[] = { "contiguous", "zigzag", NULL };
    const int zigzag = cli_get_choice(&c, "dist", "--dist", dists, 0) == 1;
    if (zigzag && ac.kind != RK_SOFTMAX)
        cli_die(&c, "--dist zigzag balances causal softmax; the prefix scan of %s needs "
                "contiguous rows", rk_attn_kind_name(ac.kind));
    const char *paths[4] = { cli_required(&c, "q"), cli_required(&c, "k"), cli_required(&c, "v"),
                             cli_get(&c, "dout") };
    const char *out_path = cli_required(&c, "out");
    const int backward = paths[3] != NULL;
    static const char *const grad_outs[] = { "dq", "dk", "dv", NULL };
    int ngrad = 0;
    for (int i = 0; grad_outs[i]; i++) {
        if (!cli_flag(&c, grad_outs[i])) continue;
        if (!backward) cli_die(&c, "--%s needs --dout (the gradient of the loss with respect to "
                               "the output)", grad_outs[i]);
        ngrad++;
    }
    if (backward && !ngrad)
        cli_die(&c, "--dout runs the backward: name at least one of --dq, --dk, --dv to write");
    if (backward && ac.kind != RK_SOFTMAX)
        cli_die(&c, "--dout: the distributed backward is the softmax ring; %s has none here "
                "(use ropekit attend)", rk_attn_kind_name(ac.kind));
    static const char *const precisions[] = { "float", "double", NULL };
    const int precision = cli_get_choice(&c, "precision", "precision", precisions, -1);
    static const char *const layouts[] = { "bhnd", "bnhd", NULL };
    const int bnhd = cli_get_choice(&c, "layout", "--layout", layouts, 0) == 1;
    const size_t kv_heads_opt = (size_t)cli_get_integer(&c, "kv-heads", 0, 1, INT32_MAX);
    const int shard = cli_flag(&c, "shard"), finite = !cli_flag(&c, "allow-nonfinite");
    const int sinusoidal = cli_flag(&c, "sinusoidal");
    mp_agree(0);

    /* 2. shapes: rank 0 reads the files (or every rank their headers, --shard) */
    rk_array full[4];
    memset(full, 0, sizeof full);
    unsigned long long meta[4][2 + RK_NPY_MAXDIM];   /* dtype, ndim, shape */
    memset(meta, 0, sizeof meta);
    npy_head heads[4];
    memset(heads, 0, sizeof heads);
    char err[1200];
    const int nin = backward ? 4 : 3;
    static const char *const in_opts[4] = { "q", "k", "v", "dout" };
    if (shard) {
        for (int i = 0; i < nin; i++)
            if (read_head(paths[i], &heads[i], err, sizeof err)) cli_die(&c, "--%s: %s", in_opts[i], err);
    } else if (mp_rank == 0) {
        for (int i = 0; i < nin; i++) {
            cli_load_npy(&c, in_opts[i], &full[i]);
            heads[i].dtype = full[i].dtype;
            heads[i].ndim = full[i].ndim;
            memcpy(heads[i].shape, full[i].shape, sizeof full[i].shape);
        }
    }
    if (shard || mp_rank == 0) {
        /* shells of the arrays (shapes only) for attend's checks */
        rk_array sh[4];
        memset(sh, 0, sizeof sh);
        for (int i = 0; i < nin; i++) {
            sh[i].dtype = heads[i].dtype;
            sh[i].ndim = heads[i].ndim;
            memcpy(sh[i].shape, heads[i].shape, sizeof sh[i].shape);
        }
        attend_check_shapes(&c, &sh[0], &sh[1], &sh[2], bnhd, kv_heads_opt);
        const int nd = sh[0].ndim;
        geom gq = geom_of(nd, sh[0].shape, bnhd), gk = geom_of(nd, sh[1].shape, bnhd);
        if (gq.n != gk.n)
            cli_die(&c, "--q has n_q = %zu rows but --k has n_kv = %zu: ropekit-mpi spreads one "
                    "sequence (self-attention, n_q = n_kv) over the ranks", gq.n, gk.n);
        if (backward) {
            geom gg = geom_of(nd, sh[3].shape, bnhd);
            if (sh[3].dtype != sh[0].dtype || sh[3].ndim != nd || gg.b != gq.b || gg.h != gq.h ||
                gg.n != gq.n || gg.w != sh[2].shape[nd - 1])
                cli_die(&c, "--dout: %s must have the output's shape and dtype (q's shape with "
                        "d_v = %zu columns)", paths[3], sh[2].shape[nd - 1]);
        }
        for (int i = 0; i < nin; i++) {
            meta[i][0] = (unsigned long long)heads[i].dtype;
            meta[i][1] = (unsigned long long)heads[i].ndim;
            for (int a = 0; a < heads[i].ndim; a++) meta[i][2 + a] = heads[i].shape[a];
        }
        if (gq.n < (size_t)mp_size * (zigzag ? 2 : 1))
            cli_die(&c, "n = %zu rows cannot be spread over %d ranks%s (each needs a row)", gq.n,
                    mp_size, zigzag ? " in 2P zigzag chunks" : "");
    }
    if (mp_rank == 0 && !shard && finite)
        for (int i = 0; i < nin; i++) cli_check_finite(&c, in_opts[i], &full[i]);
    mp_agree(0);
    MPI_Bcast(meta, (int)(sizeof meta / sizeof(unsigned long long)), MPI_UNSIGNED_LONG_LONG, 0,
              MPI_COMM_WORLD);
    const rk_dtype in_dtype = (rk_dtype)meta[0][0];
    const int nd = (int)meta[0][1];
    size_t shp[4][RK_NPY_MAXDIM];
    for (int i = 0; i < 4; i++)
        for (int a = 0; a < RK_NPY_MAXDIM; a++) shp[i][a] = (size_t)meta[i][2 + a];
    geom gq = geom_of(nd, shp[0], bnhd), gk = geom_of(nd, shp[1], bnhd), gv = geom_of(nd, shp[2], bnhd);
    const int dbl = precision < 0 ? in_dtype == RK_F64 : precision == 1;

    /* 3. the job: sizes, RoPE length, every rank's rows */
    mp_job job;
    memset(&job, 0, sizeof job);
    job.cfg = ac;
    job.n = gq.n;
    job.d = gq.w;
    job.dv = gv.w;
    job.B = gq.b;
    job.H = gq.h;
    job.Hk = gk.h;
    job.dbl = dbl;
    job.zigzag = zigzag;
    job.cfg.n_q = job.cfg.n_kv = job.n;
    job.cfg.d = job.d;
    job.cfg.d_v = job.dv;
    if (ac.rope != RK_ROPE_NONE) {
        int64_t end = ac.pos_offset + (int64_t)job.n;    /* the whole sequence's length */
        cli_rope_default_seq_len(&c, &job.cfg.rope_cfg, end > 0 ? (uint64_t)end : 0);
        attend_check_rope_width(&c, &job.cfg, paths[0]);
    }
    mp_block *blkv = calloc((size_t)mp_size, sizeof *blkv);
    if (!blkv) cli_die(&c, "out of memory");
    cli_defer(&c, free, blkv);
    for (int p = 0; p < mp_size; p++) blkv[p] = mp_block_of(job.n, mp_size, p, zigzag);
    job.blkv = blkv;
    const mp_block *me = &blkv[mp_rank];
    const size_t es = dbl ? 8 : 4, Sq = job.B * job.H, Sk = job.B * job.Hk, R = me->rows;
    void **bufs[] = { &job.q, &job.k, &job.v, &job.out, &job.dout, &job.dq, &job.dk, &job.dvv };
    const size_t sizes[] = { Sq * R * job.d, Sk * R * job.d, Sk * R * job.dv, Sq * R * job.dv,
                             Sq * R * job.dv, Sq * R * job.d, Sk * R * job.d, Sk * R * job.dv };
    for (int i = 0; i < 8; i++) {
        if (i >= 4 && !backward) continue;
        if (!(*bufs[i] = calloc(sizes[i] ? sizes[i] : 1, es))) cli_die(&c, "out of memory for this rank's rows");
        cli_defer(&c, free_ptr, bufs[i]);
    }
    mp_agree(0);

    /* 4. this rank's rows: read (--shard) or from rank 0 */
    const geom *gs[4] = { &gq, &gk, &gv, &gq };
    geom gd = gq;
    gd.w = job.dv;
    if (backward) gs[3] = &gd;
    void *locals[4] = { job.q, job.k, job.v, job.dout };
    if (shard) {
        for (int i = 0; i < nin; i++) {
            if (read_rows(paths[i], &heads[i], gs[i], me, locals[i], dbl, err, sizeof err))
                cli_die(&c, "--%s: %s", in_opts[i], err);
            if (finite && check_rows(in_opts[i], paths[i], locals[i], dbl, gs[i], me, err, sizeof err))
                cli_die(&c, "%s", err);
        }
        mp_agree(0);
    } else {
        for (int i = 0; i < nin; i++) scatter_rows(&full[i], gs[i], blkv, locals[i], dbl);
        mp_agree(0);
        for (int i = 0; i < nin; i++) {
            rk_array_free(&full[i]);     /* rank 0: the inputs are spread now */
        }
    }
    /* float64 values beyond float32's range */
    if (finite && !dbl && in_dtype == RK_F64)
        for (int i = 0; i < nin; i++)
            if (check_rows(in_opts[i], paths[i], locals[i], dbl, gs[i], me, err, sizeof err))
                cli_die(&c, "%s (after conversion to float32)", err);
    if (sinusoidal) {
        /* keys at P + j, queries at P + i: the same rows */
        for (int i = 0; i < 2; i++) {
            const size_t S = i == 0 ? Sq : Sk;
            for (size_t s = 0; s < S; s++) {
                size_t ro = 0;
                for (int g = 0; g < me->nseg; ro += me->seg[g].len, g++) {
                    int64_t p0 = ac.pos_offset + (int64_t)me->seg[g].start;
                    int e;
                    if (dbl) {
                        rk_matd m = rk_matd_view((double *)locals[i] + (s * R + ro) * job.d,
                                                 me->seg[g].len, job.d, job.d);
                        e = rk_sinusoidal_add_d(&m, p0, 0.0);
                    } else {
                        rk_mat m = rk_mat_view((float *)locals[i] + (s * R + ro) * job.d,
                                               me->seg[g].len, job.d, job.d);
                        e = rk_sinusoidal_add(&m, p0, 0.0);
                    }
                    if (e) cli_die_rk(&c, e, "--sinusoidal");
                }
            }
        }
    }
    mp_agree(0);

    /* 5. the distributed computation (failures recorded, reported at the agree) */
    mp_attention(&job);
    mp_agree(0);

    /* 6. statistics, then the outputs gathered on rank 0 and written there */
    if (cli_flag(&c, "stats")) {
        unsigned long long mine[3] = { job.sent_elems, (unsigned long long)mp_peak_rss(), 0 }, mx[3];
        double tm[3] = { job.t_total, job.t_compute, job.t_wait }, tx[3];
        MPI_Reduce(mine, mx, 3, MPI_UNSIGNED_LONG_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
        MPI_Reduce(tm, tx, 3, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
        /* forward: P - 1 shifts of a K, V block; backward: P shifts of K, V, dK, dV */
        double blockv = (double)job.n / mp_size * (double)(job.d + job.dv) * (double)Sk;
        double model = ac.kind == RK_SOFTMAX
            ? blockv * ((double)(mp_size - 1) + (backward ? 2.0 * mp_size : 0.0)) : 0.0;
        printf("ranks %d  n %zu  d %zu  d_v %zu  slices %zu  %s  time %.4f s (compute %.4f, wait "
               "%.4f)  sent %llu elements per rank (max)", mp_size, job.n, job.d, job.dv, Sq,
               ac.kind == RK_SOFTMAX ? (zigzag ? "ring zigzag" : "ring") : "scan", tx[0], tx[1],
               tx[2], mx[0]);
        if (ac.kind == RK_SOFTMAX) printf("  model %.0f", model);
        printf("  peak RSS %.1f MB (max rank)\n", (double)mx[1] / 1048576.0);
    }
    rk_array outs[4], conv[4];      /* function scope: cli_finish frees them */
    memset(outs, 0, sizeof outs);
    memset(conv, 0, sizeof conv);
    const geom *og[4] = { &gd, &gq, &gk, &gv };
    void *ol[4] = { job.out, job.dq, job.dk, job.dvv };
    static const char *const out_opts[4] = { "out", "dq", "dk", "dv" };
    for (int i = 0; i < (backward ? 4 : 1); i++) {
        if (i > 0 && !cli_flag(&c, out_opts[i])) continue;
        if (mp_rank == 0) {
            size_t shape[RK_NPY_MAXDIM];
            memcpy(shape, shp[i == 0 ? 0 : i - 1], sizeof shape);
            if (i == 0) shape[nd - 1] = job.dv;
            int e = rk_array_alloc(&outs[i], RK_F64, nd, shape);
            if (e) mp_fail("cannot allocate the output: %s", rk_last_error());
            else cli_defer_array(&c, &outs[i]);
        }
        gather_rows(&outs[i], og[i], blkv, ol[i], dbl);
    }
    mp_agree(0);
    if (mp_rank == 0) {
        for (int i = 0; i < (backward ? 4 : 1); i++) {
            if (i > 0 && !cli_flag(&c, out_opts[i])) continue;
            const rk_array *r = &outs[i];
            if (in_dtype != RK_F64) {
                cli_convert(&c, r, in_dtype, &conv[i]);
                r = &conv[i];
            }
            cli_stage_npy(&c, out_opts[i], r);
        }
        cli_commit_outputs(&c);
    }
    (void)out_path;
    (void)Sk;
    mp_agree(0);
    return cli_finish(&c);
}
