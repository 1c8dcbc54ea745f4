/* Float32 kernels of exact softmax attention, shared by lib/softmax.c (the tile driver) and
 * the tests. Three implementations of the same kernels (five products and softmax passes, two
 * packing copies): portable C (the reference semantics, and the fallback), AVX2+FMA and
 * AVX-512 (F, DQ, BW, VL), picked once per plan at create time from the plan's resolved isa
 * and what the CPU reports (__builtin_cpu_supports).
 * All work on the packed layouts the driver builds:
 *
 *   qs   (n_q_pad, d)            queries, already multiplied by scale * log2(e), ld = d
 *   kt   (n_kv / 16, d, 16)      keys in panels of 16: kt[p][c][jj] = k[16 p + jj][c]
 *   vp   (n_kv, d_v_pad)         values, ld = d_v_pad (a multiple of 16, zero padding)
 *
 * Logits live in the log2 domain (s = log2(e) * scale * q.k), so probabilities are exp2(s - m).
 */
#ifndef RK_SOFTMAX_KERN_H
#define RK_SOFTMAX_KERN_H

#include <stddef.h>

#include "ropekit.h"

#define RK_SM_MR 6     /* query rows per micro-kernel block                     */
#define RK_SM_NR 16    /* keys per panel, value columns per micro-kernel block  */

typedef struct {
    const char *name;
    /* s[r][j] = q_r . k_j for r < RK_SM_MR and j < 16 npan.
     * q is (RK_SM_MR, d) ld d; kt points at npan consecutive panels; s is (RK_SM_MR, .) ld lds. */
    void (*qk)(const float *q, size_t d, const float *kt, size_t npan, float *s, size_t lds);
    /* The online softmax of one block of RK_SM_MR rows of s (ld lds), in place over the first
     * ncol columns (ncol a multiple of 16). Row r sees its first nv[r] columns: the others are
     * masked by position (overwritten with -inf whatever they hold, so a NaN or Inf logit of a
     * key the row cannot see is discarded before the max). A row with nv[r] = 0 is left out (p = 0, alpha = 1, m and l unchanged); the
     * others become p = exp2(s - m_new) with m_new = max(m_old, row max), l = alpha l + sum p,
     * and alpha[r] = exp2(m_old - m_new) rescales that row's accumulator. */
    void (*rows)(float *s, size_t lds, size_t ncol, const size_t *nv, float *m, double *l,
                 float *alpha);
    /* o[r][:] = alpha[r] * o[r][:] + sum_{j < nv[r]} p[r][j] v[j][:] for r < RK_SM_MR over
     * ncols columns (a multiple of 16). p ld ldp, v ld ldv, o ld ldo. Row r reads only value
     * rows j < nv[r] (the same nv as rows()): a masked weight is 0, but 0 * Inf or 0 * NaN in
     * a value row the row must not see would still be NaN, so the kernels never form that
     * product. Keys every row sees go through the full 6-row micro-kernel; the few keys only
     * some rows see (at most 5 in a causal diagonal block) are added row by row. */
    void (*pv)(const float *p, size_t ldp, const float *v, size_t ldv, const size_t *nv,
               size_t ncols, const float *alpha, float *o, size_t ldo);
    /* Backward, per block of RK_SM_MR rows over ncol columns (a multiple of 16); row r sees
     * its first nv[r] columns. s holds log2-domain logits, dp the products dout_r . v_j. For
     * the columns a row sees: p = exp2(s - lse[r]) and ds = p (dp - dd[r]); every other column
     * (and every column of a row whose lse is -inf: it saw no weight) gets p = ds = 0 exactly,
     * whatever s and dp hold (they may be NaN from keys the row must not see). p overwrites s,
     * ds overwrites dp. */
    void (*rows_bwd)(float *s, float *dp, size_t lds, size_t ncol, const size_t *nv,
                     const float *lse, const float *dd);
    /* Transposed accumulation for the key side: for the nk <= RK_SM_MR keys j of a block
     * (columns j of w, rows j of o), o[j][c] += sum_{r = rs[j]}^{nr - 1} w[r][j] x[r][c] over
     * ncols columns (a multiple of 16), rows in increasing order. Rows before rs[j] are never
     * read for key j (they cannot see it: 0 * NaN would still be NaN). w ld ldw, x ld ldx, o ld
     * ldo. */
    void (*tpv)(const float *w, size_t ldw, const float *x, size_t ldx, size_t nr,
                const size_t *rs, size_t nk, size_t ncols, float *o, size_t ldo);
    /* Packing, exact copies (every path gives the same bits). One panel: kt[c][jj] =
     * k[jj][c] for jj < jn (jn <= 16) and 0 for jn <= jj < 16, c < d; k ld ldk. Returns the
     * largest |k| it copied (NaN ignored, as in fmaxf). */
    float (*pack_k)(const float *k, size_t ldk, size_t jn, size_t d, float *kt);
    /* Rows: vp[j][c] = v[j][c] for j < jn, c < dv (v ld ldv, vp ld ldp; columns dv .. ldp-1
     * untouched). Returns the largest |v| it copied (NaN ignored; 0 when nothing). */
    float (*pack_v)(const float *v, size_t ldv, size_t jn, size_t dv, float *vp, size_t ldp);
    /* The path these kernels are (RK_ISA_PORTABLE, RK_ISA_AVX2, RK_ISA_AVX512): what a plan
     * records in its config's isa. */
    rk_isa isa;
} rk__sm_kernels;

/* The kernels of a plan's path (its resolved isa; see rk_isa): AVX-512 for RK_ISA_AVX512,
 * AVX2+FMA for RK_ISA_AVX2 (each only where the CPU has it; otherwise the next narrower), the
 * portable ones otherwise or when the tests forced them with rk__sm_force_portable(1)
 * (process-wide, read at plan creation). The set's isa field names the path taken. */
const rk__sm_kernels *rk__sm_kernels_for(rk_isa isa);
void rk__sm_force_portable(int on);

/* The vectorised exp2 of the AVX2 kernels on an array (for accuracy tests): x[i] = 2^x[i].
 * Results below 2^-126.5 flush to 0 (so -inf -> 0), NaN stays NaN. Returns 0 (nothing done)
 * when the CPU lacks AVX2+FMA. */
int rk__sm_exp2_array(float *x, size_t n);
/* The same for one path: RK_ISA_AVX2 or RK_ISA_AVX512 (the same bits lane by lane: one
 * algorithm); 0 when the CPU lacks that path or isa names no vector exp2. */
int rk__sm_exp2_array_isa(rk_isa isa, float *x, size_t n);

#endif
