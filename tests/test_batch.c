/* Batches of heads (rk_attn_execute_batch and the batch training calls): for every kind, in the
 * (b, h, n, d) and (b, n, h, d) layouts, with grouped-query and multi-query key/value heads and
 * per-sequence key lengths, the same bits as the matrix calls on each head (a plan with
 * batch = heads = 1), for any thread count; the backward's grouped dk, dv the sums over the
 * query heads of a group; the refusals. */
#include "check.h"

#include <gsl/gsl_randist.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, H = 4 };

typedef struct {
    rk_attn_config cfg;     /* kind and options; sizes and heads set per case */
    int            backward;
} kcase;

static const kcase kinds[] = {
    { { .kind = RK_SOFTMAX, .causal = 1, .rope = RK_ROPE_QK }, 1 },
    { { .kind = RK_SOFTMAX }, 1 },
    { { .kind = RK_PERFORMER, .seed = 3, .n_features = 8, .causal = 1 }, 0 },
    { { .kind = RK_LINEAR, .rope = RK_ROPE_FEATURES }, 0 },
    { { .kind = RK_UNIFORM, .causal = 1 }, 1 },
    { { .kind = RK_RPE_FFT, .seed = 3, .n_features = 8 }, 0 },
};

static void fill(float *f, double *d, size_t n, unsigned long seed)
{
    gsl_rng *r = rk_test_rng(seed);
    for (size_t i = 0; i < n; i++) {
        f[i] = (float)gsl_ran_gaussian_ziggurat(r, 1.0);
        d[i] = f[i];
    }
    gsl_rng_free(r);
}

/* Element (b, h, i, j) of a (B, heads, n, w) array in layout bnhd or bhnd. */
static size_t at(int bnhd, size_t heads, size_t n, size_t w, size_t b, size_t h, size_t i, size_t j)
{
    return bnhd ? ((b * n + i) * heads + h) * w + j : ((b * heads + h) * n + i) * w + j;
}

static rk_tensor tf(float *p, int bnhd, size_t heads, size_t n, size_t w)
{
    return bnhd ? rk_tensor_bnhd(p, B, heads, n, w) : rk_tensor_bhnd(p, B, heads, n, w);
}
static rk_tensord td(double *p, int bnhd, size_t heads, size_t n, size_t w)
{
    return bnhd ? rk_tensord_bnhd(p, B, heads, n, w) : rk_tensord_bhnd(p, B, heads, n, w);
}

/* One head (b, h) of a tensor copied out to a packed (n, w) buffer (double). */
static void head_d(const double *src, int bnhd, size_t heads, size_t n, size_t w, size_t b, size_t h,
                   double *dst)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < w; j++) dst[i * w + j] = src[at(bnhd, heads, n, w, b, h, i, j)];
}
static void head_f(const float *src, int bnhd, size_t heads, size_t n, size_t w, size_t b, size_t h,
                   float *dst)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < w; j++) dst[i * w + j] = src[at(bnhd, heads, n, w, b, h, i, j)];
}

#define OK(call) do { int rc_ = (call); if (rc_) fail_msg("%s: %s: %s", #call, rk_strerror(rc_), rk_last_error()); } while (0)

static void run_case(const kcase *kc, size_t kvh, int bnhd, int nthreads)
{
    const size_t nq = 9, nkv = 11, d = 6, dv = 5, grp = H / kvh;
    const size_t kvl[B] = { 11, 7 };
    rk_attn_config bc = kc->cfg, hc = kc->cfg;
    bc.n_q = hc.n_q = nq; bc.n_kv = hc.n_kv = nkv; bc.d = hc.d = d; bc.d_v = hc.d_v = dv;
    bc.batch = B; bc.heads = H; bc.kv_heads = kvh;
    bc.nthreads = nthreads; hc.nthreads = 1;
    if (kc->cfg.kind == RK_RPE_FFT) { bc.causal = hc.causal = 0; }
    rk_attn *pb = NULL, *ph = NULL;
    OK(rk_attn_create(&pb, &bc));
    OK(rk_attn_create(&ph, &hc));
    const size_t nQ = B * H * nq * d, nK = B * kvh * nkv * d, nV = B * kvh * nkv * dv,
                 nO = B * H * nq * dv;
    float *qf = malloc(nQ * 4), *kf = malloc(nK * 4), *vf = malloc(nV * 4), *of = calloc(nO, 4);
    double *qd = malloc(nQ * 8), *kd = malloc(nK * 8), *vd = malloc(nV * 8), *od = calloc(nO, 8);
    fill(qf, qd, nQ, 1 + kvh);
    fill(kf, kd, nK, 2 + kvh);
    fill(vf, vd, nV, 3 + kvh);
    rk_tensor Q = tf(qf, bnhd, H, nq, d), K = tf(kf, bnhd, kvh, nkv, d), V = tf(vf, bnhd, kvh, nkv, dv);
    rk_tensor O = tf(of, bnhd, H, nq, dv);
    rk_tensord Qd = td(qd, bnhd, H, nq, d), Kd = td(kd, bnhd, kvh, nkv, d);
    rk_tensord Vd = td(vd, bnhd, kvh, nkv, dv), Od = td(od, bnhd, H, nq, dv);
    OK(rk_attn_execute_batch(pb, &Q, &K, &V, &O, kvl));
    OK(rk_attn_execute_batch_d(pb, &Qd, &Kd, &Vd, &Od, kvl));
    float hq[64], hk[128], hv[128], ho[64], ho2[64];
    double hqd[64], hkd[128], hvd[128], hod[64], hod2[64];
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++) {
            head_f(qf, bnhd, H, nq, d, b, h, hq);
            head_f(kf, bnhd, kvh, nkv, d, b, h / grp, hk);
            head_f(vf, bnhd, kvh, nkv, dv, b, h / grp, hv);
            head_d(qd, bnhd, H, nq, d, b, h, hqd);
            head_d(kd, bnhd, kvh, nkv, d, b, h / grp, hkd);
            head_d(vd, bnhd, kvh, nkv, dv, b, h / grp, hvd);
            rk_mat mq = rk_mat_view(hq, nq, d, d), mk = rk_mat_view(hk, nkv, d, d);
            rk_mat mv = rk_mat_view(hv, nkv, dv, dv), mo = rk_mat_view(ho, nq, dv, dv);
            rk_matd nq_ = rk_matd_view(hqd, nq, d, d), nk_ = rk_matd_view(hkd, nkv, d, d);
            rk_matd nv_ = rk_matd_view(hvd, nkv, dv, dv), no_ = rk_matd_view(hod, nq, dv, dv);
            OK(rk_attn_execute(ph, &mq, &mk, &mv, &mo, kvl[b]));
            OK(rk_attn_execute_d(ph, &nq_, &nk_, &nv_, &no_, kvl[b]));
            head_f(of, bnhd, H, nq, dv, b, h, ho2);
            head_d(od, bnhd, H, nq, dv, b, h, hod2);
            if (memcmp(ho, ho2, nq * dv * 4) || memcmp(hod, hod2, nq * dv * 8))
                fail_msg("%s kv_heads %zu %s threads %d: head (%zu, %zu) differs from the matrix call",
                         rk_attn_kind_name(bc.kind), kvh, bnhd ? "bnhd" : "bhnd", nthreads, b, h);
        }
    if (kc->backward) {
        /* the batch backward against per-head backwards, dk/dv summed over each group in order */
        size_t per = rk_attn_saved_len(ph);
        assert_int_equal(rk_attn_saved_len(pb), per * B * H);
        double *sv = calloc(per * B * H + 1, 8), *gd = malloc(nO * 8);
        double *dqd = calloc(nQ, 8), *dkd = calloc(nK, 8), *dvd = calloc(nV, 8);
        float *gf = malloc(nO * 4);
        fill(gf, gd, nO, 9);
        rk_tensord G = td(gd, bnhd, H, nq, dv), DQ = td(dqd, bnhd, H, nq, d);
        rk_tensord DK = td(dkd, bnhd, kvh, nkv, d), DV = td(dvd, bnhd, kvh, nkv, dv);
        OK(rk_attn_forward_batch_d(pb, &Qd, &Kd, &Vd, &Od, kvl, sv));
        OK(rk_attn_backward_batch_d(pb, &Qd, &Kd, &Vd, &Od, sv, &G, &DQ, &DK, &DV, kvl));
        double s1[64], hg[64], hdq[64], hdk[128], hdv[128], sumk[128], sumv[128], got[128];
        for (size_t b = 0; b < B; b++)
            for (size_t hk_ = 0; hk_ < kvh; hk_++) {
                memset(sumk, 0, sizeof sumk);
                memset(sumv, 0, sizeof sumv);
                for (size_t h = hk_ * grp; h < (hk_ + 1) * grp; h++) {
                    head_d(qd, bnhd, H, nq, d, b, h, hqd);
                    head_d(kd, bnhd, kvh, nkv, d, b, hk_, hkd);
                    head_d(vd, bnhd, kvh, nkv, dv, b, hk_, hvd);
                    head_d(gd, bnhd, H, nq, dv, b, h, hg);
                    rk_matd a = rk_matd_view(hqd, nq, d, d), k_ = rk_matd_view(hkd, nkv, d, d);
                    rk_matd v_ = rk_matd_view(hvd, nkv, dv, dv), o_ = rk_matd_view(hod, nq, dv, dv);
                    rk_matd g_ = rk_matd_view(hg, nq, dv, dv), x = rk_matd_view(hdq, nq, d, d);
                    rk_matd y = rk_matd_view(hdk, nkv, d, d), z = rk_matd_view(hdv, nkv, dv, dv);
                    OK(rk_attn_forward_d(ph, &a, &k_, &v_, &o_, kvl[b], s1));
                    OK(rk_attn_backward_d(ph, &a, &k_, &v_, &o_, s1, &g_, &x, &y, &z, kvl[b]));
                    head_d(dqd, bnhd, H, nq, d, b, h, got);
                    if (memcmp(got, hdq, nq * d * 8)) fail_msg("dq head (%zu, %zu) differs", b, h);
                    /* the first head of a group is taken as it is, the others added in order */
                    int first = h == hk_ * grp;
                    for (size_t i = 0; i < nkv * d; i++) sumk[i] = first ? hdk[i] : sumk[i] + hdk[i];
                    for (size_t i = 0; i < nkv * dv; i++) sumv[i] = first ? hdv[i] : sumv[i] + hdv[i];
                }
                head_d(dkd, bnhd, kvh, nkv, d, b, hk_, got);
                if (memcmp(got, sumk, nkv * d * 8)) { for (size_t i = 0; i < nkv * d; i++) if (got[i] != sumk[i]) { fprintf(stderr, "i %zu got %.17g want %.17g\n", i, got[i], sumk[i]); break; } fail_msg("%s kvh %zu layout %d: dk kv head (%zu, %zu) differs", rk_attn_kind_name(bc.kind), kvh, bnhd, b, hk_); }
                head_d(dvd, bnhd, kvh, nkv, dv, b, hk_, got);
                if (memcmp(got, sumv, nkv * dv * 8)) fail_msg("dv kv head (%zu, %zu) differs", b, hk_);
            }
        free(sv); free(gd); free(dqd); free(dkd); free(dvd); free(gf);
    }
    free(qf); free(kf); free(vf); free(of); free(qd); free(kd); free(vd); free(od);
    rk_attn_destroy(pb);
    rk_attn_destroy(ph);
}

static void test_batch_matches_heads(void **state)
{
    (void)state;
    static const size_t kvhs[] = { H, 2, 1 };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        for (size_t g = 0; g < 3; g++)
            for (int layout = 0; layout < 2; layout++)
                for (int nt = 1; nt <= 2; nt++) run_case(&kinds[i], kvhs[g], layout, nt);
}

/* The float32 batch path (exact softmax: its own, spread over heads and tiles, split over key
 * chunks for decoding shapes) against the float64 one (head by head) within float rounding,
 * forward and backward, and the same bits for 1 and 2 threads. */
static double max_abs(const double *x, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static void check_close(const float *f, const double *d, size_t n, double rtol, const char *what)
{
    double scale = max_abs(d, n);
    for (size_t i = 0; i < n; i++)
        if (!(fabs(f[i] - d[i]) <= rtol * scale))
            fail_msg("%s[%zu] = %.9g, double %.17g (rtol %.3g of %.3g)", what, i, (double)f[i], d[i],
                     rtol, scale);
}

static void float_vs_double(rk_attn_config cfg, size_t nq, size_t nkv, size_t d, size_t kvh,
                            int bnhd, const size_t *kvl, const char *what)
{
    const size_t dv = d, nQ = B * H * nq * d, nK = B * kvh * nkv * d, nO = B * H * nq * dv;
    cfg.n_q = nq; cfg.n_kv = nkv; cfg.d = d; cfg.d_v = dv;
    cfg.batch = B; cfg.heads = H; cfg.kv_heads = kvh;
    float *f[8];
    double *x[8];
    const size_t sz[8] = { nQ, nK, nK, nO, nO, nQ, nK, nK };   /* q k v out dout dq dk dv */
    for (int i = 0; i < 8; i++) { f[i] = calloc(sz[i], 4); x[i] = calloc(sz[i], 8); }
    for (int i = 0; i < 5; i++) if (i != 3) fill(f[i], x[i], sz[i], 100 + (unsigned long)i);
    rk_tensor T[8];
    rk_tensord Td[8];
    for (int i = 0; i < 8; i++) {
        int kv = i == 1 || i == 2 || i == 6 || i == 7;
        size_t hh = kv ? kvh : H, n = kv ? nkv : nq;
        T[i] = tf(f[i], bnhd, hh, n, d);
        Td[i] = td(x[i], bnhd, hh, n, d);
    }
    float *keep[3];
    for (int nt = 1; nt <= 2; nt++) {
        cfg.nthreads = nt;
        rk_attn *p = NULL;
        OK(rk_attn_create(&p, &cfg));
        size_t ns = rk_attn_saved_len(p);
        float *sf = calloc(ns + 1, 4);
        double *sd = calloc(ns + 1, 8);
        OK(rk_attn_forward_batch(p, &T[0], &T[1], &T[2], &T[3], kvl, sf));
        OK(rk_attn_backward_batch(p, &T[0], &T[1], &T[2], &T[3], sf, &T[4], &T[5], &T[6], &T[7], kvl));
        if (nt == 1) {
            OK(rk_attn_forward_batch_d(p, &Td[0], &Td[1], &Td[2], &Td[3], kvl, sd));
            OK(rk_attn_backward_batch_d(p, &Td[0], &Td[1], &Td[2], &Td[3], sd, &Td[4], &Td[5],
                                        &Td[6], &Td[7], kvl));
            /* float rounding through n keys and d products (see test_grad.c's bound) */
            double rtol = 8.0 * (double)(nkv + 2 * d + 8) * 1.2e-7;
            char w[128];
            static const char *const nm[8] = { "q", "k", "v", "out", "dout", "dq", "dk", "dv" };
            for (int i = 3; i < 8; i++) {
                if (i == 4) continue;
                snprintf(w, sizeof w, "%s %s", what, nm[i]);
                check_close(f[i], x[i], sz[i], rtol, w);
            }
            for (int i = 0; i < 3; i++) {
                keep[i] = malloc(sz[i + 5] * 4);
                memcpy(keep[i], f[i + 5], sz[i + 5] * 4);
            }
        } else {
            for (int i = 0; i < 3; i++) {
                if (memcmp(keep[i], f[i + 5], sz[i + 5] * 4))
                    fail_msg("%s: gradients differ between 1 and 2 threads", what);
                free(keep[i]);
            }
        }
        free(sf);
        free(sd);
        rk_attn_destroy(p);
    }
    for (int i = 0; i < 8; i++) { free(f[i]); free(x[i]); }
}

static void test_batch_vs_double(void **state)
{
    (void)state;
    const size_t kvl[B] = { 53, 40 }, kvh[3] = { H, 2, 1 };
    for (size_t g = 0; g < 3; g++)
        for (int layout = 0; layout < 2; layout++) {
            char what[96];
            rk_attn_config c = { .kind = RK_SOFTMAX, .causal = 1, .rope = RK_ROPE_QK };
            snprintf(what, sizeof what, "causal rope kv_heads %zu %s", kvh[g], layout ? "bnhd" : "bhnd");
            float_vs_double(c, 61, 53, 8, kvh[g], layout, kvl, what);
            rk_attn_config b = { .kind = RK_SOFTMAX };
            snprintf(what, sizeof what, "bidirectional kv_heads %zu %s", kvh[g], layout ? "bnhd" : "bhnd");
            float_vs_double(b, 50, 70, 6, kvh[g], layout, NULL, what);
        }
}

/* Decoding shapes: one query tile against more than two key chunks (split-KV, merged by
 * log-sum-exp), with padded sequences, causal or not. */
static void test_decoding(void **state)
{
    (void)state;
    const size_t kvl[B] = { 2600, 1500 };
    rk_attn_config c = { .kind = RK_SOFTMAX };
    float_vs_double(c, 1, 2600, 8, 1, 0, kvl, "decode n_q 1 MQA");
    rk_attn_config cr = { .kind = RK_SOFTMAX, .causal = 1, .rope = RK_ROPE_QK };
    float_vs_double(cr, 5, 3100, 6, 2, 1, NULL, "decode n_q 5 causal rope GQA");
    const size_t kvl2[B] = { 2200, 2100 };
    float_vs_double(cr, 17, 2200, 4, H, 0, kvl2, "decode n_q 17 causal rope padded");
}

/* Decoding's overflow guard is decided per head after the chunks (each chunk packs and
 * measures its own keys): one huge key in a late chunk of one key/value head sends the heads
 * that read it through the double fallback and leaves the others on the fast path; every
 * output finite, equal to the float64 path's, the same bits for 1 and 2 threads. */
static void test_decoding_guard(void **state)
{
    (void)state;
    const size_t nkv = 2600, d = 8, kvh = 2, nQ = B * H * d, nK = B * kvh * nkv * d;
    float *f[4];
    double *x[4];
    const size_t sz[4] = { nQ, nK, nK, nQ };
    for (int i = 0; i < 4; i++) { f[i] = calloc(sz[i], 4); x[i] = calloc(sz[i], 8); }
    for (int i = 0; i < 3; i++) fill(f[i], x[i], sz[i], 300 + (unsigned long)i);
    /* batch 1, key/value head 0 (query heads 0, 1), key 2100 (chunk 2): |k| ~ 1e30, and
     * those heads' queries ~ 1e10, so their logits (~1e40) overflow float */
    for (size_t c = 0; c < d; c++) {
        size_t at = ((1 * kvh + 0) * nkv + 2100) * d + c;
        f[1][at] *= 1e30f;
        x[1][at] = f[1][at];
        for (size_t h = 0; h < 2; h++) {
            f[0][(1 * H + h) * d + c] *= 1e10f;
            x[0][(1 * H + h) * d + c] = f[0][(1 * H + h) * d + c];
        }
    }
    rk_tensor T[4];
    rk_tensord Td[4];
    for (int i = 0; i < 4; i++) {
        int kv = i == 1 || i == 2;
        T[i] = tf(f[i], 0, kv ? kvh : H, kv ? nkv : 1, d);
        Td[i] = td(x[i], 0, kv ? kvh : H, kv ? nkv : 1, d);
    }
    float first[B * H * 8];
    for (int nt = 1; nt <= 2; nt++) {
        rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = 1, .n_kv = nkv, .d = d, .batch = B,
                             .heads = H, .kv_heads = kvh, .nthreads = nt };
        rk_attn *p = NULL;
        OK(rk_attn_create(&p, &c));
        OK(rk_attn_execute_batch(p, &T[0], &T[1], &T[2], &T[3], NULL));
        if (nt == 1) {
            OK(rk_attn_execute_batch_d(p, &Td[0], &Td[1], &Td[2], &Td[3], NULL));
            for (size_t i = 0; i < nQ; i++)
                if (!isfinite(f[3][i]) || fabs(f[3][i] - x[3][i]) > 1e-5 * (1.0 + fabs(x[3][i])))
                    fail_msg("decode guard: out[%zu] = %.9g, double %.17g", i, (double)f[3][i],
                             x[3][i]);
            memcpy(first, f[3], nQ * 4);
        } else if (memcmp(first, f[3], nQ * 4)) {
            fail_msg("decode guard: outputs differ between 1 and 2 threads");
        }
        rk_attn_destroy(p);
    }
    for (int i = 0; i < 4; i++) { free(f[i]); free(x[i]); }
}

static void test_batch_errors(void **state)
{
    (void)state;
    rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = 3, .n_kv = 3, .d = 2, .batch = 2, .heads = 3,
                         .kv_heads = 2 };
    rk_attn *p = NULL;
    assert_rk_error(rk_attn_create(&p, &c), RK_EINVAL);           /* 2 does not divide 3 */
    c.kv_heads = 3;
    assert_rk_ok(rk_attn_create(&p, &c));
    float buf[2 * 3 * 3 * 2], ob[2 * 3 * 3 * 2], m[6];
    rk_mat mm = rk_mat_view(m, 3, 2, 2);
    assert_rk_error(rk_attn_execute(p, &mm, &mm, &mm, &mm, RK_ALL_KEYS), RK_EDIM);  /* batch plan */
    rk_tensor q = rk_tensor_bhnd(buf, 2, 3, 3, 2), o = rk_tensor_bhnd(ob, 2, 3, 3, 2);
    rk_tensor bad = rk_tensor_bhnd(buf, 2, 2, 3, 2);
    assert_rk_error(rk_attn_execute_batch(p, &q, &bad, &q, &o, NULL), RK_EDIM);
    assert_rk_error(rk_attn_execute_batch(p, &q, &q, &q, &q, NULL), RK_EINVAL);     /* overlap */
    size_t kvl[2] = { 3, 4 };
    assert_rk_error(rk_attn_execute_batch(p, &q, &q, &q, &o, kvl), RK_EDIM);
    rk_tensor nul = q;
    nul.data = NULL;
    assert_rk_error(rk_attn_execute_batch(p, &nul, &q, &q, &o, NULL), RK_EINVAL);
    rk_tensor narrow = q;
    narrow.sn = 1;
    assert_rk_error(rk_attn_execute_batch(p, &narrow, &q, &q, &o, NULL), RK_EDIM);
    assert_rk_error(rk_attn_execute_batch(NULL, &q, &q, &q, &o, NULL), RK_EINVAL);
    kvl[1] = 2;
    assert_rk_ok(rk_attn_execute_batch(p, &q, &q, &q, &o, kvl));
    rk_attn_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_matches_heads),
        cmocka_unit_test(test_batch_vs_double),
        cmocka_unit_test(test_decoding),
        cmocka_unit_test(test_decoding_guard),
        cmocka_unit_test(test_batch_errors),
    };
    return cmocka_run_group_tests_name("batch", tests, NULL, NULL);
}
