/*
 * ttl_layout.c - what a set with a TTL costs with the expiry index rows in
 * LMDB's main database (under a first byte of their own, as the entries are:
 * lmc's format 3) against the named database "expiry" (format 2), the
 * measurement behind that change.  Raw LMDB only, lmc's flags, side by side
 * in alternating rounds (bench/RESULTS.md, "Where lmc still spends time").
 *
 *   ttl_layout [DIR] [--seconds S] [--keys N] [--rounds R] [--ops N]
 *                                               (make bench-ttl-layout)
 *
 * Each layout gets a fresh environment with N keys like
 * "view//api/items?page=1234" (first byte 0xFF, as lmc stores them), values
 * of 124 bytes (100 B plus lmc's 24-byte header) and one index row per key:
 * BE64(expiry time) followed by the stored key, with a first byte 0xFE in
 * the main-database layout.  A set with a TTL then does what lmc's does: put
 * the entry, delete its old row, insert its new one, commit.  With --ops,
 * each layout runs that many sets once instead of for S seconds, for
 * instruction counts under callgrind.
 */
#define _GNU_SOURCE 1
#include <getopt.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAP_SIZE ((size_t)1 << 31)
#define VALUE_BYTES 124
#define TTL_MS 60000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check(int rc, const char *what)
{
    if (rc) {
        fprintf(stderr, "ttl_layout: %s: %s\n", what, mdb_strerror(rc));
        exit(1);
    }
}

/* An environment directory holds data.mdb and lock.mdb: remove them and,
 * with rmdir_too, the directory. */
static void env_remove(const char *path, int rmdir_too)
{
    char f[600];
    snprintf(f, sizeof f, "%s/data.mdb", path);
    unlink(f);
    snprintf(f, sizeof f, "%s/lock.mdb", path);
    unlink(f);
    if (rmdir_too)
        rmdir(path);
}

typedef struct layout {
    const char *name;
    int in_main; /* rows in the main database, else in "expiry" */
    MDB_env *env;
    MDB_dbi main, rows;
    uint64_t *exp; /* each key's current expiry time */
} layout;

static size_t stored_key(char *k, uint32_t i)
{
    k[0] = (char)0xFF;
    return 1 + (size_t)sprintf(k + 1, "view//api/items?page=%u", i);
}

static size_t row_key(unsigned char *r, int in_main, uint64_t exp, const char *k, size_t kl)
{
    size_t o = 0;
    if (in_main)
        r[o++] = 0xFE;
    for (int i = 7; i >= 0; i--)
        r[o++] = (unsigned char)(exp >> (i * 8));
    memcpy(r + o, k, kl);
    return o + kl;
}

static void layout_open(layout *l, const char *dir, uint32_t keys)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, l->name);
    env_remove(path, 0);
    if (mkdir(path, 0700) != 0 && access(path, W_OK) != 0) {
        perror("ttl_layout: mkdir");
        exit(1);
    }
    check(mdb_env_create(&l->env), "mdb_env_create");
    mdb_env_set_mapsize(l->env, MAP_SIZE);
    mdb_env_set_maxdbs(l->env, 4);
    check(mdb_env_open(l->env, path, MDB_NOTLS | MDB_NOSYNC | MDB_WRITEMAP, 0600),
          "mdb_env_open");
    MDB_txn *t;
    check(mdb_txn_begin(l->env, NULL, 0, &t), "mdb_txn_begin");
    check(mdb_dbi_open(t, NULL, 0, &l->main), "mdb_dbi_open");
    if (l->in_main)
        l->rows = l->main;
    else
        check(mdb_dbi_open(t, "expiry", MDB_CREATE, &l->rows), "mdb_dbi_open (expiry)");
    check(mdb_txn_commit(t), "mdb_txn_commit");
    l->exp = calloc(keys, sizeof *l->exp);
    if (!l->exp) {
        fprintf(stderr, "ttl_layout: out of memory\n");
        exit(1);
    }
    char k[64], v[VALUE_BYTES];
    unsigned char r[80];
    memset(v, 'v', sizeof v);
    for (uint32_t i = 0; i < keys; i += 1000) {
        check(mdb_txn_begin(l->env, NULL, 0, &t), "mdb_txn_begin");
        for (uint32_t j = i; j < keys && j < i + 1000; j++) {
            size_t kl = stored_key(k, j);
            MDB_val kv = {kl, k}, vv = {sizeof v, v}, empty = {0, NULL};
            check(mdb_put(t, l->main, &kv, &vv, 0), "mdb_put (load)");
            l->exp[j] = 1000000 + TTL_MS + j;
            MDB_val rv = {row_key(r, l->in_main, l->exp[j], k, kl), r};
            check(mdb_put(t, l->rows, &rv, &empty, 0), "mdb_put (load row)");
        }
        check(mdb_txn_commit(t), "mdb_txn_commit (load)");
    }
}

/* Sets with a TTL of random keys, for `seconds` or for `ops` of them. */
static double layout_run(layout *l, uint32_t keys, double seconds, uint64_t ops,
                         uint64_t *clock_ms, uint64_t *rng)
{
    char k[64], v[VALUE_BYTES];
    unsigned char r[80];
    memset(v, 'w', sizeof v);
    uint64_t done = 0;
    double t0 = now_s(), t1 = t0;
    while (ops ? done < ops : t1 - t0 < seconds) {
        for (int b = 0; b < 64 && (!ops || done < ops); b++, done++) {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            uint32_t i = (uint32_t)(*rng % keys);
            (*clock_ms)++;
            MDB_txn *t;
            check(mdb_txn_begin(l->env, NULL, 0, &t), "mdb_txn_begin");
            size_t kl = stored_key(k, i);
            MDB_val kv = {kl, k}, vv = {sizeof v, v}, empty = {0, NULL};
            check(mdb_put(t, l->main, &kv, &vv, 0), "mdb_put");
            MDB_val old = {row_key(r, l->in_main, l->exp[i], k, kl), r};
            check(mdb_del(t, l->rows, &old, NULL), "mdb_del (row)");
            l->exp[i] = *clock_ms + TTL_MS;
            MDB_val nw = {row_key(r, l->in_main, l->exp[i], k, kl), r};
            check(mdb_put(t, l->rows, &nw, &empty, 0), "mdb_put (row)");
            check(mdb_txn_commit(t), "mdb_txn_commit");
        }
        t1 = now_s();
    }
    return (double)done / (t1 - t0);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    double seconds = 1.0;
    uint32_t keys = 100000;
    unsigned rounds = 5;
    uint64_t ops = 0;
    static const struct option longopts[] = {{"seconds", required_argument, NULL, 's'},
                                             {"keys", required_argument, NULL, 'k'},
                                             {"rounds", required_argument, NULL, 'r'},
                                             {"ops", required_argument, NULL, 'o'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 's':
            seconds = atof(optarg);
            break;
        case 'k':
            keys = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            rounds = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'o':
            ops = strtoull(optarg, NULL, 10);
            break;
        default:
            fprintf(stderr, "usage: %s [DIR] [--seconds S] [--keys N] [--rounds R] [--ops N]\n",
                    argv[0]);
            return ch == 'h' ? 0 : 2;
        }
    }
    if (keys == 0 || rounds == 0 || rounds > 100 || seconds <= 0) {
        fprintf(stderr, "ttl_layout: --keys, --rounds (1-100) and --seconds must be positive\n");
        return 2;
    }
    char dir[256];
    if (optind < argc) {
        snprintf(dir, sizeof dir, "%s", argv[optind]);
    } else {
        snprintf(dir, sizeof dir, "/dev/shm/lmc-ttl-layout-XXXXXX");
        if (!mkdtemp(dir)) {
            perror("ttl_layout: mkdtemp");
            return 1;
        }
    }
    layout ls[2] = {{"rows-in-named-db", 0, NULL, 0, 0, NULL},
                    {"rows-in-main-db", 1, NULL, 0, 0, NULL}};
    for (int i = 0; i < 2; i++)
        layout_open(&ls[i], dir, keys);
    printf("sets with a TTL per second, %u keys, %s, %s\n", keys,
           mdb_version(NULL, NULL, NULL), dir);
    uint64_t clock_ms[2] = {2000000, 2000000}, rng[2] = {88172645463325252u, 88172645463325252u};
    if (ops) {
        for (int i = 0; i < 2; i++) {
            double t0 = now_s();
            layout_run(&ls[i], keys, 0, ops, &clock_ms[i], &rng[i]);
            printf("%-18s %llu sets in %.3f s\n", ls[i].name, (unsigned long long)ops,
                   now_s() - t0);
        }
    } else {
        double rate[2][100];
        for (unsigned r = 0; r < rounds; r++) {
            /* Alternate which layout goes first, so drift hits both. */
            for (int j = 0; j < 2; j++) {
                int i = (int)((r + (unsigned)j) % 2);
                rate[i][r] = layout_run(&ls[i], keys, seconds, 0, &clock_ms[i], &rng[i]);
            }
            printf("round %u: %-18s %7.1f k   %-18s %7.1f k   main/named %.2f\n", r + 1,
                   ls[0].name, rate[0][r] / 1e3, ls[1].name, rate[1][r] / 1e3,
                   rate[1][r] / rate[0][r]);
        }
        for (int i = 0; i < 2; i++)
            qsort(rate[i], rounds, sizeof rate[i][0], cmp_double);
        printf("median: %-18s %7.1f k   %-18s %7.1f k   main/named %.2f\n", ls[0].name,
               rate[0][rounds / 2] / 1e3, ls[1].name, rate[1][rounds / 2] / 1e3,
               rate[1][rounds / 2] / rate[0][rounds / 2]);
    }
    for (int i = 0; i < 2; i++) {
        mdb_env_close(ls[i].env);
        free(ls[i].exp);
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, ls[i].name);
        env_remove(path, 1);
    }
    if (optind >= argc)
        rmdir(dir);
    return 0;
}
