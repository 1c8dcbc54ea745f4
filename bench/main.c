/* ropekit-bench: `make bench`. Usage: ropekit-bench [--quick] [--repeats N] [section...]
 * Sections: peak rope softmax backward scaling decode performer (default: all, in that order).
 * Figures, not pass/fail. */
#include "bench.h"
#include "ropekit.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include <fftw3.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_version.h>

/* The value after ':' of the first /proc/cpuinfo line starting with key, or "?". */
static void cpuinfo_field(const char *key, char *out, size_t len)
{
    snprintf(out, len, "?");
    FILE *ci = fopen("/proc/cpuinfo", "r");
    if (!ci) return;
    char line[512];
    while (fgets(line, sizeof line, ci))
        if (strncmp(line, key, strlen(key)) == 0 && strchr(line, ':')) {
            snprintf(out, len, "%s", strchr(line, ':') + 2);
            out[strcspn(out, "\n")] = 0;
            break;
        }
    fclose(ci);
}

static void machine_header(FILE *f)
{
    char model[256], fam[32], mod[32];
    cpuinfo_field("model name", model, sizeof model);
    cpuinfo_field("cpu family", fam, sizeof fam);
    cpuinfo_field("model\t", mod, sizeof mod);
    const char *env = getenv("ROPEKIT_ISA");
    fprintf(f, "# machine: %s (cpu family %s, model %s), %d OpenMP threads; kernel paths:%s%s%s; "
            "ROPEKIT_ISA %s; ropekit %s; GSL %s; %s; OpenBLAS %s\n", model, fam, mod,
            omp_get_max_threads(), " portable", rk_isa_available(RK_ISA_AVX2) ? " avx2" : "",
            rk_isa_available(RK_ISA_AVX512) ? " avx512" : "", env && *env ? env : "unset",
            rk_version(), GSL_VERSION, fftw_version, openblas_get_config());
}

int main(int argc, char **argv)
{
    gsl_set_error_handler_off();
    bench_opts o = { .repeats = 7, .quick = 0, .max_threads = omp_get_max_threads(), .out = stdout };
    static const char *const names[] = { "peak", "rope", "softmax", "backward", "scaling",
                                         "decode", "performer" };
    static void (*const run[])(const bench_opts *) = { bench_peak, bench_rope, bench_softmax,
                                                       bench_backward, bench_scaling,
                                                       bench_decode, bench_performer };
    enum { NSEC = sizeof names / sizeof names[0] };
    int want[NSEC] = { 0 }, any = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) { o.quick = 1; o.repeats = 3; }
        else if (strcmp(argv[i], "--repeats") == 0 && i + 1 < argc) {
            char *end;
            long r = strtol(argv[++i], &end, 10);
            if (*end || r < 1 || r > 64) { fprintf(stderr, "ropekit-bench: --repeats takes 1..64\n"); return 2; }
            o.repeats = (int)r;
        }
        else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: ropekit-bench [--quick] [--repeats N] [peak] [rope] [softmax] [backward] "
                   "[scaling] [decode] [performer]\n");
            return 0;
        } else {
            size_t s = 0;
            while (s < NSEC && strcmp(argv[i], names[s]) != 0) s++;
            if (s == NSEC) { fprintf(stderr, "ropekit-bench: unknown argument '%s'\n", argv[i]); return 2; }
            want[s] = any = 1;
        }
    }
    machine_header(o.out);
    fprintf(o.out, "# repeats %d (median reported, one warm-up run each)%s\n", o.repeats,
            o.quick ? ", quick sizes" : "");
    for (size_t s = 0; s < NSEC; s++)
        if (!any || want[s]) run[s](&o);
    return 0;
}
