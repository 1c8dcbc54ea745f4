/* Naive double-precision reference for RK_RPE_FFT, the oracle of tests/test_rpe_fft.c: the
 * O(n_q n_kv F) sum of Luo et al.'s eq. 10, no FFT,
 *   out_i = sum_j c_ij phi(q_i).phi(k_j) v_j / sum_j c_ij phi(q_i).phi(k_j),
 *   c_ij = exp(b[j - i + n_q - 1]) over the keys query i sees (causal bottom-right, kv_len),
 * with the feature maps of tests/ref_linear.c (rope none). For range only, each query
 * subtracts its own max exponent and the max over the keys it sees, and the max bias entry it
 * uses (constants that cancel exactly); key features are computed once per key with the key's
 * own constant and rescaled per query. Not part of the library. */
#ifndef RK_REF_RPE_H
#define RK_REF_RPE_H

#include "ref_linear.h"

typedef struct {
    ref_linear_cfg lin;     /* kind, kernel / map, w, m, scale, causal (rope must be none) */
    const double  *bias;    /* n_q + n_kv - 1 values (offset -(n_kv-1) first) or NULL: 0 */
    int            l2norm;  /* q / |q|, k / |k| before the map (zero rows stay zero)       */
} ref_rpe_cfg;

/* out (n_q, d_v); any ld. A row with no visible key, only -inf bias entries, or a zero
 * denominator is zero. */
void ref_rpe_attention(const ref_rpe_cfg *c, const rk_matd *q, const rk_matd *k,
                       const rk_matd *v, rk_matd *out, size_t kv_len);

#endif
