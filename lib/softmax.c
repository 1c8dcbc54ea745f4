/* Exact softmax attention (RoFormer eq. 2 with eq. 16 when RoPE is on):
 *
 *   out_i = sum_{j < vis(i)} exp(scale q_i.k_j) v_j / sum_{j < vis(i)} exp(scale q_i.k_j)
 *
 * vis(i) is rk__attn_visible: bottom-right causal alignment and key padding (kv_len).
 *
 * float32 path (the fast one): flash-attention style. Queries go in tiles of BR rows, keys in
 * tiles of BC; per (query tile, key tile) S = Q K^T (BR x BC, never n_q x n_kv), an online
 * softmax with a running max m and sum l per row, and O = diag(alpha) O + P V. Queries are
 * pre-multiplied by scale * log2(e) so probabilities are exp2(s - m). Key tiles a query tile
 * cannot see are skipped, and inside the diagonal tile a 6-row block only computes up to the
 * last key one of its rows sees. Kernels (portable or AVX2) are in softmax_kern.c.
 *
 * float64 path: the straightforward three passes per query row (logits and max, exp and sum,
 * weighted sum of values), all in double.
 *
 * Threads: OpenMP over query tiles (float) or rows (double). Tile sizes are constants, so every
 * output row is computed by one thread with the same operations in the same order whatever
 * the thread count: results are bitwise identical for any nthreads. Tiles are handed out
 * heaviest first (dynamic, 1) because causal tiles differ in cost.
 *
 * RoPE (rope = RK_ROPE_QK): the float path rotates each query tile and each 16-key panel as it
 * packs them (rk_rope_apply on row sub-views, positions rk__attn_qpos / rk__attn_kpos); the
 * double path rotates q and k into plan-owned copies first. xPos (xpos_scale_base > 0) then
 * scales rotated pair i by zeta_i^(+-(pos - c)/B) (query +, key -; c the middle position).
 *
 * Relative bias (cfg.bias, convention in ropekit.h): the plan keeps the values in double and
 * as float log2(e) b. The float path adds a row's slice to each 6-row block of logits right
 * after the q.k micro-kernel, over the keys that row sees (query i, key j: index
 * j - i + n_q - 1, so a row's keys are consecutive entries); the double path adds b to each
 * logit. Adding 0 leaves every logit's bits unchanged, so a zero bias gives the no-bias result.
 * A row whose visible logits are all -inf (masked by -inf entries) gets a zero row.
 *
 * Memory: everything (packed operands, RoPE copies and plan, one scratch slab per thread padded
 * to 64 B) is allocated at create and counted in rk_attn_bytes; execute allocates nothing.
 * Packed operands are O((n_q + n_kv) d).
 */
#include "softmax.h"

#include <math.h>
#include <stdint.h>
#include <omp.h>
#include <string.h>

/* Per-thread float scratch, carved from one slab (each part 64-B aligned). */
typedef struct {
    float  *s;       /* (BR, BC) logits, then probabilities           */
    float  *o;       /* (BR, dvp) unnormalised output accumulator     */
    float  *m;       /* (BR) running max (log2 domain)                */
    float  *alpha;   /* (BR) rescale factor of the current key tile   */
    double *l;       /* (BR) running sum                              */
    size_t *vis;     /* (BR) keys each row sees                       */
    float  *kbuf;    /* (16, d) RoPE: one panel of rotated keys        */
    float  *q;       /* (BR, d) the tile's packed (scaled, rotated) queries */
} tile_scratch;

#define round_up rk__sm_round_up

/* Byte sizes of the parts of a float slab, in order; returns the slab size. */
static size_t slab_f_layout(size_t d, size_t dvp, size_t part[8])
{
    part[0] = round_up(BR * BC * sizeof(float), 64);
    part[1] = round_up(BR * dvp * sizeof(float), 64);
    part[2] = round_up(BR * sizeof(float), 64);
    part[3] = round_up(BR * sizeof(float), 64);
    part[4] = round_up(BR * sizeof(double), 64);
    part[5] = round_up(BR * sizeof(size_t), 64);
    part[6] = round_up(RK_SM_NR * d * sizeof(float), 64);
    part[7] = round_up(BR * d * sizeof(float), 64);
    return part[0] + part[1] + part[2] + part[3] + part[4] + part[5] + part[6] + part[7];
}

static tile_scratch slab_f_at(const sm_plan *s, size_t d, int t)
{
    size_t part[8];
    slab_f_layout(d, s->dvp, part);
    unsigned char *b = s->slab_f + (size_t)t * s->slab_f_bytes;
    tile_scratch ts;
    ts.s = (float *)b;                     b += part[0];
    ts.o = (float *)b;                     b += part[1];
    ts.m = (float *)b;                     b += part[2];
    ts.alpha = (float *)b;                 b += part[3];
    ts.l = (double *)b;                    b += part[4];
    ts.vis = (size_t *)b;                  b += part[5];
    ts.kbuf = (float *)b;                  b += part[6];
    ts.q = (float *)b;
    return ts;
}

/* Per-thread double scratch: w (n_kv), acc (d_v), one query and one key row (d each). */
static void slab_d_at(const rk_attn_config *c, const sm_plan *s, int t, double **w, double **acc,
                      double **qb, double **kb)
{
    unsigned char *b = s->slab_d + (size_t)t * s->slab_d_bytes;
    *w = (double *)b;    b += round_up(c->n_kv * sizeof(double), 64);
    *acc = (double *)b;  b += round_up(c->d_v * sizeof(double), 64);
    *qb = (double *)b;   b += round_up(c->d * sizeof(double), 64);
    *kb = (double *)b;
}

/* ------------------------------------------------------------------------------------ */
/* Create / destroy                                                                     */
/* ------------------------------------------------------------------------------------ */

static void sm_destroy(void *impl)
{
    sm_plan *s = impl;
    if (!s) return;
    rk_rope_destroy(s->rope);
    rk__free(s->kt);
    rk__free(s->kvmax);
    rk__free(s->pm);
    rk__free(s->po);
    rk__free(s->pl);
    rk__free(s->ck);
    rk__free(s->cv);
    rk__free(s->cmax);
    rk__free(s->qmx);
    rk__free(s->vp);
    rk__free(s->qd);
    rk__free(s->kd);
    rk__free(s->bd);
    rk__free(s->bl);
    rk__free(s->lnz);
    rk__free(s->slab_f);
    rk__free(s->slab_d);
    rk__free(s->kp);
    rk__free(s->vt);
    rk__free(s->gk);
    rk__free(s->gv);
    rk__free(s->dd);
    rk__free(s->slab_b);
    rk__free(s->slab_bd);
    rk__free(s);
}

/* rk__take for this plan: counted in p->bytes, messages name softmax. */
#define TAKE(p, rc, a, b, elt, what) rk__take(&(p)->bytes, (a), (b), (elt), "softmax", (what), (rc))

/* Every position must be representable: keys pos_offset .. pos_offset + n_kv - 1, queries
 * pos_offset + qidx .. pos_offset + qidx + n_q - 1 (qidx: n_kv - n_q, or q_start). */
static int check_positions(const rk_attn_config *c)
{
    const int64_t lo = rk__attn_qidx(c) < 0 ? rk__attn_qidx(c) : 0;
    const int64_t qe = rk__attn_qidx(c) + (int64_t)c->n_q, hi = qe > (int64_t)c->n_kv ? qe : (int64_t)c->n_kv;
    if (c->pos_offset > INT64_MAX - hi || c->pos_offset < INT64_MIN - lo)
        RK_FAIL(RK_EOVERFLOW, "softmax: pos_offset = %lld overflows the positions",
                (long long)c->pos_offset);
    return RK_OK;
}

/* The largest position a plan uses: the last key's or the last query's. */
static int64_t last_position(const rk_attn_config *c)
{
    int64_t k = rk__attn_kpos(c, c->n_kv - 1), q = rk__attn_qpos(c, c->n_q - 1);
    return k > q ? k : q;
}

/* RoPE over q and k of width d, positions as in rk__attn_qpos / rk__attn_kpos. */
static int make_rope(const rk_attn_config *c, sm_plan *s)
{
    rk_rope_config rc = rk__attn_rope_cfg(c, c->d);
    /* A table over every position used when that is modest (about 12 d bytes per position,
     * up to ROPE_TABLE_BYTES); beyond it the rope plan combines the table with cos/sin of
     * a * table_len * theta by angle addition in double (within ~5 double ulps of the direct
     * formula, see table_len in ropekit.h), so results may differ in the last bits from a plan
     * whose table covers every position. */
    int64_t max_pos = last_position(c);                        /* last key or last query */
    size_t limit = ROPE_TABLE_BYTES / (12 * c->d);
    if (limit < 4096) limit = 4096;
    if (rc.table_len == 0 && max_pos >= 0 && (uint64_t)max_pos < limit)
        rc.table_len = (size_t)max_pos + 1;
    return rk_rope_create(&s->rope, &rc);
}

/* The positions xPos uses: keys pos_offset .. pos_offset + n_kv - 1 and the queries' (from
 * pos_offset + n_kv - n_q bottom-right, below the first key when n_q > n_kv; or from
 * pos_offset + q_start); c is their middle. */
static void xpos_span(const rk_attn_config *c, double *lo, double *hi)
{
    *hi = (double)last_position(c);
    double q0 = (double)rk__attn_qpos(c, 0), k0 = (double)c->pos_offset;
    *lo = q0 < k0 ? q0 : k0;
}

/* xPos: ln zeta_i of the rotated pairs and the centre (the range was checked by resolve). */
static int make_xpos(rk_attn *p, sm_plan *s)
{
    rk_attn_config *c = &p->cfg;
    const rk_rope_config *rc = rk_rope_get_config(s->rope);
    int rc_ = RK_OK;
    s->xr = rc->rotary_dim;
    s->xhalf = rc->style == RK_ROPE_HALF;
    s->xb = c->xpos_scale_base;
    if (!(s->lnz = TAKE(p, &rc_, s->xr / 2, 1, sizeof(double), "xPos factors"))) return rc_;
    if ((rc_ = rk_xpos_zeta(s->lnz, s->xr, c->xpos_gamma))) return rc_;
    for (size_t i = 0; i < s->xr / 2; i++) s->lnz[i] = log(s->lnz[i]);
    double lo, hi;
    xpos_span(c, &lo, &hi);
    s->xc = 0.5 * (lo + hi);
    return RK_OK;
}

/* The bias in double and as float log2(e) b (-inf stays -inf). */
static int make_bias(rk_attn *p, sm_plan *s)
{
    rk_attn_config *c = &p->cfg;
    size_t len = c->bias_len;
    int rc = RK_OK;
    if (!(s->bd = TAKE(p, &rc, len, 1, sizeof(double), "bias")) ||
        !(s->bl = TAKE(p, &rc, len, 1, sizeof(float), "bias (float)")))
        return rc;
    for (size_t t = 0; t < len; t++) {
        s->bd[t] = c->bias[t];
        s->bl[t] = (float)(RK_LOG2E * c->bias[t]);
    }
    c->bias = s->bd;                       /* rk_attn_get_config: the plan's copy */
    return RK_OK;
}

static int sm_resolve(rk_attn_config *c, rk_attn_info *info)
{
    (void)info;
    int rc = rk__bias_check(c, "softmax", 1);
    if (rc) return rc;
    if (c->bias && c->align != RK_ALIGN_BOTTOM_RIGHT)
        RK_FAIL(RK_EINVAL, "softmax: the relative bias is indexed by the bottom-right offsets "
                "(n_q + n_kv - 1 values); align = RK_ALIGN_Q_START with a bias is not supported");
    if (c->rope == RK_ROPE_QK) {
        if ((rc = check_positions(c)) || (rc = rk__attn_rope_check(c, c->d, "softmax")))
            return rc;
    }
    if (c->xpos_scale_base != 0.0) {
        if (!isfinite(c->xpos_scale_base) || c->xpos_scale_base < 0.0)
            RK_FAIL(RK_EINVAL, "softmax: xpos_scale_base = %g must be finite and > 0",
                    c->xpos_scale_base);
        if (c->rope != RK_ROPE_QK)
            RK_FAIL(RK_EINVAL, "softmax: xPos is RoPE with a decay: it needs rope = RK_ROPE_QK");
        if (!c->causal)
            RK_FAIL(RK_EINVAL, "softmax: xPos is defined for causal attention only (its factors "
                    "grow without bound for keys after the query)");
        if (!isfinite(c->xpos_gamma) || c->xpos_gamma < 0.0)
            RK_FAIL(RK_EINVAL, "softmax: xpos_gamma = %g must be finite and > 0", c->xpos_gamma);
        if (c->xpos_gamma == 0.0) c->xpos_gamma = 0.4;
        /* the largest factor, zeta_0^(max |pos - c| / B) with zeta_0 = gamma / (1 + gamma) */
        double lo, hi;
        xpos_span(c, &lo, &hi);
        double ex = fabs(log(c->xpos_gamma / (1.0 + c->xpos_gamma))) * 0.5 * (hi - lo) /
                    c->xpos_scale_base;
        if (!(ex <= 64.0))
            RK_FAIL(RK_EOVERFLOW, "softmax: xPos over positions %.0f .. %.0f with scale base %g, "
                    "gamma %g needs factors up to e^%.3g (limit e^64): use a larger scale base or "
                    "shorter sequences", lo, hi, c->xpos_scale_base, c->xpos_gamma, ex);
    } else if (c->xpos_gamma != 0.0) {
        RK_FAIL(RK_EINVAL, "softmax: xpos_gamma is set but xPos is off (xpos_scale_base = 0)");
    }
    return RK_OK;
}

static int sm_create(rk_attn *p)
{
    const rk_attn_config *c = &p->cfg;
    int rc = RK_OK;
    sm_plan *s = rk__alloc(sizeof *s);
    if (!s) RK_FAIL(RK_ENOMEM, "softmax: cannot allocate the plan");
    p->impl = s;
    p->bytes += rk__alloc_size(sizeof *s);
    s->kern = rk__sm_kernels_for(c->isa);
    p->cfg.isa = s->kern->isa;           /* rk_attn_get_config: the path that runs */
    s->dvp = round_up(c->d_v, RK_SM_NR);
    s->ntiles = (c->n_q + BR - 1) / BR;
    s->npan = (c->n_kv + RK_SM_NR - 1) / RK_SM_NR;
    size_t nth = (size_t)c->nthreads, part[8];
    s->nks = c->batch * c->kv_heads;
    s->slab_f_bytes = slab_f_layout(c->d, s->dvp, part);
    s->slab_d_bytes = round_up(c->n_kv * sizeof(double), 64) + round_up(c->d_v * sizeof(double), 64) +
                      2 * round_up(c->d * sizeof(double), 64);
    /* decoding shapes: one query tile against at least two chunks of keys (d_v <= 1024, the
     * merge's row buffer) */
    if (s->ntiles == 1 && c->n_kv >= 2 * RK_SM_KVCHUNK && c->d_v <= RK_SM_NR * 64) {
        s->nchunks = (c->n_kv + RK_SM_KVCHUNK - 1) / RK_SM_KVCHUNK;
        s->prow = c->n_q;
        size_t nsl = c->batch * c->heads * s->nchunks * s->prow;
        if (!(s->pm = TAKE(p, &rc, nsl, 1, sizeof(float), "decoding partials")) ||
            !(s->pl = TAKE(p, &rc, nsl, 1, sizeof(double), "decoding partials")) ||
            !(s->po = TAKE(p, &rc, nsl, s->dvp, sizeof(float), "decoding partials")) ||
            !(s->ck = TAKE(p, &rc, nth * RK_SM_KVCHUNK, c->d, sizeof(float), "chunk keys")) ||
            !(s->cv = TAKE(p, &rc, nth * RK_SM_KVCHUNK, s->dvp, sizeof(float), "chunk values")) ||
            !(s->cmax = TAKE(p, &rc, s->nks * s->nchunks, 2, sizeof(float), "chunk magnitudes")) ||
            !(s->qmx = TAKE(p, &rc, c->batch * c->heads, 1, sizeof(float), "query magnitudes")))
            return rc;
    }
    if (!(s->kvmax = TAKE(p, &rc, s->nks * s->npan, 2, sizeof(float), "magnitudes")) ||
        !(s->kt = TAKE(p, &rc, s->nks * s->npan * RK_SM_NR, c->d, sizeof(float), "keys")) ||
        !(s->vp = TAKE(p, &rc, s->nks * c->n_kv, s->dvp, sizeof(float), "values")) ||
        !(s->slab_f = TAKE(p, &rc, nth, s->slab_f_bytes, 1, "float scratch")) ||
        !(s->slab_d = TAKE(p, &rc, nth, s->slab_d_bytes, 1, "double scratch")))
        return rc;
    if (c->rope == RK_ROPE_QK) {
        if ((rc = make_rope(c, s))) return rc;
        p->bytes += rk_rope_bytes(s->rope);
        /* rk_attn_get_config: the per-pair arrays are the rope plan's copies, not the caller's */
        const rk_rope_config *own = rk_rope_get_config(s->rope);
        p->cfg.rope_cfg.short_factor = own->short_factor;
        p->cfg.rope_cfg.long_factor = own->long_factor;
        p->cfg.rope_cfg.freq_factors = own->freq_factors;
        p->cfg.rope_cfg.freqs = own->freqs;
        if (!(s->qd = TAKE(p, &rc, c->n_q, c->d, sizeof(double), "rotated queries")) ||
            !(s->kd = TAKE(p, &rc, c->n_kv, c->d, sizeof(double), "rotated keys")))
            return rc;
        if (c->xpos_scale_base != 0.0 && (rc = make_xpos(p, s))) return rc;
    }
    if (c->bias && (rc = make_bias(p, s))) return rc;
    /* the backward's buffers (lib/softmax_bwd.c): O((n_q + n_kv) d) with a bounded number of
     * dK / dV partials */
    rk__sm_bwd_layout(c, s);
    if (!(s->kp = TAKE(p, &rc, s->nks * s->nkr, s->dp, sizeof(float), "keys (row-major)")) ||
        !(s->vt = TAKE(p, &rc, s->nks * s->npan * s->dvp, RK_SM_NR, sizeof(float),
                       "values (panels)")) ||
        !(s->gk = TAKE(p, &rc, s->nks * s->ngroups * s->nkr, s->dp, sizeof(float),
                       "dK partials")) ||
        !(s->gv = TAKE(p, &rc, s->nks * s->ngroups * s->nkr, s->dvp, sizeof(float),
                       "dV partials")) ||
        !(s->dd = TAKE(p, &rc, c->n_q, 1, sizeof(double), "dout . out")) ||
        !(s->slab_b = TAKE(p, &rc, nth, s->slab_b_bytes, 1, "backward scratch")) ||
        !(s->slab_bd = TAKE(p, &rc, nth, s->slab_bd_bytes, 1, "backward scratch (double)")))
        return rc;
    return RK_OK;
}

/* xPos: rows t < nr of x (ld ldx, rotated) at positions pos0 + t, pair i times
 * zeta_i^(sign (pos - c) / B) (sign +1 queries, -1 keys). The factor is formed in double. */
#define XPOS_ROWS(NAME, REAL)                                                                 \
    void NAME(const sm_plan *s, REAL *x, size_t nr, size_t ldx, int64_t pos0,        \
                     double sign)                                                             \
    {                                                                                         \
        const size_t h = s->xr / 2;                                                           \
        for (size_t t = 0; t < nr; t++) {                                                     \
            double e = sign * ((double)(pos0 + (int64_t)t) - s->xc) / s->xb;                  \
            REAL *x_t = x + t * ldx;                                                          \
            for (size_t i = 0; i < h; i++) {                                                  \
                REAL f = (REAL)exp(s->lnz[i] * e);                                            \
                size_t a = s->xhalf ? i : 2 * i, b = s->xhalf ? i + h : 2 * i + 1;            \
                x_t[a] *= f;                                                                  \
                x_t[b] *= f;                                                                  \
            }                                                                                 \
        }                                                                                     \
    }
XPOS_ROWS(rk__sm_xpos_rows_f, float)
XPOS_ROWS(rk__sm_xpos_rows_d, double)
#undef XPOS_ROWS

/* ------------------------------------------------------------------------------------ */
/* One row in double, safe from overflow (the float64 path, and the float32 path's guard)  */
/* ------------------------------------------------------------------------------------ */

/* Where one row's operands come from (the float64 path and the float32 path's fallback):
 * float or double rows, already final (rotated, xPos-scaled) or rotated here. */
typedef struct {
    const float  *qf, *kf, *vf;     /* float rows, or NULL */
    const double *qd, *kd, *vd;     /* double rows, or NULL */
    size_t        ldq, ldk, ldv;
    int           rotate;           /* 1: RoPE (and xPos) applied here, row by row */
} row_src;

/* Query row i or key row j as doubles (final: rotated and scaled as the plan does). */
static const double *src_row(const rk_attn_config *c, const sm_plan *s, const row_src *r,
                             int key, size_t t, double *buf)
{
    const size_t d = c->d;
    const double *rd = key ? r->kd : r->qd;
    const float *rf = key ? r->kf : r->qf;
    const size_t ld = key ? r->ldk : r->ldq;
    if (rd && !r->rotate) return rd + t * ld;
    for (size_t ch = 0; ch < d; ch++) buf[ch] = rd ? rd[t * ld + ch] : (double)rf[t * ld + ch];
    if (r->rotate && s->rope) {
        int64_t pos = key ? rk__attn_kpos(c, t) : rk__attn_qpos(c, t);
        rk_matd row = rk_matd_view(buf, 1, d, d);
        if (rk_rope_apply_d(s->rope, &row, &row, pos, NULL, 0) == RK_OK && s->lnz)
            rk__sm_xpos_rows_d(s, buf, 1, d, pos, key ? -1.0 : 1.0);
    }
    return buf;
}

static double src_v(const row_src *r, size_t j, size_t ch)
{
    return r->vd ? r->vd[j * r->ldv + ch] : (double)r->vf[j * r->ldv + ch];
}

static int all_finite(const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static double max_abs_d(const double *x, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

/* One query row i in double, over its nv visible keys (b_i: the row's bias, or NULL), with
 * nothing overflowing where the true result is finite: logits that overflow double are
 * formed from the inputs scaled by powers of two (exact) and only their differences to the
 * row's maximum are taken back to scale (an overflow there is a weight of exactly 0); values
 * whose weighted sum overflows are summed scaled likewise. Writes the row to out (float or
 * double) and, for a training forward, its log-sum-exp (natural log; -inf if it weighed
 * nothing). Returns 0, or 1 if the true result itself is beyond the output's range (the
 * caller reports RK_ENONFINITE), or 2 if the row's log-sum-exp is (the training forward). */
static int row_safe(const rk_attn_config *c, const sm_plan *s, const row_src *r, size_t i,
                    size_t nv, const double *b_i, float *out_f, double *out_d, double *lse_i,
                    double *w, double *acc, double *qbuf, double *kbuf)
{
    const size_t d = c->d, dv = c->d_v;
    if (lse_i) *lse_i = -INFINITY;                      /* until a weight is seen */
#define PUT(ch, x) do { if (out_f) out_f[ch] = (float)(x); else out_d[ch] = (x); } while (0)
    if (nv == 0) {                                      /* sees no key: zero row */
        for (size_t ch = 0; ch < dv; ch++) PUT(ch, 0.0);
        return 0;
    }
    const double *q_i = src_row(c, s, r, 0, i, qbuf);
    // 1. logits and their max
    double mx = -INFINITY;
    int bad = 0;
    for (size_t j = 0; j < nv; j++) {
        const double *k_j = src_row(c, s, r, 1, j, kbuf);
        double dot = 0.0;
        for (size_t ch = 0; ch < d; ch++) dot += q_i[ch] * k_j[ch];
        w[j] = c->scale * dot;
        if (!isfinite(w[j]) && !bad) bad = all_finite(q_i, d) && all_finite(k_j, d);
        if (b_i) w[j] += b_i[j];
        if (w[j] > mx) mx = w[j];
    }
    double shift = mx;                                  /* the log of the largest weight */
    if (bad) {
        // 1'. logits beyond double: scale q by 2^-eq, k by 2^-ek, scale by 2^-es (exact),
        //     y_j = scale~ q~ . k~_j, logit_j = 2^E y_j + b_j with E = eq + ek + es; the
        //     weights need only logit_j - logit_m, m the largest y (ties: the largest bias)
        double mq = max_abs_d(q_i, d), mk = 0.0;
        for (size_t j = 0; j < nv; j++) mk = fmax(mk, max_abs_d(src_row(c, s, r, 1, j, kbuf), d));
        int eq = mq > 0 ? ilogb(mq) : 0, ek = mk > 0 ? ilogb(mk) : 0, es = ilogb(fabs(c->scale));
        double sc = ldexp(c->scale, -es);
        size_t m = nv;                                  /* nv: every key masked by -inf */
        for (size_t j = 0; j < nv; j++) {
            const double *k_j = src_row(c, s, r, 1, j, kbuf);
            double dot = 0.0;
            for (size_t ch = 0; ch < d; ch++) dot += ldexp(q_i[ch], -eq) * ldexp(k_j[ch], -ek);
            w[j] = sc * dot;
            if (b_i && b_i[j] == -INFINITY) continue;
            if (m == nv || w[j] > w[m] || (w[j] == w[m] && b_i && b_i[j] > b_i[m])) m = j;
        }
        mx = -INFINITY;
        if (m < nv) {
            const double ym = w[m], bm = b_i ? b_i[m] : 0.0;
            for (size_t j = 0; j < nv; j++) {
                if (b_i && b_i[j] == -INFINITY) { w[j] = -INFINITY; continue; }
                double diff = w[j] - ym;                /* <= 0: m is the largest */
                double rel = diff == 0.0 ? 0.0 : ldexp(diff, eq + ek + es);
                if (b_i) rel += b_i[j] - bm;
                w[j] = rel;
                if (rel > mx) mx = rel;
            }
        }
        shift = INFINITY;                               /* the row's logits overflow */
    }
    if (b_i && mx == -INFINITY) {                       /* every key masked by the bias */
        for (size_t ch = 0; ch < dv; ch++) PUT(ch, 0.0);
        return 0;
    }
    // 2. exp and sum (shifted by the max: no overflow)
    double sum = 0.0;
    for (size_t j = 0; j < nv; j++) {
        w[j] = exp(w[j] - mx);
        sum += w[j];
    }
    // 3. weighted sum of the values; if it overflows (and nothing is NaN), again with the
    //    values scaled by 2^-ev
    int ev = 0, finite_v = 1;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t ch = 0; ch < dv; ch++) acc[ch] = 0.0;
        for (size_t j = 0; j < nv; j++)
            for (size_t ch = 0; ch < dv; ch++) acc[ch] += w[j] * ldexp(src_v(r, j, ch), -ev);
        int inf = 0, nan = 0;
        for (size_t ch = 0; ch < dv; ch++) { inf |= isinf(acc[ch]); nan |= isnan(acc[ch]); }
        if (!inf || nan || pass) break;
        double mv = 0.0;
        for (size_t j = 0; j < nv; j++)
            for (size_t ch = 0; ch < dv; ch++) mv = fmax(mv, fabs(src_v(r, j, ch)));
        if (!isfinite(mv)) { finite_v = 0; break; }      /* an Inf value: Inf is the answer */
        ev = ilogb(mv);
    }
    // 4. normalise (sum >= 1 unless a logit was NaN); a training forward saves the row's
    //    log-sum-exp
    int over = 0;
    for (size_t ch = 0; ch < dv; ch++) {
        double o = ldexp(acc[ch] / sum, ev);
        if (out_f ? isinf((float)o) : isinf(o)) over = finite_v && !isnan(acc[ch]);
        PUT(ch, o);
    }
#undef PUT
    if (lse_i) *lse_i = shift == INFINITY ? INFINITY : mx + log(sum);
    if (over) return 1;
    return lse_i && *lse_i == INFINITY ? 2 : 0;
}

/* The failure of row i (row_safe's 1 or 2). */
static int row_overflow(int why, size_t i, int f32)
{
    if (why == 2)
        RK_FAIL(RK_ENONFINITE, "softmax: row %zu: its logits overflow double, so its "
                "log-sum-exp (what the backward needs) is not representable", i);
    RK_FAIL(RK_ENONFINITE, "softmax: row %zu: the output overflows %s (the weighted mean of "
            "the values it sees is beyond the type's range)", i, f32 ? "float32" : "float64");
}

/* ------------------------------------------------------------------------------------ */
/* float32 path                                                                         */
/* ------------------------------------------------------------------------------------ */

/* max(m, |x|), NaN ignored as fmaxf does; written as a compare so the packing loops vectorise
 * (libm's fmaxf is a call per element: it dominated the decoding path's packing). */
static inline float max_abs(float m, float x)
{
    float a = fabsf(x);
    return a > m ? a : m;
}

/* Rows i0 .. i0 + nr - 1 of q into dst (nr, d), rotated (RoPE) and multiplied by
 * cq = scale log2(e). Returns the RoPE status (RK_OK unless the rope plan refuses). */
int rk__sm_pack_q(const rk_attn_config *c, const sm_plan *s, const rk_mat *q, size_t i0,
                  size_t nr, float cq, float *dst, float *qmax)
{
    const size_t d = c->d;
    float mx = 0.0f;
    if (s->rope) {
        rk_mat src = rk_mat_sub(*q, i0, 0, nr, d), to = rk_mat_view(dst, nr, d, d);
        int rc = rk_rope_apply(s->rope, &src, &to, rk__attn_qpos(c, i0), NULL, 0);
        if (rc) return rc;
        if (s->lnz) rk__sm_xpos_rows_f(s, dst, nr, d, rk__attn_qpos(c, i0), 1.0);
        for (size_t t = 0; t < nr * d; t++) {
            mx = max_abs(mx, dst[t]);
            dst[t] *= cq;
        }
    } else {
        for (size_t r = 0; r < nr; r++) {
            const float *q_i = q->data + (i0 + r) * q->ld;
            for (size_t j = 0; j < d; j++) {
                mx = max_abs(mx, q_i[j]);
                dst[r * d + j] = cq * q_i[j];
            }
        }
    }
    if (qmax) *qmax = mx;
    return RK_OK;
}

/* Keys j0 .. j0 + jn - 1 (jn <= 16) into panel (j0 - base) / 16 of kt (the key/value head's
 * panels from key base on), rotated through kbuf (16, d) when RoPE is on; the matching value
 * rows into vp (row j0 - base on). */
int rk__sm_pack_kv(const rk_attn_config *c, const sm_plan *s, const rk_mat *k, const rk_mat *v,
                   size_t j0, size_t jn, size_t base, float *kbuf, float *kt, float *vp,
                   float *kvmax)
{
    const size_t d = c->d;
    const float *k_src = k->data + j0 * k->ld;
    size_t ldk = k->ld;
    if (s->rope) {
        rk_mat src = rk_mat_sub(*k, j0, 0, jn, d), dst = rk_mat_view(kbuf, jn, d, d);
        int rc = rk_rope_apply(s->rope, &src, &dst, rk__attn_kpos(c, j0), NULL, 0);
        if (rc) return rc;
        if (s->lnz) rk__sm_xpos_rows_f(s, kbuf, jn, d, rk__attn_kpos(c, j0), -1.0);
        k_src = kbuf;
        ldk = d;
    }
    float *kt_p = kt + (j0 - base) * d;       /* panel p starts at 16 d p: j0 - base = 16 p */
    float km = s->kern->pack_k(k_src, ldk, jn, d, kt_p);
    float vm = s->kern->pack_v(v->data + j0 * v->ld, v->ld, jn, c->d_v, vp + (j0 - base) * s->dvp,
                               s->dvp);
    if (kvmax) { kvmax[0] = km; kvmax[1] = vm; }
    return RK_OK;
}

/* One query tile: rows i0 .. i0 + nr - 1 (packed in qs) against the key tiles of [k0, k1)
 * they can see (k0 a multiple of BC), leaving the running max m, sum l and accumulator o in
 * ts. kt and vp are the key/value head's packed keys and values from key kbase on (0: the
 * plan's whole head; k0: one decoding chunk packed on its own). */
static void tile_f(const rk_attn_config *c, const sm_plan *s, const tile_scratch *ts,
                   const float *qs, const float *kt, const float *vp, size_t kbase, size_t i0,
                   size_t nr, size_t k0, size_t k1, size_t kv_len)
{
    const rk__sm_kernels *kern = s->kern;
    const size_t d = c->d, dvp = s->dvp;
    const size_t nrp = round_up(nr, RK_SM_MR);          /* rows the micro-kernels touch */

    // 1. keys each row sees (pad rows: none), running max / sum / accumulator reset
    size_t kmax = 0;
    for (size_t r = 0; r < nrp; r++) {
        size_t vr = r < nr ? rk__attn_visible(c, i0 + r, kv_len) : 0;
        ts->vis[r] = vr < k1 ? vr : k1;
        if (ts->vis[r] > kmax) kmax = ts->vis[r];
        ts->m[r] = -INFINITY;
        ts->l[r] = 0.0;
    }
    memset(ts->o, 0, nrp * dvp * sizeof(float));

    // 2. key tiles; blocks of 6 rows work only up to the last key one of their rows sees
    for (size_t j0 = k0; j0 < kmax; j0 += BC) {
        const size_t nb = kmax - j0 < BC ? kmax - j0 : BC;
        for (size_t r0 = 0; r0 < nrp; r0 += RK_SM_MR) {
            size_t nv[RK_SM_MR], nvb = 0;
            for (size_t r = 0; r < RK_SM_MR; r++) {
                size_t vr = ts->vis[r0 + r];
                nv[r] = vr <= j0 ? 0 : (vr - j0 < nb ? vr - j0 : nb);
                if (nv[r] > nvb) nvb = nv[r];
            }
            if (nvb == 0) continue;                         /* whole block masked: skip */
            const size_t npan = (nvb + RK_SM_NR - 1) / RK_SM_NR, ncol = npan * RK_SM_NR;
            float *s_b = ts->s + r0 * BC;

            // 2a. logits S = Q K^T for this block, plus the relative bias of the keys each
            //     row sees (row i, key j: bl[j - i + n_q - 1], consecutive in j)
            kern->qk(qs + r0 * d, d, kt + (j0 - kbase) * d, npan, s_b, BC);
            if (s->bl)
                for (size_t r = 0; r < RK_SM_MR; r++) {
                    if (nv[r] == 0) continue;               /* also every pad row */
                    const float *b_r = s->bl + (c->n_q - 1 - (i0 + r0 + r)) + j0;
                    float *s_r = s_b + r * BC;
                    const size_t nvr = nv[r];
                    #pragma omp simd
                    for (size_t jj = 0; jj < nvr; jj++) s_r[jj] += b_r[jj];
                }

            // 2b. online softmax of the block's rows (keys past each row's limit masked)
            kern->rows(s_b, BC, ncol, nv, ts->m + r0, ts->l + r0, ts->alpha + r0);

            // 2c. O = diag(alpha) O + P V, each row over the keys it sees (never 0 * a value
            //     row it must not see: that is NaN when the value is Inf or NaN)
            kern->pv(s_b, BC, vp + (j0 - kbase) * dvp, dvp, nv, dvp, ts->alpha + r0, ts->o + r0 * dvp,
                     dvp);
        }
    }
}

/* The tile's output rows: o / l (l >= 1: the row max contributes exp2(0)); a row that saw no
 * key, or (bias) whose every visible key was masked by a -inf entry (l = 0), gets zeros. NaN
 * inputs stay NaN. A training forward also saves each row's log2-domain log-sum-exp
 * m + log2(l) (-inf for a row that weighed nothing), the backward's only link to this pass. */
static void tile_finish(const rk_attn_config *c, const sm_plan *s, const tile_scratch *ts,
                        size_t i0, size_t nr, size_t kv_len, rk_mat *out, float *lse)
{
    for (size_t r = 0; r < nr; r++) {
        float *out_i = out->data + (i0 + r) * out->ld;
        const float *o_r = ts->o + r * s->dvp;
        double l = ts->l[r];
        int empty = rk__attn_visible(c, i0 + r, kv_len) == 0 || (s->bl && l == 0.0);
        if (empty) memset(out_i, 0, c->d_v * sizeof *out_i);
        else for (size_t j = 0; j < c->d_v; j++) out_i[j] = (float)(o_r[j] / l);
        if (lse) lse[i0 + r] = empty ? -INFINITY : (float)((double)ts->m[r] + log2(l));
    }
}

/* Split-KV decoding: the partial (m, l, o) of slice sl's chunk ch, from the tile scratch. */
static void chunk_store(const sm_plan *s, const tile_scratch *ts, size_t sl, size_t ch, size_t nr)
{
    size_t at = (sl * s->nchunks + ch) * s->prow;
    for (size_t r = 0; r < nr; r++) {
        s->pm[at + r] = ts->m[r];
        s->pl[at + r] = ts->l[r];
        memcpy(s->po + (at + r) * s->dvp, ts->o + r * s->dvp, s->dvp * sizeof(float));
    }
}

/* Split-KV decoding: row r of slice sl from its chunks' partials, merged in chunk order by
 * log-sum-exp (in double): m = max m_c, l = sum l_c 2^(m_c - m), o = sum o_c 2^(m_c - m). */
static void chunk_merge(const rk_attn_config *c, const sm_plan *s, size_t sl, size_t r,
                        size_t kv_len, float *out_r, float *lse_r)
{
    const size_t at = sl * s->nchunks * s->prow;
    double m = -INFINITY, l = 0.0;
    for (size_t ch = 0; ch < s->nchunks; ch++) {
        float mc = s->pm[at + ch * s->prow + r];
        if (mc > m) m = mc;
    }
    int empty = rk__attn_visible(c, r, kv_len) == 0 || m == -INFINITY;
    double acc[RK_SM_NR * 64];          /* d_v <= 1024 for the split path (checked at create) */
    for (size_t j = 0; j < c->d_v; j++) acc[j] = 0.0;
    if (!empty)
        for (size_t ch = 0; ch < s->nchunks; ch++) {
            size_t e = at + ch * s->prow + r;
            if (s->pm[e] == -INFINITY) continue;        /* the chunk had nothing for the row */
            double w = exp2((double)s->pm[e] - m);
            l += s->pl[e] * w;
            const float *o = s->po + e * s->dvp;
            for (size_t j = 0; j < c->d_v; j++) acc[j] += (double)o[j] * w;
        }
    if (s->bl && l == 0.0) empty = 1;
    for (size_t j = 0; j < c->d_v; j++) out_r[j] = empty ? 0.0f : (float)(acc[j] / l);
    if (lse_r) *lse_r = empty ? -INFINITY : (float)(m + log2(l));
}

/* Key/value head hk of batch entry b, packed: its panels and values. */
static float *kt_of(const sm_plan *s, const rk_attn_config *c, size_t ks)
{
    return s->kt + ks * s->npan * RK_SM_NR * c->d;
}
static float *vp_of(const sm_plan *s, const rk_attn_config *c, size_t ks)
{
    return s->vp + ks * c->n_kv * s->dvp;
}

/* The float32 fast path's guard: logits bounded by |cq| max|q^| max|k^| d and accumulators by
 * n_kv max|v| must stay far inside float's range (2^100); otherwise the rows go through the
 * double row computation (row_safe). Inputs with NaN or Inf keep the fast path (they give
 * NaN or Inf rows as before; the command line refuses them unless asked). */
static int fast_ok(const rk_attn_config *c, double cq, float qmax, float kmax, float vmax)
{
    const double lim = 0x1p100;
    if (!isfinite(qmax) || !isfinite(kmax) || !isfinite(vmax)) return 1;
    return fabs(cq) * (double)qmax * (double)kmax * (double)c->d < lim &&
           (double)vmax * (double)c->n_kv < lim;
}

/* The largest |k^|, |v| of key/value head ks over the panels holding keys 0 .. kmax-1. */
static void kv_max(const sm_plan *s, size_t ks, size_t kmax, float *km, float *vm)
{
    *km = *vm = 0.0f;
    for (size_t pn = 0; pn * RK_SM_NR < kmax; pn++) {
        *km = fmaxf(*km, s->kvmax[2 * (ks * s->npan + pn)]);
        *vm = fmaxf(*vm, s->kvmax[2 * (ks * s->npan + pn) + 1]);
    }
}

/* Rows i0 .. i0 + nr - 1 of head (b, h) through row_safe (the guard's fallback), in double
 * from the float inputs, rotated here. lse: the slice's saved values (log2 domain) or NULL.
 * Returns 0 or 4 (n_q sl + row) + why of the first failing row, + 1 (0 means none). */
static size_t rows_fallback(const rk_attn_config *c, const sm_plan *s, const rk_tensor *Q,
                            const rk_tensor *K, const rk_tensor *V, rk_tensor *O, size_t b,
                            size_t h, size_t i0, size_t nr, size_t kv_len, float *lse, size_t sl,
                            int thread)
{
    const size_t hk = h / (c->heads / c->kv_heads);
    rk_mat q = rk_tensor_slice(Q, b, h), k = rk_tensor_slice(K, b, hk), v = rk_tensor_slice(V, b, hk);
    rk_mat out = rk_tensor_slice(O, b, h);
    row_src src = { q.data, k.data, v.data, NULL, NULL, NULL, q.ld, k.ld, v.ld, 1 };
    double *w, *acc, *qb, *kb;
    slab_d_at(c, s, thread, &w, &acc, &qb, &kb);
    for (size_t i = i0; i < i0 + nr; i++) {
        double l;
        int why = row_safe(c, s, &src, i, rk__attn_visible(c, i, kv_len),
                           s->bd ? s->bd + (c->n_q - 1 - i) : NULL, out.data + i * out.ld, NULL,
                           lse ? &l : NULL, w, acc, qb, kb);
        if (lse) {
            float l2 = (float)(l * RK_LOG2E);
            lse[i] = l2;
            if (!why && isinf(l2) && l2 > 0) why = 2;     /* beyond float: not representable */
        }
        if (why == 1 || (why == 2 && lse)) return 4 * (sl * c->n_q + i) + (size_t)why + 1;
    }
    return 0;
}

/* The whole float32 forward of a batch of heads: keys and values of every key/value head
 * packed once (in panels of 16, rotated), then the (head, query tile) tasks, heaviest tiles
 * first across all heads (dynamic: causal tiles differ in cost), each packing its own queries;
 * or, for decoding shapes (one query tile, long keys: s->nchunks > 0), the (head, key chunk)
 * tasks and a merge. saved: NULL, or batch x heads x n_q log-sum-exps (training forward).
 * Tiles whose magnitudes could overflow float take the double row computation instead. */
static int sm_batch_f(rk_attn *p, const rk_tensor *Q, const rk_tensor *K, const rk_tensor *V,
                      rk_tensor *O, const size_t *kv_lens, float *saved)
{
    const rk_attn_config *c = &p->cfg;
    const sm_plan *s = p->impl;
    const double cqd = c->scale * RK_LOG2E;
    const float cq = (float)cqd;
    const size_t H = c->heads, grp = c->heads / c->kv_heads, nsl = c->batch * H;
    const size_t nks = c->batch * c->kv_heads, npan = s->npan, ntiles = s->ntiles;
    int err = RK_OK;
    size_t bad = SIZE_MAX;             /* 4 (n_q slice + row) + why + 1 of the first failure */
#define KVL(b) (kv_lens ? kv_lens[b] : c->n_kv)
#define KMAX(b) rk__attn_visible(c, c->n_q - 1, KVL(b))

    #pragma omp parallel num_threads(c->nthreads)
    {
        const int th = omp_get_thread_num();
        tile_scratch ts = slab_f_at(s, c->d, th);

        if (!s->nchunks) {
            // 1. keys (rotated) in panels of 16, values padded to dvp, every key/value head;
            //    only the keys some row of the entry sees (decoding packs chunk by chunk in 2')
            #pragma omp for schedule(static)
            for (size_t u = 0; u < nks * npan; u++) {
                size_t ks = u / npan, pn = u % npan, b = ks / c->kv_heads, j0 = pn * RK_SM_NR;
                if (j0 >= KMAX(b)) continue;
                size_t jn = c->n_kv - j0 < RK_SM_NR ? c->n_kv - j0 : RK_SM_NR;
                rk_mat k = rk_tensor_slice(K, b, ks % c->kv_heads), v = rk_tensor_slice(V, b, ks % c->kv_heads);
                int rc = rk__sm_pack_kv(c, s, &k, &v, j0, jn, 0, ts.kbuf, kt_of(s, c, ks),
                                        vp_of(s, c, ks), s->kvmax + 2 * u);
                if (rc) {
                    #pragma omp atomic write
                    err = rc;
                }
            }

            // 2. (head, query tile) tasks, the last (heaviest) tiles of every head first
            #pragma omp for schedule(dynamic, 1) reduction(min: bad)
            for (size_t u = 0; u < nsl * ntiles; u++) {
                size_t sl = u % nsl, t = ntiles - 1 - u / nsl, b = sl / H, h = sl % H;
                size_t ks = b * c->kv_heads + h / grp;
                size_t i0 = t * BR, nr = c->n_q - i0 < BR ? c->n_q - i0 : BR;
                rk_mat q = rk_tensor_slice(Q, b, h), out = rk_tensor_slice(O, b, h);
                float qm, km, vm;
                int rc = rk__sm_pack_q(c, s, &q, i0, nr, cq, ts.q, &qm);
                if (rc) {
                    #pragma omp atomic write
                    err = rc;
                }
                kv_max(s, ks, KMAX(b), &km, &vm);
                if (!fast_ok(c, cqd, qm, km, vm)) {
                    size_t f = rows_fallback(c, s, Q, K, V, O, b, h, i0, nr, KVL(b),
                                             saved ? saved + sl * c->n_q : NULL, sl, th);
                    if (f && f - 1 < bad) bad = f - 1;
                    continue;
                }
                tile_f(c, s, &ts, ts.q, kt_of(s, c, ks), vp_of(s, c, ks), 0, i0, nr, 0, c->n_kv,
                       KVL(b));
                tile_finish(c, s, &ts, i0, nr, KVL(b), &out, saved ? saved + sl * c->n_q : NULL);
            }
        } else {
            // 2'. decoding: (key/value head, key chunk) tasks; each packs its chunk into the
            //     thread's buffers (so K and V stream from memory once, in order, and the
            //     packed chunk stays in cache) and leaves the partial (m, l, o) of every query
            //     head of its group, with the chunk's magnitudes
            const size_t nch = s->nchunks, kc = RK_SM_KVCHUNK;
            float *ck = s->ck + (size_t)th * kc * c->d, *cv = s->cv + (size_t)th * kc * s->dvp;
            #pragma omp for schedule(dynamic, 1)
            for (size_t u = 0; u < nks * nch; u++) {
                size_t ks = u / nch, ch = u % nch, b = ks / c->kv_heads, hk = ks % c->kv_heads;
                size_t k0 = ch * kc, k1 = k0 + kc < c->n_kv ? k0 + kc : c->n_kv;
                size_t kend = KMAX(b) < k1 ? KMAX(b) : k1;      /* keys some row sees */
                rk_mat k = rk_tensor_slice(K, b, hk), v = rk_tensor_slice(V, b, hk);
                float km = 0.0f, vm = 0.0f, mx[2];
                for (size_t j0 = k0; j0 < kend; j0 += RK_SM_NR) {
                    size_t jn = c->n_kv - j0 < RK_SM_NR ? c->n_kv - j0 : RK_SM_NR;
                    int rc = rk__sm_pack_kv(c, s, &k, &v, j0, jn, k0, ts.kbuf, ck, cv, mx);
                    if (rc) {
                        #pragma omp atomic write
                        err = rc;
                    }
                    km = max_abs(km, mx[0]);
                    vm = max_abs(vm, mx[1]);
                }
                s->cmax[2 * u] = km;
                s->cmax[2 * u + 1] = vm;
                for (size_t h = hk * grp; h < (hk + 1) * grp; h++) {
                    size_t sl = b * H + h;
                    rk_mat q = rk_tensor_slice(Q, b, h);
                    float qm;
                    int rc = rk__sm_pack_q(c, s, &q, 0, c->n_q, cq, ts.q, &qm);
                    if (rc) {
                        #pragma omp atomic write
                        err = rc;
                    }
                    if (ch == 0) s->qmx[sl] = qm;
                    tile_f(c, s, &ts, ts.q, ck, cv, k0, 0, c->n_q, k0, k1, KVL(b));
                    chunk_store(s, &ts, sl, ch, c->n_q);
                }
            }
            // 3'. per head, the guard over all its chunks' magnitudes; a head that fails it
            //     goes row by row through the fallback (its partials unused, qmx marks it)
            #pragma omp for schedule(dynamic, 1) reduction(min: bad)
            for (size_t sl = 0; sl < nsl; sl++) {
                size_t b = sl / H, h = sl % H, ks = b * c->kv_heads + h / grp;
                float km = 0.0f, vm = 0.0f;
                for (size_t ch = 0; ch < nch; ch++) {
                    km = max_abs(km, s->cmax[2 * (ks * nch + ch)]);
                    vm = max_abs(vm, s->cmax[2 * (ks * nch + ch) + 1]);
                }
                if (fast_ok(c, cqd, s->qmx[sl], km, vm)) continue;
                size_t f = rows_fallback(c, s, Q, K, V, O, b, h, 0, c->n_q, KVL(b),
                                         saved ? saved + sl * c->n_q : NULL, sl, th);
                if (f && f - 1 < bad) bad = f - 1;
                s->qmx[sl] = NAN;
            }
            #pragma omp for schedule(static)
            for (size_t u = 0; u < nsl * c->n_q; u++) {
                size_t sl = u / c->n_q, r = u % c->n_q, b = sl / H, h = sl % H;
                if (isnan(s->qmx[sl])) continue;                /* done by the fallback */
                rk_mat out = rk_tensor_slice(O, b, h);
                chunk_merge(c, s, sl, r, KVL(b), out.data + r * out.ld,
                            saved ? saved + sl * c->n_q + r : NULL);
            }
        }
    }
#undef KVL
#undef KMAX
    /* rk_rope_apply cannot fail on the views validated here; if it did, the detail was
     * recorded on a worker thread, so name the failure again on the caller's. */
    if (err) RK_FAIL(err, "softmax: rk_rope_apply failed inside execute: %s", rk_strerror(err));
    if (bad != SIZE_MAX) {
        size_t row = bad / 4 % c->n_q, sl = bad / 4 / c->n_q;
        if (nsl > 1)
            return rk__fail(RK_ENONFINITE, "softmax: batch %zu, head %zu, row %zu: %s", sl / H,
                            sl % H, row, bad % 4 == 2 ? "its logits' log-sum-exp overflows float32 "
                            "(what the backward needs)" : "the output overflows float32");
        return row_overflow((int)(bad % 4), row, 1);
    }
    return RK_OK;
}

/* The matrix calls: a batch of one head. */
static rk_tensor as_tensor(const rk_mat *m)
{
    rk_tensor t = { m->data, 1, 1, m->rows, m->cols, 0, 0, m->ld };
    return t;
}

static int sm_exec_f(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v,
                     rk_mat *out, size_t kv_len)
{
    rk_tensor Q = as_tensor(q), K = as_tensor(k), V = as_tensor(v), O = as_tensor(out);
    return sm_batch_f(p, &Q, &K, &V, &O, &kv_len, NULL);
}

static int sm_fwd_f(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v, rk_mat *out,
                    size_t kv_len, float *saved)
{
    rk_tensor Q = as_tensor(q), K = as_tensor(k), V = as_tensor(v), O = as_tensor(out);
    return sm_batch_f(p, &Q, &K, &V, &O, &kv_len, saved);
}

/* ------------------------------------------------------------------------------------ */
/* float64 path                                                                         */
/* ------------------------------------------------------------------------------------ */

int rk__sm_rotate_d(const rk_attn_config *c, const sm_plan *s, const rk_matd *q,
                    const rk_matd *k, const double **qs, size_t *ldq, const double **ks,
                    size_t *ldk)
{
    *qs = q->data; *ldq = q->ld;
    *ks = k->data; *ldk = k->ld;
    if (!s->rope) return RK_OK;
    rk_matd qr = rk_matd_view(s->qd, c->n_q, c->d, c->d);
    rk_matd kr = rk_matd_view(s->kd, c->n_kv, c->d, c->d);
    int rc = rk_rope_apply_d(s->rope, q, &qr, rk__attn_qpos(c, 0), NULL, 0);
    if (!rc) rc = rk_rope_apply_d(s->rope, k, &kr, rk__attn_kpos(c, 0), NULL, 0);
    if (rc) return rc;
    if (s->lnz) {
        rk__sm_xpos_rows_d(s, s->qd, c->n_q, c->d, rk__attn_qpos(c, 0), 1.0);
        rk__sm_xpos_rows_d(s, s->kd, c->n_kv, c->d, rk__attn_kpos(c, 0), -1.0);
    }
    *qs = s->qd; *ldq = c->d;
    *ks = s->kd; *ldk = c->d;
    return RK_OK;
}

static int sm_run_d(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                    rk_matd *out, size_t kv_len, double *lse)
{
    const rk_attn_config *c = &p->cfg;
    const sm_plan *s = p->impl;
    row_src src = { NULL, NULL, NULL, NULL, NULL, v->data, 0, 0, v->ld, 0 };

    // 1. RoPE into the plan's copies
    int rc = rk__sm_rotate_d(c, s, q, k, &src.qd, &src.ldq, &src.kd, &src.ldk);
    if (rc) return rc;

    // 2. rows; causal rows differ in cost, so small dynamic chunks; the first failing row (in
    //    row order) is the one reported
    size_t bad = SIZE_MAX;               /* 4 row + why of the first failing row */
    #pragma omp parallel num_threads(c->nthreads)
    {
        double *w, *acc, *qb, *kb;
        slab_d_at(c, s, omp_get_thread_num(), &w, &acc, &qb, &kb);
        #pragma omp for schedule(dynamic, 16) reduction(min: bad)
        for (size_t i = 0; i < c->n_q; i++) {
            int r = row_safe(c, s, &src, i, rk__attn_visible(c, i, kv_len),
                             s->bd ? s->bd + (c->n_q - 1 - i) : NULL, NULL,
                             out->data + i * out->ld, lse ? lse + i : NULL, w, acc, qb, kb);
            if ((r == 1 || (r == 2 && lse)) && 4 * i + (size_t)r < bad) bad = 4 * i + (size_t)r;
        }
    }
    if (bad != SIZE_MAX) return row_overflow((int)(bad % 4), bad / 4, 0);
    return RK_OK;
}

static int sm_exec_d(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                     rk_matd *out, size_t kv_len)
{
    return sm_run_d(p, q, k, v, out, kv_len, NULL);
}

static int sm_fwd_d(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                    rk_matd *out, size_t kv_len, double *saved)
{
    return sm_run_d(p, q, k, v, out, kv_len, saved);
}

/* A training forward saves one log-sum-exp per query row. */
static size_t sm_saved_len(const rk_attn *p) { return p->cfg.n_q; }

const rk__attn_kind rk__softmax_kind = {
    .kind = RK_SOFTMAX, .name = "softmax",
    .fields = RK_FIELD_SCALE | RK_FIELD_ROPE_QK | RK_FIELD_BIAS | RK_FIELD_XPOS | RK_FIELD_ALIGN,
    .resolve = sm_resolve, .create = sm_create, .destroy = sm_destroy,
    .exec_f = sm_exec_f, .exec_d = sm_exec_d,
    .saved_len = sm_saved_len, .fwd_f = sm_fwd_f, .fwd_d = sm_fwd_d,
    .bwd_f = rk__sm_bwd_f, .bwd_d = rk__sm_bwd_d,
    .exec_batch_f = sm_batch_f, .bwd_batch_f = rk__sm_bwd_batch_f,
};
