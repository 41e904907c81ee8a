/*
 * fuzz_model.c - libFuzzer target: the fuzzer's input chooses the key pool
 * and a sequence of operations, which model.h runs against the library and
 * checks one by one.  Built and run by `make fuzz` (clang, with ASan and
 * UBSan); a mismatch with the model aborts with a message, so the fuzzer
 * keeps the input that caused it.
 *
 * One cache serves every input: it is cleared before each, which is what a
 * real cache that lives for days sees too.
 */
#include "../../lib/fmacros.h"

#include <stdio.h>
#include <stdlib.h>

#define MODEL_FAIL(...) (fprintf(stderr, "model mismatch: " __VA_ARGS__), \
                         fputc('\n', stderr), abort())
#include "../model.h"

static lmc *g_cache;

static void open_once(void)
{
    char dir[] = "/dev/shm/lmc-fuzz-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
    char path[64];
    snprintf(path, sizeof path, "%s/cache", dir);
    lmc_options o;
    memset(&o, 0, sizeof o);
    o.map_size = 64u << 20;
    o.default_ttl_ms = MODEL_DEFAULT_TTL;
    if (lmc_open(&g_cache, path, &o) != 0) {
        fprintf(stderr, "lmc_open %s: %s\n", path, lmc_errmsg(NULL));
        abort();
    }
    lmc__test_set_clock(model_clock);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_cache)
        open_once();
    if (lmc_clear(g_cache) != 0)
        MODEL_FAIL("clear: %s", lmc_errmsg(g_cache));
    model_src s = {data, size, 0, 0};
    model m;
    model_init(&m, g_cache, &s);
    while (s.pos < s.len)
        model_step(&m, &s);
    model_check_all(&m);
    model_free(&m);
    return 0;
}
