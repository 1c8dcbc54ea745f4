/* The batch execute of FAVOR+ and linear attention, instantiated for float and double from
 * the one body in performer_exec.h (see lib/performer.c for the algorithm). */
#include "performer.h"

#include <math.h>
#include <string.h>

/* Below this many elements an OpenMP region costs more than it saves. */
#define RK_PERF_PAR_MIN 32768
#define MIN(a, b) ((a) < (b) ? (a) : (b))
/* Pieces of a state's update that one thread takes (vector loops inside). */
#define RK_PERF_PIECE 1024

#define REAL        float
#define MAT         rk_mat
#define SFX(x)      x##_f
#define SCR(f)      (&(f)->sf)
#define WST(fm)     ((fm)->wsT)
#define GEMM        rk__gemm_f
#define ROPE_APPLY  rk_rope_apply
#include "performer_exec.h"
#undef REAL
#undef MAT
#undef SFX
#undef SCR
#undef WST
#undef GEMM
#undef ROPE_APPLY

#define REAL        double
#define MAT         rk_matd
#define SFX(x)      x##_d
#define SCR(f)      (&(f)->sd)
#define WST(fm)     ((fm)->wsdT)
#define GEMM        rk__gemm_d
#define ROPE_APPLY  rk_rope_apply_d
#include "performer_exec.h"
#undef REAL
#undef MAT
#undef SFX
#undef SCR
#undef WST
#undef GEMM
#undef ROPE_APPLY
