/* ropekit-mpi: the error protocol, row distribution and small utilities (see mp.h). */
#include "mp.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int mp_rank, mp_size;
static const char *mp_cmd = "";
static char mp_msg[4096];
static int mp_bad;
static void (*fail_notice)(void);

void mp_set_fail_notice(void (*fn)(void)) { fail_notice = fn; }

int mp_fail(const char *fmt, ...)
{
    if (mp_bad) return 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mp_msg, sizeof mp_msg, fmt, ap);
    va_end(ap);
    mp_bad = 1;
    return 1;
}

int mp_failed(void) { return mp_bad; }

_Noreturn void mp_exit(int status)
{
    fflush(stdout);
    fflush(stderr);
    MPI_Finalize();
    exit(status);
}

void mp_agree(int failed)
{
    failed = failed || mp_bad;
    int me = failed ? mp_rank : mp_size, first = mp_size;
    MPI_Allreduce(&me, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (first == mp_size) return;
    char buf[sizeof mp_msg];
    if (mp_rank == first) memcpy(buf, mp_msg, sizeof buf);
    MPI_Bcast(buf, (int)sizeof buf, MPI_CHAR, first, MPI_COMM_WORLD);
    buf[sizeof buf - 1] = '\0';
    if (mp_rank == 0) {
        fflush(stdout);
        if (first > 0)
            fprintf(stderr, "ropekit-mpi %s: [rank %d] %s\n", mp_cmd, first, buf);
        else
            fprintf(stderr, "ropekit-mpi %s: %s\n", mp_cmd, buf);
    }
    mp_exit(CLI_EXIT_ERROR);
}

/* cli_die lands here (after its cleanups): the message joins the collective check, which
 * ends the run. --help (status 0): rank 0 has printed it; everyone exits 0. */
static void hook(int status, const char *message)
{
    if (status == 0) mp_exit(0);
    mp_bad = 0;
    mp_fail("%s", message ? message : "error");
    if (fail_notice) {
        void (*fn)(void) = fail_notice;
        fail_notice = NULL;      /* once, even if it fails itself */
        fn();
    }
    mp_agree(1);
    mp_exit(CLI_EXIT_ERROR);      /* not reached */
}

void mp_set_cmd(const char *cmd) { mp_cmd = cmd; }

void mp_init(int *argc, char ***argv)
{
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "ropekit-mpi: MPI_Init_thread failed\n");
        exit(CLI_EXIT_ERROR);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &mp_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mp_size);
    /* errors of MPI calls come back as codes (checked), not as an abort with a banner */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    cli_exit_hook = hook;
    const char *priv = getenv("ROPEKIT_MPI_PRIVATE_DIRS");
    if (priv && strcmp(priv, "1") == 0 && mp_rank != 0) {
        char d[32];
        snprintf(d, sizeof d, "rank%d", mp_rank);
        if ((mkdir(d, 0777) != 0 && errno != EEXIST) || chdir(d) != 0) {
            fprintf(stderr, "ropekit-mpi: [rank %d] ROPEKIT_MPI_PRIVATE_DIRS: %s: %s\n", mp_rank,
                    d, strerror(errno));
            MPI_Abort(MPI_COMM_WORLD, CLI_EXIT_ERROR);
        }
    }
    if (mp_rank != 0) {
        /* only rank 0 speaks (help, tables, reports); the others' stdout is dropped */
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            fflush(stdout);
            dup2(fd, 1);
            close(fd);
        }
    }
}

mp_block mp_block_of(size_t n, int P, int r, int zigzag)
{
    mp_block b;
    memset(&b, 0, sizeof b);
    size_t Pz = (size_t)P, rz = (size_t)r;
    if (!zigzag) {
        b.seg[0].start = rz * n / Pz;
        b.seg[0].len = (rz + 1) * n / Pz - b.seg[0].start;
        b.nseg = 1;
    } else {
        size_t c = 2 * Pz, a = rz, z = c - 1 - rz;
        b.seg[0].start = a * n / c;
        b.seg[0].len = (a + 1) * n / c - b.seg[0].start;
        b.seg[1].start = z * n / c;
        b.seg[1].len = (z + 1) * n / c - b.seg[1].start;
        b.nseg = 2;
    }
    b.rows = b.seg[0].len + (b.nseg > 1 ? b.seg[1].len : 0);
    return b;
}

size_t mp_peak_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = (size_t)strtoull(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb * 1024;
}

double mp_now(void) { return MPI_Wtime(); }

/* This rank is ${rank_var} and `where` is ${at_var} (default dflt)? */
static int test_hit(const char *rank_var, const char *at_var, const char *dflt, const char *where)
{
    const char *r = getenv(rank_var), *at = getenv(at_var);
    return r && atoi(r) == mp_rank && strcmp(at ? at : dflt, where) == 0;
}

int mp_test_fail(const char *where)
{
    return test_hit("ROPEKIT_MPI_FAIL_RANK", "ROPEKIT_MPI_FAIL_AT", "", where);
}

void mp_test_kill(const char *where)
{
    if (!test_hit("ROPEKIT_MPI_KILL_RANK", "ROPEKIT_MPI_KILL_AT", "ring", where)) return;
    fflush(stdout);
    fflush(stderr);
    raise(SIGKILL);
}
