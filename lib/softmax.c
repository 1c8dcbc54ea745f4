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

/* ------------------------------------------------------------------------------------ */
/* Create / destroy                                                                     */
/* ------------------------------------------------------------------------------------ */

static void sm_destroy(void *impl)
{
    sm_plan *s = impl;
    if (!s) return;
    rk_rope_destroy(s->rope);
    rk__free(s->kt);
    rk__free(s->pm);
    rk__free(s->po);
    rk__free(s->pl);
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

/* Every position must be representable: pos_offset + (n_kv - n_q) .. pos_offset + n_kv - 1. */
static int check_positions(const rk_attn_config *c)
{
    if (c->pos_offset > INT64_MAX - (int64_t)c->n_kv || c->pos_offset < INT64_MIN + (int64_t)c->n_q)
        RK_FAIL(RK_EOVERFLOW, "softmax: pos_offset = %lld overflows the positions",
                (long long)c->pos_offset);
    return RK_OK;
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
    int64_t max_pos = c->pos_offset + (int64_t)c->n_kv - 1;   /* last key and last query */
    size_t limit = ROPE_TABLE_BYTES / (12 * c->d);
    if (limit < 4096) limit = 4096;
    if (rc.table_len == 0 && max_pos >= 0 && (uint64_t)max_pos < limit)
        rc.table_len = (size_t)max_pos + 1;
    return rk_rope_create(&s->rope, &rc);
}

/* The positions xPos uses: keys pos_offset .. pos_offset + n_kv - 1, queries from
 * pos_offset + n_kv - n_q (below the first key when n_q > n_kv); c is their middle. */
static void xpos_span(const rk_attn_config *c, double *lo, double *hi)
{
    *hi = (double)c->pos_offset + (double)c->n_kv - 1.0;
    *lo = (double)c->pos_offset + (c->n_kv >= c->n_q ? 0.0 : (double)c->n_kv - (double)c->n_q);
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
    s->dvp = round_up(c->d_v, RK_SM_NR);
    s->ntiles = (c->n_q + BR - 1) / BR;
    s->npan = (c->n_kv + RK_SM_NR - 1) / RK_SM_NR;
    size_t nth = (size_t)c->nthreads, part[8];
    s->nks = c->batch * c->kv_heads;
    s->slab_f_bytes = slab_f_layout(c->d, s->dvp, part);
    s->slab_d_bytes = round_up(c->n_kv * sizeof(double), 64) + round_up(c->d_v * sizeof(double), 64);
    /* decoding shapes: one query tile against at least two chunks of keys (d_v <= 1024, the
     * merge's row buffer) */
    if (s->ntiles == 1 && c->n_kv >= 2 * RK_SM_KVCHUNK && c->d_v <= RK_SM_NR * 64) {
        s->nchunks = (c->n_kv + RK_SM_KVCHUNK - 1) / RK_SM_KVCHUNK;
        s->prow = c->n_q;
        size_t nsl = c->batch * c->heads * s->nchunks * s->prow;
        if (!(s->pm = TAKE(p, &rc, nsl, 1, sizeof(float), "decoding partials")) ||
            !(s->pl = TAKE(p, &rc, nsl, 1, sizeof(double), "decoding partials")) ||
            !(s->po = TAKE(p, &rc, nsl, s->dvp, sizeof(float), "decoding partials")))
            return rc;
    }
    if (!(s->kt = TAKE(p, &rc, s->nks * s->npan * RK_SM_NR, c->d, sizeof(float), "keys")) ||
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
/* float32 path                                                                         */
/* ------------------------------------------------------------------------------------ */

/* Rows i0 .. i0 + nr - 1 of q into dst (nr, d), rotated (RoPE) and multiplied by
 * cq = scale log2(e). Returns the RoPE status (RK_OK unless the rope plan refuses). */
int rk__sm_pack_q(const rk_attn_config *c, const sm_plan *s, const rk_mat *q, size_t i0,
                  size_t nr, float cq, float *dst)
{
    const size_t d = c->d;
    if (s->rope) {
        rk_mat src = rk_mat_sub(*q, i0, 0, nr, d), to = rk_mat_view(dst, nr, d, d);
        int rc = rk_rope_apply(s->rope, &src, &to, rk__attn_qpos(c, i0), NULL, 0);
        if (rc) return rc;
        if (s->lnz) rk__sm_xpos_rows_f(s, dst, nr, d, rk__attn_qpos(c, i0), 1.0);
        for (size_t t = 0; t < nr * d; t++) dst[t] *= cq;
        return RK_OK;
    }
    for (size_t r = 0; r < nr; r++) {
        const float *q_i = q->data + (i0 + r) * q->ld;
        for (size_t j = 0; j < d; j++) dst[r * d + j] = cq * q_i[j];
    }
    return RK_OK;
}

/* Keys j0 .. j0 + jn - 1 (jn <= 16) into panel j0 / 16 of kt (the key/value head's panels),
 * rotated through kbuf (16, d) when RoPE is on; the matching value rows into vp. */
int rk__sm_pack_kv(const rk_attn_config *c, const sm_plan *s, const rk_mat *k, const rk_mat *v,
                   size_t j0, size_t jn, float *kbuf, float *kt, float *vp)
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
    float *kt_p = kt + j0 * d;                         /* panel j0/16 starts at 16 d (j0/16) */
    for (size_t jj = 0; jj < jn; jj++)
        for (size_t ch = 0; ch < d; ch++) kt_p[ch * RK_SM_NR + jj] = k_src[jj * ldk + ch];
    for (size_t jj = 0; jj < jn; jj++)
        memcpy(vp + (j0 + jj) * s->dvp, v->data + (j0 + jj) * v->ld, c->d_v * sizeof(float));
    return RK_OK;
}

/* One query tile: rows i0 .. i0 + nr - 1 (packed in qs) against the key tiles of [k0, k1)
 * they can see (k0 a multiple of BC), leaving the running max m, sum l and accumulator o in
 * ts. kt and vp are the key/value head's packed keys and values. */
static void tile_f(const rk_attn_config *c, const sm_plan *s, const tile_scratch *ts,
                   const float *qs, const float *kt, const float *vp, size_t i0, size_t nr,
                   size_t k0, size_t k1, size_t kv_len)
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
            kern->qk(qs + r0 * d, d, kt + j0 * d, npan, s_b, BC);
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
            kern->pv(s_b, BC, vp + j0 * dvp, dvp, nv, dvp, ts->alpha + r0, ts->o + r0 * dvp,
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

/* The whole float32 forward of a batch of heads: keys and values of every key/value head
 * packed once (in panels of 16, rotated), then the (head, query tile) tasks, heaviest tiles
 * first across all heads (dynamic: causal tiles differ in cost), each packing its own queries;
 * or, for decoding shapes (one query tile, long keys: s->nchunks > 0), the (head, key chunk)
 * tasks and a merge. saved: NULL, or batch x heads x n_q log-sum-exps (training forward). */
static int sm_batch_f(rk_attn *p, const rk_tensor *Q, const rk_tensor *K, const rk_tensor *V,
                      rk_tensor *O, const size_t *kv_lens, float *saved)
{
    const rk_attn_config *c = &p->cfg;
    const sm_plan *s = p->impl;
    const float cq = (float)(c->scale * RK_LOG2E);
    const size_t H = c->heads, grp = c->heads / c->kv_heads, nsl = c->batch * H;
    const size_t nks = c->batch * c->kv_heads, npan = s->npan, ntiles = s->ntiles;
    int err = RK_OK;
#define KVL(b) (kv_lens ? kv_lens[b] : c->n_kv)

    #pragma omp parallel num_threads(c->nthreads)
    {
        tile_scratch ts = slab_f_at(s, c->d, omp_get_thread_num());

        // 1. keys (rotated) in panels of 16, values padded to dvp, every key/value head; only
        //    the keys some row of the entry sees
        #pragma omp for schedule(static)
        for (size_t u = 0; u < nks * npan; u++) {
            size_t ks = u / npan, pn = u % npan, b = ks / c->kv_heads;
            size_t kmax = rk__attn_visible(c, c->n_q - 1, KVL(b)), j0 = pn * RK_SM_NR;
            if (j0 >= kmax) continue;
            size_t jn = c->n_kv - j0 < RK_SM_NR ? c->n_kv - j0 : RK_SM_NR;
            rk_mat k = rk_tensor_slice(K, b, ks % c->kv_heads), v = rk_tensor_slice(V, b, ks % c->kv_heads);
            int rc = rk__sm_pack_kv(c, s, &k, &v, j0, jn, ts.kbuf, kt_of(s, c, ks), vp_of(s, c, ks));
            if (rc) {
                #pragma omp atomic write
                err = rc;
            }
        }

        if (!s->nchunks) {
            // 2. (head, query tile) tasks, the last (heaviest) tiles of every head first
            #pragma omp for schedule(dynamic, 1)
            for (size_t u = 0; u < nsl * ntiles; u++) {
                size_t sl = u % nsl, t = ntiles - 1 - u / nsl, b = sl / H, h = sl % H;
                size_t ks = b * c->kv_heads + h / grp;
                size_t i0 = t * BR, nr = c->n_q - i0 < BR ? c->n_q - i0 : BR;
                rk_mat q = rk_tensor_slice(Q, b, h), out = rk_tensor_slice(O, b, h);
                int rc = rk__sm_pack_q(c, s, &q, i0, nr, cq, ts.q);
                if (rc) {
                    #pragma omp atomic write
                    err = rc;
                }
                tile_f(c, s, &ts, ts.q, kt_of(s, c, ks), vp_of(s, c, ks), i0, nr, 0, c->n_kv,
                       KVL(b));
                tile_finish(c, s, &ts, i0, nr, KVL(b), &out, saved ? saved + sl * c->n_q : NULL);
            }
        } else {
            // 2'. decoding: (head, key chunk) tasks into partials, then one merge per row
            const size_t nch = s->nchunks, kc = RK_SM_KVCHUNK;
            #pragma omp for schedule(dynamic, 1)
            for (size_t u = 0; u < nsl * nch; u++) {
                size_t sl = u / nch, ch = u % nch, b = sl / H, h = sl % H;
                size_t ks = b * c->kv_heads + h / grp, k0 = ch * kc;
                size_t k1 = k0 + kc < c->n_kv ? k0 + kc : c->n_kv;
                rk_mat q = rk_tensor_slice(Q, b, h);
                int rc = rk__sm_pack_q(c, s, &q, 0, c->n_q, cq, ts.q);
                if (rc) {
                    #pragma omp atomic write
                    err = rc;
                }
                tile_f(c, s, &ts, ts.q, kt_of(s, c, ks), vp_of(s, c, ks), 0, c->n_q, k0, k1,
                       KVL(b));
                chunk_store(s, &ts, sl, ch, c->n_q);
            }
            #pragma omp for schedule(static)
            for (size_t u = 0; u < nsl * c->n_q; u++) {
                size_t sl = u / c->n_q, r = u % c->n_q, b = sl / H, h = sl % H;
                rk_mat out = rk_tensor_slice(O, b, h);
                chunk_merge(c, s, sl, r, KVL(b), out.data + r * out.ld,
                            saved ? saved + sl * c->n_q + r : NULL);
            }
        }
    }
#undef KVL
    /* rk_rope_apply cannot fail on the views validated here; if it did, the detail was
     * recorded on a worker thread, so name the failure again on the caller's. */
    if (err) RK_FAIL(err, "softmax: rk_rope_apply failed inside execute: %s", rk_strerror(err));
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

/* One query row i. q_i (d), k (n_kv, d) ld ldk, v (n_kv, d_v) ld ldv; b_i: the row's bias
 * (b_i[j] for key j) or NULL; w (n_kv) and acc (d_v) are the thread's scratch. */
static void row_d(const rk_attn_config *c, const double *q_i, const double *k, size_t ldk,
                  const rk_matd *v, const double *b_i, double *out_i, size_t nv, double *w,
                  double *acc, double *lse_i)
{
    const size_t d = c->d, dv = c->d_v;
    if (lse_i) *lse_i = -INFINITY;                      /* until a weight is seen */
    if (nv == 0) {                                      /* sees no key: zero row */
        for (size_t j = 0; j < dv; j++) out_i[j] = 0.0;
        return;
    }
    // 1. logits and their max
    double mx = -INFINITY;
    for (size_t j = 0; j < nv; j++) {
        const double *k_j = k + j * ldk;
        double dot = 0.0;
        for (size_t ch = 0; ch < d; ch++) dot += q_i[ch] * k_j[ch];
        w[j] = c->scale * dot;
        if (b_i) w[j] += b_i[j];
        if (w[j] > mx) mx = w[j];
    }
    if (b_i && mx == -INFINITY) {                       /* every key masked by the bias */
        for (size_t j = 0; j < dv; j++) out_i[j] = 0.0;
        return;
    }
    // 2. exp and sum (shifted by the max: no overflow)
    double sum = 0.0;
    for (size_t j = 0; j < nv; j++) {
        w[j] = exp(w[j] - mx);
        sum += w[j];
    }
    // 3. weighted sum of the values
    for (size_t ch = 0; ch < dv; ch++) acc[ch] = 0.0;
    for (size_t j = 0; j < nv; j++) {
        const double *v_j = v->data + j * v->ld;
        for (size_t ch = 0; ch < dv; ch++) acc[ch] += w[j] * v_j[ch];
    }
    // 4. normalise (sum >= 1 unless a logit was NaN/inf); a training forward saves the
    //    row's log-sum-exp
    for (size_t ch = 0; ch < dv; ch++) out_i[ch] = acc[ch] / sum;
    if (lse_i) *lse_i = mx + log(sum);
}

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
    const double *q_src, *k_src;
    size_t ldq, ldk;

    // 1. RoPE into the plan's copies
    int rc = rk__sm_rotate_d(c, s, q, k, &q_src, &ldq, &k_src, &ldk);
    if (rc) return rc;

    // 2. rows; causal rows differ in cost, so small dynamic chunks
    #pragma omp parallel num_threads(c->nthreads)
    {
        unsigned char *slab = s->slab_d + (size_t)omp_get_thread_num() * s->slab_d_bytes;
        double *w = (double *)slab;
        double *acc = (double *)(slab + round_up(c->n_kv * sizeof(double), 64));
        #pragma omp for schedule(dynamic, 16)
        for (size_t i = 0; i < c->n_q; i++)
            row_d(c, q_src + i * ldq, k_src, ldk, v, s->bd ? s->bd + (c->n_q - 1 - i) : NULL,
                  out->data + i * out->ld, rk__attn_visible(c, i, kv_len), w, acc,
                  lse ? lse + i : NULL);
    }
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
    .fields = RK_FIELD_SCALE | RK_FIELD_ROPE_QK | RK_FIELD_BIAS | RK_FIELD_XPOS,
    .resolve = sm_resolve, .create = sm_create, .destroy = sm_destroy,
    .exec_f = sm_exec_f, .exec_d = sm_exec_d,
    .saved_len = sm_saved_len, .fwd_f = sm_fwd_f, .fwd_d = sm_fwd_d,
    .bwd_f = rk__sm_bwd_f, .bwd_d = rk__sm_bwd_d,
    .exec_batch_f = sm_batch_f, .bwd_batch_f = rk__sm_bwd_batch_f,
};
