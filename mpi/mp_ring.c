/* Distributed attention of one sequence over the ranks (see mp_ring.h).
 *
 * Exact softmax: ring attention (Liu et al., arXiv 2310.01889). Rank r holds the queries of
 * its rows and starts with the keys and values of the same rows; at step s = 0 .. P-1 it holds
 * those of rank (r - s) mod P and computes, for each (query segment, key segment) pair the
 * causal mask does not hide entirely, the training forward of a plan aligned with
 * RK_ALIGN_Q_START (global positions: RoPE, xPos and the causal mask follow), merging the
 * partial into its accumulator by log-sum-exp (rk_attn_merge) in that fixed order. While it
 * computes, the block moves on: MPI_Isend to rank r + 1 and MPI_Irecv from r - 1, double
 * buffered. Each rank sends P - 1 blocks of K and V: (P - 1) (n / P) (d + d_v) elements, the
 * model's 2 (P - 1) n d / P for d_v = d. Zigzag layout: the 2P chunks of the sequence go to
 * ranks 0, 1, .., P-1, P-1, .., 0, so every rank has the same causal work.
 * Backward (with dout): the same ring once more with the merged (global) output and lse; each
 * pair's rk_attn_backward gives its share of dq (kept) and of dk, dv (added to accumulators
 * that travel with the block and come home after P shifts). The accumulators change during a
 * step, so the backward's shifts follow the compute (no overlap).
 *
 * Performer / linear (LASP, arXiv 2404.02882): each rank reduces its keys to the state
 * (rk_attn_kv_reduce, F x (d_v + 1) in double at one constant), MPI_Exscan with a user op
 * (rk_kv_state_merge, declared non-commutative so ranks combine in order) gives it the state of
 * the ranks before it, and rk_attn_execute_state runs its queries from there (bidirectional:
 * MPI_Allreduce of every state, then the queries against it alone, kv_len = 0). Positions are
 * global through pos_offset.
 *
 * Every exchange happens whatever a rank's computation did: a failure is recorded (mp_fail)
 * and reported at the caller's mp_agree. */
#include "mp_ring.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ES(j) ((j)->dbl ? sizeof(double) : sizeof(float))

/* A (B, heads, len, w) tensor view of rows [o, o + len) of a local array of R rows. */
static rk_tensor tview_f(void *base, size_t B, size_t Hx, size_t R, size_t o, size_t len, size_t w)
{
    rk_tensor t = { (float *)base + o * w, B, Hx, len, w, Hx * R * w, R * w, w };
    return t;
}
static rk_tensord tview_d(void *base, size_t B, size_t Hx, size_t R, size_t o, size_t len,
                          size_t w)
{
    rk_tensord t = { (double *)base + o * w, B, Hx, len, w, Hx * R * w, R * w, w };
    return t;
}

static void *xcalloc(size_t n, size_t es)
{
    return calloc(n ? n : 1, es);
}

/* The plan of the (query segment qs, key segment ks) pair. */
static int pair_plan(const mp_job *j, mp_seg qs, mp_seg ks, rk_attn **p)
{
    rk_attn_config c = j->cfg;
    c.n_q = qs.len;
    c.n_kv = ks.len;
    c.d = j->d;
    c.d_v = j->dv;
    c.batch = j->B;
    c.heads = j->H;
    c.kv_heads = j->Hk;
    c.align = RK_ALIGN_Q_START;
    c.q_start = (int64_t)qs.start - (int64_t)ks.start;
    c.pos_offset = j->cfg.pos_offset + (int64_t)ks.start;
    int rc = rk_attn_create(p, &c);
    if (rc) mp_fail("cannot create the attention plan of rows %zu.. x keys %zu..: %s",
                    qs.start, ks.start, rk_last_error());
    return rc;
}

/* The pair hides every key from every query (causal, keys after the last query). */
static int hidden(const mp_job *j, mp_seg qs, mp_seg ks)
{
    return j->cfg.causal && qs.start + qs.len <= ks.start;
}

/* ---- softmax forward --------------------------------------------------------------------- */

typedef struct {
    size_t R, maxR, maxseg, Sq, Sk;
    void  *kv[2];            /* [K | V (| dK | dV)] of a block, two buffers               */
    void  *tmp, *tq, *tk, *tv;
    void  *lse, *tl;         /* (Sq, R) accumulator lse; (Sq, maxseg) a partial's          */
} ring_bufs;

static size_t kv_elems(const mp_job *j, size_t R, int bwd)
{
    return j->B * j->Hk * R * (j->d + j->dv) * (bwd ? 2 : 1);
}

/* Block of R rows at kv: K (Sk, R, d) then V (Sk, R, dv), then dK, dV. */
static void *kv_part(const mp_job *j, void *kv, size_t R, int which)
{
    const size_t Sk = j->B * j->Hk, es = ES(j);
    size_t off = which == 0 ? 0 : which == 1 ? Sk * R * j->d
               : which == 2 ? Sk * R * (j->d + j->dv) : Sk * R * (2 * j->d + j->dv);
    return (char *)kv + off * es;
}

/* The forward partials of this rank's queries against the block of rank src (in kv),
 * merged into out / lse. */
static void fwd_block(mp_job *j, ring_bufs *rb, int src, void *kv)
{
    const mp_block *me = &j->blkv[mp_rank], *sb = &j->blkv[src];
    const size_t R = me->rows, Rs = sb->rows, dv = j->dv;
    void *K = kv_part(j, kv, Rs, 0), *V = kv_part(j, kv, Rs, 1);
    size_t qo = 0;
    for (int a = 0; a < me->nseg; qo += me->seg[a].len, a++) {
        size_t ko = 0;
        const mp_seg qs = me->seg[a];
        for (int b = 0; b < sb->nseg; ko += sb->seg[b].len, b++) {
            const mp_seg ks = sb->seg[b];
            if (!qs.len || !ks.len || hidden(j, qs, ks) || mp_failed()) continue;
            rk_attn *p;
            if (pair_plan(j, qs, ks, &p)) continue;
            int rc;
            const size_t L = qs.len;
            if (j->dbl) {
                rk_tensord Q = tview_d(j->q, j->B, j->H, R, qo, L, j->d);
                rk_tensord Kt = tview_d(K, j->B, j->Hk, Rs, ko, ks.len, j->d);
                rk_tensord Vt = tview_d(V, j->B, j->Hk, Rs, ko, ks.len, dv);
                rk_tensord O = tview_d(rb->tmp, j->B, j->H, L, 0, L, dv);
                rc = rk_attn_forward_batch_d(p, &Q, &Kt, &Vt, &O, NULL, rb->tl);
                for (size_t s = 0; s < rb->Sq && !rc; s++) {
                    rk_matd acc = rk_matd_view((double *)j->out + (s * R + qo) * dv, L, dv, dv);
                    rk_matd part = rk_matd_view((double *)rb->tmp + s * L * dv, L, dv, dv);
                    rc = rk_attn_merge_d(&acc, (double *)rb->lse + s * R + qo, &part,
                                         (double *)rb->tl + s * L);
                }
            } else {
                rk_tensor Q = tview_f(j->q, j->B, j->H, R, qo, L, j->d);
                rk_tensor Kt = tview_f(K, j->B, j->Hk, Rs, ko, ks.len, j->d);
                rk_tensor Vt = tview_f(V, j->B, j->Hk, Rs, ko, ks.len, dv);
                rk_tensor O = tview_f(rb->tmp, j->B, j->H, L, 0, L, dv);
                rc = rk_attn_forward_batch(p, &Q, &Kt, &Vt, &O, NULL, rb->tl);
                for (size_t s = 0; s < rb->Sq && !rc; s++) {
                    rk_mat acc = rk_mat_view((float *)j->out + (s * R + qo) * dv, L, dv, dv);
                    rk_mat part = rk_mat_view((float *)rb->tmp + s * L * dv, L, dv, dv);
                    rc = rk_attn_merge(&acc, (float *)rb->lse + s * R + qo, &part,
                                       (float *)rb->tl + s * L);
                }
            }
            if (rc)
                mp_fail("attention of rows %zu..%zu against keys %zu..%zu: %s", qs.start,
                        qs.start + qs.len - 1, ks.start, ks.start + ks.len - 1, rk_last_error());
            rk_attn_destroy(p);
        }
    }
}

/* The backward shares of this rank's queries against the block of rank src: dq into j->dq,
 * dk and dv added to the block's travelling accumulators. */
static void bwd_block(mp_job *j, ring_bufs *rb, int src, void *kv)
{
    const mp_block *me = &j->blkv[mp_rank], *sb = &j->blkv[src];
    const size_t R = me->rows, Rs = sb->rows, d = j->d, dv = j->dv, es = ES(j);
    const size_t Sq = rb->Sq, Sk = rb->Sk;
    void *K = kv_part(j, kv, Rs, 0), *V = kv_part(j, kv, Rs, 1);
    void *DK = kv_part(j, kv, Rs, 2), *DV = kv_part(j, kv, Rs, 3);
    size_t qo = 0;
    for (int a = 0; a < me->nseg; qo += me->seg[a].len, a++) {
        size_t ko = 0;
        const mp_seg qs = me->seg[a];
        for (int b = 0; b < sb->nseg; ko += sb->seg[b].len, b++) {
            const mp_seg ks = sb->seg[b];
            if (!qs.len || !ks.len || hidden(j, qs, ks) || mp_failed()) continue;
            rk_attn *p;
            if (pair_plan(j, qs, ks, &p)) continue;
            const size_t L = qs.len, Lk = ks.len;
            /* the saved lse of the segment's rows, (Sq, L) */
            for (size_t s = 0; s < Sq; s++)
                memcpy((char *)rb->tl + s * L * es, (char *)rb->lse + (s * R + qo) * es, L * es);
            int rc;
            if (j->dbl) {
                rk_tensord Q = tview_d(j->q, j->B, j->H, R, qo, L, d);
                rk_tensord Kt = tview_d(K, j->B, j->Hk, Rs, ko, Lk, d);
                rk_tensord Vt = tview_d(V, j->B, j->Hk, Rs, ko, Lk, dv);
                rk_tensord O = tview_d(j->out, j->B, j->H, R, qo, L, dv);
                rk_tensord G = tview_d(j->dout, j->B, j->H, R, qo, L, dv);
                rk_tensord TQ = tview_d(rb->tq, j->B, j->H, L, 0, L, d);
                rk_tensord TK = tview_d(rb->tk, j->B, j->Hk, Lk, 0, Lk, d);
                rk_tensord TV = tview_d(rb->tv, j->B, j->Hk, Lk, 0, Lk, dv);
                rc = rk_attn_backward_batch_d(p, &Q, &Kt, &Vt, &O, rb->tl, &G, &TQ, &TK, &TV, NULL);
                if (!rc) {
                    double *dq = j->dq, *tq = rb->tq, *dk = DK, *tk = rb->tk, *dvv = DV, *tv = rb->tv;
                    for (size_t s = 0; s < Sq; s++)
                        for (size_t i = 0; i < L * d; i++) dq[(s * R + qo) * d + i] += tq[s * L * d + i];
                    for (size_t s = 0; s < Sk; s++) {
                        for (size_t i = 0; i < Lk * d; i++) dk[(s * Rs + ko) * d + i] += tk[s * Lk * d + i];
                        for (size_t i = 0; i < Lk * dv; i++) dvv[(s * Rs + ko) * dv + i] += tv[s * Lk * dv + i];
                    }
                }
            } else {
                rk_tensor Q = tview_f(j->q, j->B, j->H, R, qo, L, d);
                rk_tensor Kt = tview_f(K, j->B, j->Hk, Rs, ko, Lk, d);
                rk_tensor Vt = tview_f(V, j->B, j->Hk, Rs, ko, Lk, dv);
                rk_tensor O = tview_f(j->out, j->B, j->H, R, qo, L, dv);
                rk_tensor G = tview_f(j->dout, j->B, j->H, R, qo, L, dv);
                rk_tensor TQ = tview_f(rb->tq, j->B, j->H, L, 0, L, d);
                rk_tensor TK = tview_f(rb->tk, j->B, j->Hk, Lk, 0, Lk, d);
                rk_tensor TV = tview_f(rb->tv, j->B, j->Hk, Lk, 0, Lk, dv);
                rc = rk_attn_backward_batch(p, &Q, &Kt, &Vt, &O, rb->tl, &G, &TQ, &TK, &TV, NULL);
                if (!rc) {
                    float *dq = j->dq, *tq = rb->tq, *dk = DK, *tk = rb->tk, *dvv = DV, *tv = rb->tv;
                    for (size_t s = 0; s < Sq; s++)
                        for (size_t i = 0; i < L * d; i++) dq[(s * R + qo) * d + i] += tq[s * L * d + i];
                    for (size_t s = 0; s < Sk; s++) {
                        for (size_t i = 0; i < Lk * d; i++) dk[(s * Rs + ko) * d + i] += tk[s * Lk * d + i];
                        for (size_t i = 0; i < Lk * dv; i++) dvv[(s * Rs + ko) * dv + i] += tv[s * Lk * dv + i];
                    }
                }
            }
            if (rc)
                mp_fail("backward of rows %zu..%zu against keys %zu..%zu: %s", qs.start,
                        qs.start + L - 1, ks.start, ks.start + Lk - 1, rk_last_error());
            rk_attn_destroy(p);
        }
    }
}

/* One ring shift: send `cur` (the block of rank src) on, receive the block of rank src - 1
 * into `nxt`. Returns the requests to wait for (started, not waited). */
static void shift_start(mp_job *j, void *cur, int src, size_t elts_cur, void *nxt, size_t elts_nxt,
                        MPI_Request req[2])
{
    (void)src;
    const int P = mp_size, next = (mp_rank + 1) % P, prev = (mp_rank + P - 1) % P;
    MPI_Datatype t = j->dbl ? MPI_DOUBLE : MPI_FLOAT;
    int e1 = MPI_Irecv(nxt, (int)elts_nxt, t, prev, 18, MPI_COMM_WORLD, &req[0]);
    int e2 = MPI_Isend(cur, (int)elts_cur, t, next, 18, MPI_COMM_WORLD, &req[1]);
    if (e1 != MPI_SUCCESS || e2 != MPI_SUCCESS) mp_fail("MPI_Isend / MPI_Irecv failed");
    j->sent_elems += elts_cur;
}

static void shift_wait(mp_job *j, MPI_Request req[2])
{
    double t0 = mp_now();
    if (MPI_Waitall(2, req, MPI_STATUSES_IGNORE) != MPI_SUCCESS) mp_fail("MPI_Waitall failed");
    j->t_wait += mp_now() - t0;
}

static void ring_softmax(mp_job *j)
{
    const int P = mp_size, r = mp_rank;
    const int bwd = j->dout != NULL;
    const mp_block *me = &j->blkv[r];
    const size_t R = me->rows, es = ES(j), d = j->d, dv = j->dv;
    ring_bufs rb;
    memset(&rb, 0, sizeof rb);
    rb.R = R;
    rb.Sq = j->B * j->H;
    rb.Sk = j->B * j->Hk;
    for (int p = 0; p < P; p++) {
        if (j->blkv[p].rows > rb.maxR) rb.maxR = j->blkv[p].rows;
        for (int s = 0; s < j->blkv[p].nseg; s++)
            if (j->blkv[p].seg[s].len > rb.maxseg) rb.maxseg = j->blkv[p].seg[s].len;
    }
    const size_t cap = kv_elems(j, rb.maxR, bwd);
    if (cap > (size_t)INT32_MAX) {
        mp_fail("a block of K and V has %zu elements, more than one MPI message of int count "
                "takes: use more ranks", cap);
    }
    rb.kv[0] = xcalloc(cap, es);
    rb.kv[1] = xcalloc(cap, es);
    rb.tmp = xcalloc(rb.Sq * rb.maxseg * dv, es);
    rb.tl = xcalloc(rb.Sq * rb.maxseg, es);
    rb.lse = xcalloc(rb.Sq * R, es);
    if (bwd) {
        rb.tq = xcalloc(rb.Sq * rb.maxseg * d, es);
        rb.tk = xcalloc(rb.Sk * rb.maxseg * d, es);
        rb.tv = xcalloc(rb.Sk * rb.maxseg * dv, es);
    }
    if (!rb.kv[0] || !rb.kv[1] || !rb.tmp || !rb.tl || !rb.lse ||
        (bwd && (!rb.tq || !rb.tk || !rb.tv)))
        mp_fail("out of memory for the ring buffers (%zu elements)", 2 * cap);
    /* every rank has its buffers before any exchange starts (else all stop here) */
    mp_agree(0);
    const int ok = 1;
    /* own block first: K, V (and zero dK, dV) */
    {
        memcpy(kv_part(j, rb.kv[0], R, 0), j->k, rb.Sk * R * d * es);
        memcpy(kv_part(j, rb.kv[0], R, 1), j->v, rb.Sk * R * dv * es);
        memset(j->out, 0, rb.Sq * R * dv * es);
        for (size_t i = 0; i < rb.Sq * R; i++) {
            if (j->dbl) ((double *)rb.lse)[i] = -INFINITY;
            else ((float *)rb.lse)[i] = -INFINITY;
        }
    }
    /* ring forward: compute on cur while it moves on */
    double t0 = mp_now();
    int cur = 0;
    for (int s = 0; s < P; s++) {
        const int src = (r - s + P) % P, nsrc = (r - s - 1 + 2 * P) % P;
        MPI_Request req[2] = { MPI_REQUEST_NULL, MPI_REQUEST_NULL };
        if (s < P - 1 && ok)
            shift_start(j, rb.kv[cur], src, kv_elems(j, j->blkv[src].rows, 0), rb.kv[1 - cur],
                        kv_elems(j, j->blkv[nsrc].rows, 0), req);
        double tc = mp_now();
        if (ok) fwd_block(j, &rb, src, rb.kv[cur]);
        j->t_compute += mp_now() - tc;
        if (s == 0) mp_test_kill("ring");
        if (s < P - 1 && ok) {
            shift_wait(j, req);
            /* the received block's K, V sit at the offsets of its own row count */
            cur = 1 - cur;
        }
    }
    /* rows that saw nothing keep zeros; the float path's training forward refused lse beyond
     * float already */
    if (bwd && ok) {
        /* ring backward: the block (K, V, dK, dV) travels P times and comes home */
        memset(j->dq, 0, rb.Sq * R * d * es);
        cur = 0;
        memcpy(kv_part(j, rb.kv[0], R, 0), j->k, rb.Sk * R * d * es);
        memcpy(kv_part(j, rb.kv[0], R, 1), j->v, rb.Sk * R * dv * es);
        memset(kv_part(j, rb.kv[0], R, 2), 0, rb.Sk * R * (d + dv) * es);
        for (int s = 0; s < P; s++) {
            const int src = (r - s + P) % P, nsrc = (r - s - 1 + 2 * P) % P;
            double tc = mp_now();
            bwd_block(j, &rb, src, rb.kv[cur]);
            j->t_compute += mp_now() - tc;
            if (P > 1) {
                MPI_Request req[2];
                shift_start(j, rb.kv[cur], src, kv_elems(j, j->blkv[src].rows, 1), rb.kv[1 - cur],
                            kv_elems(j, j->blkv[nsrc].rows, 1), req);
                shift_wait(j, req);
                cur = 1 - cur;
            }
        }
        /* home again: this rank's dK, dV */
        memcpy(j->dk, kv_part(j, rb.kv[cur], R, 2), rb.Sk * R * d * es);
        memcpy(j->dvv, kv_part(j, rb.kv[cur], R, 3), rb.Sk * R * dv * es);
    }
    j->t_total = mp_now() - t0;
    free(rb.kv[0]); free(rb.kv[1]); free(rb.tmp); free(rb.tl); free(rb.lse);
    free(rb.tq); free(rb.tk); free(rb.tv);
}

/* ---- linear kinds: prefix scan of key/value states ----------------------------------------- */

/* A packed state: [c, n, f, d_v, z (f), s (f d_v)]. */
static size_t packed_len(size_t F, size_t dv) { return 4 + F + F * dv; }

static rk_kv_state packed_view(double *b)
{
    rk_kv_state st;
    st.c = b[0];
    st.n = (uint64_t)b[1];
    st.f = (size_t)b[2];
    st.d_v = (size_t)b[3];
    st.z = b + 4;
    st.s = b + 4 + st.f;
    return st;
}

static void pack_state(double *b, const rk_kv_state *st)
{
    b[0] = st->c;
    b[1] = (double)st->n;
    b[2] = (double)st->f;
    b[3] = (double)st->d_v;
    memcpy(b + 4, st->z, st->f * sizeof(double));
    memcpy(b + 4 + st->f, st->s, st->f * st->d_v * sizeof(double));
}

/* MPI user op: inout = in (+) inout, state by state (in: the lower ranks). */
static void merge_op(void *in, void *inout, int *len, MPI_Datatype *dt)
{
    int bytes = 0;
    MPI_Type_size(*dt, &bytes);
    size_t total = (size_t)bytes / sizeof(double) * (size_t)*len;
    double *a = inout, *b = in;
    for (size_t at = 0; at < total;) {
        rk_kv_state sa = packed_view(a + at), sb = packed_view(b + at);
        size_t L = packed_len(sa.f, sa.d_v);
        /* a (+) b: commutative bit for bit, so the order of operands does not matter */
        if (rk_kv_state_merge(&sa, &sb) == RK_OK) {
            a[at] = sa.c;
            a[at + 1] = (double)sa.n;
        }
        at += L;
    }
}

static void scan_linear(mp_job *j)
{
    const mp_block *me = &j->blkv[mp_rank];
    const size_t R = me->rows, d = j->d, dv = j->dv, es = ES(j);
    const size_t Sq = j->B * j->H, Sk = j->B * j->Hk, grp = j->H / j->Hk;
    rk_attn_config c = j->cfg;
    c.n_q = c.n_kv = R ? R : 1;
    c.d = d;
    c.d_v = dv;
    c.batch = c.heads = c.kv_heads = 1;
    c.pos_offset = j->cfg.pos_offset + (int64_t)me->seg[0].start;
    rk_attn *p = NULL;
    double t0 = mp_now();
    if (rk_attn_create(&p, &c)) mp_fail("cannot create the attention plan: %s", rk_last_error());
    size_t F = p ? rk_attn_get_info(p)->feature_dim : 1, L = packed_len(F, dv);
    /* the same F on every rank (same configuration); the buffers: this rank's states and the
     * scan's result */
    double *mine = xcalloc(Sk * L, sizeof(double)), *pre = xcalloc(Sk * L, sizeof(double));
    rk_kv_state st;
    memset(&st, 0, sizeof st);
    if (!mine || !pre || (p && rk_kv_state_alloc(&st, p)))
        mp_fail("out of memory for the key/value states");
    /* every rank has its plan and buffers (the same F) before the scan (else all stop here) */
    mp_agree(0);
    for (size_t s = 0; s < Sk; s++) {
        double *b = mine + s * L;
        b[0] = -INFINITY;
        b[2] = (double)F;
        b[3] = (double)dv;
    }
    double tc = mp_now();
    for (size_t s = 0; s < Sk && !mp_failed() && R; s++) {
        int rc;
        if (j->dbl) {
            rk_matd K = rk_matd_view((double *)j->k + s * R * d, R, d, d);
            rk_matd V = rk_matd_view((double *)j->v + s * R * dv, R, dv, dv);
            rc = rk_attn_kv_reduce_d(p, &K, &V, RK_ALL_KEYS, NULL, &st);
        } else {
            rk_mat K = rk_mat_view((float *)j->k + s * R * d, R, d, d);
            rk_mat V = rk_mat_view((float *)j->v + s * R * dv, R, dv, dv);
            rc = rk_attn_kv_reduce(p, &K, &V, RK_ALL_KEYS, NULL, &st);
        }
        if (rc) mp_fail("key/value state of rows %zu..: %s", me->seg[0].start, rk_last_error());
        else pack_state(mine + s * L, &st);
    }
    j->t_compute += mp_now() - tc;
    mp_test_kill("ring");
    /* the scan: every rank takes part, failed or not */
    MPI_Datatype blk;
    MPI_Op op;
    MPI_Type_contiguous((int)(Sk * L), MPI_DOUBLE, &blk);
    MPI_Type_commit(&blk);
    MPI_Op_create(merge_op, 0, &op);
    double tw = mp_now();
    int e = j->cfg.causal ? MPI_Exscan(mine, pre, 1, blk, op, MPI_COMM_WORLD)
                          : MPI_Allreduce(mine, pre, 1, blk, op, MPI_COMM_WORLD);
    j->t_wait += mp_now() - tw;
    if (e != MPI_SUCCESS) mp_fail("%s failed", j->cfg.causal ? "MPI_Exscan" : "MPI_Allreduce");
    j->sent_elems += Sk * L;
    MPI_Op_free(&op);
    MPI_Type_free(&blk);
    if (j->cfg.causal && mp_rank == 0)      /* MPI_Exscan leaves rank 0's result undefined */
        for (size_t s = 0; s < Sk; s++) {
            pre[s * L] = -INFINITY;
            pre[s * L + 1] = 0;
            pre[s * L + 2] = (double)F;
            pre[s * L + 3] = (double)dv;
        }
    tc = mp_now();
    for (size_t sq = 0; sq < Sq && !mp_failed() && R; sq++) {
        const size_t s = sq / j->H * j->Hk + sq % j->H / grp;     /* its key/value slice */
        rk_kv_state init = packed_view(pre + s * L);
        if (init.n == 0) memset(pre + s * L + 4, 0, (L - 4) * sizeof(double));
        const size_t kl = j->cfg.causal ? RK_ALL_KEYS : 0;
        int rc;
        if (j->dbl) {
            rk_matd Q = rk_matd_view((double *)j->q + sq * R * d, R, d, d);
            rk_matd K = rk_matd_view((double *)j->k + s * R * d, R, d, d);
            rk_matd V = rk_matd_view((double *)j->v + s * R * dv, R, dv, dv);
            rk_matd O = rk_matd_view((double *)j->out + sq * R * dv, R, dv, dv);
            rc = rk_attn_execute_state_d(p, &Q, &K, &V, &O, kl, &init, NULL);
        } else {
            rk_mat Q = rk_mat_view((float *)j->q + sq * R * d, R, d, d);
            rk_mat K = rk_mat_view((float *)j->k + s * R * d, R, d, d);
            rk_mat V = rk_mat_view((float *)j->v + s * R * dv, R, dv, dv);
            rk_mat O = rk_mat_view((float *)j->out + sq * R * dv, R, dv, dv);
            rc = rk_attn_execute_state(p, &Q, &K, &V, &O, kl, &init, NULL);
        }
        if (rc) mp_fail("attention of rows %zu..: %s", me->seg[0].start, rk_last_error());
    }
    j->t_compute += mp_now() - tc;
    j->t_total = mp_now() - t0;
    (void)es;
    rk_kv_state_free(&st);
    rk_attn_destroy(p);
    free(mine);
    free(pre);
}

void mp_attention(mp_job *j)
{
    if (j->cfg.kind == RK_SOFTMAX) ring_softmax(j);
    else scan_linear(j);
}
