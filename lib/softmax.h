/* Exact softmax attention, shared by lib/softmax.c (plan, forward) and lib/softmax_bwd.c
 * (backward): the plan and the packing helpers. Internal to the softmax files (like
 * softmax_kern.h). */
#ifndef RK_SOFTMAX_H
#define RK_SOFTMAX_H

#include "attn_impl.h"
#include "softmax_kern.h"

#define BR 48                       /* query rows per tile (a multiple of RK_SM_MR)  */
#define BC 64                       /* keys per tile (a multiple of RK_SM_NR)        */
/* Split-KV decoding: keys per chunk (a multiple of BC), used when a head has one query tile
 * and at least 2 chunks of keys; a property of the shapes, never of the thread count. */
#define RK_SM_KVCHUNK 1024
#define RK_LOG2E 1.44269504088896340736
#define ROPE_TABLE_BYTES (8u << 20) /* RoPE table size that is still "modest"       */

_Static_assert(BR % RK_SM_MR == 0, "BR must be a multiple of the micro-kernel rows");
_Static_assert(BC % RK_SM_NR == 0, "BC must be a multiple of the key panel width");

typedef struct {
    const rk__sm_kernels *kern;
    rk_rope *rope;                  /* RK_ROPE_QK only                                    */
    size_t   dvp;                   /* d_v rounded up to RK_SM_NR                         */
    size_t   ntiles;                /* query tiles of BR rows                             */
    size_t   npan;                  /* key panels of RK_SM_NR keys                        */
    size_t   nks;                   /* key/value heads of a batch: batch x kv_heads        */
    float   *kt;                    /* (nks, npan, d, 16) packed keys, pad keys 0         */
    float   *vp;                    /* (nks, n_kv, dvp) packed values, pad columns 0      */
    /* Split-KV decoding (one query tile, long keys): key chunks of RK_SM_KVCHUNK as tasks,
     * their partials merged by log-sum-exp; nchunks 0: off. */
    size_t   nchunks, prow;         /* chunks per head; rows per partial (n_q)            */
    float   *pm, *po;               /* (heads, nchunks, prow) max; (..., dvp) accumulator */
    double  *pl;                    /* (heads, nchunks, prow) sums                        */
    /* Each (key/value head, chunk) task packs its keys and values into its thread's chunk
     * buffers, so K and V stream from memory once (never through the plan's kt / vp); the
     * guard is decided per head after the chunks, from their magnitudes. */
    float   *ck, *cv;               /* per thread: (RK_SM_KVCHUNK d), (RK_SM_KVCHUNK dvp) */
    float   *cmax;                  /* (nks, nchunks, 2) largest |k^|, |v| of each chunk   */
    float   *qmx;                   /* (batch heads) largest |q^| of each head            */
    /* Magnitudes seen while packing (the float path's overflow guard): per key/value head and
     * panel, the largest |k^| and |v| (kvmax[2 (ks npan + pn) + 0 / 1]). */
    float   *kvmax;
    double  *qd, *kd;               /* RoPE: (n_q, d), (n_kv, d) rotated, float64 path    */
    double  *bd;                    /* bias: (n_q + n_kv - 1) values as given             */
    float   *bl;                    /* bias: the same times log2(e), float (logit domain)  */
    double  *lnz;                   /* xPos: (xr / 2) ln zeta_i; NULL when off            */
    size_t   xr;                    /* xPos: rotated width r                              */
    int      xhalf;                 /* xPos: pairs (i, i + r/2) instead of (2i, 2i + 1)   */
    double   xc, xb;                /* xPos: centre position c and scale base B           */
    unsigned char *slab_f, *slab_d; /* per-thread scratch of each path                    */
    size_t   slab_f_bytes, slab_d_bytes;
    /* Backward (lib/softmax_bwd.c), allocated at create like everything else. */
    size_t   dp;                    /* d rounded up to RK_SM_NR                           */
    size_t   ngroups;               /* groups of query tiles, each with its dK, dV partial */
    size_t   nkr;                   /* rows of one partial (npan 16)                      */
    float   *kp;                    /* (nkr, dp) rotated keys, row-major, pad 0           */
    float   *vt;                    /* (npan, dvp, 16) values in panels, pad 0            */
    float   *gk, *gv;               /* (ngroups, nkr, dp), (ngroups, nkr, dvp) partials   */
    double  *dd;                    /* (n_q) dout_i . out_i of the float64 backward       */
    unsigned char *slab_b, *slab_bd;/* per-thread backward scratch, float and double      */
    size_t   slab_b_bytes, slab_bd_bytes;
} sm_plan;

static inline size_t rk__sm_round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

/* xPos: rows t < nr of x (ld ldx, rotated) at positions pos0 + t, pair i times
 * zeta_i^(sign (pos - c) / B) (sign +1 queries, -1 keys). */
void rk__sm_xpos_rows_f(const sm_plan *s, float *x, size_t nr, size_t ldx, int64_t pos0,
                        double sign);
void rk__sm_xpos_rows_d(const sm_plan *s, double *x, size_t nr, size_t ldx, int64_t pos0,
                        double sign);
/* Rows i0 .. i0 + nr - 1 of q into dst (rotated, xPos, times cq); *qmax (if not NULL) the
 * largest |value| before the times cq (fmaxf: a NaN does not count). */
int rk__sm_pack_q(const rk_attn_config *c, const sm_plan *s, const rk_mat *q, size_t i0,
                  size_t nr, float cq, float *dst, float *qmax);
/* Keys j0 .. j0 + jn - 1 (jn <= 16) into panel (j0 - base) / 16 of kt (through kbuf (16, d)
 * when rotated) and the value rows into vp from row j0 - base (one key/value head's, or one
 * decoding chunk's from key base on). */
int rk__sm_pack_kv(const rk_attn_config *c, const sm_plan *s, const rk_mat *k, const rk_mat *v,
                   size_t j0, size_t jn, size_t base, float *kbuf, float *kt, float *vp,
                   float *kvmax);
/* float64 path: q and k rotated (and xPos-scaled) into the plan's copies, or the inputs as
 * they are; *qs, *ks and their leading dimensions. */
int rk__sm_rotate_d(const rk_attn_config *c, const sm_plan *s, const rk_matd *q,
                    const rk_matd *k, const double **qs, size_t *ldq, const double **ks,
                    size_t *ldk);

/* lib/softmax_bwd.c: the backward's layout and the two paths. */
void rk__sm_bwd_layout(const rk_attn_config *c, sm_plan *s);
int rk__sm_bwd_f(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v,
                 const rk_mat *out, const float *saved, const rk_mat *dout, rk_mat *dq,
                 rk_mat *dk, rk_mat *dv, size_t kv_len);
int rk__sm_bwd_batch_f(rk_attn *p, const rk_tensor *q, const rk_tensor *k, const rk_tensor *v,
                       const rk_tensor *out, const float *saved, const rk_tensor *dout,
                       rk_tensor *dq, rk_tensor *dk, rk_tensor *dv, const size_t *kv_len);
int rk__sm_bwd_d(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                 const rk_matd *out, const double *saved, const rk_matd *dout, rk_matd *dq,
                 rk_matd *dk, rk_matd *dv, size_t kv_len);

#endif
