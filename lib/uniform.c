/* RK_UNIFORM: every key a query sees weighs the same,
 *
 *   out_i = (1 / vis(i)) sum_{j < vis(i)} v_j      (a zero row when vis(i) = 0),
 *
 * i.e. softmax attention with all-zero logits: no q.k, no position information (a baseline
 * for what attention adds). vis(i) is rk__attn_visible (causal alignment, key padding).
 * Keys past vis(i) are never read. O(n d_v): visible key counts only grow with i, so one
 * running sum in double serves every row, in row order (the same bits for any thread count;
 * the float path sums the float values in double and rounds each output once).
 *
 * Backward: no gradient reaches q or k (zeros); dv_j = sum over the rows i that see key j of
 * dout_i / vis(i). Those rows are a suffix of the rows (vis only grows), so one running sum
 * taken from the last row up serves every key, again in double, in a fixed order. */
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
    p->cfg.isa = RK_ISA_PORTABLE;       /* plain loops: rk_attn_get_config names the path */
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

#define UNIFORM_BWD(NAME, MAT, REAL)                                                          \
    static int NAME(rk_attn *p, const MAT *q, const MAT *k, const MAT *v, const MAT *out,   \
                    const REAL *saved, const MAT *dout, MAT *dq, MAT *dk, MAT *dv,          \
                    size_t kv_len)                                                            \
    {                                                                                         \
        (void)q; (void)k; (void)v; (void)out; (void)saved;                                    \
        const rk_attn_config *c = &p->cfg;                                                    \
        const size_t dvw = c->d_v, nq = c->n_q;                                               \
        double *acc = ((uniform_plan *)p->impl)->sum;                                         \
        for (size_t i = 0; i < nq; i++)                                                       \
            for (size_t ch = 0; ch < c->d; ch++) dq->data[i * dq->ld + ch] = 0;               \
        for (size_t j = 0; j < c->n_kv; j++) {                                                \
            for (size_t ch = 0; ch < c->d; ch++) dk->data[j * dk->ld + ch] = 0;               \
            for (size_t ch = 0; ch < dvw; ch++) dv->data[j * dv->ld + ch] = 0;                \
        }                                                                                     \
        for (size_t ch = 0; ch < dvw; ch++) acc[ch] = 0.0;                                    \
        for (size_t i = nq; i-- > 0;) {                                                       \
            size_t vis = rk__attn_visible(c, i, kv_len);                                      \
            size_t lo = i ? rk__attn_visible(c, i - 1, kv_len) : 0;                           \
            if (vis) {                                                                        \
                const REAL *g = dout->data + i * dout->ld;                                    \
                for (size_t ch = 0; ch < dvw; ch++) acc[ch] += (double)g[ch] / (double)vis;   \
            }                                                                                 \
            for (size_t j = lo; j < vis; j++)                                                 \
                for (size_t ch = 0; ch < dvw; ch++) dv->data[j * dv->ld + ch] = (REAL)acc[ch]; \
        }                                                                                     \
        return RK_OK;                                                                         \
    }
UNIFORM_BWD(uniform_bwd_f, rk_mat, float)
UNIFORM_BWD(uniform_bwd_d, rk_matd, double)

const rk__attn_kind rk__uniform_kind = {
    .kind = RK_UNIFORM, .name = "uniform", .fields = RK_FIELD_ALIGN,
    .create = uniform_create, .destroy = uniform_destroy,
    .exec_f = uniform_exec_f, .exec_d = uniform_exec_d,
    .bwd_f = uniform_bwd_f, .bwd_d = uniform_bwd_d,
};
