/*
 * test_model.c - seeded random sequences of every write, read, scan, prefix
 * delete and sweep, with a moving fake clock, checked operation by operation
 * against the reference model of model.h.  The seeds are fixed, so a failure
 * repeats; LMC_MODEL_SEEDS and LMC_MODEL_OPS run more of them.
 */
#include "util.h"

#define MODEL_FAIL(...) fail_msg(__VA_ARGS__)
#include "model.h"

static unsigned env_or(const char *name, unsigned dflt)
{
    const char *v = getenv(name);
    return v && *v ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

static void run_seed(tctx *t, uint64_t seed, unsigned ops)
{
    lmc_options o;
    memset(&o, 0, sizeof o);
    o.map_size = 64u << 20;
    o.default_ttl_ms = MODEL_DEFAULT_TTL;
    o.flags = LMC_OPEN_RESET;
    ASSERT_OK(lmc_open(&t->c, t->path, &o));
    model_src s = {NULL, 0, 0, seed * 0x9E3779B97F4A7C15u + 1};
    model m;
    model_init(&m, t->c, &s);
    for (unsigned i = 0; i < ops; i++)
        model_step(&m, &s);
    model_check_all(&m);
    model_free(&m);
    lmc_close(t->c);
    t->c = NULL;
}

static void test_random_operations_match_the_model(void **state)
{
    tctx *t = *state;
    lmc__test_set_clock(model_clock);
    unsigned seeds = env_or("LMC_MODEL_SEEDS", 8), ops = env_or("LMC_MODEL_OPS", 3000);
    for (unsigned seed = 1; seed <= seeds; seed++)
        run_seed(t, seed, ops);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_random_operations_match_the_model, setup_dir,
                                        teardown_dir),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
