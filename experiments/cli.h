/* The `ropekit` command line: the subcommand list and the helpers every subcommand shares.
 *
 * A subcommand is a file experiments/cmd_<name>.c defining `int cmd_<name>(int argc, char **argv)`
 * (argv[0] is the subcommand's name) plus one line in RK_CLI_COMMANDS below. It declares its
 * options in a table, parses them with cli_parse, reads typed values with the cli_get_* helpers
 * and reports every problem with cli_die (one line "ropekit <cmd>: <problem>" on stderr, exit 2).
 * Resources taken through the context (cli_load_npy, cli_defer) are released by cli_die and by
 * cli_finish, so a command can die anywhere without leaking (clean under LeakSanitizer).
 * Such objects (the rk_array structs themselves) must live until cli_finish: declare them at
 * the command function's top scope, never inside a block.
 *
 *   static const cli_opt opts[] = { { "in", "FILE", "input array (.npy)" }, ... };
 *   static const cli_spec spec = { "rope", "--in X.npy --out Y.npy [options]", "...", opts, 2 };
 *   cli_ctx c;  cli_parse(&c, &spec, argc, argv);           // --help: prints, exits 0
 *   double base = cli_get_double(&c, "base", 10000.0, 0.0, INFINITY, CLI_GT_LO);
 *   rk_array x = { 0 };  cli_load_npy(&c, "in", &x);          // freed by cli_die / cli_finish
 *   ...
 *   return cli_finish(&c);                                    // 0
 *
 * Exit status: 0 success, 2 any error (bad usage, bad input, library failure). 1 is left
 * free for subcommands that report a negative result (a check that did not pass).
 */
#ifndef RK_CLI_H
#define RK_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ropekit.h"
#include "rk_file.h"

/* ---- the subcommands: X(name, one-line summary); add a line here and a cmd_<name>.c ---- */
#define RK_CLI_COMMANDS(X)                                                                  \
    X(rope,   "rotate (or un-rotate) the rows of a .npy array with RoPE")                      \
    X(attend, "attention over .npy Q, K, V: softmax, performer (FAVOR+) or linear; RoPE")    \
    X(theory, "the paper's theory as runnable checks (eqs. 11-19, 34-37, FAVOR+), PASS/FAIL")  \
    X(decay,  "long-term decay: Figure 2's bound and the scores of random q, k per distance") \
    X(scaling, "time and memory against sequence length per variant; fitted exponents")      \
    X(approx, "error of FAVOR+ against exact softmax vs features, kernel and input norm") \
    X(pattern, "attention score and weight vs distance per position encoding; shift test")  \
    X(train,  "train a byte-level transformer LM; --compare: Figure 3 (right) with error bars")

#define RK_CLI_DECLARE(name, summary) int cmd_##name(int argc, char **argv);
RK_CLI_COMMANDS(RK_CLI_DECLARE)
#undef RK_CLI_DECLARE

#define CLI_EXIT_ERROR 2

/* ---- option tables --------------------------------------------------------------------- */
typedef struct {
    const char *name;      /* without the leading "--"                                        */
    const char *metavar;   /* value placeholder for --help ("FILE", "N"); NULL: a flag         */
    const char *help;      /* one line (may contain '\n' + indentation for a second line)     */
} cli_opt;

typedef struct {
    const char    *cmd;         /* "rope"                                                     */
    const char    *synopsis;    /* after "usage: ropekit <cmd> "                              */
    const char    *description; /* a paragraph, printed under the synopsis                   */
    const cli_opt *opts;
    size_t         nopts;
} cli_spec;

#define CLI_MAXOPT   48
#define CLI_MAXDEFER 32
#define CLI_MAXFILES 8      /* .npy inputs and outputs of one run */

typedef struct {
    void (*fn)(void *);
    void *p;
} cli_deferred;

/* An output of the run, written to its temporary file and renamed into place only by
 * cli_commit_outputs, after every output was written. */
typedef struct {
    const char *opt, *path;
    rk__out     out;
} cli_output;

typedef struct {
    const cli_spec *spec;
    const char     *val[CLI_MAXOPT];   /* value of option i (argv storage), "" for a set flag */
    cli_deferred    defer[CLI_MAXDEFER];
    size_t          ndefer;
    const char     *in_opt[CLI_MAXFILES], *in_path[CLI_MAXFILES];   /* .npy inputs read */
    size_t          nin;
    cli_output      outs[CLI_MAXFILES];                              /* pending outputs  */
    size_t          nouts;
} cli_ctx;

/* Parse argv[1..argc-1] against spec (argv[0] is the subcommand name). Accepts "--name value",
 * "--name=value" and "--name" for flags; "--help" / "-h" prints the help on stdout and exits 0.
 * An unknown option, a missing value, a value given to a flag, a repeated option or a stray
 * argument is an error (exit 2). A value taken from the next argument may start with '-'
 * ("--offset -3") but not with "--" (then the value is missing; write --name=--x). */
void cli_parse(cli_ctx *c, const cli_spec *spec, int argc, char **argv);
void cli_help(const cli_spec *spec, FILE *f);
/* Split the comma list s of option --opt in place into at most max items (item[] points into
 * s); dies on an empty item or too many items. Returns the count. */
size_t cli_split_list(cli_ctx *c, const char *opt, char *s, char **item, size_t max);

/* Print "ropekit <cmd>: <message>" on stderr, run the deferred cleanups, exit 2. */
_Noreturn void cli_die(cli_ctx *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* A library failure: "ropekit <cmd>: <what>: <rk_last_error()>" (or the code's name). */
_Noreturn void cli_die_rk(cli_ctx *c, int rc, const char *what);

/* Harness hook (tests/fuzz/fuzz_cli.c), NULL in the command line, where nothing changes. When
 * set, cli_die runs the deferred cleanups and calls hook(2, message) instead of printing and
 * exiting (message: the one line after "ropekit <cmd>: ", without the newline), and --help
 * prints its text, then calls hook(0, NULL). The hook must not return (it longjmps back to the
 * harness); if it does, the process exits with the status as it would have. */
typedef void (*cli_exit_fn)(int status, const char *message);
extern cli_exit_fn cli_exit_hook;

/* Register fn(p) to run (last in, first out) at cli_die / cli_finish. */
void cli_defer(cli_ctx *c, void (*fn)(void *), void *p);
void cli_defer_array(cli_ctx *c, rk_array *a);   /* rk_array_free(a) */
void cli_defer_rope(cli_ctx *c, rk_rope *r);     /* rk_rope_destroy(r) */
void cli_defer_attn(cli_ctx *c, rk_attn *p);     /* rk_attn_destroy(p) */
int  cli_finish(cli_ctx *c);                     /* runs the cleanups; returns 0 */

/* ---- reading options ------------------------------------------------------------------- */
const char *cli_get(const cli_ctx *c, const char *name);       /* value or NULL if absent */
int         cli_flag(const cli_ctx *c, const char *name);      /* 1 if given */
const char *cli_required(cli_ctx *c, const char *name);        /* dies if absent */

/* Strict numbers: the whole string is consumed, no leading blanks, finite, in range.
 * `label` names the value in messages ("--base", "--scaling factor"). */
double    cli_double(cli_ctx *c, const char *label, const char *s);
long long cli_integer(cli_ctx *c, const char *label, const char *s);

/* Range flags for cli_get_double: a bound is inclusive unless its flag is set. */
enum { CLI_GT_LO = 1, CLI_LT_HI = 2 };
/* The option's value (dflt if absent), checked to lie in [lo, hi] (see flags). */
double    cli_get_double(cli_ctx *c, const char *name, double dflt, double lo, double hi,
                         int flags);
long long cli_get_integer(cli_ctx *c, const char *name, long long dflt, long long lo,
                          long long hi);
/* The option's value must be one of the NULL-terminated `choices`; returns its index, or
 * dflt if the option is absent. Otherwise: "unknown <noun> 'x' (expected: a, b)"; the noun should
 * make the option plain ("variant", "--rope mode"). */
int cli_get_choice(cli_ctx *c, const char *name, const char *noun, const char *const *choices,
                   int dflt);

/* ---- arrays ---------------------------------------------------------------------------- */
/* Load the .npy file named by required option `opt` into *a (freed by cli_die/cli_finish).
 * Failure: "ropekit <cmd>: --<opt>: <reason>" (the reason names the file). */
void cli_load_npy(cli_ctx *c, const char *opt, rk_array *a);
/* Unless --allow-nonfinite was given (when the command has it): die if a has NaN or Inf,
 * naming the option, the file and the first bad index. */
void cli_check_finite(cli_ctx *c, const char *opt, const rk_array *a);
/* Write *a to the file named by option `opt` (atomic: temp file + rename; a device or FIFO is
 * written directly; a symbolic link is followed). An output that is the same file as an input
 * read so far, or as another output, is refused naming both options. */
void cli_save_npy(cli_ctx *c, const char *opt, const rk_array *a);
/* The same for a run with several outputs: cli_stage_npy writes *a to its temporary file now
 * (checks as above), cli_commit_outputs renames every staged output into place once all were
 * written (a failure before that leaves none of them; cli_die drops them). */
void cli_stage_npy(cli_ctx *c, const char *opt, const rk_array *a);
void cli_commit_outputs(cli_ctx *c);
/* "(2, 5, 8)" into buf. */
const char *cli_shape_str(const rk_array *a, char *buf, size_t len);
const char *cli_dtype_name(rk_dtype t);
/* A copy of `src` converted to dtype `to` (registered for cleanup). */
void cli_convert(cli_ctx *c, const rk_array *src, rk_dtype to, rk_array *dst);

/* ---- RoPE options shared by subcommands ------------------------------------------------- */
/* --style, --base, --rotary-dim, --scaling, --rope-config, --seq-len (the dimension is left 0
 * for the caller, unless --rope-config gives the head width). The table entries to put in a
 * command's option list: */
#define CLI_ROPE_OPTS                                                                         \
    { "style", "interleaved|half", "pairing: (x[2i], x[2i+1]) RoFormer/GPT-J (default), or\n" \
      "(x[i], x[i + r/2]) GPT-NeoX/LLaMA; --rope-config: the model's" },                       \
    { "base", "B", "frequency base, theta_i = B^(-2i/r) (default 10000)" },                       \
    { "rotary-dim", "R", "rotate only the first R channels (even, <= d; default d)" },          \
    { "scaling", "SPEC", CLI_SCALING_HELP },                                                    \
    { "rope-config", "FILE", "a model's RoPE from its Hugging Face config.json (rope_theta,\n" \
      "head width, partial_rotary_factor, rope_scaling or rope_parameters:\n"                  \
      "every HF rope type); instead of --base, --rotary-dim, --scaling" },                      \
    { "seq-len", "N", "sequence length of the length-dependent types (dynamic,\n"             \
      "longrope), HF's largest position + 1 (rope: default P + n; else\n"                       \
      "default none: HF's frequencies at initialisation)" }
#define CLI_SCALING_HELP                                                                      \
    "none | linear:F | ntk:F (static NTK) | dynamic:F:M | yarn:F:L (HF's)\n"                   \
    "| yarn-paper:F:L | llama3:F:L[:LO:HI]: factor F, original context L,\n"                   \
    "max_position_embeddings M (longrope: --rope-config)"
/* Fill *rc from those options; 1 if any of them was given. With --rope-config the file gives
 * rc->dim (its head width), rotary_dim, base, the scaling and style (--style overrides); its
 * arrays (longrope factors) stay valid until cli_finish / cli_die. --seq-len sets rc->seq_len
 * (it is refused with a scaling that does not depend on the length). */
int cli_rope_config(cli_ctx *c, rk_rope_config *rc);
/* Check that a RoPE of rc can act on rows of width d (rotary_dim <= d, d even when the whole
 * row rotates; d equal to the head width of a --rope-config file), naming `what` (e.g.
 * "--in x.npy") in the message. */
void cli_check_rope_dim(cli_ctx *c, const rk_rope_config *rc, size_t d, const char *what);
/* One --scaling SPEC (see CLI_SCALING_HELP) into rc's scaling fields; `opt` names the option
 * in messages ("--scaling"). Dies with "--opt 'SPEC': ..." on a bad spec. */
void cli_parse_scaling(cli_ctx *c, const char *opt, const char *spec, rk_rope_config *rc);
/* 1 for the scalings whose frequencies depend on the sequence length (dynamic, longrope). */
int cli_rope_len_dependent(rk_rope_scaling s);
/* Unless --seq-len was given: rc->seq_len = len (the command's own length, e.g. the largest
 * position + 1 of its rows) for a length-dependent scaling. */
void cli_rope_default_seq_len(cli_ctx *c, rk_rope_config *rc, uint64_t len);

#endif
