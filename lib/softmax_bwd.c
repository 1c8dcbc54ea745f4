/* The backward of exact softmax attention (ropekit.h, "Gradients").
 *
 * With s_ij = scale q^_i . k^_j + b_ij (q^, k^ rotated and xPos-scaled), P_ij = exp(s_ij - lse_i)
 * over the keys row i sees, out_i = sum_j P_ij v_j, g_i = dout_i and D_i = g_i . out_i:
 *   dP_ij = g_i . v_j,   dS_ij = P_ij (dP_ij - D_i),
 *   dq^_i = scale sum_j dS_ij k^_j,   dk^_j = scale sum_i dS_ij q^_i,   dv_j = sum_i P_ij g_i,
 * then dq = R^T (f_q .* dq^), dk = R^T (f_k .* dk^) (rk_rope_backward, with the attention
 * factor; f the xPos factors of the forward). The bias is held fixed. lse_i is the row's
 * log-sum-exp saved by the training forward, so nothing n x n is kept anywhere.
 *
 * float32 path (flash attention 2's scheme on the forward's packed layouts and micro-kernels):
 * per query tile (BR rows) and key tile (BC keys), for each 6-row block, S = Q K^T (qk), dP =
 * dO V^T (qk on V in panels), P and dS (rows_bwd, exp2 of the log2-domain logits against the
 * saved log2-domain lse), dQ += dS K (pv); then per 6-key block dK += dS^T Q and dV += P^T dO
 * (tpv). Five products per tile pair against the forward's two. dQ belongs to the tile. dK and
 * dV are summed over every query tile, so for the same bits at any thread count the tiles are
 * split into a fixed number of groups (tile t in group t mod G, G set by the shapes alone:
 * at most RK_SM_BWD_GROUPS and RK_SM_BWD_BYTES of partials), each group accumulating its own
 * partial over its tiles in order, one thread per group at a time; the partials are then
 * added in group order. Masked pairs are never multiplied: rows_bwd writes exact zeros for
 * keys a row does not see, pv reads only the value rows a row sees, tpv only the query rows
 * that see a key, so a NaN or Inf in anything a pair must not see never reaches a gradient.
 *
 * float64 path (the reference): row by row for dq, key by key for dk and dv (every pair
 * recomputed from q, k and the saved lse), in double, in a fixed order.
 */
#include "softmax.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define round_up rk__sm_round_up
#define RK_LN2 0.69314718055994530942
#define RK_SM_BWD_GROUPS 32             /* at most this many dK, dV partials       */
#define RK_SM_BWD_BYTES  (32u << 20)    /* and at most this many bytes of them     */

/* Per-thread float scratch of the backward, carved from one slab (64-B aligned parts). */
typedef struct {
    float  *s;      /* (BR, BC) logits, then P                 */
    float  *dp;     /* (BR, BC) dout . v, then dS              */
    float  *qt;     /* (BR, dp) the tile's packed queries       */
    float  *dot;    /* (BR, dvp) the tile's dout, pad 0         */
    float  *dqt;    /* (BR, dp) dQ accumulator                  */
    float  *lse;    /* (BR)                                    */
    float  *dd;     /* (BR) dout_i . out_i                      */
    size_t *vis;    /* (BR) keys each row sees                  */
    size_t *rs;     /* (BC) first row that sees each key        */
    float  *kbuf;   /* (16, d) RoPE: one panel of rotated keys  */
    float  *qs;     /* (BR, d) the tile's packed queries, ld d (the qk kernel's operand) */
} bwd_scratch;

static size_t bwd_slab_layout(size_t d, size_t dp, size_t dvp, size_t part[11])
{
    part[0] = round_up(BR * BC * sizeof(float), 64);
    part[1] = part[0];
    part[2] = round_up(BR * dp * sizeof(float), 64);
    part[3] = round_up(BR * dvp * sizeof(float), 64);
    part[4] = part[2];
    part[5] = round_up(BR * sizeof(float), 64);
    part[6] = part[5];
    part[7] = round_up(BR * sizeof(size_t), 64);
    part[8] = round_up(BC * sizeof(size_t), 64);
    part[9] = round_up(RK_SM_NR * d * sizeof(float), 64);
    part[10] = round_up(BR * d * sizeof(float), 64);
    size_t t = 0;
    for (int i = 0; i < 11; i++) t += part[i];
    return t;
}

static bwd_scratch bwd_at(const rk_attn_config *c, const sm_plan *s, int t)
{
    size_t part[11];
    bwd_slab_layout(c->d, s->dp, s->dvp, part);
    unsigned char *b = s->slab_b + (size_t)t * s->slab_b_bytes;
    bwd_scratch x;
    x.s = (float *)b;      b += part[0];
    x.dp = (float *)b;     b += part[1];
    x.qt = (float *)b;     b += part[2];
    x.dot = (float *)b;    b += part[3];
    x.dqt = (float *)b;    b += part[4];
    x.lse = (float *)b;    b += part[5];
    x.dd = (float *)b;     b += part[6];
    x.vis = (size_t *)b;   b += part[7];
    x.rs = (size_t *)b;    b += part[8];
    x.kbuf = (float *)b;   b += part[9];
    x.qs = (float *)b;
    return x;
}

void rk__sm_bwd_layout(const rk_attn_config *c, sm_plan *s)
{
    size_t part[11];
    s->dp = round_up(c->d, RK_SM_NR);
    s->nkr = s->npan * RK_SM_NR;
    /* groups per key/value head: the tiles of its query heads (heads / kv_heads of them) */
    size_t per = s->nks * s->nkr * (s->dp + s->dvp) * sizeof(float), g = RK_SM_BWD_BYTES / per;
    size_t tiles = s->ntiles * (c->heads / c->kv_heads);
    if (g > RK_SM_BWD_GROUPS) g = RK_SM_BWD_GROUPS;
    if (g > tiles) g = tiles;
    s->ngroups = g ? g : 1;
    s->slab_b_bytes = bwd_slab_layout(c->d, s->dp, s->dvp, part);
    s->slab_bd_bytes = round_up((c->d + c->d_v) * sizeof(double), 64);
}

/* ------------------------------------------------------------------------------------ */
/* float32 path                                                                         */
/* ------------------------------------------------------------------------------------ */

/* One key/value head ks of the batch: its packed operands and partials. */
typedef struct {
    float *kt, *vp, *kp, *vt, *gk, *gv;     /* gk, gv: group 0's partial; group g at g nkr d */
} kv_ops;

static kv_ops kv_of(const rk_attn_config *c, const sm_plan *s, size_t ks)
{
    const size_t G = s->ngroups;
    kv_ops o;
    o.kt = s->kt + ks * s->npan * RK_SM_NR * c->d;
    o.vp = s->vp + ks * c->n_kv * s->dvp;
    o.kp = s->kp + ks * s->nkr * s->dp;
    o.vt = s->vt + ks * s->npan * s->dvp * RK_SM_NR;
    o.gk = s->gk + ks * G * s->nkr * s->dp;
    o.gv = s->gv + ks * G * s->nkr * s->dvp;
    return o;
}

/* Keys j0 .. j0 + jn - 1 into the forward's panels (kt, rotated) and, for the backward, the
 * row-major rotated keys kp and the values in panels vt. */
static int pack_kv_bwd(const rk_attn_config *c, const sm_plan *s, const rk_mat *k,
                       const rk_mat *v, size_t j0, size_t jn, float *kbuf, const kv_ops *o)
{
    int rc = rk__sm_pack_kv(c, s, k, v, j0, jn, 0, kbuf, o->kt, o->vp, NULL);
    if (rc) return rc;
    const size_t d = c->d, dp = s->dp, dvp = s->dvp;
    const float *kt_p = o->kt + j0 * d;
    for (size_t jj = 0; jj < jn; jj++) {
        float *kp_j = o->kp + (j0 + jj) * dp;
        for (size_t ch = 0; ch < d; ch++) kp_j[ch] = kt_p[ch * RK_SM_NR + jj];
    }
    float *vt_p = o->vt + j0 * dvp;                     /* panel j0/16: (dvp, 16) */
    for (size_t jj = 0; jj < jn; jj++)
        for (size_t ch = 0; ch < c->d_v; ch++)
            vt_p[ch * RK_SM_NR + jj] = v->data[(j0 + jj) * v->ld + ch];
    return RK_OK;
}

/* One query tile (rows i0 .. i0 + nr - 1 of one head, queries packed in x->qs) of group g: its
 * dq rows, and its share of the group's dK / dV partials of the key/value head. */
static int tile_bwd(const rk_attn_config *c, const sm_plan *s, const bwd_scratch *x,
                    const kv_ops *kv, size_t g, size_t i0, size_t nr, size_t kv_len,
                    const rk_mat *out, const float *lse, const rk_mat *dout, rk_mat *dq)
{
    const rk__sm_kernels *kern = s->kern;
    const size_t d = c->d, dp = s->dp, dvp = s->dvp, nrp = round_up(nr, RK_SM_MR);
    const float *qs = x->qs;
    float *gk = kv->gk + g * s->nkr * dp, *gv = kv->gv + g * s->nkr * dvp;
    static const float ones[RK_SM_MR] = { 1, 1, 1, 1, 1, 1 };

    // 1. the rows: keys seen, lse, D = dout . out, packed q and dout (pad rows and columns 0)
    size_t kmax = 0;
    for (size_t r = 0; r < nrp; r++) {
        int live = r < nr;
        x->vis[r] = live ? rk__attn_visible(c, i0 + r, kv_len) : 0;
        if (x->vis[r] > kmax) kmax = x->vis[r];
        x->lse[r] = live ? lse[i0 + r] : -INFINITY;
        float *qt_r = x->qt + r * dp, *do_r = x->dot + r * dvp;
        memset(qt_r, 0, dp * sizeof *qt_r);
        memset(do_r, 0, dvp * sizeof *do_r);
        double dd = 0.0;
        if (live) {
            memcpy(qt_r, qs + r * d, d * sizeof *qt_r);
            const float *g_r = dout->data + (i0 + r) * dout->ld, *o_r = out->data + (i0 + r) * out->ld;
            for (size_t ch = 0; ch < c->d_v; ch++) {
                do_r[ch] = g_r[ch];
                dd += (double)g_r[ch] * (double)o_r[ch];
            }
        } else {
            memset((float *)qs + r * d, 0, d * sizeof *qs);   /* pad rows of the last tile */
        }
        x->dd[r] = (float)dd;
    }
    memset(x->dqt, 0, nrp * dp * sizeof(float));

    // 2. key tiles
    for (size_t j0 = 0; j0 < kmax; j0 += BC) {
        const size_t nb = kmax - j0 < BC ? kmax - j0 : BC;
        // 2a. per 6-row block: S, dP, then P and dS, then dQ += dS K
        for (size_t r0 = 0; r0 < nrp; r0 += RK_SM_MR) {
            size_t nv[RK_SM_MR], nvb = 0;
            for (size_t r = 0; r < RK_SM_MR; r++) {
                size_t vr = x->vis[r0 + r];
                nv[r] = vr <= j0 ? 0 : (vr - j0 < nb ? vr - j0 : nb);
                if (nv[r] > nvb) nvb = nv[r];
            }
            if (nvb == 0) continue;                     /* no row of the block sees these */
            const size_t npan = (nvb + RK_SM_NR - 1) / RK_SM_NR, ncol = npan * RK_SM_NR;
            float *s_b = x->s + r0 * BC, *dp_b = x->dp + r0 * BC;
            kern->qk(qs + r0 * d, d, kv->kt + j0 * d, npan, s_b, BC);
            if (s->bl)
                for (size_t r = 0; r < RK_SM_MR; r++) {
                    if (nv[r] == 0) continue;
                    const float *b_r = s->bl + (c->n_q - 1 - (i0 + r0 + r)) + j0;
                    float *s_r = s_b + r * BC;
                    for (size_t jj = 0; jj < nv[r]; jj++) s_r[jj] += b_r[jj];
                }
            kern->qk(x->dot + r0 * dvp, dvp, kv->vt + j0 * dvp, npan, dp_b, BC);
            kern->rows_bwd(s_b, dp_b, BC, ncol, nv, x->lse + r0, x->dd + r0);
            kern->pv(dp_b, BC, kv->kp + j0 * dp, dp, nv, dp, ones, x->dqt + r0 * dp, dp);
        }
        // 2b. per 6-key block: dK += dS^T Q and dV += P^T dout over the rows that see each key
        //     (a suffix of the tile's rows: vis grows with the row)
        size_t r = 0;
        for (size_t jj = 0; jj < nb; jj++) {
            while (r < nr && x->vis[r] <= j0 + jj) r++;
            x->rs[jj] = r;
        }
        for (size_t kb = 0; kb < nb; kb += RK_SM_MR) {
            size_t nk = nb - kb < RK_SM_MR ? nb - kb : RK_SM_MR;
            kern->tpv(x->dp + kb, BC, x->qt, dp, nr, x->rs + kb, nk, dp,
                      gk + (j0 + kb) * dp, dp);
            kern->tpv(x->s + kb, BC, x->dot, dvp, nr, x->rs + kb, nk, dvp,
                      gv + (j0 + kb) * dvp, dvp);
        }
    }

    // 3. dq rows: dq^ = scale dQ, then xPos and the rotation's backward
    const float sc = (float)c->scale;
    for (size_t r = 0; r < nr; r++) {
        float *dq_r = dq->data + (i0 + r) * dq->ld;
        const float *a = x->dqt + r * dp;
        for (size_t ch = 0; ch < d; ch++) dq_r[ch] = sc * a[ch];
    }
    if (s->rope) {
        rk_mat rows = rk_mat_sub(*dq, i0, 0, nr, d);
        if (s->lnz) rk__sm_xpos_rows_f(s, rows.data, nr, rows.ld, rk__attn_qpos(c, i0), 1.0);
        return rk_rope_backward(s->rope, &rows, &rows, rk__attn_qpos(c, i0), NULL);
    }
    return RK_OK;
}

int rk__sm_bwd_batch_f(rk_attn *p, const rk_tensor *Q, const rk_tensor *K, const rk_tensor *V,
                       const rk_tensor *O, const float *saved, const rk_tensor *dO,
                       rk_tensor *dQ, rk_tensor *dK, rk_tensor *dV, const size_t *kv_lens)
{
    const rk_attn_config *c = &p->cfg;
    const sm_plan *s = p->impl;
    const float cq = (float)(c->scale * RK_LOG2E);
    const size_t ntiles = s->ntiles, G = s->ngroups, npan = s->npan;
    const size_t dp = s->dp, dvp = s->dvp, nkr = s->nkr, nks = s->nks;
    const size_t H = c->heads, Hk = c->kv_heads, grp = H / Hk, tiles = grp * ntiles;
    int err = RK_OK;
#define KVL(b) (kv_lens ? kv_lens[b] : c->n_kv)

    #pragma omp parallel num_threads(c->nthreads)
    {
        bwd_scratch x = bwd_at(c, s, omp_get_thread_num());

        // 1. keys and values of every key/value head packed (forward panels, row-major keys,
        //    value panels); the partials cleared
        #pragma omp for schedule(static)
        for (size_t u = 0; u < nks * npan; u++) {
            size_t ks = u / npan, pn = u % npan, b = ks / Hk, j0 = pn * RK_SM_NR;
            if (j0 >= rk__attn_visible(c, c->n_q - 1, KVL(b))) continue;
            size_t jn = c->n_kv - j0 < RK_SM_NR ? c->n_kv - j0 : RK_SM_NR;
            rk_mat k = rk_tensor_slice(K, b, ks % Hk), v = rk_tensor_slice(V, b, ks % Hk);
            kv_ops o = kv_of(c, s, ks);
            int rc = pack_kv_bwd(c, s, &k, &v, j0, jn, x.kbuf, &o);
            if (rc) {
                #pragma omp atomic write
                err = rc;
            }
        }
        #pragma omp for schedule(static)
        for (size_t u = 0; u < nks * G; u++) {
            kv_ops o = kv_of(c, s, u / G);
            size_t g = u % G;
            memset(o.gk + g * nkr * dp, 0, nkr * dp * sizeof(float));
            memset(o.gv + g * nkr * dvp, 0, nkr * dvp * sizeof(float));
        }

        // 2. (key/value head, group) tasks: a group is the tiles t' = g, g + G, ... of the
        //    head's query heads in order (t' = (h - first head) ntiles + tile); heaviest last
        #pragma omp for schedule(dynamic, 1)
        for (size_t u = 0; u < nks * G; u++) {
            size_t ks = u % nks, g = G - 1 - u / nks, b = ks / Hk;
            kv_ops o = kv_of(c, s, ks);
            for (size_t tt = g; tt < tiles; tt += G) {
                size_t h = (ks % Hk) * grp + tt / ntiles, t = tt % ntiles, sl = b * H + h;
                size_t i0 = t * BR, nr = c->n_q - i0 < BR ? c->n_q - i0 : BR;
                rk_mat q = rk_tensor_slice(Q, b, h), out = rk_tensor_slice(O, b, h);
                rk_mat dout = rk_tensor_slice(dO, b, h), dq = rk_tensor_slice(dQ, b, h);
                int rc = rk__sm_pack_q(c, s, &q, i0, nr, cq, x.qs, NULL);
                if (!rc) rc = tile_bwd(c, s, &x, &o, g, i0, nr, KVL(b), &out,
                                       saved + sl * c->n_q, &dout, &dq);
                if (rc) {
                    #pragma omp atomic write
                    err = rc;
                }
            }
        }

        // 3. dk, dv: the partials added in group order (keys no row sees stay 0)
        const float ln2 = (float)RK_LN2;
        #pragma omp for schedule(static)
        for (size_t u = 0; u < nks * c->n_kv; u++) {
            size_t ks = u / c->n_kv, j = u % c->n_kv;
            kv_ops o = kv_of(c, s, ks);
            rk_mat dk = rk_tensor_slice(dK, ks / Hk, ks % Hk), dv = rk_tensor_slice(dV, ks / Hk, ks % Hk);
            float *dk_j = dk.data + j * dk.ld, *dv_j = dv.data + j * dv.ld;
            for (size_t ch = 0; ch < c->d; ch++) {
                float a = 0.0f;
                for (size_t g = 0; g < G; g++) a += o.gk[(g * nkr + j) * dp + ch];
                dk_j[ch] = ln2 * a;            /* the partials summed dS^T (scale log2e q^) */
            }
            for (size_t ch = 0; ch < c->d_v; ch++) {
                float a = 0.0f;
                for (size_t g = 0; g < G; g++) a += o.gv[(g * nkr + j) * dvp + ch];
                dv_j[ch] = a;
            }
        }

        // 4. dk through xPos and the rotation, one key/value head at a time
        if (s->rope) {
            #pragma omp for schedule(static)
            for (size_t ks = 0; ks < nks; ks++) {
                rk_mat dk = rk_tensor_slice(dK, ks / Hk, ks % Hk);
                if (s->lnz) rk__sm_xpos_rows_f(s, dk.data, c->n_kv, dk.ld, rk__attn_kpos(c, 0), -1.0);
                int rc = rk_rope_backward(s->rope, &dk, &dk, rk__attn_kpos(c, 0), NULL);
                if (rc) {
                    #pragma omp atomic write
                    err = rc;
                }
            }
        }
    }
#undef KVL
    if (err) RK_FAIL(err, "softmax backward: the rotation failed: %s", rk_strerror(err));
    return RK_OK;
}

int rk__sm_bwd_f(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v,
                 const rk_mat *out, const float *saved, const rk_mat *dout, rk_mat *dq,
                 rk_mat *dk, rk_mat *dv, size_t kv_len)
{
#define T1(m) { (m)->data, 1, 1, (m)->rows, (m)->cols, 0, 0, (m)->ld }
    rk_tensor Q = T1(q), K = T1(k), V = T1(v), O = T1(out), G = T1(dout);
    rk_tensor DQ = T1(dq), DK = T1(dk), DV = T1(dv);
#undef T1
    return rk__sm_bwd_batch_f(p, &Q, &K, &V, &O, saved, &G, &DQ, &DK, &DV, &kv_len);
}

/* ------------------------------------------------------------------------------------ */
/* float64 path                                                                         */
/* ------------------------------------------------------------------------------------ */

/* P_ij and dS_ij of one visible pair (bias row b_i: b_i[j], or NULL). */
static inline void pair_d(const rk_attn_config *c, const double *q_i, const double *k_j,
                          const double *g_i, const double *v_j, const double *b_i, size_t j,
                          double lse_i, double dd_i, double *p, double *ds)
{
    double dot = 0.0, dpv = 0.0;
    for (size_t ch = 0; ch < c->d; ch++) dot += q_i[ch] * k_j[ch];
    for (size_t ch = 0; ch < c->d_v; ch++) dpv += g_i[ch] * v_j[ch];
    double sij = c->scale * dot + (b_i ? b_i[j] : 0.0);
    *p = exp(sij - lse_i);
    *ds = *p * (dpv - dd_i);
}

int rk__sm_bwd_d(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                 const rk_matd *out, const double *saved, const rk_matd *dout, rk_matd *dq,
                 rk_matd *dk, rk_matd *dv, size_t kv_len)
{
    const rk_attn_config *c = &p->cfg;
    const sm_plan *s = p->impl;
    const size_t d = c->d, dvw = c->d_v, nq = c->n_q;
    const double *qs, *ks;
    size_t ldq, ldk;
    int rc = rk__sm_rotate_d(c, s, q, k, &qs, &ldq, &ks, &ldk);
    if (rc) return rc;

    #pragma omp parallel num_threads(c->nthreads)
    {
        double *acc = (double *)(s->slab_bd + (size_t)omp_get_thread_num() * s->slab_bd_bytes);
        double *acc2 = acc + d;

        // 1. D_i = dout_i . out_i
        #pragma omp for schedule(static)
        for (size_t i = 0; i < nq; i++) {
            double a = 0.0;
            for (size_t ch = 0; ch < dvw; ch++)
                a += dout->data[i * dout->ld + ch] * out->data[i * out->ld + ch];
            s->dd[i] = a;
        }

        // 2. dq^_i = scale sum_j dS_ij k^_j over the keys row i sees
        #pragma omp for schedule(dynamic, 16)
        for (size_t i = 0; i < nq; i++) {
            size_t vis = saved[i] == -INFINITY ? 0 : rk__attn_visible(c, i, kv_len);
            const double *b_i = s->bd ? s->bd + (nq - 1 - i) : NULL;
            for (size_t ch = 0; ch < d; ch++) acc[ch] = 0.0;
            for (size_t j = 0; j < vis; j++) {
                double pij, ds;
                pair_d(c, qs + i * ldq, ks + j * ldk, dout->data + i * dout->ld,
                       v->data + j * v->ld, b_i, j, saved[i], s->dd[i], &pij, &ds);
                for (size_t ch = 0; ch < d; ch++) acc[ch] += ds * ks[j * ldk + ch];
            }
            for (size_t ch = 0; ch < d; ch++) dq->data[i * dq->ld + ch] = c->scale * acc[ch];
        }

        // 3. dk^_j = scale sum_i dS_ij q^_i and dv_j = sum_i P_ij dout_i over the rows that see
        //    key j (a suffix: visibility grows with the row)
        #pragma omp for schedule(dynamic, 16)
        for (size_t j = 0; j < c->n_kv; j++) {
            for (size_t ch = 0; ch < d; ch++) acc[ch] = 0.0;
            for (size_t ch = 0; ch < dvw; ch++) acc2[ch] = 0.0;
            for (size_t i = 0; i < nq; i++) {
                if (saved[i] == -INFINITY || rk__attn_visible(c, i, kv_len) <= j) continue;
                double pij, ds;
                const double *g_i = dout->data + i * dout->ld;
                pair_d(c, qs + i * ldq, ks + j * ldk, g_i, v->data + j * v->ld,
                       s->bd ? s->bd + (nq - 1 - i) : NULL, j, saved[i], s->dd[i], &pij, &ds);
                for (size_t ch = 0; ch < d; ch++) acc[ch] += ds * qs[i * ldq + ch];
                for (size_t ch = 0; ch < dvw; ch++) acc2[ch] += pij * g_i[ch];
            }
            for (size_t ch = 0; ch < d; ch++) dk->data[j * dk->ld + ch] = c->scale * acc[ch];
            for (size_t ch = 0; ch < dvw; ch++) dv->data[j * dv->ld + ch] = acc2[ch];
        }
    }
    if (s->rope) {
        if (s->lnz) {
            rk__sm_xpos_rows_d(s, dq->data, nq, dq->ld, rk__attn_qpos(c, 0), 1.0);
            rk__sm_xpos_rows_d(s, dk->data, c->n_kv, dk->ld, rk__attn_kpos(c, 0), -1.0);
        }
        if ((rc = rk_rope_backward_d(s->rope, dq, dq, rk__attn_qpos(c, 0), NULL)) ||
            (rc = rk_rope_backward_d(s->rope, dk, dk, rk__attn_kpos(c, 0), NULL)))
            return rc;
    }
    return RK_OK;
}
