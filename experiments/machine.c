/* Run header: machine, versions, build flags; RSS helpers (see machine.h). */
#include "machine.h"
#include "ropekit.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <fftw3.h>
#include <gsl/gsl_version.h>

/* OpenBLAS extensions (declared here: its cblas.h needs _GNU_SOURCE for cpu_set_t). */
char *openblas_get_config(void);
int openblas_get_num_threads(void);
void openblas_set_num_threads(int num_threads);

#ifndef RK_BUILD_FLAGS
#  define RK_BUILD_FLAGS "unknown"
#endif

int machine_set_threads(int n)
{
    if (n > 0) {
        omp_set_num_threads(n);
        openblas_set_num_threads(n);
    }
    return omp_get_max_threads();
}

const char *machine_cpu_model(char *buf, size_t len)
{
    snprintf(buf, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return buf;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        char *colon = strchr(line, ':');
        if (!colon) continue;
        char *s = colon + 1;
        while (*s == ' ' || *s == '\t') s++;
        size_t n = strlen(s);
        while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ')) s[--n] = '\0';
        if (n) snprintf(buf, len, "%s", s);
        break;
    }
    fclose(f);
    return buf;
}

int machine_cores(void) { return omp_get_num_procs(); }

const char *machine_timestamp(char *buf, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
    else snprintf(buf, len, "unknown");
    return buf;
}

/* The kernel path the library's run-time dispatch takes on this CPU (ROPEKIT_ISA included),
 * independent of the flags this build used: what a plan with isa = RK_ISA_AUTO runs. */
static const char *runtime_kernels(void)
{
    return rk_isa_name(rk_isa_resolve(RK_ISA_AUTO));
}

const char *machine_describe(char *buf, size_t len)
{
    char cpu[256];
    struct utsname u;
    int have_u = uname(&u) == 0;
    const char *blas = openblas_get_config();
    size_t n = (size_t)snprintf(buf, len,
        "machine: cpu=\"%s\" cores=%d threads=%d openblas_threads=%d os=\"%s %s %s\"\n"
        "versions: ropekit=%s gsl=%s fftw=%s openblas=\"%s\"\n",
        machine_cpu_model(cpu, sizeof cpu), machine_cores(), omp_get_max_threads(),
        openblas_get_num_threads(), have_u ? u.sysname : "?", have_u ? u.release : "?",
        have_u ? u.machine : "?", rk_version(), gsl_version, fftwf_version,
        blas ? blas : "?");
    if (n < len)
        snprintf(buf + n, len - n,
                 "build: cc=\"%s\" flags=\"%s\" optimize=%d compiled_avx2=%d compiled_fma=%d "
                 "run_time_kernels=%s asan=%d ndebug=%d",
#ifdef __VERSION__
                 __VERSION__,
#else
                 "unknown",
#endif
                 RK_BUILD_FLAGS,
#ifdef __OPTIMIZE__
                 1,
#else
                 0,
#endif
#ifdef __AVX2__
                 1,
#else
                 0,
#endif
#ifdef __FMA__
                 1,
#else
                 0,
#endif
                 runtime_kernels(),
#ifdef __SANITIZE_ADDRESS__
                 1,
#else
                 0,
#endif
#ifdef NDEBUG
                 1
#else
                 0
#endif
        );
    return buf;
}

long machine_rss_max_kb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return ru.ru_maxrss;   /* KiB on Linux */
}

int machine_rss_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0;
    if (fclose(f) != 0) ok = 0;
    return ok ? 0 : -1;
}

long machine_rss_peak_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

int machine_run_header(table *t, const char *path, const char *config)
{
    char desc[2048], ts[64];
    machine_describe(desc, sizeof desc);
    printf("# %s\n# run %s%s\n", config, machine_timestamp(ts, sizeof ts),
           t->kept ? " (resumed)" : "");
    if (table_comment(t, "run %s%s", ts, t->kept ? " (resumed)" : "")) return 1;
    for (char *line = desc; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        printf("# %s\n", line);
        if (table_comment(t, "%s", line)) return 1;
        line = nl ? nl + 1 : NULL;
    }
    if (t->kept || t->torn)
        printf("# resumed %s: %zu finished rows kept%s\n", path, t->kept,
               t->torn ? ", a torn last line dropped" : "");
    fflush(stdout);
    return 0;
}
