/* Attention patterns of position encodings (`ropekit pattern`): for random inputs, the expected
 * attention score and weight as a function of relative distance, per encoding, and whether the
 * encoding is exactly relative (a shift test).
 *
 * Setup (one draw): a query q at position P + n - 1 and keys k_j at P + j, j = 0 .. n-1, so the
 * distance is dist = n - 1 - j (query minus key position; every key is in the query's past, the
 * causal view that xPos requires). q ~ N(0, I_d), k_j = corr q + sqrt(1 - corr^2) g_j,
 * g_j ~ N(0, I_d) (corr = 1: every key equals the query, the pure positional effect; corr = 0:
 * independent). Draws come from one GSL mt19937 seeded with `seed`, reseeded per encoding, so
 * every encoding sees the same inputs.
 *
 * Encodings. Softmax family, score = logit, weight = softmax over the n keys:
 *   none        scale q.k_j
 *   sinusoidal  scale (q + p_qpos).(k_j + p_kpos)                 (eq. 3-4, rk_sinusoidal_add_d)
 *   t5          scale q.k_j + b_t5(-dist)   (causal buckets 32 / 128, the stand-in table of
 *                                             rk_bias_t5; a trained table differs)
 *   alibi       scale q.k_j - slope dist                           (rk_bias_alibi)
 *   rope        scale (R_qpos q).(R_kpos k_j)                      (eq. 16, rk_rope_apply_d)
 *   xpos        rope with pair i times zeta_i^(dist / B)           (rk_xpos_zeta)
 * Linear family (FAVOR+ positive features, m of them, one projection drawn from `seed`):
 *   linear-rope-eq19  score = (R phi(q)).(R phi(k_j)), weight = score / sum_j phi(q).phi(k_j)
 *                     (eq. 19: the denominator is not rotated; weights can be negative)
 *   linear-rope-qk    score = phi(R q).phi(R k_j), weight = score / sum of scores
 *   rpe-fft           score = exp(b(-dist)) phi(q).phi(k_j) with the alibi bias,
 *                     weight = score / sum of scores                (Luo et al. eq. 10)
 * scale = 1/sqrt(d). Features come from the plans (rk_attn_features_d, unstabilised: fine for
 * the moderate norms here).
 *
 * Shift test: the same draw with every position moved by `shift`; shift_diff(dist) = the max
 * over draws of |score(P = shift) - score(P = 0)|. An encoding is exactly relative when the
 * largest shift_diff is within rounding: <= 1e-9 (1 + max |score|).
 * Library check: for the first draws, the weights from the library's own attention (n_q = 1,
 * V = identity, the encoding's plan: softmax with bias / RoPE / xPos, the FAVOR+ plans, rpe-fft)
 * against the weights computed here from the scores; the largest difference is reported.
 */
#ifndef RK_PATTERN_H
#define RK_PATTERN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    PAT_NONE = 0, PAT_SINUSOIDAL, PAT_T5, PAT_ALIBI, PAT_ROPE, PAT_XPOS,
    PAT_LIN_EQ19, PAT_LIN_QK, PAT_RPE_FFT, PAT_N
} pattern_enc;
extern const char *const pattern_enc_names[];     /* PAT_N names, NULL-terminated */
int pattern_is_linear(pattern_enc e);

typedef struct {
    size_t        n;               /* keys (positions 0 .. n-1 relative to P), >= 2          */
    size_t        d;               /* head width, even                                       */
    size_t        m;               /* FAVOR+ features of the linear family, even              */
    size_t        draws;           /* >= 1                                                   */
    double        corr;            /* in [0, 1]                                              */
    unsigned long seed;            /* nonzero                                                */
    double        alibi_slope;     /* >= 0                                                   */
    double        xpos_scale_base; /* > 0                                                    */
    int64_t       shift;           /* the shift test's offset (nonzero)                      */
    size_t        checks;          /* draws checked against the library (<= draws)           */
    unsigned      mask;            /* encodings to run: bit e for encoding e                 */
} pattern_cfg;

/* One encoding's results, per distance dist = 0 .. n-1 (arrays of n values). */
typedef struct {
    pattern_enc e;
    double *mean_score, *score_median, *score_q05, *score_q95;
    double *mean_weight, *weight_median, *weight_q05, *weight_q95;
    double *shift_diff;
    double  shift_max, score_absmax;
    int     exactly_relative;
    double  check_max;            /* max |library weight - weight here| over the checked draws */
} pattern_res;

/* Run one encoding. rk status (RK_ENOMEM, or the library's error; message in rk_last_error()).
 * pattern_res_free releases the arrays (safe on a zeroed struct). */
int  pattern_run(const pattern_cfg *c, pattern_enc e, pattern_res *out);
void pattern_res_free(pattern_res *r);

/* The TSV: a '#' configuration line, a '#' line of definitions, the header, one row per
 * (encoding, distance), then '# summary' lines per encoding. res[i] for the encodings in
 * c->mask, in enum order. 0, or RK_EIO if a write failed. */
int pattern_write(FILE *f, const pattern_cfg *c, const pattern_res *res, size_t nres);

#endif
