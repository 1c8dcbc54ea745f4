/* The run header of the timing and accuracy drivers: machine, threads, library versions and
 * build flags, as '#'-comment lines (for stdout and the TSV tables).
 *
 *   machine_set_threads(n);                    // OpenMP and OpenBLAS
 *   char buf[2048];  machine_describe(buf, sizeof buf);
 *
 * Build flags: the Makefile passes the compiler flags of this object as the string macro
 * RK_BUILD_FLAGS (e.g. -DRK_BUILD_FLAGS='"-O2 -g"'); without it "unknown" is reported. The
 * compiler's own macros (__VERSION__, __OPTIMIZE__, sanitizers) are added either way, and
 * compiled_avx2/compiled_fma (__AVX2__, __FMA__: the whole build may use them) are told apart
 * from run_time_kernels, what the library's CPU dispatch picks on this machine (avx2+fma or
 * portable): the default build has compiled_avx2=0 and still runs the AVX2 kernels.
 */
#ifndef RK_MACHINE_H
#define RK_MACHINE_H

#include <stddef.h>

#include "table.h"

/* Threads for OpenMP (and OpenBLAS); n <= 0 leaves the defaults. Returns the OpenMP count in
 * effect afterwards. */
int machine_set_threads(int n);

/* "AMD EPYC 7B13" (from /proc/cpuinfo), or "unknown". */
const char *machine_cpu_model(char *buf, size_t len);
/* Online logical processors. */
int machine_cores(void);

/* Lines "machine: ...", "versions: ...", "build: ..." without the '#', separated by '\n'
 * (no trailing newline). Returns buf. */
const char *machine_describe(char *buf, size_t len);

/* "2024-05-01T12:00:00Z" (UTC now). */
const char *machine_timestamp(char *buf, size_t len);

/* The run header of a long experiment: "# <config>", "# run <time>[ (resumed)]" and the
 * machine_describe lines on stdout, the same (but the config, which the table already holds)
 * as comments in the table at `path`, and a note when a resumed table kept rows. Returns 0,
 * or nonzero if the table could not be written (its message is in t->err). */
int machine_run_header(table *t, const char *path, const char *config);

/* Peak resident set size of the process so far in KiB (getrusage), and the peak since the
 * last machine_rss_reset (VmHWM; -1 if the kernel cannot reset it, then use the former). */
long machine_rss_max_kb(void);
int  machine_rss_reset(void);    /* 0 if the peak was reset (Linux clear_refs = 5) */
long machine_rss_peak_kb(void);  /* VmHWM in KiB, or -1 */

#endif
