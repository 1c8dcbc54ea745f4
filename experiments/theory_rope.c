/* `ropekit theory`: RoFormer's RoPE properties on the RoPE under test: the relative property
 * (11)/(16) in double and float32, (15) = (34), orthogonality and norms (15)/(16), the complex
 * form (12)/(35), Abel summation (36), the bound (37) behind Figure 2, and the two pairing
 * layouts. */
#include "theory_internal.h"
#include "decay.h"

/* y = R^d_{Theta,p} x through the explicit block-diagonal matrix of eq. (15). */
static void paper_matrix(double base, size_t d, double p, double *R)
{
    memset(R, 0, d * d * sizeof *R);
    for (size_t i = 0; i < d / 2; i++) {
        double a = p * paper_theta(base, i, d), c = cos(a), s = sin(a);
        R[(2 * i) * d + 2 * i] = c;
        R[(2 * i) * d + 2 * i + 1] = -s;
        R[(2 * i + 1) * d + 2 * i] = s;
        R[(2 * i + 1) * d + 2 * i + 1] = c;
    }
}

/* ---- RoPE checks -------------------------------------------------------------------------- */

static const size_t dims[] = { 2, 8, 64, 128 };
#define NDIMS (sizeof dims / sizeof dims[0])
static const int64_t fixed_pos[] = { 0, 1, 2, 3, 100, 4095, 4096, 65537, 999999, 1000000, -7,
                                     -1000000 };
#define NFIXED (sizeof fixed_pos / sizeof fixed_pos[0])

/* (11)/(16): (R_m q).(R_n k) = q.(R_{n-m} k). f32: the float kernels, dots in double. */
static int rel_check(const theory_config *cfg, theory_result *res, int f32, int64_t P,
                     unsigned long tag)
{
    const theory_rope *R = cfg->rope;
    gsl_rng *r = rng_for(cfg, tag);
    if (!r) return RK_ENOMEM;
    int err = RK_OK;
    double q[MAXD], k[MAXD], a[MAXD], b[MAXD], c[MAXD], worst = 0.0;
    float qf[MAXD], kf[MAXD], af[MAXD], bf[MAXD], cf[MAXD];
    size_t wd = 0;
    int64_t wm = 0, wn = 0;
    for (size_t t = 0; t < cfg->draws; t++) {
        size_t d = dims[t % NDIMS];
        randn(r, q, d);
        randn(r, k, d);
        int64_t m = rpos(r, P), n = rpos(r, P);
        if (t < 2) { m = t ? -P : P; n = -m; }          /* the extremes: n - m = -+2P */
        double e, s;
        if (f32) {
            for (size_t i = 0; i < d; i++) { qf[i] = (float)q[i]; kf[i] = (float)k[i]; }
            TRY(rot1f(R, RK_ROPE_INTERLEAVED, qf, af, d, m));
            TRY(rot1f(R, RK_ROPE_INTERLEAVED, kf, bf, d, n));
            TRY(rot1f(R, RK_ROPE_INTERLEAVED, kf, cf, d, n - m));
            e = fabs(dotf(af, bf, d) - dotf(qf, cf, d));
            s = nrmf(qf, d) * nrmf(kf, d);
        } else {
            TRY(rot1(R, RK_ROPE_INTERLEAVED, q, a, d, m));
            TRY(rot1(R, RK_ROPE_INTERLEAVED, k, b, d, n));
            TRY(rot1(R, RK_ROPE_INTERLEAVED, k, c, d, n - m));
            e = fabs(dot(a, b, d) - dot(q, c, d));
            s = nrm(q, d) * nrm(k, d);
        }
        if (!(e / s <= worst)) { worst = e / s; wd = d; wm = m; wn = n; }
    }
    res->equation = "(11)/(16)";
    res->prec = f32 ? "f32" : "f64";
    setf(res->what, sizeof res->what, "(R_m q).(R_n k) vs q.(R_{n-m} k): max |diff|/(|q||k|) over %zu "
         "draws, q, k ~ N(0,1), d in {2,8,64,128}, |m|,|n| <= %lld", cfg->draws, (long long)P);
    res->measured = worst;
    res->cmp = THEORY_LE;
    double p = (double)P;
    res->tol = f32 ? 2 * erot_f(p) + erot_f(2 * p) + 2 * gam(MAXD, U)
                   : 2 * erot(p) + erot(2 * p) + 2 * gam(MAXD, U);
    setf(res->detail, sizeof res->detail, "worst at d=%zu m=%lld n=%lld", wd, (long long)wm,
         (long long)wn);
    setf(res->why, sizeof res->why, "rounding only: each rotation within %s(p)|x| (%s, see theory.c), "
         "each dot in double within g_d|q||k|: tol = %s(P) + %s(P) + %s(2P) + 2 g_128 at P = %lld",
         f32 ? "e_f" : "e", f32 ? "e_f(p) = 6u|p| + 4u + 6u_f: float kernel, angle in double"
                            : "e(p) = 6u|p| + 8u: angle p*theta <= 3u|p|, cos/sin, 2 products + 1 sum",
         f32 ? "e_f" : "e", f32 ? "e_f" : "e", f32 ? "e_f" : "e", (long long)P);
done:
    gsl_rng_free(r);
    return err;
}
int theory__chk_rel_small(const theory_config *c, theory_result *r)
{
    return rel_check(c, r, 0, 4096, 1);
}
int theory__chk_rel_large(const theory_config *c, theory_result *r)
{
    return rel_check(c, r, 0, 1000000, 2);
}
int theory__chk_rel_f32(const theory_config *c, theory_result *r)
{
    return rel_check(c, r, 1, 1000000, 3);
}

/* (15) vs (34): the explicit block-diagonal matrix and the elementwise form under test. */
int theory__chk_matrix(const theory_config *cfg, theory_result *res)
{
    const theory_rope *R = cfg->rope;
    gsl_rng *r = rng_for(cfg, 4);
    double *M = malloc(MAXD * MAXD * sizeof *M);
    if (!r || !M) { gsl_rng_free(r); free(M); return RK_ENOMEM; }
    int err = RK_OK;
    double x[MAXD], y[MAXD], worst = 0.0;
    size_t wd = 0;
    int64_t wp = 0;
    for (size_t di = 0; di < NDIMS; di++)
        for (size_t pi = 0; pi < NFIXED; pi++) {
            size_t d = dims[di];
            paper_matrix(R->base, d, (double)fixed_pos[pi], M);
            for (int rep = 0; rep < 2; rep++) {
                randn(r, x, d);
                TRY(rot1(R, RK_ROPE_INTERLEAVED, x, y, d, fixed_pos[pi]));
                double e2 = 0.0;
                for (size_t i = 0; i < d; i++) {
                    double mx = 0.0;
                    for (size_t j = 0; j < d; j++) mx += M[i * d + j] * x[j];
                    e2 += (y[i] - mx) * (y[i] - mx);
                }
                double e = sqrt(e2) / nrm(x, d);
                if (!(e <= worst)) { worst = e; wd = d; wp = fixed_pos[pi]; }
            }
        }
    res->equation = "(15)=(34)";
    res->prec = "f64";
    setf(res->what, sizeof res->what, "elementwise R x (34) vs the block-diagonal matrix of (15) built "
         "from theta_i = 10000^(-2i/d): max |diff|_2/|x|_2, d in {2,8,64,128}, %zu positions in "
         "[-1e6, 1e6]", NFIXED);
    res->measured = worst;
    res->cmp = THEORY_LE;
    res->tol = 2 * erot(1e6) + 4 * U;
    setf(res->detail, sizeof res->detail, "worst at d=%zu pos=%lld", wd, (long long)wp);
    setf(res->why, sizeof res->why, "both forms are within e(P)|x| of the exact rotation, e(p) = 6u|p| + "
         "8u; the matrix-vector product adds <= 2u per row (2 nonzeros): tol = 2 e(1e6) + 4u");
done:
    gsl_rng_free(r);
    free(M);
    return err;
}

/* R^T R = I: column j of R is R e_j. */
int theory__chk_orth(const theory_config *cfg, theory_result *res)
{
    const theory_rope *R = cfg->rope;
    double *X = calloc(MAXD * MAXD, sizeof *X), *Y = malloc(MAXD * MAXD * sizeof *Y);
    int64_t pos[MAXD];
    if (!X || !Y) { free(X); free(Y); return RK_ENOMEM; }
    int err = RK_OK;
    double worst = 0.0;
    size_t wd = 0;
    int64_t wp = 0;
    for (size_t di = 0; di < NDIMS; di++)
        for (size_t pi = 0; pi < NFIXED; pi++) {
            size_t d = dims[di];
            memset(X, 0, d * d * sizeof *X);
            for (size_t j = 0; j < d; j++) { X[j * d + j] = 1.0; pos[j] = fixed_pos[pi]; }
            rk_matd xv = rk_matd_view(X, d, d, d), yv = rk_matd_view(Y, d, d, d);
            TRY(R->apply_d(R, RK_ROPE_INTERLEAVED, &xv, &yv, pos));
            for (size_t i = 0; i < d; i++)
                for (size_t j = 0; j < d; j++) {
                    double g = dot(Y + i * d, Y + j * d, d) - (i == j ? 1.0 : 0.0);
                    if (!(fabs(g) <= worst)) { worst = fabs(g); wd = d; wp = fixed_pos[pi]; }
                }
        }
    res->equation = "(15) R^T R=I";
    res->prec = "f64";
    setf(res->what, sizeof res->what, "R orthogonal: max |R^T R - I| with R e_j from the RoPE under test, "
         "d in {2,8,64,128}, %zu positions in [-1e6, 1e6]", NFIXED);
    res->measured = worst;
    res->cmp = THEORY_LE;
    res->tol = 8 * U;
    setf(res->detail, sizeof res->detail, "worst at d=%zu pos=%lld", wd, (long long)wp);
    setf(res->why, sizeof res->why, "R e_j holds the rounded cos, sin of one angle (<= 2u each): "
         "c^2 + s^2 - 1 <= 4 sqrt2 u + 2u (products, sum) < 8u; off-diagonal terms cancel exactly; "
         "the angle's own error cannot break orthogonality");
done:
    free(X);
    free(Y);
    return err;
}

/* Norms preserved ("stability", eq. 16 remark). */
static int norm_check(const theory_config *cfg, theory_result *res, int f32)
{
    const theory_rope *R = cfg->rope;
    gsl_rng *r = rng_for(cfg, f32 ? 7 : 6);
    if (!r) return RK_ENOMEM;
    int err = RK_OK;
    double x[MAXD], y[MAXD], worst = 0.0;
    float xf[MAXD], yf[MAXD];
    for (size_t t = 0; t < cfg->draws; t++) {
        size_t d = dims[t % NDIMS];
        randn(r, x, d);
        int64_t p = t % 2 ? rpos(r, 1000000) : rpos(r, 4096);
        double e;
        if (f32) {
            for (size_t i = 0; i < d; i++) xf[i] = (float)x[i];
            TRY(rot1f(R, RK_ROPE_INTERLEAVED, xf, yf, d, p));
            e = fabs(nrmf(yf, d) - nrmf(xf, d)) / nrmf(xf, d);
        } else {
            TRY(rot1(R, RK_ROPE_INTERLEAVED, x, y, d, p));
            e = fabs(nrm(y, d) - nrm(x, d)) / nrm(x, d);
        }
        if (!(e <= worst)) worst = e;
    }
    res->equation = "(16) |Rx|=|x|";
    res->prec = f32 ? "f32" : "f64";
    setf(res->what, sizeof res->what, "norms preserved: max ||R_p x| - |x||/|x| over %zu draws, x ~ N(0,1), "
         "d in {2,8,64,128}, |p| <= 1e6", cfg->draws);
    res->measured = worst;
    res->cmp = THEORY_LE;
    res->tol = f32 ? 2 * sqrt(2.0) * (UF + 2 * U) + 4 * UF + 2 * U + gam(MAXD, U)
                   : (2 * sqrt(2.0) + 6) * U + gam(MAXD, U);
    setf(res->why, sizeof res->why, "%s", f32
         ? "cos, sin rounded to float (<= u_f + 2u): |(c,s)| within 2 sqrt2 (u_f + 2u); float products "
           "and sums <= 4 u_f per pair; the two norms in double <= g_d + 2u"
         : "rounded cos, sin (<= 2u): |(c,s)| within 2 sqrt2 u; products and sums <= 4u per pair; the "
           "two norms <= g_d + 2u: tol = (2 sqrt2 + 6) u + g_128");
done:
    gsl_rng_free(r);
    return err;
}
int theory__chk_norm_d(const theory_config *c, theory_result *r)
{
    return norm_check(c, r, 0);
}
int theory__chk_norm_f(const theory_config *c, theory_result *r)
{
    return norm_check(c, r, 1);
}

/* h_i = q~_i conj(k~_i) of interleaved pairs (docs/theory.md#figure-2). */
static void hprod(const double *q, const double *k, size_t i, double *hr, double *hi)
{
    *hr = q[2 * i] * k[2 * i] + q[2 * i + 1] * k[2 * i + 1];
    *hi = q[2 * i + 1] * k[2 * i] - q[2 * i] * k[2 * i + 1];
}

/* (12)/(35): the complex form Re sum_i h_i e^{i(m-n) theta_i} equals the real form. */
int theory__chk_complex(const theory_config *cfg, theory_result *res)
{
    const theory_rope *R = cfg->rope;
    gsl_rng *r = rng_for(cfg, 8);
    if (!r) return RK_ENOMEM;
    int err = RK_OK;
    const int64_t P = 1000000;
    double q[MAXD], k[MAXD], a[MAXD], b[MAXD], worst = 0.0;
    size_t wd = 0;
    for (size_t t = 0; t < cfg->draws; t++) {
        size_t d = dims[t % NDIMS];
        randn(r, q, d);
        randn(r, k, d);
        int64_t m = t % 2 ? rpos(r, P) : rpos(r, 300), n = t % 2 ? rpos(r, P) : rpos(r, 300);
        TRY(rot1(R, RK_ROPE_INTERLEAVED, q, a, d, m));
        TRY(rot1(R, RK_ROPE_INTERLEAVED, k, b, d, n));
        double cx = 0.0;
        for (size_t i = 0; i < d / 2; i++) {
            double hr, hi, ang = (double)(m - n) * paper_theta(R->base, i, d);
            hprod(q, k, i, &hr, &hi);
            cx += hr * cos(ang) - hi * sin(ang);
        }
        double e = fabs(dot(a, b, d) - cx) / (nrm(q, d) * nrm(k, d));
        if (!(e <= worst)) { worst = e; wd = d; }
    }
    res->equation = "(12)/(35)";
    res->prec = "f64";
    setf(res->what, sizeof res->what, "(R_m q).(R_n k) vs Re sum_i q~_i conj(k~_i) e^{i(m-n)theta_i} "
         "(q~_i = q_2i + i q_2i+1): max |diff|/(|q||k|), %zu draws, d in {2,8,64,128}, |m|,|n| <= 1e6",
         cfg->draws);
    res->measured = worst;
    res->cmp = THEORY_LE;
    res->tol = 2 * erot((double)P) + gam(MAXD, U) + 3 * U * 2 * (double)P + 6 * U + gam(MAXD / 2, U);
    setf(res->detail, sizeof res->detail, "worst at d=%zu (d = 2 is eq. 12 itself)", wd);
    setf(res->why, sizeof res->why, "real side: e(m) + e(n) + g_d; complex side: angle (m-n) theta "
         "<= 3u|m-n|, cos/sin 2u, h_i and the product 4u, the sum g_{d/2}: tol = 2 e(P) + g_128 + "
         "6u P + 6u + g_64");
done:
    gsl_rng_free(r);
    return err;
}

/* z = sum_i h_i e^{i(m-n) theta_i} from the RoPE under test: Re z = (R_m q).(R_n k) and
 * Im z = (R_m Jq).(R_n k) with Jq = (q_1, -q_0, q_3, -q_2, ...) (-i q~ per pair). */
static void jrot(const double *q, double *jq, size_t d)
{
    for (size_t i = 0; i < d / 2; i++) { jq[2 * i] = q[2 * i + 1]; jq[2 * i + 1] = -q[2 * i]; }
}

/* (36) Abel summation: sum_i h_i e^{i dist theta_i} = -sum_i S_{i+1} (h_{i+1} - h_i). */
int theory__chk_abel(const theory_config *cfg, theory_result *res)
{
    const theory_rope *R = cfg->rope;
    gsl_rng *r = rng_for(cfg, 9);
    if (!r) return RK_ENOMEM;
    int err = RK_OK;
    const int64_t P = 1000000;
    double q[MAXD], k[MAXD], jq[MAXD], a[MAXD], aj[MAXD], b[MAXD], worst = 0.0;
    size_t wd = 0;
    for (size_t t = 0; t < cfg->draws; t++) {
        size_t d = dims[t % NDIMS], h = d / 2;
        randn(r, q, d);
        randn(r, k, d);
        int64_t n = t % 2 ? rpos(r, P) : rpos(r, 1000);
        int64_t m = t % 2 ? rpos(r, P) : n + rpos(r, 256);
        jrot(q, jq, d);
        TRY(rot1(R, RK_ROPE_INTERLEAVED, q, a, d, m));
        TRY(rot1(R, RK_ROPE_INTERLEAVED, jq, aj, d, m));
        TRY(rot1(R, RK_ROPE_INTERLEAVED, k, b, d, n));
        double zr = dot(a, b, d), zi = dot(aj, b, d);
        /* right side of (36) with the paper's theta */
        double sr = 0.0, si = 0.0, rr = 0.0, ri = 0.0, A = 0.0, G = 0.0;
        for (size_t i = 0; i < h; i++) {
            double ang = (double)(m - n) * paper_theta(R->base, i, d);
            sr += cos(ang);
            si += sin(ang);
            double hr, hi, nr = 0.0, ni = 0.0;
            hprod(q, k, i, &hr, &hi);
            if (i + 1 < h) hprod(q, k, i + 1, &nr, &ni);
            double dr = nr - hr, di = ni - hi;
            rr -= sr * dr - si * di;
            ri -= sr * di + si * dr;
            A += (double)(i + 1) * hypot(dr, di);
            G += (double)(i + 1) * (hypot(hr, hi) + hypot(nr, ni));
        }
        double scale = nrm(q, d) * nrm(k, d) + A + G;
        double e = hypot(zr - rr, zi - ri) / scale;
        if (!(e <= worst)) { worst = e; wd = d; }
    }
    res->equation = "(36)";
    res->prec = "f64";
    setf(res->what, sizeof res->what, "Abel summation: z = sum h_i e^{i(m-n)theta_i} (Re, Im from the "
         "RoPE under test) vs -sum S_{i+1}(h_{i+1}-h_i): max |diff|/(|q||k| + A + G), %zu draws, "
         "|m|,|n| <= 1e6", cfg->draws);
    res->measured = worst;
    res->cmp = THEORY_LE;
    double p = (double)P;
    res->tol = sqrt(2.0) * (2 * erot(p) + gam(MAXD, U)) +
               sqrt(2.0) * (3 * U * 2 * p + 2 * gam(MAXD / 2, U) + 5 * U) + 3 * U;
    setf(res->detail, sizeof res->detail, "worst at d=%zu; A = sum (i+1)|h_{i+1}-h_i|, G = sum (i+1)"
         "(|h_i| + |h_{i+1}|)", wd);
    setf(res->why, sizeof res->why, "identity exact in real arithmetic; left: sqrt2 (e(m) + e(n) + g_d)"
         " |q||k|; right: |S_j| off by <= j sqrt2 (3u|dist| + 2u + g_h), h_i by 2 sqrt2 u |h|: "
         "<= sqrt2 (6uP + 2 g_64 + 5u) A + 2 sqrt2 u G + uA");
done:
    gsl_rng_free(r);
    return err;
}

/* (37): |z| <= sum |S_{i+1}||h_{i+1}-h_i| <= max|h_{i+1}-h_i| sum_j |S_j| for every draw and
 * distance, including draws for which it is an equality. */
int theory__chk_bound(const theory_config *cfg, theory_result *res)
{
    const theory_rope *R = cfg->rope;
    enum { ND = 513, DMAX = 256 };
    static const size_t bd[] = { 16, 128 };
    gsl_rng *r = rng_for(cfg, 10);
    double *Y = malloc(ND * MAXD * sizeof *Y), *YJ = malloc(ND * MAXD * sizeof *YJ);
    double *Q = malloc(ND * MAXD * sizeof *Q), *QJ = malloc(ND * MAXD * sizeof *QJ);
    int64_t *pos = malloc(ND * sizeof *pos);
    int err = RK_OK;
    if (!r || !Y || !YJ || !Q || !QJ || !pos) { err = RK_ENOMEM; goto done; }
    double q[MAXD], k[MAXD], jq[MAXD], kb[MAXD], theta[MAXD / 2];
    double worst = INFINITY, worst_mid = INFINITY, tolmax = 0.0;
    long viol = 0;
    size_t ndraw = 0, wd = 0;
    long wdist = 0;
    for (size_t di = 0; di < 2; di++) {
        size_t d = bd[di], h = d / 2;
        for (size_t i = 0; i < h; i++) theta[i] = paper_theta(R->base, i, d);
        size_t nd = cfg->draws / 2 + 1;
        for (size_t t = 0; t < nd; t++, ndraw++) {
            if (t == 0) {            /* the ramp q~_i = h - i, k~_i = 1: equality at distance 0 */
                for (size_t i = 0; i < h; i++) {
                    q[2 * i] = (double)(h - i); q[2 * i + 1] = 0.0;
                    k[2 * i] = 1.0; k[2 * i + 1] = 0.0;
                }
            } else {
                decay_draw(r, (decay_dist)(t % DECAY_NDIST), d, q, k);
            }
            int64_t n = (int64_t)gsl_rng_uniform_int(r, 1001);
            jrot(q, jq, d);
            for (size_t j = 0; j < ND; j++) {
                pos[j] = n + (int64_t)j - DMAX;
                memcpy(Q + j * d, q, d * sizeof *q);
                memcpy(QJ + j * d, jq, d * sizeof *q);
            }
            rk_matd qv = rk_matd_view(Q, ND, d, d), qjv = rk_matd_view(QJ, ND, d, d);
            rk_matd yv = rk_matd_view(Y, ND, d, d), yjv = rk_matd_view(YJ, ND, d, d);
            TRY(R->apply_d(R, RK_ROPE_INTERLEAVED, &qv, &yv, pos));
            TRY(R->apply_d(R, RK_ROPE_INTERLEAVED, &qjv, &yjv, pos));
            TRY(rot1(R, RK_ROPE_INTERLEAVED, k, kb, d, n));
            double qk = nrm(q, d) * nrm(k, d);
            for (size_t j = 0; j < ND; j++) {
                double dist = (double)j - DMAX, sc, az, abel, pb;
                decay_one(theta, h, q, k, dist, &sc, &az, &abel, &pb);
                double z = hypot(dot(Y + j * d, kb, d), dot(YJ + j * d, kb, d));
                /* rounding allowance relative to the middle term (<= the right one) */
                double tolr = sqrt(2.0) * (erot((double)pos[j]) + erot((double)n) + gam((double)d, U)) *
                              qk / (abel > 0 ? abel : 1.0) +
                              sqrt(2.0) * (3 * U * fabs(dist) + 2 * gam((double)h, U) + 5 * U) +
                              3 * U;
                if (tolr > tolmax) tolmax = tolr;
                double mg = (pb - z) / pb, mm = (abel - z) / abel;
                if (z > abel * (1 + tolr) || z > pb * (1 + tolr)) viol++;
                if (mg < worst) { worst = mg; wd = d; wdist = (long)dist; }
                if (mm < worst_mid) worst_mid = mm;
            }
        }
    }
    res->equation = "(37)";
    res->prec = "f64";
    setf(res->what, sizeof res->what, "bound |z| <= sum|S_{i+1}||h_{i+1}-h_i| <= max|h_{i+1}-h_i| "
         "sum|S_j|: smallest relative margin, %zu draws (normal, uniform, +-1, q = k, and the tight "
         "ramp) x distances -256..256, d in {16,128}", ndraw);
    res->measured = worst;
    res->cmp = THEORY_GE;
    res->tol = -tolmax;
    res->violations = viol;
    setf(res->detail, sizeof res->detail, "smallest margin at d=%zu distance=%ld; to the middle term: "
         "%.3g; ramp q~_i = d/2 - i, k~_i = 1 makes both equalities at distance 0", wd, wdist,
         worst_mid);
    setf(res->why, sizeof res->why, "a violation is |z| above a bound by more than rounding: z from the "
         "RoPE within sqrt2 (e(m) + e(n) + g_d)|q||k|, the bounds within sqrt2 (3u|dist| + 2 g_h + "
         "5u) + 3u of themselves; tol = the largest such allowance; must have 0 violations");
done:
    gsl_rng_free(r);
    free(Y);
    free(YJ);
    free(Q);
    free(QJ);
    free(pos);
    return err;
}

/* Interleaved and half-split give identical scores after the channel permutation
 * x_half = x_inter[perm], perm = (0, 2, 4, .., 1, 3, 5, ..) (docs/theory.md#conventions). */
static int layout_check(const theory_config *cfg, theory_result *res, int f32)
{
    const theory_rope *R = cfg->rope;
    gsl_rng *r = rng_for(cfg, f32 ? 12 : 11);
    if (!r) return RK_ENOMEM;
    int err = RK_OK;
    const int64_t P = 1000000;
    double q[MAXD], k[MAXD], worst = 0.0;
    double qi[MAXD], ki[MAXD], qh[MAXD], kh[MAXD], qp[MAXD], kp[MAXD];
    float fq[MAXD], fk[MAXD], fqi[MAXD], fki[MAXD], fqh[MAXD], fkh[MAXD], fqp[MAXD], fkp[MAXD];
    size_t perm[MAXD], wd = 0;
    for (size_t t = 0; t < cfg->draws; t++) {
        size_t d = dims[t % NDIMS], h = d / 2;
        for (size_t j = 0; j < h; j++) { perm[j] = 2 * j; perm[h + j] = 2 * j + 1; }
        randn(r, q, d);
        randn(r, k, d);
        int64_t m = rpos(r, t % 2 ? P : 4096), n = rpos(r, t % 2 ? P : 4096);
        double ev = 0.0, es;
        if (f32) {
            for (size_t j = 0; j < d; j++) { fq[j] = (float)q[j]; fk[j] = (float)k[j]; }
            for (size_t j = 0; j < d; j++) { fqp[j] = fq[perm[j]]; fkp[j] = fk[perm[j]]; }
            TRY(rot1f(R, RK_ROPE_INTERLEAVED, fq, fqi, d, m));
            TRY(rot1f(R, RK_ROPE_INTERLEAVED, fk, fki, d, n));
            TRY(rot1f(R, RK_ROPE_HALF, fqp, fqh, d, m));
            TRY(rot1f(R, RK_ROPE_HALF, fkp, fkh, d, n));
            for (size_t j = 0; j < d; j++) ev += ((double)fqh[j] - fqi[perm[j]]) * ((double)fqh[j] - fqi[perm[j]]);
            ev = sqrt(ev) / nrmf(fq, d);
            es = fabs(dotf(fqi, fki, d) - dotf(fqh, fkh, d)) / (nrmf(fq, d) * nrmf(fk, d));
        } else {
            for (size_t j = 0; j < d; j++) { qp[j] = q[perm[j]]; kp[j] = k[perm[j]]; }
            TRY(rot1(R, RK_ROPE_INTERLEAVED, q, qi, d, m));
            TRY(rot1(R, RK_ROPE_INTERLEAVED, k, ki, d, n));
            TRY(rot1(R, RK_ROPE_HALF, qp, qh, d, m));
            TRY(rot1(R, RK_ROPE_HALF, kp, kh, d, n));
            for (size_t j = 0; j < d; j++) ev += (qh[j] - qi[perm[j]]) * (qh[j] - qi[perm[j]]);
            ev = sqrt(ev) / nrm(q, d);
            es = fabs(dot(qi, ki, d) - dot(qh, kh, d)) / (nrm(q, d) * nrm(k, d));
        }
        double e = ev > es ? ev : es;
        if (!(e <= worst)) { worst = e; wd = d; }
    }
    res->equation = "layouts";
    res->prec = f32 ? "f32" : "f64";
    setf(res->what, sizeof res->what, "interleaved vs half-split on x[perm], perm = (0,2,..,1,3,..): "
         "max of |R x - perm^-1 R_half x[perm]|/|x| and |score diff|/(|q||k|), %zu draws, d in "
         "{2,8,64,128}, |m|,|n| <= 1e6", cfg->draws);
    res->measured = worst;
    res->cmp = THEORY_LE;
    double p = (double)P;
    res->tol = f32 ? 4 * erot_f(p) + 2 * gam(MAXD, U) : 4 * erot(p) + 2 * gam(MAXD, U);
    setf(res->detail, sizeof res->detail, "worst at d=%zu", wd);
    setf(res->why, sizeof res->why, "two implementations of one rotation, each within %s(p)|x|; two "
         "scores, each dot within g_d: tol = 2 (%s(m) + %s(n)) + 2 g_128 at P = 1e6",
         f32 ? "e_f" : "e", f32 ? "e_f" : "e", f32 ? "e_f" : "e");
done:
    gsl_rng_free(r);
    return err;
}
int theory__chk_layout_d(const theory_config *c, theory_result *r)
{
    return layout_check(c, r, 0);
}
int theory__chk_layout_f(const theory_config *c, theory_result *r)
{
    return layout_check(c, r, 1);
}
