/* The attention plan: validation and defaults common to every kind, then dispatch. */
#include "attn_impl.h"

#include <math.h>
#include <omp.h>
#include <string.h>

/* Kinds and their implementations; a kind without an entry is RK_EUNSUP. */
static const rk__attn_ops *ops_for(rk_kind kind)
{
    switch (kind) {
    case RK_SOFTMAX:   return &rk__softmax_ops;
    case RK_PERFORMER: return &rk__performer_ops;
    case RK_LINEAR:    return &rk__linear_ops;
    case RK_RPE_FFT:   return &rk__rpe_fft_ops;
    }
    return NULL;
}

static int resolve(rk_attn_config *c)
{
    if (c->kind != RK_SOFTMAX && c->kind != RK_PERFORMER && c->kind != RK_LINEAR &&
        c->kind != RK_RPE_FFT)
        RK_FAIL(RK_EINVAL, "unknown attention kind %d", (int)c->kind);
    /* issue-6 fields on kinds that would silently ignore them */
    if ((c->bias || c->bias_len) && c->kind != RK_SOFTMAX && c->kind != RK_RPE_FFT)
        RK_FAIL(RK_EINVAL, "a relative bias is for softmax and rpe-fft plans only");
    if ((c->xpos_scale_base != 0.0 || c->xpos_gamma != 0.0) && c->kind != RK_SOFTMAX)
        RK_FAIL(RK_EINVAL, "xPos is implemented for softmax plans only");
    if ((c->rpe_base || c->rpe_l2norm || c->fft_wisdom) && c->kind != RK_RPE_FFT)
        RK_FAIL(RK_EINVAL, "rpe_base, rpe_l2norm and fft_wisdom are for rpe-fft plans only");
    if (c->n_q == 0 || c->n_kv == 0)
        RK_FAIL(RK_EDIM, "n_q = %zu and n_kv = %zu must both be > 0", c->n_q, c->n_kv);
    if (c->d == 0) RK_FAIL(RK_EDIM, "d must be > 0");
    if (c->d_v == 0) c->d_v = c->d;
    /* Every size that reaches an int-indexed BLAS call, and every matrix byte count. */
    size_t b;
    if (!rk__fits_int(c->n_q) || !rk__fits_int(c->n_kv) || !rk__fits_int(c->d) ||
        !rk__fits_int(c->d_v) || rk__mul(c->n_q, c->d, &b) || rk__bytes(b, sizeof(double), &b) ||
        rk__mul(c->n_kv, c->d > c->d_v ? c->d : c->d_v, &b) || rk__bytes(b, sizeof(double), &b))
        RK_FAIL(RK_EOVERFLOW, "sizes n_q = %zu, n_kv = %zu, d = %zu, d_v = %zu are too large",
                c->n_q, c->n_kv, c->d, c->d_v);
    if (c->scale == 0.0) c->scale = 1.0 / sqrt((double)c->d);
    if (!isfinite(c->scale)) RK_FAIL(RK_EINVAL, "scale must be finite");
    if (c->rope != RK_ROPE_NONE && c->rope != RK_ROPE_QK && c->rope != RK_ROPE_FEATURES)
        RK_FAIL(RK_EINVAL, "unknown rope mode %d", (int)c->rope);
    if (c->nthreads < 0) RK_FAIL(RK_EINVAL, "nthreads = %d must be >= 0", c->nthreads);
    if (c->nthreads == 0) c->nthreads = omp_get_max_threads();
    return RK_OK;
}

int rk_attn_create(rk_attn **out, const rk_attn_config *cfg)
{
    rk__clear_error();
    *out = NULL;
    rk_attn_config c = *cfg;
    int rc = resolve(&c);
    if (rc) return rc;
    const rk__attn_ops *ops = ops_for(c.kind);
    if (!ops) RK_FAIL(RK_EUNSUP, "attention kind %d is not built into this library", (int)c.kind);
    rk_attn *p = rk__alloc(sizeof *p);
    if (!p) RK_FAIL(RK_ENOMEM, "cannot allocate the attention plan");
    p->cfg = c;
    p->bytes = sizeof *p;
    p->ops = ops;
    rc = ops->create(p);
    if (rc) { ops->destroy(p->impl); rk__free(p); return rc; }
    *out = p;
    return RK_OK;
}

void rk_attn_destroy(rk_attn *p)
{
    if (!p) return;
    p->ops->destroy(p->impl);
    rk__free(p);
}

const rk_attn_config *rk_attn_get_config(const rk_attn *p) { return &p->cfg; }
size_t rk_attn_bytes(const rk_attn *p) { return p->bytes; }

/* [a, a + an) and [b, b + bn) in bytes overlap? */
static int overlaps(const void *a, size_t an, const void *b, size_t bn)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return an && bn && x < y + bn && y < x + an;
}
static size_t span_bytes(size_t rows, size_t cols, size_t ld, size_t elt)
{
    return rows && cols ? ((rows - 1) * ld + cols) * elt : 0;
}

#define CHECK_VIEWS(P, Q, K, V, OUT, KVLEN, ELT)                                              \
    do {                                                                                     \
        const rk_attn_config *c_ = &(P)->cfg;                                                 \
        int rc_;                                                                             \
        if ((rc_ = rk__check_view("q", (Q)->data, (Q)->rows, (Q)->cols, (Q)->ld, c_->n_q, c_->d))) \
            return rc_;                                                                      \
        if ((rc_ = rk__check_view("k", (K)->data, (K)->rows, (K)->cols, (K)->ld, c_->n_kv, c_->d))) \
            return rc_;                                                                      \
        if ((rc_ = rk__check_view("v", (V)->data, (V)->rows, (V)->cols, (V)->ld, c_->n_kv, c_->d_v))) \
            return rc_;                                                                      \
        if ((rc_ = rk__check_view("out", (OUT)->data, (OUT)->rows, (OUT)->cols, (OUT)->ld,   \
                                  c_->n_q, c_->d_v)))                                        \
            return rc_;                                                                      \
        if ((KVLEN) != RK_ALL_KEYS && (KVLEN) > c_->n_kv)                                    \
            RK_FAIL(RK_EDIM, "kv_len = %zu exceeds n_kv = %zu", (size_t)(KVLEN), c_->n_kv);  \
        size_t ob_ = span_bytes((OUT)->rows, (OUT)->cols, (OUT)->ld, ELT);                   \
        if (overlaps((OUT)->data, ob_, (Q)->data, span_bytes((Q)->rows, (Q)->cols, (Q)->ld, ELT)) || \
            overlaps((OUT)->data, ob_, (K)->data, span_bytes((K)->rows, (K)->cols, (K)->ld, ELT)) || \
            overlaps((OUT)->data, ob_, (V)->data, span_bytes((V)->rows, (V)->cols, (V)->ld, ELT)))   \
            RK_FAIL(RK_EINVAL, "out overlaps an input");                                     \
    } while (0)

int rk_attn_execute(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v,
                    rk_mat *out, size_t kv_len)
{
    rk__clear_error();
    CHECK_VIEWS(p, q, k, v, out, kv_len, sizeof(float));
    if (kv_len == RK_ALL_KEYS) kv_len = p->cfg.n_kv;
    if (!p->ops->exec_f) RK_FAIL(RK_EUNSUP, "%s has no float32 path", p->ops->name);
    return p->ops->exec_f(p, q, k, v, out, kv_len);
}

int rk_attn_execute_d(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                      rk_matd *out, size_t kv_len)
{
    rk__clear_error();
    CHECK_VIEWS(p, q, k, v, out, kv_len, sizeof(double));
    if (kv_len == RK_ALL_KEYS) kv_len = p->cfg.n_kv;
    if (!p->ops->exec_d) RK_FAIL(RK_EUNSUP, "%s has no float64 path", p->ops->name);
    return p->ops->exec_d(p, q, k, v, out, kv_len);
}
