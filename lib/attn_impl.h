/* The generic attention plan (lib/attn.c) and the interface each kind implements.
 * attn.c validates everything common (config, view shapes, kv_len) and resolves defaults;
 * a kind's create() builds its tables and scratch, its execute functions do the work and may
 * assume validated inputs. Nothing may allocate inside execute. */
#ifndef RK_ATTN_IMPL_H
#define RK_ATTN_IMPL_H

#include "rk_internal.h"

typedef struct rk__attn_ops {
    const char *name;
    int  (*create)(rk_attn *p);                   /* set p->impl, add to p->bytes          */
    void (*destroy)(void *impl);                  /* NULL-safe; frees a partial build too  */
    int  (*exec_f)(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v,
                   rk_mat *out, size_t kv_len);
    int  (*exec_d)(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                   rk_matd *out, size_t kv_len);
} rk__attn_ops;

struct rk_attn {
    rk_attn_config      cfg;     /* defaults resolved (d_v, scale, nthreads, ...)        */
    size_t              bytes;   /* working memory owned by the plan                     */
    const rk__attn_ops *ops;
    void               *impl;    /* kind-specific state                                  */
};

/* Number of keys query i may see given causal alignment and key padding (kv_len <= n_kv):
 * keys 0 .. rk__attn_visible(...) - 1. */
static inline size_t rk__attn_visible(const rk_attn_config *c, size_t i, size_t kv_len)
{
    size_t lim = kv_len;
    if (c->causal) {
        /* query i sees j <= i + (n_kv - n_q); when n_q > n_kv the first rows see nothing. */
        if (c->n_kv + i + 1 <= c->n_q) return 0;
        size_t last = c->n_kv + i + 1 - c->n_q;     /* = i + (n_kv - n_q) + 1 */
        if (last < lim) lim = last;
    }
    return lim;
}

/* Position of query row i and key row j (RoPE). */
static inline int64_t rk__attn_qpos(const rk_attn_config *c, size_t i)
{ return c->pos_offset + (int64_t)c->n_kv - (int64_t)c->n_q + (int64_t)i; }
static inline int64_t rk__attn_kpos(const rk_attn_config *c, size_t j)
{ return c->pos_offset + (int64_t)j; }

extern const rk__attn_ops rk__softmax_ops;    /* lib/softmax.c   */
extern const rk__attn_ops rk__performer_ops;  /* lib/performer.c */
extern const rk__attn_ops rk__linear_ops;     /* lib/performer.c */
extern const rk__attn_ops rk__rpe_fft_ops;    /* lib/rpe_fft.c   */

#endif
