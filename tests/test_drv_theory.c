/* `ropekit theory` internals (experiments/theory.c) and its command line (cmd_theory, forked):
 * every check passes on the library's RoPE and on a naive correct one; every deliberate defect
 * of the rotation (wrong frequency, swapped sin sign, one-sided sign, wrong pairing in either
 * layout, float32 angle, a scale) FAILS exactly the checks whose statement it violates and
 * passes the others; the FAVOR+ feature-map defects likewise; results are deterministic in the
 * seed; the table and TSV are well formed; the exit status is 0 / 1 / 2. */
#include "check.h"
#include "../experiments/cli.h"
#include "../experiments/theory.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gsl/gsl_errno.h>

#define SEED   1
#define DRAWS  40
#define TRIALS 5000

/* Checks that do not involve the RoPE under test. */
static int rope_free(const char *id)
{
    return strncmp(id, "favor-", 6) == 0 || strcmp(id, "eq19-den") == 0;
}

static theory_config config(const theory_rope *r, theory_feat_mutant f)
{
    theory_config c = { .seed = SEED, .draws = DRAWS, .trials = TRIALS, .rope = r, .feat = f };
    return c;
}

static void run(size_t i, const theory_config *c, theory_result *res)
{
    int err = theory_run(i, c, res);
    if (err) fail_msg("%s: %s: %s", theory_checks[i].id, rk_strerror(err), rk_last_error());
}

/* The well-formedness every row must have. */
static void check_row(const theory_result *r)
{
    assert_non_null(r->id);
    assert_true(r->equation[0] && r->prec[0] && r->what[0] && r->why[0]);
    assert_true(strcmp(r->prec, "f64") == 0 || strcmp(r->prec, "f32") == 0);
    assert_true(isfinite(r->measured));
    if (r->cmp != THEORY_INFO) assert_true(isfinite(r->tol));
    if (r->cmp == THEORY_NEAR1 || r->cmp == THEORY_LE) assert_true(r->cmp == THEORY_NEAR1 || r->tol > 0);
}

static void all_pass(const theory_rope *rope, int skip_rope_free)
{
    theory_config c = config(rope, THEORY_FEAT_NONE);
    for (size_t i = 0; i < theory_ncheck; i++) {
        if (skip_rope_free && rope_free(theory_checks[i].id)) continue;
        theory_result r;
        run(i, &c, &r);
        check_row(&r);
        if (!r.pass)
            fail_msg("%s (%s) FAILED with rope %s: measured %.6g %s %.6g, violations %ld [%s]", r.id,
                     r.equation, rope->name, r.measured, theory_cmp_str(r.cmp), r.tol, r.violations,
                     r.detail);
    }
}

static void test_library_passes(void **state)
{
    (void)state;
    theory_rope lib;
    assert_rk_ok(theory_rope_library(&lib));
    all_pass(&lib, 0);
    theory_rope_free(&lib);
    theory_rope_free(&lib);                      /* idempotent */
}

static void test_naive_passes(void **state)
{
    (void)state;
    theory_rope naive;
    theory_rope_mutant(&naive, THEORY_MUT_NONE);
    all_pass(&naive, 1);
    theory_rope_free(&naive);                    /* no-op */
}

/* Which checks each defect must FAIL; every other RoPE check must PASS (a rotation keeps the
 * relative property, orthogonality and norms whatever its frequencies, sign or pairing). */
static const struct { theory_mutant m; const char *fails; } expect[] = {
    { THEORY_MUT_FREQ, "matrix complex abel bound eq19-linear-f64 eq19-linear-f32" },
    { THEORY_MUT_SIGN, "matrix complex abel eq19-linear-f64 eq19-linear-f32" },
    { THEORY_MUT_ONESIDED, "rel-f64-small rel-f64 rel-f32 matrix orth norm-f64 norm-f32 complex abel "
                           "bound eq19-shift eq19-linear-f64 eq19-linear-f32" },
    { THEORY_MUT_PAIR_INTER, "matrix complex abel bound layout-f64 layout-f32 eq19-linear-f64 "
                             "eq19-linear-f32" },
    { THEORY_MUT_PAIR_HALF, "layout-f64 layout-f32" },
    { THEORY_MUT_ANGLE32, "rel-f64-small rel-f64 rel-f32 matrix complex abel eq19-shift "
                          "eq19-linear-f64 eq19-linear-f32" },
    { THEORY_MUT_SCALE, "rel-f64-small rel-f64 rel-f32 matrix orth norm-f64 norm-f32 complex abel "
                        "bound eq19-linear-f64 eq19-linear-f32" },
};

static int listed(const char *list, const char *id)
{
    size_t n = strlen(id);
    for (const char *p = list; (p = strstr(p, id)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' ')) return 1;
    return 0;
}

static void test_rope_defects(void **state)
{
    (void)state;
    for (size_t e = 0; e < sizeof expect / sizeof expect[0]; e++) {
        theory_rope bad;
        theory_rope_mutant(&bad, expect[e].m);
        theory_config c = config(&bad, THEORY_FEAT_NONE);
        for (size_t i = 0; i < theory_ncheck; i++) {
            if (rope_free(theory_checks[i].id)) continue;
            theory_result r;
            run(i, &c, &r);
            check_row(&r);
            int want_fail = listed(expect[e].fails, r.id);
            if (r.cmp == THEORY_INFO) { assert_false(want_fail); continue; }
            if (want_fail == r.pass)
                fail_msg("defect '%s': check %s %s (measured %.6g %s %.6g, violations %ld), expected %s",
                         bad.name, r.id, r.pass ? "PASSED" : "FAILED", r.measured,
                         theory_cmp_str(r.cmp), r.tol, r.violations, want_fail ? "FAIL" : "PASS");
        }
    }
    /* every RoPE check is caught by at least one defect */
    for (size_t i = 0; i < theory_ncheck; i++) {
        const char *id = theory_checks[i].id;
        if (rope_free(id) || strcmp(id, "eq19-qk-shift") == 0) continue;
        int caught = 0;
        for (size_t e = 0; e < sizeof expect / sizeof expect[0]; e++) caught |= listed(expect[e].fails, id);
        if (!caught) fail_msg("no defect makes check %s fail", id);
    }
}

static const struct { theory_feat_mutant f; const char *fails; } fexpect[] = {
    { THEORY_FEAT_BIAS, "favor-unbiased favor-mse-pos favor-mse-trig favor-mse-hyp favor-ort-bound "
                        "favor-ort-gain" },
    { THEORY_FEAT_HALF, "favor-mse-pos favor-mse-trig favor-mse-hyp favor-ort-bound favor-ort-gain" },
    { THEORY_FEAT_NOORTH, "favor-ort-bound favor-ort-gain" },
    { THEORY_FEAT_TRIG, "eq19-den" },
};

static void test_feature_defects(void **state)
{
    (void)state;
    theory_rope lib;
    assert_rk_ok(theory_rope_library(&lib));
    for (size_t e = 0; e < sizeof fexpect / sizeof fexpect[0]; e++) {
        theory_config c = config(&lib, fexpect[e].f);
        for (size_t i = 0; i < theory_ncheck; i++) {
            if (!rope_free(theory_checks[i].id)) continue;
            theory_result r;
            run(i, &c, &r);
            check_row(&r);
            int want_fail = listed(fexpect[e].fails, r.id);
            if (want_fail == r.pass)
                fail_msg("feature defect '%s': check %s %s (measured %.6g %s %.6g) [%s], expected %s",
                         theory_feat_names[fexpect[e].f], r.id, r.pass ? "PASSED" : "FAILED",
                         r.measured, theory_cmp_str(r.cmp), r.tol, r.detail, want_fail ? "FAIL" : "PASS");
        }
    }
    theory_rope_free(&lib);
    theory_free_cache();
}

/* Same seed, same numbers; another seed, other draws. */
static void test_determinism(void **state)
{
    (void)state;
    theory_rope lib;
    assert_rk_ok(theory_rope_library(&lib));
    theory_config c = config(&lib, THEORY_FEAT_NONE);
    theory_config c2 = c;
    c2.seed = 2;
    static const char *ids[] = { "rel-f64", "rel-f32", "abel", "bound", "eq19-linear-f32",
                                 "favor-mse-trig" };
    for (size_t j = 0; j < sizeof ids / sizeof ids[0]; j++) {
        int i = theory_find(ids[j]);
        assert_true(i >= 0);
        theory_result a, b, d;
        run((size_t)i, &c, &a);
        theory_free_cache();                 /* recompute the Monte Carlo, not reuse it */
        run((size_t)i, &c, &b);
        run((size_t)i, &c2, &d);
        assert_memory_equal(&a.measured, &b.measured, sizeof a.measured);
        assert_string_equal(a.detail, b.detail);
        if (strcmp(ids[j], "bound") != 0)    /* bound's smallest margin is the exact ramp: 0 */
            assert_true(a.measured != d.measured);
    }
    assert_int_equal(theory_find("no-such-check"), -1);
    theory_rope_free(&lib);
    theory_free_cache();
    theory_free_cache();
}

/* The table row and the TSV row: fields, no stray tabs or newlines. */
static void test_output(void **state)
{
    (void)state;
    theory_rope naive;
    theory_rope_mutant(&naive, THEORY_MUT_SIGN);
    theory_config c = config(&naive, THEORY_FEAT_NONE);
    theory_result r;
    run((size_t)theory_find("matrix"), &c, &r);
    strcpy(r.detail, "a\ttab and a\nnewline");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    theory_tsv_header(f);
    theory_tsv_row(f, &r);
    theory_print_header(f);
    theory_print_row(f, 4, &r);
    fclose(f);
    char *l1 = buf, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    int tabs1 = 0, tabs2 = 0;
    for (char *p = l1; p < l2; p++) tabs1 += *p == '\t';
    for (char *p = l2; p < l3; p++) tabs2 += *p == '\t';
    assert_int_equal(tabs1, 10);
    assert_int_equal(tabs2, 10);
    assert_true(strncmp(l2, "matrix\t(15)=(34)\tf64\t", 21) == 0);
    assert_non_null(strstr(l2, "\tFAIL\n"));
    assert_non_null(strstr(l3, "FAIL"));
    assert_non_null(strstr(l3, "matrix"));
    free(buf);
    assert_string_equal(theory_cmp_str(THEORY_LE), "<=");
    assert_string_equal(theory_cmp_str(THEORY_INFO), "");
}

/* ---- the command line in a forked child --------------------------------------------------------- */

static char tmpdir[256];

static int run_cmd(const char *const *args, char *out, size_t outlen, char *err, size_t errlen)
{
    char po[300], pe[300];
    snprintf(po, sizeof po, "%s/stdout", tmpdir);
    snprintf(pe, sizeof pe, "%s/stderr", tmpdir);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0600), fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fo < 0 || fe < 0) _exit(99);
        dup2(fo, 1);
        dup2(fe, 2);
        char *argv[32];
        int argc = 0;
        for (; args[argc]; argc++) argv[argc] = (char *)args[argc];
        argv[argc] = NULL;
        int rc = cmd_theory(argc, argv);
        fflush(stdout);
        _exit(rc);
    }
    int st;
    assert_true(waitpid(pid, &st, 0) == pid);
    assert_true(WIFEXITED(st));
    FILE *f;
    if ((f = fopen(po, "r"))) { size_t n = fread(out, 1, outlen - 1, f); out[n] = '\0'; fclose(f); }
    if ((f = fopen(pe, "r"))) { size_t n = fread(err, 1, errlen - 1, f); err[n] = '\0'; fclose(f); }
    return WEXITSTATUS(st);
}

static void test_cli(void **state)
{
    (void)state;
    static char out[1 << 16], err[4096];
    char tsv[400];
    snprintf(tsv, sizeof tsv, "%s/t.tsv", tmpdir);
    const char *pass[] = { "theory", "--only", "matrix,orth,layout-f64", "--draws", "5", "--tsv", tsv, NULL };
    assert_int_equal(run_cmd(pass, out, sizeof out, err, sizeof err), 0);
    assert_non_null(strstr(out, "seed=1 draws=5"));
    assert_non_null(strstr(out, "3 checks: 3 PASS, 0 FAIL, 0 INFO"));
    assert_string_equal(err, "");
    FILE *f = fopen(tsv, "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (n == 0) assert_true(strncmp(line, "# ropekit theory ", 17) == 0);
        if (n == 1) assert_true(strncmp(line, "id\tequation\t", 12) == 0);
        if (n >= 2) assert_non_null(strstr(line, "\tPASS\n"));
        n++;
    }
    fclose(f);
    assert_int_equal(n, 5);

    const char *fail[] = { "theory", "--break", "sign", "--only", "matrix,rel-f64", "--draws", "5", NULL };
    assert_int_equal(run_cmd(fail, out, sizeof out, err, sizeof err), 1);
    assert_non_null(strstr(out, "2 checks: 1 PASS, 1 FAIL"));
    assert_non_null(strstr(out, "rope=sign"));
    const char *ffail[] = { "theory", "--break-features", "trig", "--only", "eq19-den", NULL };
    assert_int_equal(run_cmd(ffail, out, sizeof out, err, sizeof err), 1);

    static const struct { const char *args[6]; const char *msg; } bad[] = {
        { { "theory", "--break", "nope" }, "unknown defect 'nope'" },
        { { "theory", "--break-features", "x" }, "unknown feature defect 'x'" },
        { { "theory", "--only", "nope" }, "unknown check 'nope'" },
        { { "theory", "--only", "orth,orth" }, "given twice" },
        { { "theory", "--seed", "0" }, "must be >= 1" },
        { { "theory", "--draws", "0" }, "must be >= 1" },
        { { "theory", "--trials", "5" }, "must be >= 100" },
        { { "theory", "--tsv", "/nonexistent-dir/t.tsv" }, "cannot create a temporary file" },
        { { "theory", "--quick", "yes" }, "unexpected argument" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = run_cmd(bad[i].args, out, sizeof out, err, sizeof err);
        if (rc != 2 || !strstr(err, bad[i].msg) || !strstr(err, "ropekit theory: "))
            fail_msg("case %zu: exit %d, stderr '%s', want '%s'", i, rc, err, bad[i].msg);
    }
    const char *list[] = { "theory", "--list", NULL };
    assert_int_equal(run_cmd(list, out, sizeof out, err, sizeof err), 0);
    assert_non_null(strstr(out, "favor-ort-gain"));
    assert_non_null(strstr(out, "pair-half"));
    /* nothing but the outputs left behind (the temporary of --tsv was renamed or removed) */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s | grep -v -x -e t.tsv -e stdout -e stderr)\"", tmpdir);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "%s/rk_theory_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    const char *names[] = { "t.tsv", "stdout", "stderr" };
    for (int k = 0; k < 3; k++) {
        char p[400];
        snprintf(p, sizeof p, "%s/%s", tmpdir, names[k]);
        unlink(p);
    }
    rmdir(tmpdir);
    theory_free_cache();
    return 0;
}

int main(void)
{
    gsl_set_error_handler_off();
    /* The forking test runs first, before any OpenMP or BLAS thread pool exists. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_library_passes),
        cmocka_unit_test(test_naive_passes),
        cmocka_unit_test(test_rope_defects),
        cmocka_unit_test(test_feature_defects),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_output),
    };
    return cmocka_run_group_tests_name("drv_theory", tests, setup, teardown);
}
