/* The FAVOR+ (RK_PERFORMER) and linear attention (RK_LINEAR) plan, shared by lib/performer.c
 * (resolve, create, the kind descriptions) and lib/performer_exec.c (the batch execute). The
 * feature map is lib/featmap.h; the recurrent state (lib/recurrent.c) reaches it through the
 * kind's featmap accessor, not through this struct. */
#ifndef RK_PERFORMER_H
#define RK_PERFORMER_H

#include "attn_impl.h"
#include "featmap.h"
#include "gemm.h"

/* Query rows per chunk in causal mode (the masked intra-chunk product is T x T) and rows per
 * block everywhere else (key blocks, bidirectional query chunks). RK_PERF_QCHUNK <= RK_PERF_BLOCK. */
#define RK_PERF_QCHUNK 64
#define RK_PERF_BLOCK  256

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
    rk__featmap fm;          /* the feature map and its projection                          */
    size_t    dv;
    rk_isa    isa;           /* kernel path of the products and the feature map (p->cfg.isa)  */
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
    rk__perf_scratch_f sf;
    rk__perf_scratch_d sd;
} rk__perf;

/* lib/performer_exec.c: the batch execute of both kinds. */
int rk__perf_exec_f(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v, rk_mat *out,
                    size_t kv_len);
int rk__perf_exec_d(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                    rk_matd *out, size_t kv_len);
/* Test hook: plans created while on use the portable product kernels (same bits). */
void rk__perf_force_portable(int on);

#endif
