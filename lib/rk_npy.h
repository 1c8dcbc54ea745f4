/* The .npy writer in steps (lib/npy.c), for callers that commit several outputs together
 * (the command line writes every output of a run, then renames them all into place):
 *   rk__out o;  rk__npy_open(&o, path);  rk__npy_write(&o, path, a);  ...  rk__npy_commit(&o, path);
 * Each returns an rk status with the message naming path; a failed write aborts o (nothing
 * left behind). rk_npy_save is the three in a row. */
#ifndef RK_NPY_H
#define RK_NPY_H

#include "rk_file.h"
#include "ropekit.h"

int rk__npy_open(rk__out *o, const char *path);
int rk__npy_write(rk__out *o, const char *path, const rk_array *a);
int rk__npy_commit(rk__out *o, const char *path);

#endif
