/* Kernel paths (issue 14): every path this CPU has (portable, AVX2, AVX-512), chosen through
 * rk_attn_config.isa / rk_rope_config.isa and once through ROPEKIT_ISA, against the float64
 * references with tolerances derived from float rounding, and the same bits for 1 and 2
 * threads within a path:
 *   - the five softmax micro-kernels of each path element by element against double sums,
 *     with NaN / Inf planted wherever the contract says a kernel must not look, and the two
 *     packing kernels (panel transpose, magnitudes) exactly against plain loops;
 *   - exact softmax forward (bidirectional, causal, RoPE both pairings, bias with -inf
 *     entries, xPos, key padding, n_q != n_kv, padded rows) against tests/ref_attn.c, and
 *     its backward against the float64 backward (tests/grad_check.c);
 *   - FAVOR+ and linear attention against tests/ref_linear.c, and the same bits on every
 *     path (products and feature rows are one fixed chain per element), forward and backward;
 *   - RoPE, both pairings, in and out of the table, inverse, against tests/ref_rope.c, and
 *     the same bits on every path (no FMA anywhere);
 *   - what the plan reports (rk_attn_get_config / rk_rope_get_config isa) is the path asked
 *     for; a path the CPU lacks is RK_EUNSUP; rk_isa_available agrees with /proc/cpuinfo. */
#include "check.h"
#include "grad_check.h"
#include "ref_attn.h"
#include "ref_linear.h"
#include "ref_rope.h"
#include "softmax_kern.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gsl/gsl_randist.h>

void rk__perf_force_portable(int on);   /* lib/performer.c test hook */

#define U ((double)FLT_EPSILON / 2)    /* float unit roundoff 2^-24 */
#define ALL RK_ALL_KEYS
#define LN2 0.69314718055994530942

/* gamma_n = n u / (1 - n u): the bound of n float roundings in a row (Higham). */
static double gam(double n) { return n * U / (1.0 - n * U); }

/* The paths this CPU has, narrowest first. */
static size_t paths(rk_isa out[3])
{
    static const rk_isa all[3] = { RK_ISA_PORTABLE, RK_ISA_AVX2, RK_ISA_AVX512 };
    size_t n = 0;
    for (size_t i = 0; i < 3; i++)
        if (rk_isa_available(all[i])) out[n++] = all[i];
    return n;
}

static void *alloc64(size_t bytes)
{
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    assert_non_null(p);
    return p;
}

static float nanf_(void) { return NAN; }

/* ---- what the CPU reports ------------------------------------------------------------------ */

/* 1 if /proc/cpuinfo's first flags line lists `flag` (a whole word); -1 if it cannot be read. */
static int cpuinfo_has(const char *flag)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return -1;
    static char line[8192];
    int found = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "flags", 5) == 0) {
            found = 0;
            for (char *t = strtok(strchr(line, ':') + 1, " \t\n"); t; t = strtok(NULL, " \t\n"))
                if (strcmp(t, flag) == 0) found = 1;
            break;
        }
    fclose(f);
    return found;
}

static void test_available_matches_cpu(void **state)
{
    (void)state;
    int avx2 = cpuinfo_has("avx2"), fma = cpuinfo_has("fma");
    if (avx2 < 0) {
        print_message("no /proc/cpuinfo flags line: rk_isa_available not cross-checked\n");
    } else {
        int want2 = avx2 && fma;
        int want512 = want2 && cpuinfo_has("avx512f") && cpuinfo_has("avx512dq") &&
                      cpuinfo_has("avx512bw") && cpuinfo_has("avx512vl");
        assert_int_equal(rk_isa_available(RK_ISA_AVX2), want2);
        assert_int_equal(rk_isa_available(RK_ISA_AVX512), want512);
    }
    assert_true(rk_isa_available(RK_ISA_PORTABLE));
    assert_true(rk_isa_available(RK_ISA_AUTO));
    rk_isa p[3];
    size_t np = paths(p);
    print_message("paths on this CPU:");
    for (size_t i = 0; i < np; i++) print_message(" %s", rk_isa_name(p[i]));
    print_message("\n");
    /* AUTO resolves to the widest (ROPEKIT_ISA unset) */
    unsetenv("ROPEKIT_ISA");
    assert_int_equal(rk_isa_resolve(RK_ISA_AUTO), p[np - 1]);
    /* a path the CPU lacks: RK_EUNSUP at create, for attention and RoPE plans */
    static const rk_isa wide[2] = { RK_ISA_AVX2, RK_ISA_AVX512 };
    size_t lacking = 0;
    for (size_t i = 0; i < 2; i++) {
        if (rk_isa_available(wide[i])) continue;
        lacking++;
        rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = 4, .n_kv = 4, .d = 4, .isa = wide[i] };
        rk_attn *a = NULL;
        assert_rk_error(rk_attn_create(&a, &c), RK_EUNSUP);
        assert_null(a);
        c.kind = RK_PERFORMER;
        c.seed = 1;
        assert_rk_error(rk_attn_create(&a, &c), RK_EUNSUP);
        rk_rope_config rc = { .dim = 8, .isa = wide[i] };
        rk_rope *r = NULL;
        assert_rk_error(rk_rope_create(&r, &rc), RK_EUNSUP);
        assert_null(r);
    }
    if (!lacking) print_message("this CPU has every path: RK_EUNSUP not reachable here\n");
    /* an unknown value is refused */
    rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = 4, .n_kv = 4, .d = 4, .isa = (rk_isa)17 };
    rk_attn *a = NULL;
    assert_rk_error(rk_attn_create(&a, &c), RK_EINVAL);
    rk_rope_config rc = { .dim = 8, .isa = (rk_isa)-3 };
    rk_rope *r = NULL;
    assert_rk_error(rk_rope_create(&r, &rc), RK_EINVAL);
}

/* ---- softmax micro-kernels against double sums ------------------------------------------ */

typedef struct { double worst; const char *what; } ratio;

/* |got - want| <= tol, exact when tol == 0 (bitwise for 0: +0 and -0 both allowed). */
static void near(ratio *w, double got, double want, double tol, const char *kern, size_t r,
                 size_t j)
{
    double err = fabs(got - want);
    if (tol == 0.0 ? got != want : !(err <= tol))
        fail_msg("%s %s[%zu][%zu] = %.9g, want %.9g (|err| %.3g > tol %.3g)", w->what, kern, r,
                 j, got, want, err, tol);
    if (tol > 0.0 && err / tol > w->worst) w->worst = err / tol;
}

static void check_qk(const rk__sm_kernels *K, gsl_rng *g, ratio *w)
{
    static const size_t ds[] = { 1, 5, 16, 64, 67 };
    for (size_t di = 0; di < sizeof ds / sizeof ds[0]; di++)
        for (size_t npan = 1; npan <= 4; npan++) {
            size_t d = ds[di], lds = npan * RK_SM_NR + 3;
            float *q = alloc64(RK_SM_MR * d * sizeof *q), *kt = alloc64(npan * d * RK_SM_NR * 4);
            float *s = alloc64(RK_SM_MR * lds * sizeof *s);
            for (size_t i = 0; i < RK_SM_MR * d; i++) q[i] = (float)gsl_ran_gaussian(g, 1.0);
            for (size_t i = 0; i < npan * d * RK_SM_NR; i++) kt[i] = (float)gsl_ran_gaussian(g, 1.0);
            for (size_t i = 0; i < RK_SM_MR * lds; i++) s[i] = nanf_();
            K->qk(q, d, kt, npan, s, lds);
            for (size_t r = 0; r < RK_SM_MR; r++) {
                for (size_t j = 0; j < npan * RK_SM_NR; j++) {
                    const float *kp = kt + (j / RK_SM_NR) * d * RK_SM_NR + j % RK_SM_NR;
                    double e = 0.0, a = 0.0;
                    for (size_t c = 0; c < d; c++) {
                        e += (double)q[r * d + c] * kp[c * RK_SM_NR];
                        a += fabs((double)q[r * d + c] * kp[c * RK_SM_NR]);
                    }
                    near(w, s[r * lds + j], e, gam((double)d) * a, "qk", r, j);
                }
                for (size_t j = npan * RK_SM_NR; j < lds; j++) assert_true(isnan(s[r * lds + j]));
            }
            free(q); free(kt); free(s);
        }
}

/* Row patterns of seen columns for a block of ncol columns. */
static void nv_pattern(size_t pat, size_t ncol, size_t nv[RK_SM_MR])
{
    for (size_t r = 0; r < RK_SM_MR; r++) {
        size_t v;
        switch (pat) {
        case 0:  v = ncol; break;                                 /* every row sees all     */
        case 1:  v = ncol - RK_SM_MR + 1 + r; break;              /* causal diagonal        */
        case 2:  v = r == 2 ? 0 : (r * 7 + 1) % (ncol + 1); break;/* ragged, one empty row  */
        default: v = r % 2 ? 0 : 1; break;                        /* nearly nothing         */
        }
        nv[r] = v > ncol ? ncol : v;
    }
}

static void check_rows(const rk__sm_kernels *K, gsl_rng *g, ratio *w)
{
    for (size_t ncol = 16; ncol <= 64; ncol += 48)
        for (size_t pat = 0; pat < 4; pat++) {
            size_t lds = ncol + 5, nv[RK_SM_MR];
            nv_pattern(pat, ncol, nv);
            float *s = alloc64(RK_SM_MR * lds * sizeof *s), m[RK_SM_MR], alpha[RK_SM_MR];
            double l[RK_SM_MR];
            for (size_t r = 0; r < RK_SM_MR; r++) { m[r] = -INFINITY; l[r] = 0.0; }
            for (int tile = 0; tile < 2; tile++) {
                /* visible logits in [-20, 20] (log2 domain, no flush to 0); masked columns hold
                 * what must never reach the max or the sum */
                for (size_t r = 0; r < RK_SM_MR; r++)
                    for (size_t j = 0; j < lds; j++)
                        s[r * lds + j] = j < nv[r] ? (float)(40.0 * gsl_rng_uniform(g) - 20.0)
                                                   : (j % 3 == 0 ? nanf_() : j % 3 == 1 ? INFINITY : 1e30f);
                float s0[RK_SM_MR * 69], m0[RK_SM_MR];
                double l0[RK_SM_MR];
                memcpy(s0, s, RK_SM_MR * lds * sizeof *s);
                memcpy(m0, m, sizeof m);
                memcpy(l0, l, sizeof l);
                K->rows(s, lds, ncol, nv, m, l, alpha);
                for (size_t r = 0; r < RK_SM_MR; r++) {
                    const float *sr = s0 + r * lds;
                    float mx = m0[r];
                    for (size_t j = 0; j < nv[r]; j++) mx = sr[j] > mx ? sr[j] : mx;
                    if (nv[r] == 0 || mx == -INFINITY) {          /* left out */
                        assert_true(m[r] == m0[r] && l[r] == l0[r] && alpha[r] == 1.0f);
                        for (size_t j = 0; j < ncol; j++) near(w, s[r * lds + j], 0.0, 0.0, "rows p", r, j);
                        continue;
                    }
                    near(w, m[r], mx, 0.0, "rows m", r, 0);       /* the max is exact */
                    /* alpha = exp2(m_old - m_new): exactly 0 on the first tile (m_old = -inf) */
                    double a = exp2((double)m0[r] - (double)mx);
                    double ta = m0[r] == -INFINITY ? 0.0
                              : a * (LN2 * U * fabs((double)m0[r] - mx) + 4.0 * U);
                    near(w, alpha[r], a, ta, "rows alpha", r, 0);
                    double sum = 0.0, tsum = 0.0;
                    for (size_t j = 0; j < ncol; j++) {
                        if (j >= nv[r]) { near(w, s[r * lds + j], 0.0, 0.0, "rows p", r, j); continue; }
                        double e = exp2((double)sr[j] - (double)mx);
                        /* s - m rounded (u |s - m| in log2 units) and exp2's own ~1.5 ulp */
                        double tol = e * (LN2 * U * fabs((double)sr[j] - mx) + 4.0 * U);
                        near(w, s[r * lds + j], e, tol, "rows p", r, j);
                        sum += e;
                        tsum += tol;
                    }
                    /* l = l_old alpha + the float sum of the p (ncol + 8 roundings) */
                    double lw = l0[r] * a + sum;
                    near(w, l[r], lw, gam((double)ncol + 8.0) * lw + tsum + l0[r] * ta, "rows l", r, 0);
                }
            }
            free(s);
        }
}

static void check_pv(const rk__sm_kernels *K, gsl_rng *g, ratio *w)
{
    for (size_t ncols = 16; ncols <= 80; ncols += 16)
        for (size_t pat = 0; pat < 4; pat++) {
            size_t nmax = 64, nv[RK_SM_MR], ldp = nmax + 1, ldv = ncols, ldo = ncols + 7;
            nv_pattern(pat, nmax, nv);
            float *p = alloc64(RK_SM_MR * ldp * 4), *v = alloc64(nmax * ldv * 4);
            float *o = alloc64(RK_SM_MR * ldo * 4), o0[RK_SM_MR * 87], alpha[RK_SM_MR];
            size_t hi = 0;
            for (size_t r = 0; r < RK_SM_MR; r++) hi = nv[r] > hi ? nv[r] : hi;
            for (size_t r = 0; r < RK_SM_MR; r++) {
                alpha[r] = (float)gsl_rng_uniform_pos(g);
                for (size_t j = 0; j < ldp; j++)    /* weights a row does not see: NaN */
                    p[r * ldp + j] = j < nv[r] ? (float)gsl_rng_uniform(g) : nanf_();
                for (size_t c = 0; c < ldo; c++) o[r * ldo + c] = (float)gsl_ran_gaussian(g, 1.0);
            }
            for (size_t j = 0; j < nmax; j++)       /* value rows no row sees: NaN */
                for (size_t c = 0; c < ldv; c++) v[j * ldv + c] = j < hi ? (float)gsl_ran_gaussian(g, 1.0) : nanf_();
            memcpy(o0, o, RK_SM_MR * ldo * 4);
            K->pv(p, ldp, v, ldv, nv, ncols, alpha, o, ldo);
            for (size_t r = 0; r < RK_SM_MR; r++) {
                for (size_t c = 0; c < ncols; c++) {
                    double e = (double)alpha[r] * o0[r * ldo + c], a = fabs(e);
                    for (size_t j = 0; j < nv[r]; j++) {
                        e += (double)p[r * ldp + j] * v[j * ldv + c];
                        a += fabs((double)p[r * ldp + j] * v[j * ldv + c]);
                    }
                    near(w, o[r * ldo + c], e, gam((double)nv[r] + 1.0) * a, "pv", r, c);
                }
                for (size_t c = ncols; c < ldo; c++) assert_true(o[r * ldo + c] == o0[r * ldo + c]);
            }
            free(p); free(v); free(o);
        }
}

static void check_rows_bwd(const rk__sm_kernels *K, gsl_rng *g, ratio *w)
{
    for (size_t ncol = 16; ncol <= 64; ncol += 16)
        for (size_t pat = 0; pat < 4; pat++) {
            size_t lds = ncol + 2, nv[RK_SM_MR];
            nv_pattern(pat, ncol, nv);
            float *s = alloc64(RK_SM_MR * lds * 4), *dp = alloc64(RK_SM_MR * lds * 4);
            float s0[RK_SM_MR * 66], dp0[RK_SM_MR * 66], lse[RK_SM_MR], dd[RK_SM_MR];
            for (size_t r = 0; r < RK_SM_MR; r++) {
                lse[r] = r == 4 ? -INFINITY : (float)(10.0 * gsl_rng_uniform(g));
                dd[r] = (float)gsl_ran_gaussian(g, 1.0);
                for (size_t j = 0; j < lds; j++) {
                    int seen = j < nv[r];
                    s[r * lds + j] = seen ? (float)(lse[r] == -INFINITY ? 1.0 : lse[r] - 20.0 * gsl_rng_uniform(g))
                                          : (j % 2 ? nanf_() : INFINITY);
                    dp[r * lds + j] = seen ? (float)gsl_ran_gaussian(g, 1.0) : nanf_();
                }
            }
            memcpy(s0, s, RK_SM_MR * lds * 4);
            memcpy(dp0, dp, RK_SM_MR * lds * 4);
            K->rows_bwd(s, dp, lds, ncol, nv, lse, dd);
            for (size_t r = 0; r < RK_SM_MR; r++)
                for (size_t j = 0; j < ncol; j++) {
                    if (j >= nv[r] || lse[r] == -INFINITY) {
                        near(w, s[r * lds + j], 0.0, 0.0, "rows_bwd p", r, j);
                        near(w, dp[r * lds + j], 0.0, 0.0, "rows_bwd ds", r, j);
                        continue;
                    }
                    double x = (double)s0[r * lds + j] - lse[r], e = exp2(x);
                    double te = e * (LN2 * U * fabs(x) + 4.0 * U);
                    double g1 = (double)dp0[r * lds + j] - dd[r];
                    near(w, s[r * lds + j], e, te, "rows_bwd p", r, j);
                    near(w, dp[r * lds + j], e * g1, te * fabs(g1) + 3.0 * U * e * fabs(g1) +
                         e * U * (fabs((double)dp0[r * lds + j]) + fabs(dd[r])), "rows_bwd ds", r, j);
                }
            free(s); free(dp);
        }
}

static void check_tpv(const rk__sm_kernels *K, gsl_rng *g, ratio *w)
{
    for (size_t ncols = 16; ncols <= 80; ncols += 16)
        for (size_t nk = 1; nk <= RK_SM_MR; nk++)
            for (int pat = 0; pat < 3; pat++) {
                size_t nr = 48, ldw = 64, ldx = ncols + 1, ldo = ncols + 3, rs[RK_SM_MR];
                for (size_t j = 0; j < RK_SM_MR; j++)   /* suffixes: all rows, a diagonal, none */
                    rs[j] = pat == 0 ? 0 : pat == 1 ? nr - RK_SM_MR + j : (j % 2 ? nr : 3 * j);
                float *wm = alloc64(nr * ldw * 4), *x = alloc64(nr * ldx * 4);
                float *o = alloc64(RK_SM_MR * ldo * 4), o0[RK_SM_MR * 83];
                for (size_t r = 0; r < nr; r++) {
                    for (size_t j = 0; j < ldw; j++)    /* weights of rows a key does not see: NaN */
                        wm[r * ldw + j] = j < RK_SM_MR && r < rs[j] ? nanf_() : (float)gsl_ran_gaussian(g, 1.0);
                    for (size_t c = 0; c < ldx; c++) x[r * ldx + c] = (float)gsl_ran_gaussian(g, 1.0);
                }
                for (size_t i = 0; i < RK_SM_MR * ldo; i++) o[i] = (float)gsl_ran_gaussian(g, 1.0);
                memcpy(o0, o, RK_SM_MR * ldo * 4);
                K->tpv(wm, ldw, x, ldx, nr, rs, nk, ncols, o, ldo);
                for (size_t j = 0; j < RK_SM_MR; j++)
                    for (size_t c = 0; c < ldo; c++) {
                        if (j >= nk || c >= ncols) {    /* keys past nk, columns past ncols: untouched */
                            assert_true(o[j * ldo + c] == o0[j * ldo + c]);
                            continue;
                        }
                        double e = o0[j * ldo + c], a = fabs(e);
                        for (size_t r = rs[j]; r < nr; r++) {
                            e += (double)wm[r * ldw + j] * x[r * ldx + c];
                            a += fabs((double)wm[r * ldw + j] * x[r * ldx + c]);
                        }
                        near(w, o[j * ldo + c], e, gam((double)(nr - rs[j]) + 1.0) * a, "tpv", j, c);
                    }
                free(wm); free(x); free(o);
            }
}

/* Packing is an exact copy: the key panel (key jj, channel c at c 16 + jj, pad keys 0), the
 * value rows, and the largest magnitude, NaN ignored, against plain loops; awkward widths and
 * strides. */
static void check_pack(const rk__sm_kernels *K, gsl_rng *g)
{
    static const size_t ds[] = { 1, 7, 15, 16, 17, 33, 64, 80, 129 };
    for (size_t di = 0; di < sizeof ds / sizeof *ds; di++)
        for (size_t jn = 1; jn <= RK_SM_NR; jn++) {
            const size_t d = ds[di], ldk = d + (jn % 3);
            float *k = alloc64(RK_SM_NR * ldk * 4 + 4), *kt = alloc64(RK_SM_NR * d * 4);
            float m = 0.0f;
            for (size_t i = 0; i < RK_SM_NR * ldk; i++)
                k[i] = (float)gsl_ran_gaussian(g, 1.0) * (float)(1 + i % 5);
            if (jn > 2) k[(jn - 2) * ldk + d / 2] = nanf_();   /* ignored by the max */
            for (size_t i = 0; i < RK_SM_NR * d; i++) kt[i] = 7.0f;  /* pads must become 0 */
            for (size_t jj = 0; jj < jn; jj++)
                for (size_t c = 0; c < d; c++)
                    if (fabsf(k[jj * ldk + c]) > m) m = fabsf(k[jj * ldk + c]);
            float got = K->pack_k(k, ldk, jn, d, kt);
            assert_true(got == m);
            for (size_t c = 0; c < d; c++)
                for (size_t jj = 0; jj < RK_SM_NR; jj++) {
                    float e = jj < jn ? k[jj * ldk + c] : 0.0f, a = kt[c * RK_SM_NR + jj];
                    assert_true(memcmp(&e, &a, sizeof e) == 0);
                }
            /* value rows: every width up to d (vector bodies and tails), columns past the
             * width untouched, the largest magnitude of the rows copied */
            float *vp = alloc64(RK_SM_NR * (d + 5) * 4);
            for (size_t w = 0; w <= d; w++) {
                const size_t ldp = w + 5;
                for (size_t i = 0; i < RK_SM_NR * ldp; i++) vp[i] = 7.0f;
                float mv = 0.0f;
                for (size_t jj = 0; jj < jn; jj++)
                    for (size_t c = 0; c < w; c++)
                        if (fabsf(k[jj * ldk + c]) > mv) mv = fabsf(k[jj * ldk + c]);
                assert_true(K->pack_v(k, ldk, jn, w, vp, ldp) == mv);
                for (size_t jj = 0; jj < RK_SM_NR; jj++)
                    for (size_t c = 0; c < ldp; c++) {
                        float e = jj < jn && c < w ? k[jj * ldk + c] : 7.0f, a = vp[jj * ldp + c];
                        assert_true(memcmp(&e, &a, sizeof e) == 0);
                    }
            }
            free(vp);
            free(k);
            free(kt);
        }
}

static void check_exp2(rk_isa isa, ratio *w)
{
    enum { N = 20011 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    for (size_t i = 0; i < N; i++) x[i] = (float)(-126.0 + 130.0 * (double)i / (N - 1));
    memcpy(y, x, N * sizeof *x);
    assert_true(rk__sm_exp2_array_isa(isa, y, N - 3));          /* a masked / scalar tail */
    for (size_t i = 0; i < N; i++) {
        if (i >= N - 3) { assert_true(y[i] == x[i]); continue; }  /* past n: untouched */
        double e = exp2((double)x[i]);
        near(w, y[i], e, 3.0 * 2.0 * U * e, "exp2", 0, i);
    }
    float sp[5] = { -INFINITY, -127.0f, NAN, 0.0f, 1.0f };
    assert_true(rk__sm_exp2_array_isa(isa, sp, 5));
    assert_true(sp[0] == 0.0f && sp[1] == 0.0f && isnan(sp[2]) && sp[3] == 1.0f && sp[4] == 2.0f);
    free(x);
    free(y);
}

static void test_softmax_kernels(void **state)
{
    (void)state;
    rk_isa p[3];
    size_t np = paths(p);
    float *ref = NULL, *got = NULL;
    for (size_t i = 0; i < np; i++) {
        const rk__sm_kernels *K = rk__sm_kernels_for(p[i]);
        assert_int_equal(K->isa, p[i]);                     /* the set names its path */
        gsl_rng *g = rk_test_rng(900 + i);
        ratio w = { 0.0, rk_isa_name(p[i]) };
        check_qk(K, g, &w);
        check_rows(K, g, &w);
        check_pv(K, g, &w);
        check_rows_bwd(K, g, &w);
        check_tpv(K, g, &w);
        check_pack(K, g);
        if (p[i] != RK_ISA_PORTABLE) check_exp2(p[i], &w);
        else assert_false(rk__sm_exp2_array_isa(RK_ISA_PORTABLE, &(float){ 0 }, 1));
        print_message("%s kernels: worst error %.3f of the derived bound\n", K->name, w.worst);
        gsl_rng_free(g);
    }
    /* the vector exp2s are one algorithm: the same bits lane by lane */
    if (rk_isa_available(RK_ISA_AVX512)) {
        enum { N = 4099 };
        ref = malloc(N * sizeof *ref);
        got = malloc(N * sizeof *got);
        for (size_t i = 0; i < N; i++) ref[i] = got[i] = (float)(-130.0 + 140.0 * (double)i / N);
        assert_true(rk__sm_exp2_array_isa(RK_ISA_AVX2, ref, N));
        assert_true(rk__sm_exp2_array_isa(RK_ISA_AVX512, got, N));
        assert_memory_equal(ref, got, N * sizeof *ref);
        free(ref);
        free(got);
    }
    /* a path the CPU lacks falls back to the widest it has */
    if (!rk_isa_available(RK_ISA_AVX512))
        assert_int_equal(rk__sm_kernels_for(RK_ISA_AVX512)->isa, p[np - 1]);
    rk__sm_force_portable(1);
    assert_int_equal(rk__sm_kernels_for(p[np - 1])->isa, RK_ISA_PORTABLE);
    rk__sm_force_portable(0);
}

/* ---- exact softmax through the plans ------------------------------------------------------- */

typedef struct {
    size_t  n_q, n_kv, d, dv;
    int     causal;
    int     rope;          /* 0 none, 1 interleaved, 2 half */
    size_t  kv_len;        /* ALL or a count */
    size_t  pad;           /* ld = cols + pad */
    int     bias;          /* a relative bias with -inf entries */
    int     xpos;          /* xPos (rope and causal) */
} scase;

static const scase scases[] = {
    /* n_q n_kv   d  dv causal rope kv_len pad bias xpos */
    {   37,  37,  16, 16, 0, 0, ALL, 1, 0, 0 },
    {   50,  33,  17,  9, 1, 0, ALL, 0, 0, 0 },   /* n_q > n_kv: first rows see nothing */
    {   33,  71,   5, 20, 1, 0, ALL, 2, 0, 0 },   /* odd d, n_q < n_kv */
    {  101, 131,  64, 64, 0, 1, ALL, 3, 0, 0 },   /* RoPE interleaved */
    {   97, 130,  64, 80, 1, 2, 100, 1, 0, 0 },   /* RoPE half, key padding */
    {   70,  90,  32, 48, 1, 0, ALL, 0, 1, 0 },   /* bias */
    {   61,  61,  24, 24, 0, 0,  40, 1, 1, 0 },   /* bias, bidirectional, padding */
    {   90,  90,  32, 32, 1, 1, ALL, 0, 0, 1 },   /* xPos */
    {   49, 130,  48, 16, 1, 2,  99, 2, 1, 1 },   /* everything at once */
    {    1, 300,  64, 64, 1, 0, ALL, 0, 0, 0 },   /* decoding */
};

static double bias_vals[1024];

/* The relative bias of a case (ALiBi-like decay, a wave, -inf every 7th offset) into
 * bias_vals: what sconfig points at and the reference reads. */
static void bias_fill(const scase *cs)
{
    size_t L = rk_bias_len(cs->n_q, cs->n_kv);
    assert_true(L <= 1024);
    for (size_t t = 0; t < L; t++) {
        double off = (double)t - (double)(cs->n_kv - 1);
        bias_vals[t] = t % 7 == 3 ? -INFINITY : -0.05 * fabs(off) + 0.5 * sin((double)t);
    }
}

static rk_attn_config sconfig(const scase *cs, rk_isa isa, int nthreads)
{
    rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = cs->n_q, .n_kv = cs->n_kv, .d = cs->d,
                         .d_v = cs->dv, .causal = cs->causal, .nthreads = nthreads, .isa = isa };
    if (cs->rope) {
        c.rope = RK_ROPE_QK;
        c.rope_cfg.style = cs->rope == 2 ? RK_ROPE_HALF : RK_ROPE_INTERLEAVED;
    }
    if (cs->bias) {
        bias_fill(cs);
        c.bias = bias_vals;
        c.bias_len = rk_bias_len(cs->n_q, cs->n_kv);
    }
    if (cs->xpos) c.xpos_scale_base = 512.0;
    return c;
}

static double max_row_norm(const rk_mat *m)
{
    double best = 0.0;
    for (size_t i = 0; i < m->rows; i++) {
        double s = 0.0;
        for (size_t j = 0; j < m->cols; j++) s += (double)m->data[i * m->ld + j] * m->data[i * m->ld + j];
        best = fmax(best, sqrt(s));
    }
    return best;
}

static double max_abs_f(const rk_mat *m)
{
    double best = 0.0;
    for (size_t i = 0; i < m->rows; i++)
        for (size_t j = 0; j < m->cols; j++) best = fmax(best, fabs(m->data[i * m->ld + j]));
    return best;
}

/* The float forward's bound. A logit z = scale q.k (natural units) is a float dot product of
 * rotated, xPos-scaled vectors: |dz| <= scale gamma_{d+8} |q| |k| (rotations keep 2-norms, a
 * visible pair's xPos factors multiply to <= 1; +8 for the rotation, xPos, the scaling by
 * scale log2 e and the bias add), plus the bias's rounding to float (2 u |b|), plus s - m's
 * rounding and exp2's ~1.5 ulp (u |z - z_max| + 4 u). A weight is then off by at most
 * e^{2 dz} - 1 relative (its logit and the max), so numerator and denominator are, and the
 * output by twice that times max |v|; the sums add gamma_{n_kv + n_kv/16 + 4} max |v| (terms
 * and the per-tile rescaling). Doubled for safety. */
static double sm_fwd_tol(const scase *cs, const rk_mat *q, const rk_mat *k, const rk_mat *v)
{
    double scale = 1.0 / sqrt((double)cs->d), qn = max_row_norm(q), kn = max_row_norm(k);
    double bmax = 0.0;
    if (cs->bias)
        for (size_t t = 0; t < rk_bias_len(cs->n_q, cs->n_kv); t++)
            if (isfinite(bias_vals[t])) bmax = fmax(bmax, fabs(bias_vals[t]));
    double zr = 2.0 * scale * qn * kn + 2.0 * bmax;       /* range of a row's logits */
    double dz = scale * gam((double)cs->d + 8.0) * qn * kn + 2.0 * U * bmax + U * zr + 4.0 * U;
    double vm = max_abs_f(v), n = (double)cs->n_kv;
    return 2.0 * (2.0 * expm1(2.0 * dz) * vm + gam(n + n / 16.0 + 4.0) * vm);
}

static void sm_reference(const scase *cs, const rk_matd *q, const rk_matd *k, const rk_matd *v,
                         rk_matd *want)
{
    ref_attn_rope rr = { cs->rope == 2 ? RK_ROPE_HALF : RK_ROPE_INTERLEAVED, 0.0, 0, 0 };
    ref_attn_xpos rx = { 512.0, 0.0 };
    ref_softmax_attention_ex(q, k, v, want, 1.0 / sqrt((double)cs->d), cs->causal, cs->kv_len,
                             cs->rope ? &rr : NULL, cs->bias ? bias_vals : NULL,
                             cs->xpos ? &rx : NULL);
}

static int same_rows(const rk_mat *a, const rk_mat *b)
{
    for (size_t i = 0; i < a->rows; i++)
        if (memcmp(a->data + i * a->ld, b->data + i * b->ld, a->cols * sizeof(float))) return 0;
    return 1;
}

static void test_softmax_forward(void **state)
{
    (void)state;
    rk_isa p[3];
    size_t np = paths(p);
    for (size_t ci = 0; ci < sizeof scases / sizeof scases[0]; ci++) {
        const scase *cs = &scases[ci];
        gsl_rng *g = rk_test_rng(40 + ci);
        rk_mat q = rk_test_randn(g, cs->n_q, cs->d, cs->d + cs->pad, 1.0);
        rk_mat k = rk_test_randn(g, cs->n_kv, cs->d, cs->d + cs->pad, 1.0);
        rk_mat v = rk_test_randn(g, cs->n_kv, cs->dv, cs->dv + cs->pad, 1.0);
        gsl_rng_free(g);
        rk_matd qd = rk_test_matd(cs->n_q, cs->d, cs->d), kd = rk_test_matd(cs->n_kv, cs->d, cs->d);
        rk_matd vd = rk_test_matd(cs->n_kv, cs->dv, cs->dv), want = rk_test_matd(cs->n_q, cs->dv, cs->dv);
        rk_test_f2d(&q, &qd); rk_test_f2d(&k, &kd); rk_test_f2d(&v, &vd);
        if (cs->bias) bias_fill(cs);
        sm_reference(cs, &qd, &kd, &vd, &want);
        double tol = sm_fwd_tol(cs, &q, &k, &v);
        for (size_t i = 0; i < np; i++) {
            rk_mat o1 = rk_test_mat(cs->n_q, cs->dv, cs->dv + cs->pad);
            rk_mat o2 = rk_test_mat(cs->n_q, cs->dv, cs->dv + 1);
            for (int nt = 1; nt <= 2; nt++) {
                rk_attn_config c = sconfig(cs, p[i], nt);
                rk_attn *a;
                assert_rk_ok(rk_attn_create(&a, &c));
                assert_int_equal(rk_attn_get_config(a)->isa, p[i]);
                assert_rk_ok(rk_attn_execute(a, &q, &k, &v, nt == 1 ? &o1 : &o2, cs->kv_len));
                rk_attn_destroy(a);
            }
            double err = rk_max_abs_diff(&o1, &want);
            if (!(err <= tol))
                fail_msg("softmax case %zu path %s: float error %.3g > derived bound %.3g", ci,
                         rk_isa_name(p[i]), err, tol);
            if (getenv("RK_TEST_VERBOSE"))
                print_message("softmax case %zu %s: error %.3g, bound %.3g\n", ci,
                              rk_isa_name(p[i]), err, tol);
            assert_true(same_rows(&o1, &o2));            /* 1 and 2 threads: the same bits */
            for (size_t r = 0; r < cs->n_q; r++)         /* padding of out never written */
                for (size_t j = cs->dv; j < o1.ld; j++) assert_true(isnan(o1.data[r * o1.ld + j]));
            rk_test_free(&o1);
            rk_test_free(&o2);
        }
        rk_test_free(&q); rk_test_free(&k); rk_test_free(&v);
        rk_test_freed(&qd); rk_test_freed(&kd); rk_test_freed(&vd); rk_test_freed(&want);
    }
}

/* Float backward bound of tests/test_grad.c: rtol = 8 (n + d + d_v + 8) u of max |g|. */
static double sm_bwd_rtol(const rk_attn_config *c)
{
    size_t n = c->n_q > c->n_kv ? c->n_q : c->n_kv, dv = c->d_v ? c->d_v : c->d;
    return 8.0 * (double)(n + c->d + dv + 8) * (double)FLT_EPSILON;
}

static void test_softmax_backward(void **state)
{
    (void)state;
    rk_isa p[3];
    size_t np = paths(p);
    static const scase bc[] = {
        /* n_q n_kv  d  dv causal rope kv_len pad bias xpos */
        {  70,  67,  5,  3, 1, 0, ALL, 0, 0, 0 },
        {  53,  90, 18, 17, 0, 1,  80, 0, 0, 0 },
        { 100,  60, 16, 16, 1, 2, ALL, 0, 1, 0 },
        {  64,  64, 32, 32, 1, 1,  60, 0, 0, 1 },
    };
    for (size_t ci = 0; ci < sizeof bc / sizeof bc[0]; ci++)
        for (size_t i = 0; i < np; i++) {
            grad_case gc = { sconfig(&bc[ci], p[i], 2), bc[ci].kv_len, 1.0, 60 + ci };
            char what[96];
            snprintf(what, sizeof what, "softmax backward case %zu path %s", ci, rk_isa_name(p[i]));
            grad_check_f32(&gc, what, sm_bwd_rtol(&gc.cfg), 0);
            grad_check_threads(&gc, what);
            grad_check_masks(&gc, what);
        }
}

/* ---- FAVOR+ and linear attention -------------------------------------------------------- */

typedef struct {
    rk_kind      kind;
    rk_kernel    kernel;
    rk_map       map;
    rk_rope_mode rope;
    int          causal;
    size_t       n_q, n_kv, d, dv, m;
    size_t       kv_len;
} pcase;

static const pcase pcases[] = {
    { RK_PERFORMER, RK_KERNEL_POSITIVE,   0, RK_ROPE_NONE,     0, 300, 300, 16, 12, 64, ALL },
    { RK_PERFORMER, RK_KERNEL_POSITIVE,   0, RK_ROPE_QK,       1, 131, 150, 18,  9, 37, ALL },
    { RK_PERFORMER, RK_KERNEL_HYPERBOLIC, 0, RK_ROPE_FEATURES, 1, 90,   70,  8,  5, 20, 60 },
    { RK_PERFORMER, RK_KERNEL_TRIG,       0, RK_ROPE_NONE,     1, 77,   77, 12, 20, 30, ALL },
    { RK_LINEAR,    0, RK_MAP_ELU,           RK_ROPE_NONE,     1, 200, 260, 24, 24,  0, ALL },
    { RK_LINEAR,    0, RK_MAP_RELU,          RK_ROPE_FEATURES, 0, 65,   65, 10,  7,  0, 50 },
};

static rk_attn_config pconfig(const pcase *cs, rk_isa isa, int nthreads)
{
    rk_attn_config c = { .kind = cs->kind, .n_q = cs->n_q, .n_kv = cs->n_kv, .d = cs->d,
                         .d_v = cs->dv, .causal = cs->causal, .rope = cs->rope,
                         .n_features = cs->m, .kernel = cs->kernel, .map = cs->map, .seed = 77,
                         .nthreads = nthreads, .isa = isa };
    return c;
}

/* The float forward's bound for maps with positive features (positive, hyperbolic, elu+1,
 * relu): a feature phi = exp(l) has |dl| <= gamma_{d+4} |x'| |w| + gamma_{d+2} h + 4 u (the
 * float projection, |x'|^2/2, the exp polynomial and the norm), so a product of two is off by
 * 2 dl relative; numerator and denominator are sums of positive terms through float chains of
 * at most n_kv + F terms: relative error gamma_{n_kv + F + 8}; so |d out| <= 2 (2 (e^{2 dl} -
 * 1) + gamma) max |v|, doubled. (elu+1 / relu: dl = 4 u.) Trig features change sign and
 * rope = features rotates the numerator's features, so their sums may cancel: no bound of this
 * form; those cases are checked bit for bit against the portable path (which
 * tests/test_performer.c checks against the reference). */
static double perf_tol(const pcase *cs, const rk_attn *a, const rk_mat *q, const rk_mat *k,
                       const rk_mat *v)
{
    if ((cs->kind == RK_PERFORMER && cs->kernel == RK_KERNEL_TRIG) || cs->rope == RK_ROPE_FEATURES)
        return -1.0;
    double dl = 4.0 * U;
    if (cs->kind == RK_PERFORMER) {
        const rk_attn_config *c = rk_attn_get_config(a);
        size_t m, d;
        const float *w = rk_attn_proj(a, &m, &d);
        double wn = 0.0;
        for (size_t r = 0; r < m; r++) {
            double s = 0.0;
            for (size_t j = 0; j < d; j++) s += (double)w[r * d + j] * w[r * d + j];
            wn = fmax(wn, sqrt(s));
        }
        double xn = fmax(max_row_norm(q), max_row_norm(k)) * sqrt(c->scale);
        dl += gam((double)cs->d + 4.0) * xn * wn + gam((double)cs->d + 2.0) * 0.5 * xn * xn;
    }
    size_t F = cs->kind == RK_PERFORMER ? (cs->kernel == RK_KERNEL_POSITIVE ? cs->m : 2 * cs->m) : cs->d;
    return 2.0 * 2.0 * (2.0 * expm1(2.0 * dl) + gam((double)(cs->n_kv + F) + 8.0)) * max_abs_f(v);
}

static void perf_reference(const rk_attn *a, const rk_matd *q, const rk_matd *k,
                           const rk_matd *v, rk_matd *want, size_t kv_len)
{
    const rk_attn_config *c = rk_attn_get_config(a);
    ref_linear_cfg r = { .kind = c->kind, .kernel = c->kernel, .map = c->map, .scale = c->scale,
                         .rope = c->rope, .style = c->rope_cfg.style, .base = c->rope_cfg.base,
                         .rotary_dim = c->rope_cfg.rotary_dim, .causal = c->causal,
                         .pos_offset = c->pos_offset };
    size_t m = 0, d = 0;
    const float *w = rk_attn_proj(a, &m, &d);
    double *wd = NULL;
    if (w) {
        wd = malloc(m * d * sizeof *wd);
        assert_non_null(wd);
        for (size_t i = 0; i < m * d; i++) wd[i] = w[i];
        r.w = wd;
        r.m = m;
    }
    ref_linear_attention(&r, q, k, v, want, kv_len);
    free(wd);
}

static void test_performer_paths(void **state)
{
    (void)state;
    rk_isa p[3];
    size_t np = paths(p);
    for (size_t ci = 0; ci < sizeof pcases / sizeof pcases[0]; ci++) {
        const pcase *cs = &pcases[ci];
        gsl_rng *g = rk_test_rng(70 + ci);
        rk_mat q = rk_test_randn(g, cs->n_q, cs->d, cs->d + 1, 0.7);
        rk_mat k = rk_test_randn(g, cs->n_kv, cs->d, cs->d + 2, 0.7);
        rk_mat v = rk_test_randn(g, cs->n_kv, cs->dv, cs->dv, 1.0);
        gsl_rng_free(g);
        rk_matd qd = rk_test_matd(cs->n_q, cs->d, cs->d), kd = rk_test_matd(cs->n_kv, cs->d, cs->d);
        rk_matd vd = rk_test_matd(cs->n_kv, cs->dv, cs->dv), want = rk_test_matd(cs->n_q, cs->dv, cs->dv);
        rk_test_f2d(&q, &qd); rk_test_f2d(&k, &kd); rk_test_f2d(&v, &vd);
        rk_mat first = rk_test_mat(cs->n_q, cs->dv, cs->dv);
        for (size_t i = 0; i < np; i++)
            for (int nt = 1; nt <= 2; nt++) {
                rk_attn_config c = pconfig(cs, p[i], nt);
                rk_attn *a;
                assert_rk_ok(rk_attn_create(&a, &c));
                assert_int_equal(rk_attn_get_config(a)->isa, p[i]);
                rk_mat o = rk_test_mat(cs->n_q, cs->dv, cs->dv + 1);
                assert_rk_ok(rk_attn_execute(a, &q, &k, &v, &o, cs->kv_len));
                if (i == 0 && nt == 1) {
                    for (size_t r = 0; r < cs->n_q; r++)
                        memcpy(first.data + r * first.ld, o.data + r * o.ld, cs->dv * sizeof(float));
                    perf_reference(a, &qd, &kd, &vd, &want, cs->kv_len);
                    double tol = perf_tol(cs, a, &q, &k, &v), err = rk_max_abs_diff(&o, &want);
                    if (tol >= 0.0 && !(err <= tol))
                        fail_msg("performer case %zu: float error %.3g > derived bound %.3g", ci,
                                 err, tol);
                } else if (!same_rows(&o, &first)) {
                    /* every path and thread count: the portable path's bits */
                    fail_msg("performer case %zu path %s, %d threads: not the portable path's bits",
                             ci, rk_isa_name(p[i]), nt);
                }
                rk_test_free(&o);
                rk_attn_destroy(a);
            }
        /* the forced-portable hook is what the plan then reports */
        rk__perf_force_portable(1);
        rk_attn_config c = pconfig(cs, p[np - 1], 1);
        rk_attn *a;
        assert_rk_ok(rk_attn_create(&a, &c));
        rk__perf_force_portable(0);
        assert_int_equal(rk_attn_get_config(a)->isa, RK_ISA_PORTABLE);
        rk_attn_destroy(a);
        rk_test_free(&first);
        rk_test_free(&q); rk_test_free(&k); rk_test_free(&v);
        rk_test_freed(&qd); rk_test_freed(&kd); rk_test_freed(&vd); rk_test_freed(&want);
    }
}

/* The FAVOR+ / linear training forward and backward: every path and thread count gives the
 * portable path's bits (the products are one FMA chain per element on every path, the feature
 * rows and their backward the same operations); tests/test_grad_linear.c checks the widest
 * path against the float64 backward with its derived bound, so the bound holds on every path. */
static void test_performer_backward_paths(void **state)
{
    (void)state;
    rk_isa p[3];
    size_t np = paths(p);
    for (size_t ci = 0; ci < sizeof pcases / sizeof pcases[0]; ci++) {
        const pcase *cs = &pcases[ci];
        gsl_rng *g = rk_test_rng(170 + ci);
        rk_mat q = rk_test_randn(g, cs->n_q, cs->d, cs->d + 1, 0.7);
        rk_mat k = rk_test_randn(g, cs->n_kv, cs->d, cs->d + 2, 0.7);
        rk_mat v = rk_test_randn(g, cs->n_kv, cs->dv, cs->dv, 1.0);
        rk_mat dout = rk_test_randn(g, cs->n_q, cs->dv, cs->dv, 1.0);
        gsl_rng_free(g);
        rk_mat ref[4] = { rk_test_mat(cs->n_q, cs->dv, cs->dv), rk_test_mat(cs->n_q, cs->d, cs->d),
                          rk_test_mat(cs->n_kv, cs->d, cs->d), rk_test_mat(cs->n_kv, cs->dv, cs->dv) };
        for (size_t i = 0; i < np; i++)
            for (int nt = 1; nt <= 2; nt++) {
                rk_attn_config c = pconfig(cs, p[i], nt);
                rk_attn *a;
                assert_rk_ok(rk_attn_create(&a, &c));
                rk_mat got[4] = { rk_test_mat(cs->n_q, cs->dv, cs->dv + 1), rk_test_mat(cs->n_q, cs->d, cs->d),
                                  rk_test_mat(cs->n_kv, cs->d, cs->d + 1), rk_test_mat(cs->n_kv, cs->dv, cs->dv) };
                size_t ns = rk_attn_saved_len(a);
                float *saved = malloc((ns ? ns : 1) * sizeof *saved);
                assert_non_null(saved);
                assert_rk_ok(rk_attn_forward(a, &q, &k, &v, &got[0], cs->kv_len, saved));
                assert_rk_ok(rk_attn_backward(a, &q, &k, &v, &got[0], saved, &dout, &got[1], &got[2],
                                              &got[3], cs->kv_len));
                for (int t = 0; t < 4; t++) {
                    if (i == 0 && nt == 1) {
                        for (size_t r = 0; r < got[t].rows; r++)
                            memcpy(ref[t].data + r * ref[t].ld, got[t].data + r * got[t].ld,
                                   got[t].cols * sizeof(float));
                    } else if (!same_rows(&got[t], &ref[t])) {
                        fail_msg("performer case %zu path %s, %d threads: %s is not the portable "
                                 "path's bits", ci, rk_isa_name(p[i]), nt,
                                 t == 0 ? "out" : t == 1 ? "dq" : t == 2 ? "dk" : "dv");
                    }
                    rk_test_free(&got[t]);
                }
                free(saved);
                rk_attn_destroy(a);
            }
        for (int t = 0; t < 4; t++) rk_test_free(&ref[t]);
        rk_test_free(&q); rk_test_free(&k); rk_test_free(&v); rk_test_free(&dout);
    }
}

/* ---- RoPE -------------------------------------------------------------------------------- */

/* o = fl(fl(a c) - fl(b s)) with c, s the double cos/sin rounded to float (times mscale m):
 * |o - o_exact| <= 4 u (|a| + |b|) m per output (three roundings and the two of c, s). */
static void test_rope_paths(void **state)
{
    (void)state;
    rk_isa p[3];
    size_t np = paths(p);
    gsl_rng *g = rk_test_rng(5);
    for (int st = 0; st < 2; st++)
        for (int inv = 0; inv < 2; inv++)
            for (int where = 0; where < 3; where++) {
                /* partial rotary (37 pairs: vector bodies and tails), 3 heads, YaRN's mscale;
                 * positions in the table, past it, and negative */
                rk_rope_config cfg = { .dim = 76, .rotary_dim = 74, .style = (rk_rope_style)st,
                                       .scaling = RK_SCALE_YARN, .factor = 2.0, .table_len = 64 };
                size_t n = 150, cols = 3 * 76;
                int64_t pos0 = where == 0 ? 0 : where == 1 ? 100000 : -75;
                rk_mat x = rk_test_randn(g, n, cols, cols + 3, 1.0), first = rk_test_mat(n, cols, cols);
                rk_matd xd = rk_test_matd(n, cols, cols), want = rk_test_matd(n, cols, cols);
                rk_test_f2d(&x, &xd);
                ref_rope_apply(&cfg, &xd, &want, pos0, NULL, inv);
                for (size_t i = 0; i < np; i++)
                    for (int nt = 1; nt <= 2; nt++) {
                        rk_rope_config c = cfg;
                        c.isa = p[i];
                        rk_rope *r;
                        assert_rk_ok(rk_rope_create(&r, &c));
                        assert_int_equal(rk_rope_get_config(r)->isa, p[i]);
                        double ms = rk_rope_mscale(r), mm = inv ? 1.0 / ms : ms;
                        rk_mat o = rk_test_mat(n, cols, cols + 1);
                        /* threads: rk_rope_apply goes parallel above 32768 elements (34200) */
                        {
                            int saved = omp_get_max_threads();
                            omp_set_num_threads(nt);
                            assert_rk_ok(rk_rope_apply(r, &x, &o, pos0, NULL, inv));
                            omp_set_num_threads(saved);
                        }
                        if (i == 0 && nt == 1) {
                            for (size_t t = 0; t < n; t++) {
                                memcpy(first.data + t * cols, o.data + t * o.ld, cols * sizeof(float));
                                for (size_t hd = 0; hd < 3; hd++)
                                    for (size_t pi = 0; pi < 37; pi++) {
                                        size_t ia = hd * 76 + (st ? pi : 2 * pi);
                                        size_t ib = hd * 76 + (st ? pi + 37 : 2 * pi + 1);
                                        double a = fabs((double)x.data[t * x.ld + ia]) +
                                                   fabs((double)x.data[t * x.ld + ib]);
                                        double tol = 4.0 * U * a * mm + 1e-12;
                                        for (int e = 0; e < 2; e++) {
                                            size_t j = e ? ib : ia;
                                            double err = fabs(o.data[t * o.ld + j] - want.data[t * want.ld + j]);
                                            if (!(err <= tol))
                                                fail_msg("rope style %d inv %d pos0 %lld: [%zu][%zu] error "
                                                         "%.3g > %.3g", st, inv, (long long)pos0, t, j, err, tol);
                                        }
                                    }
                            }
                        } else if (!same_rows(&o, &first)) {
                            fail_msg("rope style %d inv %d pos0 %lld path %s %d threads: not the "
                                     "portable path's bits", st, inv, (long long)pos0,
                                     rk_isa_name(p[i]), nt);
                        }
                        rk_test_free(&o);
                        rk_rope_destroy(r);
                    }
                rk_test_free(&x); rk_test_free(&first);
                rk_test_freed(&xd); rk_test_freed(&want);
            }
    gsl_rng_free(g);
}

/* ---- ROPEKIT_ISA ------------------------------------------------------------------------- */

/* Each path named through the environment: the plans (softmax, FAVOR+, RoPE) report it and
 * give the bits of the plan that asked for it through the config. A name that is no path is
 * RK_EINVAL at create. */
static void test_env(void **state)
{
    (void)state;
    rk_isa p[3];
    size_t np = paths(p);
    const scase *cs = &scases[4];
    gsl_rng *g = rk_test_rng(3);
    rk_mat q = rk_test_randn(g, cs->n_q, cs->d, cs->d, 1.0), k = rk_test_randn(g, cs->n_kv, cs->d, cs->d, 1.0);
    rk_mat v = rk_test_randn(g, cs->n_kv, cs->dv, cs->dv, 1.0);
    gsl_rng_free(g);
    for (size_t i = 0; i < np; i++) {
        rk_mat o_cfg = rk_test_mat(cs->n_q, cs->dv, cs->dv), o_env = rk_test_mat(cs->n_q, cs->dv, cs->dv);
        rk_attn *a;
        rk_attn_config c = sconfig(cs, p[i], 2);
        assert_rk_ok(rk_attn_create(&a, &c));
        assert_rk_ok(rk_attn_execute(a, &q, &k, &v, &o_cfg, cs->kv_len));
        rk_attn_destroy(a);
        assert_int_equal(setenv("ROPEKIT_ISA", rk_isa_name(p[i]), 1), 0);
        c = sconfig(cs, RK_ISA_AUTO, 2);
        assert_rk_ok(rk_attn_create(&a, &c));
        assert_int_equal(rk_attn_get_config(a)->isa, p[i]);
        assert_rk_ok(rk_attn_execute(a, &q, &k, &v, &o_env, cs->kv_len));
        rk_attn_destroy(a);
        assert_true(same_rows(&o_cfg, &o_env));
        rk_attn_config pc = pconfig(&pcases[0], RK_ISA_AUTO, 1);
        assert_rk_ok(rk_attn_create(&a, &pc));
        assert_int_equal(rk_attn_get_config(a)->isa, p[i]);
        rk_attn_destroy(a);
        rk_rope_config rc = { .dim = 64 };
        rk_rope *r;
        assert_rk_ok(rk_rope_create(&r, &rc));
        assert_int_equal(rk_rope_get_config(r)->isa, p[i]);
        rk_rope_destroy(r);
        /* an explicit config field wins over the environment */
        rk_rope_config rp = { .dim = 64, .isa = RK_ISA_PORTABLE };
        assert_rk_ok(rk_rope_create(&r, &rp));
        assert_int_equal(rk_rope_get_config(r)->isa, RK_ISA_PORTABLE);
        rk_rope_destroy(r);
        unsetenv("ROPEKIT_ISA");
        rk_test_free(&o_cfg);
        rk_test_free(&o_env);
    }
    assert_int_equal(setenv("ROPEKIT_ISA", "sse9", 1), 0);
    rk_attn_config c = sconfig(cs, RK_ISA_AUTO, 1);
    rk_attn *a = NULL;
    assert_rk_error(rk_attn_create(&a, &c), RK_EINVAL);
    assert_non_null(strstr(rk_last_error(), "ROPEKIT_ISA"));
    rk_rope_config rc = { .dim = 64 };
    rk_rope *r = NULL;
    assert_rk_error(rk_rope_create(&r, &rc), RK_EINVAL);
    unsetenv("ROPEKIT_ISA");
    rk_test_free(&q); rk_test_free(&k); rk_test_free(&v);
}

int main(void)
{
    unsetenv("ROPEKIT_ISA");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_available_matches_cpu),
        cmocka_unit_test(test_softmax_kernels),
        cmocka_unit_test(test_softmax_forward),
        cmocka_unit_test(test_softmax_backward),
        cmocka_unit_test(test_performer_paths),
        cmocka_unit_test(test_performer_backward_paths),
        cmocka_unit_test(test_rope_paths),
        cmocka_unit_test(test_env),
    };
    return cmocka_run_group_tests_name("isa", tests, NULL, NULL);
}
