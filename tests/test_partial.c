/* Sequence-parallel hooks of the library (issue 18): explicit query alignment, the softmax
 * partial merge and the linear kinds' key/value state, checked in one process against the
 * single-plan result: a sequence cut into P blocks (lengths not divisible by P), ring
 * attention's block pairs merged by log-sum-exp, and LASP's prefix states. These are the
 * computations the MPI programs (mpi/) distribute; tests/test_mpi.c runs those. */
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Block r of n rows cut in P: rows [start, start + len). */
static size_t blk_start(size_t n, size_t P, size_t r) { return r * n / P; }
static size_t blk_len(size_t n, size_t P, size_t r)
{
    return blk_start(n, P, r + 1) - blk_start(n, P, r);
}

static rk_mat rows_f(rk_mat m, size_t i, size_t n) { return rk_mat_sub(m, i, 0, n, m.cols); }
static rk_matd rows_d(rk_matd m, size_t i, size_t n) { return rk_matd_sub(m, i, 0, n, m.cols); }

static double max_diff_ff(const rk_mat *a, const rk_mat *b)
{
    double w = 0.0;
    for (size_t i = 0; i < a->rows; i++)
        for (size_t j = 0; j < a->cols; j++) {
            double e = fabs((double)a->data[i * a->ld + j] - (double)b->data[i * b->ld + j]);
            if (!(e <= w)) w = e;        /* NaN counts as worst */
        }
    return w;
}

static int same_bits_f(const rk_mat *a, const rk_mat *b)
{
    for (size_t i = 0; i < a->rows; i++)
        if (memcmp(a->data + i * a->ld, b->data + i * b->ld, a->cols * sizeof(float))) return 0;
    return 1;
}
static int same_bits_d(const rk_matd *a, const rk_matd *b)
{
    for (size_t i = 0; i < a->rows; i++)
        if (memcmp(a->data + i * a->ld, b->data + i * b->ld, a->cols * sizeof(double))) return 0;
    return 1;
}

/* The config of the (query block at qa, key block at ka) pair of a sequence whose plan is
 * `full` (positions pos_offset + row). */
static rk_attn_config pair_cfg(const rk_attn_config *full, size_t qa, size_t nq, size_t ka,
                               size_t nk)
{
    rk_attn_config c = *full;
    c.n_q = nq;
    c.n_kv = nk;
    c.align = RK_ALIGN_Q_START;
    c.q_start = (int64_t)qa - (int64_t)ka;
    c.pos_offset = full->pos_offset + (int64_t)ka;
    return c;
}

/* ---- alignment --------------------------------------------------------------------------- */

/* align = q_start with q_start = n_kv - n_q is the bottom-right plan, bit for bit, for every
 * kind that reads it; rpe-fft, a bias with it, and q_start without it are refused. */
static void test_align_same_bits(void **state)
{
    (void)state;
    gsl_rng *r = rk_test_rng(18);
    const size_t nq = 37, nk = 53, d = 16;
    rk_mat q = rk_test_randn(r, nq, d, d + 3, 1.0), k = rk_test_randn(r, nk, d, d, 1.0);
    rk_mat v = rk_test_randn(r, nk, d, d, 1.0);
    rk_matd qd = rk_test_randnd(r, nq, d, d, 1.0), kd = rk_test_randnd(r, nk, d, d, 1.0);
    rk_matd vd = rk_test_randnd(r, nk, d, d, 1.0);
    const rk_kind kinds[] = { RK_SOFTMAX, RK_PERFORMER, RK_LINEAR, RK_UNIFORM };
    for (size_t t = 0; t < 4; t++)
        for (int causal = 0; causal < 2; causal++) {
            rk_attn_config c = { .kind = kinds[t], .n_q = nq, .n_kv = nk, .d = d,
                                 .causal = causal, .pos_offset = 5, .seed = 3, .nthreads = 2,
                                 .n_features = kinds[t] == RK_PERFORMER ? 32 : 0 };
            if (kinds[t] != RK_UNIFORM) c.rope = RK_ROPE_QK;
            rk_attn_config e = c;
            e.align = RK_ALIGN_Q_START;
            e.q_start = (int64_t)nk - (int64_t)nq;
            rk_attn *p1, *p2;
            assert_rk_ok(rk_attn_create(&p1, &c));
            assert_rk_ok(rk_attn_create(&p2, &e));
            rk_mat o1 = rk_test_mat(nq, d, d), o2 = rk_test_mat(nq, d, d);
            rk_matd d1 = rk_test_matd(nq, d, d), d2 = rk_test_matd(nq, d, d);
            assert_rk_ok(rk_attn_execute(p1, &q, &k, &v, &o1, 41));
            assert_rk_ok(rk_attn_execute(p2, &q, &k, &v, &o2, 41));
            assert_rk_ok(rk_attn_execute_d(p1, &qd, &kd, &vd, &d1, RK_ALL_KEYS));
            assert_rk_ok(rk_attn_execute_d(p2, &qd, &kd, &vd, &d2, RK_ALL_KEYS));
            if (!same_bits_f(&o1, &o2) || !same_bits_d(&d1, &d2))
                fail_msg("%s causal=%d: q_start = n_kv - n_q differs from bottom-right",
                         rk_attn_kind_name(kinds[t]), causal);
            rk_test_free(&o1); rk_test_free(&o2); rk_test_freed(&d1); rk_test_freed(&d2);
            rk_attn_destroy(p1);
            rk_attn_destroy(p2);
        }
    /* refusals */
    rk_attn *p = NULL;
    rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = 4, .n_kv = 4, .d = 8, .q_start = 2 };
    assert_rk_error(rk_attn_create(&p, &c), RK_EINVAL);
    assert_non_null(strstr(rk_last_error(), "q_start"));
    c.align = RK_ALIGN_Q_START;
    static const double bias[7] = { 0 };
    c.bias = bias;
    c.bias_len = 7;
    assert_rk_error(rk_attn_create(&p, &c), RK_EINVAL);
    assert_non_null(strstr(rk_last_error(), "bias"));
    rk_attn_config f = { .kind = RK_RPE_FFT, .n_q = 4, .n_kv = 4, .d = 8, .seed = 1,
                         .align = RK_ALIGN_Q_START, .bias = bias, .bias_len = 7 };
    assert_rk_error(rk_attn_create(&p, &f), RK_EINVAL);
    assert_non_null(strstr(rk_last_error(), "align"));
    c.bias = NULL;
    c.bias_len = 0;
    c.align = (rk_align)7;
    assert_rk_error(rk_attn_create(&p, &c), RK_EINVAL);
    c.align = RK_ALIGN_Q_START;
    c.q_start = INT64_MAX;
    assert_rk_error(rk_attn_create(&p, &c), RK_EOVERFLOW);
    assert_null(p);
    rk_test_free(&q); rk_test_free(&k); rk_test_free(&v);
    rk_test_freed(&qd); rk_test_freed(&kd); rk_test_freed(&vd);
    gsl_rng_free(r);
}

/* Queries entirely before the keys see nothing (zero rows, lse -inf); a query block after the
 * keys sees them all; visibility follows q_start for negative and large values. */
static void test_align_visibility(void **state)
{
    (void)state;
    gsl_rng *r = rk_test_rng(7);
    const size_t n = 20, d = 8;
    rk_matd q = rk_test_randnd(r, n, d, d, 1.0), k = rk_test_randnd(r, n, d, d, 1.0);
    rk_matd v = rk_test_randnd(r, n, d, d, 1.0), o = rk_test_matd(n, d, d);
    double lse[20];
    const int64_t starts[] = { -25, -20, -19, -3, 0, 7, 19, 40 };
    for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
        rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = n, .n_kv = n, .d = d, .causal = 1,
                             .align = RK_ALIGN_Q_START, .q_start = starts[s] };
        rk_attn *p;
        assert_rk_ok(rk_attn_create(&p, &c));
        assert_rk_ok(rk_attn_forward_d(p, &q, &k, &v, &o, RK_ALL_KEYS, lse));
        for (size_t i = 0; i < n; i++) {
            int64_t vis = starts[s] + (int64_t)i + 1;
            if (vis <= 0) {
                assert_true(lse[i] == -INFINITY);
                for (size_t j = 0; j < d; j++) assert_true(o.data[i * d + j] == 0.0);
            } else {
                /* the same row of a plan over the keys it sees, bottom-right */
                size_t nv = vis > (int64_t)n ? n : (size_t)vis;
                rk_attn_config b = { .kind = RK_SOFTMAX, .n_q = 1, .n_kv = nv, .d = d };
                rk_attn *pb;
                assert_rk_ok(rk_attn_create(&pb, &b));
                rk_matd qi = rows_d(q, i, 1), kk = rows_d(k, 0, nv), vv = rows_d(v, 0, nv);
                double ob[8], lb;
                rk_matd om = rk_matd_view(ob, 1, d, d);
                assert_rk_ok(rk_attn_forward_d(pb, &qi, &kk, &vv, &om, RK_ALL_KEYS, &lb));
                assert_true(lse[i] == lb);
                assert_memory_equal(o.data + i * d, ob, d * sizeof(double));
                rk_attn_destroy(pb);
            }
        }
        rk_attn_destroy(p);
    }
    rk_test_freed(&q); rk_test_freed(&k); rk_test_freed(&v); rk_test_freed(&o);
    gsl_rng_free(r);
}

/* ---- softmax: ring attention in one process ---------------------------------------------- */

/* Output and lse of the whole sequence, and of the P x P block pairs merged in key-block
 * order, float and double; the gradients of the ring backward (global lse and out, each
 * pair's share summed) against the plan's. */
static void ring_case(size_t n, size_t P, int causal, rk_rope_mode rope, int with_bwd)
{
    gsl_rng *r = rk_test_rng(100 + n + P);
    const size_t d = 16, dv = 8;
    rk_mat q = rk_test_randn(r, n, d, d, 1.0), k = rk_test_randn(r, n, d, d, 1.0);
    rk_mat v = rk_test_randn(r, n, dv, dv, 1.0), g = rk_test_randn(r, n, dv, dv, 1.0);
    rk_matd qd = rk_test_matd(n, d, d), kd = rk_test_matd(n, d, d), vd = rk_test_matd(n, dv, dv);
    rk_matd gd = rk_test_matd(n, dv, dv);
    rk_test_f2d(&q, &qd); rk_test_f2d(&k, &kd); rk_test_f2d(&v, &vd); rk_test_f2d(&g, &gd);
    rk_attn_config full = { .kind = RK_SOFTMAX, .n_q = n, .n_kv = n, .d = d, .d_v = dv,
                            .causal = causal, .rope = rope, .pos_offset = 3, .nthreads = 2 };
    rk_attn *pf;
    assert_rk_ok(rk_attn_create(&pf, &full));
    rk_mat of = rk_test_mat(n, dv, dv);
    rk_matd ofd = rk_test_matd(n, dv, dv);
    float *lf = calloc(n, sizeof *lf);
    double *lfd = calloc(n, sizeof *lfd);
    assert_rk_ok(rk_attn_forward(pf, &q, &k, &v, &of, RK_ALL_KEYS, lf));
    assert_rk_ok(rk_attn_forward_d(pf, &qd, &kd, &vd, &ofd, RK_ALL_KEYS, lfd));

    rk_mat acc = rk_test_mat(n, dv, dv), tmp = rk_test_mat(n, dv, dv);
    rk_matd accd = rk_test_matd(n, dv, dv), tmpd = rk_test_matd(n, dv, dv);
    float *la = malloc(n * sizeof *la), *lt = malloc(n * sizeof *lt);
    double *lad = malloc(n * sizeof *lad), *ltd = malloc(n * sizeof *ltd);
    for (size_t i = 0; i < n; i++) la[i] = -INFINITY, lad[i] = -INFINITY;
    memset(acc.data, 0, n * dv * sizeof(float));
    memset(accd.data, 0, n * dv * sizeof(double));
    for (size_t a = 0; a < P; a++) {
        const size_t qa = blk_start(n, P, a), nq = blk_len(n, P, a);
        rk_mat qa_ = rows_f(q, qa, nq), oa = rows_f(acc, qa, nq), ta = rows_f(tmp, qa, nq);
        rk_matd qad = rows_d(qd, qa, nq), oad = rows_d(accd, qa, nq), tad = rows_d(tmpd, qa, nq);
        for (size_t bb = 0; bb < P; bb++) {
            const size_t b = (a + P - bb) % P;      /* the ring's order: own block first */
            const size_t ka = blk_start(n, P, b), nk = blk_len(n, P, b);
            rk_attn_config c = pair_cfg(&full, qa, nq, ka, nk);
            rk_attn *p;
            assert_rk_ok(rk_attn_create(&p, &c));
            rk_mat kb = rows_f(k, ka, nk), vb = rows_f(v, ka, nk);
            rk_matd kbd = rows_d(kd, ka, nk), vbd = rows_d(vd, ka, nk);
            assert_rk_ok(rk_attn_forward(p, &qa_, &kb, &vb, &ta, RK_ALL_KEYS, lt + qa));
            assert_rk_ok(rk_attn_merge(&oa, la + qa, &ta, lt + qa));
            assert_rk_ok(rk_attn_forward_d(p, &qad, &kbd, &vbd, &tad, RK_ALL_KEYS, ltd + qa));
            assert_rk_ok(rk_attn_merge_d(&oad, lad + qa, &tad, ltd + qa));
            rk_attn_destroy(p);
        }
    }
    /* float: the merge rounds the output once per block and the lse to float */
    double ef = max_diff_ff(&acc, &of), ed = rk_max_abs_diffd(&accd, &ofd);
    if (!(ef <= 2e-6) || !(ed <= 1e-13))
        fail_msg("n = %zu, P = %zu, causal %d: merged output off by %g (float), %g (double)", n,
                 P, causal, ef, ed);
    for (size_t i = 0; i < n; i++) {
        if (!(fabs(la[i] - lf[i]) <= 4e-6 * (1 + fabs(lf[i]))))
            fail_msg("row %zu: merged lse %.9g, plan %.9g", i, la[i], lf[i]);
        if (!(fabs(lad[i] - lfd[i]) <= 1e-13 * (1 + fabs(lfd[i]))))
            fail_msg("row %zu: merged lse %.17g, plan %.17g (double)", i, lad[i], lfd[i]);
    }

    if (with_bwd) {
        /* the ring backward: each pair's backward with the merged (global) out and lse */
        rk_matd dq = rk_test_matd(n, d, d), dk = rk_test_matd(n, d, d), dvv = rk_test_matd(n, dv, dv);
        rk_matd rq = rk_test_matd(n, d, d), rkk = rk_test_matd(n, d, d), rv = rk_test_matd(n, dv, dv);
        rk_mat fq = rk_test_mat(n, d, d), fk = rk_test_mat(n, d, d), fv = rk_test_mat(n, dv, dv);
        rk_mat sq = rk_test_mat(n, d, d), sk = rk_test_mat(n, d, d), sv = rk_test_mat(n, dv, dv);
        assert_rk_ok(rk_attn_backward_d(pf, &qd, &kd, &vd, &ofd, lfd, &gd, &rq, &rkk, &rv,
                                        RK_ALL_KEYS));
        assert_rk_ok(rk_attn_backward(pf, &q, &k, &v, &of, lf, &g, &fq, &fk, &fv, RK_ALL_KEYS));
        memset(dq.data, 0, n * d * sizeof(double));
        memset(dk.data, 0, n * d * sizeof(double));
        memset(dvv.data, 0, n * dv * sizeof(double));
        memset(sq.data, 0, n * d * sizeof(float));
        memset(sk.data, 0, n * d * sizeof(float));
        memset(sv.data, 0, n * dv * sizeof(float));
        rk_matd tq = rk_test_matd(n, d, d), tk = rk_test_matd(n, d, d), tv = rk_test_matd(n, dv, dv);
        rk_mat uq = rk_test_mat(n, d, d), uk = rk_test_mat(n, d, d), uv = rk_test_mat(n, dv, dv);
        for (size_t a = 0; a < P; a++)
            for (size_t b = 0; b < P; b++) {
                const size_t qa = blk_start(n, P, a), nq = blk_len(n, P, a);
                const size_t ka = blk_start(n, P, b), nk = blk_len(n, P, b);
                rk_attn_config c = pair_cfg(&full, qa, nq, ka, nk);
                rk_attn *p;
                assert_rk_ok(rk_attn_create(&p, &c));
                rk_matd Q = rows_d(qd, qa, nq), K = rows_d(kd, ka, nk), V = rows_d(vd, ka, nk);
                rk_matd O = rows_d(accd, qa, nq), G = rows_d(gd, qa, nq);
                rk_matd TQ = rows_d(tq, 0, nq), TK = rows_d(tk, 0, nk), TV = rows_d(tv, 0, nk);
                assert_rk_ok(rk_attn_backward_d(p, &Q, &K, &V, &O, lad + qa, &G, &TQ, &TK, &TV,
                                                RK_ALL_KEYS));
                rk_mat Qf = rows_f(q, qa, nq), Kf = rows_f(k, ka, nk), Vf = rows_f(v, ka, nk);
                rk_mat Of = rows_f(acc, qa, nq), Gf = rows_f(g, qa, nq);
                rk_mat UQ = rows_f(uq, 0, nq), UK = rows_f(uk, 0, nk), UV = rows_f(uv, 0, nk);
                assert_rk_ok(rk_attn_backward(p, &Qf, &Kf, &Vf, &Of, la + qa, &Gf, &UQ, &UK, &UV,
                                              RK_ALL_KEYS));
                for (size_t i = 0; i < nq * d; i++) dq.data[qa * d + i] += tq.data[i];
                for (size_t i = 0; i < nk * d; i++) dk.data[ka * d + i] += tk.data[i];
                for (size_t i = 0; i < nk * dv; i++) dvv.data[ka * dv + i] += tv.data[i];
                for (size_t i = 0; i < nq * d; i++) sq.data[qa * d + i] += uq.data[i];
                for (size_t i = 0; i < nk * d; i++) sk.data[ka * d + i] += uk.data[i];
                for (size_t i = 0; i < nk * dv; i++) sv.data[ka * dv + i] += uv.data[i];
                rk_attn_destroy(p);
            }
        assert_matd_close(&dq, &rq, 1e-11, 1e-12);
        assert_matd_close(&dk, &rkk, 1e-11, 1e-12);
        assert_matd_close(&dvv, &rv, 1e-11, 1e-12);
        /* float: against the double plan's, as the float plan's own are */
        assert_mat_close(&sq, &rq, 1e-4, 2e-5);
        assert_mat_close(&sk, &rkk, 1e-4, 2e-5);
        assert_mat_close(&sv, &rv, 1e-4, 2e-5);
        assert_mat_close(&fq, &rq, 1e-4, 2e-5);
        rk_test_freed(&dq); rk_test_freed(&dk); rk_test_freed(&dvv);
        rk_test_freed(&rq); rk_test_freed(&rkk); rk_test_freed(&rv);
        rk_test_freed(&tq); rk_test_freed(&tk); rk_test_freed(&tv);
        rk_test_free(&fq); rk_test_free(&fk); rk_test_free(&fv);
        rk_test_free(&sq); rk_test_free(&sk); rk_test_free(&sv);
        rk_test_free(&uq); rk_test_free(&uk); rk_test_free(&uv);
    }
    rk_attn_destroy(pf);
    free(lf); free(lfd); free(la); free(lt); free(lad); free(ltd);
    rk_test_free(&q); rk_test_free(&k); rk_test_free(&v); rk_test_free(&g);
    rk_test_free(&of); rk_test_free(&acc); rk_test_free(&tmp);
    rk_test_freed(&qd); rk_test_freed(&kd); rk_test_freed(&vd); rk_test_freed(&gd);
    rk_test_freed(&ofd); rk_test_freed(&accd); rk_test_freed(&tmpd);
    gsl_rng_free(r);
}

static void test_ring_softmax(void **state)
{
    (void)state;
    ring_case(101, 1, 1, RK_ROPE_QK, 0);
    ring_case(101, 2, 1, RK_ROPE_QK, 1);
    ring_case(203, 3, 1, RK_ROPE_QK, 1);
    ring_case(130, 4, 0, RK_ROPE_QK, 1);
    ring_case(257, 4, 1, RK_ROPE_NONE, 1);
    ring_case(2600, 3, 1, RK_ROPE_QK, 0);    /* blocks above one split-KV chunk pair */
}

/* Merge edge cases: -inf rows keep or take bit for bit, commutative bit for bit, NaN spreads,
 * bad arguments refused. */
static void test_merge_edges(void **state)
{
    (void)state;
    float a[6] = { 1, 2, 3, 4, 5, 6 }, b[6] = { -1, 0.5f, 7, 8, 9, 10 };
    float la[3] = { -INFINITY, 1.5f, -INFINITY }, lb[3] = { 2.0f, -INFINITY, -INFINITY };
    rk_mat A = rk_mat_view(a, 3, 2, 2), B = rk_mat_view(b, 3, 2, 2);
    assert_rk_ok(rk_attn_merge(&A, la, &B, lb));
    assert_true(a[0] == -1 && a[1] == 0.5f && la[0] == 2.0f);     /* took b */
    assert_true(a[2] == 3 && a[3] == 4 && la[1] == 1.5f);          /* kept a */
    assert_true(a[4] == 5 && la[2] == -INFINITY);                  /* neither: unchanged */
    /* commutative: a + b == b + a bit for bit */
    double x[4] = { 0.1, -2, 3.5, 1e-3 }, y[4] = { 7, 0.25, -1, 2 };
    double x2[4], y2[4], lx[2] = { 0.3, -5 }, ly[2] = { 1.7, -4.5 }, lx2[2], ly2[2];
    memcpy(x2, x, sizeof x); memcpy(y2, y, sizeof y);
    memcpy(lx2, lx, sizeof lx); memcpy(ly2, ly, sizeof ly);
    rk_matd X = rk_matd_view(x, 2, 2, 2), Y = rk_matd_view(y, 2, 2, 2);
    rk_matd X2 = rk_matd_view(x2, 2, 2, 2), Y2 = rk_matd_view(y2, 2, 2, 2);
    assert_rk_ok(rk_attn_merge_d(&X, lx, &Y, ly));
    assert_rk_ok(rk_attn_merge_d(&Y2, ly2, &X2, lx2));
    assert_memory_equal(x, y2, sizeof x);
    assert_memory_equal(lx, ly2, sizeof lx);
    /* the merged value: weights e^0.3 and e^1.7 */
    double wa = exp(0.3), wb = exp(1.7);
    assert_true(fabs(x[0] - (0.1 * wa + 7 * wb) / (wa + wb)) < 1e-15);
    assert_true(fabs(lx[0] - log(wa + wb)) < 1e-15);
    /* NaN lse: NaN row */
    double n1[2] = { 1, 2 }, n2[2] = { 3, 4 }, ln1 = NAN, ln2 = 0.0;
    rk_matd N1 = rk_matd_view(n1, 1, 2, 2), N2 = rk_matd_view(n2, 1, 2, 2);
    assert_rk_ok(rk_attn_merge_d(&N1, &ln1, &N2, &ln2));
    assert_true(isnan(n1[0]) && isnan(ln1));
    /* refusals */
    assert_rk_error(rk_attn_merge(&A, la, &A, lb), RK_EINVAL);      /* out_b overlaps out */
    rk_mat S = rk_mat_view(b, 2, 2, 2);
    assert_rk_error(rk_attn_merge(&A, la, &S, lb), RK_EDIM);
    assert_rk_error(rk_attn_merge(&A, NULL, &B, lb), RK_EINVAL);
    assert_rk_error(rk_attn_merge_d(NULL, lx, &Y, ly), RK_EINVAL);
}

/* ---- linear kinds: prefix states (LASP) in one process ----------------------------------- */

typedef struct {
    rk_kind kind;
    rk_kernel kernel;
    rk_rope_mode rope;
    int causal;
} lin_case;

static void lasp_case(const lin_case *lc, size_t n, size_t P)
{
    gsl_rng *r = rk_test_rng(200 + n + P);
    const size_t d = 16, dv = 8;
    rk_matd qd = rk_test_randnd(r, n, d, d, 0.7), kd = rk_test_randnd(r, n, d, d, 0.7);
    rk_matd vd = rk_test_randnd(r, n, dv, dv, 1.0);
    rk_mat q = rk_test_mat(n, d, d), k = rk_test_mat(n, d, d), v = rk_test_mat(n, dv, dv);
    rk_test_d2f(&qd, &q); rk_test_d2f(&kd, &k); rk_test_d2f(&vd, &v);
    rk_attn_config full = { .kind = lc->kind, .n_q = n, .n_kv = n, .d = d, .d_v = dv,
                            .causal = lc->causal, .rope = lc->rope, .kernel = lc->kernel,
                            .seed = 5, .pos_offset = 2, .nthreads = 2,
                            .n_features = lc->kind == RK_PERFORMER ? 32 : 0 };
    full.rope_cfg.table_len = 4096;
    rk_attn *pf;
    assert_rk_ok(rk_attn_create(&pf, &full));
    rk_mat of = rk_test_mat(n, dv, dv), ob = rk_test_mat(n, dv, dv);
    rk_matd ofd = rk_test_matd(n, dv, dv), obd = rk_test_matd(n, dv, dv);
    assert_rk_ok(rk_attn_execute(pf, &q, &k, &v, &of, RK_ALL_KEYS));
    assert_rk_ok(rk_attn_execute_d(pf, &qd, &kd, &vd, &ofd, RK_ALL_KEYS));

    /* each block's state (reduce), every block's plan at its global positions */
    rk_attn **pl = calloc(P, sizeof *pl);
    rk_kv_state *st = calloc(P, sizeof *st), *sd = calloc(P, sizeof *sd), pre, pred, fin;
    for (size_t b = 0; b < P; b++) {
        rk_attn_config c = full;
        c.n_q = c.n_kv = blk_len(n, P, b);
        c.pos_offset = full.pos_offset + (int64_t)blk_start(n, P, b);
        assert_rk_ok(rk_attn_create(&pl[b], &c));
        assert_rk_ok(rk_kv_state_alloc(&st[b], pl[b]));
        assert_rk_ok(rk_kv_state_alloc(&sd[b], pl[b]));
        rk_mat K = rows_f(k, blk_start(n, P, b), c.n_kv), V = rows_f(v, blk_start(n, P, b), c.n_kv);
        rk_matd Kd = rows_d(kd, blk_start(n, P, b), c.n_kv), Vd = rows_d(vd, blk_start(n, P, b), c.n_kv);
        assert_rk_ok(rk_attn_kv_reduce(pl[b], &K, &V, RK_ALL_KEYS, NULL, &st[b]));
        assert_rk_ok(rk_attn_kv_reduce_d(pl[b], &Kd, &Vd, RK_ALL_KEYS, NULL, &sd[b]));
        assert_true(st[b].n == c.n_kv);
    }
    assert_rk_ok(rk_kv_state_alloc(&pre, pl[0]));
    assert_rk_ok(rk_kv_state_alloc(&pred, pl[0]));
    assert_rk_ok(rk_kv_state_alloc(&fin, pl[0]));
    if (!lc->causal)            /* bidirectional: every block's state (Allreduce) */
        for (size_t b = 0; b < P; b++) {
            assert_rk_ok(rk_kv_state_merge(&pre, &st[b]));
            assert_rk_ok(rk_kv_state_merge(&pred, &sd[b]));
        }
    for (size_t b = 0; b < P; b++) {
        const size_t a = blk_start(n, P, b), nb = blk_len(n, P, b);
        rk_mat Q = rows_f(q, a, nb), K = rows_f(k, a, nb), V = rows_f(v, a, nb), O = rows_f(ob, a, nb);
        rk_matd Qd = rows_d(qd, a, nb), Kd = rows_d(kd, a, nb), Vd = rows_d(vd, a, nb);
        rk_matd Od = rows_d(obd, a, nb);
        size_t kl = lc->causal ? RK_ALL_KEYS : 0;
        assert_rk_ok(rk_attn_execute_state(pl[b], &Q, &K, &V, &O, kl, &pre, lc->causal ? &fin : NULL));
        assert_rk_ok(rk_attn_execute_state_d(pl[b], &Qd, &Kd, &Vd, &Od, kl, &pred, NULL));
        if (lc->causal) {
            /* the execute's final state is the prefix plus this block */
            assert_true(fin.n == pre.n + nb);
            assert_rk_ok(rk_kv_state_merge(&pre, &st[b]));      /* the next block's prefix */
            assert_rk_ok(rk_kv_state_merge(&pred, &sd[b]));
            double w = 0.0, top = 0.0;
            for (size_t i = 0; i < fin.f * fin.d_v; i++) {
                w = fmax(w, fabs(fin.s[i] * exp(fin.c - pre.c) - pre.s[i]));
                top = fmax(top, fabs(pre.s[i]));
            }
            if (!(w <= 1e-5 * top)) fail_msg("final state vs reduced prefix: %g of %g", w, top);
        }
    }
    double ef = rk_max_abs_diff(&ob, &ofd), ep = max_diff_ff(&ob, &of), ed = rk_max_abs_diffd(&obd, &ofd);
    if (!(ed <= 1e-11) || !(ef <= 5e-5) || !(ep <= 5e-5))
        fail_msg("%s kernel %d rope %d causal %d n %zu P %zu: blocks vs one plan: double %g, "
                 "float vs double %g, float vs float %g", rk_attn_kind_name(lc->kind),
                 (int)lc->kernel, (int)lc->rope, lc->causal, n, P, ed, ef, ep);
    /* no init: the same bits as execute */
    if (P == 1) {
        rk_mat o1 = rk_test_mat(n, dv, dv);
        assert_rk_ok(rk_attn_execute_state(pf, &q, &k, &v, &o1, RK_ALL_KEYS, NULL, NULL));
        assert_true(same_bits_f(&o1, &of));
        rk_test_free(&o1);
    }
    for (size_t b = 0; b < P; b++) {
        rk_kv_state_free(&st[b]);
        rk_kv_state_free(&sd[b]);
        rk_attn_destroy(pl[b]);
    }
    rk_kv_state_free(&pre); rk_kv_state_free(&pred); rk_kv_state_free(&fin);
    free(pl); free(st); free(sd);
    rk_attn_destroy(pf);
    rk_test_free(&q); rk_test_free(&k); rk_test_free(&v); rk_test_free(&of); rk_test_free(&ob);
    rk_test_freed(&qd); rk_test_freed(&kd); rk_test_freed(&vd); rk_test_freed(&ofd);
    rk_test_freed(&obd);
    gsl_rng_free(r);
}

static void test_lasp_states(void **state)
{
    (void)state;
    const lin_case cases[] = {
        { RK_PERFORMER, RK_KERNEL_POSITIVE, RK_ROPE_NONE, 1 },
        { RK_PERFORMER, RK_KERNEL_POSITIVE, RK_ROPE_FEATURES, 1 },
        { RK_PERFORMER, RK_KERNEL_HYPERBOLIC, RK_ROPE_QK, 1 },
        { RK_PERFORMER, RK_KERNEL_POSITIVE, RK_ROPE_FEATURES, 0 },
        { RK_LINEAR, 0, RK_ROPE_FEATURES, 1 },
        { RK_LINEAR, 0, RK_ROPE_NONE, 0 },
    };
    const size_t ns[] = { 97, 301, 600 }, Ps[] = { 1, 2, 3, 4 };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (size_t i = 0; i < 3; i++)
            for (size_t j = 0; j < 4; j++) lasp_case(&cases[c], ns[i], Ps[j]);
}

/* State calls: kinds without a state, shapes, merges with the empty state and itself. */
static void test_state_edges(void **state)
{
    (void)state;
    rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = 4, .n_kv = 4, .d = 8 };
    rk_attn *p;
    assert_rk_ok(rk_attn_create(&p, &c));
    rk_kv_state s;
    assert_rk_error(rk_kv_state_alloc(&s, p), RK_EUNSUP);
    rk_attn_destroy(p);
    c.kind = RK_LINEAR;
    c.heads = 2;
    assert_rk_ok(rk_attn_create(&p, &c));
    assert_rk_ok(rk_kv_state_alloc(&s, p));
    assert_true(s.f == 8 && s.d_v == 8 && s.n == 0 && s.c == -INFINITY);
    float buf[64] = { 0 };
    rk_mat m = rk_mat_view(buf, 4, 8, 8);
    assert_rk_error(rk_attn_kv_reduce(p, &m, &m, RK_ALL_KEYS, NULL, &s), RK_EDIM);  /* heads */
    rk_attn_destroy(p);
    c.heads = 0;
    c.d_v = 4;
    assert_rk_ok(rk_attn_create(&p, &c));
    rk_mat vv = rk_mat_view(buf, 4, 4, 4);
    assert_rk_error(rk_attn_kv_reduce(p, &m, &vv, RK_ALL_KEYS, NULL, &s), RK_EDIM);  /* d_v */
    rk_kv_state t;
    assert_rk_ok(rk_kv_state_alloc(&t, p));
    assert_rk_error(rk_attn_kv_reduce(p, &m, &vv, 5, NULL, &t), RK_EDIM);            /* kv_len */
    for (int i = 0; i < 32; i++) buf[i] = (float)(i % 7) - 3.0f;
    assert_rk_ok(rk_attn_kv_reduce(p, &m, &vv, 3, NULL, &t));
    assert_true(t.n == 3 && t.c == 0.0);
    /* merge with itself doubles; with the empty state is a copy */
    rk_kv_state e;
    assert_rk_ok(rk_kv_state_alloc(&e, p));
    double s0 = t.s[5];
    assert_rk_ok(rk_kv_state_merge(&e, &t));
    assert_true(e.n == 3 && e.s[5] == s0);
    assert_rk_ok(rk_kv_state_merge(&e, &e));
    assert_true(e.n == 6 && e.s[5] == 2 * s0);
    assert_rk_error(rk_kv_state_merge(&e, &s), RK_EDIM);
    assert_rk_error(rk_kv_state_merge(NULL, &s), RK_EINVAL);
    rk_kv_state_clear(&e);
    assert_true(e.n == 0 && e.s[5] == 0.0);
    rk_kv_state_free(&s);
    rk_kv_state_free(&t);
    rk_kv_state_free(&e);
    rk_kv_state_free(NULL);
    rk_kv_state_clear(NULL);
    rk_attn_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_align_same_bits),
        cmocka_unit_test(test_align_visibility),
        cmocka_unit_test(test_ring_softmax),
        cmocka_unit_test(test_merge_edges),
        cmocka_unit_test(test_lasp_states),
        cmocka_unit_test(test_state_edges),
    };
    return cmocka_run_group_tests_name("partial", tests, NULL, NULL);
}
