/* Naive double-precision reference for FAVOR+ and linear attention, the oracle of
 * tests/test_performer.c. Deliberately the slow, obvious way: O(n_q n_kv F), every key's
 * features recomputed for every query, its own feature maps, rotation and frequencies.
 * The only concession to range: each query subtracts its own max exponent from its features
 * and the max over the keys it sees from theirs, constants that cancel exactly in the ratio
 * (without them large inputs overflow even in double). Not part of the library. */
#ifndef RK_REF_LINEAR_H
#define RK_REF_LINEAR_H

#include <stdint.h>
#include "ropekit.h"

typedef struct {
    rk_kind       kind;        /* RK_PERFORMER or RK_LINEAR                                    */
    rk_kernel     kernel;      /* performer: positive, hyperbolic, trig                        */
    rk_map        map;         /* linear: elu+1, relu                                          */
    const double *w;           /* (m, d) projection as the plan reports it (before sqrt(scale)) */
    size_t        m;
    double        scale;       /* x' = sqrt(scale) x (performer only)                          */
    rk_rope_mode  rope;        /* none, qk (rotate x), features (eq. 19: rotate phi in the num) */
    rk_rope_style style;       /* pairs (2t, 2t+1) or (t, t + r/2)                              */
    double        base;        /* 0: 10000                                                     */
    size_t        rotary_dim;  /* r rotated channels (0: the whole rotated width)              */
    size_t        freq_dim;    /* theta_t = base^(-2t/freq_dim), t < r/2 (0: r)                */
    int           causal;
    int64_t       pos_offset;
} ref_linear_cfg;

/* Feature width F for inputs of width d. */
size_t ref_linear_width(const ref_linear_cfg *c, size_t d);
/* Largest exponent of x's features (0 for linear maps) and phi(x) exp(-shift) (F values). */
double ref_linear_lmax(const ref_linear_cfg *c, const double *x, size_t d);
void   ref_linear_phi(const ref_linear_cfg *c, const double *x, size_t d, double shift, double *phi);
/* Rotate x (n values; the first r in pairs) counter-clockwise to position pos. */
void   ref_linear_rotate(const ref_linear_cfg *c, double *x, size_t n, double pos);

/* out (n_q, d_v): q (n_q, d), k (n_kv, d), v (n_kv, d_v), any ld. Causal alignment and
 * positions as rk_attn (bottom-right, key j at pos_offset + j); keys j >= kv_len masked
 * (RK_ALL_KEYS: none). A row with no key or a zero denominator is zero. */
void ref_linear_attention(const ref_linear_cfg *c, const rk_matd *q, const rk_matd *k,
                          const rk_matd *v, rk_matd *out, size_t kv_len);

#endif
