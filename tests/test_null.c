/* The library never crashes on a NULL (issue 16): every public function, called with NULL for
 * each pointer it takes, returns RK_EINVAL with a message (status functions), or NULL / 0 / a
 * harmless no-op (accessors, destructors). The list is checked against the shared library's
 * exports, so a new public function without a line here fails this test. */
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EINV(call) assert_rk_error((call), RK_EINVAL)

static const char *const covered[] = {
    "rk_alibi_slopes", "rk_array_alloc", "rk_array_check_finite", "rk_array_free",
    "rk_attn_backward", "rk_attn_backward_batch", "rk_attn_backward_batch_d", "rk_attn_backward_d",
    "rk_attn_bytes", "rk_attn_create", "rk_attn_destroy", "rk_attn_execute",
    "rk_attn_execute_batch", "rk_attn_execute_batch_d", "rk_attn_execute_d",
    "rk_attn_execute_state", "rk_attn_execute_state_d", "rk_attn_feature_dim",
    "rk_attn_features_d", "rk_attn_fields", "rk_attn_forward", "rk_attn_forward_batch",
    "rk_attn_forward_batch_d", "rk_attn_forward_d", "rk_attn_get_config", "rk_attn_get_info",
    "rk_attn_kind_fields", "rk_attn_kind_name", "rk_attn_kv_reduce", "rk_attn_kv_reduce_d",
    "rk_attn_merge", "rk_attn_merge_d", "rk_attn_proj", "rk_attn_proj_load",
    "rk_attn_proj_save", "rk_attn_resolve", "rk_attn_saved_len", "rk_attn_state_create",
    "rk_attn_state_destroy", "rk_attn_state_reset", "rk_attn_state_step", "rk_attn_state_step_d",
    "rk_bias_alibi", "rk_bias_len", "rk_bias_t5", "rk_isa_available", "rk_isa_name",
    "rk_isa_resolve", "rk_kv_state_alloc", "rk_kv_state_clear", "rk_kv_state_free",
    "rk_kv_state_merge", "rk_last_error", "rk_mat_alloc", "rk_mat_free", "rk_matd_alloc",
    "rk_matd_free", "rk_npy_load", "rk_npy_load_mem", "rk_npy_save", "rk_rope_apply",
    "rk_rope_apply_d", "rk_rope_backward", "rk_rope_backward_d", "rk_rope_bytes",
    "rk_rope_create", "rk_rope_destroy", "rk_rope_freqs", "rk_rope_get_config", "rk_rope_hf_free",
    "rk_rope_hf_load", "rk_rope_hf_parse", "rk_rope_mscale", "rk_rope_resolve",
    "rk_rope_scaling_name", "rk_sinusoidal_add", "rk_sinusoidal_add_d", "rk_strerror",
    "rk_t5_bucket", "rk_version", "rk_xpos_zeta",
};

static void test_every_function(void **state)
{
    (void)state;
    float f[16] = { 0 };
    double x[16] = { 0 };
    rk_mat m = rk_mat_view(f, 2, 2, 2);
    rk_matd md = rk_matd_view(x, 2, 2, 2);
    rk_tensor t = rk_tensor_bhnd(f, 1, 1, 2, 2);
    rk_tensord td = rk_tensord_bhnd(x, 1, 1, 2, 2);
    size_t sz = 0;
    /* errors, version, isa */
    assert_non_null(rk_version());
    assert_non_null(rk_strerror(-1));
    assert_non_null(rk_last_error());
    assert_non_null(rk_isa_name((rk_isa)99));
    assert_false(rk_isa_available((rk_isa)99));
    (void)rk_isa_resolve(RK_ISA_AUTO);
    /* matrices and arrays */
    EINV(rk_mat_alloc(NULL, 2, 2));
    EINV(rk_matd_alloc(NULL, 2, 2));
    rk_mat_free(NULL);
    rk_matd_free(NULL);
    EINV(rk_array_alloc(NULL, RK_F32, 1, &sz));
    rk_array a = { 0 };
    EINV(rk_array_alloc(&a, RK_F32, 1, NULL));
    rk_array_free(NULL);
    EINV(rk_array_check_finite(NULL, "x"));
    EINV(rk_npy_load(NULL, &a));
    EINV(rk_npy_load("x.npy", NULL));
    EINV(rk_npy_load_mem(NULL, 10, &a));
    EINV(rk_npy_load_mem(f, 10, NULL));
    EINV(rk_npy_save(NULL, &a));
    EINV(rk_npy_save("x.npy", NULL));
    /* RoPE */
    rk_rope *r = NULL;
    EINV(rk_rope_resolve(NULL));
    EINV(rk_rope_create(NULL, &(rk_rope_config){ .dim = 2 }));
    EINV(rk_rope_create(&r, NULL));
    rk_rope_destroy(NULL);
    assert_null(rk_rope_get_config(NULL));
    assert_null(rk_rope_freqs(NULL));
    assert_true(isnan(rk_rope_mscale(NULL)));
    assert_int_equal(rk_rope_bytes(NULL), 0);
    assert_non_null(rk_rope_scaling_name((rk_rope_scaling)99));
    EINV(rk_rope_apply(NULL, &m, &m, 0, NULL, 0));
    assert_rk_ok(rk_rope_create(&r, &(rk_rope_config){ .dim = 2 }));
    EINV(rk_rope_apply(r, NULL, &m, 0, NULL, 0));
    EINV(rk_rope_apply(r, &m, NULL, 0, NULL, 0));
    EINV(rk_rope_apply_d(NULL, &md, &md, 0, NULL, 0));
    EINV(rk_rope_apply_d(r, NULL, &md, 0, NULL, 0));
    EINV(rk_rope_apply_d(r, &md, NULL, 0, NULL, 0));
    EINV(rk_rope_backward(NULL, &m, &m, 0, NULL));
    EINV(rk_rope_backward(r, NULL, &m, 0, NULL));
    EINV(rk_rope_backward(r, &m, NULL, 0, NULL));
    EINV(rk_rope_backward_d(NULL, &md, &md, 0, NULL));
    EINV(rk_rope_backward_d(r, NULL, &md, 0, NULL));
    EINV(rk_rope_backward_d(r, &md, NULL, 0, NULL));
    rk_rope_destroy(r);
    rk_rope_hf hf;
    EINV(rk_rope_hf_load(NULL, "config.json"));
    EINV(rk_rope_hf_load(&hf, NULL));
    EINV(rk_rope_hf_parse(NULL, "{}", 2, "x"));
    EINV(rk_rope_hf_parse(&hf, NULL, 2, "x"));
    rk_rope_hf_free(NULL);
    /* encodings */
    EINV(rk_t5_bucket(1, 1, 32, 128, NULL));
    EINV(rk_bias_t5(NULL, 2, 2, NULL, 1, 0, 0));
    EINV(rk_alibi_slopes(NULL, 4));
    EINV(rk_bias_alibi(NULL, 2, 2, 0.5));
    EINV(rk_sinusoidal_add(NULL, 0, 0.0));
    EINV(rk_sinusoidal_add_d(NULL, 0, 0.0));
    EINV(rk_xpos_zeta(NULL, 4, 0.4));
    assert_int_equal(rk_bias_len(2, 2), 3);
    /* attention */
    rk_attn_config c = { .kind = RK_PERFORMER, .n_q = 2, .n_kv = 2, .d = 2, .seed = 1 };
    rk_attn *p = NULL;
    EINV(rk_attn_resolve(NULL, NULL));
    assert_int_equal(rk_attn_fields(NULL), 0);
    assert_null(rk_attn_kind_name((rk_kind)0));
    assert_int_equal(rk_attn_kind_fields((rk_kind)0), 0);
    EINV(rk_attn_create(NULL, &c));
    EINV(rk_attn_create(&p, NULL));
    rk_attn_destroy(NULL);
    assert_null(rk_attn_get_config(NULL));
    assert_null(rk_attn_get_info(NULL));
    assert_int_equal(rk_attn_bytes(NULL), 0);
    assert_int_equal(rk_attn_saved_len(NULL), 0);
    assert_int_equal(rk_attn_feature_dim(NULL), 0);
    assert_null(rk_attn_proj(NULL, &sz, &sz));
    assert_rk_ok(rk_attn_create(&p, &c));
    EINV(rk_attn_execute(NULL, &m, &m, &m, &m, RK_ALL_KEYS));
    EINV(rk_attn_execute(p, NULL, &m, &m, &m, RK_ALL_KEYS));
    EINV(rk_attn_execute(p, &m, &m, &m, NULL, RK_ALL_KEYS));
    EINV(rk_attn_execute_d(NULL, &md, &md, &md, &md, RK_ALL_KEYS));
    EINV(rk_attn_execute_d(p, &md, NULL, &md, &md, RK_ALL_KEYS));
    EINV(rk_attn_execute_batch(NULL, &t, &t, &t, &t, NULL));
    EINV(rk_attn_execute_batch(p, &t, &t, NULL, &t, NULL));
    EINV(rk_attn_execute_batch_d(NULL, &td, &td, &td, &td, NULL));
    EINV(rk_attn_execute_batch_d(p, &td, &td, &td, NULL, NULL));
    EINV(rk_attn_forward(NULL, &m, &m, &m, &m, RK_ALL_KEYS, f));
    EINV(rk_attn_forward(p, &m, &m, &m, NULL, RK_ALL_KEYS, f));
    EINV(rk_attn_forward_d(NULL, &md, &md, &md, &md, RK_ALL_KEYS, x));
    EINV(rk_attn_forward_batch(NULL, &t, &t, &t, &t, NULL, f));
    EINV(rk_attn_forward_batch_d(p, NULL, &td, &td, &td, NULL, x));
    EINV(rk_attn_backward(NULL, &m, &m, &m, &m, f, &m, &m, &m, &m, RK_ALL_KEYS));
    EINV(rk_attn_backward(p, &m, &m, &m, &m, f, NULL, &m, &m, &m, RK_ALL_KEYS));
    EINV(rk_attn_backward_d(p, &md, &md, &md, &md, x, &md, &md, NULL, &md, RK_ALL_KEYS));
    EINV(rk_attn_backward_batch(p, &t, &t, &t, &t, f, &t, NULL, &t, &t, NULL));
    EINV(rk_attn_backward_batch_d(NULL, &td, &td, &td, &td, x, &td, &td, &td, &td, NULL));
    EINV(rk_attn_features_d(NULL, &md, NULL, &md));
    EINV(rk_attn_features_d(p, NULL, NULL, &md));
    EINV(rk_attn_features_d(p, &md, NULL, NULL));
    EINV(rk_attn_proj_save(NULL, "w.npy"));
    EINV(rk_attn_proj_save(p, NULL));
    EINV(rk_attn_proj_load(NULL, 2, &m));
    EINV(rk_attn_proj_load("w.npy", 2, NULL));
    /* sequence parallelism (issue 18) */
    EINV(rk_attn_merge(NULL, f, &m, f));
    EINV(rk_attn_merge(&m, NULL, &m, f));
    EINV(rk_attn_merge_d(&md, x, NULL, x));
    EINV(rk_attn_merge_d(&md, x, &md, NULL));
    rk_kv_state ks = { 0 };
    EINV(rk_kv_state_alloc(NULL, p));
    EINV(rk_kv_state_alloc(&ks, NULL));
    rk_kv_state_free(NULL);
    rk_kv_state_clear(NULL);
    EINV(rk_kv_state_merge(NULL, &ks));
    EINV(rk_kv_state_merge(&ks, NULL));
    EINV(rk_attn_kv_reduce(NULL, &m, &m, RK_ALL_KEYS, NULL, &ks));
    EINV(rk_attn_kv_reduce(p, &m, &m, RK_ALL_KEYS, NULL, NULL));
    EINV(rk_attn_kv_reduce_d(p, NULL, &md, RK_ALL_KEYS, NULL, &ks));
    EINV(rk_attn_execute_state(NULL, &m, &m, &m, &m, RK_ALL_KEYS, NULL, NULL));
    EINV(rk_attn_execute_state(p, &m, &m, &m, NULL, RK_ALL_KEYS, NULL, NULL));
    EINV(rk_attn_execute_state_d(p, &md, NULL, &md, &md, RK_ALL_KEYS, NULL, NULL));
    rk_attn_state *st = NULL;
    EINV(rk_attn_state_create(NULL, p));
    EINV(rk_attn_state_create(&st, NULL));
    rk_attn_state_destroy(NULL);
    rk_attn_state_reset(NULL);
    EINV(rk_attn_state_step(NULL, f, f, f, f));
    EINV(rk_attn_state_step_d(NULL, x, x, x, x));
    assert_rk_ok(rk_attn_state_create(&st, p));
    EINV(rk_attn_state_step(st, f, NULL, f, f));
    EINV(rk_attn_state_step_d(st, x, x, x, NULL));
    rk_attn_state_destroy(st);
    rk_attn_destroy(p);
}

/* Every exported symbol has a line above. */
static void test_list_complete(void **state)
{
    (void)state;
    char so[600], cmd[800];
    snprintf(so, sizeof so, "%s", RK_CLI_PATH);
    char *slash = strrchr(so, '/');
    assert_non_null(slash);
    snprintf(slash + 1, sizeof so - (size_t)(slash + 1 - so), "libropekit.so");
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s'", so);
    FILE *pf = popen(cmd, "r");
    assert_non_null(pf);
    char line[512];
    while (fgets(line, sizeof line, pf)) {
        char addr[64], type[8], name[400];
        if (sscanf(line, "%63s %7s %399s", addr, type, name) != 3) continue;
        int found = 0;
        for (size_t i = 0; i < sizeof covered / sizeof covered[0] && !found; i++)
            found = strcmp(covered[i], name) == 0;
        if (!found) fail_msg("%s is exported but test_null.c does not call it with NULL", name);
    }
    assert_int_equal(pclose(pf), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_function),
        cmocka_unit_test(test_list_complete),
    };
    return cmocka_run_group_tests_name("null", tests, NULL, NULL);
}
