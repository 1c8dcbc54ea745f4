/* `ropekit theory`: the RoPE and the FAVOR+ feature map under test. The library's RoPE (plans
 * cached per dimension and layout), and naive re-implementations with a deliberate defect that
 * the checks must catch (theory.h: theory_mutant, theory_feat_mutant). */
#include "theory_internal.h"

/* ---- the library's RoPE ------------------------------------------------------------------- */

typedef struct {
    size_t n;
    struct { size_t d; rk_rope_style st; rk_rope *r; } e[32];
} lib_cache;

static int lib_get(const theory_rope *t, rk_rope_style st, size_t d, rk_rope **out)
{
    lib_cache *c = t->ctx;
    for (size_t i = 0; i < c->n; i++)
        if (c->e[i].d == d && c->e[i].st == st) { *out = c->e[i].r; return RK_OK; }
    if (c->n == sizeof c->e / sizeof c->e[0]) return RK_ENOMEM;
    rk_rope_config rc = { .dim = d, .style = st, .base = t->base };
    int err = rk_rope_create(out, &rc);
    if (err) return err;
    c->e[c->n].d = d;
    c->e[c->n].st = st;
    c->e[c->n].r = *out;
    c->n++;
    return RK_OK;
}

static int lib_apply_d(const theory_rope *t, rk_rope_style st, const rk_matd *x, rk_matd *y,
                       const int64_t *pos)
{
    rk_rope *r;
    int err = lib_get(t, st, x->cols, &r);
    return err ? err : rk_rope_apply_d(r, x, y, 0, pos, 0);
}
static int lib_apply_f(const theory_rope *t, rk_rope_style st, const rk_mat *x, rk_mat *y,
                       const int64_t *pos)
{
    rk_rope *r;
    int err = lib_get(t, st, x->cols, &r);
    return err ? err : rk_rope_apply(r, x, y, 0, pos, 0);
}

int theory_rope_library(theory_rope *r)
{
    memset(r, 0, sizeof *r);
    r->ctx = calloc(1, sizeof(lib_cache));
    if (!r->ctx) return RK_ENOMEM;
    r->name = "library";
    r->apply_d = lib_apply_d;
    r->apply_f = lib_apply_f;
    r->base = 10000.0;
    return RK_OK;
}

void theory_rope_free(theory_rope *r)
{
    if (!r || !r->ctx) return;
    lib_cache *c = r->ctx;
    for (size_t i = 0; i < c->n; i++) rk_rope_destroy(c->e[i].r);
    free(c);
    r->ctx = NULL;
}

/* ---- naive ropes with a defect ------------------------------------------------------------ */

const char *const theory_mutant_names[] = {
    "none", "freq", "sign", "onesided", "pair-inter", "pair-half", "angle32", "scale", NULL,
};
const char *const theory_mutant_help[] = {
    "naive re-implementation without defect (passes everything)",
    "off-by-one frequencies base^(-2(i+1)/d)",
    "sin sign swapped: every pair turns clockwise",
    "sin sign swapped in one output only: (a c + b s, b c + a s), not a rotation",
    "interleaved layout rotates the half-split pairs (x[i], x[i+d/2])",
    "half-split layout rotates the interleaved pairs (x[2i], x[2i+1])",
    "angle formed in float32: (float)pos * (float)theta",
    "output times 1.01 (an attention factor leaking into R)",
};

/* Pair i of row x (d values) under mutation m: indices and the rotated values. */
static void naive_pair(int m, rk_rope_style st, double base, size_t d, size_t i, int64_t pos,
                       size_t *ia, size_t *ib, double *c, double *s)
{
    size_t h = d / 2;
    int inter = st == RK_ROPE_INTERLEAVED;
    if (m == THEORY_MUT_PAIR_INTER && st == RK_ROPE_INTERLEAVED) inter = 0;
    if (m == THEORY_MUT_PAIR_HALF && st == RK_ROPE_HALF) inter = 1;
    double th = paper_theta(base, m == THEORY_MUT_FREQ ? i + 1 : i, d);
    double a = m == THEORY_MUT_ANGLE32 ? (double)((float)pos * (float)th) : (double)pos * th;
    *c = cos(a);
    *s = sin(a);
    if (m == THEORY_MUT_SIGN) *s = -*s;
    *ia = inter ? 2 * i : i;
    *ib = inter ? 2 * i + 1 : i + h;
}

static int naive_apply_d(const theory_rope *t, rk_rope_style st, const rk_matd *x, rk_matd *y,
                         const int64_t *pos)
{
    size_t d = x->cols;
    if (d % 2 || y->cols != d || y->rows != x->rows) return RK_EDIM;
    for (size_t r = 0; r < x->rows; r++) {
        const double *x_r = x->data + r * x->ld;
        double *y_r = y->data + r * y->ld;
        for (size_t i = 0; i < d / 2; i++) {
            size_t ia, ib;
            double c, s;
            naive_pair(t->mutant, st, t->base, d, i, pos[r], &ia, &ib, &c, &s);
            double a = x_r[ia], b = x_r[ib];
            double oa = a * c - b * s, ob = b * c + a * s;
            if (t->mutant == THEORY_MUT_ONESIDED) oa = a * c + b * s;
            if (t->mutant == THEORY_MUT_SCALE) { oa *= 1.01; ob *= 1.01; }
            y_r[ia] = oa;
            y_r[ib] = ob;
        }
    }
    return RK_OK;
}

static int naive_apply_f(const theory_rope *t, rk_rope_style st, const rk_mat *x, rk_mat *y,
                         const int64_t *pos)
{
    size_t d = x->cols;
    if (d % 2 || y->cols != d || y->rows != x->rows) return RK_EDIM;
    for (size_t r = 0; r < x->rows; r++) {
        const float *x_r = x->data + r * x->ld;
        float *y_r = y->data + r * y->ld;
        for (size_t i = 0; i < d / 2; i++) {
            size_t ia, ib;
            double cd, sd;
            naive_pair(t->mutant, st, t->base, d, i, pos[r], &ia, &ib, &cd, &sd);
            float c = (float)cd, s = (float)sd, a = x_r[ia], b = x_r[ib];
            float oa = a * c - b * s, ob = b * c + a * s;
            if (t->mutant == THEORY_MUT_ONESIDED) oa = a * c + b * s;
            if (t->mutant == THEORY_MUT_SCALE) { oa *= 1.01f; ob *= 1.01f; }
            y_r[ia] = oa;
            y_r[ib] = ob;
        }
    }
    return RK_OK;
}

void theory_rope_mutant(theory_rope *r, theory_mutant m)
{
    memset(r, 0, sizeof *r);
    r->name = theory_mutant_names[m];
    r->apply_d = naive_apply_d;
    r->apply_f = naive_apply_f;
    r->base = 10000.0;
    r->mutant = (int)m;
}

const char *const theory_feat_names[] = { "none", "bias", "half", "noorth", "trig", NULL };
const char *const theory_feat_help[] = {
    "the library's feature map",
    "every FAVOR+ feature times 1.1 (estimator biased by 1.21)",
    "every other projection dropped, the rest times sqrt 2 (unbiased, MSE doubled)",
    "'orthogonal' projections drawn iid (no Theorem 2 gain)",
    "eq. 19 denominators from trigonometric features (may be negative)",
};
