/* Recurrent (causal) decoding for FAVOR+ and linear attention.
 *
 * The t-th step (t = 0, 1, ...) takes q_t, k_t, v_t at position pos_offset + t and returns
 *   out_t = sum_{j <= t} num_tj v_j / sum_{j <= t} phi(q_t) . phi(k_j)
 * with the plan's map, kernel and RoPE form: the causal batch result with n_q = n_kv (the
 * plan's n_q, n_kv, causal flag and kv_len play no part). State, in double:
 *   S (F, dv) = sum_j phi(k_j) v_j^T (rotated features for eq. 19),  z (F) = sum_j phi(k_j),
 * held at one key constant C = max_{j <= t} lmax(k_j): when a key raises the max, S and z are
 * multiplied by exp(C_old - C_new) (<= 1), so nothing overflows and only past keys are used.
 * Cost per token: O(m d + F dv). The float step converts to double and back, so it is at least
 * as accurate as the float batch path. The state reads the plan (projection, rotations): keep
 * the plan alive while the state exists; the plan's execute may be used in between.
 */
#include "attn_impl.h"
#include "featmap.h"

#include <math.h>
#include <string.h>

struct rk_attn_state {
    const rk_attn  *p;
    const rk__featmap *f;
    const rk_rope  *rope_qk, *rope_f;  /* the plan's rotations (rope = qk / features)      */
    size_t  dv;
    size_t  t;          /* tokens seen                                          */
    double  C;          /* key constant of S and z                              */
    double *S, *z;      /* (F, dv), (F)                                         */
    double *x, *u;      /* (d) rotated row (rope = qk), (max(m, d)) projections */
    double *kf, *qf;    /* (F) features                                         */
    double *qd, *kd, *vd, *od;   /* float step: (d), (d), (dv), (dv) in double  */
};

void rk_attn_state_destroy(rk_attn_state *s)
{
    if (!s) return;
    double *bufs[] = { s->S, s->z, s->x, s->u, s->kf, s->qf, s->qd, s->kd, s->vd, s->od };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) rk__free(bufs[i]);
    rk__free(s);
}

void rk_attn_state_reset(rk_attn_state *s)
{
    if (!s) return;
    s->t = 0;
    s->C = 0.0;
    memset(s->S, 0, s->f->F * s->dv * sizeof(double));
    memset(s->z, 0, s->f->F * sizeof(double));
}

int rk_attn_state_create(rk_attn_state **out, const rk_attn *p)
{
    rk__clear_error();
    if (!out || !p) RK_FAIL(RK_EINVAL, "state: NULL argument");
    *out = NULL;
    const rk_rope *rope_qk = NULL, *rope_f = NULL;
    const rk__featmap *f = p->ops->featmap ? p->ops->featmap(p, &rope_qk, &rope_f) : NULL;
    if (!f) RK_FAIL(RK_EUNSUP, "state: recurrent decoding needs a performer or linear plan, not %s",
                    p->ops->name);
    rk_attn_state *s = rk__alloc(sizeof *s);
    if (!s) RK_FAIL(RK_ENOMEM, "state: cannot allocate the state");
    s->p = p;
    s->f = f;
    s->rope_qk = rope_qk;
    s->rope_f = rope_f;
    s->dv = p->cfg.d_v;
    size_t F = f->F, d = f->d, dv = s->dv;
    /* sizes were checked at plan creation: F dv, d, m all fit */
    s->S = rk__alloc(F * dv * sizeof(double));
    s->z = rk__alloc(F * sizeof(double));
    s->x = rk__alloc(d * sizeof(double));
    s->u = rk__alloc((f->m > d ? f->m : d) * sizeof(double));   /* linear: holds x */
    s->kf = rk__alloc(F * sizeof(double));
    s->qf = rk__alloc(F * sizeof(double));
    s->qd = rk__alloc(d * sizeof(double));
    s->kd = rk__alloc(d * sizeof(double));
    s->vd = rk__alloc(dv * sizeof(double));
    s->od = rk__alloc(dv * sizeof(double));
    if (!s->S || !s->z || !s->x || !s->u || !s->kf || !s->qf || !s->qd || !s->kd || !s->vd || !s->od) {
        rk_attn_state_destroy(s);
        RK_FAIL(RK_ENOMEM, "state: cannot allocate %zu x %zu state", F, dv);
    }
    *out = s;
    return RK_OK;
}

/* One row x at position pos: s->u = its projections (linear maps: x itself), its h and lmax;
 * rope = qk rotates x first. The features then come from rk__featmap_row_d. */
static int row_features(rk_attn_state *s, const double *x, int64_t pos, double *lmax, double *h)
{
    const rk__featmap *f = s->f;
    if (s->rope_qk) {
        rk_matd xi = rk_matd_view((double *)x, 1, f->d, f->d), xo = rk_matd_view(s->x, 1, f->d, f->d);
        int rc = rk_rope_apply_d(s->rope_qk, &xi, &xo, pos, NULL, 0);
        if (rc) return rc;
        x = s->x;
    }
    *lmax = rk__featmap_project_d(f, x, s->u, h);
    return RK_OK;
}

static int rotate(const rk_attn_state *s, double *phi, int64_t pos)
{
    if (!s->rope_f) return RK_OK;
    rk_matd v = rk_matd_view(phi, 1, s->f->F, s->f->F);
    return rk_rope_apply_d(s->rope_f, &v, &v, pos, NULL, 0);
}

int rk_attn_state_step_d(rk_attn_state *s, const double *q, const double *k, const double *v,
                         double *out)
{
    rk__clear_error();
    if (!s || !q || !k || !v || !out) RK_FAIL(RK_EINVAL, "state step: NULL argument");
    const rk__featmap *f = s->f;
    size_t F = f->F, dv = s->dv;
    int64_t pos;
    if (s->t > (size_t)INT64_MAX || __builtin_add_overflow(s->p->cfg.pos_offset, (int64_t)s->t, &pos))
        RK_FAIL(RK_EOVERFLOW, "state step: position %lld + %zu overflows int64",
                (long long)s->p->cfg.pos_offset, s->t);
    double lmax, h;
    int rc;

    /* 1. the key: raise the constant if needed, then z += phi(k), S += (R phi(k)) v^T */
    if ((rc = row_features(s, k, pos, &lmax, &h))) return rc;
    if (s->t == 0) s->C = lmax;
    else if (lmax > s->C) {
        double e = exp(s->C - lmax);
        for (size_t i = 0; i < F * dv; i++) s->S[i] *= e;
        for (size_t r = 0; r < F; r++) s->z[r] *= e;
        s->C = lmax;
    }
    rk__featmap_row_d(f, s->u, h, s->C, s->kf);
    for (size_t r = 0; r < F; r++) s->z[r] += s->kf[r];
    if ((rc = rotate(s, s->kf, pos))) return rc;
    for (size_t r = 0; r < F; r++) {
        double *S_r = s->S + r * dv, a = s->kf[r];
        for (size_t c = 0; c < dv; c++) S_r[c] += a * v[c];
    }

    /* 2. the query: own constant (cancels); den from unrotated, num from rotated features */
    if ((rc = row_features(s, q, pos, &lmax, &h))) return rc;
    rk__featmap_row_d(f, s->u, h, lmax, s->qf);
    double den = 0.0;
    for (size_t r = 0; r < F; r++) den += s->qf[r] * s->z[r];
    if ((rc = rotate(s, s->qf, pos))) return rc;
    for (size_t c = 0; c < dv; c++) out[c] = 0.0;
    if (den != 0.0) {                   /* den == 0: every weight is 0, a zero row (no eps) */
        for (size_t r = 0; r < F; r++) {
            const double *S_r = s->S + r * dv;
            double a = s->qf[r];
            for (size_t c = 0; c < dv; c++) out[c] += a * S_r[c];
        }
        for (size_t c = 0; c < dv; c++) out[c] /= den;
    }
    s->t++;
    return RK_OK;
}

int rk_attn_state_step(rk_attn_state *s, const float *q, const float *k, const float *v,
                       float *out)
{
    rk__clear_error();
    if (!s || !q || !k || !v || !out) RK_FAIL(RK_EINVAL, "state step: NULL argument");
    size_t d = s->f->d, dv = s->dv;
    for (size_t c = 0; c < d; c++) { s->qd[c] = q[c]; s->kd[c] = k[c]; }
    for (size_t c = 0; c < dv; c++) s->vd[c] = v[c];
    int rc = rk_attn_state_step_d(s, s->qd, s->kd, s->vd, s->od);
    if (rc) return rc;
    for (size_t c = 0; c < dv; c++) out[c] = (float)s->od[c];
    return RK_OK;
}
