/* ropekit rope: rotate (or un-rotate) the rows of a .npy array with RoPE.
 *
 * X is (n, d), (h, n, d) or (b, h, n, d); every (n, d) slice is rotated on its own, row t at
 * position P + t. float32 goes through rk_rope_apply, float64 through rk_rope_apply_d; the
 * output has the input's shape and dtype. */
#include "cli.h"

#include <stdint.h>

static const cli_opt opts[] = {
    { "in", "X.npy", "input, shape (n, d), (h, n, d) or (b, h, n, d); float32 or float64" },
    { "out", "Y.npy", "output, same shape and dtype (written atomically)" },
    CLI_ROPE_OPTS,
    { "offset", "P", "row t of each (n, d) slice is at position P + t (default 0)" },
    { "inverse", NULL, "undo the rotation (R^T; with yarn, also divides by its attention factor)" },
    { "allow-nonfinite", NULL, "accept NaN and Inf in the input" },
};

static const cli_spec spec = {
    "rope", "--in X.npy --out Y.npy [options]",
    "Apply rotary position embedding (RoFormer eq. 34) to every (n, d) slice of X.\n"
    "Pair i of a row at position p turns by p * theta_i, theta_i = B^(-2i/R).",
    opts, sizeof opts / sizeof opts[0],
};

int cmd_rope(int argc, char **argv)
{
    cli_ctx c;
    cli_parse(&c, &spec, argc, argv);
    const char *in_path = cli_required(&c, "in");
    cli_required(&c, "out");
    rk_rope_config rc;
    cli_rope_config(&c, &rc);
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
