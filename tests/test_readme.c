/* Every ```c block of README.md compiles cleanly against lib/ropekit.h with the project's warning
 * flags (-Wall -Wextra -Werror and the rest of the Makefile's WARN): the README is read when
 * the test runs, so snippets edited later are checked too.
 *
 * A block is usually a fragment: its #include lines go to the top, the rest becomes the body of
 * `int snippet(...)` ending in `return 0;` (after <stdio.h>, <stdlib.h>, <string.h> and
 * "ropekit.h"; diagnostics name README.md and its line numbers). Variables
 * a fragment uses without declaring them (the compiler names them: "'n' undeclared") become
 * parameters of that function, with the types listed in `known` below; an undeclared name not
 * in the list fails the test, naming it (parameters are neither uninitialised nor unused), and
 * unused results, unused variables or wrong types all fail.
 * The harness is itself checked: a fragment that ignores rk_rope_create's result must fail. */
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef RK_TESTS_DIR
#  define RK_TESTS_DIR "tests"
#endif

/* The Makefile's WARN (and -std=c11 -O2, which some warnings need). */
#define FLAGS "-std=c11 -O2 -Wall -Wextra -Werror -Wpedantic -Wshadow -Wstrict-prototypes " \
              "-Wmissing-prototypes -Wvla -Wformat=2 -Wno-format-nonliteral " \
              "-D_POSIX_C_SOURCE=200809L"

/* Types of the free variables README fragments use. */
static const struct { const char *name, *type; } known[] = {
    { "n", "size_t" }, { "C", "size_t" }, { "T", "size_t" }, { "d", "size_t" },
    { "qkv", "float *" }, { "out", "float *" }, { "buf", "float *" },
    { "x", "rk_mat" }, { "y", "rk_mat" }, { "q", "rk_mat" }, { "k", "rk_mat" }, { "v", "rk_mat" },
    { "xd", "rk_matd" }, { "pos", "const int64_t *" }, { "seed", "unsigned long" },
};
#define NKNOWN (sizeof known / sizeof known[0])

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap + 1);
    size_t got;
    while (s && (got = fread(s + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            char *t = realloc(s, 2 * cap + 1);
            if (!t) { free(s); s = NULL; break; }
            s = t;
            cap *= 2;
        }
    }
    fclose(f);
    if (s) s[len] = '\0';
    return s;
}

/* The ```c blocks of text, each a malloc'ed string, into blocks[]; returns how many. */
static size_t c_blocks(const char *text, char **blocks, size_t max, size_t *lines)
{
    size_t nb = 0, line = 1;
    const char *p = text;
    while (*p && nb < max) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len == 4 && strncmp(p, "```c", 4) == 0) {
            const char *start = eol ? eol + 1 : p + len, *q = start, *end = NULL;
            size_t startline = line + 1;
            while (*q) {
                const char *e = strchr(q, '\n');
                size_t l = e ? (size_t)(e - q) : strlen(q);
                if (l >= 3 && strncmp(q, "```", 3) == 0) { end = q; break; }
                q = e ? e + 1 : q + l;
            }
            if (!end) break;
            blocks[nb] = malloc((size_t)(end - start) + 1);
            assert_non_null(blocks[nb]);
            memcpy(blocks[nb], start, (size_t)(end - start));
            blocks[nb][end - start] = '\0';
            lines[nb++] = startline;
            for (const char *c = p; c < end; c++) line += *c == '\n';
            p = end;
            continue;
        }
        line++;
        p = eol ? eol + 1 : p + len;
    }
    return nb;
}

typedef struct {
    char dir[64];
    char msg[4096];          /* the compiler's output of the last attempt */
    char params[1024];       /* the parameters added so far                */
} harness;

/* Compile block as described at the top; 0 if it compiles cleanly. */
static int compile_once(harness *h, const char *block, int idx, size_t line)
{
    char src[128], log[128], cmd[1024];
    snprintf(src, sizeof src, "%s/snippet%d.c", h->dir, idx);
    snprintf(log, sizeof log, "%s/snippet%d.log", h->dir, idx);
    FILE *f = fopen(src, "w");
    assert_non_null(f);
    fputs("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include \"ropekit.h\"\n", f);
    /* the block's #include lines first, in order */
    for (const char *p = block; *p;) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l > 8 && strncmp(p, "#include", 8) == 0) fprintf(f, "%.*s\n", (int)l, p);
        p = e ? e + 1 : p + l;
    }
    const char *params = h->params[0] ? h->params : "void";
    /* diagnostics point into README.md itself */
    fprintf(f, "int snippet%d(%s);\nint snippet%d(%s)\n{\n#line %zu \"README.md\"\n", idx, params,
            idx, params, line);
    for (const char *p = block; *p;) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l > 8 && strncmp(p, "#include", 8) == 0) fputs("\n", f);
        else fprintf(f, "%.*s\n", (int)l, p);
        p = e ? e + 1 : p + l;
    }
    fputs("    return 0;\n}\n", f);
    assert_int_equal(fclose(f), 0);
    const char *cc = getenv("CC");
    snprintf(cmd, sizeof cmd, "LC_ALL=C %s %s -I'%s/../lib' -c '%s' -o /dev/null > '%s' 2>&1",
             cc && *cc ? cc : "cc", FLAGS, RK_TESTS_DIR, src, log);
    int st = system(cmd);
    char *out = slurp(log);
    snprintf(h->msg, sizeof h->msg, "%s", out ? out : "(no compiler output)");
    free(out);
    /* clean means status 0 and not a single diagnostic */
    return st == 0 && h->msg[0] == '\0' ? 0 : 1;
}

/* Compile, turning the undeclared names the compiler reports into parameters. 0: clean. */
static int compile_block(harness *h, const char *block, int idx, size_t line, char *unknown,
                         size_t ulen)
{
    h->params[0] = '\0';
    unknown[0] = '\0';
    for (int round = 0; round < 16; round++) {
        if (compile_once(h, block, idx, line) == 0) return 0;
        int added = 0;
        for (const char *p = h->msg; (p = strstr(p, "error: '")) != NULL; p++) {
            const char *name = p + 8, *q = strchr(name, '\'');
            if (!q || strncmp(q, "' undeclared", 12) != 0) continue;
            char nm[64];
            snprintf(nm, sizeof nm, "%.*s", (int)(q - name), name);
            size_t i;
            for (i = 0; i < NKNOWN; i++) if (strcmp(known[i].name, nm) == 0) break;
            if (i == NKNOWN) { snprintf(unknown, ulen, "%s", nm); return 1; }
            char decl[96];
            snprintf(decl, sizeof decl, "%s%s%s", known[i].type,
                     known[i].type[strlen(known[i].type) - 1] == '*' ? "" : " ", nm);
            if (strstr(h->params, decl)) continue;     /* reported twice */
            size_t len = strlen(h->params);
            snprintf(h->params + len, sizeof h->params - len, "%s%s", len ? ", " : "", decl);
            added = 1;
        }
        if (!added) return 1;
    }
    return 1;
}

static void make_dir(harness *h)
{
    snprintf(h->dir, sizeof h->dir, "/tmp/rk_readme_XXXXXX");
    assert_non_null(mkdtemp(h->dir));
}

static void remove_dir(harness *h)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", h->dir);
    assert_int_equal(system(cmd), 0);
}

static void test_readme_snippets_compile(void **state)
{
    (void)state;
    char *text = slurp(RK_TESTS_DIR "/../README.md");
    if (!text) fail_msg("cannot read %s/../README.md", RK_TESTS_DIR);
    char *blocks[32];
    size_t lines[32];
    size_t nb = c_blocks(text, blocks, 32, lines);
    free(text);
    if (nb == 0) fail_msg("README.md has no ```c block: nothing to compile (the extraction broke?)");
    harness h;
    make_dir(&h);
    int bad = 0;
    for (size_t b = 0; b < nb; b++) {
        char unknown[64];
        if (compile_block(&h, blocks[b], (int)b + 1, lines[b], unknown, sizeof unknown)) {
            bad++;
            if (unknown[0])
                print_error("README.md ```c block at line %zu uses '%s', which is neither declared "
                            "nor in tests/test_readme.c's list of known variables\n", lines[b], unknown);
            else
                print_error("README.md ```c block at line %zu does not compile cleanly (parameters "
                            "added: %s):\n%s\n", lines[b], h.params[0] ? h.params : "none", h.msg);
        }
        free(blocks[b]);
    }
    remove_dir(&h);
    if (bad) fail_msg("%d of %zu README.md C snippets do not compile cleanly", bad, nb);
}

/* The harness must catch what it is for: an ignored RK_NODISCARD result, an unused variable,
 * a name it does not know; and pass a clean fragment. */
static void test_harness_catches_warnings(void **state)
{
    (void)state;
    harness h;
    char unknown[64];
    make_dir(&h);
    const char *ignored = "#include \"ropekit.h\"\nrk_rope *r;\nrk_rope_config rc = { .dim = 64 };\n"
                          "rk_rope_create(&r, &rc);\nrk_rope_destroy(r);\n";
    assert_int_equal(compile_block(&h, ignored, 1, 1, unknown, sizeof unknown), 1);
    if (!strstr(h.msg, "warn_unused_result") && !strstr(h.msg, "unused-result"))
        fail_msg("an ignored rk_rope_create result was not reported:\n%s", h.msg);
    const char *unused = "#include \"ropekit.h\"\nrk_mat o = rk_mat_view(out, n, 4, 4);\n";
    assert_int_equal(compile_block(&h, unused, 2, 1, unknown, sizeof unknown), 1);
    assert_non_null(strstr(h.msg, "unused variable"));
    const char *stranger = "#include \"ropekit.h\"\nrk_mat o = rk_mat_view(mystery, 2, 4, 4);\n"
                           "(void)o;\n";
    assert_int_equal(compile_block(&h, stranger, 3, 1, unknown, sizeof unknown), 1);
    assert_string_equal(unknown, "mystery");
    const char *clean = "#include \"ropekit.h\"\nrk_rope *r;\nrk_rope_config rc = { .dim = 64 };\n"
                        "if (rk_rope_create(&r, &rc) != RK_OK) return 1;\n"
                        "int err = rk_rope_apply(r, &x, &x, 0, NULL, 0);\nrk_rope_destroy(r);\n"
                        "if (err != RK_OK) return 1;\n";
    if (compile_block(&h, clean, 4, 1, unknown, sizeof unknown))
        fail_msg("a clean fragment failed (unknown '%s'):\n%s", unknown, h.msg);
    assert_string_equal(h.params, "rk_mat x");
    remove_dir(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_harness_catches_warnings),
        cmocka_unit_test(test_readme_snippets_compile),
    };
    return cmocka_run_group_tests_name("readme", tests, NULL, NULL);
}
