/* ropekit rope: rotate (or un-rotate) the rows of a .npy array with RoPE, or print the
 * frequencies a configuration gives (--print-freqs).
 *
 * X is (n, d), (h, n, d) or (b, h, n, d); every (n, d) slice is rotated on its own, row t at
 * position P + t. float32 goes through rk_rope_apply, float64 through rk_rope_apply_d; the
 * output has the input's shape and dtype. The length-dependent rope types (dynamic, longrope)
 * take the sequence length P + n (HF: the largest position + 1) unless --seq-len says
 * otherwise. */
#include "cli.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define PI 3.14159265358979323846

static const cli_opt opts[] = {
    { "in", "X.npy", "input, shape (n, d), (h, n, d) or (b, h, n, d); float32 or float64" },
    { "out", "Y.npy", "output, same shape and dtype (written atomically)" },
    CLI_ROPE_OPTS,
    { "offset", "P", "row t of each (n, d) slice is at position P + t (default 0)" },
    { "inverse", NULL, "undo the rotation (R^T; with an attention factor, as yarn's or\n"
      "longrope's, also divides by it)" },
    { "allow-nonfinite", NULL, "accept NaN and Inf in the input" },
    { "print-freqs", NULL, "print the frequencies instead, no --in / --out (TSV on\n"
      "stdout: pair, theta, wavelength 2 pi / theta, divisor\n"
      "theta_default / theta, attention factor)" },
    { "dim", "D", "--print-freqs: head width d (default: the --rope-config file's)" },
};

static const cli_spec spec = {
    "rope", "--in X.npy --out Y.npy [options]  |  --print-freqs [--dim D] [options]",
    "Apply rotary position embedding (RoFormer eq. 34) to every (n, d) slice of X.\n"
    "Pair i of a row at position p turns by p * theta_i, theta_i = B^(-2i/R), then the\n"
    "scaling (or a model's Hugging Face config.json with --rope-config). The length-\n"
    "dependent types (dynamic, longrope) take the sequence length P + n (HF: largest\n"
    "position + 1) unless --seq-len is given; with --print-freqs, none (HF's values at\n"
    "initialisation: dynamic unscaled, longrope's short factors) unless --seq-len.",
    opts, sizeof opts / sizeof opts[0],
};

/* The '#' line: everything that determines the frequencies, resolved by the library. */
static void print_header(const rk_rope_config *g, double m)
{
    rk_rope_scaling sc = g->scaling;
    printf("# ropekit rope --print-freqs (ropekit %s): scaling=%s style=%s dim=%zu "
           "rotary_dim=%zu base=%.17g", rk_version(), rk_rope_scaling_name(sc),
           g->style == RK_ROPE_HALF ? "half" : "interleaved", g->dim, g->rotary_dim, g->base);
    if (sc != RK_SCALE_NONE) printf(" factor=%.17g", g->factor);
    if (sc == RK_SCALE_YARN || sc == RK_SCALE_YARN_PAPER || sc == RK_SCALE_LLAMA3 ||
        sc == RK_SCALE_LONGROPE)
        printf(" original_max_position_embeddings=%.17g", g->orig_ctx);
    if (sc == RK_SCALE_DYNAMIC) printf(" max_position_embeddings=%.17g", g->max_pos);
    if (sc == RK_SCALE_YARN || sc == RK_SCALE_YARN_PAPER)
        printf(" beta_fast=%.17g beta_slow=%.17g", g->beta_fast, g->beta_slow);
    if (sc == RK_SCALE_YARN)
        printf(" truncate=%s mscale=%.17g mscale_all_dim=%.17g", g->no_truncate ? "false" : "true",
               g->mscale, g->mscale_all_dim);
    if (sc == RK_SCALE_LLAMA3)
        printf(" low_freq_factor=%.17g high_freq_factor=%.17g", g->low_freq_factor,
               g->high_freq_factor);
    if (cli_rope_len_dependent(sc)) printf(" seq_len=%zu", g->seq_len);
    if (sc == RK_SCALE_LONGROPE)
        printf(" factors=%s", (double)g->seq_len > g->orig_ctx ? "long" : "short");
    printf(" attention_factor=%.17g\n", m);
}

static int print_freqs(cli_ctx *c, rk_rope_config *rc)
{
    static const char *const unused[] = { "in", "out", "offset", "inverse", "allow-nonfinite",
                                          NULL };
    for (int i = 0; unused[i]; i++)
        if (cli_flag(c, unused[i]))
            cli_die(c, "--%s is not used with --print-freqs (it prints the frequencies only)",
                    unused[i]);
    long long dl = cli_get_integer(c, "dim", 0, 1, (long long)INT32_MAX);
    if (!dl && !rc->dim) cli_die(c, "--print-freqs needs --dim D (or --rope-config FILE)");
    size_t d = dl ? (size_t)dl : rc->dim;
    char what[64];
    snprintf(what, sizeof what, "--dim %zu", d);
    cli_check_rope_dim(c, rc, d, what);
    rc->dim = d;
    rc->table_len = 1;               /* only the frequencies are wanted */
    rk_rope *rope;
    int err = rk_rope_create(&rope, rc);
    if (err) cli_die_rk(c, err, "cannot set up RoPE");
    cli_defer_rope(c, rope);
    const rk_rope_config *g = rk_rope_get_config(rope);
    const double *th = rk_rope_freqs(rope);
    double m = rk_rope_mscale(rope);
    size_t r = g->rotary_dim;
    print_header(g, m);
    printf("pair\ttheta\twavelength\tdivisor\tattention_factor\n");
    for (size_t i = 0; i < r / 2; i++) {
        double t0 = pow(g->base, -2.0 * (double)i / (double)r);   /* the default theta_i */
        printf("%zu\t%.17g\t%.17g\t%.17g\t%.17g\n", i, th[i], 2.0 * PI / th[i],
               t0 / th[i], m);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) cli_die(c, "write error on stdout");
    return cli_finish(c);
}

int cmd_rope(int argc, char **argv)
{
    cli_ctx c;
    cli_parse(&c, &spec, argc, argv);
    rk_rope_config rc;
    cli_rope_config(&c, &rc);
    if (cli_flag(&c, "print-freqs")) return print_freqs(&c, &rc);
    if (cli_flag(&c, "dim"))
        cli_die(&c, "--dim is for --print-freqs (the width of the rows comes from --in)");
    const char *in_path = cli_required(&c, "in");
    cli_required(&c, "out");
    int64_t offset = cli_get_integer(&c, "offset", 0, INT64_MIN, INT64_MAX);
    int inverse = cli_flag(&c, "inverse");

    rk_array x;
    cli_load_npy(&c, "in", &x);
    char shape[160];
    if (x.ndim < 2 || x.ndim > 4)
        cli_die(&c, "--in: %s has shape %s: expected (n, d), (h, n, d) or (b, h, n, d)",
                in_path, cli_shape_str(&x, shape, sizeof shape));
    size_t d = x.shape[x.ndim - 1], n = x.shape[x.ndim - 2];
    if (d == 0) cli_die(&c, "--in: %s has shape %s: d must be > 0", in_path,
                        cli_shape_str(&x, shape, sizeof shape));
    char what[600];
    snprintf(what, sizeof what, "--in %s", in_path);
    cli_check_rope_dim(&c, &rc, d, what);
    if (n > 0 && offset > 0 && (uint64_t)offset > (uint64_t)INT64_MAX - (n - 1))
        cli_die(&c, "--offset %lld: the last position P + %zu overflows a 64-bit integer",
                (long long)offset, n - 1);
    cli_check_finite(&c, "in", &x);
    /* HF's sequence length: the largest position + 1 (0 when every position is negative) */
    if (n > 0) {
        int64_t last = offset + (int64_t)(n - 1);
        cli_rope_default_seq_len(&c, &rc, last >= 0 ? (uint64_t)last + 1 : 0);
    }

    rc.dim = d;
    rk_rope *rope;
    int err = rk_rope_create(&rope, &rc);
    if (err) cli_die_rk(&c, err, "cannot set up RoPE");
    cli_defer_rope(&c, rope);

    /* In place, one (n, d) slice at a time: each starts at position P. */
    size_t slices = n ? x.count / (n * d) : 0;
    for (size_t s = 0; s < slices; s++) {
        if (x.dtype == RK_F32) {
            rk_mat m = rk_mat_view((float *)x.data + s * n * d, n, d, d);
            err = rk_rope_apply(rope, &m, &m, offset, NULL, inverse);
        } else {
            rk_matd m = rk_matd_view((double *)x.data + s * n * d, n, d, d);
            err = rk_rope_apply_d(rope, &m, &m, offset, NULL, inverse);
        }
        if (err) cli_die_rk(&c, err, "RoPE failed");
    }
    cli_save_npy(&c, "out", &x);
    return cli_finish(&c);
}
