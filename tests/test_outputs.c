/* Outputs that must never destroy what they should not (issue 16), for every command that
 * writes: a symbolic link is followed and its target replaced (the link stays), a FIFO is
 * written to (never replaced by a file), "-" is standard output, and an output naming an
 * input is refused with both options named. Runs as whatever user the suite runs as (root in
 * CI); only files of a temporary directory are touched, never a real device. */
#include "check.h"
#include "run_cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];
static run_cli_result R;

static const char *P(const char *name)
{
    static char buf[8][600];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/rk_outputs_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    size_t sh[2] = { 6, 8 };
    rk_array x;
    if (rk_array_alloc(&x, RK_F32, 2, sh)) return -1;
    for (size_t i = 0; i < x.count; i++) ((float *)x.data)[i] = (float)(i % 5) - 2.0f;
    int rc = rk_npy_save(P("x.npy"), &x);
    rk_array_free(&x);
    return rc;
}

static void rm_tree(const char *d)
{
    DIR *dd = opendir(d);
    struct dirent *e;
    while (dd && (e = readdir(dd))) {
        if (e->d_name[0] == '.') continue;
        char p[700];
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) { rm_tree(p); rmdir(p); }
        else unlink(p);
    }
    if (dd) closedir(dd);
}

static int teardown(void **state)
{
    (void)state;
    rm_tree(dir);
    rmdir(dir);
    return 0;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = malloc(1 << 20);
    *n = fread(b, 1, 1 << 20, f);
    fclose(f);
    return b;
}

/* One command per writer: its arguments with OUT standing for the output path. */
typedef struct {
    const char *name;
    const char *args[24];
} writer;

#define OUT "\x01OUT"
static const writer writers[] = {
    { "rope", { "rope", "--in", NULL, "--out", OUT, NULL } },
    { "attend", { "attend", "--variant", "softmax", "--q", NULL, "--k", NULL, "--v", NULL, "--out",
                  OUT, NULL } },
    { "decay", { "decay", "--dim", "8", "--max-distance", "16", "--draws", "4", "--out", OUT, NULL } },
    { "pattern", { "pattern", "--quick", "--n", "16", "--out", OUT, NULL } },
    { "theory", { "theory", "--quick", "--tsv", OUT, NULL } },
    { "scaling", { "scaling", "--variants", "softmax", "--n-min", "8", "--n-max", "16",
                   "--repeats", "2", "--out", OUT, NULL } },
};

/* The writer's argv with OUT replaced by out and the inputs (NULL slots) by x.npy. */
static void argv_of(const writer *w, const char *out, const char **argv)
{
    int i = 0;
    for (; w->args[i] || (i > 0 && w->args[i - 1] && w->args[i - 1][0] == '-'); i++) {
        if (!w->args[i]) argv[i] = P("x.npy");
        else argv[i] = strcmp(w->args[i], OUT) == 0 ? out : w->args[i];
    }
    argv[i] = NULL;
}

static void run_ok(const writer *w, const char *out, const char *what)
{
    const char *argv[24];
    argv_of(w, out, argv);
    int rc = run_cli(argv, NULL, 120, &R);
    if (rc != 0) fail_msg("%s %s: exit %d: %s", w->name, what, rc, R.err);
}

/* The plain run's bytes (with "#" lines that carry a time or a machine reading cut), to
 * compare the other runs with. */
static int comparable(const writer *w)
{
    return strcmp(w->name, "rope") == 0 || strcmp(w->name, "attend") == 0;
}

static void test_symlink_followed(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof writers / sizeof writers[0]; i++) {
        const writer *w = &writers[i];
        unlink(P("target")); unlink(P("link")); unlink(P("plain"));
        run_ok(w, P("plain"), "plain");
        /* an existing target behind a relative link */
        FILE *f = fopen(P("target"), "w");
        fputs("old", f);
        fclose(f);
        assert_int_equal(symlink("target", P("link")), 0);
        run_ok(w, P("link"), "through a symlink");
        struct stat st;
        assert_int_equal(lstat(P("link"), &st), 0);
        if (!S_ISLNK(st.st_mode)) fail_msg("%s: the symlink was replaced by a file", w->name);
        assert_int_equal(stat(P("target"), &st), 0);
        assert_true(S_ISREG(st.st_mode));
        size_t n1, n2;
        char *a = slurp(P("plain"), &n1), *b = slurp(P("target"), &n2);
        if (comparable(w)) {
            assert_int_equal(n1, n2);
            assert_memory_equal(a, b, n1);
        } else {
            assert_true(n2 > 3 && memcmp(b, "old", 3) != 0);
        }
        free(a); free(b);
        /* a dangling link: the target is created */
        unlink(P("link")); unlink(P("target"));
        assert_int_equal(symlink("target", P("link")), 0);
        run_ok(w, P("link"), "through a dangling symlink");
        assert_int_equal(lstat(P("link"), &st), 0);
        assert_true(S_ISLNK(st.st_mode));
        assert_int_equal(stat(P("target"), &st), 0);
        assert_true(S_ISREG(st.st_mode) && st.st_size > 0);
    }
}

/* A reader of a FIFO, collecting what arrives. */
typedef struct { const char *path; char *buf; size_t n; } fifo_reader;

static void *read_fifo(void *arg)
{
    fifo_reader *r = arg;
    int fd = open(r->path, O_RDONLY);
    r->buf = malloc(1 << 20);
    r->n = 0;
    ssize_t got;
    while (fd >= 0 && (got = read(fd, r->buf + r->n, (1 << 20) - r->n)) > 0) r->n += (size_t)got;
    if (fd >= 0) close(fd);
    return NULL;
}

static void test_fifo_written_not_replaced(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof writers / sizeof writers[0]; i++) {
        const writer *w = &writers[i];
        if (strcmp(w->name, "scaling") == 0) continue;   /* reopens its table per row */
        unlink(P("fifo")); unlink(P("plain"));
        run_ok(w, P("plain"), "plain");
        assert_int_equal(mkfifo(P("fifo"), 0600), 0);
        fifo_reader rd = { P("fifo"), NULL, 0 };
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, read_fifo, &rd), 0);
        run_ok(w, P("fifo"), "into a FIFO");
        pthread_join(th, NULL);
        struct stat st;
        assert_int_equal(lstat(P("fifo"), &st), 0);
        if (!S_ISFIFO(st.st_mode)) fail_msg("%s: the FIFO was replaced", w->name);
        size_t n1;
        char *a = slurp(P("plain"), &n1);
        if (comparable(w)) {
            assert_int_equal(rd.n, n1);
            assert_memory_equal(rd.buf, a, n1);
        } else {
            assert_true(rd.n > 0);
        }
        free(a);
        free(rd.buf);
    }
}

static void test_dash_is_stdout(void **state)
{
    (void)state;
    const writer *w = &writers[0];   /* rope: a .npy on standard output */
    unlink(P("plain"));
    run_ok(w, P("plain"), "plain");
    const char *argv[24];
    argv_of(w, "-", argv);
    assert_int_equal(run_cli(argv, NULL, 60, &R), 0);
    size_t n;
    char *a = slurp(P("plain"), &n);
    assert_true(n < sizeof R.out);
    assert_memory_equal(R.out, a, 10);            /* the .npy magic and version */
    free(a);
    struct stat st;
    assert_int_equal(stat("-", &st) == 0 ? 1 : 0, 0);   /* no file named "-" was made */
}

static void test_output_naming_input(void **state)
{
    (void)state;
    const char *a1[] = { "rope", "--in", P("x.npy"), "--out", P("x.npy"), NULL };
    assert_int_equal(run_cli(a1, NULL, 60, &R), 2);
    assert_non_null(strstr(R.err, "--out and --in name the same file"));
    /* the same file through a link */
    unlink(P("alias"));
    assert_int_equal(symlink("x.npy", P("alias")), 0);
    const char *a2[] = { "attend", "--variant", "softmax", "--q", P("x.npy"), "--k", P("x.npy"),
                         "--v", P("x.npy"), "--out", P("alias"), NULL };
    assert_int_equal(run_cli(a2, NULL, 60, &R), 2);
    assert_non_null(strstr(R.err, "name the same file"));
    rk_array x;
    assert_rk_ok(rk_npy_load(P("x.npy"), &x));     /* the input is intact */
    assert_int_equal(x.count, 48);
    rk_array_free(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_symlink_followed),
        cmocka_unit_test(test_fifo_written_not_replaced),
        cmocka_unit_test(test_dash_is_stdout),
        cmocka_unit_test(test_output_naming_input),
    };
    return cmocka_run_group_tests_name("outputs", tests, setup, teardown);
}
