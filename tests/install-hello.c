/* install-hello.c - built by `make test-install` against an installed copy
 * of lmc through pkg-config, to prove the header, the shared library and the
 * .pc file work together. */
#include <lmc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    char dir[] = "/dev/shm/lmc-install-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[64];
    snprintf(path, sizeof path, "%s/cache", dir);
    lmc_options o = {.map_size = 4u << 20};
    lmc *c;
    int rc = lmc_open(&c, path, &o);
    if (rc) {
        fprintf(stderr, "lmc_open: %s\n", lmc_strerror(rc));
        return 1;
    }
    char buf[16];
    size_t n = 0;
    rc = lmc_set(c, "k", 1, "v", 1, LMC_TTL_NEVER);
    if (rc == 0)
        rc = lmc_get(c, "k", 1, buf, sizeof buf, &n);
    lmc_close(c);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    if (rc || n != 1 || buf[0] != 'v') {
        fprintf(stderr, "round trip failed: %s\n", lmc_strerror(rc));
        return 1;
    }
    printf("lmc %s works\n", lmc_version(NULL, NULL, NULL));
    return 0;
}
