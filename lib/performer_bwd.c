/* The backward of FAVOR+ (RK_PERFORMER) and linear attention (RK_LINEAR), both precisions,
 * bidirectional and causal, rope none / qk / features (eq. 19), key padding.
 *
 * Notation (lib/performer.c): query i sees keys j < L_i; a_i, b_j are the numerator's features
 * (rotated for eq. 19, phi(R x) for rope = qk, else phi(x)); the denominator uses the unrotated
 * phi(q_i) . phi(k_j). With g_i = dout_i,
 *   out_i = N_i / D_i,  N_i = sum_j (a_i . b_j) v_j,  D_i = sum_j phi(q_i) . phi(k_j),
 *   gh_i = g_i / D_i,   e_i = -(gh_i . out_i) = -(a_i . d a_i) / D_i,
 *   d a_i = S_i gh_i,   d phi(q_i) += e_i z_i    (S_i = sum_{j<L_i} b_j v_j^T, z_i = sum phi(k_j))
 *   d b_j = U_j v_j,    dv_j = U_j^T b_j,  d phi(k_j) += W_j
 *                       (U_j = sum_{i sees j} a_i gh_i^T, W_j = sum_{i sees j} e_i phi(q_i)),
 * then eq. 19's rotation (d phi = m R^T d a: rk_rope_backward), the map's backward
 * (featmap.h) and rope = qk's rotation (dq = m R^T dx). A row with no key or D_i = 0 has a zero
 * output and no gradient. e_i is formed from d a_i (gh_i . N_i = a_i^T S_i gh_i), not from the
 * forward's out, which is not read. The map's s x term (featmap.h) is left out for queries:
 * it is the derivative along phi(q_i) -> lambda phi(q_i), which leaves out_i unchanged, so it
 * is exactly 0 (computed, it would only add rounding).
 *
 * Stabilisers: the backward uses the forward's constants (a query's own lmax for its features;
 * key j at its prefix max P_j; query i's keys at C_i = P_{L_i - 1}), so with those features
 * out_i = N~_i / D~_i exactly and the constants cancel: the gradient of the stabilised
 * expression with the constants held fixed is the gradient of the function. Every factor
 * the backward forms is exp(P_j - C_i) <= 1 or a product of two such, so nothing overflows:
 * the reverse state U, W is kept at a constant Rc = the smallest C_i of the queries in it (it
 * only decreases as the reverse pass goes back; the state is rescaled by exp(Rc_new - Rc_old)
 * <= 1) and key j reads its share as exp(P_j - Rc) <= 1 (every query in the state sees j, so
 * C_i >= P_j).
 *
 * Passes. Pass 1 runs in the forward's order and chunking (causal: 64-row query chunks, the
 * state S, z of keys the whole chunk sees plus masked intra-chunk products; bidirectional:
 * 256-row chunks, every key in the state): D_i, gh_i, d a_i, e_i, dq. It keeps per query D_i,
 * C_i and e_i and per key P_j (4 numbers a row). Pass 2 (causal) runs over the chunks in
 * reverse: before chunk c joins the state (U, W, F x dv + F), the keys only later chunks see
 * take their share of it and the chunk's masked keys add the intra-chunk part; the keys all
 * chunks see are finished last. Bidirectional plans have no order, so pass 1 adds each chunk's
 * queries to U, W at once and pass 2 is one sweep over the keys. Causal: every query's and
 * every key's features are computed twice, never stored (nothing n x F or n x m x d); the
 * masked intra-chunk products run over the pairs that see each other only (per row or key, a
 * contiguous range), so a NaN in a row that a query (or, for dk, dv, a key) cannot see never
 * meets it, not even times zero.
 * Memory: the forward's scratch, the backward's O(256 (d + F + dv) + F dv + 64^2) scratch in
 * one set of double-sized buffers that the float path views as float, and the 4 per-row
 * numbers: O(n_q + n_kv), allocated at plan creation.
 * Cost, in F x dv products per row: the forward has two (a key joins S, a query reads S);
 * pass 1 has the same two (d a_i = S gh_i instead of the numerator), pass 2 three (a query
 * joins U; U v_j and U^T b_j per key). In n m d: the forward projects q and k once; the
 * backward twice (causal; bidirectional: queries once) plus the map's backward t W' once.
 * The masked intra-chunk products (causal) are about 2.5 times the forward's. So 2.5 to 3
 * times the forward's arithmetic in all.
 *
 * Threads and bits: as the forward, every product is lib/gemm.c's (each element one fixed
 * chain, whatever the thread count) and every per-row loop gives a row to one thread; no sum
 * is split across threads, so the bits do not depend on nthreads.
 */
#include "performer.h"

#include <math.h>
#include <string.h>

/* Below this many elements an OpenMP region costs more than it saves. */
#define RK_PERF_PAR_MIN 32768
#define MIN(a, b) ((a) < (b) ? (a) : (b))

#define REAL        float
#define MAT         rk_mat
#define SFX(x)      x##_f
#define SCR(f)      (&(f)->sf)
#define BSC(f)      (&(f)->bf)
#define WST(fm)     ((fm)->wsT)
#define WSF(fm)     ((fm)->wsf)
#define GEMM        rk__gemm_f
#define ROPE_APPLY  rk_rope_apply
#define ROPE_BWD    rk_rope_backward
#include "performer_bwd.h"
#undef REAL
#undef MAT
#undef SFX
#undef SCR
#undef BSC
#undef WST
#undef WSF
#undef GEMM
#undef ROPE_APPLY
#undef ROPE_BWD

#define REAL        double
#define MAT         rk_matd
#define SFX(x)      x##_d
#define SCR(f)      (&(f)->sd)
#define BSC(f)      (&(f)->bd)
#define WST(fm)     ((fm)->wsdT)
#define WSF(fm)     ((fm)->wsd)
#define GEMM        rk__gemm_d
#define ROPE_APPLY  rk_rope_apply_d
#define ROPE_BWD    rk_rope_backward_d
#include "performer_bwd.h"
#undef REAL
#undef MAT
#undef SFX
#undef SCR
#undef BSC
#undef WST
#undef WSF
#undef GEMM
#undef ROPE_APPLY
#undef ROPE_BWD
