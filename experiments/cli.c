/* Shared helpers of the ropekit subcommands: option parsing, strict numbers, one-line errors
 * with exit status 2, .npy loading and saving with messages that name the option and file,
 * and the RoPE options several subcommands share. See cli.h. */
#include "cli.h"
#include "rk_npy.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors and cleanup ---------------------------------------------------------------- */

static void run_deferred(cli_ctx *c)
{
    if (!c) return;
    while (c->nouts > 0) rk__out_abort(&c->outs[--c->nouts].out);   /* never committed */
    while (c->ndefer > 0) {
        cli_deferred *d = &c->defer[--c->ndefer];
        d->fn(d->p);
    }
}

cli_exit_fn cli_exit_hook;

/* The message as one line: control characters (a newline or tab inside a file name or an
 * argument) are written as \n, \t, \r or \xNN. Returns a malloc'd string, or NULL. */
static char *one_line(const char *fmt, va_list ap)
{
    va_list aq;
    va_copy(aq, ap);
    int n = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);
    char *raw = n >= 0 ? malloc((size_t)n + 1) : NULL;
    char *out = raw ? malloc(4 * (size_t)n + 1) : NULL;
    if (!out) { free(raw); return NULL; }
    vsnprintf(raw, (size_t)n + 1, fmt, ap);
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)raw; *p; p++) {
        if (*p >= 0x20 && *p != 0x7f) *o++ = (char)*p;
        else if (*p == '\n') { *o++ = '\\'; *o++ = 'n'; }
        else if (*p == '\t') { *o++ = '\\'; *o++ = 't'; }
        else if (*p == '\r') { *o++ = '\\'; *o++ = 'r'; }
        else o += sprintf(o, "\\x%02x", *p);
    }
    *o = '\0';
    free(raw);
    return out;
}

static _Noreturn void vdie(cli_ctx *c, const char *fmt, va_list ap)
{
    char *msg = one_line(fmt, ap);
    const char *text = msg ? msg : "out of memory (while reporting an error)";
    if (cli_exit_hook) {
        static char copy[4096];
        snprintf(copy, sizeof copy, "%s", text);
        free(msg);
        run_deferred(c);
        cli_exit_hook(CLI_EXIT_ERROR, copy);
        exit(CLI_EXIT_ERROR);
    }
    fflush(stdout);
    if (c && c->spec) fprintf(stderr, "ropekit %s: %s\n", c->spec->cmd, text);
    else fprintf(stderr, "ropekit: %s\n", text);
    free(msg);
    run_deferred(c);
    exit(CLI_EXIT_ERROR);
}

void cli_die(cli_ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdie(c, fmt, ap);
}

void cli_die_rk(cli_ctx *c, int rc, const char *what)
{
    const char *msg = rk_last_error();
    cli_die(c, "%s: %s", what, msg && msg[0] ? msg : rk_strerror(rc));
}

void cli_defer(cli_ctx *c, void (*fn)(void *), void *p)
{
    if (c->ndefer == CLI_MAXDEFER) {
        fn(p);   /* cannot happen with the fixed commands; do not leak if it does */
        cli_die(c, "internal error: too many resources (raise CLI_MAXDEFER)");
    }
    c->defer[c->ndefer].fn = fn;
    c->defer[c->ndefer].p = p;
    c->ndefer++;
}

static void free_array(void *p) { rk_array_free(p); }
static void free_rope(void *p) { rk_rope_destroy(p); }
static void free_attn(void *p) { rk_attn_destroy(p); }
void cli_defer_array(cli_ctx *c, rk_array *a) { cli_defer(c, free_array, a); }
void cli_defer_rope(cli_ctx *c, rk_rope *r) { cli_defer(c, free_rope, r); }
void cli_defer_attn(cli_ctx *c, rk_attn *p) { cli_defer(c, free_attn, p); }

int cli_finish(cli_ctx *c)
{
    run_deferred(c);
    return 0;
}

/* ---- parsing --------------------------------------------------------------------------- */

static int find_opt(const cli_spec *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->nopts; i++)
        if (strlen(s->opts[i].name) == len && strncmp(s->opts[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

/* Index of a declared option; a name the command did not declare is a programming error. */
static int opt_index(const cli_ctx *c, const char *name)
{
    int k = find_opt(c->spec, name, strlen(name));
    if (k < 0) {
        fprintf(stderr, "ropekit %s: internal error: option --%s is not declared\n",
                c->spec->cmd, name);
        abort();
    }
    return k;
}

void cli_parse(cli_ctx *c, const cli_spec *spec, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    c->spec = spec;
    if (spec->nopts > CLI_MAXOPT) cli_die(c, "internal error: too many options");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cli_help(spec, stdout);
            if (cli_exit_hook) cli_exit_hook(0, NULL);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (a[0] == '-' && a[1] != '\0')
                cli_die(c, "unknown option '%s' (see 'ropekit %s --help')", a, spec->cmd);
            cli_die(c, "unexpected argument '%s' (options are --name value; see 'ropekit %s "
                    "--help')", a, spec->cmd);
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int k = find_opt(spec, name, len);
        if (k < 0)
            cli_die(c, "unknown option '--%.*s' (see 'ropekit %s --help')", (int)len, name,
                    spec->cmd);
        const cli_opt *o = &spec->opts[k];
        const char *val;
        if (!o->metavar) {
            if (eq) cli_die(c, "--%s is a flag and takes no value (got '%s')", o->name, a);
            val = "";
        } else if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            val = argv[++i];
        } else {
            cli_die(c, "--%s needs a value (%s)", o->name, o->metavar);
        }
        if (o->metavar && val[0] == '\0') cli_die(c, "--%s: empty value", o->name);
        if (c->val[k]) cli_die(c, "--%s given more than once", o->name);
        c->val[k] = val;
    }
}

void cli_help(const cli_spec *s, FILE *f)
{
    fprintf(f, "usage: ropekit %s %s\n\n%s\n\noptions:\n", s->cmd, s->synopsis, s->description);
    int w = 6;   /* "--help" */
    for (size_t i = 0; i < s->nopts; i++) {
        int n = 2 + (int)strlen(s->opts[i].name) +
                (s->opts[i].metavar ? 1 + (int)strlen(s->opts[i].metavar) : 0);
        if (n > w) w = n;
    }
    if (w > 30) w = 30;
    for (size_t i = 0; i <= s->nopts; i++) {
        char lhs[128];
        const char *help = "show this help and exit";
        if (i < s->nopts) {
            const cli_opt *o = &s->opts[i];
            snprintf(lhs, sizeof lhs, "--%s%s%s", o->name, o->metavar ? " " : "",
                     o->metavar ? o->metavar : "");
            help = o->help;
        } else {
            snprintf(lhs, sizeof lhs, "--help");
        }
        if ((int)strlen(lhs) > w) fprintf(f, "  %s\n  %*s  ", lhs, w, "");
        else fprintf(f, "  %-*s  ", w, lhs);
        /* Continuation lines of the help text line up under its first line. */
        for (const char *p = help; *p; p++) {
            fputc(*p, f);
            if (*p == '\n') fprintf(f, "  %*s  ", w, "");
        }
        fputc('\n', f);
    }
}

/* ---- reading options ------------------------------------------------------------------- */

const char *cli_get(const cli_ctx *c, const char *name) { return c->val[opt_index(c, name)]; }
int cli_flag(const cli_ctx *c, const char *name) { return cli_get(c, name) != NULL; }

const char *cli_required(cli_ctx *c, const char *name)
{
    const char *v = cli_get(c, name);
    if (!v) cli_die(c, "missing required option --%s (see 'ropekit %s --help')", name,
                    c->spec->cmd);
    return v;
}

double cli_double(cli_ctx *c, const char *label, const char *s)
{
    char *end;
    if (s[0] == '\0' || isspace((unsigned char)s[0]))
        cli_die(c, "%s: '%s' is not a number", label, s);
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || *end != '\0') cli_die(c, "%s: '%s' is not a number", label, s);
    if (isnan(x) || (isinf(x) && errno != ERANGE))
        cli_die(c, "%s: '%s' is not a finite number", label, s);
    if (errno == ERANGE && isinf(x)) cli_die(c, "%s: '%s' is out of range", label, s);
    return x;   /* an underflow (ERANGE, tiny result) is kept: it is the nearest double */
}

long long cli_integer(cli_ctx *c, const char *label, const char *s)
{
    char *end;
    if (s[0] == '\0' || isspace((unsigned char)s[0]))
        cli_die(c, "%s: '%s' is not an integer", label, s);
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end != '\0') cli_die(c, "%s: '%s' is not an integer", label, s);
    if (errno == ERANGE) cli_die(c, "%s: '%s' is out of range", label, s);
    return x;
}

double cli_get_double(cli_ctx *c, const char *name, double dflt, double lo, double hi,
                      int flags)
{
    const char *s = cli_get(c, name);
    if (!s) return dflt;
    char label[80];
    snprintf(label, sizeof label, "--%s", name);
    double x = cli_double(c, label, s);
    if ((flags & CLI_GT_LO) ? !(x > lo) : !(x >= lo))
        cli_die(c, "--%s %s must be %s %g", name, s, (flags & CLI_GT_LO) ? ">" : ">=", lo);
    if ((flags & CLI_LT_HI) ? !(x < hi) : !(x <= hi))
        cli_die(c, "--%s %s must be %s %g", name, s, (flags & CLI_LT_HI) ? "<" : "<=", hi);
    return x;
}

long long cli_get_integer(cli_ctx *c, const char *name, long long dflt, long long lo,
                          long long hi)
{
    const char *s = cli_get(c, name);
    if (!s) return dflt;
    char label[80];
    snprintf(label, sizeof label, "--%s", name);
    long long x = cli_integer(c, label, s);
    if (x < lo) cli_die(c, "--%s %s must be >= %lld", name, s, lo);
    if (x > hi) cli_die(c, "--%s %s must be <= %lld", name, s, hi);
    return x;
}

int cli_get_choice(cli_ctx *c, const char *name, const char *noun, const char *const *choices,
                   int dflt)
{
    const char *s = cli_get(c, name);
    if (!s) return dflt;
    for (int i = 0; choices[i]; i++)
        if (strcmp(s, choices[i]) == 0) return i;
    char list[256] = "";
    for (int i = 0; choices[i]; i++) {
        size_t n = strlen(list);
        snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", choices[i]);
    }
    cli_die(c, "unknown %s '%s' (expected: %s)", noun, s, list);
}

/* ---- arrays ---------------------------------------------------------------------------- */

const char *cli_dtype_name(rk_dtype t)
{
    return t == RK_F32 ? "float32" : t == RK_F64 ? "float64" : "unknown dtype";
}

const char *cli_shape_str(const rk_array *a, char *buf, size_t len)
{
    size_t n = 0;
    n += (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < a->ndim && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%zu", i ? ", " : "", a->shape[i]);
    if (n < len) snprintf(buf + n, len - n, a->ndim == 1 ? ",)" : ")");
    return buf;
}

void cli_load_npy(cli_ctx *c, const char *opt, rk_array *a)
{
    const char *path = cli_required(c, opt);
    memset(a, 0, sizeof *a);
    int rc = rk_npy_load(path, a);
    if (rc) {
        const char *msg = rk_last_error();
        if (!msg[0]) msg = rk_strerror(rc);
        /* The reason should name the file; add it if the library's message does not. */
        if (strstr(msg, path)) cli_die(c, "--%s: %s", opt, msg);
        cli_die(c, "--%s: '%s': %s", opt, path, msg);
    }
    cli_defer_array(c, a);
    if (c->nin < CLI_MAXFILES) {
        c->in_opt[c->nin] = opt;
        c->in_path[c->nin++] = path;
    }
}

void cli_check_finite(cli_ctx *c, const char *opt, const rk_array *a)
{
    int k = find_opt(c->spec, "allow-nonfinite", strlen("allow-nonfinite"));
    if (k >= 0 && c->val[k]) return;
    const char *path = cli_get(c, opt);
    char name[512];
    snprintf(name, sizeof name, "%s", path ? path : opt);
    int rc = rk_array_check_finite(a, name);
    if (rc) {
        const char *msg = rk_last_error();
        cli_die(c, "--%s: %s%s", opt, msg[0] ? msg : rk_strerror(rc),
                k >= 0 ? " (--allow-nonfinite accepts it)" : "");
    }
}

/* "--opt: <message naming path>" from the library's last error. */
static _Noreturn void die_file(cli_ctx *c, const char *opt, const char *path, int rc)
{
    const char *msg = rk_last_error();
    if (!msg[0]) msg = rk_strerror(rc);
    if (strstr(msg, path)) cli_die(c, "--%s: %s", opt, msg);
    cli_die(c, "--%s: '%s': %s", opt, path, msg);
}

void cli_stage_npy(cli_ctx *c, const char *opt, const rk_array *a)
{
    const char *path = cli_required(c, opt);
    for (size_t i = 0; i < c->nin; i++)
        if (rk__same_file(path, c->in_path[i]))
            cli_die(c, "--%s and --%s name the same file '%s' (an output never replaces an "
                    "input)", opt, c->in_opt[i], path);
    for (size_t i = 0; i < c->nouts; i++)
        if (strcmp(path, c->outs[i].path) == 0 || rk__same_file(path, c->outs[i].path))
            cli_die(c, "--%s and --%s name the same file '%s'", c->outs[i].opt, opt, path);
    if (c->nouts == CLI_MAXFILES) cli_die(c, "--%s: more than %d outputs", opt, CLI_MAXFILES);
    cli_output *o = &c->outs[c->nouts];
    int rc = rk__npy_open(&o->out, path);
    if (rc) die_file(c, opt, path, rc);
    o->opt = opt;
    o->path = path;
    c->nouts++;
    if ((rc = rk__npy_write(&o->out, path, a))) {
        c->nouts--;                     /* rk__npy_write dropped it */
        die_file(c, opt, path, rc);
    }
}

void cli_commit_outputs(cli_ctx *c)
{
    for (size_t i = 0; i < c->nouts; i++) {
        int rc = rk__npy_commit(&c->outs[i].out, c->outs[i].path);
        if (rc) {
            /* the rest stay uncommitted: run_deferred drops them */
            cli_output failed = c->outs[i];
            memmove(c->outs, c->outs + i + 1, (c->nouts - i - 1) * sizeof *c->outs);
            c->nouts -= i + 1;
            die_file(c, failed.opt, failed.path, rc);
        }
    }
    c->nouts = 0;
}

void cli_save_npy(cli_ctx *c, const char *opt, const rk_array *a)
{
    cli_stage_npy(c, opt, a);
    cli_commit_outputs(c);
}

void cli_convert(cli_ctx *c, const rk_array *src, rk_dtype to, rk_array *dst)
{
    memset(dst, 0, sizeof *dst);
    int rc = rk_array_alloc(dst, to, src->ndim, src->shape);
    if (rc) cli_die_rk(c, rc, "cannot allocate a converted copy");
    cli_defer_array(c, dst);
    size_t n = src->count;
    if (src->dtype == to) {
        memcpy(dst->data, src->data, n * (to == RK_F32 ? sizeof(float) : sizeof(double)));
    } else if (to == RK_F64) {
        const float *s = src->data;
        double *d = dst->data;
        for (size_t i = 0; i < n; i++) d[i] = s[i];
    } else {
        const double *s = src->data;
        float *d = dst->data;
        for (size_t i = 0; i < n; i++) d[i] = (float)s[i];
    }
}

/* ---- RoPE options ---------------------------------------------------------------------- */

/* The --scaling specs: name, scaling, number of ':' fields (min, max), and for messages what
 * the fields are and an example. */
static const struct {
    const char     *name;
    rk_rope_scaling sc;
    int             min, max;
    const char     *fields, *example;
} scaling_specs[] = {
    { "none", RK_SCALE_NONE, 0, 0, "no value", "none" },
    { "linear", RK_SCALE_LINEAR, 1, 1, "one field, the factor F", "linear:4" },
    { "ntk", RK_SCALE_NTK, 1, 1, "one field, the factor F", "ntk:4" },
    { "dynamic", RK_SCALE_DYNAMIC, 2, 2, "two fields, factor F and max_position_embeddings M",
      "dynamic:2:4096" },
    { "yarn", RK_SCALE_YARN, 2, 2, "two fields, factor F and original context L",
      "yarn:8:4096" },
    { "yarn-paper", RK_SCALE_YARN_PAPER, 2, 2, "two fields, factor F and original context L",
      "yarn-paper:8:4096" },
    { "llama3", RK_SCALE_LLAMA3, 2, 4, "two or four fields, factor F, original context L and "
      "optionally low_freq_factor LO and high_freq_factor HI", "llama3:8:8192:1:4" },
};
#define N_SCALING_SPECS (sizeof scaling_specs / sizeof scaling_specs[0])

/* A field of spec s that must be a number > 0. */
static double spec_field(cli_ctx *c, const char *opt, const char *s, const char *what,
                         const char *field)
{
    char label[96];
    snprintf(label, sizeof label, "%s %s", opt, what);
    double v = cli_double(c, label, field);
    if (!(v > 0)) cli_die(c, "%s '%s': %s %s must be > 0", opt, s, what, field);
    return v;
}

void cli_parse_scaling(cli_ctx *c, const char *opt, const char *s, rk_rope_config *rc)
{
    char buf[128];
    if (strlen(s) >= sizeof buf) cli_die(c, "%s: value '%.20s...' is too long", opt, s);
    strcpy(buf, s);
    char *field[6];
    int nf = 0;
    for (char *p = buf;;) {
        if (nf == 6) cli_die(c, "%s '%s': too many ':' fields", opt, s);
        field[nf++] = p;
        char *colon = strchr(p, ':');
        if (!colon) break;
        *colon = '\0';
        p = colon + 1;
    }
    size_t k = 0;
    while (k < N_SCALING_SPECS && strcmp(field[0], scaling_specs[k].name) != 0) k++;
    if (k == N_SCALING_SPECS)
        cli_die(c, "%s '%s': unknown scaling (expected none, linear:F, ntk:F, dynamic:F:M, "
                "yarn:F:L, yarn-paper:F:L or llama3:F:L[:LO:HI]; longrope comes from "
                "--rope-config)", opt, s);
    int nv = nf - 1;
    if (nv < scaling_specs[k].min || nv > scaling_specs[k].max ||
        (scaling_specs[k].sc == RK_SCALE_LLAMA3 && nv == 3))
        cli_die(c, "%s '%s': %s takes %s (e.g. %s)", opt, s, field[0], scaling_specs[k].fields,
                scaling_specs[k].example);
    rk_rope_scaling sc = scaling_specs[k].sc;
    rc->scaling = sc;
    if (nv == 0) return;
    char label[96];
    snprintf(label, sizeof label, "%s factor", opt);
    rc->factor = cli_double(c, label, field[1]);
    if (!(rc->factor > 0)) cli_die(c, "%s '%s': factor %s must be > 0", opt, s, field[1]);
    if (sc == RK_SCALE_DYNAMIC)
        rc->max_pos = spec_field(c, opt, s, "max_position_embeddings", field[2]);
    else if (nv >= 2)
        rc->orig_ctx = spec_field(c, opt, s, "original context", field[2]);
    if (nv == 4) {
        rc->low_freq_factor = spec_field(c, opt, s, "low_freq_factor", field[3]);
        rc->high_freq_factor = spec_field(c, opt, s, "high_freq_factor", field[4]);
        if (!(rc->high_freq_factor > rc->low_freq_factor))
            cli_die(c, "%s '%s': high_freq_factor %s must exceed low_freq_factor %s", opt, s,
                    field[4], field[3]);
    }
}

int cli_rope_len_dependent(rk_rope_scaling s)
{
    return s == RK_SCALE_DYNAMIC || s == RK_SCALE_LONGROPE;
}

static void free_hf(void *p)
{
    rk_rope_hf_free(p);
    free(p);
}

int cli_rope_config(cli_ctx *c, rk_rope_config *rc)
{
    static const char *const styles[] = { "interleaved", "half", NULL };
    memset(rc, 0, sizeof *rc);
    int any = cli_flag(c, "style") || cli_flag(c, "base") || cli_flag(c, "rotary-dim") ||
              cli_flag(c, "scaling") || cli_flag(c, "rope-config") || cli_flag(c, "seq-len");
    int style = cli_get_choice(c, "style", "style", styles, -1);
    const char *file = cli_get(c, "rope-config");
    if (file) {
        static const char *const clash[][2] = { { "base", "rope_theta" },
                                                { "rotary-dim", "partial_rotary_factor" },
                                                { "scaling", "rope_scaling / rope_parameters" } };
        for (size_t i = 0; i < sizeof clash / sizeof clash[0]; i++)
            if (cli_flag(c, clash[i][0]))
                cli_die(c, "--%s conflicts with --rope-config (the file gives %s)", clash[i][0],
                        clash[i][1]);
        rk_rope_hf *h = calloc(1, sizeof *h);
        if (!h) cli_die(c, "out of memory");
        int err = rk_rope_hf_load(h, file);
        if (err) {
            free(h);
            const char *msg = rk_last_error();
            cli_die(c, "--rope-config: %s", msg[0] ? msg : rk_strerror(err));
        }
        cli_defer(c, free_hf, h);
        *rc = h->cfg;
    } else {
        rc->base = cli_get_double(c, "base", 10000.0, 0.0, INFINITY, CLI_GT_LO);
        if (rc->base == 1.0)
            cli_die(c, "--base 1: the base must be != 1 (every theta_i would be 1)");
        long long r = cli_get_integer(c, "rotary-dim", 0, 2, (long long)INT32_MAX);
        if (r % 2) cli_die(c, "--rotary-dim %lld must be even", r);
        rc->rotary_dim = (size_t)r;
        const char *s = cli_get(c, "scaling");
        if (s) cli_parse_scaling(c, "--scaling", s, rc);
    }
    if (style >= 0) rc->style = style == 1 ? RK_ROPE_HALF : RK_ROPE_INTERLEAVED;
    long long n = cli_get_integer(c, "seq-len", 0, 1, INT64_MAX);
    if (n) {
        if (!cli_rope_len_dependent(rc->scaling))
            cli_die(c, "--seq-len has no effect with scaling %s (only dynamic and longrope "
                    "depend on the length)", rk_rope_scaling_name(rc->scaling));
        rc->seq_len = (size_t)n;
    }
    return any;
}

void cli_rope_default_seq_len(cli_ctx *c, rk_rope_config *rc, uint64_t len)
{
    if (cli_flag(c, "seq-len") || !cli_rope_len_dependent(rc->scaling)) return;
    rc->seq_len = len > SIZE_MAX ? SIZE_MAX : (size_t)len;
}

void cli_check_rope_dim(cli_ctx *c, const rk_rope_config *rc, size_t d, const char *what)
{
    if (rc->dim && rc->dim != d)
        cli_die(c, "%s has d = %zu, but --rope-config gives a head width of %zu", what, d,
                rc->dim);
    if (rc->rotary_dim > d)
        cli_die(c, "--rotary-dim %zu exceeds d = %zu of %s", rc->rotary_dim, d, what);
    if (rc->rotary_dim == 0 && d % 2)
        cli_die(c, "%s has odd d = %zu: RoPE rotates pairs of channels (give an even "
                "--rotary-dim < d to rotate only part of each row)", what, d);
    if ((rc->scaling == RK_SCALE_NTK || rc->scaling == RK_SCALE_DYNAMIC) &&
        (rc->rotary_dim ? rc->rotary_dim : d) <= 2)
        cli_die(c, "--scaling %s needs a rotary dimension > 2 (base' = base * k^(r/(r-2)))",
                rk_rope_scaling_name(rc->scaling));
}

size_t cli_split_list(cli_ctx *c, const char *opt, char *s, char **item, size_t max)
{
    size_t n = 0;
    for (char *p = s;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        if (!*p) cli_die(c, "--%s: empty item in the list", opt);
        if (n == max) cli_die(c, "--%s: more than %zu items", opt, max);
        item[n++] = p;
        if (!comma) break;
        p = comma + 1;
    }
    return n;
}
