/* The generic attention plan (lib/attn.c) and the description each kind gives of itself.
 *
 * A kind is one file (lib/softmax.c, performer.c, rpe_fft.c, uniform.c ...) that defines one
 * rk__attn_kind named rk__<name>_kind, one entry in attn.c's RK_KINDS list and one rk_kind
 * value in ropekit.h. The description says everything the rest of
 * the library and the command line need to know about the kind:
 *   - its name and the config field groups it reads (RK_FIELD_*): attn.c refuses any other
 *     field that is set, naming the field and the kind, so no kind repeats those checks;
 *   - resolve: its defaults and its own validation, without allocating (rk_attn_resolve);
 *   - create / destroy / execute: the work, on a config already resolved and views already
 *     checked (attn.c checks shapes, overlaps and kv_len);
 *   - featmap: access to its feature map, if it has one (rk_attn_features_d, rk_attn_proj,
 *     the recurrent state).
 * Nothing may allocate inside execute. */
#ifndef RK_ATTN_IMPL_H
#define RK_ATTN_IMPL_H

#include "rk_internal.h"

struct rk__featmap;

typedef struct rk__attn_kind {
    rk_kind     kind;
    const char *name;                              /* "softmax", ...                         */
    unsigned    fields;                            /* RK_FIELD_* groups the kind reads       */
    /* The groups of this config when they depend on it (rpe-fft: on its feature base);
     * NULL: `fields`. Called on the caller's config before any default is filled in. */
    unsigned  (*fields_of)(const rk_attn_config *c);
    /* Defaults and the kind's validation of c (the generic checks passed); fills the kind's
     * parts of info (feature_dim, fft_len). Allocates nothing. NULL: nothing to do. */
    int       (*resolve)(rk_attn_config *c, rk_attn_info *info);
    int       (*create)(rk_attn *p);               /* set p->impl, count bytes into p->bytes */
    void      (*destroy)(void *impl);              /* NULL-safe; frees a partial build too   */
    int       (*exec_f)(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v,
                        rk_mat *out, size_t kv_len);
    int       (*exec_d)(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                        rk_matd *out, size_t kv_len);
    /* Gradients (ropekit.h, "Gradients"): what a training forward saves (elements of the
     * path's precision; NULL: 0), the training forward (NULL: execute, nothing saved) and the
     * backward (NULL: the kind has none, RK_EUNSUP). Views are checked by attn.c. */
    size_t    (*saved_len)(const rk_attn *p);
    int       (*fwd_f)(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v,
                       rk_mat *out, size_t kv_len, float *saved);
    int       (*fwd_d)(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                       rk_matd *out, size_t kv_len, double *saved);
    int       (*bwd_f)(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v,
                       const rk_mat *out, const float *saved, const rk_mat *dout, rk_mat *dq,
                       rk_mat *dk, rk_mat *dv, size_t kv_len);
    int       (*bwd_d)(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                       const rk_matd *out, const double *saved, const rk_matd *dout,
                       rk_matd *dq, rk_matd *dk, rk_matd *dv, size_t kv_len);
    /* Batches of heads (optional): a kind with its own batched execute spreads the work over
     * batch x heads x its tiles; without one, attn.c runs the heads one after another through
     * the matrix entries above. Tensors are checked by attn.c; kv_len is NULL or batch values. */
    int       (*exec_batch_f)(rk_attn *p, const rk_tensor *q, const rk_tensor *k,
                              const rk_tensor *v, rk_tensor *out, const size_t *kv_len,
                              float *saved);           /* saved: NULL, or a training forward */
    int       (*exec_batch_d)(rk_attn *p, const rk_tensord *q, const rk_tensord *k,
                              const rk_tensord *v, rk_tensord *out, const size_t *kv_len,
                              double *saved);
    int       (*bwd_batch_f)(rk_attn *p, const rk_tensor *q, const rk_tensor *k,
                             const rk_tensor *v, const rk_tensor *out, const float *saved,
                             const rk_tensor *dout, rk_tensor *dq, rk_tensor *dk, rk_tensor *dv,
                             const size_t *kv_len);
    int       (*bwd_batch_d)(rk_attn *p, const rk_tensord *q, const rk_tensord *k,
                             const rk_tensord *v, const rk_tensord *out, const double *saved,
                             const rk_tensord *dout, rk_tensord *dq, rk_tensord *dk,
                             rk_tensord *dv, const size_t *kv_len);
    /* The plan's feature map and its rotations (NULL: the kind has none). */
    struct rk__featmap *(*featmap)(const rk_attn *p, const rk_rope **rope_qk,
                                   const rk_rope **rope_features);
} rk__attn_kind;

struct rk_attn {
    rk_attn_config       cfg;    /* defaults resolved (d_v, scale, nthreads, ...)        */
    rk_attn_info         info;
    size_t               bytes;  /* working memory owned by the plan                     */
    const rk__attn_kind *ops;
    void                *impl;   /* kind-specific state                                  */
    /* Grouped-query backward through the per-head path: one key/value head's gradients of
     * the second and later query heads of its group, (n_kv, d + d_v) each precision. */
    float               *gqa_f;
    double              *gqa_d;
};

/* Key index of query row 0: n_kv - n_q (bottom-right), or the config's q_start. Query i is
 * at key index rk__attn_qidx(c) + i. */
static inline int64_t rk__attn_qidx(const rk_attn_config *c)
{ return c->align == RK_ALIGN_Q_START ? c->q_start : (int64_t)c->n_kv - (int64_t)c->n_q; }

/* Number of keys query i may see given causal alignment and key padding (kv_len <= n_kv):
 * keys 0 .. rk__attn_visible(...) - 1. */
static inline size_t rk__attn_visible(const rk_attn_config *c, size_t i, size_t kv_len)
{
    size_t lim = kv_len;
    if (c->causal) {
        /* query i sees j <= qidx + i; rows before key 0 see nothing (q_start is bounded by
         * rk_attn_resolve, so this does not overflow) */
        int64_t last = rk__attn_qidx(c) + (int64_t)i + 1;
        if (last <= 0) return 0;
        if ((uint64_t)last < lim) lim = (size_t)last;
    }
    return lim;
}

/* Position of query row i and key row j (RoPE). */
static inline int64_t rk__attn_qpos(const rk_attn_config *c, size_t i)
{ return c->pos_offset + rk__attn_qidx(c) + (int64_t)i; }
static inline int64_t rk__attn_kpos(const rk_attn_config *c, size_t j)
{ return c->pos_offset + (int64_t)j; }

/* The state hooks of the linear kinds (lib/performer_exec.h, lib/attn_partial.c). */
int rk__perf_exec_state_f(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v,
                          rk_mat *out, size_t kv_len, const rk_kv_state *init,
                          rk_kv_state *fin);
int rk__perf_exec_state_d(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                          rk_matd *out, size_t kv_len, const rk_kv_state *init,
                          rk_kv_state *fin);
int rk__perf_reduce_f(rk_attn *p, const rk_mat *k, const rk_mat *v, size_t kv_len,
                      const rk_kv_state *init, rk_kv_state *st);
int rk__perf_reduce_d(rk_attn *p, const rk_matd *k, const rk_matd *v, size_t kv_len,
                      const rk_kv_state *init, rk_kv_state *st);

/* Relative bias of a plan (lib/encodings.c; softmax and rpe-fft): NULL bias with bias_len 0 is
 * none; otherwise bias_len must be rk_bias_len(n_q, n_kv) (RK_EDIM), entries finite or -inf
 * (NaN, +inf: RK_ENONFINITE) and, for softmax, <= 1e30 (RK_EINVAL). `who` names the kind. */
int rk__bias_check(const rk_attn_config *c, const char *who, int softmax);

/* The RoPE config of a plan's rotation of width dim (rope = qk: d; rope = features: the
 * feature width F): c->rope_cfg with dim set, seq_len (when 0) the plan's pos_offset + n_kv
 * for the length-dependent scalings, and, with rope_freq_dim_head, theta over the head width
 * d instead (base' = base^(r/d)). */
rk_rope_config rk__attn_rope_cfg(const rk_attn_config *c, size_t dim);
/* Validate that rotation (rk_rope_resolve) without allocating; messages name `who`, the rope
 * mode and the width. RK_OK when rope = none. */
int rk__attn_rope_check(const rk_attn_config *c, size_t dim, const char *who);

#endif
