/* ropekit pattern: the attention pattern of each position encoding against relative distance
 * (softmax family: none, sinusoidal, T5, ALiBi, RoPE, xPos; linear family: RoPE eq. 19, RoPE
 * qk, FFT bias), and the shift test of exact relativity. Computation in pattern.c. */
#include "cli.h"
#include "decay.h"
#include "pattern.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const cli_opt opts[] = {
    { "n", "N", "keys: the query at position n-1 sees keys 0..n-1 (default 256; quick 128)" },
    { "d", "D", "head width, even (default 64)" },
    { "m", "M", "FAVOR+ random features of the linear family, even (default 64)" },
    { "draws", "R", "random draws of (q, k) (default 300; quick 60)" },
    { "corr", "C", "key content k_j = C q + sqrt(1 - C^2) g_j, 0 <= C <= 1 (default 0.5)" },
    { "seed", "S", "GSL mt19937 seed of the draws and of the FAVOR+ projection (default 1)" },
    { "alibi-slope", "S", "ALiBi slope, also the FFT bias's (default 0.0625 = head 4 of 8)" },
    { "xpos-scale-base", "B", "xPos scale base (default 512)" },
    { "shift", "P", "shift test: every position moved by P (default 1000)" },
    { "checks", "K", "draws compared with the library's own attention (default 2)" },
    { "encodings", "LIST", "comma-separated subset (default all): none, sinusoidal, t5, alibi,\n"
      "rope, xpos, linear-rope-eq19, linear-rope-qk, rpe-fft" },
    { "quick", NULL, "a smaller run (n = 128, 60 draws): about a second" },
    { "out", "FILE", "TSV output (written atomically; default: stdout)" },
};

static const cli_spec spec = {
    "pattern", "[--quick] [--out FILE] [options]",
    "Attention pattern of each position encoding for random inputs: per relative distance\n"
    "(query minus key position, causal view) the mean and 5%/95% quantiles of the attention\n"
    "score and weight, and the shift test (every position moved by --shift: an exactly\n"
    "relative encoding changes no score beyond rounding). Softmax family: none, sinusoidal,\n"
    "t5, alibi, rope, xpos; linear family (FAVOR+): linear-rope-eq19, linear-rope-qk, rpe-fft.\n"
    "One TSV row per (encoding, distance), then '# summary' lines.",
    opts, sizeof opts / sizeof opts[0],
};

#define MAX_CELLS 100000000.0   /* draws x n stored per encoding (x 2 arrays of doubles) */

static void abort_out(void *p) { decay_atomic_abort(p); }

typedef struct {
    pattern_res res[PAT_N];
    size_t      nres;
} results;

static void free_results(void *p)
{
    results *r = p;
    for (size_t i = 0; i < r->nres; i++) pattern_res_free(&r->res[i]);
    r->nres = 0;
}

static unsigned parse_encodings(cli_ctx *c, const char *s)
{
    if (!s) return (1u << PAT_N) - 1;
    unsigned mask = 0;
    char buf[512];
    if (strlen(s) >= sizeof buf) cli_die(c, "--encodings: the list is too long");
    strcpy(buf, s);
    for (char *tok = buf, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next) *next++ = '\0';
        int found = -1;
        for (int e = 0; e < PAT_N; e++)
            if (strcmp(tok, pattern_enc_names[e]) == 0) found = e;
        if (found < 0)
            cli_die(c, "--encodings: unknown encoding '%s' (expected: none, sinusoidal, t5, alibi, "
                    "rope, xpos, linear-rope-eq19, linear-rope-qk, rpe-fft)", tok);
        if (mask & (1u << found)) cli_die(c, "--encodings: '%s' is given twice", tok);
        mask |= 1u << found;
    }
    return mask;
}

int cmd_pattern(int argc, char **argv)
{
    cli_ctx c;
    cli_parse(&c, &spec, argc, argv);
    static results res;
    decay_atomic out = { 0 };
    memset(&res, 0, sizeof res);
    int quick = cli_flag(&c, "quick");

    pattern_cfg pc;
    memset(&pc, 0, sizeof pc);
    pc.n = (size_t)cli_get_integer(&c, "n", quick ? 128 : 256, 2, 1 << 20);
    pc.d = (size_t)cli_get_integer(&c, "d", 64, 2, 1 << 16);
    if (pc.d % 2) cli_die(&c, "--d %zu must be even (RoPE rotates pairs)", pc.d);
    pc.m = (size_t)cli_get_integer(&c, "m", 64, 2, 1 << 16);
    if (pc.m % 2) cli_die(&c, "--m %zu must be even (eq. 19 rotates the features in pairs)", pc.m);
    pc.draws = (size_t)cli_get_integer(&c, "draws", quick ? 60 : 300, 1, 100000000);
    pc.corr = cli_get_double(&c, "corr", 0.5, 0.0, 1.0, 0);
    pc.seed = (unsigned long)cli_get_integer(&c, "seed", 1, 1, 4294967295LL);
    pc.alibi_slope = cli_get_double(&c, "alibi-slope", 0.0625, 0.0, 1e6, 0);
    pc.xpos_scale_base = cli_get_double(&c, "xpos-scale-base", 512.0, 0.0, 1e12, CLI_GT_LO);
    pc.shift = (int64_t)cli_get_integer(&c, "shift", 1000, -1000000000LL, 1000000000LL);
    if (pc.shift == 0) cli_die(&c, "--shift 0 would test nothing");
    pc.checks = (size_t)cli_get_integer(&c, "checks", 2, 0, 1000000);
    if (pc.checks > pc.draws) pc.checks = pc.draws;
    pc.mask = parse_encodings(&c, cli_get(&c, "encodings"));
    if ((double)pc.draws * (double)pc.n > MAX_CELLS)
        cli_die(&c, "--draws %zu x --n %zu = %.3g stored values per encoding; at most %.0e",
                pc.draws, pc.n, (double)pc.draws * (double)pc.n, MAX_CELLS);

    cli_defer(&c, free_results, &res);
    for (int e = 0; e < PAT_N; e++) {
        if (!(pc.mask & (1u << e))) continue;
        int err = pattern_run(&pc, (pattern_enc)e, &res.res[res.nres]);
        if (err) {
            char what[96];
            snprintf(what, sizeof what, "encoding %s", pattern_enc_names[e]);
            cli_die_rk(&c, err, what);
        }
        res.nres++;
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
    if (pattern_write(f, &pc, res.res, res.nres))
        cli_die(&c, "--out: write error on '%s'", path ? path : "stdout");
    if (f != stdout) {
        int e = decay_atomic_commit(&out);
        if (e) cli_die(&c, "--out: cannot write '%s': %s (the target is unchanged)", path,
                       strerror(e));
    }
    return cli_finish(&c);
}
