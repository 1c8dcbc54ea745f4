/* RK_UNIFORM: every key a query sees weighs the same,
 *
 *   out_i = (1 / vis(i)) sum_{j < vis(i)} v_j      (a zero row when vis(i) = 0),
 *
 * i.e. softmax attention with all-zero logits: no q.k, no position information (a baseline
 * for what attention adds). vis(i) is rk__attn_visible (causal alignment, key padding).
 * Keys past vis(i) are never read. O(n d_v): visible key counts only grow with i, so one
 * running sum in double serves every row, in row order (the same bits for any thread count;
 * the float path sums the float values in double and rounds each output once). */
#include "attn_impl.h"

typedef struct {
    double *sum;     /* (d_v) running sum of the visible values */
} uniform_plan;

static void uniform_destroy(void *impl)
{
    uniform_plan *u = impl;
    if (!u) return;
    rk__free(u->sum);
    rk__free(u);
}

static int uniform_create(rk_attn *p)
{
    uniform_plan *u = rk__alloc(sizeof *u);
    if (!u) RK_FAIL(RK_ENOMEM, "uniform: cannot allocate the plan");
    p->impl = u;
    p->bytes += rk__alloc_size(sizeof *u);
    int rc = RK_OK;
    if (!(u->sum = rk__take(&p->bytes, p->cfg.d_v, 1, sizeof(double), "uniform", "sums", &rc)))
        return rc;
    return RK_OK;
}

#define UNIFORM_EXEC(NAME, MAT, REAL)                                                         \
    static int NAME(rk_attn *p, const MAT *q, const MAT *k, const MAT *v, MAT *out,        \
                    size_t kv_len)                                                            \
    {                                                                                         \
        (void)q; (void)k;                                                                     \
        const rk_attn_config *c = &p->cfg;                                                    \
        const size_t dv = c->d_v;                                                             \
        double *sum = ((uniform_plan *)p->impl)->sum;                                         \
        for (size_t ch = 0; ch < dv; ch++) sum[ch] = 0.0;                                     \
        size_t seen = 0;                                                                      \
        for (size_t i = 0; i < c->n_q; i++) {                                                 \
            size_t vis = rk__attn_visible(c, i, kv_len);                                      \
            for (; seen < vis; seen++) {                                                      \
                const REAL *v_j = v->data + seen * v->ld;                                     \
                for (size_t ch = 0; ch < dv; ch++) sum[ch] += (double)v_j[ch];               \
            }                                                                                 \
            REAL *o = out->data + i * out->ld;                                                \
            for (size_t ch = 0; ch < dv; ch++)                                                \
                o[ch] = vis ? (REAL)(sum[ch] / (double)vis) : (REAL)0;                        \
        }                                                                                     \
        return RK_OK;                                                                         \
    }
UNIFORM_EXEC(uniform_exec_f, rk_mat, float)
UNIFORM_EXEC(uniform_exec_d, rk_matd, double)

const rk__attn_kind rk__uniform_kind = {
    .kind = RK_UNIFORM, .name = "uniform", .fields = 0,
    .create = uniform_create, .destroy = uniform_destroy,
    .exec_f = uniform_exec_f, .exec_d = uniform_exec_d,
};
