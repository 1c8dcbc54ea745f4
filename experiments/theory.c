/* The paper's theory as runnable checks. See theory.h.
 *
 * Notation in the "why" texts: u = 2^-53 (double) or 2^-24 (float) unit roundoff,
 * g_n = n u / (1 - n u) (a sum or dot product of n terms), P the largest |position| of a check.
 * Rotation error: a RoPE that forms the angle in double as p * theta_i (theta_i = pow(...):
 * <= 1 ulp, so the angle is off by <= 3u |p| theta_i <= 3u|p| with theta_0 = 1), takes cos, sin
 * (<= 2u each) and 2 products + 1 sum per output (<= 2u (|a| + |b|)) is within
 *   e(p) |x|,   e(p) = 2 (3u|p| + 4u) = 6u|p| + 8u            (double),
 *   e_f(p) = 2 (3u|p| + 2u + 3u_f) = 6u|p| + 4u + 6u_f         (float kernel, double angle)
 * of the exact rotation (per pair (|a| + |b|) <= sqrt 2 |(a, b)|, two outputs).
 *
 * The checks live by paper section: theory_rope.c (RoFormer's RoPE: eqs. 11-16, 34-37, Figure 2's
 * bound), theory_e19.c (eq. 19, RoPE with linear attention), theory_favor.c (Performer Lemma 1,
 * Lemma 2, Theorem 2); theory_under_test.c holds the RoPE and feature map under test;
 * theory_internal.h the shared helpers. This file keeps the registry, the runner and the output.
 */
#include "theory_internal.h"

#include <stdio.h>

size_t theory_family = 0;

/* ---- registry, running, output -------------------------------------------------------------- */

const theory_check theory_checks[] = {
    { "rel-f64-small",   theory__chk_rel_small,    0 },
    { "rel-f64",         theory__chk_rel_large,    0 },
    { "rel-f32",         theory__chk_rel_f32,      0 },
    { "matrix",          theory__chk_matrix,       0 },
    { "orth",            theory__chk_orth,         0 },
    { "norm-f64",        theory__chk_norm_d,       0 },
    { "norm-f32",        theory__chk_norm_f,       0 },
    { "complex",         theory__chk_complex,      0 },
    { "abel",            theory__chk_abel,         0 },
    { "bound",           theory__chk_bound,        0 },
    { "layout-f64",      theory__chk_layout_d,     0 },
    { "layout-f32",      theory__chk_layout_f,     0 },
    { "eq19-shift",      theory__chk_e19_shift,    0 },
    { "eq19-qk-shift",   theory__chk_e19_qk,       0 },
    { "eq19-den",        theory__chk_e19_den,      0 },
    { "eq19-linear-f64", theory__chk_e19_lin_d,    0 },
    { "eq19-linear-f32", theory__chk_e19_lin_f,    0 },
    { "favor-unbiased",  theory__chk_fv_unbiased,  FC_N },
    { "favor-mse-pos",   theory__chk_fv_pos,       1 },
    { "favor-mse-trig",  theory__chk_fv_trig,      1 },
    { "favor-mse-hyp",   theory__chk_fv_hyp,       1 },
    { "favor-ort-bound", theory__chk_fv_ort_bound, 1 },
    { "favor-ort-gain",  theory__chk_fv_ort_gain,  1 },
};
const size_t theory_ncheck = sizeof theory_checks / sizeof theory_checks[0];

size_t theory__family(void)
{
    if (theory_family) return theory_family;
    size_t n = 0;
    for (size_t i = 0; i < theory_ncheck; i++) n += (size_t)theory_checks[i].statistical;
    return n;
}

int theory_find(const char *id)
{
    for (size_t i = 0; i < theory_ncheck; i++)
        if (strcmp(theory_checks[i].id, id) == 0) return (int)i;
    return -1;
}

int theory_run(size_t i, const theory_config *cfg, theory_result *res)
{
    memset(res, 0, sizeof *res);
    res->id = theory_checks[i].id;
    res->violations = -1;
    res->equation = res->prec = "";
    int err = theory_checks[i].fn(cfg, res);
    if (err) return err;
    double m = res->measured, t = res->tol;
    switch (res->cmp) {
    case THEORY_LE:    res->pass = m <= t; break;
    case THEORY_GE:    res->pass = m >= t; break;
    case THEORY_GT:    res->pass = m > t; break;
    case THEORY_NEAR1: res->pass = fabs(m - 1.0) <= t; break;
    default:           res->pass = 1; break;
    }
    if (res->violations > 0) res->pass = 0;
    return RK_OK;
}

const char *theory_cmp_str(theory_cmp c)
{
    switch (c) {
    case THEORY_LE:    return "<=";
    case THEORY_GE:    return ">=";
    case THEORY_GT:    return ">";
    case THEORY_NEAR1: return "1+-";
    default:           return "";
    }
}

static const char *result_str(const theory_result *r)
{
    return r->cmp == THEORY_INFO ? "INFO" : r->pass ? "PASS" : "FAIL";
}

void theory_print_header(FILE *f)
{
    fprintf(f, "%3s  %-6s %-16s %-4s %11s %-3s %-10s  %s\n", "#", "result", "equation", "prec",
            "measured", "", "tolerance", "check: what measured [details] (why this tolerance)");
}

void theory_print_row(FILE *f, size_t n, const theory_result *r)
{
    char tol[32] = "", viol[48] = "";
    if (r->cmp != THEORY_INFO) snprintf(tol, sizeof tol, "%.3g", r->tol);
    if (r->violations >= 0) snprintf(viol, sizeof viol, "; violations %ld", r->violations);
    fprintf(f, "%3zu  %-6s %-16s %-4s %11.4g %-3s %-10s  %s: %s [%s%s] (%s)\n", n, result_str(r),
            r->equation, r->prec, r->measured, theory_cmp_str(r->cmp), tol, r->id, r->what,
            r->detail, viol, r->why);
}

static void tsv_field(FILE *f, const char *s, int last)
{
    for (; *s; s++) fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, f);
    fputc(last ? '\n' : '\t', f);
}

void theory_tsv_header(FILE *f)
{
    fputs("id\tequation\tprecision\twhat\tmeasured\tcmp\ttolerance\tviolations\tdetail\twhy\t"
          "result\n", f);
}

void theory_tsv_row(FILE *f, const theory_result *r)
{
    char num[64];
    tsv_field(f, r->id, 0);
    tsv_field(f, r->equation, 0);
    tsv_field(f, r->prec, 0);
    tsv_field(f, r->what, 0);
    snprintf(num, sizeof num, "%.6g", r->measured);
    tsv_field(f, num, 0);
    tsv_field(f, theory_cmp_str(r->cmp), 0);
    if (r->cmp == THEORY_INFO) num[0] = '\0';
    else snprintf(num, sizeof num, "%.6g", r->tol);
    tsv_field(f, num, 0);
    if (r->violations >= 0) snprintf(num, sizeof num, "%ld", r->violations);
    else num[0] = '\0';
    tsv_field(f, num, 0);
    tsv_field(f, r->detail, 0);
    tsv_field(f, r->why, 0);
    tsv_field(f, result_str(r), 1);
}
