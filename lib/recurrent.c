/* Recurrent (causal) decoding for FAVOR+ and linear attention, and rk_attn_proj.
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
#include "performer_impl.h"

#include <math.h>
#include <string.h>

struct rk_attn_state {
    const rk_attn  *p;
    const rk__perf *f;
    size_t  t;          /* tokens seen                                          */
    double  C;          /* key constant of S and z                              */
    double *S, *z;      /* (F, dv), (F)                                         */
    double *x, *u;      /* (d) rotated row (rope = qk), (max(m, d)) projections */
    double *kf, *qf;    /* (F) features                                         */
    double *qd, *kd, *vd, *od;   /* float step: (d), (d), (dv), (dv) in double  */
};

const float *rk_attn_proj(const rk_attn *p, size_t *m, size_t *d)
{
    const rk__perf *f = rk__perf_of(p);
    if (!f || !f->m) {
        if (m) *m = 0;
        if (d) *d = 0;
        return NULL;
    }
    if (m) *m = f->m;
    if (d) *d = f->d;
    return f->w;
}

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
    memset(s->S, 0, s->f->F * s->f->dv * sizeof(double));
    memset(s->z, 0, s->f->F * sizeof(double));
}

int rk_attn_state_create(rk_attn_state **out, const rk_attn *p)
{
    rk__clear_error();
    if (!out || !p) RK_FAIL(RK_EINVAL, "state: NULL argument");
    *out = NULL;
    const rk__perf *f = rk__perf_of(p);
    if (!f) RK_FAIL(RK_EUNSUP, "state: recurrent decoding needs a performer or linear plan, not %s",
                    p->ops->name);
    rk_attn_state *s = rk__alloc(sizeof *s);
    if (!s) RK_FAIL(RK_ENOMEM, "state: cannot allocate the state");
    s->p = p;
    s->f = f;
    size_t F = f->F, d = f->d, dv = f->dv;
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
 * rope = qk rotates x first. The features then come from rk__feat_row_d. */
static int row_features(rk_attn_state *s, const double *x, int64_t pos, double *lmax, double *h)
{
    const rk__perf *f = s->f;
    if (f->rope_qk) {
        rk_matd xi = rk_matd_view((double *)x, 1, f->d, f->d), xo = rk_matd_view(s->x, 1, f->d, f->d);
        int rc = rk_rope_apply_d(f->rope_qk, &xi, &xo, pos, NULL, 0);
        if (rc) return rc;
        x = s->x;
    }
    if (f->kind == RK_LINEAR) {
        memcpy(s->u, x, f->d * sizeof(double));   /* the map acts on x itself (u has d slots) */
        *h = 0.0;
        *lmax = 0.0;
        return RK_OK;
    }
    double ss = 0.0;
    for (size_t c = 0; c < f->d; c++) ss += x[c] * x[c];
    for (size_t r = 0; r < f->m; r++) {
        const double *w_r = f->wsd + r * f->d;
        double a = 0.0;
        for (size_t c = 0; c < f->d; c++) a += w_r[c] * x[c];
        s->u[r] = a;
    }
    *h = 0.5 * f->scale * ss;
    *lmax = rk__feat_lmax_d(f, s->u, *h);
    return RK_OK;
}

static int rotate(const rk__perf *f, double *phi, int64_t pos)
{
    if (!f->rope_f) return RK_OK;
    rk_matd v = rk_matd_view(phi, 1, f->F, f->F);
    return rk_rope_apply_d(f->rope_f, &v, &v, pos, NULL, 0);
}

int rk_attn_state_step_d(rk_attn_state *s, const double *q, const double *k, const double *v,
                         double *out)
{
    rk__clear_error();
    if (!s || !q || !k || !v || !out) RK_FAIL(RK_EINVAL, "state step: NULL argument");
    const rk__perf *f = s->f;
    size_t F = f->F, dv = f->dv;
    int64_t pos;
    if (s->t > (size_t)INT64_MAX || __builtin_add_overflow(s->p->cfg.pos_offset, (int64_t)s->t, &pos))
        RK_FAIL(RK_EOVERFLOW, "state step: position %lld + %zu overflows int64",
                (long long)s->p->cfg.pos_offset, s->t);
    double lmax, h;
    int rc;

    /* 1. the key: raise the constant if needed, then z += phi(k), S += (R phi(k)) v^T */
    if ((rc = row_features(s, k, pos, &lmax, &h))) return rc;
    if (f->stab) {
        if (s->t == 0) s->C = lmax;
        else if (lmax > s->C) {
            double e = exp(s->C - lmax);
            for (size_t i = 0; i < F * dv; i++) s->S[i] *= e;
            for (size_t r = 0; r < F; r++) s->z[r] *= e;
            s->C = lmax;
        }
    }
    rk__feat_row_d(f, s->u, h, f->stab ? s->C : 0.0, s->kf);
    for (size_t r = 0; r < F; r++) s->z[r] += s->kf[r];
    if ((rc = rotate(f, s->kf, pos))) return rc;
    for (size_t r = 0; r < F; r++) {
        double *S_r = s->S + r * dv, a = s->kf[r];
        for (size_t c = 0; c < dv; c++) S_r[c] += a * v[c];
    }

    /* 2. the query: own constant (cancels); den from unrotated, num from rotated features */
    if ((rc = row_features(s, q, pos, &lmax, &h))) return rc;
    rk__feat_row_d(f, s->u, h, f->stab ? lmax : 0.0, s->qf);
    double den = 0.0;
    for (size_t r = 0; r < F; r++) den += s->qf[r] * s->z[r];
    if ((rc = rotate(f, s->qf, pos))) return rc;
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
    size_t d = s->f->d, dv = s->f->dv;
    for (size_t c = 0; c < d; c++) { s->qd[c] = q[c]; s->kd[c] = k[c]; }
    for (size_t c = 0; c < dv; c++) s->vd[c] = v[c];
    int rc = rk_attn_state_step_d(s, s->qd, s->kd, s->vd, s->od);
    if (rc) return rc;
    for (size_t c = 0; c < dv; c++) out[c] = (float)s->od[c];
    return RK_OK;
}
