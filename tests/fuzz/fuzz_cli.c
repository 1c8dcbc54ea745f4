/* libFuzzer target: the command line of every subcommand (scripts/fuzz.sh builds and runs it).
 *
 * Input: NUL-separated tokens. The first names the subcommand (a name of RK_CLI_COMMANDS in
 * experiments/cli.h; other inputs are refused), the rest are its arguments, given to
 * cmd_<name>(argc, argv) in this process. cli_exit_hook turns cli_die (and --help) into a
 * longjmp back here, after the command's cleanups ran, so one process runs millions of
 * command lines and LeakSanitizer sees what an error path leaks.
 *
 * Files: the commands run in a private directory (tmpfs when there is one) holding small
 * fixtures, restored before every run. A token "@name" (or "--opt=@name") is replaced by the
 * fixture's file name, so the fuzzer reaches past option parsing into loading, shape checks and
 * the computation: @x (4, 8) f32, @x3 (2, 3, 8) f64, @x4 (1, 2, 3, 4) f32, @odd (4, 7), @nan
 * (NaN at (1, 5)), @inf (+Inf, f64), @vec (8,), @empty (0, 8), @zero (4, 0), @q @k @v (4, 8) f32,
 * @k6 (6, 8), @v6 (6, 5), @qd (4, 8) f64, @w (8, 8) and @w7 (7, 8) projections, @bias (7,) f64
 * and @bias5 (5,) (a relative bias of the right and a wrong length for 4 x 4), @bad (not .npy),
 * @int ('<i4'), @torn (a broken TSV table), @dir (a directory), @missing (absent), and the
 * outputs @o, @o2, @w2, @tsv (absent before the run). A token with '/' in it is refused: every
 * path a command sees is a name inside the directory (nothing outside it can be written).
 * A token "%fail=N" is not passed on: it makes the library's (N+1)-th allocation fail
 * (rk__alloc_fail_after), so allocation-failure paths run too.
 *
 * Budget: the sweeps would run for minutes on their defaults, so size options get small defaults
 * appended when absent and inputs with bigger values are refused (see `budgets` below); decay
 * refuses more than 300 distances; theory runs one cheap check unless --only names up to three
 * others (orth and matrix, seconds under the sanitizers, are refused). A subcommand without a budget entry runs as given, except
 * that numbers above 4096 are refused.
 *
 * Checked after every run (a failure aborts: libFuzzer keeps the input as a crash):
 *   - a command returns 0 (or 1: theory's FAIL) or dies with status 2 through cli_die, whose
 *     message is one non-empty line that is not an internal error;
 *   - no temporary file is left in the directory (anything not a fixture or named in argv);
 *   - rope, attend, decay, theory, pattern: a failed run creates no file and leaves every fixture byte for
 *     byte as it was (outputs are atomic); a successful rope/attend writes a valid .npy;
 *   - and, through the sanitizers: no memory error, no undefined behaviour, no leak. */
#include "cli.h"
#include "rk_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gsl/gsl_errno.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                                                           \
    do {                                                                                    \
        fprintf(stderr, "fuzz_cli: ");                                                      \
        fprintf(stderr, __VA_ARGS__);                                                       \
        fprintf(stderr, "\n");                                                              \
        abort();                                                                            \
    } while (0)

/* ---- the subcommands ------------------------------------------------------------------- */
typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
} command;
#define FUZZ_ENTRY(name, summary) { #name, cmd_##name },
static const command commands[] = { RK_CLI_COMMANDS(FUZZ_ENTRY) };
#undef FUZZ_ENTRY
#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* Commands whose failed runs must leave the directory exactly as it was (atomic outputs only;
 * scaling and approx append finished rows to their tables by design). */
static int strict_outputs(const char *cmd)
{
    return !strcmp(cmd, "rope") || !strcmp(cmd, "attend") || !strcmp(cmd, "decay") ||
           !strcmp(cmd, "theory") || !strcmp(cmd, "pattern");
}

/* ---- budget ----------------------------------------------------------------------------- */
typedef struct {
    const char *cmd, *opt;
    const char *dflt;   /* appended as "--opt dflt" when the option is absent (NULL: nothing) */
    double cap;         /* a numeric value above this is refused (0: no cap)                   */
} budget;

static const budget budgets[] = {
    { "attend", "features", NULL, 64 },   { "attend", "threads", NULL, 2 },
    { "theory", "draws", "1", 2 },        { "theory", "trials", "100", 200 },
    { "theory", "only", "norm-f64", 0 },
    { "decay", "dim", "8", 64 },          { "decay", "draws", "4", 32 },
    { "scaling", "n-min", "4", 16 },      { "scaling", "n-max", "8", 32 },
    { "scaling", "d", "4", 8 },           { "scaling", "m", "4", 8 },
    { "scaling", "repeats", "1", 2 },     { "scaling", "max-repeats", NULL, 4 },
    { "scaling", "warmup", "0", 1 },      { "scaling", "threads", NULL, 2 },
    { "approx", "m-min", "2", 8 },        { "approx", "m-max", "4", 16 },
    { "approx", "n", "4", 8 },            { "approx", "d", "4", 8 },
    { "approx", "seeds", "1", 2 },        { "approx", "norms", "1", 0 },
    { "approx", "threads", NULL, 2 },
    { "pattern", "n", "8", 32 },          { "pattern", "d", "4", 16 },
    { "pattern", "m", "4", 16 },          { "pattern", "draws", "2", 8 },
    { "pattern", "checks", "1", 2 },
    { "train", "steps", "2", 8 },         { "train", "ctx", "8", 32 },
    { "train", "d-model", "8", 32 },      { "train", "d-ff", NULL, 64 },
    { "train", "layers", "1", 2 },        { "train", "batch", "2", 4 },
    { "train", "val-tokens", "16", 64 },  { "train", "features", "4", 16 },
    { "train", "seeds", NULL, 2 },        { "train", "lengths", NULL, 4 },
    { "train", "threads", NULL, 2 },
};
#define NBUDGETS (sizeof budgets / sizeof budgets[0])
#define GENERIC_CAP 4096.0
#define DECAY_MAX_ROWS 300.0

static int has_budget(const char *cmd)
{
    for (size_t i = 0; i < NBUDGETS; i++)
        if (!strcmp(budgets[i].cmd, cmd)) return 1;
    return 0;
}

/* The whole string as a number (strtod), or NAN. */
static double number(const char *s)
{
    char *end;
    if (!*s) return NAN;
    double x = strtod(s, &end);
    return *end ? NAN : x;
}

/* The value of --opt in argv (as cli_parse would take it), or NULL. */
static const char *find_value(int argc, char **argv, const char *opt, int *present)
{
    size_t n = strlen(opt);
    *present = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) || strncmp(a + 2, opt, n)) continue;
        if (a[2 + n] == '=') { *present = 1; return a + 3 + n; }
        if (a[2 + n] != '\0') continue;
        *present = 1;
        return i + 1 < argc && strncmp(argv[i + 1], "--", 2) ? argv[i + 1] : NULL;
    }
    return NULL;
}

/* ---- the directory and its fixtures ---------------------------------------------------------- */
static char dir[256];

typedef struct {
    const char *token, *file;
    unsigned char *img;   /* file contents (NULL: not a file) */
    size_t len;
} fixture;

static fixture fixtures[] = {
    { "@x", "x.npy", NULL, 0 },      { "@x3", "x3.npy", NULL, 0 },    { "@x4", "x4.npy", NULL, 0 },
    { "@odd", "odd.npy", NULL, 0 },  { "@nan", "nan.npy", NULL, 0 },  { "@inf", "inf.npy", NULL, 0 },
    { "@vec", "vec.npy", NULL, 0 },  { "@empty", "empty.npy", NULL, 0 },
    { "@zero", "zero.npy", NULL, 0 }, { "@q", "q.npy", NULL, 0 },     { "@k", "k.npy", NULL, 0 },
    { "@v", "v.npy", NULL, 0 },      { "@k6", "k6.npy", NULL, 0 },    { "@v6", "v6.npy", NULL, 0 },
    { "@qd", "qd.npy", NULL, 0 },    { "@w", "w.npy", NULL, 0 },      { "@w7", "w7.npy", NULL, 0 },
    { "@bias", "bias.npy", NULL, 0 }, { "@bias5", "bias5.npy", NULL, 0 },
    { "@bad", "bad.npy", NULL, 0 },  { "@int", "int.npy", NULL, 0 },  { "@torn", "torn.tsv", NULL, 0 },
    /* not files: a directory, an absent input, the outputs */
    { "@dir", "d", NULL, 0 },        { "@missing", "missing.npy", NULL, 0 },
    { "@o", "o.npy", NULL, 0 },      { "@o2", "o2.npy", NULL, 0 },    { "@w2", "w2.npy", NULL, 0 },
    { "@tsv", "out.tsv", NULL, 0 },
};
#define NFIXTURES (sizeof fixtures / sizeof fixtures[0])

static fixture *fixture_named(const char *file)
{
    for (size_t i = 0; i < NFIXTURES; i++)
        if (!strcmp(fixtures[i].file, file)) return &fixtures[i];
    return NULL;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) FAIL("cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    unsigned char *p = malloc(cap);
    for (size_t got; p && (got = fread(p + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) p = realloc(p, cap *= 2);
    }
    fclose(f);
    if (!p) FAIL("out of memory");
    *len = n;
    return p;
}

static void spit(const char *file, const void *p, size_t n)
{
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || (n && write(fd, p, n) != (ssize_t)n) || close(fd) != 0)
        FAIL("cannot write %s/%s: %s", dir, file, strerror(errno));
}

/* A float array filled with a fixed pattern, saved as `file` (the image is read back). */
static void make_array(const char *file, rk_dtype dt, int ndim, const size_t *shape,
                       double poison)
{
    rk_array a;
    if (rk_array_alloc(&a, dt, ndim, shape)) FAIL("rk_array_alloc: %s", rk_last_error());
    for (size_t i = 0; i < a.count; i++) {
        double x = sin(1.7 * (double)i + (double)ndim) * 1.3;
        if (i == 13 && poison != 0) x = poison;
        if (dt == RK_F32) ((float *)a.data)[i] = (float)x;
        else ((double *)a.data)[i] = x;
    }
    if (rk_npy_save(file, &a)) FAIL("rk_npy_save %s: %s", file, rk_last_error());
    rk_array_free(&a);
}

static void cleanup(void)
{
    for (size_t i = 0; i < NFIXTURES; i++) {
        unlink(fixtures[i].file);
        free(fixtures[i].img);
        fixtures[i].img = NULL;
    }
    rmdir("d");
    if (chdir("/") == 0) rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    gsl_set_error_handler_off();
    setenv("OMP_NUM_THREADS", "1", 0);
    /* the commands' tables and reports go nowhere; the harness checks messages itself */
    if (!freopen("/dev/null", "w", stdout)) FAIL("cannot redirect stdout");
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/rk-fuzz-cli-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir) || chdir(dir) != 0) FAIL("cannot make a directory: %s", strerror(errno));
    atexit(cleanup);

#define SHAPE(...) (int)(sizeof((size_t[]){ __VA_ARGS__ }) / sizeof(size_t)), (size_t[]){ __VA_ARGS__ }
    make_array("x.npy", RK_F32, SHAPE(4, 8), 0);
    make_array("x3.npy", RK_F64, SHAPE(2, 3, 8), 0);
    make_array("x4.npy", RK_F32, SHAPE(1, 2, 3, 4), 0);
    make_array("odd.npy", RK_F32, SHAPE(4, 7), 0);
    make_array("nan.npy", RK_F32, SHAPE(4, 8), NAN);
    make_array("inf.npy", RK_F64, SHAPE(4, 8), INFINITY);
    make_array("vec.npy", RK_F32, SHAPE(8), 0);
    make_array("empty.npy", RK_F32, SHAPE(0, 8), 0);
    make_array("zero.npy", RK_F32, SHAPE(4, 0), 0);
    make_array("q.npy", RK_F32, SHAPE(4, 8), 0);
    make_array("k.npy", RK_F32, SHAPE(4, 8), 0);
    make_array("v.npy", RK_F32, SHAPE(4, 8), 0);
    make_array("k6.npy", RK_F32, SHAPE(6, 8), 0);
    make_array("v6.npy", RK_F32, SHAPE(6, 5), 0);
    make_array("qd.npy", RK_F64, SHAPE(4, 8), 0);
    make_array("w.npy", RK_F32, SHAPE(8, 8), 0);
    make_array("w7.npy", RK_F32, SHAPE(7, 8), 0);
    make_array("bias.npy", RK_F64, SHAPE(7), 0);
    make_array("bias5.npy", RK_F32, SHAPE(5), 0);
#undef SHAPE
    spit("bad.npy", "this is not numpy\n", 18);
    static const char int_npy[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '<i4', 'fortran_order': "
                                  "False, 'shape': (2,), }";
    unsigned char buf[128 + 8];
    memset(buf, ' ', sizeof buf);
    memcpy(buf, int_npy, sizeof int_npy - 1);
    buf[127] = '\n';
    memset(buf + 128, 0, 8);
    spit("int.npy", buf, sizeof buf);
    static const char torn[] = "# ropekit scaling v0 something else\nvariant\tmask\n"
                               "softmax\tcausal\t8\tok\n# summary\tx\nsoftmax\tcaus";
    spit("torn.tsv", torn, sizeof torn - 1);
    if (mkdir("d", 0755) != 0) FAIL("mkdir: %s", strerror(errno));
    for (size_t i = 0; i < NFIXTURES; i++) {
        struct stat st;
        if (stat(fixtures[i].file, &st) == 0 && S_ISREG(st.st_mode))
            fixtures[i].img = slurp(fixtures[i].file, &fixtures[i].len);
    }
    return 0;
}

/* Before a run: fixtures as made, nothing else in the directory. */
static void restore(void)
{
    DIR *d = opendir(".");
    if (!d) FAIL("opendir: %s", strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, "d"))
            continue;
        fixture *f = fixture_named(e->d_name);
        if (!f || !f->img) unlink(e->d_name);
    }
    closedir(d);
    for (size_t i = 0; i < NFIXTURES; i++)
        if (fixtures[i].img) spit(fixtures[i].file, fixtures[i].img, fixtures[i].len);
    struct stat st;
    if (stat("d", &st) != 0 || !S_ISDIR(st.st_mode)) {
        unlink("d");
        if (mkdir("d", 0755) != 0) FAIL("mkdir: %s", strerror(errno));
    }
}

/* Is `name` mentioned by argv (a whole token, or the value after '=')? */
static int named_in_argv(const char *name, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *eq = strncmp(argv[i], "--", 2) == 0 ? strchr(argv[i], '=') : NULL;
        if (!strcmp(argv[i], name) || (eq && !strcmp(eq + 1, name))) return 1;
    }
    return 0;
}

/* After a run: no stray files; with `strict`, no new file at all and every fixture unchanged. */
static void check_directory(const char *cmd, int strict, int argc, char **argv)
{
    DIR *d = opendir(".");
    if (!d) FAIL("opendir: %s", strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, "d"))
            continue;
        fixture *f = fixture_named(e->d_name);
        if (f && f->img) {
            if (!strict) continue;
            size_t n;
            unsigned char *now = slurp(e->d_name, &n);
            int same = n == f->len && memcmp(now, f->img, n) == 0;
            free(now);
            if (!same) FAIL("%s: a failed run changed %s", cmd, e->d_name);
            continue;
        }
        if (!named_in_argv(e->d_name, argc, argv))
            FAIL("%s: the run left a stray file '%s'", cmd, e->d_name);
        if (strict) FAIL("%s: a failed run left '%s' behind", cmd, e->d_name);
    }
    closedir(d);
}

/* ---- the run -------------------------------------------------------------------------------- */
static jmp_buf back;
static int exit_status;
static char exit_msg[2100];
static int exit_has_msg;

static void on_exit_hook(int status, const char *message)
{
    exit_status = status;
    exit_has_msg = message != NULL;
    snprintf(exit_msg, sizeof exit_msg, "%s", message ? message : "");
    longjmp(back, 1);
}

#define MAXARG 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 4096) return -1;
    /* tokens: a NUL-terminated copy split at NUL bytes */
    char *buf = malloc(size + 1);
    if (!buf) return -1;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *tok[MAXARG + 1];
    int ntok = 0;
    for (char *p = buf; p < buf + size && ntok < MAXARG; p += strlen(p) + 1) tok[ntok++] = p;

    const command *cmd = NULL;
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(tok[0], commands[i].name)) cmd = &commands[i];
    if (!cmd) { free(buf); return -1; }

    /* argv: @tokens mapped, %fail taken out, then the budget's defaults */
    char *argv[MAXARG + 2 * NBUDGETS + 2];
    char mapped[MAXARG][64];
    int argc = 0;
    long fail_after = -1;
    argv[argc++] = (char *)cmd->name;
    for (int i = 1; i < ntok; i++) {
        char *t = tok[i];
        if (!strncmp(t, "%fail=", 6)) {
            fail_after = strtol(t + 6, NULL, 10);
            if (fail_after < 0 || fail_after > 1000) fail_after = -1;
            continue;
        }
        char *eq = !strncmp(t, "--", 2) ? strchr(t, '=') : NULL;
        char *at = eq && eq[1] == '@' ? eq + 1 : t[0] == '@' ? t : NULL;
        if (at) {
            const fixture *f = NULL;
            for (size_t k = 0; k < NFIXTURES; k++)
                if (!strcmp(fixtures[k].token, at)) f = &fixtures[k];
            if (f) {
                snprintf(mapped[i], sizeof mapped[i], "%.*s%s", (int)(at - t), t, f->file);
                if (strlen(mapped[i]) == sizeof mapped[i] - 1) { free(buf); return -1; }
                t = mapped[i];
            }
        }
        if (strchr(t, '/')) { free(buf); return -1; }   /* stay inside the directory */
        argv[argc++] = t;
    }
    int present;
    if (has_budget(cmd->name)) {
        for (size_t i = 0; i < NBUDGETS; i++) {
            if (strcmp(budgets[i].cmd, cmd->name)) continue;
            const char *v = find_value(argc, argv, budgets[i].opt, &present);
            double x = v ? number(v) : NAN;
            if (budgets[i].cap > 0 && fabs(x) > budgets[i].cap) { free(buf); return -1; }
            if (!present && budgets[i].dflt) {
                static char opt[NBUDGETS][40];
                snprintf(opt[i], sizeof opt[i], "--%s", budgets[i].opt);
                argv[argc++] = opt[i];
                argv[argc++] = (char *)budgets[i].dflt;
            }
        }
        if (!strcmp(cmd->name, "theory")) {
            /* at most 3 checks, none of the two slow ones (orth: seconds under the sanitizers) */
            const char *s = find_value(argc, argv, "only", &present);
            size_t commas = 0;
            for (const char *p = s; p && *p; p++) commas += *p == ',';
            if (s && (commas > 2 || strstr(s, "orth") || strstr(s, "matrix"))) {
                free(buf);
                return -1;
            }
        }
        if (!strcmp(cmd->name, "decay")) {
            const char *s;
            double lo = (s = find_value(argc, argv, "min-distance", &present)) ? number(s) : 0;
            double hi = (s = find_value(argc, argv, "max-distance", &present)) ? number(s) : 256;
            double st = (s = find_value(argc, argv, "step", &present)) ? number(s) : 1;
            if (st > 0 && hi >= lo && (hi - lo) / st > DECAY_MAX_ROWS) { free(buf); return -1; }
        }
    } else {
        for (int i = 1; i < argc; i++) {
            const char *eq = strncmp(argv[i], "--", 2) == 0 ? strchr(argv[i], '=') : NULL;
            if (fabs(number(eq ? eq + 1 : argv[i])) > GENERIC_CAP) { free(buf); return -1; }
        }
    }
    argv[argc] = NULL;

    restore();
    cli_exit_hook = on_exit_hook;
    exit_status = -1;
    exit_has_msg = 0;
    volatile int ret = -1, died = 0;
    rk__alloc_fail_after(fail_after);
    if (setjmp(back) == 0) ret = cmd->run(argc, argv);
    else died = 1;
    rk__alloc_fail_after(-1);
    cli_exit_hook = NULL;
    fflush(stdout);

    if (died) {
        if (exit_status != 0 && exit_status != CLI_EXIT_ERROR)
            FAIL("%s: exit status %d", cmd->name, exit_status);
        if (exit_status == CLI_EXIT_ERROR) {
            if (!exit_has_msg || !exit_msg[0]) FAIL("%s: died without a message", cmd->name);
            if (strchr(exit_msg, '\n')) FAIL("%s: message spans lines: %s", cmd->name, exit_msg);
            /* internal errors are reported with this fixed start (user text comes later) */
            if (!strncmp(exit_msg, "internal error", 14) ||
                !strncmp(exit_msg, "--out: internal error", 21))
                FAIL("%s: %s", cmd->name, exit_msg);
        }
    } else if (ret != 0 && ret != 1) {
        FAIL("%s: returned %d", cmd->name, ret);
    }
    int failed = died && exit_status == CLI_EXIT_ERROR;
    check_directory(cmd->name, failed && strict_outputs(cmd->name), argc, argv);
    if (!died && ret == 0 && (!strcmp(cmd->name, "rope") || !strcmp(cmd->name, "attend"))) {
        const char *out = find_value(argc, argv, "out", &present);
        rk_array a;
        if (!out || rk_npy_load(out, &a) != RK_OK)
            FAIL("%s: succeeded but --out %s is not a valid .npy: %s", cmd->name,
                 out ? out : "(none)", rk_last_error());
        rk_array_free(&a);
    }
    free(buf);
    return 0;
}
