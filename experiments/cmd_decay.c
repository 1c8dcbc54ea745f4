/* ropekit decay: RoFormer's long-term decay (Figure 2) and, beside the bound, what the scores of
 * random (q, k) actually do. The computation is in decay.c; this file reads the options. */
#include "cli.h"
#include "decay.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const cli_opt opts[] = {
    { "dim", "D", "head dimension d, even (default 128): d/2 frequencies" },
    { "base", "B[,B...]", "frequency base(s), theta_i = B^(-2i/d) (default 10000); several\n"
      "bases give one bound column each (bound_b<B>)" },
    { "scaling", "SPEC[,SPEC...]", "scaling (default none), or a list: every base is\n"
      "combined with every scaling. SPEC:\n" CLI_SCALING_HELP },
    { "rope-config", "FILE", "one curve, a model's RoPE from its Hugging Face config.json\n"
      "(base, every HF rope type) over its r rotated channels (d = r);\n"
      "instead of --dim, --base and --scaling" },
    { "seq-len", "N", "sequence length of the length-dependent types (dynamic,\n"
      "longrope); default floor(max |distance|) + 1, the shortest holding them" },
    { "min-distance", "X", "first relative distance m - n (default 0; may be negative)" },
    { "max-distance", "X", "last relative distance (default 256)" },
    { "step", "S", "distance step, > 0, need not be an integer (default 1)" },
    { "draws", "N", "random (q, k) pairs for the empirical columns (default 1000; 0: bound only)" },
    { "dist", "NAME", "entries of q, k: normal (default), uniform (-sqrt3, sqrt3),\n"
      "rademacher (+-1), same (q = k ~ N(0, 1))" },
    { "seed", "S", "GSL mt19937 seed, 1 .. 4294967295 (default 1)" },
    { "out", "FILE", "TSV output (written atomically; default: stdout)" },
};

static const cli_spec spec = {
    "decay", "[options]",
    "Long-term decay of RoPE (RoFormer section 3.4.3, Figure 2): the relative upper bound\n"
    "B(dist) = mean_{j=1..d/2} |S_j(dist)|, S_j = sum_{i<j} exp(i dist theta_i), for one or\n"
    "more bases and scalings, and for random q, k the score (R_m q).(R_n k) at dist = m - n\n"
    "(mean, median, 5%/95% quantiles, also of |score|) beside the per-draw bound of eq. (37),\n"
    "with the count of draws that violate it (always 0). One TSV row per distance.\n"
    "Every curve uses its scaled frequencies theta_i (any scaling, or --rope-config).",
    opts, sizeof opts / sizeof opts[0],
};

#define MAX_LIST 16
#define MAX_ROWS 10000000
#define MAX_DRAWS 10000000
#define MAX_BYTES ((size_t)2 << 30)

/* Split a comma list into at most MAX_LIST fields (in buf, which is modified). */
static size_t split(cli_ctx *c, const char *opt, const char *s, char *buf, size_t len,
                    char **field)
{
    if (strlen(s) >= len) cli_die(c, "--%s: value '%.20s...' is too long", opt, s);
    strcpy(buf, s);
    size_t n = 0;
    for (char *p = buf;;) {
        if (n == MAX_LIST) cli_die(c, "--%s: at most %d values", opt, MAX_LIST);
        field[n++] = p;
        char *comma = strchr(p, ',');
        if (!comma) break;
        *comma = '\0';
        p = comma + 1;
    }
    for (size_t i = 0; i < n; i++)
        if (!field[i][0]) cli_die(c, "--%s '%s': empty entry in the list", opt, s);
    return n;
}

static void free_run(void *p) { decay_run_free(p); }
static void free_hf(void *p) { rk_rope_hf_free(p); }
static void abort_out(void *p) { decay_atomic_abort(p); }

int cmd_decay(int argc, char **argv)
{
    cli_ctx c;
    cli_parse(&c, &spec, argc, argv);
    decay_run run;
    decay_atomic out = { 0 };
    memset(&run, 0, sizeof run);

    /* --rope-config: one curve, the file's base and scaling over its rotated channels */
    rk_rope_hf hf = { 0 };
    const char *file = cli_get(&c, "rope-config");
    if (file) {
        static const char *const clash[] = { "dim", "base", "scaling", NULL };
        for (int i = 0; clash[i]; i++)
            if (cli_flag(&c, clash[i]))
                cli_die(&c, "--%s conflicts with --rope-config (the file gives it)", clash[i]);
        int err = rk_rope_hf_load(&hf, file);
        if (err) {
            const char *msg = rk_last_error();
            cli_die(&c, "--rope-config: %s", msg[0] ? msg : rk_strerror(err));
        }
        cli_defer(&c, free_hf, &hf);
    }
    long long d = file ? (long long)(hf.cfg.rotary_dim ? hf.cfg.rotary_dim : hf.cfg.dim)
                       : cli_get_integer(&c, "dim", 128, 2, 1 << 20);
    if (d % 2) cli_die(&c, "--dim %lld must be even (RoPE rotates pairs of channels)", d);
    run.d = (size_t)d;

    char bbuf[512], sbuf[512], *bf[MAX_LIST], *sf[MAX_LIST];
    size_t nb = file ? 1 : split(&c, "base", cli_get(&c, "base") ? cli_get(&c, "base") : "10000",
                                 bbuf, sizeof bbuf, bf);
    size_t ns = file ? 1 : split(&c, "scaling", cli_get(&c, "scaling") ? cli_get(&c, "scaling")
                                                                      : "none", sbuf, sizeof sbuf, sf);
    if (nb * ns > DECAY_MAXCURVES)
        cli_die(&c, "%zu bases x %zu scalings = %zu curves; at most %d", nb, ns, nb * ns,
                DECAY_MAXCURVES);
    double bases[MAX_LIST];
    for (size_t i = 0; i < nb; i++) {
        if (file) { bases[i] = hf.cfg.base; continue; }
        bases[i] = cli_double(&c, "--base", bf[i]);
        if (!(bases[i] > 0) || bases[i] == 1.0)
            cli_die(&c, "--base %s: a base must be > 0 and != 1", bf[i]);
    }
    rk_rope_config scal[MAX_LIST];
    for (size_t j = 0; j < ns; j++) {
        memset(&scal[j], 0, sizeof scal[j]);
        if (file) scal[j] = hf.cfg;
        else cli_parse_scaling(&c, "--scaling", sf[j], &scal[j]);
    }
    for (size_t i = 0; i < nb; i++)
        for (size_t j = 0; j < ns; j++) {
            size_t k = i * ns + j;
            run.curve[k] = scal[j];
            run.curve[k].base = bases[i];
            char tag[64];
            decay_curve_tag(&run.curve[k], tag, sizeof tag);
            int len = snprintf(run.name[k], sizeof run.name[k], "b%.10g%s", bases[i], tag);
            if (len < 0 || (size_t)len >= sizeof run.name[k])
                cli_die(&c, "curve name b%.10g%s is too long", bases[i], tag);
            for (size_t m = 0; m < k; m++)
                if (strcmp(run.name[m], run.name[k]) == 0)
                    cli_die(&c, "curve %s is given twice (--base / --scaling repeat a value)",
                            run.name[k]);
        }
    run.ncurves = nb * ns;

    double lim = 1e15;
    double dmin = cli_get_double(&c, "min-distance", 0.0, -lim, lim, 0);
    double dmax = cli_get_double(&c, "max-distance", 256.0, -lim, lim, 0);
    double step = cli_get_double(&c, "step", 1.0, 0.0, lim, CLI_GT_LO);
    if (dmax < dmin)
        cli_die(&c, "--max-distance %g is below --min-distance %g", dmax, dmin);
    size_t rows = decay_rows(dmin, dmax, step);
    if (rows == 0 || rows > MAX_ROWS)
        cli_die(&c, "%g .. %g every %g gives %.3g rows; at most %d (raise --step)", dmin, dmax,
                step, floor((dmax - dmin) / step) + 1, MAX_ROWS);
    if (rows > 1 && !(dmin + step > dmin))
        cli_die(&c, "--step %g is too small to move distance %g in double precision", step, dmin);
    run.dmin = dmin;
    run.step = step;
    run.rows = rows;

    /* The length for dynamic / longrope: --seq-len, else the shortest sequence that holds
     * every distance of the table (positions 0 .. floor(max |distance|)). */
    long long sl = cli_get_integer(&c, "seq-len", 0, 1, INT64_MAX);
    int len_dep = 0;
    for (size_t k = 0; k < run.ncurves; k++) len_dep |= cli_rope_len_dependent(run.curve[k].scaling);
    if (sl && !len_dep)
        cli_die(&c, "--seq-len has no effect: no curve has a length-dependent scaling (dynamic, "
                "longrope)");
    if (!sl) {
        double last = dmin + (double)(rows - 1) * step;
        double far = floor(fmax(fabs(dmin), fabs(last)));
        sl = far >= 9.0e15 ? (long long)9.0e15 : (long long)far + 1;
    }
    for (size_t k = 0; k < run.ncurves; k++)
        if (cli_rope_len_dependent(run.curve[k].scaling)) run.curve[k].seq_len = (size_t)sl;

    run.draws = (size_t)cli_get_integer(&c, "draws", 1000, 0, MAX_DRAWS);
    run.dist = (decay_dist)cli_get_choice(&c, "dist", "distribution", decay_dist_names, DECAY_NORMAL);
    if (cli_flag(&c, "dist") && run.draws == 0)
        cli_die(&c, "--dist needs draws (it was given with --draws 0)");
    run.seed = (unsigned long)cli_get_integer(&c, "seed", 1, 1, 4294967295LL);
    if (run.draws) {
        size_t bytes = decay_emp_bytes(run.d, run.draws);
        if (bytes == 0 || bytes > MAX_BYTES)
            cli_die(&c, "--draws %zu with --dim %zu needs %.3g GiB (limit %zu GiB): lower --draws",
                    run.draws, run.d, (double)decay_emp_bytes(run.d, 1) * (double)run.draws / 1073741824.0,
                    MAX_BYTES >> 30);
    }

    cli_defer(&c, free_run, &run);
    for (size_t k = 0; k < run.ncurves; k++) {
        if (!(run.theta[k] = malloc(run.d / 2 * sizeof(double)))) cli_die(&c, "out of memory");
        int err = decay_freqs(&run.curve[k], run.d, run.theta[k]);
        if (err) {
            char what[192];
            snprintf(what, sizeof what, "curve %s with --dim %zu", run.name[k], run.d);
            cli_die_rk(&c, err, what);
        }
    }

    const char *path = cli_get(&c, "out");
    FILE *f = stdout;
    if (path && strcmp(path, "-") != 0) {
        int e = decay_atomic_open(&out, path);
        if (e) cli_die(&c, "--out: cannot create a temporary file beside '%s': %s", path,
                       strerror(e));
        cli_defer(&c, abort_out, &out);
        f = out.f;
    }
    int err = decay_write(f, &run);
    if (err == RK_EIO) cli_die(&c, "--out: write error on '%s'", path ? path : "stdout");
    if (err) cli_die_rk(&c, err, "decay");
    if (f == stdout) {
        if (fflush(stdout) != 0) cli_die(&c, "write error on stdout: %s", strerror(errno));
    } else {
        int e = decay_atomic_commit(&out);
        if (e) cli_die(&c, "--out: cannot write '%s': %s (the target is unchanged)", path,
                       strerror(e));
    }
    return cli_finish(&c);
}
