/* Kernel paths (ropekit.h, rk_isa): what the CPU has, what the environment asks for, and the
 * one decision each plan takes at creation. */
#include "rk_internal.h"

#include <stdlib.h>
#include <string.h>

const char *rk_isa_name(rk_isa isa)
{
    switch (isa) {
    case RK_ISA_AUTO:     return "auto";
    case RK_ISA_PORTABLE: return "portable";
    case RK_ISA_AVX2:     return "avx2";
    case RK_ISA_AVX512:   return "avx512";
    }
    return "?";
}

int rk_isa_available(rk_isa isa)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    switch (isa) {
    case RK_ISA_AUTO:
    case RK_ISA_PORTABLE: return 1;
    case RK_ISA_AVX2:     return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case RK_ISA_AVX512:   return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                                 __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                                 rk_isa_available(RK_ISA_AVX2);
    }
    return 0;
#else
    return isa == RK_ISA_AUTO || isa == RK_ISA_PORTABLE;
#endif
}

/* ROPEKIT_ISA, or RK_ISA_AUTO when unset or empty; -1 when it names no path. */
static int isa_from_env(void)
{
    const char *e = getenv("ROPEKIT_ISA");
    if (!e || !*e || strcmp(e, "auto") == 0) return RK_ISA_AUTO;
    static const rk_isa all[] = { RK_ISA_PORTABLE, RK_ISA_AVX2, RK_ISA_AVX512 };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(e, rk_isa_name(all[i])) == 0) return (int)all[i];
    return -1;
}

/* The widest path that exists: the kernels of AVX-512 where a file has them; a caller whose
 * kernels stop at AVX2 treats RK_ISA_AVX512 as AVX2 (rk__isa_pick's `widest`). */
static rk_isa widest_available(void)
{
    if (rk_isa_available(RK_ISA_AVX512)) return RK_ISA_AVX512;
    if (rk_isa_available(RK_ISA_AVX2)) return RK_ISA_AVX2;
    return RK_ISA_PORTABLE;
}

rk_isa rk_isa_resolve(rk_isa isa)
{
    if (isa != RK_ISA_AUTO) return isa;
    int e = isa_from_env();
    return e > 0 ? (rk_isa)e : widest_available();
}

int rk__isa_pick(rk_isa want, rk_isa widest, const char *who, rk_isa *out)
{
    if (want != RK_ISA_AUTO && want != RK_ISA_PORTABLE && want != RK_ISA_AVX2 &&
        want != RK_ISA_AVX512)
        RK_FAIL(RK_EINVAL, "%s: unknown isa %d", who, (int)want);
    if (want == RK_ISA_AUTO && isa_from_env() < 0)
        RK_FAIL(RK_EINVAL, "%s: ROPEKIT_ISA = '%s' is not a kernel path (portable, avx2, avx512)",
                who, getenv("ROPEKIT_ISA"));
    rk_isa isa = rk_isa_resolve(want);
    if (!rk_isa_available(isa))
        RK_FAIL(RK_EUNSUP, "%s: the %s kernels need a CPU this one is not (it has up to %s)", who,
                rk_isa_name(isa), rk_isa_name(widest_available()));
    *out = isa > widest ? widest : isa;
    return RK_OK;
}
