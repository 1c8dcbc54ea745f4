/* Running the ropekit binary from a test (see run_cli.h). */
#include "run_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef RK_CLI_PATH
#error "RK_CLI_PATH must name the ropekit binary (the Makefile defines it)"
#endif
#ifndef RK_MPI_PATH
#define RK_MPI_PATH ""
#endif
#ifndef RK_MPIRUN
#define RK_MPIRUN ""
#endif

#define MAXARGS 128

/* fork + execv with fd 1 and 2 on `out` and `err` (-1: /dev/null), with the options o. */
static pid_t spawn(const char *const *args, const char *cwd, int out, int err,
                   const run_cli_opts *o)
{
    char *argv[MAXARGS + 2];
    int argc = 0;
    argv[argc++] = (char *)(o && o->prog ? o->prog : RK_CLI_PATH);
    for (int i = 0; args[i]; i++) {
        if (argc > MAXARGS) return -1;
        argv[argc++] = (char *)args[i];
    }
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid != 0) return pid;
    int null = open("/dev/null", O_RDWR);
    if (null < 0 || dup2(out >= 0 ? out : null, 1) < 0 || dup2(err >= 0 ? err : null, 2) < 0 ||
        dup2(null, 0) < 0)
        _exit(126);
    if (cwd && chdir(cwd) != 0) _exit(126);
    if (o && o->prog && setpgid(0, 0) != 0) _exit(126);
    for (int i = 0; o && o->env && o->env[i]; i++) {
        char kv[1024];
        snprintf(kv, sizeof kv, "%s", o->env[i]);
        char *eq = strchr(kv, '=');
        if (!eq) _exit(126);
        *eq = '\0';
        if (setenv(kv, eq + 1, 1) != 0) _exit(126);
    }
    if (o && o->mem_limit_mb) {
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t)o->mem_limit_mb << 20;
        if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(126);
    }
    if (o && o->uid >= 0) {
        /* RK_RUN_AS names the user in the environment, so a tool that names per-process files
         * by pid (scripts/valgrind.sh: --log-file=...%p%q{RK_RUN_AS}) does not reopen, as the
         * new user, the file it created as root before the exec */
        char tag[32];
        snprintf(tag, sizeof tag, ".uid%ld", o->uid);
        if (setenv("RK_RUN_AS", tag, 1) != 0 || setgid((gid_t)o->uid) != 0 ||
            setuid((uid_t)o->uid) != 0)
            _exit(126);
    }
    execv(argv[0], argv);
    _exit(127);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int run_cli_wait(pid_t pid, double timeout_s)
{
    if (pid < 0) return -1;
    double end = now() + timeout_s;
    int st, killed = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, timeout_s > 0 ? WNOHANG : 0);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) return -1;
        if (w == 0) {
            if (!killed && now() > end) {
                kill(-pid, SIGKILL);     /* its process group, if it leads one */
                kill(pid, SIGKILL);
                killed = 1;
            }
            struct timespec ts = { 0, 2000000 };
            nanosleep(&ts, NULL);
        }
    }
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

pid_t run_cli_start(const char *const *args, const char *cwd)
{
    return spawn(args, cwd, -1, -1, NULL);
}

static void slurp(FILE *f, char *buf, size_t cap)
{
    size_t n = 0;
    if (f) {
        rewind(f);
        n = fread(buf, 1, cap - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
}

int run_cli_ex(const char *const *args, const char *cwd, double timeout_s, const run_cli_opts *o,
               run_cli_result *r)
{
    FILE *f1 = tmpfile(), *f2 = tmpfile();
    r->code = -1;
    if (f1 && f2) r->code = run_cli_wait(spawn(args, cwd, fileno(f1), fileno(f2), o), timeout_s);
    slurp(f1, r->out, sizeof r->out);
    slurp(f2, r->err, sizeof r->err);
    return r->code;
}

int run_cli(const char *const *args, const char *cwd, double timeout_s, run_cli_result *r)
{
    return run_cli_ex(args, cwd, timeout_s, NULL, r);
}

int run_mpi(int P, const char *const *args, const char *const *env, const char *cwd,
            double timeout_s, run_cli_result *r)
{
    char np[16];
    snprintf(np, sizeof np, "%d", P);
    const char *argv[MAXARGS] = { "-q", "--oversubscribe", "--bind-to", "none", "-np", np };
    const char *envv[32] = { "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
                             "OMP_NUM_THREADS=1", "OMPI_MCA_btl_vader_single_copy_mechanism=none",
                             "OMPI_MCA_rmaps_base_oversubscribe=1",
                             /* make asan: address and UB checks stay on in the ranks, leak
                              * checks off: Open MPI's plugins, dlopen'd and unloaded at
                              * MPI_Finalize, leave allocations LeakSanitizer reports from
                              * "<unknown module>" frames that no suppression by library name
                              * can match. The library's own leak freedom is checked in-process
                              * (tests/test_partial.c). Ignored without ASan. */
                             "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1" };
    int n = 6, ne = 6;
    static char names[24][64];
    for (int i = 0; env && env[i]; i++) {
        const char *eq = strchr(env[i], '=');
        if (!eq || ne >= 31 || i >= 24 || n + 2 >= MAXARGS) return r->code = -1;
        snprintf(names[i], sizeof names[i], "%.*s", (int)(eq - env[i]), env[i]);
        argv[n++] = "-x";
        argv[n++] = names[i];
        envv[ne++] = env[i];
    }
    envv[ne] = NULL;
    argv[n++] = RK_MPI_PATH;
    for (int i = 0; args[i]; i++) {
        if (n + 1 >= MAXARGS) return r->code = -1;
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    run_cli_opts o = { .uid = -1, .env = envv, .prog = RK_MPIRUN };
    return run_cli_ex(argv, cwd, timeout_s, &o, r);
}

int run_mpi_dir(char *dir, size_t len, const char *tag)
{
    if (!RK_MPIRUN[0]) {
        fprintf(stderr, "mpirun not found: the dependency step installs openmpi-bin\n");
        return -1;
    }
    snprintf(dir, len, "/tmp/%s_XXXXXX", tag);
    return mkdtemp(dir) ? 0 : -1;
}
