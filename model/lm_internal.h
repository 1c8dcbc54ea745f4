/* Internals shared by the model/ sources (not part of model/lm.h's API). */
#ifndef RK_LM_INTERNAL_H
#define RK_LM_INTERNAL_H

#include "lm.h"
#include "rk_internal.h"

#include <stddef.h>

#define LM_LN_EPS 1e-5                /* LayerNorm's epsilon (PyTorch's default)              */
#define LM_COLS 64                    /* columns per task of the column-sum loops            */
#define LM_PAR_MIN ((size_t)1 << 14)  /* elements below which a loop runs on one thread       */

/* The widest kernel path of the CPU for lib/gemm.h's products (RK_ISA_AUTO resolved: the
 * environment's ROPEKIT_ISA if set; every path gives the same bits). */
rk_isa lm__isa(void);
/* Monotonic seconds. */
double lm__now(void);
/* Set the trainer's projection seeds (and its runs' plans) to those of the last step done
 * (after a checkpoint load). */
int lm__trainer_sync_redraw(lm_trainer *t);

#endif
