/*
 * lmc.c - the admin command line of an lmc cache: read, write, delete and
 * list entries, invalidate a key prefix, clear the cache, describe it.
 *
 * Deploy scripts run "lmc /dev/shm/app del-prefix view//api/" after a
 * release; operators poke at single keys while debugging.  Scripts depend on
 * the exit codes: 0 done, 1 a miss or an operation that did not apply (get of
 * a missing key, add of an existing one, del or touch of a missing one), 2 a
 * usage error or a failure, with the message on stderr.
 *
 * By default the tool never creates a cache: a mistyped path in a deploy
 * script must fail loudly rather than invalidate an empty new cache.
 * --create (with --map-size and --mode) is there for setting one up.
 *
 * verify is the exception to "open, run, close": it looks for damage, and a
 * damaged cache can crash whoever reads it, lmc_open included, so it runs in
 * a child process of the tool and reports a crash of that child as damage.
 * Its exit codes are those of a check: 0 sound, 1 damaged, 2 could not tell.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s PATH COMMAND [ARGS...] [OPTIONS]\n"
            "\n"
            "Commands on the lmc cache in directory PATH:\n"
            "  get KEY                 print the value (raw bytes); exit 1 on a miss\n"
            "  set KEY VALUE           store VALUE ('-' reads it from stdin)\n"
            "  add KEY VALUE           store only if no live entry exists; else exit 1\n"
            "  del KEY                 delete; exit 1 if there was no live entry\n"
            "  del-prefix PREFIX       delete every key starting with PREFIX; print the count\n"
            "  flush-prefix PREFIX     make every key starting with PREFIX miss at once ('': all);\n"
            "                          lmc-sweep deletes them later\n"
            "  incr KEY [DELTA]        add DELTA (default 1, may be negative); print the result\n"
            "  touch KEY MS            give a live entry a new TTL (0: never expire); else exit 1\n"
            "  clear                   delete every entry\n"
            "  ls [PREFIX]             list keys: KEY <tab> TTL left in ms or '-' <tab> bytes\n"
            "  info                    describe the cache\n"
            "  verify [--reset]        check every page of the cache for damage (in a\n"
            "                          child process); exit 0 sound, 1 damaged, 2 could\n"
            "                          not check.  With --reset, a damaged cache that no\n"
            "                          other process uses is recreated empty (exit 0)\n"
            "\n"
            "Options:\n"
            "  --ttl MS                TTL of set, add and of a key incr creates (0: never;\n"
            "                          default: never)\n"
            "  --limit N               ls: list at most N keys\n"
            "  --reset                 verify: recreate a damaged cache, empty\n"
            "  --create                create the cache if it does not exist\n"
            "  --map-size SIZE         with --create: capacity, e.g. 64M or 1G (default 1G)\n"
            "  --mode OCTAL            with --create: file permissions, e.g. 0660 (default 0600)\n"
            "  --                      everything after this is an argument, not an option\n"
            "  -h, --help              show this help and exit\n"
            "  -V, --version           show the version and exit\n"
            "\n"
            "Options may come anywhere; negative numbers are arguments.  Keys in ls\n"
            "output show a backslash as \\\\ and other bytes outside printable ASCII as\n"
            "\\xHH.\n"
            "\n"
            "Exit status: 0 done; 1 a miss or not done (see above; for verify: damage\n"
            "found and not reset); 2 a usage error or a failure.\n",
            tool_name);
}

/* ------------------------------------------------------------------------ */
/* Arguments                                                                */
/* ------------------------------------------------------------------------ */

enum { O_TTL = 1, O_LIMIT = 2, O_RESET = 4 };

typedef struct config {
    const char *path;
    const struct command *cmd;
    char **args; /* the command's operands */
    int nargs;
    int64_t ttl_ms;
    int have_ttl;
    uint64_t limit;
    int have_limit;
    int reset;
    int create;
    uint64_t map_size;
    unsigned mode;
    int have_create_opts;
    int64_t delta;     /* incr */
    uint64_t touch_ms; /* touch */
} config;

typedef int (*cmd_fn)(lmc *c, const config *cfg);

typedef struct command {
    const char *name;
    int min_args, max_args;
    unsigned options; /* O_* accepted */
    int read_only;    /* may open the cache read-only */
    cmd_fn run;
    const char *synopsis;
} command;

static const command *find_command(const char *name);

/*
 * Check the operands before the cache is opened, so that a usage error never
 * leaves work half done.  Keys and prefixes are the bytes of the argument;
 * an empty one gets a usage error, which says more than LMC_EINVAL would.
 */
static void check_operands(config *cfg)
{
    const char *name = cfg->cmd->name;
    /* A flush takes any prefix: the empty one flushes everything, and one
     * longer than any key matches nothing. */
    int keyed = strcmp(name, "clear") != 0 && strcmp(name, "info") != 0 &&
                strcmp(name, "ls") != 0 && strcmp(name, "verify") != 0 &&
                strcmp(name, "flush-prefix") != 0;
    if (keyed) {
        int prefix = strcmp(name, "del-prefix") == 0;
        const char *k = cfg->args[0];
        if (!*k)
            tool_usage_error("%s must not be empty%s", prefix ? "PREFIX" : "KEY",
                             prefix ? " (use 'clear' to delete everything)" : "");
        if (strlen(k) > LMC_MAX_KEY)
            tool_usage_error("%s is longer than %u bytes", prefix ? "PREFIX" : "KEY",
                             LMC_MAX_KEY);
    }
    cfg->delta = 1;
    if (strcmp(name, "incr") == 0 && cfg->nargs > 1 &&
        tool_parse_i64(cfg->args[1], &cfg->delta))
        tool_usage_error("DELTA must be an integer that fits in 64 bits, not '%s'",
                         cfg->args[1]);
    if (strcmp(name, "touch") == 0 && tool_parse_u64(cfg->args[1], 0, INT64_MAX, &cfg->touch_ms))
        tool_usage_error("MS must be milliseconds (0 for never), not '%s'", cfg->args[1]);
}

/* Fill cfg from the command line: the cache path, the command, its operands
 * and the options, all checked before anything is opened.  Usage errors
 * exit 2; --help and --version exit 0. */
static void parse_args(int argc, char **argv, config *cfg)
{
    enum { OPT_TTL = 256, OPT_LIMIT, OPT_CREATE, OPT_MAPSIZE, OPT_MODE, OPT_RESET };
    static const struct option longopts[] = {
        {"ttl", required_argument, NULL, OPT_TTL},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"create", no_argument, NULL, OPT_CREATE},
        {"reset", no_argument, NULL, OPT_RESET},
        {"map-size", required_argument, NULL, OPT_MAPSIZE},
        {"mode", required_argument, NULL, OPT_MODE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    memset(cfg, 0, sizeof *cfg);
    /* Operands are collected in order; options may sit anywhere between
     * them.  getopt_long runs in "stop at the first operand" mode ('+') and
     * is called only when the next word is an option, so a negative number
     * (incr KEY -1) or a lone '-' (stdin) is never mistaken for one. */
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!pos) {
        fprintf(stderr, "%s: out of memory\n", tool_name);
        exit(TOOL_EXIT_ERROR);
    }
    int npos = 0, only_operands = 0;
    uint64_t v;
    opterr = 0;
    optind = 1;
    while (optind < argc) {
        const char *a = argv[optind];
        if (only_operands || a[0] != '-' || a[1] == '\0' || tool_is_negative_number(a)) {
            pos[npos++] = argv[optind++];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_operands = 1;
            optind++;
            continue;
        }
        int ch = getopt_long(argc, argv, "+:hV", longopts, NULL);
        switch (ch) {
        case -1: /* cannot happen: the word starts with '-' */
            pos[npos++] = argv[optind++];
            break;
        case 'h':
            usage(stdout);
            exit(tool_flush_stdout() ? TOOL_EXIT_ERROR : TOOL_EXIT_OK);
        case 'V':
            tool_print_version();
            exit(tool_flush_stdout() ? TOOL_EXIT_ERROR : TOOL_EXIT_OK);
        case OPT_TTL:
            if (tool_parse_u64(optarg, 0, INT64_MAX, &v))
                tool_usage_error("--ttl needs milliseconds (0 for never), not '%s'", optarg);
            cfg->ttl_ms = (int64_t)v;
            cfg->have_ttl = 1;
            break;
        case OPT_LIMIT:
            if (tool_parse_u64(optarg, 1, UINT64_MAX, &v))
                tool_usage_error("--limit needs a positive count, not '%s'", optarg);
            cfg->limit = v;
            cfg->have_limit = 1;
            break;
        case OPT_CREATE:
            cfg->create = 1;
            break;
        case OPT_RESET:
            cfg->reset = 1;
            break;
        case OPT_MAPSIZE:
            if (tool_parse_size(optarg, &cfg->map_size) || cfg->map_size == 0)
                tool_usage_error("--map-size needs a size such as 64M or 1G, not '%s'", optarg);
            cfg->have_create_opts = 1;
            break;
        case OPT_MODE: {
            char *end;
            unsigned long m = strtoul(optarg, &end, 8);
            if (optarg[0] < '0' || optarg[0] > '7' || *end || m > 0777)
                tool_usage_error("--mode needs octal permission bits such as 0660, not '%s'",
                                 optarg);
            cfg->mode = (unsigned)m;
            cfg->have_create_opts = 1;
            break;
        }
        default:
            free(pos);
            tool_option_error(argv, ch);
        }
    }
    if (npos < 1) {
        free(pos);
        tool_usage_error("missing the cache PATH");
    }
    if (npos < 2) {
        free(pos);
        tool_usage_error("missing a COMMAND");
    }
    cfg->path = pos[0];
    cfg->cmd = find_command(pos[1]);
    if (!cfg->cmd) {
        const char *name = pos[1];
        free(pos);
        tool_usage_error("unknown command '%s'", name);
    }
    const command *cmd = cfg->cmd;
    /* The operands point into argv, which outlives the program's work. */
    cfg->nargs = npos - 2;
    memmove(pos, pos + 2, (size_t)cfg->nargs * sizeof *pos);
    cfg->args = pos;
    if (cfg->nargs < cmd->min_args || cfg->nargs > cmd->max_args) {
        free(pos);
        tool_usage_error("%s %s to '%s' (usage: %s)",
                         cfg->nargs < cmd->min_args ? "too few" : "too many",
                         cmd->max_args ? "arguments" : "arguments: it takes none", cmd->name,
                         cmd->synopsis);
    }
    if (cfg->have_ttl && !(cmd->options & O_TTL)) {
        free(pos);
        tool_usage_error("--ttl does not apply to '%s'", cmd->name);
    }
    if (cfg->have_limit && !(cmd->options & O_LIMIT)) {
        free(pos);
        tool_usage_error("--limit does not apply to '%s'", cmd->name);
    }
    if (cfg->reset && !(cmd->options & O_RESET)) {
        free(pos);
        tool_usage_error("--reset does not apply to '%s'", cmd->name);
    }
    if (cfg->create && strcmp(cmd->name, "verify") == 0) {
        free(pos);
        tool_usage_error("--create does not apply to 'verify'");
    }
    if (cfg->have_create_opts && !cfg->create) {
        free(pos);
        tool_usage_error("--map-size and --mode only apply with --create");
    }
    check_operands(cfg);
}

/* ------------------------------------------------------------------------ */
/* Commands                                                                 */
/* ------------------------------------------------------------------------ */

/* Each command returns the exit status: 0 done, 1 a miss or not applied,
 * 2 a failure (already reported). */

/* get KEY: the raw value on stdout, nothing added; a miss prints nothing. */
static int cmd_get(lmc *c, const config *cfg)
{
    const char *key = cfg->args[0];
    void *val = NULL;
    size_t vlen = 0;
    int rc = lmc_get_alloc(c, key, strlen(key), &val, &vlen);
    if (rc == LMC_NOTFOUND)
        return TOOL_EXIT_NOTDONE;
    if (rc) {
        tool_report(c, rc, "get %s", key);
        return TOOL_EXIT_ERROR;
    }
    size_t w = fwrite(val, 1, vlen, stdout);
    lmc_free(val);
    if (w != vlen || tool_flush_stdout())
        return TOOL_EXIT_ERROR;
    return TOOL_EXIT_OK;
}

/*
 * Read a whole value from stdin, binary-safe.  Reading stops one byte past
 * what the map could ever hold, so that `set KEY - < /dev/zero` fails with a
 * message instead of eating all memory.
 */
static int read_stdin(lmc *c, char **out, size_t *len)
{
    lmc_info info;
    uint64_t limit = UINT64_MAX;
    if (lmc_info_get(c, &info) == 0 && info.map_size)
        limit = info.map_size;
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fprintf(stderr, "%s: out of memory reading stdin\n", tool_name);
        return -1;
    }
    for (;;) {
        if (n == cap) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fprintf(stderr, "%s: out of memory reading stdin\n", tool_name);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, stdin);
        n += r;
        if ((uint64_t)n > limit) {
            free(buf);
            fprintf(stderr, "%s: the value on stdin is larger than the whole cache (%" PRIu64
                            " bytes)\n", tool_name, limit);
            return -1;
        }
        if (r == 0) {
            if (ferror(stdin)) {
                free(buf);
                fprintf(stderr, "%s: reading stdin failed\n", tool_name);
                return -1;
            }
            break;
        }
    }
    *out = buf;
    *len = n;
    return 0;
}

/* set and add: VALUE is the argument's bytes, or stdin for "-". */
static int store(lmc *c, const config *cfg, int add)
{
    const char *key = cfg->args[0];
    const char *val = cfg->args[1];
    size_t vlen = strlen(val);
    char *buf = NULL;
    if (strcmp(val, "-") == 0) {
        if (read_stdin(c, &buf, &vlen))
            return TOOL_EXIT_ERROR;
        val = buf;
    }
    int64_t ttl = cfg->have_ttl ? cfg->ttl_ms : LMC_TTL_NEVER;
    int rc = add ? lmc_add(c, key, strlen(key), val, vlen, ttl)
                 : lmc_set(c, key, strlen(key), val, vlen, ttl);
    free(buf);
    if (add && rc == LMC_EXISTS)
        return TOOL_EXIT_NOTDONE;
    if (rc) {
        tool_report(c, rc, "%s %s", add ? "add" : "set", key);
        return TOOL_EXIT_ERROR;
    }
    return TOOL_EXIT_OK;
}

static int cmd_set(lmc *c, const config *cfg)
{
    return store(c, cfg, 0);
}

static int cmd_add(lmc *c, const config *cfg)
{
    return store(c, cfg, 1);
}

static int cmd_del(lmc *c, const config *cfg)
{
    const char *key = cfg->args[0];
    int rc = lmc_delete(c, key, strlen(key));
    if (rc == LMC_NOTFOUND)
        return TOOL_EXIT_NOTDONE;
    if (rc) {
        tool_report(c, rc, "del %s", key);
        return TOOL_EXIT_ERROR;
    }
    return TOOL_EXIT_OK;
}

/* del-prefix PREFIX: prints the number removed, so that a deploy script can
 * log what its invalidation did. */
static int cmd_del_prefix(lmc *c, const config *cfg)
{
    const char *prefix = cfg->args[0];
    uint64_t removed = 0;
    int rc = lmc_delete_prefix(c, prefix, strlen(prefix), &removed);
    if (rc) {
        /* Part of the work may be done; say how much. */
        tool_report(c, rc, "del-prefix %s (after removing %" PRIu64 " entries)", prefix,
                    removed);
        return TOOL_EXIT_ERROR;
    }
    printf("%" PRIu64 "\n", removed);
    return tool_flush_stdout() ? TOOL_EXIT_ERROR : TOOL_EXIT_OK;
}

/* flush-prefix PREFIX: every entry under PREFIX is gone at once for every
 * process, whatever their number; lmc-sweep deletes them later.  Prints
 * nothing: there is no count to give without the delete. */
static int cmd_flush_prefix(lmc *c, const config *cfg)
{
    const char *prefix = cfg->args[0];
    int rc = lmc_flush_prefix(c, prefix, strlen(prefix));
    if (rc) {
        tool_report(c, rc, "flush-prefix %s", prefix);
        return TOOL_EXIT_ERROR;
    }
    return TOOL_EXIT_OK;
}

/* incr KEY [DELTA]: prints the new value; LMC_ENOTNUM and LMC_ERANGE are
 * failures (2), not misses. */
static int cmd_incr(lmc *c, const config *cfg)
{
    const char *key = cfg->args[0];
    int64_t result = 0;
    int64_t ttl = cfg->have_ttl ? cfg->ttl_ms : LMC_TTL_NEVER;
    int rc = lmc_incr(c, key, strlen(key), cfg->delta, &result, ttl);
    if (rc) {
        tool_report(c, rc, "incr %s", key);
        return TOOL_EXIT_ERROR;
    }
    printf("%" PRId64 "\n", result);
    return tool_flush_stdout() ? TOOL_EXIT_ERROR : TOOL_EXIT_OK;
}

static int cmd_touch(lmc *c, const config *cfg)
{
    const char *key = cfg->args[0];
    uint64_t ms = cfg->touch_ms;
    int rc = lmc_touch(c, key, strlen(key), ms == 0 ? LMC_TTL_NEVER : (int64_t)ms);
    if (rc == LMC_NOTFOUND)
        return TOOL_EXIT_NOTDONE;
    if (rc) {
        tool_report(c, rc, "touch %s", key);
        return TOOL_EXIT_ERROR;
    }
    return TOOL_EXIT_OK;
}

static int cmd_clear(lmc *c, const config *cfg)
{
    (void)cfg;
    int rc = lmc_clear(c);
    if (rc) {
        tool_report(c, rc, "clear");
        return TOOL_EXIT_ERROR;
    }
    return TOOL_EXIT_OK;
}

typedef struct ls_ctx {
    FILE *out; /* a memory stream, see cmd_ls */
    uint64_t limit, n;
    int64_t now_ms;
} ls_ctx;

/* lmc_scan callback: one "KEY<tab>TTL<tab>BYTES" line into the memory
 * stream; returns 1 to stop the scan once --limit lines are written. */
static int ls_entry(void *arg, const lmc_value *e)
{
    ls_ctx *x = arg;
    tool_escape_bytes(x->out, e->key, e->klen);
    if (e->expires_at_ms) {
        int64_t left = e->expires_at_ms - x->now_ms;
        fprintf(x->out, "\t%" PRId64, left > 0 ? left : 0);
    } else {
        fputs("\t-", x->out);
    }
    fprintf(x->out, "\t%zu\n", e->len);
    x->n++;
    return x->limit && x->n >= x->limit ? 1 : 0;
}

/*
 * ls collects its output in memory and prints it after the scan.  The scan
 * callback runs inside a read transaction; printing from there to a pipe
 * that nobody reads (lmc ls | less, then a coffee break) would hold that
 * snapshot open, pin every page freed meanwhile and fill the map under the
 * workers' feet.
 */
static int cmd_ls(lmc *c, const config *cfg)
{
    const char *prefix = cfg->nargs ? cfg->args[0] : "";
    ls_ctx x;
    memset(&x, 0, sizeof x);
    char *buf = NULL;
    size_t len = 0;
    x.out = open_memstream(&buf, &len);
    if (!x.out) {
        fprintf(stderr, "%s: out of memory\n", tool_name);
        return TOOL_EXIT_ERROR;
    }
    x.limit = cfg->have_limit ? cfg->limit : 0;
    x.now_ms = tool_real_ms();
    int rc = lmc_scan(c, prefix, strlen(prefix), ls_entry, &x);
    int bad = ferror(x.out);
    fclose(x.out);
    if (rc < 0 || bad) {
        if (bad)
            fprintf(stderr, "%s: out of memory listing keys\n", tool_name);
        else
            tool_report(c, rc, "ls");
        free(buf);
        return TOOL_EXIT_ERROR;
    }
    size_t w = fwrite(buf, 1, len, stdout);
    free(buf);
    if (w != len || tool_flush_stdout())
        return TOOL_EXIT_ERROR;
    return TOOL_EXIT_OK;
}

/* info: lmc_info_get() and the stats an operator checks first, as
 * name:value lines like lmc-stats. */
static int cmd_info(lmc *c, const config *cfg)
{
    (void)cfg;
    lmc_info info;
    lmc_stat st;
    int rc = lmc_info_get(c, &info);
    if (rc == 0)
        rc = lmc_stats(c, &st);
    if (rc) {
        tool_report(c, rc, "info");
        return TOOL_EXIT_ERROR;
    }
    char created[32] = "?";
    time_t secs = (time_t)(info.created_ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm))
        strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("path:");
    tool_escape_bytes(stdout, info.path, strlen(info.path));
    printf("\nlmc_version:%s\nlmdb_version:%s\nformat_version:%u\ncreated:%s\ncreated_ms:%" PRId64
           "\non_tmpfs:%d\nmap_size:%" PRIu64 "\npage_size:%" PRIu64 "\nmax_readers:%u\n"
           "entries:%" PRIu64 "\nentries_with_ttl:%" PRIu64 "\nkey_bytes:%" PRIu64
           "\nvalue_bytes:%" PRIu64 "\nfill:%.6f\nhit_ratio:%.6f\nprocesses:%" PRIu64
           "\nreaders:%" PRIu64 "\nreaders_stale:%" PRIu64 "\nreader_lag:%" PRIu64 "\n",
           lmc_version(NULL, NULL, NULL), info.lmdb_version, info.format_version, created,
           info.created_ms, info.on_tmpfs, info.map_size, info.page_size, info.max_readers,
           st.entries, st.entries_with_ttl, st.key_bytes, st.value_bytes, st.fill,
           st.counters.gets ? (double)st.counters.hits / (double)st.counters.gets : 0.0,
           st.processes, st.readers, st.readers_stale, st.reader_lag);
    return tool_flush_stdout() ? TOOL_EXIT_ERROR : TOOL_EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* verify                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * The pid of a process that has the cache's LMDB environment open, 0 if
 * none does, -1 if that cannot be told.  LMDB holds a shared fcntl lock on
 * the first byte of lock.mdb in every process that has the environment
 * open (that is how it tells whether it is the first user), and F_GETLK
 * shows it to any other process.  This counts read-only users too, which
 * lmc_stats_processes() does not, and needs no handle, which a cache too
 * damaged to open cannot give.  Closing the descriptor drops every fcntl
 * lock this process holds on the file, so no handle of this process may
 * have the cache open when this is called.
 */
static pid_t env_user(const char *path)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/lock.mdb", path);
    int fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    int rc = fcntl(fd, F_GETLK, &fl);
    close(fd);
    if (rc != 0)
        return -1;
    return fl.l_type == F_UNLCK ? 0 : (fl.l_pid > 0 ? fl.l_pid : -1);
}

/* Recreate the damaged cache empty with LMC_OPEN_RESET and the given
 * capacity (the cache's own, so that a reset does not resize it), if no
 * other process has it open: with no other user the library removes the
 * damaged files before LMDB reads any of them, while a cache in use would
 * be emptied in place, reading the damaged pages, under processes that go
 * on using it. */
static int verify_reset(const config *cfg, uint64_t map_size)
{
    pid_t user = env_user(cfg->path);
    if (user != 0) {
        if (user > 0)
            fprintf(stderr, "%s: %s not reset: another process (pid %ld) has it open; stop "
                            "every process that uses it, then run this again\n", tool_name,
                    cfg->path, (long)user);
        else
            fprintf(stderr, "%s: %s not reset: cannot tell whether another process has it "
                            "open (%s/lock.mdb: %s)\n", tool_name, cfg->path, cfg->path,
                    strerror(errno));
        return TOOL_EXIT_NOTDONE;
    }
    lmc_options oo;
    memset(&oo, 0, sizeof oo);
    oo.map_size = map_size;
    oo.flags = LMC_OPEN_RESET;
    lmc *c = NULL;
    if (tool_open(&c, cfg->path, &oo) != 0)
        return TOOL_EXIT_ERROR;
    lmc_info info;
    uint64_t size = lmc_info_get(c, &info) == 0 ? info.map_size : map_size;
    lmc_close(c);
    fprintf(stderr, "%s: %s was reset: it is empty now (map_size %" PRIu64 ")\n", tool_name,
            cfg->path, size);
    printf("status:reset\n");
    return tool_flush_stdout() ? TOOL_EXIT_ERROR : TOOL_EXIT_OK;
}

/* The capacity of a cache that could not be opened: its data file is
 * preallocated to the whole map. */
static uint64_t map_size_from_file(const char *path)
{
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/data.mdb", path);
    return stat(p, &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
}

/* Open, verify and (with --reset) reset; runs in a child of the tool.
 * Returns the exit status. */
static int verify_run(const config *cfg)
{
    lmc_options oo;
    memset(&oo, 0, sizeof oo);
    oo.flags = LMC_OPEN_RDONLY;
    lmc *c = NULL;
    int rc = tool_open(&c, cfg->path, &oo);
    if (rc == LMC_ECORRUPT) {
        /* lmc_open found the meta pages, or the pages it reads, damaged. */
        if (!cfg->reset)
            fprintf(stderr, "%s: %s is damaged; stop every process that uses it, then run "
                            "'%s %s verify --reset'\n", tool_name, cfg->path, tool_name,
                    cfg->path);
        printf("status:damaged\n");
        fflush(stdout);
        return cfg->reset ? verify_reset(cfg, map_size_from_file(cfg->path))
                          : TOOL_EXIT_NOTDONE;
    }
    if (rc)
        return TOOL_EXIT_ERROR;
    lmc_info info;
    uint64_t map_size = lmc_info_get(c, &info) == 0 ? info.map_size : 0;
    lmc_verify_result r;
    rc = lmc_verify(c, NULL, &r);
    if (rc == 0) {
        printf("status:ok\ntxnid:%" PRIu64 "\npages:%" PRIu64 "\ntree_pages:%" PRIu64
               "\noverflow_pages:%" PRIu64 "\nfree_pages:%" PRIu64
               "\nunreferenced_pages:%" PRIu64 "\nentries:%" PRIu64
               "\nentries_with_ttl:%" PRIu64 "\nexpiry_rows:%" PRIu64 "\nelapsed_ms:%.3f\n",
               r.txnid, r.pages, r.tree_pages, r.overflow_pages, r.free_pages,
               r.unreferenced_pages, r.entries, r.entries_with_ttl, r.expiry_rows,
               (double)r.elapsed_us / 1000.0);
        lmc_close(c);
        return tool_flush_stdout() ? TOOL_EXIT_ERROR : TOOL_EXIT_OK;
    }
    tool_report(c, rc, "verify %s", cfg->path);
    lmc_close(c);
    if (rc != LMC_ECORRUPT)
        return TOOL_EXIT_ERROR;
    printf("status:damaged\n");
    fflush(stdout);
    return cfg->reset ? verify_reset(cfg, map_size) : TOOL_EXIT_NOTDONE;
}

/* Run fn in a child process; returns its exit status, or -(signal) if it
 * died of one. */
static int run_in_child(int (*fn)(const config *, uint64_t), const config *cfg, uint64_t arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "%s: fork: %s\n", tool_name, strerror(errno));
        return TOOL_EXIT_ERROR;
    }
    if (pid == 0) {
        int st = fn(cfg, arg);
        fflush(stdout);
        fflush(stderr);
        _exit(st);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "%s: waitpid: %s\n", tool_name, strerror(errno));
            return TOOL_EXIT_ERROR;
        }
    }
    if (WIFSIGNALED(st))
        return -WTERMSIG(st);
    return WIFEXITED(st) ? WEXITSTATUS(st) : TOOL_EXIT_ERROR;
}

static int verify_run_fn(const config *cfg, uint64_t unused)
{
    (void)unused;
    return verify_run(cfg);
}

static int verify_reset_fn(const config *cfg, uint64_t map_size)
{
    return verify_reset(cfg, map_size);
}

/* verify [--reset]: the check (lmc_verify) and the open before it run in a
 * child process, so that a cache damaged where lmc_open reads crashes the
 * child, not the tool, and is reported as damaged like any other. */
static int cmd_verify(const config *cfg)
{
    int st = run_in_child(verify_run_fn, cfg, 0);
    if (st >= 0)
        return st;
    fprintf(stderr, "%s: verify %s: LMC_ECORRUPT: the check crashed opening the cache (signal %d, %s): "
                    "it is damaged.  Stop every process that uses it, then run '%s %s verify "
                    "--reset'\n", tool_name, cfg->path, -st, strsignal(-st), tool_name,
            cfg->path);
    printf("status:damaged\n");
    if (tool_flush_stdout())
        return TOOL_EXIT_ERROR;
    if (!cfg->reset)
        return TOOL_EXIT_NOTDONE;
    st = run_in_child(verify_reset_fn, cfg, map_size_from_file(cfg->path));
    if (st >= 0)
        return st;
    fprintf(stderr, "%s: reset %s crashed (signal %d, %s): a process that opened the cache "
                    "meanwhile made LMC_OPEN_RESET empty it in place; stop every process "
                    "that uses it, then run this again\n", tool_name, cfg->path, -st,
            strsignal(-st));
    return TOOL_EXIT_ERROR;
}

static const command commands[] = {
    {"get", 1, 1, 0, 0, cmd_get, "get KEY"},
    {"set", 2, 2, O_TTL, 0, cmd_set, "set KEY VALUE [--ttl MS]"},
    {"add", 2, 2, O_TTL, 0, cmd_add, "add KEY VALUE [--ttl MS]"},
    {"del", 1, 1, 0, 0, cmd_del, "del KEY"},
    {"del-prefix", 1, 1, 0, 0, cmd_del_prefix, "del-prefix PREFIX"},
    {"flush-prefix", 1, 1, 0, 0, cmd_flush_prefix, "flush-prefix PREFIX"},
    {"incr", 1, 2, O_TTL, 0, cmd_incr, "incr KEY [DELTA] [--ttl MS]"},
    {"touch", 2, 2, 0, 0, cmd_touch, "touch KEY MS"},
    {"clear", 0, 0, 0, 0, cmd_clear, "clear"},
    {"ls", 0, 1, O_LIMIT, 1, cmd_ls, "ls [PREFIX] [--limit N]"},
    {"info", 0, 0, 0, 1, cmd_info, "info"},
    {"verify", 0, 0, O_RESET, 1, NULL, "verify [--reset]"},
};

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* Parse, open the cache the way the command needs, run the command. */
int main(int argc, char **argv)
{
    tool_name = "lmc";
    tool_synopsis = "Usage: lmc PATH COMMAND [ARGS...] [OPTIONS]\n"
                    "Commands: get set add del del-prefix flush-prefix incr touch clear ls info "
                    "verify";
    config cfg;
    parse_args(argc, argv, &cfg);
    if (!cfg.cmd->run) {
        int st = cmd_verify(&cfg);
        free(cfg.args);
        return st;
    }

    /* get opens read-write on purpose: its hits and misses are counted in
     * the stats like any worker's, which is what an operator checking a key
     * expects.  ls and info only look, so they open read-only: no stats
     * slot, no recency stamps, and they work on a cache the user may only
     * read. */
    lmc_options oo;
    memset(&oo, 0, sizeof oo);
    if (cfg.create) {
        oo.map_size = cfg.map_size;
        oo.mode = cfg.mode;
    } else {
        oo.flags = cfg.cmd->read_only ? LMC_OPEN_RDONLY : LMC_OPEN_NOCREATE;
    }
    lmc *c = NULL;
    int status = TOOL_EXIT_ERROR;
    if (tool_open(&c, cfg.path, &oo) == 0)
        status = cfg.cmd->run(c, &cfg);
    lmc_close(c);
    free(cfg.args);
    return status;
}
