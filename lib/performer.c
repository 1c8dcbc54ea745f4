/* FAVOR+ (RK_PERFORMER) and linear attention (RK_LINEAR): plan creation and the batch path.
 *
 *   out_i = sum_{j < L_i} num_ij v_j / sum_{j < L_i} phi(q_i) . phi(k_j)      L_i = keys query i sees
 *   num_ij = phi(q_i) . phi(k_j)                         rope none
 *          = phi(R_qi q_i) . phi(R_kj k_j)               rope = qk (rotate before the map)
 *          = (R_qi phi(q_i)) . (R_kj phi(k_j))           rope = features (RoFormer eq. 19; the
 *                                                        denominator keeps the unrotated features)
 *
 * One algorithm serves bidirectional and causal attention, in float and double:
 * queries go in chunks of T rows; a running state  S = sum_j phi(k_j) v_j^T  (F x dv, double) and
 * z = sum_j phi(k_j)  (F, double) holds every key that all queries of the chunk see; the few
 * keys that only some queries of the chunk see (causal: fewer than T) go through a small masked
 * T x T product, then join the state. Bidirectional: the first chunk absorbs all keys, there are
 * never masked keys. Memory: O(F dv) state + O(256 (d + m + F)) scratch, never O(n m).
 * Time: O(n m d + n F dv), plus O(n T (F + dv)) for the masked products (causal).
 *
 * Stabiliser (exp-type maps: positive, hyperbolic, and trig through its exp(|x'|^2/2) factor; see
 * featmap.h). A query row subtracts its own lmax: one factor on the whole row, it cancels exactly between numerator and
 * denominator. Keys need one constant shared by all keys a query sees; here it is the prefix
 * max  P_j = max(lmax_0 .. lmax_j):  key j is stored as exp(l - P_j), query i uses
 * C_i = P_{L_i - 1}, and every stored key gets the factor exp(P_j - C_i) <= 1 (the state is kept
 * at one constant C and rescaled by exp(C_old - C_new) as the max grows). C_i depends only on
 * keys the query sees, so no information flows from future positions (the official FAVOR+ code
 * takes the key max over the whole sequence, which does), and nothing can overflow: every
 * stored exponential is <= 1. No eps is added anywhere (the official code adds 1e-6 to every
 * feature). A denominator that is exactly 0 (float underflow, ReLU features that never
 * overlap, a trig sum hitting 0) gives a zero output row, the same as a query with no visible
 * key; trig denominators may be tiny or negative and are divided as they are. The float features
 * use a vectorised expf (lib/featmap.c) that returns 0 below e^-87 instead of a subnormal.
 *
 * Threads and bits: every loop, including the matrix products, gives each output element to
 * one thread with a fixed order of operations, so results do not depend on nthreads. The
 * products are our own (lib/gemm.c), not OpenBLAS: OpenBLAS 0.3.21's sgemm/dgemm results
 * change with its thread count (checked here: 64x64x128 differs by 1.7e-6 between 1 and 2
 * threads).
 *
 * Layers: the feature map is lib/featmap.c, the products lib/gemm.c; this file plans (resolve,
 * create) and describes the two kinds; lib/performer_exec.c holds the execute, written once
 * for both precisions (performer_exec.h); lib/performer_bwd.c the backward (performer_bwd.h),
 * whose scratch this file also allocates: O(256 (d + F + dv) + F dv + 64^2) more and four
 * numbers per query and key row (O(n_q + n_kv)), nothing n x F.
 */
#include "performer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int perf_force_portable;        /* test hook; read at plan creation */
void rk__perf_force_portable(int on) { perf_force_portable = on; }

/* ------------------------------------------------------------------------------------------ */
/* Resolve                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static int perf_resolve(rk_attn_config *c, rk_attn_info *info)
{
    const char *who = c->kind == RK_PERFORMER ? "performer" : "linear";
    size_t F, d = c->d, dv = c->d_v;
    int rc = rk__featmap_resolve(c, c->kind == RK_PERFORMER, who, &F);
    if (rc) return rc;
    if (c->rope == RK_ROPE_FEATURES && F % 2)
        RK_FAIL(RK_EDIM, "%s: rope = features rotates the %zu features in pairs, so the feature "
                "width must be even (%s)", who, F,
                c->kind == RK_PERFORMER ? "use an even n_features" : "d is odd");
    /* R: rows of the block buffers, no more than the plan can use */
    size_t m = c->kind == RK_PERFORMER ? c->n_features : 0;
    size_t R = c->n_q > c->n_kv ? c->n_q : c->n_kv, t1, t2, t3;
    if (R > RK_PERF_BLOCK) R = RK_PERF_BLOCK;
    if (rk__mul(R, F, &t1) || rk__mul(m, d, &t2) || rk__mul(F, dv, &t3) || rk__mul(R, m, &t2) ||
        !rk__fits_int(t1) || !rk__fits_int(t3))
        RK_FAIL(RK_EOVERFLOW, "%s: feature width %zu with d = %zu, d_v = %zu is too large",
                who, F, d, dv);
    if ((rc = rk__attn_rope_check(c, c->rope == RK_ROPE_FEATURES ? F : d, who))) return rc;
    if ((rc = rk__featmap_check_cost(c, c->kind == RK_PERFORMER, who))) return rc;
    info->feature_dim = F;
    return RK_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Create / destroy                                                                           */
/* ------------------------------------------------------------------------------------------ */

static void perf_destroy(void *impl)
{
    rk__perf *f = impl;
    if (!f) return;
    rk__featmap_free(&f->fm);
    rk_rope_destroy(f->rope_f);
    rk_rope_destroy(f->rope_qk);
    void *bufs[] = {
        f->S, f->z, f->kh, f->qh, f->kc, f->qc, f->kfac, f->ci, f->deni, f->vis,
        f->sf.x, f->sf.u, f->sf.qf, f->sf.kf, f->sf.kt, f->sf.kfr, f->sf.ztr, f->sf.a, f->sf.an, f->sf.ns, f->sf.ni, f->sf.st, f->sf.tmp,
        f->sd.x, f->sd.u, f->sd.qf, f->sd.kf, f->sd.kt, f->sd.kfr, f->sd.ztr, f->sd.a, f->sd.an, f->sd.ns, f->sd.ni, f->sd.st, f->sd.tmp,
        f->U, f->W, f->pk, f->dq_den, f->dq_c, f->dq_e, f->sx, f->kfirst,
        f->bd.xk, f->bd.qa, f->bd.kb, f->bd.g1, f->bd.g2, f->bd.g3, f->bd.gh, f->bd.vm, f->bd.vt,
        f->bd.c1, f->bd.c2, f->bd.c3, f->bd.stT,
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) rk__free(bufs[i]);
    rk__free(f);
}

#define TAKE(ptr, n, elt) \
    do { if (!((ptr) = rk__take(&p->bytes, (n), 1, (elt), p->ops->name, #ptr, &rc))) return rc; } while (0)

/* The rotation plans. Features: dim F, theta_t = base^(-2t/r) (r = rotary_dim or F), or
 * base^(-2t/d) with rope_freq_dim_head (base' = base^(r/d)). qk: dim d. Unless the caller set
 * table_len, the cos/sin table covers the positions the plan uses (at most 4096). */
static int make_rope(rk_attn *p, rk__perf *f)
{
    rk_attn_config *c = &p->cfg;
    if (c->rope == RK_ROPE_NONE) return RK_OK;
    int feat = c->rope == RK_ROPE_FEATURES;
    rk_rope_config rc = rk__attn_rope_cfg(c, feat ? f->fm.F : f->fm.d);
    double base = c->rope_cfg.base == 0.0 ? 10000.0 : c->rope_cfg.base;
    if (rc.table_len == 0) {
        int64_t last = c->pos_offset + (int64_t)c->n_kv;    /* positions < last (or negative) */
        rc.table_len = last <= 1 ? 1 : last > 4096 ? 4096 : (size_t)last;
    }
    rk_rope **out = feat ? &f->rope_f : &f->rope_qk;
    int rc_ = rk_rope_create(out, &rc);
    if (rc_) return rc_;
    c->rope_cfg = *rk_rope_get_config(*out);
    c->rope_cfg.base = base;          /* the user's base, also with rope_freq_dim_head */
    p->bytes += rk_rope_bytes(*out);
    return RK_OK;
}

static int perf_create(rk_attn *p)
{
    rk_attn_config *c = &p->cfg;
    const int favor = c->kind == RK_PERFORMER;
    const size_t d = c->d, dv = c->d_v, m = favor ? c->n_features : 0, F = p->info.feature_dim;
    /* R: rows of the block buffers, no more than the plan can use */
    size_t R = c->n_q > c->n_kv ? c->n_q : c->n_kv, T = RK_PERF_QCHUNK;
    if (R > RK_PERF_BLOCK) R = RK_PERF_BLOCK;

    rk__perf *f = rk__alloc(sizeof *f);
    if (!f) RK_FAIL(RK_ENOMEM, "%s: cannot allocate the plan", p->ops->name);
    p->impl = f;                      /* from here on attn.c's destroy frees a partial build */
    p->bytes += rk__alloc_size(sizeof *f);
    f->dv = dv;
    f->isa = perf_force_portable ? RK_ISA_PORTABLE : c->isa;   /* resolved: the CPU has it */
    c->isa = f->isa;                  /* rk_attn_get_config: the path that runs */
    int rc = rk__featmap_init(&f->fm, c, favor, 1, f->isa, &p->bytes, p->ops->name);
    if (rc) return rc;
    TAKE(f->S, F * dv, sizeof(double));
    TAKE(f->z, F, sizeof(double));
    TAKE(f->kh, R, sizeof(double));
    TAKE(f->qh, R, sizeof(double));
    TAKE(f->kc, R, sizeof(double));
    TAKE(f->qc, R, sizeof(double));
    TAKE(f->kfac, R, sizeof(double));
    TAKE(f->ci, R, sizeof(double));
    TAKE(f->deni, R, sizeof(double));
    TAKE(f->vis, R, sizeof(size_t));
#define TAKE_SCRATCH(S, ELT)                                                                    \
    do {                                                                                        \
        TAKE((S).x, R * d, ELT);   TAKE((S).u, R * m, ELT);                                     \
        TAKE((S).qf, R * F, ELT);  TAKE((S).kf, R * F, ELT);  TAKE((S).kt, F * T, ELT);         \
        TAKE((S).a, T * T, ELT);   TAKE((S).an, T * T, ELT);                                    \
        TAKE((S).ns, R * (dv + 8), ELT); TAKE((S).ni, T * dv, ELT);                             \
        TAKE((S).st, F * (dv + 8), ELT); TAKE((S).tmp, F * dv, ELT);                            \
        TAKE((S).kfr, R, ELT);     TAKE((S).ztr, F, ELT);                                       \
    } while (0)
    TAKE_SCRATCH(f->sf, sizeof(float));
    TAKE_SCRATCH(f->sd, sizeof(double));
#undef TAKE_SCRATCH
    /* the backward's (performer_bwd.c): per-row numbers, its state, its scratch (one double
     * buffer each, also the float path's) */
    if ((rc = rk__featmap_init_grad(&f->fm, &p->bytes, p->ops->name))) return rc;
    TAKE(f->U, F * dv, sizeof(double));
    TAKE(f->W, F, sizeof(double));
    TAKE(f->pk, c->n_kv, sizeof(double));
    TAKE(f->dq_den, c->n_q, sizeof(double));
    TAKE(f->dq_c, c->n_q, sizeof(double));
    TAKE(f->dq_e, c->n_q, sizeof(double));
    TAKE(f->sx, R, sizeof(double));
    TAKE(f->kfirst, T, sizeof(size_t));
    const int rot = c->rope == RK_ROPE_FEATURES;
#define TAKE_B(name, n) \
    do { TAKE(f->bd.name, (n), sizeof(double)); f->bf.name = (float *)(void *)f->bd.name; } while (0)
    TAKE_B(xk, R * d);
    TAKE_B(qa, rot ? R * F : 1);
    TAKE_B(kb, rot ? R * F : 1);
    TAKE_B(g1, R * F);  TAKE_B(g2, R * F);  TAKE_B(g3, R * F);
    TAKE_B(gh, R * dv); TAKE_B(vm, R * dv); TAKE_B(vt, dv * T);
    TAKE_B(c1, T * T);  TAKE_B(c2, T * T);  TAKE_B(c3, rot ? T * T : 1);
    TAKE_B(stT, dv * F);
#undef TAKE_B
    return make_rope(p, f);
}

static rk__featmap *perf_featmap(const rk_attn *p, const rk_rope **rope_qk,
                                 const rk_rope **rope_features)
{
    rk__perf *f = p->impl;
    if (rope_qk) *rope_qk = f->rope_qk;
    if (rope_features) *rope_features = f->rope_f;
    return &f->fm;
}

#define PERF_FIELDS (RK_FIELD_ROPE_QK | RK_FIELD_ROPE_FEATURES | RK_FIELD_FEATURES | RK_FIELD_ALIGN)

const rk__attn_kind rk__performer_kind = {
    .kind = RK_PERFORMER, .name = "performer",
    .fields = PERF_FIELDS | RK_FIELD_SCALE | RK_FIELD_KERNEL | RK_FIELD_PROJ,
    .resolve = perf_resolve, .create = perf_create, .destroy = perf_destroy,
    .exec_f = rk__perf_exec_f, .exec_d = rk__perf_exec_d, .featmap = perf_featmap,
    .bwd_f = rk__perf_bwd_f, .bwd_d = rk__perf_bwd_d,
};

const rk__attn_kind rk__linear_kind = {
    .kind = RK_LINEAR, .name = "linear",
    .fields = PERF_FIELDS | RK_FIELD_MAP,
    .resolve = perf_resolve, .create = perf_create, .destroy = perf_destroy,
    .exec_f = rk__perf_exec_f, .exec_d = rk__perf_exec_d, .featmap = perf_featmap,
    .bwd_f = rk__perf_bwd_f, .bwd_d = rk__perf_bwd_d,
};
