/* Naive double-precision RoPE reference, the oracle of tests/test_rope.c. Deliberately the
 * slow, obvious way: its own frequency code (HF style, 1 / base^(2i/r), every scaling of
 * ropekit.h written from HF's modeling_rope_utils.py formulas) and, per position, the
 * explicit dim x dim matrix R of RoFormer eq. (15) (block-diagonal 2x2 rotations, identity on
 * the pass-through channels) multiplied by each head's vector. Not part of the library. */
#ifndef RK_REF_ROPE_H
#define RK_REF_ROPE_H

#include <stdint.h>
#include "ropekit.h"

/* Resolved rotary dim r, the r/2 scaled frequencies and the attention factor of cfg
 * (zero fields take the documented defaults). theta must hold r/2 values. */
size_t ref_rope_freqs(const rk_rope_config *cfg, double *theta, double *mscale);

/* R (dim x dim, row-major) at position pos: mscale * rotation on the rotated pairs, identity
 * elsewhere; inverse != 0 gives R^{-1} = rotation^T / mscale there. */
void ref_rope_matrix(const rk_rope_config *cfg, double pos, int inverse, double *R);

/* out = R(pos_t) in_t for each head of each row (in, out: (n, heads * dim), any ld; must not
 * overlap). Row t at pos[t] if pos != NULL, else pos0 + t. */
void ref_rope_apply(const rk_rope_config *cfg, const rk_matd *in, rk_matd *out, int64_t pos0,
                    const int64_t *pos, int inverse);

#endif
