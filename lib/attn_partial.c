/* Sequence parallelism without a transport (issue 18; ropekit.h, "Sequence parallelism"):
 *
 *   - rk_attn_merge: two exact-softmax partials (normalised output, row log-sum-exp as the
 *     training forward saves it) over disjoint key sets into one, by log-sum-exp;
 *   - rk_kv_state_*: the key/value state of the linear kinds (FAVOR+, linear) at one constant,
 *     and its merge (each side rescaled to the larger constant);
 *   - rk_attn_kv_reduce / rk_attn_execute_state: a block's keys into a state, and an execute
 *     that starts from a state (the linear kinds' body is lib/performer_exec.h).
 *
 * The MPI programs (mpi/) build ring attention and LASP-style prefix scans on these; the
 * library itself knows nothing of MPI.
 */
#include "attn_impl.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------------------ */
/* Softmax partials                                                                     */
/* ------------------------------------------------------------------------------------ */

static int overlap(const void *a, size_t an, const void *b, size_t bn)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return an && bn && x < y + bn && y < x + an;
}

static int merge_check(const void *od, size_t orows, size_t ocols, size_t old, const void *lse,
                       const void *bd, size_t brows, size_t bcols, size_t bld, const void *lse_b,
                       size_t elt)
{
    int rc;
    if (!lse || !lse_b) RK_FAIL(RK_EINVAL, "attention merge: NULL log-sum-exp");
    if ((rc = rk__check_view("out", od, orows, ocols, old, orows, ocols)) ||
        (rc = rk__check_view("out_b", bd, brows, bcols, bld, orows, ocols)))
        return rc;
    size_t ob = orows ? ((orows - 1) * old + ocols) * elt : 0;
    size_t bb = brows ? ((brows - 1) * bld + bcols) * elt : 0;
    if (overlap(od, ob, bd, bb)) RK_FAIL(RK_EINVAL, "attention merge: out_b overlaps out");
    if (overlap(lse, orows * elt, lse_b, orows * elt))
        RK_FAIL(RK_EINVAL, "attention merge: lse_b overlaps lse");
    return RK_OK;
}

/* One row: (o, l) <- (o, l) + (ob, lb), EXP2 selecting base 2 (float path) or e. */
#define MERGE_ROW(REAL, EXPF, LOGF)                                                             \
    do {                                                                                        \
        const double la = (double)*l, lb = (double)lb_;                                         \
        if (lb == -INFINITY) break;                          /* b saw nothing: a as it is */    \
        if (la == -INFINITY) {                               /* a saw nothing: b as it is */    \
            for (size_t ch = 0; ch < dv; ch++) o[ch] = ob[ch];                                  \
            *l = lb_;                                                                           \
            break;                                                                              \
        }                                                                                       \
        const double m = la > lb ? la : lb;                                                     \
        const double wa = EXPF(la - m), wb = EXPF(lb - m), s = wa + wb;                         \
        const double ca = wa / s, cb = wb / s;                                                  \
        for (size_t ch = 0; ch < dv; ch++)                                                      \
            o[ch] = (REAL)(ca * (double)o[ch] + cb * (double)ob[ch]);                           \
        *l = (REAL)(m + LOGF(s));                                                               \
    } while (0)

int rk_attn_merge(rk_mat *out, float *lse, const rk_mat *out_b, const float *lse_b)
{
    rk__clear_error();
    if (!out || !out_b) RK_FAIL(RK_EINVAL, "attention merge: NULL argument");
    int rc = merge_check(out->data, out->rows, out->cols, out->ld, lse, out_b->data, out_b->rows,
                         out_b->cols, out_b->ld, lse_b, sizeof(float));
    if (rc) return rc;
    const size_t dv = out->cols;
    for (size_t i = 0; i < out->rows; i++) {
        float *o = out->data + i * out->ld, *l = lse + i, lb_ = lse_b[i];
        const float *ob = out_b->data + i * out_b->ld;
        MERGE_ROW(float, exp2, log2);
    }
    return RK_OK;
}

int rk_attn_merge_d(rk_matd *out, double *lse, const rk_matd *out_b, const double *lse_b)
{
    rk__clear_error();
    if (!out || !out_b) RK_FAIL(RK_EINVAL, "attention merge: NULL argument");
    int rc = merge_check(out->data, out->rows, out->cols, out->ld, lse, out_b->data, out_b->rows,
                         out_b->cols, out_b->ld, lse_b, sizeof(double));
    if (rc) return rc;
    const size_t dv = out->cols;
    for (size_t i = 0; i < out->rows; i++) {
        double *o = out->data + i * out->ld, *l = lse + i, lb_ = lse_b[i];
        const double *ob = out_b->data + i * out_b->ld;
        MERGE_ROW(double, exp, log);
    }
    return RK_OK;
}
#undef MERGE_ROW

/* ------------------------------------------------------------------------------------ */
/* Key/value states of the linear kinds                                                 */
/* ------------------------------------------------------------------------------------ */

static int linear_kind(const rk_attn *p, const char *what)
{
    if (p->cfg.kind != RK_PERFORMER && p->cfg.kind != RK_LINEAR)
        RK_FAIL(RK_EUNSUP, "%s: a %s plan has no key/value state (performer and linear do)",
                what, p->ops->name);
    return RK_OK;
}

int rk_kv_state_alloc(rk_kv_state *st, const rk_attn *p)
{
    rk__clear_error();
    if (!st || !p) RK_FAIL(RK_EINVAL, "rk_kv_state_alloc: NULL argument");
    memset(st, 0, sizeof *st);
    int rc = linear_kind(p, "rk_kv_state_alloc");
    if (rc) return rc;
    size_t F = p->info.feature_dim, dv = p->cfg.d_v, n, b;
    if (rk__mul(F, dv, &n) || rk__bytes(n, sizeof(double), &b))
        RK_FAIL(RK_EOVERFLOW, "rk_kv_state_alloc: F = %zu x d_v = %zu is too large", F, dv);
    st->s = rk__alloc(b);
    st->z = rk__alloc(F * sizeof(double));
    if (!st->s || !st->z) {
        rk_kv_state_free(st);
        RK_FAIL(RK_ENOMEM, "rk_kv_state_alloc: cannot allocate %zu x %zu doubles", F, dv + 1);
    }
    st->f = F;
    st->d_v = dv;
    st->c = -INFINITY;
    return RK_OK;
}

void rk_kv_state_free(rk_kv_state *st)
{
    if (!st) return;
    rk__free(st->s);
    rk__free(st->z);
    memset(st, 0, sizeof *st);
}

void rk_kv_state_clear(rk_kv_state *st)
{
    if (!st) return;
    if (st->s) memset(st->s, 0, st->f * st->d_v * sizeof(double));
    if (st->z) memset(st->z, 0, st->f * sizeof(double));
    st->c = -INFINITY;
    st->n = 0;
}

static int state_check(const rk_kv_state *st, const char *name, size_t F, size_t dv)
{
    if (!st->s || !st->z) RK_FAIL(RK_EINVAL, "%s has NULL storage", name);
    if (st->f != F || st->d_v != dv)
        RK_FAIL(RK_EDIM, "%s is (%zu, %zu), expected (%zu, %zu) (feature width, d_v)", name,
                st->f, st->d_v, F, dv);
    if (st->n && isnan(st->c)) RK_FAIL(RK_ENONFINITE, "%s has a NaN constant", name);
    return RK_OK;
}

int rk_kv_state_merge(rk_kv_state *a, const rk_kv_state *b)
{
    rk__clear_error();
    if (!a || !b) RK_FAIL(RK_EINVAL, "rk_kv_state_merge: NULL argument");
    int rc = state_check(a, "state a", b->f, b->d_v);
    if (!rc) rc = state_check(b, "state b", a->f, a->d_v);
    if (rc) return rc;
    const size_t F = a->f, dv = a->d_v;
    if (!b->n) return RK_OK;
    if (a == b) {                                     /* a + a: twice a at its constant */
        for (size_t i = 0; i < F * dv; i++) a->s[i] *= 2.0;
        for (size_t i = 0; i < F; i++) a->z[i] *= 2.0;
        a->n *= 2;
        return RK_OK;
    }
    if (!a->n) {
        memcpy(a->s, b->s, F * dv * sizeof(double));
        memcpy(a->z, b->z, F * sizeof(double));
        a->c = b->c;
        a->n = b->n;
        return RK_OK;
    }
    /* c = max: exp(c_a - c), exp(c_b - c) <= 1 (one of them exactly 1) */
    const double c = a->c > b->c ? a->c : b->c;
    const double ea = a->c == c ? 1.0 : exp(a->c - c), eb = b->c == c ? 1.0 : exp(b->c - c);
    for (size_t i = 0; i < F * dv; i++) a->s[i] = ea * a->s[i] + eb * b->s[i];
    for (size_t i = 0; i < F; i++) a->z[i] = ea * a->z[i] + eb * b->z[i];
    a->c = c;
    a->n += b->n;
    return RK_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Reduce and execute with a state                                                      */
/* ------------------------------------------------------------------------------------ */

/* The checks shared by reduce and execute_state: a plan of a linear kind with one head, the
 * states' shapes, kv_len. */
static int state_call_check(rk_attn *p, const char *what, const rk_kv_state *init,
                            const rk_kv_state *st, size_t kv_len)
{
    int rc = linear_kind(p, what);
    if (rc) return rc;
    const rk_attn_config *c = &p->cfg;
    if (c->batch != 1 || c->heads != 1)
        RK_FAIL(RK_EDIM, "%s: the plan is for batch = %zu x heads = %zu; the state calls take "
                "one head (a plan with batch = heads = 1)", what, c->batch, c->heads);
    const size_t F = p->info.feature_dim, dv = c->d_v;
    if (init && (rc = state_check(init, "init", F, dv))) return rc;
    if (st && (rc = state_check(st, "the output state", F, dv))) return rc;
    if (kv_len != RK_ALL_KEYS && kv_len > c->n_kv)
        RK_FAIL(RK_EDIM, "kv_len = %zu exceeds n_kv = %zu", kv_len, c->n_kv);
    return RK_OK;
}

#define KV_CHECK(k, v)                                                                          \
    do {                                                                                        \
        if ((rc = rk__check_view("k", (k)->data, (k)->rows, (k)->cols, (k)->ld, p->cfg.n_kv,    \
                                 p->cfg.d)) ||                                                  \
            (rc = rk__check_view("v", (v)->data, (v)->rows, (v)->cols, (v)->ld, p->cfg.n_kv,    \
                                 p->cfg.d_v)))                                                  \
            return rc;                                                                          \
    } while (0)

int rk_attn_kv_reduce(rk_attn *p, const rk_mat *k, const rk_mat *v, size_t kv_len,
                      const rk_kv_state *init, rk_kv_state *st)
{
    rk__clear_error();
    if (!p || !k || !v || !st) RK_FAIL(RK_EINVAL, "rk_attn_kv_reduce: NULL argument");
    int rc = state_call_check(p, "rk_attn_kv_reduce", init, st, kv_len);
    if (rc) return rc;
    KV_CHECK(k, v);
    return rk__perf_reduce_f(p, k, v, kv_len == RK_ALL_KEYS ? p->cfg.n_kv : kv_len, init, st);
}

int rk_attn_kv_reduce_d(rk_attn *p, const rk_matd *k, const rk_matd *v, size_t kv_len,
                        const rk_kv_state *init, rk_kv_state *st)
{
    rk__clear_error();
    if (!p || !k || !v || !st) RK_FAIL(RK_EINVAL, "rk_attn_kv_reduce_d: NULL argument");
    int rc = state_call_check(p, "rk_attn_kv_reduce_d", init, st, kv_len);
    if (rc) return rc;
    KV_CHECK(k, v);
    return rk__perf_reduce_d(p, k, v, kv_len == RK_ALL_KEYS ? p->cfg.n_kv : kv_len, init, st);
}

#define Q_CHECK(q, out, elt)                                                                    \
    do {                                                                                        \
        if ((rc = rk__check_view("q", (q)->data, (q)->rows, (q)->cols, (q)->ld, p->cfg.n_q,     \
                                 p->cfg.d)) ||                                                  \
            (rc = rk__check_view("out", (out)->data, (out)->rows, (out)->cols, (out)->ld,       \
                                 p->cfg.n_q, p->cfg.d_v)))                                      \
            return rc;                                                                          \
        size_t ob_ = ((out)->rows - 1) * (out)->ld * (elt) + (out)->cols * (elt);               \
        if (overlap((out)->data, ob_, (q)->data, ((q)->rows - 1) * (q)->ld * (elt) +            \
                    (q)->cols * (elt)) ||                                                       \
            overlap((out)->data, ob_, (k)->data, ((k)->rows - 1) * (k)->ld * (elt) +            \
                    (k)->cols * (elt)) ||                                                       \
            overlap((out)->data, ob_, (v)->data, ((v)->rows - 1) * (v)->ld * (elt) +            \
                    (v)->cols * (elt)))                                                         \
            RK_FAIL(RK_EINVAL, "out overlaps an input");                                        \
    } while (0)

int rk_attn_execute_state(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v,
                          rk_mat *out, size_t kv_len, const rk_kv_state *init,
                          rk_kv_state *final)
{
    rk__clear_error();
    if (!p || !q || !k || !v || !out) RK_FAIL(RK_EINVAL, "rk_attn_execute_state: NULL argument");
    int rc = state_call_check(p, "rk_attn_execute_state", init, final, kv_len);
    if (rc) return rc;
    KV_CHECK(k, v);
    Q_CHECK(q, out, sizeof(float));
    return rk__perf_exec_state_f(p, q, k, v, out, kv_len == RK_ALL_KEYS ? p->cfg.n_kv : kv_len,
                                 init, final);
}

int rk_attn_execute_state_d(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                            rk_matd *out, size_t kv_len, const rk_kv_state *init,
                            rk_kv_state *final)
{
    rk__clear_error();
    if (!p || !q || !k || !v || !out)
        RK_FAIL(RK_EINVAL, "rk_attn_execute_state_d: NULL argument");
    int rc = state_call_check(p, "rk_attn_execute_state_d", init, final, kv_len);
    if (rc) return rc;
    KV_CHECK(k, v);
    Q_CHECK(q, out, sizeof(double));
    return rk__perf_exec_state_d(p, q, k, v, out, kv_len == RK_ALL_KEYS ? p->cfg.n_kv : kv_len,
                                 init, final);
}
