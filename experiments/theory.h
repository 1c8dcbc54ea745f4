/* The paper's theory as runnable checks (`ropekit theory`): each check measures one statement of
 * RoFormer (eqs. 11-19, 34-37) or Performer (Lemmas 1-2, Theorem 2) on the library and returns
 * a row {equation, what, measured, tolerance, why, PASS/FAIL}.
 *
 * The RoPE under test is injectable (theory_rope): the library's rk_rope (theory_rope_library),
 * or a naive re-implementation with a deliberate defect (theory_rope_mutant) so that tests can
 * prove every check fails when the rotation is wrong. The checks compare it with the paper's own
 * definitions, which are written out here independently of the library: theta_i =
 * base^(-2i/d) (0-based, docs/theory.md#conventions), interleaved pairs (x[2i], x[2i+1]) turned
 * counter-clockwise by pos * theta_i (eqs. 13-15, 34). The FAVOR+ feature map under test can be
 * perturbed the same way (theory_feat_mutant).
 *
 * Tolerances are derived from the rounding of the computation (u = 2^-53 for double, 2^-24 for
 * float), not tuned; the "why" column gives the derivation, and docs/theory.md#checks gives
 * every check's equation and tolerance in full. Statistical checks use confidence
 * intervals at a 99% family-wise level (Bonferroni over the statistical tests of one run), so a
 * correct library fails an equality-type check (Lemma 1, Lemma 2, Theorem 2's bound) with
 * probability <= 1% whatever the seed; the one check that needs power (orthogonal features lower
 * the MSE) uses a fixed geometry where the gain is ~5 CI half-widths at the default trials.
 */
#ifndef RK_THEORY_H
#define RK_THEORY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ropekit.h"

/* ---- the RoPE under test ---------------------------------------------------------------- */
typedef struct theory_rope theory_rope;
struct theory_rope {
    const char *name;
    /* Rotate every row of x into y (same shape, y != x), row t at position pos[t]; the row width
     * x->cols is the rotated dimension d (even); style picks the pairing layout. The frequencies
     * are meant to be base^(-2i/d) with base = this->base. Returns an rk status. */
    int (*apply_d)(const theory_rope *r, rk_rope_style style, const rk_matd *x, rk_matd *y,
                   const int64_t *pos);
    int (*apply_f)(const theory_rope *r, rk_rope_style style, const rk_mat *x, rk_mat *y,
                   const int64_t *pos);
    double base;
    int    mutant;          /* theory_mutant of a naive rope; 0 for the library             */
    void  *ctx;             /* the library's plans (cached per dimension and layout)         */
};

typedef enum {
    THEORY_MUT_NONE = 0,    /* naive but correct: must pass every check                       */
    THEORY_MUT_FREQ,        /* off-by-one frequencies base^(-2(i+1)/d) (docs/theory.md#figure-2) */
    THEORY_MUT_SIGN,        /* sin sign swapped: turns clockwise                               */
    THEORY_MUT_ONESIDED,    /* sin sign swapped in one output only: (a c + b s, b c + a s)     */
    THEORY_MUT_PAIR_INTER,  /* interleaved layout rotates half-split pairs (x[i], x[i + d/2])  */
    THEORY_MUT_PAIR_HALF,   /* half-split layout rotates interleaved pairs (x[2i], x[2i+1])    */
    THEORY_MUT_ANGLE32,     /* angle formed in float32: (float)pos * (float)theta               */
    THEORY_MUT_SCALE,       /* output times 1.01 (an attention factor leaking into R)          */
    THEORY_MUT_COUNT
} theory_mutant;
extern const char *const theory_mutant_names[];  /* "none", "freq", ... NULL-terminated */
extern const char *const theory_mutant_help[];   /* one line each                       */

/* The library's RoPE (rk_rope_create with the default table, so positions < 4096 use the
 * table and larger ones the direct path). Free with theory_rope_free. RK_ENOMEM. */
int  theory_rope_library(theory_rope *r);
/* A naive rope (no library code) with the given defect. Needs no freeing (free is a no-op). */
void theory_rope_mutant(theory_rope *r, theory_mutant m);
void theory_rope_free(theory_rope *r);

/* ---- the FAVOR+ feature map under test -------------------------------------------------- */
typedef enum {
    THEORY_FEAT_NONE = 0,   /* the library's rk_attn_features_d                              */
    THEORY_FEAT_BIAS,       /* every feature times 1.1: the estimator is biased by 1.21      */
    THEORY_FEAT_HALF,       /* every other projection dropped, the rest times sqrt 2: unbiased,
                               but the MSE doubles                                            */
    THEORY_FEAT_NOORTH,     /* "orthogonal" plans draw iid rows: no Theorem 2 gain            */
    THEORY_FEAT_TRIG,       /* eq. 19 denominators from trigonometric features (can be < 0)   */
    THEORY_FEAT_COUNT
} theory_feat_mutant;
extern const char *const theory_feat_names[];
extern const char *const theory_feat_help[];

/* ---- results ------------------------------------------------------------------------------ */
typedef enum {
    THEORY_LE = 0,  /* pass iff measured <= tol                                               */
    THEORY_GE,      /* pass iff measured >= tol                                               */
    THEORY_GT,      /* pass iff measured >  tol                                               */
    THEORY_NEAR1,   /* pass iff |measured - 1| <= tol (a ratio and its CI half-width)         */
    THEORY_INFO     /* a figure reported beside the checks; always passes                     */
} theory_cmp;

typedef struct {
    const char *id;          /* stable short name: "rel-f64", "favor-mse-pos", ...            */
    const char *equation;    /* "(11)/(16)", "Lemma 2", ...                                   */
    const char *prec;        /* "f64" or "f32"                                                */
    char        what[384];   /* what is measured                                              */
    double      measured;
    theory_cmp  cmp;
    double      tol;
    long        violations;  /* count that must be 0, or -1 when not applicable               */
    char        detail[256]; /* extra figures (CI, per-case values, seeds)                    */
    char        why[640];    /* why this tolerance                                            */
    int         pass;
} theory_result;

typedef struct {
    unsigned long       seed;     /* nonzero: inputs from mt19937(seed); plan seeds from it   */
    size_t              draws;    /* random draws per RoPE check (>= 1)                        */
    size_t              trials;   /* Monte Carlo samples per FAVOR+ estimate (>= 100)          */
    const theory_rope  *rope;     /* the RoPE under test                                       */
    theory_feat_mutant  feat;     /* the FAVOR+ feature map under test                         */
} theory_config;

typedef int (*theory_fn)(const theory_config *cfg, theory_result *res);
typedef struct {
    const char *id;
    theory_fn   fn;
    int         statistical;      /* counts towards the Bonferroni family                      */
} theory_check;
extern const theory_check theory_checks[];
extern const size_t theory_ncheck;
/* Index of the check named id, or -1. */
int theory_find(const char *id);
/* Number of statistical checks in a run (the Bonferroni divisor); set by theory_run or by hand
 * before calling single checks (default: all statistical checks). */
extern size_t theory_family;

/* Run check i into *res (res->pass set from cmp). rk status of a library failure (message in
 * rk_last_error()); a failed check is not an error. */
int theory_run(size_t i, const theory_config *cfg, theory_result *res);

/* The FAVOR+ checks share their Monte Carlo samples through a cache keyed by the config; free
 * it when done (safe to call any time). */
void theory_free_cache(void);

/* Table output: a header line, one line per result (the why and detail inline). */
void theory_print_header(FILE *f);
void theory_print_row(FILE *f, size_t n, const theory_result *r);
/* TSV: header row then one row per result; tabs and newlines inside fields become spaces. */
void theory_tsv_header(FILE *f);
void theory_tsv_row(FILE *f, const theory_result *r);
const char *theory_cmp_str(theory_cmp c);

#endif
