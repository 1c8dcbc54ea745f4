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

/* Scratch of the backward (lib/performer_bwd.c) beyond the forward's buffers above, which it
 * reuses (x, u, qf, kf, kt, a, an, ni, st, tmp, kfr, ztr; a plan runs one call at a time).
 * Each buffer is one allocation sized for double that the float path views as float. */
#define RK__PERF_BWD_SCRATCH(REAL) struct {                                                  \
        REAL *xk;    /* (R, d)   key rows as the map saw them (rope = qk: rotated)          */ \
        REAL *qa;    /* (R, F)   query features rotated (eq. 19)                            */ \
        REAL *kb;    /* (R, F)   key features rotated (eq. 19)                              */ \
        REAL *g1;    /* (R, F)   gradients w.r.t. features and their partial sums           */ \
        REAL *g2;    /* (R, F)                                                              */ \
        REAL *g3;    /* (R, F)                                                              */ \
        REAL *gh;    /* (R, dv)  dout_i / D_i of the chunk's queries                         */ \
        REAL *vm;    /* (R, dv)  the state's share of dv                                     */ \
        REAL *vt;    /* (dv, T)  the masked keys' values, transposed                         */ \
        REAL *c1;    /* (T, T)   masked coefficients of the intra-chunk products            */ \
        REAL *c2;    /* (T, T)                                                              */ \
        REAL *c3;    /* (T, T)                                                              */ \
        REAL *stT;   /* (dv, F)  the state (S or U) transposed, in this precision            */ \
    }
typedef RK__PERF_BWD_SCRATCH(float)  rk__perf_bscratch_f;
typedef RK__PERF_BWD_SCRATCH(double) rk__perf_bscratch_d;

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
    unsigned char *over;     /* (R)     1: the row's finite result is beyond the type's range  */
    double    vsc;           /* the values' scale in S and the numerators: 1, or a power of 2
                                below 1 for values near the type's maximum (one execute)     */
    rk__perf_scratch_f sf;
    rk__perf_scratch_d sd;
    /* Backward (lib/performer_bwd.c), double in both precisions. O(n) per-row numbers and
     * the O(F dv) reverse state; nothing n x F. */
    double   *U;             /* (F, dv) sum_i exp(Rc - C_i) a_i (g_i / D_i)^T, queries so far  */
    double   *W;             /* (F)     sum_i exp(Rc - C_i) e_i phi(q_i)                       */
    double   *pk;            /* (n_kv)  key j's stabiliser constant P_j (prefix max)           */
    double   *dq_den;        /* (n_q)   D_i at C_i (0: the row has no gradient)                 */
    double   *dq_c;          /* (n_q)   C_i, the key constant query i uses                      */
    double   *dq_e;          /* (n_q)   e_i = -(g_i . out_i) / D_i                              */
    double   *sx;            /* (R)     the map backward's coefficient of x, per row            */
    size_t   *kfirst;        /* (T)     first row of a chunk that sees each masked key          */
    rk__perf_bscratch_f bf;  /* the same memory as bd, viewed as float                         */
    rk__perf_bscratch_d bd;
} rk__perf;

/* lib/performer_exec.c: the batch execute of both kinds. */
int rk__perf_exec_f(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v, rk_mat *out,
                    size_t kv_len);
int rk__perf_exec_d(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                    rk_matd *out, size_t kv_len);
/* Features of w rows x (w, d) ld ldx (rows row0 + t of the caller's matrix, at positions
 * pos0 + t) into xf (w, F), |x'|^2 / 2 into h[] and the stabiliser constants into cc[]:
 * mode 0 (queries): each row's own lmax; 1 (keys): the running max P_t = max(cin, lmax_0 ..
 * lmax_t); 2: the constants already in cc. rope = qk rotates the rows first, into xs (w, d);
 * *xo, *ldo (unless xo is NULL): the rows the map saw, what its backward needs. A finite row
 * whose |x'|^2 / 2 or projections overflow gives RK_ENONFINITE naming it (never NaN features
 * from finite inputs). lib/performer_exec.c, used by the backward as well. */
int rk__perf_features_f(rk__perf *f, int nt, const float *x, size_t ldx, size_t w, int64_t pos0,
                        size_t row0, int mode, double cin, double *h, double *cc, float *xs,
                        float *xf, const float **xo, size_t *ldo);
int rk__perf_features_d(rk__perf *f, int nt, const double *x, size_t ldx, size_t w,
                        int64_t pos0, size_t row0, int mode, double cin, double *h, double *cc,
                        double *xs, double *xf, const double **xo, size_t *ldo);
/* RK_ENONFINITE for a row that sees keys whose denominator underflowed to 0 although the map's
 * features are all positive (lib/performer_exec.c). */
int rk__perf_den_check_f(const rk__perf *f, const double *den, const size_t *vis, size_t ns,
                         size_t nr, size_t i0);
int rk__perf_den_check_d(const rk__perf *f, const double *den, const size_t *vis, size_t ns,
                         size_t nr, size_t i0);
/* S = e S + tmp over n values (the states' update; lib/performer_exec.c). */
void rk__perf_scale_add_f(int nt, double *S, double e, const float *tmp, size_t n);
void rk__perf_scale_add_d(int nt, double *S, double e, const double *tmp, size_t n);
/* lib/performer_bwd.c: the backward of both kinds (saves nothing; see there). */
int rk__perf_bwd_f(rk_attn *p, const rk_mat *q, const rk_mat *k, const rk_mat *v,
                   const rk_mat *out, const float *saved, const rk_mat *dout, rk_mat *dq,
                   rk_mat *dk, rk_mat *dv, size_t kv_len);
int rk__perf_bwd_d(rk_attn *p, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                   const rk_matd *out, const double *saved, const rk_matd *dout, rk_matd *dq,
                   rk_matd *dk, rk_matd *dv, size_t kv_len);
/* Test hook: plans created while on use the portable product kernels (same bits). */
void rk__perf_force_portable(int on);

#endif
