/* ropekit attend: attention over .npy Q, K, V.
 *
 * Q is (n_q, d), (h, n_q, d) or (b, h, n_q, d); K (.., n_kv, d) and V (.., n_kv, d_v) have the
 * same leading axes. One plan is made for (n_q, n_kv, d, d_v) and executed on every (b, h)
 * slice through views; the output is (.., n_q, d_v) in the input's dtype. The computation
 * follows the input dtype (float64: rk_attn_execute_d) unless --precision says otherwise, in
 * which case the inputs are converted in and the output converted back.
 *
 * Variants come from experiments/variant.c: the base names softmax, performer, linear
 * (= linear-elu with --map free) and rpe-fft take --rope, --kernel, --map as options; every
 * other name of that table fixes its rope mode (and map) and accepts only options that agree.
 * Options that do not apply to the chosen variant are errors. FAVOR+ draws its projection from
 * --seed (default VARIANT_DEFAULT_SEED = 1), so runs are deterministic; --proj W.npy gives the
 * projection instead, --save-proj writes the one used (only if the whole run succeeds).
 *
 * Relative position biases and encodings (issue 6; conventions in ropekit.h, "Position
 * encodings and relative biases"):
 *   --variant rpe-fft: RK_RPE_FFT over FAVOR+ features (the performer options apply; the same
 *     options give the same projection), or over elu(x)+1 / relu(x) features with --map
 *     (rpe-fft-linear fixes elu); --l2norm, --fft-wisdom. Its bias defaults to the variant
 *     table's T5 stand-in (--bias-kind t5); RoPE is not combined with it (--sinusoidal is).
 *   --bias B.npy (softmax, rpe-fft): (L,) for every head or (H, L) one row per head,
 *     L = rk_bias_len(n_q, n_kv), float32 or float64 (converted to double), finite or -inf.
 *   --bias-kind none|t5|alibi: T5 buckets (stand-in table, bidirectional unless --causal) or
 *     ALiBi with head h's slope of rk_alibi_slopes(H), H the length of the (h) axis (1 for
 *     (n, d) inputs), or --alibi-slope S for every head.
 *   A per-head bias needs a plan per head (the plan copies its bias at create): the slices are
 *     run head by head, one plan alive at a time (the plans differ only in their bias values);
 *     the output is written only after every slice ran, so a failure at any head (e.g. a
 *     softmax bias row above 1e30) leaves no output.
 *   --xpos B (softmax, --rope qk, --causal), --xpos-gamma G.
 *   --sinusoidal: rk_sinusoidal_add on the (working-precision) copies of q and k before any
 *     variant: key j at P + j, query i at P + n_kv - n_q + i (P = --offset).
 */
#include "attend.h"
#include "cli.h"
#include "variant.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cli_opt opts[] = {
    { "variant", "NAME", "softmax | performer | linear | rpe-fft, or a named variant (above)" },
    { "q", "Q.npy", "queries (n_q, d), (h, n_q, d) or (b, h, n_q, d); float32 or float64" },
    { "k", "K.npy", "keys (.., n_kv, d), same leading axes and dtype as Q (with --kv-heads:\n"
      "that many heads)" },
    { "v", "V.npy", "values (.., n_kv, d_v), the leading axes and dtype of K" },
    { "layout", "bhnd|bnhd", "axis order of 3-D and 4-D arrays: (b, h, n, d) (default) or\n"
      "(b, n, h, d) (also (h, n, d) or (n, h, d)); the output follows it" },
    { "kv-heads", "H", "key/value heads: K and V have H heads, query head h uses head\n"
      "h / (heads / H) (grouped-query attention; 1: multi-query); default: Q's heads" },
    { "out", "O.npy", "output (.., n_q, d_v), dtype of Q (written atomically)" },
    { "causal", NULL, "query i sees keys j <= i + (n_kv - n_q) (bottom-right aligned)" },
    { "scale", "S", "logit scale, nonzero; > 0 for FAVOR+ features (default 1/sqrt(d))" },
    { "rope", "MODE", "none (default); qk: rotate q and k inside attention (RoFormer);\n"
      "features: rotate the feature vectors, numerator only (eq. 19; performer, linear)" },
    CLI_ROPE_OPTS,
    { "offset", "P", "with --rope or --sinusoidal: key j at position P + j, query i at\n"
      "P + n_kv - n_q + i (default 0)" },
    { "freq-dim", "features|head", "--rope features: theta_i = B^(-2i/F) over the feature\n"
      "width F (default) or B^(-2i/d) over the head width" },
    { "features", "M", "performer, rpe-fft: number of random features m (default 256)" },
    { "kernel", "KIND", "performer, rpe-fft: positive (default) | hyperbolic | trig" },
    { "iid", NULL, "performer, rpe-fft: independent Gaussian projection rows" },
    { "orthogonal", NULL, "performer, rpe-fft: orthogonal blocks of rows (the default)" },
    { "fixed-norm", NULL, "performer, rpe-fft: rows of length sqrt(d) instead of chi(d) norms" },
    { "seed", "S", "performer, rpe-fft: seed of the projection, >= 1 (default 1)" },
    { "proj", "W.npy", "performer, rpe-fft: use this (m, d) projection (fixes the features;\n"
      "m = rows)" },
    { "save-proj", "W.npy", "performer, rpe-fft: write the (m, d) projection used, float32\n"
      "(atomic; only if the whole run succeeds)" },
    { "map", "elu|relu", "linear: feature map elu(x)+1 (default) or relu(x); rpe-fft: use\n"
      "these features instead of FAVOR+" },
    { "bias", "B.npy", "softmax, rpe-fft: additive bias b(t) per offset t = key - query\n"
      "position: (L,) for every head or (H, L) per head, L = n_q + n_kv - 1,\n"
      "offset -(n_kv - 1) first; float32 or float64; finite or -inf (a mask)" },
    { "bias-kind", "none|t5|alibi", "softmax, rpe-fft: a standard bias instead of --bias:\n"
      "t5: T5 buckets (stand-in table; bidirectional unless --causal);\n"
      "alibi: ALiBi, head h of the (h) axis with slope h of H heads;\n"
      "default none (softmax), t5 (rpe-fft)" },
    { "alibi-slope", "S", "--bias-kind alibi: this slope (>= 0) for every head" },
    { "l2norm", NULL, "rpe-fft: l2-normalise q and k rows first (with --scale 1: NPRF)" },
    { "fft-wisdom", "FILE", "rpe-fft: FFTW_MEASURE plans with wisdom read from FILE (if it\n"
      "exists) and saved back (default: FFTW_ESTIMATE, no file)" },
    { "xpos", "B", "softmax with --rope qk and --causal: xPos with scale base B > 0\n"
      "(512 in the paper)" },
    { "xpos-gamma", "G", "with --xpos: gamma > 0 (default 0.4)" },
    { "sinusoidal", NULL, "add the sinusoidal encoding (RoFormer eq. 4, base 10000) to q and k\n"
      "at their positions before attention (any variant; see --offset)" },
    { "precision", "float|double", "arithmetic precision (default: the input dtype)" },
    { "kv-len", "L[,L...]", "valid keys per batch entry b (keys j >= L are masked): one\n"
      "value for all, or one per b of (b, h, n, d)" },
    { "dout", "dO.npy", "gradient of a loss with respect to the output (.., n_q, d_v): also\n"
      "run the backward (training forward, then backward) and write --dq/--dk/--dv" },
    { "dq", "dQ.npy", "with --dout: dL/dQ (.., n_q, d); every output is written atomically and\n"
      "only if the whole run succeeds" },
    { "dk", "dK.npy", "with --dout: dL/dK (.., n_kv, d)" },
    { "dv", "dV.npy", "with --dout: dL/dV (.., n_kv, d_v)" },
    { "threads", "N", "OpenMP threads (default: OMP_NUM_THREADS or all cores)" },
    { "allow-nonfinite", NULL, "accept NaN and Inf in the inputs" },
};

static char description[4096];
static cli_spec spec = {
    "attend", "--variant NAME --q Q.npy --k K.npy --v V.npy --out O.npy [options]",
    description, opts, sizeof opts / sizeof opts[0],
};

static void make_description(void)
{
    size_t n = (size_t)snprintf(description, sizeof description,
        "Attention on every (b, h) slice, optionally causal, with per-batch key lengths:\n"
        "  softmax    out = softmax(scale Q K^T) V (exact)\n"
        "  performer  FAVOR+ random features (Choromanski et al.); seed 1 unless --seed\n"
        "  linear     linear attention with elu(x)+1 or relu(x) features (Katharopoulos et al.)\n"
        "  rpe-fft    kernelized attention with a relative bias, Toeplitz sums by FFT (Luo et\n"
        "             al. 2021): FAVOR+ features, or elu(x)+1 / relu(x) with --map; bias T5\n"
        "             unless --bias or --bias-kind\n"
        "softmax and rpe-fft take a relative bias (--bias, --bias-kind); any variant takes\n"
        "--sinusoidal; softmax --rope qk --causal takes --xpos.\n"
        "Named variants (the names ropekit scaling and approx use; each fixes its rope mode):");
    for (size_t i = 0; i < variant_count() && n < sizeof description; i++)
        n += (size_t)snprintf(description + n, sizeof description - n, "\n  %-26s %s",
                              variant_at(i)->name, variant_at(i)->summary);
}

/* The chosen variant: its table row, whether the name fixes the rope mode, the map and the
 * bias, and whether it takes rpe-fft's elu+1 / relu base (--map with --variant rpe-fft). */
typedef struct {
    const variant *row;
    int fixed_rope, fixed_map, fixed_bias;
    rk_kind base;   /* RK_RPE_FFT rows: the feature base (--map picks RK_LINEAR) */
} choice;

/* The base names (softmax, performer, linear, rpe-fft) leave the rope mode (and the map) to the
 * options; every other name of the variant table fixes them. */
static choice get_variant(cli_ctx *c)
{
    const char *name = cli_required(c, "variant");
    choice ch = { NULL, 1, 1, 0, 0 };
    if (strcmp(name, "softmax") == 0 || strcmp(name, "performer") == 0) {
        ch.row = variant_find(name);
        ch.fixed_rope = ch.fixed_map = 0;
    } else if (strcmp(name, "linear") == 0) {
        ch.row = variant_find("linear-elu");
        ch.fixed_rope = ch.fixed_map = 0;
    } else if (strcmp(name, "rpe-fft") == 0) {
        ch.row = variant_find(name);
        ch.fixed_map = 0;   /* --map picks the elu+1 / relu base */
    } else {
        ch.row = variant_find(name);
        ch.fixed_map = ch.row && (ch.row->kind == RK_LINEAR ||
                                  (ch.row->kind == RK_RPE_FFT && ch.row->base == RK_LINEAR));
        ch.fixed_bias = ch.row && ch.row->bias != VARIANT_BIAS_NONE && ch.row->kind != RK_RPE_FFT;
    }
    if (!ch.row) {
        char list[1024];
        cli_die(c, "unknown variant '%s' (expected: softmax, performer, linear, rpe-fft, or one "
                "of: %s)", name, variant_names(list, sizeof list));
    }
    if (ch.row->kind == RK_RPE_FFT)
        ch.base = ch.row->base == RK_LINEAR || (!ch.fixed_map && cli_flag(c, "map"))
                ? RK_LINEAR : RK_PERFORMER;
    return ch;
}

/* The config field groups of the choice (the library's rule; rpe-fft: those of its base). */
static unsigned choice_fields(const choice *ch)
{
    rk_attn_config probe = { .kind = ch->row->kind, .rpe_base = ch->base };
    return rk_attn_fields(&probe);
}

static const char *rope_name(rk_rope_mode r)
{
    return r == RK_ROPE_QK ? "qk" : r == RK_ROPE_FEATURES ? "features" : "none";
}

/* --kv-len "L" or "L1,L2,...": every value in [0, n_kv]; returns the count (array in *out,
 * freed at exit). */
static size_t parse_kv_len(cli_ctx *c, const char *s, size_t n_kv, size_t **out)
{
    size_t n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    size_t *L = calloc(n, sizeof *L);
    if (!L) cli_die(c, "--kv-len: out of memory");
    cli_defer(c, free, L);
    size_t len = strlen(s);
    char *buf = malloc(len + 1);
    if (!buf) cli_die(c, "--kv-len: out of memory");
    cli_defer(c, free, buf);
    memcpy(buf, s, len + 1);
    char *p = buf;
    for (size_t i = 0; i < n; i++) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        long long x = cli_integer(c, "--kv-len", p);
        if (x < 0) cli_die(c, "--kv-len %s must be >= 0", p);
        if ((unsigned long long)x > n_kv) cli_die(c, "--kv-len %s exceeds n_kv = %zu", p, n_kv);
        L[i] = (size_t)x;
        p = comma ? comma + 1 : p;
    }
    *out = L;
    return n;
}

/* An array's batch, heads, rows and width in the layout (bnhd: the head axis after the rows). */
typedef struct { size_t b, h, n, w; } geom;

static geom geom_of(const rk_array *a, int bnhd)
{
    const size_t *s = a->shape;
    if (a->ndim == 2) return (geom){ 1, 1, s[0], s[1] };
    if (a->ndim == 3) return bnhd ? (geom){ 1, s[1], s[0], s[2] } : (geom){ 1, s[0], s[1], s[2] };
    return bnhd ? (geom){ s[0], s[2], s[1], s[3] } : (geom){ s[0], s[1], s[2], s[3] };
}

/* The tensor view of an array of that geometry (no copy). */
#define TENSOR_OF(T, PTR, a, g, bnhd)                                                          \
    ((bnhd) ? (T){ (PTR)(a)->data, (g).b, (g).h, (g).n, (g).w, (g).n * (g).h * (g).w, (g).w,   \
                   (g).h * (g).w }                                                             \
            : (T){ (PTR)(a)->data, (g).b, (g).h, (g).n, (g).w, (g).h * (g).n * (g).w,          \
                   (g).n * (g).w, (g).w })

/* Shapes: Q (.., n_q, d), K (.., n_kv, d), V (.., n_kv, d_v) with the same batch, and K, V with
 * Q's heads or --kv-heads of them (a divisor of Q's). Returns K's heads. */
static size_t check_shapes(cli_ctx *c, const rk_array *q, const rk_array *k, const rk_array *v,
                           int bnhd, size_t kv_heads)
{
    char sq[160], sk[160], sv[160];
    const char *pq = cli_get(c, "q"), *pk = cli_get(c, "k"), *pv = cli_get(c, "v");
    cli_shape_str(q, sq, sizeof sq);
    cli_shape_str(k, sk, sizeof sk);
    cli_shape_str(v, sv, sizeof sv);
    if (k->dtype != q->dtype)
        cli_die(c, "--k: %s is %s but %s is %s (Q, K and V must share a dtype)", pk,
                cli_dtype_name(k->dtype), pq, cli_dtype_name(q->dtype));
    if (v->dtype != q->dtype)
        cli_die(c, "--v: %s is %s but %s is %s (Q, K and V must share a dtype)", pv,
                cli_dtype_name(v->dtype), pq, cli_dtype_name(q->dtype));
    int nd = q->ndim;
    if (nd < 2 || nd > 4)
        cli_die(c, "--q: %s has shape %s: expected (n_q, d), (h, n_q, d) or (b, h, n_q, d)",
                pq, sq);
    const geom gq = geom_of(q, bnhd);
    if (gq.n == 0 || gq.w == 0)
        cli_die(c, "--q: %s has shape %s: n_q and d must be > 0", pq, sq);
    if (nd == 2 && cli_flag(c, "layout"))
        cli_die(c, "--layout applies to arrays with a head axis (3-D or 4-D), not %s %s", pq, sq);
    if (k->ndim != nd)
        cli_die(c, "--k: %s has shape %s but q has shape %s (the leading axes must match)",
                pk, sk, sq);
    const geom gk = geom_of(k, bnhd);
    const size_t hk = kv_heads ? kv_heads : gq.h;
    if (kv_heads && (kv_heads > gq.h || gq.h % kv_heads))
        cli_die(c, "--kv-heads %zu must divide the %zu query heads of %s %s", kv_heads, gq.h, pq, sq);
    if (gk.b != gq.b || gk.h != hk) {
        if (kv_heads)
            cli_die(c, "--k: %s has shape %s: expected the batch of q (%zu) and --kv-heads %zu "
                    "heads", pk, sk, gq.b, kv_heads);
        cli_die(c, "--k: %s has shape %s but q has shape %s (the leading axes must match)",
                pk, sk, sq);
    }
    if (gk.w != gq.w) cli_die(c, "--k: %s has shape %s but q has d = %zu", pk, sk, gq.w);
    if (gk.n == 0) cli_die(c, "--k: %s has shape %s: n_kv must be > 0", pk, sk);
    const geom gv = geom_of(v, bnhd);
    if (v->ndim != nd || gv.b != gk.b || gv.h != gk.h)
        cli_die(c, "--v: %s has shape %s but %s has shape %s (the leading axes must match)",
                pv, sv, kv_heads ? "k" : "q", kv_heads ? sk : sq);
    if (gv.n != gk.n) cli_die(c, "--v: %s has shape %s but k has n_kv = %zu", pv, sv, gk.n);
    if (gv.w == 0) cli_die(c, "--v: %s has shape %s: d_v must be > 0", pv, sv);
    return hk;
}

/* Options a variant takes only if its kind reads their config field group (rk_attn_fields):
 * option, group, and who takes it (for the message). */
typedef struct {
    const char *opt;
    unsigned    group;
    const char *who;
} group_opt;

#define FAVOR_WHO "--variant performer only, or rpe-fft with its FAVOR+ features"
static const group_opt group_opts[] = {
    { "features",    RK_FIELD_PROJ,   FAVOR_WHO },
    { "kernel",      RK_FIELD_KERNEL, FAVOR_WHO },
    { "iid",         RK_FIELD_PROJ,   FAVOR_WHO },
    { "orthogonal",  RK_FIELD_PROJ,   FAVOR_WHO },
    { "fixed-norm",  RK_FIELD_PROJ,   FAVOR_WHO },
    { "seed",        RK_FIELD_PROJ,   FAVOR_WHO },
    { "proj",        RK_FIELD_PROJ,   FAVOR_WHO },
    { "save-proj",   RK_FIELD_PROJ,   FAVOR_WHO },
    { "map",         RK_FIELD_MAP,    "--variant linear only, or rpe-fft to use elu+1 / relu features" },
    { "bias",        RK_FIELD_BIAS,   "--variant softmax and rpe-fft only" },
    { "bias-kind",   RK_FIELD_BIAS,   "--variant softmax and rpe-fft only" },
    { "alibi-slope", RK_FIELD_BIAS,   "--variant softmax and rpe-fft only" },
    { "l2norm",      RK_FIELD_FFT,    "--variant rpe-fft only" },
    { "fft-wisdom",  RK_FIELD_FFT,    "--variant rpe-fft only" },
    { "xpos",        RK_FIELD_XPOS,   "--variant softmax only" },
    { "scale",       RK_FIELD_SCALE,  "--variant softmax, performer and rpe-fft with FAVOR+ features only" },
};

/* Why the chosen variant does not take an option of `group` (wording only: a kind without an
 * entry gets the generic reason). */
static const char *why_not(const choice *ch, unsigned group, const char *opt)
{
    const rk_kind kind = ch->row->kind;
    switch (group) {
    case RK_FIELD_PROJ:
    case RK_FIELD_KERNEL:
        if (kind == RK_SOFTMAX) return "exact softmax has no features";
        if (kind == RK_RPE_FFT)
            return "rpe-fft with --map, or rpe-fft-linear, uses elu+1 / relu features of width d";
        if (kind == RK_LINEAR)
            return strcmp(opt, "features") == 0 ? "the linear feature width is d"
                                                 : "linear attention has no random projection";
        break;
    case RK_FIELD_MAP:
        if (kind == RK_PERFORMER) return "FAVOR+ takes --kernel";
        if (kind == RK_SOFTMAX) return "exact softmax has no features";
        break;
    case RK_FIELD_BIAS:
        if (kind == RK_PERFORMER || kind == RK_LINEAR)
            return kind == RK_PERFORMER
                ? "FAVOR+ attention has no relative bias; rpe-fft is kernelized attention with one"
                : "linear attention has no relative bias; rpe-fft is kernelized attention with one";
        break;
    case RK_FIELD_FFT:
        return strcmp(opt, "l2norm") == 0 ? "the normalisation of Luo et al.'s kernelized attention"
                                          : "the FFTs of the relative bias";
    case RK_FIELD_XPOS:
        return "xPos is RoPE with a decay in exact attention";
    case RK_FIELD_SCALE:
        if (kind == RK_LINEAR || kind == RK_RPE_FFT)
            return "elu+1 / relu features take q and k as given";
        break;
    }
    return NULL;
}

/* Refuse every option the variant's kind does not read, then the combinations that make no
 * sense for any kind. */
static void check_applicable(cli_ctx *c, const choice *ch)
{
    const unsigned own = choice_fields(ch);
    for (size_t i = 0; i < sizeof group_opts / sizeof group_opts[0]; i++) {
        const group_opt *g = &group_opts[i];
        if ((own & g->group) || !cli_flag(c, g->opt)) continue;
        const char *why = why_not(ch, g->group, g->opt);
        char generic[160];
        if (!why) {
            snprintf(generic, sizeof generic, "a %s plan does not use it", ch->row->name);
            why = generic;
        }
        cli_die(c, "--%s applies to %s (%s)", g->opt, g->who, why);
    }
    if (cli_flag(c, "iid") && cli_flag(c, "orthogonal"))
        cli_die(c, "--iid and --orthogonal exclude each other");
    if (cli_flag(c, "proj")) {
        static const char *const drawn[] = { "seed", "iid", "orthogonal", "fixed-norm", NULL };
        for (int i = 0; drawn[i]; i++)
            if (cli_flag(c, drawn[i]))
                cli_die(c, "--%s has no effect with --proj (the projection is given, not drawn)",
                        drawn[i]);
    }
    if (cli_flag(c, "bias") && cli_flag(c, "bias-kind"))
        cli_die(c, "--bias and --bias-kind exclude each other (a file, or a standard bias)");
    if (ch->fixed_bias) {
        const char *bk = cli_get(c, "bias-kind");
        if (cli_flag(c, "bias") || (bk && strcmp(bk, "t5") != 0))
            cli_die(c, "%s: variant '%s' fixes the bias to t5 (use --variant softmax with "
                    "--bias or --bias-kind)", cli_flag(c, "bias") ? "--bias" : "--bias-kind",
                    ch->row->name);
    }
    if ((own & RK_FIELD_FFT) && cli_flag(c, "allow-nonfinite"))
        cli_die(c, "--allow-nonfinite does not apply to rpe-fft (an FFT would spread a NaN or "
                "Inf to every row; the inputs must be finite)");
    if (cli_flag(c, "xpos-gamma") && !cli_flag(c, "xpos"))
        cli_die(c, "--xpos-gamma has no effect without --xpos");
}

enum { BIAS_NONE = 0, BIAS_T5, BIAS_ALIBI };

/* The relative bias of one plan per row: nb rows of L values (nb = 1: every head). */
typedef struct {
    double *b;
    size_t  nb, L;
} bias_rows;

/* --bias FILE: (L,) or (H, L), float32 or float64, finite or -inf. */
static void load_bias(cli_ctx *c, rk_array *a, size_t n_q, size_t n_kv, size_t H, bias_rows *br)
{
    const char *path = cli_get(c, "bias");
    cli_load_npy(c, "bias", a);
    char sh[160];
    cli_shape_str(a, sh, sizeof sh);
    const size_t L = br->L;
    if (a->ndim == 1 && a->shape[0] != L)
        cli_die(c, "--bias: %s has %zu values, expected %zu = n_q + n_kv - 1 for n_q = %zu, "
                "n_kv = %zu (offsets -%zu .. %zu, most negative first)", path, a->shape[0], L,
                n_q, n_kv, n_kv - 1, n_q - 1);
    if (a->ndim == 2 && (a->shape[0] != H || a->shape[1] != L))
        cli_die(c, "--bias: %s has shape %s, expected (%zu, %zu): one row per head (H = %zu) of "
                "n_q + n_kv - 1 = %zu values (or a 1-D (%zu,) for every head)", path, sh, H, L,
                H, L, L);
    if (a->ndim != 1 && a->ndim != 2)
        cli_die(c, "--bias: %s has shape %s, expected (%zu,) = n_q + n_kv - 1 values (n_q = %zu, "
                "n_kv = %zu) or (%zu, %zu) one row per head", path, sh, L, n_q, n_kv, H, L);
    br->nb = a->ndim == 1 ? 1 : H;
    br->b = malloc(br->nb * L * sizeof *br->b);
    if (!br->b) cli_die(c, "--bias: out of memory");
    cli_defer(c, free, br->b);
    for (size_t i = 0; i < br->nb * L; i++) {
        double x = a->dtype == RK_F32 ? (double)((const float *)a->data)[i]
                                      : ((const double *)a->data)[i];
        if (isnan(x) || x == INFINITY) {
            char where[64];
            if (a->ndim == 1) snprintf(where, sizeof where, "(%zu)", i);
            else snprintf(where, sizeof where, "(%zu, %zu)", i / L, i % L);
            cli_die(c, "--bias: %s: entry %s (offset %lld) is %s; bias entries must be finite "
                    "or -inf", path, where, (long long)(i % L) - (long long)(n_kv - 1),
                    isnan(x) ? "NaN" : "+Inf");
        }
        br->b[i] = x;
    }
}

/* --bias-kind t5 | alibi (rows as load_bias). */
static void make_bias(cli_ctx *c, int kind, size_t n_q, size_t n_kv, int causal, size_t H,
                      const double *alibi_slope, bias_rows *br)
{
    const size_t L = br->L;
    const int alibi = kind == BIAS_ALIBI, per_head = alibi && !alibi_slope && H > 1;
    br->nb = per_head ? H : 1;
    br->b = malloc(br->nb * L * sizeof *br->b);
    if (!br->b) cli_die(c, "--bias-kind: out of memory");
    cli_defer(c, free, br->b);
    double *slopes = NULL;
    if (per_head) {
        if (!(slopes = malloc(H * sizeof *slopes))) cli_die(c, "--bias-kind: out of memory");
        cli_defer(c, free, slopes);
    }
    int err;
    if (!alibi) {
        err = rk_bias_t5(br->b, n_q, n_kv, NULL, !causal, 0, 0);
        if (err) cli_die_rk(c, err, "--bias-kind t5");
        return;
    }
    if (!per_head) {
        double slope;
        if (alibi_slope) {
            slope = *alibi_slope;
        } else {
            err = rk_alibi_slopes(&slope, 1);
            if (err) cli_die_rk(c, err, "--bias-kind alibi");
        }
        err = rk_bias_alibi(br->b, n_q, n_kv, slope);
        if (err) cli_die_rk(c, err, "--bias-kind alibi");
        return;
    }
    err = rk_alibi_slopes(slopes, H);
    for (size_t h = 0; h < H && !err; h++) err = rk_bias_alibi(br->b + h * L, n_q, n_kv, slopes[h]);
    if (err) cli_die_rk(c, err, "--bias-kind alibi");
}

static void free_mat(void *p) { rk_mat_free(p); }

/* The projection of --proj for rows of width d (freed at exit); its m must agree with
 * --features if that is given too. */
static void load_proj(cli_ctx *c, size_t d, rk_mat *w)
{
    const char *path = cli_get(c, "proj");
    int rc = rk_attn_proj_load(path, d, w);
    if (rc) {
        const char *msg = rk_last_error();
        if (!msg[0]) msg = rk_strerror(rc);
        if (strstr(msg, path)) cli_die(c, "--proj: %s", msg);
        cli_die(c, "--proj: '%s': %s", path, msg);
    }
    cli_defer(c, free_mat, w);
    const char *fs = cli_get(c, "features");
    if (fs && (size_t)cli_integer(c, "--features", fs) != w->rows)
        cli_die(c, "--features %s but --proj %s has m = %zu rows", fs, path, w->rows);
}


/* The plan in *pp (NULL-safe), for cli_die / cli_finish. */
static void destroy_plan_at(void *pp)
{
    rk_attn **p = pp;
    rk_attn_destroy(*p);
    *p = NULL;
}

/* ---- the configuration from the options ------------------------------------------------ */

static const char *const rope_modes[] = { "none", "qk", "features", NULL };
static const char *const kernels[] = { "positive", "hyperbolic", "trig", NULL };
static const char *const maps[] = { "elu", "relu", NULL };
static const char *const freq_dims[] = { "features", "head", NULL };
static const char *const bias_kinds[] = { "none", "t5", "alibi", NULL };
static const char *const rope_opts[] = { "style", "base", "rotary-dim", "scaling", "freq-dim",
                                         "rope-config", "seq-len", NULL };

/* --rope MODE against what the variant fixes and what its kind reads. */
static void set_rope(cli_ctx *c, const choice *ch, unsigned own, rk_attn_config *ac)
{
    int rope_i = cli_get_choice(c, "rope", "--rope mode", rope_modes, -1);
    if (rope_i < 0) return;
    rk_rope_mode want = rope_i == 1 ? RK_ROPE_QK : rope_i == 2 ? RK_ROPE_FEATURES : RK_ROPE_NONE;
    unsigned need = want == RK_ROPE_QK ? RK_FIELD_ROPE_QK
                  : want == RK_ROPE_FEATURES ? RK_FIELD_ROPE_FEATURES : 0;
    if (need && !(own & need)) {
        if (own & RK_FIELD_FFT)
            cli_die(c, "--rope %s: rpe-fft does not combine RoPE with the FFT relative bias (use "
                    "--sinusoidal, or --variant softmax, performer or linear with --rope)",
                    rope_modes[rope_i]);
        if (want == RK_ROPE_FEATURES && (own & RK_FIELD_ROPE_QK))
            cli_die(c, "--rope features rotates feature vectors: use --variant performer or "
                    "linear (%s takes --rope qk)", ch->row->name);
        cli_die(c, "--rope %s: variant '%s' takes no RoPE", rope_modes[rope_i], ch->row->name);
    }
    if (ch->fixed_rope && want != ac->rope)
        cli_die(c, "--rope %s: variant '%s' fixes the rope mode to %s (use --variant %s "
                "with --rope)", rope_modes[rope_i], ch->row->name, rope_name(ac->rope),
                rk_attn_kind_name(ch->row->kind));
    ac->rope = want;
}

/* Everything the options say about the plan (sizes, bias and projection come later). */
static void config_from_options(cli_ctx *c, const choice *ch, rk_attn_config *ac)
{
    const unsigned own = choice_fields(ch);
    const int favor = (own & RK_FIELD_PROJ) != 0;
    size_t m = (size_t)cli_get_integer(c, "features", 0, 1, INT32_MAX / 2);
    unsigned long seed = (unsigned long)cli_get_integer(c, "seed", (long long)VARIANT_DEFAULT_SEED,
                                                        1, INT64_MAX);
    if (variant_fill(ch->row, 0, 0, 0, 0, cli_flag(c, "causal"), m, seed, ac))
        cli_die(c, "internal error: variant '%s' cannot be set up", ch->row->name);
    if (ch->row->kind == RK_RPE_FFT) ac->rpe_base = ch->base;
    if (!favor) {                 /* no projection: the FAVOR+ defaults of the row go */
        ac->n_features = 0;
        ac->seed = 0;
        ac->kernel = RK_KERNEL_POSITIVE;
        ac->proj = RK_PROJ_ORTHOGONAL;
        ac->proj_norm = RK_NORM_CHI;
    }
    if (cli_get(c, "scale")) {
        ac->scale = cli_get_double(c, "scale", 0.0, -INFINITY, INFINITY, 0);
        if (ac->scale == 0.0) cli_die(c, "--scale must be nonzero (0 would mean the default)");
        if (favor && ac->scale < 0.0)
            cli_die(c, "--scale %s must be > 0 for %s (FAVOR+ uses sqrt(scale))",
                    cli_get(c, "scale"), ch->row->kind == RK_RPE_FFT
                                         ? "rpe-fft's FAVOR+ features" : "performer");
    }
    set_rope(c, ch, own, ac);
    cli_rope_config(c, &ac->rope_cfg);
    ac->pos_offset = cli_get_integer(c, "offset", 0, INT64_MIN, INT64_MAX);
    if (ac->rope == RK_ROPE_NONE)
        for (int i = 0; rope_opts[i]; i++)
            if (cli_flag(c, rope_opts[i]))
                cli_die(c, "--%s has no effect without --rope", rope_opts[i]);
    if (ac->rope == RK_ROPE_NONE && !cli_flag(c, "sinusoidal") && cli_flag(c, "offset"))
        cli_die(c, "--offset has no effect without --rope or --sinusoidal");
    if (cli_flag(c, "freq-dim") && ac->rope != RK_ROPE_FEATURES)
        cli_die(c, "--freq-dim applies to --rope features only");
    ac->rope_freq_dim_head = cli_get_choice(c, "freq-dim", "--freq-dim", freq_dims, 0) == 1;
    if (own & RK_FIELD_KERNEL) {
        ac->kernel = (rk_kernel)cli_get_choice(c, "kernel", "kernel", kernels, RK_KERNEL_POSITIVE);
        ac->proj = cli_flag(c, "iid") ? RK_PROJ_IID : RK_PROJ_ORTHOGONAL;
        ac->proj_norm = cli_flag(c, "fixed-norm") ? RK_NORM_FIXED : RK_NORM_CHI;
        /* an odd m with positive features gives an odd feature width (checked again with
         * --proj, whose m is known only after loading) */
        if (ac->rope == RK_ROPE_FEATURES && ac->kernel == RK_KERNEL_POSITIVE && m % 2)
            cli_die(c, "--rope features rotates the features in pairs, but --features %zu gives "
                    "an odd feature width (use an even m, or --kernel hyperbolic|trig: 2m)", m);
    }
    if (own & RK_FIELD_MAP) {
        int mi = cli_get_choice(c, "map", "--map", maps, -1);
        if (mi >= 0) {
            rk_map want = mi == 1 ? RK_MAP_RELU : RK_MAP_ELU;
            if (ch->fixed_map && want != ac->map)
                cli_die(c, "--map %s: variant '%s' fixes the map to %s (use --variant %s "
                        "--map %s)", maps[mi], ch->row->name, maps[ac->map == RK_MAP_RELU],
                        ch->row->kind == RK_RPE_FFT ? "rpe-fft" : "linear", maps[mi]);
            ac->map = want;
        }
    }
    if (own & RK_FIELD_FFT) {
        ac->rpe_l2norm = cli_flag(c, "l2norm");
        ac->fft_wisdom = cli_get(c, "fft-wisdom");
    }
    if (cli_flag(c, "xpos")) {
        if (ac->rope != RK_ROPE_QK)
            cli_die(c, "--xpos needs --rope qk (xPos is RoPE with a decay; or --variant "
                    "softmax-rope)");
        if (!ac->causal)
            cli_die(c, "--xpos needs --causal (its factors grow without bound for keys after "
                    "the query)");
        ac->xpos_scale_base = cli_get_double(c, "xpos", 0.0, 0.0, INFINITY, CLI_GT_LO);
        ac->xpos_gamma = cli_get_double(c, "xpos-gamma", 0.0, 0.0, INFINITY, CLI_GT_LO);
    }
    ac->bias = NULL;   /* made once the sizes are known */
    ac->bias_len = 0;
    ac->nthreads = (int)cli_get_integer(c, "threads", 0, 1, 4096);
}

/* Output names that clash with each other. */
static void check_output_names(cli_ctx *c, const char *out_path)
{
    const char *save_proj = cli_get(c, "save-proj"), *wisdom = cli_get(c, "fft-wisdom");
    if (save_proj && strcmp(save_proj, out_path) == 0)
        cli_die(c, "--save-proj and --out name the same file '%s'", out_path);
    if (wisdom && strcmp(wisdom, out_path) == 0)
        cli_die(c, "--fft-wisdom and --out name the same file '%s'", out_path);
    if (wisdom && save_proj && strcmp(wisdom, save_proj) == 0)
        cli_die(c, "--fft-wisdom and --save-proj name the same file '%s'", save_proj);
}

/* RoPE against the width it rotates (d for qk; the feature width, asked of the library, for
 * features) and positions that must fit 64 bits. */
static void check_rope_width(cli_ctx *c, const rk_attn_config *ac, const char *q_path)
{
    if (ac->rope != RK_ROPE_NONE) {
        char what[600];
        snprintf(what, sizeof what, "--q %s", q_path);
        if (ac->rope == RK_ROPE_QK) {
            cli_check_rope_dim(c, &ac->rope_cfg, ac->d, what);
        } else {
            /* the rotation acts on the F features: m or 2m (FAVOR+), d (linear) */
            rk_attn_config probe = *ac;
            rk_attn_info info;
            probe.rope = RK_ROPE_NONE;
            probe.rope_freq_dim_head = 0;
            if (rk_attn_resolve(&probe, &info)) cli_die_rk(c, RK_EINVAL, "the attention plan");
            size_t F = info.feature_dim;
            if (F % 2)
                cli_die(c, "--rope features rotates the features in pairs, but the feature "
                        "width is d = %zu of %s (odd)", F, what);
            if (ac->rope_cfg.rotary_dim > F)
                cli_die(c, "--rotary-dim %zu exceeds the feature width %zu (--rope features "
                        "rotates the features)", ac->rope_cfg.rotary_dim, F);
            if (ac->rope_cfg.scaling == RK_SCALE_NTK &&
                (ac->rope_cfg.rotary_dim ? ac->rope_cfg.rotary_dim : F) <= 2)
                cli_die(c, "--scaling ntk needs a rotary dimension > 2");
        }
    }
    if (ac->rope != RK_ROPE_NONE || cli_flag(c, "sinusoidal")) {
        int64_t last = (int64_t)(ac->n_kv > ac->n_q ? ac->n_kv : ac->n_q) - 1;
        if (ac->pos_offset > 0 && ac->pos_offset > INT64_MAX - last)
            cli_die(c, "--offset %lld: the last position overflows a 64-bit integer",
                    (long long)ac->pos_offset);
        if (ac->pos_offset < INT64_MIN + (int64_t)ac->n_q)
            cli_die(c, "--offset %lld: the first query position P + n_kv - n_q overflows a "
                    "64-bit integer", (long long)ac->pos_offset);
    }
}

/* Q, K, V and the output in the working precision, and their geometry. */
typedef struct {
    const rk_array *q, *k, *v;
    rk_array       *out;
    const rk_array *dout;              /* NULL: no backward                       */
    rk_array       *dq, *dk, *dv;      /* the gradients (with dout)               */
    void           *saved;             /* what the training forward saves         */
    geom            gq, gk;            /* Q's (b, h, n_q, d), K's (b, kv heads, n_kv, d) */
    int             bnhd;
} slices_t;

/* One head h of an array's tensor view (h = -1: all heads). */
static rk_tensor head_f(const rk_array *a, geom g, int bnhd, long h)
{
    g.w = a->shape[a->ndim - 1];
    rk_tensor t = TENSOR_OF(rk_tensor, float *, a, g, bnhd);
    if (h >= 0) { t.data += (size_t)h * t.sh; t.h = 1; }
    return t;
}
static rk_tensord head_d(const rk_array *a, geom g, int bnhd, long h)
{
    g.w = a->shape[a->ndim - 1];
    rk_tensord t = TENSOR_OF(rk_tensord, double *, a, g, bnhd);
    if (h >= 0) { t.data += (size_t)h * t.sh; t.h = 1; }
    return t;
}

/* --sinusoidal: the encoding added to every (b, h) head of x, geometry g (rows at pos0 + r). */
static void add_sinusoidal(cli_ctx *c, const rk_array *x, geom g, int bnhd, int64_t pos0,
                           const char *what)
{
    for (size_t b = 0; b < g.b; b++)
        for (size_t h = 0; h < g.h; h++) {
            int err;
            if (x->dtype == RK_F32) {
                rk_tensor t = head_f(x, g, bnhd, -1);
                rk_mat m = rk_tensor_slice(&t, b, h);
                err = rk_sinusoidal_add(&m, pos0, 0.0);
            } else {
                rk_tensord t = head_d(x, g, bnhd, -1);
                rk_matd m = rk_tensord_slice(&t, b, h);
                err = rk_sinusoidal_add_d(&m, pos0, 0.0);
            }
            if (err) cli_die_rk(c, err, what);
        }
}

/* One plan for the whole batch of heads (grouped-query when K has fewer heads), or, for a
 * per-head bias (the plan copies its bias), one plan per head, each over the batch. */
/* dst (b, 1, n, w) += src, element by element. */
#define ADD_INTO(dst, src)                                                                     \
    for (size_t b_ = 0; b_ < (dst).b; b_++)                                                    \
        for (size_t i_ = 0; i_ < (dst).n; i_++)                                                \
            for (size_t j_ = 0; j_ < (dst).d; j_++)                                            \
                (dst).data[b_ * (dst).sb + i_ * (dst).sn + j_] +=                              \
                    (src).data[b_ * (src).sb + i_ * (src).sn + j_]

static void run_slices(cli_ctx *c, rk_attn_config *ac, const bias_rows *br, slices_t *sl,
                       const size_t *kv_len, rk_attn **plan)
{
    const size_t H = sl->gq.h, Hk = sl->gk.h, grp = H / Hk;
    const size_t nplans = br->nb > 1 ? br->nb : 1;
    void *tmp = NULL;                  /* dK, dV of one head (grouped K/V, a plan per head) */
    ac->batch = sl->gq.b;
    ac->heads = nplans > 1 ? 1 : H;
    ac->kv_heads = nplans > 1 ? 1 : Hk;
    for (size_t h = 0; h < nplans; h++) {
        destroy_plan_at(plan);
        if (br->nb) {
            ac->bias = br->b + h * br->L;
            ac->bias_len = br->L;
        }
        int err = rk_attn_create(plan, ac);
        if (err) cli_die_rk(c, err, "cannot create the attention plan");
        if (sl->dout && !sl->saved) {      /* what one plan's training forward saves */
            size_t n = rk_attn_saved_len(*plan), elt = sl->q->dtype == RK_F32 ? 4 : 8;
            if (!(sl->saved = calloc(n ? n : 1, elt))) cli_die(c, "out of memory");
            cli_defer(c, free, sl->saved);
        }
        const long hq = nplans > 1 ? (long)h : -1, hk = nplans > 1 ? (long)(h / grp) : -1;
        const geom gq = sl->gq, gk = sl->gk;
        /* a plan per query head (a per-head bias) with grouped K/V: the first head of a group
         * writes dK, dV of its key/value head, the others add theirs in head order (as the
         * library's batched backward sums a group) */
        const int first = nplans == 1 || h % grp == 0;
        if (sl->dout && !first && !tmp) {
            size_t elt = sl->q->dtype == RK_F32 ? 4 : 8;
            size_t wk = sl->k->shape[sl->k->ndim - 1], wv = sl->v->shape[sl->v->ndim - 1];
            if (!(tmp = calloc(gk.b * gk.n * (wk + wv), elt))) cli_die(c, "out of memory");
            cli_defer(c, free, tmp);
        }
        if (sl->q->dtype == RK_F32) {
            rk_tensor Q = head_f(sl->q, gq, sl->bnhd, hq), K = head_f(sl->k, gk, sl->bnhd, hk);
            rk_tensor V = head_f(sl->v, gk, sl->bnhd, hk), O = head_f(sl->out, gq, sl->bnhd, hq);
            if (!sl->dout) {
                err = rk_attn_execute_batch(*plan, &Q, &K, &V, &O, kv_len);
            } else {
                rk_tensor G = head_f(sl->dout, gq, sl->bnhd, hq), DQ = head_f(sl->dq, gq, sl->bnhd, hq);
                rk_tensor DK = head_f(sl->dk, gk, sl->bnhd, hk), DV = head_f(sl->dv, gk, sl->bnhd, hk);
                rk_tensor DKh = DK, DVh = DV;
                if (!first) {           /* later heads of a group: into scratch, then added */
                    DKh = (rk_tensor){ (float *)tmp, gk.b, 1, gk.n, DK.d, gk.n * DK.d, gk.n * DK.d, DK.d };
                    DVh = (rk_tensor){ (float *)tmp + gk.b * gk.n * DK.d, gk.b, 1, gk.n, DV.d,
                                       gk.n * DV.d, gk.n * DV.d, DV.d };
                }
                err = rk_attn_forward_batch(*plan, &Q, &K, &V, &O, kv_len, sl->saved);
                if (!err)
                    err = rk_attn_backward_batch(*plan, &Q, &K, &V, &O, sl->saved, &G, &DQ, &DKh,
                                                 &DVh, kv_len);
                if (!err && !first) { ADD_INTO(DK, DKh); ADD_INTO(DV, DVh); }
            }
        } else {
            rk_tensord Q = head_d(sl->q, gq, sl->bnhd, hq), K = head_d(sl->k, gk, sl->bnhd, hk);
            rk_tensord V = head_d(sl->v, gk, sl->bnhd, hk), O = head_d(sl->out, gq, sl->bnhd, hq);
            if (!sl->dout) {
                err = rk_attn_execute_batch_d(*plan, &Q, &K, &V, &O, kv_len);
            } else {
                rk_tensord G = head_d(sl->dout, gq, sl->bnhd, hq), DQ = head_d(sl->dq, gq, sl->bnhd, hq);
                rk_tensord DK = head_d(sl->dk, gk, sl->bnhd, hk), DV = head_d(sl->dv, gk, sl->bnhd, hk);
                rk_tensord DKh = DK, DVh = DV;
                if (!first) {
                    DKh = (rk_tensord){ (double *)tmp, gk.b, 1, gk.n, DK.d, gk.n * DK.d, gk.n * DK.d, DK.d };
                    DVh = (rk_tensord){ (double *)tmp + gk.b * gk.n * DK.d, gk.b, 1, gk.n, DV.d,
                                        gk.n * DV.d, gk.n * DV.d, DV.d };
                }
                err = rk_attn_forward_batch_d(*plan, &Q, &K, &V, &O, kv_len, sl->saved);
                if (!err)
                    err = rk_attn_backward_batch_d(*plan, &Q, &K, &V, &O, sl->saved, &G, &DQ, &DKh,
                                                   &DVh, kv_len);
                if (!err && !first) { ADD_INTO(DK, DKh); ADD_INTO(DV, DVh); }
            }
        }
        if (err) cli_die_rk(c, err, "attention failed");
    }
}

int cmd_attend(int argc, char **argv)
{
    static const char *const precisions[] = { "float", "double", NULL };
    cli_ctx c;
    make_description();
    cli_parse(&c, &spec, argc, argv);

    /* 1. Options, all checked before any file is read. */
    const choice ch = get_variant(&c);
    const char *q_path = cli_required(&c, "q");
    cli_required(&c, "k");
    cli_required(&c, "v");
    const char *out_path = cli_required(&c, "out");
    check_applicable(&c, &ch);
    rk_attn_config ac;
    config_from_options(&c, &ch, &ac);
    const int sinusoidal = cli_flag(&c, "sinusoidal");
    const int bias_file = cli_flag(&c, "bias");
    const int bias_kind = bias_file ? BIAS_NONE
                        : cli_get_choice(&c, "bias-kind", "--bias-kind", bias_kinds,
                                         ch.row->bias == VARIANT_BIAS_T5 ? BIAS_T5 : BIAS_NONE);
    if (cli_flag(&c, "alibi-slope") && bias_kind != BIAS_ALIBI)
        cli_die(&c, "--alibi-slope applies to --bias-kind alibi only");
    double alibi_slope = cli_get_double(&c, "alibi-slope", 0.0, 0.0, INFINITY, 0);
    const char *save_proj = cli_get(&c, "save-proj");
    check_output_names(&c, out_path);
    int precision = cli_get_choice(&c, "precision", "precision", precisions, -1);
    static const char *const grad_outs[] = { "dq", "dk", "dv", NULL };
    const int backward = cli_flag(&c, "dout");
    int ngrad = 0;
    for (int i = 0; grad_outs[i]; i++) {
        if (!cli_flag(&c, grad_outs[i])) continue;
        if (!backward) cli_die(&c, "--%s needs --dout (the gradient of the loss with respect to "
                               "the output)", grad_outs[i]);
        ngrad++;
    }
    if (backward && !ngrad)
        cli_die(&c, "--dout runs the backward: name at least one of --dq, --dk, --dv to write");

    /* 2. Inputs. */
    rk_array q, k, v;
    cli_load_npy(&c, "q", &q);
    cli_load_npy(&c, "k", &k);
    cli_load_npy(&c, "v", &v);
    static const char *const layouts[] = { "bhnd", "bnhd", NULL };
    const int bnhd = cli_get_choice(&c, "layout", "--layout", layouts, 0) == 1;
    const size_t kv_heads_opt = (size_t)cli_get_integer(&c, "kv-heads", 0, 1, INT32_MAX);
    check_shapes(&c, &q, &k, &v, bnhd, kv_heads_opt);
    const int nd = q.ndim;
    rk_array g;   /* --dout: the shape and dtype of the output */
    if (backward) {
        cli_load_npy(&c, "dout", &g);
        char sg[160], sq[160];
        cli_shape_str(&g, sg, sizeof sg);
        cli_shape_str(&q, sq, sizeof sq);
        if (g.dtype != q.dtype)
            cli_die(&c, "--dout: %s is %s but %s is %s (it must have the output's dtype)",
                    cli_get(&c, "dout"), cli_dtype_name(g.dtype), q_path, cli_dtype_name(q.dtype));
        if (g.ndim != nd || memcmp(g.shape, q.shape, (size_t)(nd - 1) * sizeof(size_t)) != 0 ||
            g.shape[nd - 1] != v.shape[nd - 1])
            cli_die(&c, "--dout: %s has shape %s; the output is q's shape %s with d_v = %zu "
                    "columns", cli_get(&c, "dout"), sg, sq, v.shape[nd - 1]);
        cli_check_finite(&c, "dout", &g);
    }
    slices_t sl = { 0 };
    sl.bnhd = bnhd;
    sl.gq = geom_of(&q, bnhd);
    sl.gk = geom_of(&k, bnhd);
    ac.n_q = sl.gq.n;
    ac.d = sl.gq.w;
    ac.n_kv = sl.gk.n;
    ac.d_v = v.shape[nd - 1];
    rk_mat proj = { 0 };   /* at function scope: freed by cli_finish */
    if (cli_flag(&c, "proj")) {
        load_proj(&c, ac.d, &proj);
        ac.proj_data = proj.data;
        ac.n_features = proj.rows;
        if (ac.rope == RK_ROPE_FEATURES && ac.kernel == RK_KERNEL_POSITIVE && proj.rows % 2)
            cli_die(&c, "--rope features rotates the features in pairs, but --proj %s has an "
                    "odd m = %zu (positive features: width m)", cli_get(&c, "proj"), proj.rows);
    }
    check_rope_width(&c, &ac, q_path);
    /* dynamic / longrope: the length the frequencies follow (--seq-len, else the plan's) */
    if (ac.rope != RK_ROPE_NONE) {
        int64_t end = ac.pos_offset + (int64_t)ac.n_kv;
        cli_rope_default_seq_len(&c, &ac.rope_cfg, end > 0 ? (uint64_t)end : 0);
    }
    cli_check_finite(&c, "q", &q);
    cli_check_finite(&c, "k", &k);
    cli_check_finite(&c, "v", &v);

    /* Batch entries (axis b of (b, h, n, d)), heads per entry (the (h) axis; 1 for (n, d)),
     * and (b, h) slices: slice s is head s % heads of batch entry s / heads. */
    /* --kv-len: one value for every batch entry, or one each */
    size_t *kv_len = NULL, n_kv_len = 0;
    const char *kv_str = cli_get(&c, "kv-len");
    if (kv_str) {
        n_kv_len = parse_kv_len(&c, kv_str, ac.n_kv, &kv_len);
        if (n_kv_len != 1 && n_kv_len != sl.gq.b)
            cli_die(&c, "--kv-len has %zu values but the batch has %zu entr%s (give one value, "
                    "or one per b of (b, h, n, d))", n_kv_len, sl.gq.b,
                    sl.gq.b == 1 ? "y" : "ies");
        if (n_kv_len == 1 && sl.gq.b > 1) {
            size_t *all = calloc(sl.gq.b, sizeof *all);
            if (!all) cli_die(&c, "--kv-len: out of memory");
            cli_defer(&c, free, all);
            for (size_t b = 0; b < sl.gq.b; b++) all[b] = kv_len[0];
            kv_len = all;
        }
    }

    /* The bias rows: none, one for every head, or one per head. */
    rk_array bias_arr;   /* at function scope: freed by cli_finish */
    bias_rows br = { NULL, 0, rk_bias_len(ac.n_q, ac.n_kv) };
    if (bias_file)
        load_bias(&c, &bias_arr, ac.n_q, ac.n_kv, sl.gq.h, &br);
    else if (bias_kind != BIAS_NONE)
        make_bias(&c, bias_kind, ac.n_q, ac.n_kv, ac.causal, sl.gq.h,
                  cli_flag(&c, "alibi-slope") ? &alibi_slope : NULL, &br);

    /* 3. Precision: convert the inputs if the arithmetic differs from the input dtype. */
    const rk_dtype in_dtype = q.dtype;
    const rk_dtype work = precision < 0 ? in_dtype : precision == 0 ? RK_F32 : RK_F64;
    sl.q = &q, sl.k = &k, sl.v = &v;
    rk_array cq, ck, cv, cg;
    sl.dout = backward ? &g : NULL;
    if (work != in_dtype) {
        cli_convert(&c, &q, work, &cq);
        cli_convert(&c, &k, work, &ck);
        cli_convert(&c, &v, work, &cv);
        /* float64 values beyond float32's range would become Inf. */
        cli_check_finite(&c, "q", &cq);
        cli_check_finite(&c, "k", &ck);
        cli_check_finite(&c, "v", &cv);
        sl.q = &cq, sl.k = &ck, sl.v = &cv;
        if (backward) {
            cli_convert(&c, &g, work, &cg);
            cli_check_finite(&c, "dout", &cg);
            sl.dout = &cg;
        }
    }
    rk_array out;
    size_t out_shape[4];
    memcpy(out_shape, q.shape, (size_t)nd * sizeof(size_t));
    out_shape[nd - 1] = ac.d_v;
    memset(&out, 0, sizeof out);
    int err = rk_array_alloc(&out, work, nd, out_shape);
    if (err) cli_die_rk(&c, err, "cannot allocate the output");
    cli_defer_array(&c, &out);
    sl.out = &out;
    rk_array grads[3];   /* dq, dk, dv in the working precision */
    memset(grads, 0, sizeof grads);
    if (backward) {
        const rk_array *like[3] = { &q, &k, &k };
        for (int i = 0; i < 3; i++) {
            size_t shape[4];
            memcpy(shape, like[i]->shape, (size_t)nd * sizeof(size_t));
            if (i == 2) shape[nd - 1] = ac.d_v;
            if ((err = rk_array_alloc(&grads[i], work, nd, shape)))
                cli_die_rk(&c, err, "cannot allocate the gradients");
            cli_defer_array(&c, &grads[i]);
        }
        sl.dq = &grads[0], sl.dk = &grads[1], sl.dv = &grads[2];
    }

    /* 4. The projection of rpe-fft's FAVOR+ features, for --save-proj: an RK_PERFORMER plan of
     * the same feature options draws the same one (ropekit.h; rpe-fft plans report none). */
    rk_attn *plan = NULL, *proj_plan = NULL;
    cli_defer(&c, destroy_plan_at, &plan);
    cli_defer(&c, destroy_plan_at, &proj_plan);
    if (save_proj && ac.kind == RK_RPE_FFT) {
        rk_attn_config pc = { .kind = RK_PERFORMER, .n_q = 1, .n_kv = 1, .d = ac.d, .d_v = 1,
                              .scale = ac.scale, .n_features = ac.n_features,
                              .kernel = ac.kernel, .proj = ac.proj, .proj_norm = ac.proj_norm,
                              .seed = ac.seed, .proj_data = ac.proj_data, .nthreads = 1 };
        err = rk_attn_create(&proj_plan, &pc);
        if (err) cli_die_rk(&c, err, "cannot draw the projection");
    }

    /* --sinusoidal: keys at P + j, queries at P + n_kv - n_q + i, on the working copies. */
    if (sinusoidal) {
        add_sinusoidal(&c, sl.q, sl.gq, bnhd,
                       ac.pos_offset + ((int64_t)ac.n_kv - (int64_t)ac.n_q), "--sinusoidal");
        add_sinusoidal(&c, sl.k, sl.gk, bnhd, ac.pos_offset, "--sinusoidal");
    }

    /* 5. The slices. */
    run_slices(&c, &ac, &br, &sl, kv_len, &plan);

    /* 6. Every output staged (written beside its target), then all renamed into place: they
     * appear only if the whole run succeeds. */
    if (save_proj) {
        size_t pm, pd;
        const float *w = rk_attn_proj(proj_plan ? proj_plan : plan, &pm, &pd);
        if (!w) cli_die(&c, "--save-proj: the plan has no random projection");
        rk_array pa = { .dtype = RK_F32, .ndim = 2, .shape = { pm, pd }, .count = pm * pd,
                        .data = (void *)w };
        cli_stage_npy(&c, "save-proj", &pa);
    }
    rk_array back[4];   /* at function scope: cli_finish frees them */
    rk_array *results[4] = { &out, &grads[0], &grads[1], &grads[2] };
    static const char *const result_opts[4] = { "out", "dq", "dk", "dv" };
    for (int i = 0; i < 4; i++) {
        if (i > 0 && !cli_flag(&c, result_opts[i])) continue;
        const rk_array *r = results[i];
        if (work != in_dtype) {
            cli_convert(&c, r, in_dtype, &back[i]);
            r = &back[i];
        }
        cli_stage_npy(&c, result_opts[i], r);
    }
    cli_commit_outputs(&c);
    return cli_finish(&c);
}

/* ---- the option half, shared with ropekit-mpi attend (experiments/attend.h) ---------------- */

const cli_opt *attend_options(size_t *n)
{
    *n = sizeof opts / sizeof opts[0];
    return opts;
}

const char *attend_description(void)
{
    make_description();
    return description;
}

int attend_config(cli_ctx *c, rk_attn_config *ac)
{
    const choice ch = get_variant(c);
    check_applicable(c, &ch);
    config_from_options(c, &ch, ac);
    return ch.row->bias != VARIANT_BIAS_NONE;
}

size_t attend_check_shapes(cli_ctx *c, const rk_array *q, const rk_array *k, const rk_array *v,
                           int bnhd, size_t kv_heads)
{
    return check_shapes(c, q, k, v, bnhd, kv_heads);
}

void attend_check_rope_width(cli_ctx *c, const rk_attn_config *ac, const char *q_path)
{
    check_rope_width(c, ac, q_path);
}
