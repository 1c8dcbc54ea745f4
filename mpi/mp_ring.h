/* ropekit-mpi: the distributed attention of one sequence (mpi/mp_ring.c), shared by
 * `ropekit-mpi attend` and `ropekit-mpi bench`.
 *
 * Each rank holds its rows (an mp_block) of every (b, h) slice: q, k, v local arrays laid out
 * (b, heads, rows, width) contiguous, in the working precision (float or double). */
#ifndef RK_MP_RING_H
#define RK_MP_RING_H

#include "mp.h"

typedef struct {
    rk_attn_config cfg;        /* kind, causal, rope, scale, features ...; n_q = n_kv = n   */
    size_t   n, d, dv;         /* global rows, widths                                      */
    size_t   B, H, Hk;         /* batch, query heads, key/value heads                       */
    int      dbl;              /* working precision double                                 */
    int      zigzag;           /* softmax: zigzag layout                                    */
    const mp_block *blkv;      /* every rank's rows (index: rank)                          */
    /* local arrays (this rank's rows), element size 4 or 8 */
    void    *q, *k, *v, *out, *dout, *dq, *dk, *dvv;
    /* measurements */
    uint64_t sent_elems;       /* elements this rank sent (ring or scan)                   */
    double   t_compute, t_wait, t_total;
} mp_job;

/* The forward: softmax by ring attention (K, V travel, partials merged by log-sum-exp);
 * performer / linear by a prefix scan of key/value states (MPI_Exscan; bidirectional:
 * MPI_Allreduce). With dout: the ring backward too (softmax). Failures are recorded with
 * mp_fail (the caller's mp_agree reports them); every rank takes part in every exchange
 * whatever happened, so nothing hangs. */
void mp_attention(mp_job *j);

#endif
