/* Feature maps of kernelized attention (lib/featmap.c): FAVOR+ random features (positive,
 * hyperbolic, trig; Choromanski et al.) and the elu+1 / relu maps of linear attention
 * (Katharopoulos et al.), with the projection they draw and the exp stabiliser's helpers.
 * A leaf: it knows nothing of attention plans or files. RK_PERFORMER, RK_LINEAR and RK_RPE_FFT
 * plans each hold one.
 *
 * x' = x sqrt(scale) (d^(-1/4) x by default) and u_r = w_r . x', r < m; h = |x'|^2/2.
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
 *
 * Projection W (m, d), drawn once from cfg.seed with GSL's mt19937 (single-threaded, so it
 * depends on the seed alone), or copied from cfg.proj_data; see featmap.c for the draw order.
 */
#ifndef RK_FEATMAP_H
#define RK_FEATMAP_H

#include "rk_internal.h"

/* FAVOR+ default number of random features (the Performer paper's App. A.3 default). */
#define RK_FEATMAP_DEFAULT_M 256
/* Orthogonal projections costing more than this (Gram-Schmidt flops, ~4 d r^2 per block of r
 * rows) are refused at resolve, suggesting iid rows: about a minute on one core (d = 2048,
 * m = 2048 is 3.4e10; d = 4096, m = 4096 is refused). */
#define RK_FEATMAP_ORTHO_MAX_FLOPS 1e11

typedef struct rk__featmap {
    int       favor;         /* 1: FAVOR+ random features; 0: elu+1 / relu                */
    rk_kernel kernel;        /* FAVOR+                                                    */
    rk_map    map;           /* elu+1 / relu                                              */
    size_t    m;             /* random projections (0 for elu+1 / relu)                    */
    size_t    F;             /* feature width                                              */
    size_t    d;
    double    scale, sq;     /* logit scale and sqrt(scale) (x' = sq x)                    */
    double    norm;          /* 1/sqrt(m) or 1/sqrt(2m) (hyperbolic); 1 for linear maps     */
    int       stab;          /* exp-type map: the stabiliser constants are used (= favor)  */
    rk_isa    isa;           /* float rows' kernel path (portable, AVX2, AVX-512: same bits) */
    float    *w;             /* (m, d) projection as drawn or imported                      */
    double   *wsd;           /* (m, d) (double)w * sq, for row-wise use                     */
    float    *wsT;           /* (d, m) w^T * sq, float operand of products (NULL unless asked) */
    float    *wsf;           /* (m, d) w * sq in float, for the backward (rk__featmap_init_grad) */
    double   *wsdT;          /* (d, m) the same in double (NULL unless asked)               */
    double   *xs, *us;       /* one row of scratch: (d), (max(m, d)), for single-row use    */
} rk__featmap;

/* Defaults and validation of the feature fields of c for a FAVOR+ (favor = 1: kernel, proj,
 * proj_norm, seed or proj_data, n_features (0: RK_FEATMAP_DEFAULT_M), scale > 0) or an
 * elu+1 / relu map (favor = 0: map, n_features 0 or d, no proj_data). `who` names the plan
 * kind in messages. Sets c->n_features (m, or d for the linear maps) and *F. Allocates
 * nothing. RK_EINVAL, RK_EOVERFLOW. */
int rk__featmap_resolve(rk_attn_config *c, int favor, const char *who, size_t *F);

/* After the kind's own size checks, for a FAVOR+ map (favor != 0): RK_EINVAL for an orthogonal
 * projection (drawn, not given) costing more than RK_FEATMAP_ORTHO_MAX_FLOPS, with a message
 * suggesting iid rows. */
int rk__featmap_check_cost(const rk_attn_config *c, int favor, const char *who);

/* Build the map of a resolved config: allocate (counting the bytes into *bytes) and draw or
 * copy the projection; transposed != 0 also keeps the (d, m) operands wsT, wsdT. On failure
 * the caller still calls rk__featmap_free. isa: the float rows' kernel path (a path the CPU
 * has; every path gives the same bits). */
int rk__featmap_init(rk__featmap *fm, const rk_attn_config *c, int favor, int transposed,
                     rk_isa isa, size_t *bytes, const char *who);
void rk__featmap_free(rk__featmap *fm);

/* One row: lmax from u (m projections; for linear maps: the row x itself) and h. */
double rk__featmap_lmax_f(const rk__featmap *f, const float *u, double h);
double rk__featmap_lmax_d(const rk__featmap *f, const double *u, double h);
/* One row of features with stabiliser constant c: phi (F values). */
void rk__featmap_row_f(const rk__featmap *f, const float *u, double h, double c, float *phi);
void rk__featmap_row_d(const rk__featmap *f, const double *u, double h, double c, double *phi);
/* One double row x (d values): u (m) = projections (the row itself for linear maps, copied),
 * h = |x'|^2 / 2 (0 for linear maps); returns lmax. u needs max(m, d) slots. */
double rk__featmap_project_d(const rk__featmap *f, const double *x, double *u, double *h);
/* Unstabilised features of one double row x (d values), using u (max(m, d)) as scratch. */
void rk__featmap_plain_d(const rk__featmap *f, const double *x, double *u, double *phi);

/* Backward of the map. The stabiliser constant c is held fixed: where the constants cancel
 * (they do in attention's ratio) that is the exact gradient. For one row with input x (d
 * values, the row the map saw), features phi = phi_c(x) (F) and dphi = dL/dphi (F):
 *   FAVOR+: writes t (m values) and returns s with  dL/dx = W'^T t + s x,  W' = sqrt(scale) W:
 *     positive    t_r = dphi_r phi_r                                s = -scale sum dphi .* phi
 *     hyperbolic  t_r = dphi_r phi_r - dphi_{m+r} phi_{m+r}          s = -scale sum dphi .* phi
 *     trig        t_r = dphi_r phi_{m+r} - dphi_{m+r} phi_r          s = +scale sum dphi .* phi
 *   (d phi_r / dx = phi_r (W'_r - scale x) for exp(u_r - h - c); the minus branch has -W'_r;
 *    trig: d/dx [sin u_r exp(h - c)] = phi_{m+r} W'_r + phi_r scale x, cos likewise);
 *   elu+1, relu: writes dL/dx itself into t (d values: dphi (x > 0 ? 1 : phi), dphi [x > 0])
 *     and returns 0.
 * The sum in s is taken in double; float t holds float products. */
double rk__featmap_bwd_row_f(const rk__featmap *f, const float *x, const float *phi,
                             const float *dphi, float *t);
double rk__featmap_bwd_row_d(const rk__featmap *f, const double *x, const double *phi,
                             const double *dphi, double *t);
/* The float (m, d) operand W' of dL/dx = T W' (wsf) for a map built with transposed != 0;
 * nothing for elu+1 / relu. Counts the bytes into *bytes. */
int rk__featmap_init_grad(rk__featmap *fm, size_t *bytes, const char *who);

#endif
