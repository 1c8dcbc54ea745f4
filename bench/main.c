/* ropekit-bench: `make bench`. Usage: ropekit-bench [--quick] [--repeats N] [section...]
 * Sections: rope softmax performer (default: all). Figures, not pass/fail. */
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

static void machine_header(FILE *f)
{
    char model[256] = "unknown";
    FILE *ci = fopen("/proc/cpuinfo", "r");
    if (ci) {
        char line[512];
        while (fgets(line, sizeof line, ci))
            if (strncmp(line, "model name", 10) == 0) {
                char *p = strchr(line, ':');
                if (p) { snprintf(model, sizeof model, "%s", p + 2); model[strcspn(model, "\n")] = 0; }
                break;
            }
        fclose(ci);
    }
    fprintf(f, "# machine: %s, %d OpenMP threads; ropekit %s; GSL %s; %s; OpenBLAS %s\n", model,
            omp_get_max_threads(), rk_version(), GSL_VERSION, fftw_version, openblas_get_config());
}

int main(int argc, char **argv)
{
    gsl_set_error_handler_off();
    bench_opts o = { .repeats = 7, .quick = 0, .max_threads = omp_get_max_threads(), .out = stdout };
    int want_rope = 0, want_softmax = 0, want_performer = 0, any = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) { o.quick = 1; o.repeats = 3; }
        else if (strcmp(argv[i], "--repeats") == 0 && i + 1 < argc) {
            char *end;
            long r = strtol(argv[++i], &end, 10);
            if (*end || r < 1 || r > 64) { fprintf(stderr, "ropekit-bench: --repeats takes 1..64\n"); return 2; }
            o.repeats = (int)r;
        }
        else if (strcmp(argv[i], "rope") == 0) { want_rope = any = 1; }
        else if (strcmp(argv[i], "softmax") == 0) { want_softmax = any = 1; }
        else if (strcmp(argv[i], "performer") == 0) { want_performer = any = 1; }
        else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: ropekit-bench [--quick] [--repeats N] [rope] [softmax] [performer]\n");
            return 0;
        } else { fprintf(stderr, "ropekit-bench: unknown argument '%s'\n", argv[i]); return 2; }
    }
    machine_header(o.out);
    fprintf(o.out, "# repeats %d (median reported, one warm-up run each)%s\n", o.repeats,
            o.quick ? ", quick sizes" : "");
    if (!any || want_rope) bench_rope(&o);
    if (!any || want_softmax) bench_softmax(&o);
    if (!any || want_performer) bench_performer(&o);
    return 0;
}
