/* The training claims of `make paper`'s report (scripts/paper_report.sh, claims 6 and 7): the
 * verdicts are ropekit train's own, read from train/claims.tsv, never recomputed. The report is
 * run on a train/ directory of a real (tiny) `ropekit train --compare` and on copies of its
 * claims.tsv with other rows: PASS, NOT CONFIRMED (an interval through zero; one seed, no
 * interval), and NOT RUN (no train step, a failed one, a claim without its row, a verdict the
 * report does not know). The summary row and the claims table must both say the verdict, with
 * the numbers. make paper-check runs the whole pipeline; this checks the report's cases fast. */
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* RK_TESTS_DIR and RK_CLI_PATH: absolute paths, from the Makefile */

typedef struct {
    char dir[64];      /* scratch directory; real/train holds the real run */
    char md[1 << 17];  /* the last REPORT.md */
} fixture;
static fixture the_fixture;   /* one per group: the report buffer is too big for the stack */

/* The exit status of a shell command (-1: it did not run or was killed). */
static int sh(const char *cmd)
{
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int setup(void **state)
{
    fixture *f = &the_fixture;
    snprintf(f->dir, sizeof f->dir, "/tmp/rk_paper_report_XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    /* the train step as make paper runs it (plots/train.sh: ropekit train --compare, its
     * summary.txt, the figures), at the smallest size that still gives every table (2 seeds:
     * the fewest with an interval), in seconds */
    char cmd[1024];
    int len = snprintf(cmd, sizeof cmd, "ROPEKIT='%s' OUTDIR='%s/real/train' sh '%s/../plots/train.sh' "
             "--seeds 2 --steps 4 --eval-every 2 --layers 1 --d-model 8 --heads 1 --ctx 8 "
             "--batch 2 --features 8 --val-tokens 64 --lengths 1,2 > '%s/train.log' 2>&1 || "
             "{ cat '%s/train.log'; exit 1; }", RK_CLI_PATH, f->dir, RK_TESTS_DIR, f->dir, f->dir);
    *state = f;
    return len < (int)sizeof cmd && sh(cmd) == 0 ? 0 : -1;   /* (teardown still removes the directory) */
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", ((fixture *)*state)->dir);
    return sh(cmd) == 0 ? 0 : -1;
}

/* A case directory <dir>/<name> whose train/ is the real run's, with claims.tsv passed through
 * the awk program `edit` (fields by tab; NULL: unchanged). */
static void make_case(fixture *f, const char *name, const char *edit)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/%s' && mkdir -p '%s/%s' && cp -r '%s/real/train' '%s/%s/' "
             "&& awk -F'\\t' 'BEGIN { OFS = \"\\t\" } %s' '%s/real/train/claims.tsv' > "
             "'%s/%s/train/claims.tsv'", f->dir, name, f->dir, name, f->dir, f->dir, name,
             edit ? edit : "{ print }", f->dir, f->dir, name);
    assert_int_equal(sh(cmd), 0);
}

/* Run the report on <dir>/<name>; REPORT.md into f->md. */
static void report(fixture *f, const char *name)
{
    char cmd[1024], path[256];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/%s' && ROPEKIT='%s' PAPER_MODE=smoke sh '%s/../scripts/"
             "paper_report.sh' '%s/%s' > '%s/%s.log' 2>&1 || { cat '%s/%s.log'; exit 1; }", f->dir,
             name, RK_CLI_PATH, RK_TESTS_DIR, f->dir, name, f->dir, name, f->dir, name);
    if (sh(cmd) != 0) fail_msg("paper_report.sh failed on %s", name);
    snprintf(path, sizeof path, "%s/%s/REPORT.md", f->dir, name);
    FILE *m = fopen(path, "r");
    if (!m) fail_msg("no %s", path);
    size_t n = fread(f->md, 1, sizeof f->md - 1, m);
    f->md[n] = '\0';
    fclose(m);
}

/* The verdict of the first table row "| <n> | ... | **<verdict>** |" at or after `from`. */
static void row_verdict(const char *from, int n, char *out, size_t cap)
{
    char key[16];
    snprintf(key, sizeof key, "\n| %d | ", n);
    const char *r = from ? strstr(from, key) : NULL;
    out[0] = '\0';
    if (!r) return;
    const char *end = strchr(r + 1, '\n');
    const char *v = end ? end : r + strlen(r);
    while (v > r && v[-1] != '*') v--;                 /* the closing ** */
    const char *e = v - 2, *b = e;
    while (b > r && !(b[-1] == '*' && b[-2] == '*')) b--;
    if (e > b && (size_t)(e - b) < cap) {
        memcpy(out, b, (size_t)(e - b));
        out[e - b] = '\0';
    }
}

/* Claim n's verdict in the summary and, when the training section has its claims table
 * (not when the step did not run), there too. */
static void expect_verdict(const fixture *f, int n, const char *want)
{
    char got[64];
    row_verdict(strstr(f->md, "## Summary"), n, got, sizeof got);
    if (strcmp(got, want)) fail_msg("summary: claim %d is \"%s\", expected %s", n, got, want);
    const char *sec = strstr(f->md, "## 6-7."), *end = strstr(f->md, "## Machine");
    const char *table = sec ? strstr(sec, "| claim | primary pair |") : NULL;
    if (!sec) fail_msg("REPORT.md has no training section");
    if (!table || (end && table > end)) return;
    row_verdict(table, n, got, sizeof got);
    if (strcmp(got, want)) fail_msg("training section: claim %d is \"%s\", expected %s", n, got, want);
}

static void expect_text(const fixture *f, const char *text)
{
    if (!strstr(f->md, text)) fail_msg("REPORT.md lacks \"%s\"", text);
}

/* The primary row's verdict of claim `id` in the real claims.tsv. */
static void tool_verdict(const fixture *f, const char *id, char *out, size_t cap)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "awk -F'\\t' '$1 == \"%s\" && $3 == 1 { print $11 }' "
             "'%s/real/train/claims.tsv'", id, f->dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    if (!fgets(out, (int)cap, p)) out[0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    pclose(p);
}

/* The real run: the report carries the tool's verdicts, the table's numbers and the command. */
static void test_real_run(void **state)
{
    fixture *f = *state;
    char cmd[512], v6[32], v7[32];
    snprintf(cmd, sizeof cmd, "head -n 1 '%s/real/train/claims.tsv' | grep -q '^# ropekit train' && "
             "sed -n 2p '%s/real/train/claims.tsv' | grep -qx 'claim.text.primary.arm.baseline.step."
             "seeds.mean_diff.ci_lo.ci_hi.verdict'", f->dir, f->dir);
    assert_int_equal(sh(cmd), 0);   /* the columns this test's edits (and the report) rely on */
    make_case(f, "real_case", NULL);
    snprintf(cmd, sizeof cmd, "echo 'ROPEKIT=build/ropekit OUTDIR=x sh plots/train.sh --tiny' > "
             "'%s/real_case/train/command.txt'", f->dir);
    assert_int_equal(sh(cmd), 0);
    report(f, "real_case");
    tool_verdict(f, "performer", v6, sizeof v6);
    tool_verdict(f, "softmax", v7, sizeof v7);
    assert_true(!strcmp(v6, "PASS") || !strcmp(v6, "NOT CONFIRMED"));
    expect_verdict(f, 6, v6);
    expect_verdict(f, 7, v7);
    expect_text(f, "| 6 | `performer-rope-qk - performer` | 4 | 2 | ");
    expect_text(f, "| 7 | `softmax-rope - softmax` | 4 | 2 | ");
    expect_text(f, "| `performer-rope-features - performer` | 4 | 2 | ");   /* for information */
    expect_text(f, "ROPEKIT=build/ropekit OUTDIR=x sh plots/train.sh --tiny");
    /* the claim's differences seed by seed, from paired_seeds.tsv */
    snprintf(cmd, sizeof cmd, "s=$(awk -F'\\t' '$1 == \"performer-rope-qk\" && $2 == \"performer\" && "
             "$3 == 4 { printf \"%%s%%+.3f\", n++ ? \", \" : \"\", $5 }' '%s/real/train/paired_seeds.tsv') "
             "&& [ -n \"$s\" ] && grep -qF \"over 2 seeds; seed by seed $s): the interval\" "
             "'%s/real_case/REPORT.md'", f->dir, f->dir);
    assert_int_equal(sh(cmd), 0);
    expect_text(f, "](train/bpc.png)");
    expect_text(f, "](train/paired.png)");
    expect_text(f, "](train/extrapolation.png)");
}

/* PASS and NOT CONFIRMED as the tool wrote them, with the numbers and why. */
static void test_pass_and_not_confirmed(void **state)
{
    fixture *f = *state;
    make_case(f, "verdicts",
              "$4 == \"performer-rope-qk\" { $7 = 2; $8 = \"-0.050000\"; $9 = \"-0.080000\"; "
              "$10 = \"-0.020000\"; $11 = \"PASS\" } "
              "$4 == \"softmax-rope\" { $7 = 2; $8 = \"-0.300000\"; $9 = \"-0.500000\"; "
              "$10 = \"0.100000\"; $11 = \"NOT CONFIRMED\" } { print }");
    report(f, "verdicts");
    expect_verdict(f, 6, "PASS");
    expect_verdict(f, 7, "NOT CONFIRMED");
    expect_text(f, "performer-rope-qk - performer = -0.050 [-0.080, -0.020] bits per character at "
                "step 4 (95% interval over 2 seeds; seed by seed ");
    expect_text(f, "): the interval lies below zero (RoPE ahead).");
    expect_text(f, "softmax-rope - softmax = -0.300 [-0.500, +0.100] bits per character at step 4 "
                "(95% interval over 2 seeds; seed by seed ");
    expect_text(f, "): the interval contains zero.");
    char cmd[512];   /* the page colours the verdicts */
    snprintf(cmd, sizeof cmd, "grep -q 'Claim 6, RoPE speeds up Performer LM training: <strong "
             "class=\"v pass\">Verdict: PASS.</strong>' '%s/verdicts/index.html' && grep -q "
             "'<strong class=\"v nc\">Verdict: NOT CONFIRMED.</strong> softmax-rope' "
             "'%s/verdicts/index.html'", f->dir, f->dir);
    assert_int_equal(sh(cmd), 0);

    /* one seed: no interval, NOT CONFIRMED whatever the mean */
    make_case(f, "one_seed", "$4 == \"softmax-rope\" { $7 = 1; $8 = \"-0.400000\"; $9 = \"nan\"; "
              "$10 = \"nan\"; $11 = \"NOT CONFIRMED\" } { print }");
    report(f, "one_seed");
    expect_verdict(f, 7, "NOT CONFIRMED");
    expect_text(f, "softmax-rope - softmax = -0.400 none bits per character at step 4 (95% interval "
                "over 1 seeds; seed by seed ");
    expect_text(f, "): an interval needs at least 2 seeds.");
}

/* NOT RUN: no step, a failed step, a claim without its primary row, an unknown verdict. */
static void test_not_run(void **state)
{
    fixture *f = *state;
    report(f, "empty");
    expect_verdict(f, 6, "NOT RUN");
    expect_verdict(f, 7, "NOT RUN");
    expect_text(f, "not run (no `train/claims.tsv`)");

    make_case(f, "failed", NULL);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "printf 'step\\tstatus\\tseconds\\targs\\ntrain\\tfailed\\t3\\t-\\n' > "
             "'%s/failed/steps.tsv'", f->dir);
    assert_int_equal(sh(cmd), 0);
    report(f, "failed");
    expect_verdict(f, 6, "NOT RUN");
    expect_verdict(f, 7, "NOT RUN");
    expect_text(f, "the step failed (see `train/run.log`)");

    char v6[32];
    tool_verdict(f, "performer", v6, sizeof v6);
    make_case(f, "no_softmax", "$1 != \"softmax\" { print }");
    report(f, "no_softmax");
    expect_verdict(f, 6, v6);
    expect_verdict(f, 7, "NOT RUN");
    expect_text(f, "has no primary row for this claim");

    make_case(f, "unknown", "$4 == \"performer-rope-qk\" { $11 = \"MAYBE\" } { print }");
    report(f, "unknown");
    expect_verdict(f, 6, "NOT RUN");
    expect_text(f, "gives the unknown verdict \"MAYBE\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_run),
        cmocka_unit_test(test_pass_and_not_confirmed),
        cmocka_unit_test(test_not_run),
    };
    return cmocka_run_group_tests_name("paper_report", tests, setup, teardown);
}
