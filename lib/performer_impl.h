/* Internals of FAVOR+ (RK_PERFORMER) and linear attention (RK_LINEAR), shared by
 * lib/features.c (projections, feature maps), lib/performer.c (batch execute) and
 * lib/recurrent.c (one token at a time).
 *
 * Feature maps. x' = x sqrt(scale) (d^(-1/4) x by default) and u_r = w_r . x', r < m; h = |x'|^2/2.
 * Every map is written phi_c(x) = norm * g(x) * exp(l(x) - c), with a log-scale l chosen so that
 * the stabiliser c can be any constant shared where it must cancel:
 *   positive    F = m    phi_r       = exp( u_r - h - c) / sqrt(m)
 *   hyperbolic  F = 2m   phi_r       = exp( u_r - h - c) / sqrt(2m),  phi_{m+r} = exp(-u_r - h - c) / sqrt(2m)
 *   trig        F = 2m   phi_r       = sin(u_r) exp(h - c) / sqrt(m), phi_{m+r} = cos(u_r) exp(h - c) / sqrt(m)
 *   elu+1       F = d    phi_r       = x_r + 1 (x_r > 0), exp(x_r) otherwise      (no c, no scale)
 *   relu        F = d    phi_r       = max(x_r, 0)                                (no c, no scale)
 * so E phi_0(x) . phi_0(y) = exp(x' . y') = exp(scale x . y) for the three random maps (Performer
 * Lemma 1) and phi_0 is the plain, unstabilised map. "lmax" of a row is the largest exponent:
 *   positive: max_r u_r - h     hyperbolic: max_r |u_r| - h     trig: h     linear: 0 (unused)
 * Features are stored feature-major per row: [exp(+u) | exp(-u)] and [sin | cos] halves.
 */
#ifndef RK_PERFORMER_IMPL_H
#define RK_PERFORMER_IMPL_H

#include "attn_impl.h"

/* Query rows per chunk in causal mode (the masked intra-chunk product is T x T) and rows per
 * block everywhere else (key blocks, bidirectional query chunks). RK_PERF_QCHUNK <= RK_PERF_BLOCK. */
#define RK_PERF_QCHUNK 64
#define RK_PERF_BLOCK  256
/* FAVOR+ default number of random features (the Performer paper's App. A.3 default). */
#define RK_PERF_DEFAULT_M 256

/* Per-precision scratch of the batch path (R rows = min(RK_PERF_BLOCK, max(n_q, n_kv))). */
#define RK__PERF_SCRATCH(REAL) struct {                                                      \
        REAL *x;     /* (R, d)   q or k rows rotated before the map (rope = qk)            */ \
        REAL *u;     /* (R, m)   projections x' W^T                                        */ \
        REAL *qf;    /* (R, F)   query features (rotated in place for rope = features)     */ \
        REAL *kf;    /* (R, F)   key features                                              */ \
        REAL *kt;    /* (F, T)   masked keys' features, transposed                         */ \
        REAL *a;     /* (T, T)   masked intra-chunk weights, denominator (unrotated)       */ \
        REAL *an;    /* (T, T)   the same for the numerator (rotated features)             */ \
        REAL *ns;    /* (R, dv+8) queries times the state [S | z]                          */ \
        REAL *ni;    /* (T, dv)  intra-chunk weights times V                               */ \
        REAL *st;    /* (F, dv+8) [S | z 0..0] in this precision (operand of the products) */ \
        REAL *tmp;   /* (F, dv)  one block's phi(K)^T V                                    */ \
        REAL *kfr;   /* (R)      kfac in this precision                                    */ \
        REAL *ztr;   /* (F)      one block's contribution to z                             */ \
    }
typedef RK__PERF_SCRATCH(float)  rk__perf_scratch_f;
typedef RK__PERF_SCRATCH(double) rk__perf_scratch_d;

typedef struct rk__perf {
    rk_kind   kind;
    rk_kernel kernel;        /* RK_PERFORMER                                                */
    rk_map    map;           /* RK_LINEAR                                                   */
    size_t    m;             /* random projections (0 for RK_LINEAR)                         */
    size_t    F;             /* feature width                                                */
    size_t    d, dv;
    double    scale, sq;     /* logit scale and sqrt(scale) (x' = sq x)                      */
    double    norm;          /* 1/sqrt(m) or 1/sqrt(2m) (hyperbolic); 1 for linear maps       */
    int       stab;          /* exp-type map: the stabiliser constants are used              */
    float    *w;             /* (m, d) projection as drawn or imported (rk_attn_proj)         */
    double   *wsd;           /* (m, d) (double)w * sq, for row-wise use                       */
    float    *wsT;           /* (d, m) w^T * sq, float operand of the products                */
    double   *wsdT;          /* (d, m) the same in double                                     */
    int       avx2;          /* use the AVX2+FMA product kernels                               */
    rk_rope  *rope_f;        /* rope = features: rotation of dim F                            */
    rk_rope  *rope_qk;       /* rope = qk: rotation of dim d                                  */
    /* Running state of the batch path, double in both precisions. */
    double   *S;             /* (F, dv) sum_j phi(k_j) v_j^T (rotated features for eq. 19)   */
    double   *z;             /* (F)     sum_j phi(k_j) (never rotated)                         */
    double   *kh, *qh;       /* (R)     |x'|^2 / 2 per key / query row                        */
    double   *kc, *qc;       /* (R)     per-row stabiliser (key: prefix max; query: own lmax)  */
    double   *kfac;          /* (R)     exp(kc_t - block's last constant): key t's state factor */
    double   *ci;            /* (T)     the key constant each query of a chunk uses           */
    double   *deni;          /* (T)     intra-chunk denominator                                */
    size_t   *vis;           /* (R)     keys visible to each query of the chunk               */
    double   *xd;            /* (R, d)  double rows for rk_attn_features_d                    */
    rk__perf_scratch_f sf;
    rk__perf_scratch_d sd;
} rk__perf;

/* lib/features.c --------------------------------------------------------------------------- */

/* Draw the (m, d) projection into w from cfg->seed (single-threaded GSL mt19937), or copy
 * cfg->proj_data. RK_EINVAL, RK_ENONFINITE, RK_ENOMEM, RK_EDEP. */
int rk__perf_projection(const rk_attn_config *cfg, size_t m, float *w);

/* One row: lmax from u (m projections; for linear maps: the row x itself) and h. */
double rk__feat_lmax_f(const rk__perf *f, const float *u, double h);
double rk__feat_lmax_d(const rk__perf *f, const double *u, double h);
/* One row of features with stabiliser constant c: phi (F values). */
void rk__feat_row_f(const rk__perf *f, const float *u, double h, double c, float *phi);
void rk__feat_row_d(const rk__perf *f, const double *u, double h, double c, double *phi);
/* Unstabilised features of one double row x (d values), using u (m) as scratch. */
void rk__feat_plain_d(const rk__perf *f, const double *x, double *u, double *phi);

/* lib/performer.c: the plan's implementation, for the recurrent state. */
const rk__perf *rk__perf_of(const rk_attn *p);   /* NULL for other kinds */
/* Test hook: plans created while on use the portable product kernels (same bits). */
void rk__perf_force_portable(int on);

#endif
