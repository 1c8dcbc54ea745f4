/* The layers of the language model (see lm.h), in float and double from one template. */
#include "lm_internal.h"

#include "gemm.h"

#include <math.h>
#include <stdint.h>
#include <time.h>

rk_isa lm__isa(void) { return rk_isa_resolve(RK_ISA_AUTO); }

double lm__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define REAL float
#define S(f) f##_f
#define GEMM rk__gemm_f
#define EXPR expf
#include "layers_tmpl.h"
#undef REAL
#undef S
#undef GEMM
#undef EXPR

#define REAL double
#define S(f) f##_d
#define GEMM rk__gemm_d
#define EXPR exp
#include "layers_tmpl.h"
#undef REAL
#undef S
#undef GEMM
#undef EXPR
