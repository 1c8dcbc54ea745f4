/* Naive double-precision softmax attention, the oracle of tests/test_softmax.c. Deliberately
 * the obvious way: it rotates its own copies of q and k (its own cos/sin, built in double),
 * materialises the full n_q x n_kv score matrix with -inf where masked, and takes a row
 * softmax. Not part of the library; softmax only (other kinds keep their own references). */
#ifndef RK_REF_ATTN_H
#define RK_REF_ATTN_H

#include <stdint.h>
#include "ropekit.h"

/* RoPE as the reference applies it: theta_i = base^(-2i/r), i < r/2, pairs (2i, 2i+1)
 * (interleaved) or (i, i + r/2) (half) rotated counter-clockwise by pos * theta_i;
 * channels r .. d-1 untouched. Positions: key j at pos_offset + j, query i at
 * pos_offset + (n_kv - n_q) + i (the queries are the last n_q positions). */
typedef struct {
    rk_rope_style style;
    double        base;         /* 0: 10000 */
    size_t        rotary_dim;   /* 0: d     */
    int64_t       pos_offset;
} ref_attn_rope;

/* Rotate x (d values) to position pos. */
void ref_attn_rotate(double *x, size_t d, const ref_attn_rope *rope, double pos);

/* out (n_q, d_v) = softmax(scale * Rq K'^T, masked) V. q (n_q, d), k (n_kv, d), v (n_kv, d_v),
 * any ld. causal: query i sees keys j <= i + n_kv - n_q (bottom-right); keys j >= kv_len are
 * masked (RK_ALL_KEYS: none). A row that sees no key is zero. rope: NULL for none. */
void ref_softmax_attention(const rk_matd *q, const rk_matd *k, const rk_matd *v, rk_matd *out,
                           double scale, int causal, size_t kv_len, const ref_attn_rope *rope);

/* xPos as the reference applies it: pair i (of the rotary pairs of `rope`) of the rotated q at
 * position n and k at position m contributes zeta_i^((n - m)/B) (q_a k_a + q_b k_b), with
 * zeta_i = (2i/r + gamma)/(1 + gamma) written out here, no centring of the exponent. */
typedef struct {
    double scale_base;   /* B */
    double gamma;        /* 0: 0.4 */
} ref_attn_xpos;

/* The same with a relative bias and xPos: bias (n_q + n_kv - 1 values, NULL: none) adds
 * bias[j - i + n_q - 1] to the logit of query i and key j (-inf: weight 0; a row whose every
 * seen key is -inf is zero); xpos (NULL: none) needs rope. */
void ref_softmax_attention_ex(const rk_matd *q, const rk_matd *k, const rk_matd *v, rk_matd *out,
                              double scale, int causal, size_t kv_len, const ref_attn_rope *rope,
                              const double *bias, const ref_attn_xpos *xpos);

#endif
