/* The option half of `ropekit attend` (experiments/cmd_attend.c), shared with the distributed
 * `ropekit-mpi attend` (mpi/), so both read the same options the same way. */
#ifndef RK_ATTEND_H
#define RK_ATTEND_H

#include "cli.h"

/* attend's option table (n entries) and its --help description. */
const cli_opt *attend_options(size_t *n);
const char *attend_description(void);
/* The variant (--variant and the options it takes, refusing those it does not) into *ac:
 * kind, causal, scale, rope, rope_cfg, offset, features, kernel, map, xPos, threads (sizes,
 * bias and projection are left for later). Returns 1 if the named variant fixes a bias. */
int attend_config(cli_ctx *c, rk_attn_config *ac);
/* Q, K, V shapes against each other (layout, --kv-heads); returns K's heads. */
size_t attend_check_shapes(cli_ctx *c, const rk_array *q, const rk_array *k, const rk_array *v,
                           int bnhd, size_t kv_heads);
/* RoPE against the width it rotates. */
void attend_check_rope_width(cli_ctx *c, const rk_attn_config *ac, const char *q_path);

#endif
