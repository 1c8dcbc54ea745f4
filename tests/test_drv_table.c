/* Long-run tables (experiments/table.c) and resume of the sweeps that write them.
 *
 * Unit level: rows are on disk after each add; resume keeps complete rows, drops a torn last
 * line (cut mid-row, or a row without its newline) and old summary lines, refuses a file
 * written with other settings or a damaged middle, and starts over on a missing file.
 * End to end, in process (cmd_approx / cmd_scaling from the driver archive): a run is cut after
 * k rows (at a row boundary and mid-row), continued with --resume, and compared with an
 * uninterrupted run: approx rows are deterministic, so the whole table (rows and summary) must
 * be identical; scaling rows hold timings, so their keys must be. A real SIGINT to a forked run
 * must leave only complete rows and exit 128 + SIGINT. */
#include "check.h"
#include "tsv.h"
#include "../experiments/cli.h"
#include "../experiments/table.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <gsl/gsl_errno.h>

static char dir[512];

static const char *P(const char *name)
{
    static char ring[16][768];
    static unsigned next;
    char *b = ring[next++ % 16];
    snprintf(b, sizeof ring[0], "%s/%s", dir, name);
    return b;
}

static void remove_all(void)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
}

static int setup(void **state)
{
    (void)state;
    gsl_set_error_handler_off();
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/ropekit-table-XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    remove_all();
    rmdir(dir);
    return 0;
}

static int clean(void **state)
{
    (void)state;
    remove_all();
    return 0;
}

/* ---- the table module --------------------------------------------------------------------- */

/* on_add: called once per row appended, with that row's index. */
static void count_added(void *arg, table *t, size_t row)
{
    size_t *n = arg;
    assert_int_equal(row, t->nrows - 1);
    assert_int_equal(row, *n);
    (*n)++;
}

static void test_table_rows_on_disk(void **state)
{
    (void)state;
    table t;
    assert_int_equal(table_open(&t, P("t.tsv"), "demo v1 a=1 b=2", "k1\tk2\tx\ty", 2, 0), 0);
    assert_int_equal(table_addf(&t, "a\t%d\t%.3f\tok", 1, 2.385), 0);
    /* on disk before the next call: read it back with a separate handle */
    char *text = tsv_slurp(P("t.tsv"), NULL);
    assert_string_equal(text, "# demo v1 a=1 b=2\nk1\tk2\tx\ty\na\t1\t2.385\tok\n");
    free(text);
    assert_int_equal(table_add(&t, "a\t2\t-1e-3\tok"), 0);
    assert_int_equal(table_add(&t, "b\t1\tnan\tskipped"), 0);
    assert_int_equal(table_comment(&t, "summary\tx\t%d", 7), 0);
    assert_int_equal(table_find(&t, "a\t2"), 1);
    assert_int_equal(table_find(&t, "b\t1"), 2);
    assert_int_equal(table_find(&t, "a\t3"), -1);
    assert_int_equal(table_find(&t, "a"), -1);
    assert_int_equal(table_col(&t, "y"), 3);
    assert_int_equal(table_col(&t, "z"), -1);
    assert_string_equal(table_get(&t, 2, "y"), "skipped");
    assert_true(table_getd(&t, 1, "x") == -1e-3);
    assert_true(isnan(table_getd(&t, 2, "x")));
    assert_true(isnan(table_getd(&t, 0, "y")));
    /* wrong field count, duplicate key, newline: refused, nothing written */
    assert_int_equal(table_add(&t, "c\t1\t2"), -1);
    assert_non_null(strstr(t.err, "3 fields for 4 columns"));
    assert_int_equal(table_add(&t, "a\t1\t9\tok"), -1);
    assert_non_null(strstr(t.err, "key"));
    assert_int_equal(table_add(&t, "c\t1\t2\tok\n"), -1);
    assert_int_equal(t.nrows, 3);
    table_close(&t);
    text = tsv_slurp(P("t.tsv"), NULL);
    assert_string_equal(text, "# demo v1 a=1 b=2\nk1\tk2\tx\ty\na\t1\t2.385\tok\n"
                              "a\t2\t-1e-3\tok\nb\t1\tnan\tskipped\n# summary\tx\t7\n");
    free(text);
    /* in memory only; each added row seen by on_add, and read back as its line */
    assert_int_equal(table_open(&t, NULL, "demo", "k\tv", 1, 1), 0);
    size_t added = 0;
    t.on_add = count_added;
    t.on_add_arg = &added;
    assert_int_equal(table_add(&t, "x\t1"), 0);
    assert_int_equal(table_add(&t, "yy\t\t"), -1);     /* refused: not seen */
    assert_int_equal(table_add(&t, "yy\t"), 0);
    assert_int_equal(added, 2);
    assert_int_equal(table_find(&t, "x"), 0);
    char line[8];
    assert_int_equal(table_row_text(&t, 0, NULL, 0), 3);
    assert_int_equal(table_row_text(&t, 0, line, sizeof line), 3);
    assert_string_equal(line, "x\t1");
    assert_int_equal(table_row_text(&t, 1, line, sizeof line), 3);
    assert_string_equal(line, "yy\t");
    assert_int_equal(table_row_text(&t, 0, line, 2), 3);       /* cut, terminated */
    assert_string_equal(line, "x");
    table_close(&t);
}

static void test_table_resume(void **state)
{
    (void)state;
    const char *cfg = "demo v1 a=1 b=2", *hdr = "k\tv\tw";
    const char *body = "# demo v1 a=1 b=2\n# machine: x\nk\tv\tw\nr1\t1\t2\nr2\t3\t4\n"
                       "# note kept\nr3\t5\t6\n# summary\told\n";
    table t;
    /* complete file: all rows kept, the note kept, the old summary dropped */
    tsv_spit(P("r.tsv"), body, strlen(body));
    assert_int_equal(table_open(&t, P("r.tsv"), cfg, hdr, 1, 1), 0);
    assert_int_equal(t.kept, 3);
    assert_int_equal(t.torn, 0);
    assert_int_equal(t.dropped_summary, 1);
    assert_int_equal(table_find(&t, "r3"), 2);
    assert_int_equal(table_add(&t, "r4\t7\t8"), 0);
    table_close(&t);
    char *text = tsv_slurp(P("r.tsv"), NULL);
    assert_string_equal(text, "# demo v1 a=1 b=2\n# machine: x\nk\tv\tw\nr1\t1\t2\nr2\t3\t4\n"
                              "# note kept\nr3\t5\t6\nr4\t7\t8\n");
    free(text);

    /* torn last row, at every cut inside it (including a row without its newline) */
    const char *base = "# demo v1 a=1 b=2\nk\tv\tw\nr1\t1\t2\n", *last = "r2\t3\t4\n";
    for (size_t cut = 1; cut <= strlen(last); cut++) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s%.*s", base, (int)cut, last);
        tsv_spit(P("r.tsv"), buf, strlen(buf));
        assert_int_equal(table_open(&t, P("r.tsv"), cfg, hdr, 1, 1), 0);
        int whole = cut == strlen(last);
        assert_int_equal(t.kept, whole ? 2 : 1);
        assert_int_equal(t.torn, !whole);
        table_close(&t);
        text = tsv_slurp(P("r.tsv"), NULL);
        assert_string_equal(text, whole ? buf : base);
        free(text);
    }
    /* a file cut inside the config line or the header starts over / keeps the config */
    tsv_spit(P("r.tsv"), "# demo v1", 9);
    assert_int_equal(table_open(&t, P("r.tsv"), cfg, hdr, 1, 1), 0);
    assert_int_equal(t.kept, 0);
    table_close(&t);
    text = tsv_slurp(P("r.tsv"), NULL);
    assert_string_equal(text, "# demo v1 a=1 b=2\nk\tv\tw\n");
    free(text);
    tsv_spit(P("r.tsv"), "# demo v1 a=1 b=2\nk\tv", 21);
    assert_int_equal(table_open(&t, P("r.tsv"), cfg, hdr, 1, 1), 0);
    assert_int_equal(t.kept, 0);
    table_close(&t);
    text = tsv_slurp(P("r.tsv"), NULL);
    assert_string_equal(text, "# demo v1 a=1 b=2\nk\tv\tw\n");
    free(text);
    /* a missing file starts a fresh table */
    unlink(P("r.tsv"));
    assert_int_equal(table_open(&t, P("r.tsv"), cfg, hdr, 1, 1), 0);
    assert_int_equal(t.kept, 0);
    table_close(&t);

    /* refused: other settings (the message names the differing setting), another header, a
     * damaged middle line, a repeated key; the file is left as it was */
    tsv_spit(P("r.tsv"), body, strlen(body));
    assert_int_equal(table_open(&t, P("r.tsv"), "demo v1 a=1 b=3", hdr, 1, 1), -1);
    assert_non_null(strstr(t.err, "other settings ('b=2' there, 'b=3' now)"));
    assert_int_equal(table_open(&t, P("r.tsv"), cfg, "k\tv\tz", 1, 1), -1);
    assert_non_null(strstr(t.err, "column header differs"));
    text = tsv_slurp(P("r.tsv"), NULL);
    assert_string_equal(text, body);
    free(text);
    const char *damaged = "# demo v1 a=1 b=2\nk\tv\tw\nr1\t1\nr2\t3\t4\n";
    tsv_spit(P("r.tsv"), damaged, strlen(damaged));
    assert_int_equal(table_open(&t, P("r.tsv"), cfg, hdr, 1, 1), -1);
    assert_non_null(strstr(t.err, "line 3 has 2 fields, expected 3"));
    const char *dup = "# demo v1 a=1 b=2\nk\tv\tw\nr1\t1\t2\nr1\t3\t4\n";
    tsv_spit(P("r.tsv"), dup, strlen(dup));
    assert_int_equal(table_open(&t, P("r.tsv"), cfg, hdr, 1, 1), -1);
    assert_non_null(strstr(t.err, "repeats the key"));
    /* without resume an existing file is replaced */
    assert_int_equal(table_open(&t, P("r.tsv"), cfg, hdr, 1, 0), 0);
    assert_int_equal(t.kept, 0);
    table_close(&t);
    text = tsv_slurp(P("r.tsv"), NULL);
    assert_string_equal(text, "# demo v1 a=1 b=2\nk\tv\tw\n");
    free(text);
}

/* ---- the sweeps, in process ----------------------------------------------------------------- */

/* Run cmd(argv...) with stdout sent to /dev/null; returns its status. */
static int run_quiet(int (*cmd)(int, char **), const char *const *args)
{
    char *argv[64];
    int argc = 0;
    for (; args[argc]; argc++) argv[argc] = (char *)args[argc];
    argv[argc] = NULL;
    fflush(stdout);
    int saved = dup(1), null = open("/dev/null", O_WRONLY);
    assert_true(saved >= 0 && null >= 0);
    dup2(null, 1);
    close(null);
    int rc = cmd(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    return rc;
}

#define APPROX_ARGS(out, ...) (const char *const[]){ "approx", "--out", (out), "--variants", \
    "performer,performer-rope-features", "--kernels", "positive,trig", "--m-min", "8",       \
    "--m-max", "32", "--norms", "1,2", "--n", "24", "--d", "8", "--seeds", "3", __VA_ARGS__, NULL }

static void test_resume_approx(void **state)
{
    (void)state;
    assert_int_equal(run_quiet(cmd_approx, APPROX_ARGS(P("full.tsv"), "--threads", "1")), 0);
    size_t len;
    char *full = tsv_slurp(P("full.tsv"), &len);
    char *full_rows = tsv_filter(full, NULL), *full_sum = tsv_filter(full, "# summary");
    int nrows = tsv_count_rows(full);
    assert_int_equal(nrows, 2 * 2 * 2 * 3 * 2);   /* variants x kernels x projs x m x norms */
    assert_true(strlen(full_sum) > 0);
    /* cut after k rows: at a boundary, one byte into the next row, and just before its
     * newline; then resume (with another thread count: the rows must not depend on it) */
    static const struct { int k; int cut; } cuts[] = { { 0, 0 }, { 5, 0 }, { 7, 1 }, { 12, -1 },
                                                       { 23, 3 } };
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        size_t off = tsv_offset_after_rows(full, cuts[c].k, 0);
        if (cuts[c].cut > 0) off += (size_t)cuts[c].cut;
        if (cuts[c].cut < 0) off = tsv_offset_after_rows(full, cuts[c].k + 1, 0) - 1;
        tsv_spit(P("part.tsv"), full, off);
        assert_int_equal(run_quiet(cmd_approx, APPROX_ARGS(P("part.tsv"), "--resume",
                                                           "--threads", "2")), 0);
        char *part = tsv_slurp(P("part.tsv"), NULL);
        char *rows = tsv_filter(part, NULL), *sum = tsv_filter(part, "# summary");
        if (strcmp(rows, full_rows) != 0)
            fail_msg("cut %zu (k = %d): rows differ:\n%s\n--- want ---\n%s", c, cuts[c].k, rows,
                     full_rows);
        assert_string_equal(sum, full_sum);
        free(part);
        free(rows);
        free(sum);
    }
    /* resuming a finished table redoes nothing and keeps one summary */
    assert_int_equal(run_quiet(cmd_approx, APPROX_ARGS(P("full.tsv"), "--resume")), 0);
    char *again = tsv_slurp(P("full.tsv"), NULL), *again_rows = tsv_filter(again, NULL),
         *again_sum = tsv_filter(again, "# summary");
    assert_string_equal(again_rows, full_rows);
    assert_string_equal(again_sum, full_sum);
    free(again);
    free(again_rows);
    free(again_sum);
    free(full);
    free(full_rows);
    free(full_sum);
}

#define SCALING_ARGS(out, ...) (const char *const[]){ "scaling", "--out", (out), "--variants", \
    "softmax,performer,linear-elu", "--n-min", "16", "--n-max", "64", "--d", "8", "--m", "16", \
    "--repeats", "2", "--warmup", "0", "--max-seconds", "100", "--fit-min", "16", __VA_ARGS__, \
    NULL }

static void test_resume_scaling(void **state)
{
    (void)state;
    assert_int_equal(run_quiet(cmd_scaling, SCALING_ARGS(P("full.tsv"), "--threads", "1")), 0);
    char *full = tsv_slurp(P("full.tsv"), NULL);
    char *want = tsv_keys(full, 4);   /* variant, mask, n, status */
    assert_int_equal(tsv_count_rows(full), 3 * 2 * 3);
    for (int k = 0; k < 18; k += 5) {
        tsv_spit(P("part.tsv"), full, tsv_offset_after_rows(full, k, (size_t)(k % 3) * 4));
        assert_int_equal(run_quiet(cmd_scaling, SCALING_ARGS(P("part.tsv"), "--resume",
                                                             "--threads", "1")), 0);
        char *part = tsv_slurp(P("part.tsv"), NULL), *got = tsv_keys(part, 4);
        assert_string_equal(got, want);
        /* the kept rows are the original bytes (timings included) */
        char *rows_full = tsv_filter(full, NULL), *rows_part = tsv_filter(part, NULL);
        size_t pre = 0;
        for (int lines = 0; rows_full[pre] && lines < k + 1; pre++) lines += rows_full[pre] == '\n';
        assert_true(strlen(rows_part) >= pre);
        assert_memory_equal(rows_part, rows_full, pre);
        free(rows_full);
        free(rows_part);
        free(part);
        free(got);
    }
    free(full);
    free(want);
}

/* SIGINT to a running sweep: it stops after the current step, keeps only complete rows, exits
 * 128 + SIGINT; --resume then completes the table to exactly the uninterrupted result. */
static void test_interrupt(void **state)
{
    (void)state;
#define SLOW_ARGS(out, ...) (const char *const[]){ "approx", "--out", (out), "--variants", \
    "performer", "--kernels", "positive,hyperbolic", "--m-min", "64", "--m-max", "1024",      \
    "--norms", "1,2", "--n", "96", "--d", "16", "--seeds", "4", __VA_ARGS__, NULL }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(run_quiet(cmd_approx, SLOW_ARGS(P("int.tsv"), "--threads", "1")));
    /* wait for two finished rows, then interrupt */
    int rows = 0;
    for (int i = 0; i < 3000 && rows < 2; i++) {
        struct timespec ts = { 0, 5000000 };
        nanosleep(&ts, NULL);
        FILE *f = fopen(P("int.tsv"), "rb");
        if (!f) continue;
        fclose(f);
        char *t = tsv_slurp(P("int.tsv"), NULL);
        rows = tsv_count_rows(t);
        free(t);
    }
    kill(pid, SIGINT);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 0) {
        print_message("the run finished before the signal; interruption not exercised\n");
    } else {
        assert_int_equal(WEXITSTATUS(st), 128 + SIGINT);
        char *t = tsv_slurp(P("int.tsv"), NULL);
        int n = tsv_count_rows(t);
        assert_true(n >= 2 && n < 2 * 5 * 2);
        assert_true(t[strlen(t) - 1] == '\n');        /* no torn line */
        assert_null(strstr(t, "# summary"));          /* no summary of a partial run */
        free(t);
    }
    assert_int_equal(run_quiet(cmd_approx, SLOW_ARGS(P("int.tsv"), "--resume", "--threads", "1")),
                     0);
    assert_int_equal(run_quiet(cmd_approx, SLOW_ARGS(P("ref.tsv"), "--threads", "2")), 0);
    tsv_assert_same_rows(P("int.tsv"), P("ref.tsv"));
#undef SLOW_ARGS
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_table_rows_on_disk, clean),
        cmocka_unit_test_setup(test_table_resume, clean),
        cmocka_unit_test_setup(test_resume_approx, clean),
        cmocka_unit_test_setup(test_resume_scaling, clean),
        cmocka_unit_test_setup(test_interrupt, clean),
    };
    return cmocka_run_group_tests_name("drv_table", tests, setup, teardown);
}
