/*
 * lmc-redis-sync.c - keeps a host's lmc cache coherent as the L1 in front of
 * a Redis that several hosts share.
 *
 * One process per host and application.  It asks Redis to broadcast every
 * change of a key under the application's prefixes (server-assisted client
 * side caching in BCAST mode: the server remembers nothing per client) and
 * deletes each changed key from the host's cache.  Workers then only read
 * Redis on an L1 miss, and fill the L1 with lmc_set_if_gen, which refuses a
 * value read before an invalidation of its key (the fill race).
 *
 * Debian 12's hiredis (0.14) speaks RESP2 only, so tracking uses two
 * connections: one SUBSCRIBEd to __redis__:invalidate, and one that turns
 * tracking on with REDIRECT to the first.  REDIRECT has a known failure:
 * when either connection dies the other one hears nothing, and the tracking
 * goes silent (redis issues 11767 and 13082).  So this program owns both,
 * and treats the loss of either, an unanswered heartbeat on either, or a
 * tracking connection that reports its redirect broken (CLIENT
 * TRACKINGINFO, asked every heartbeat) as a lost connection.
 *
 * What it does, by event (each one logged):
 *   an invalidation of keys       lmc_delete of each key (which also ends
 *                                 its fill lease and refuses fills in
 *                                 progress);
 *   an invalidation with no keys  FLUSHDB or FLUSHALL: lmc_flush_prefix of
 *                                 every prefix (O(1), and every fill in
 *                                 progress is refused);
 *   a lost connection, a missed   the same flush, then reconnect with
 *   heartbeat, a broken redirect  exponential backoff; while disconnected,
 *                                 the prefixes are flushed again every
 *                                 heartbeat, so that what workers fill from
 *                                 Redis meanwhile lives one heartbeat at
 *                                 most; after reconnecting, tracking is on
 *                                 again before the flush that covers what
 *                                 was missed.
 *   start                         the same flush (it cannot know what it
 *                                 missed before it ran).
 *
 * Its state goes into the cache itself, as a JSON entry under
 * "lmc-redis-sync/status/PREFIX" with a TTL of three heartbeats, rewritten
 * every heartbeat: "state":"up" while tracking is on, "down" while it is
 * not, removed when the program stops.  Workers that find no "up" entry
 * know that the L1 is not being kept coherent and read through to Redis;
 * lmc-stats shows the entries' counters.
 *
 * It stops cleanly on SIGINT and SIGTERM (the status entries are removed).
 */
#define _GNU_SOURCE

#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

/* Messages are built with snprintf into fixed buffers and may be cut short
 * on purpose (a socket path of 4 KiB in an error line). */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#define MAX_PREFIXES 16
#define STATUS_KEY "lmc-redis-sync/status/"
#define INVALIDATE_CHANNEL "__redis__:invalidate"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s PATH --redis URL --prefix PREFIX [--prefix PREFIX ...] [OPTIONS]\n"
            "\n"
            "Keep the lmc cache in directory PATH coherent with a Redis shared by several\n"
            "hosts: every change of a key under a PREFIX in Redis deletes that key from\n"
            "the cache.  A FLUSHDB/FLUSHALL, a lost connection, a missed heartbeat or a\n"
            "broken tracking redirect flush every PREFIX from the cache instead.\n"
            "\n"
            "  --redis URL          unix:/run/redis.sock, unix:///run/redis.sock, or\n"
            "                       redis://[USER@]HOST[:PORT] (default port 6379); a\n"
            "                       password is never given here (see below)\n"
            "  --prefix PREFIX      a key prefix of the application (repeatable, up to\n"
            "                       16; no prefix may be a prefix of another)\n"
            "  --password-file F    read the Redis password from the first line of F\n"
            "                       (otherwise LMC_REDIS_PASSWORD or REDISCLI_AUTH from\n"
            "                       the environment, if set)\n"
            "  --heartbeat S        ask both connections for an answer every S seconds\n"
            "                       (default 1); one not answered by the next heartbeat\n"
            "                       counts as a lost connection\n"
            "  --timeout S          connect and command timeout (default 2)\n"
            "  --backoff-max S      longest wait between reconnects (default 5; the first\n"
            "                       is 0.1 s, doubled each time)\n"
            "  -v, --verbose        log every invalidated key\n"
            "  -h, --help           show this help and exit\n"
            "  -V, --version        show the version and exit\n"
            "\n"
            "Needs Redis 6.0 or later (CLIENT TRACKING with BCAST).  The cache must\n"
            "exist (the workers create it); until it does, this program waits for it.\n"
            "Exit status: 0 after SIGINT/SIGTERM; 2 on a usage error or when the cache\n"
            "cannot be used.\n",
            tool_name);
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

typedef struct config {
    const char *path;
    const char *url;
    const char *prefixes[MAX_PREFIXES];
    int nprefixes;
    const char *password_file;
    uint64_t heartbeat_ms, timeout_ms, backoff_max_ms;
    int verbose;
    /* From the URL. */
    int is_unix;
    char host[256];
    int port;
    char sock[4096];
    char user[256];
    char password[512]; /* from the file or the environment */
} config;

static config cfg;

static void log_msg(const char *fmt, ...) TOOL_PRINTF(1, 2);
static void log_msg(const char *fmt, ...)
{
    char when[32];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ldZ %s: %s\n", when, ts.tv_nsec / 1000000, tool_name, msg);
}

/* Seconds with decimals, in ms within [min_ms, max_ms]. */
static uint64_t parse_seconds(const char *opt, const char *s, uint64_t min_ms, uint64_t max_ms)
{
    double d;
    if (tool_parse_double(s, (double)min_ms / 1000.0, (double)max_ms / 1000.0, &d) != 0)
        tool_usage_error("%s: '%s' is not a number of seconds from %.3g to %.3g", opt, s,
                         (double)min_ms / 1000.0, (double)max_ms / 1000.0);
    return (uint64_t)(d * 1000.0 + 0.5);
}

/* unix:PATH, unix://PATH, redis://[USER@]HOST[:PORT][/DB]; a password in
 * the URL is refused (it would show in ps and in the unit file). */
static void parse_url(const char *url)
{
    if (strncmp(url, "unix:", 5) == 0) {
        const char *p = url + 5;
        if (strncmp(p, "//", 2) == 0)
            p += 2;
        if (*p != '/')
            tool_usage_error("--redis %s: a unix socket URL needs an absolute path "
                             "(unix:/run/redis.sock)", url);
        if (strlen(p) >= sizeof cfg.sock)
            tool_usage_error("--redis: the socket path is too long");
        cfg.is_unix = 1;
        snprintf(cfg.sock, sizeof cfg.sock, "%s", p);
        return;
    }
    if (strncmp(url, "redis://", 8) != 0)
        tool_usage_error("--redis %s: expected unix:/PATH or redis://HOST[:PORT]", url);
    const char *p = url + 8;
    const char *at = strchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon)
            tool_usage_error("--redis: no password on the command line, please: use "
                             "--password-file or LMC_REDIS_PASSWORD");
        if ((size_t)(at - p) >= sizeof cfg.user)
            tool_usage_error("--redis: the user name is too long");
        memcpy(cfg.user, p, (size_t)(at - p));
        p = at + 1;
    }
    const char *end = p + strcspn(p, "/?");
    const char *hs = p, *he, *port = NULL;
    if (*p == '[') {
        hs = p + 1;
        he = memchr(hs, ']', (size_t)(end - hs));
        if (!he)
            tool_usage_error("--redis %s: unclosed '[' in the host", url);
        if (he + 1 < end && he[1] == ':')
            port = he + 2;
    } else {
        he = memchr(p, ':', (size_t)(end - p));
        if (he)
            port = he + 1;
        else
            he = end;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof cfg.host)
        tool_usage_error("--redis %s: no host, or a host name too long", url);
    memcpy(cfg.host, hs, (size_t)(he - hs));
    cfg.port = 6379;
    if (port) {
        char buf[16];
        uint64_t v;
        size_t n = (size_t)(end - port);
        if (n == 0 || n >= sizeof buf)
            tool_usage_error("--redis %s: bad port", url);
        memcpy(buf, port, n);
        buf[n] = 0;
        if (tool_parse_u64(buf, 1, 65535, &v) != 0)
            tool_usage_error("--redis %s: port '%s' is not 1 to 65535", url, buf);
        cfg.port = (int)v;
    }
    /* A /DB part is accepted and ignored: tracking sees every database
     * (Redis has one key namespace for invalidations). */
}

static void read_password(void)
{
    if (cfg.password_file) {
        FILE *f = fopen(cfg.password_file, "r");
        if (!f) {
            fprintf(stderr, "%s: --password-file %s: %s\n", tool_name, cfg.password_file,
                    strerror(errno));
            exit(TOOL_EXIT_ERROR);
        }
        if (!fgets(cfg.password, sizeof cfg.password, f))
            cfg.password[0] = 0;
        fclose(f);
        cfg.password[strcspn(cfg.password, "\r\n")] = 0;
        if (!cfg.password[0]) {
            fprintf(stderr, "%s: --password-file %s: the first line is empty\n", tool_name,
                    cfg.password_file);
            exit(TOOL_EXIT_ERROR);
        }
        return;
    }
    const char *e = getenv("LMC_REDIS_PASSWORD");
    if (!e || !*e)
        e = getenv("REDISCLI_AUTH");
    if (e && *e)
        snprintf(cfg.password, sizeof cfg.password, "%s", e);
}

static void parse_args(int argc, char **argv)
{
    enum { OPT_REDIS = 256, OPT_PREFIX, OPT_PWFILE, OPT_HEARTBEAT, OPT_TIMEOUT, OPT_BACKOFF };
    static const struct option longopts[] = {
        {"redis", required_argument, NULL, OPT_REDIS},
        {"prefix", required_argument, NULL, OPT_PREFIX},
        {"password-file", required_argument, NULL, OPT_PWFILE},
        {"heartbeat", required_argument, NULL, OPT_HEARTBEAT},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"backoff-max", required_argument, NULL, OPT_BACKOFF},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    cfg.heartbeat_ms = 1000;
    cfg.timeout_ms = 2000;
    cfg.backoff_max_ms = 5000;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":vhV", longopts, NULL)) != -1) {
        switch (ch) {
        case OPT_REDIS:
            cfg.url = optarg;
            break;
        case OPT_PREFIX:
            if (cfg.nprefixes == MAX_PREFIXES)
                tool_usage_error("--prefix: at most %d prefixes", MAX_PREFIXES);
            if (!*optarg)
                tool_usage_error("--prefix: a prefix may not be empty");
            cfg.prefixes[cfg.nprefixes++] = optarg;
            break;
        case OPT_PWFILE:
            cfg.password_file = optarg;
            break;
        case OPT_HEARTBEAT:
            cfg.heartbeat_ms = parse_seconds("--heartbeat", optarg, 10, 3600000);
            break;
        case OPT_TIMEOUT:
            cfg.timeout_ms = parse_seconds("--timeout", optarg, 10, 3600000);
            break;
        case OPT_BACKOFF:
            cfg.backoff_max_ms = parse_seconds("--backoff-max", optarg, 100, 3600000);
            break;
        case 'v':
            cfg.verbose = 1;
            break;
        case 'h':
            usage(stdout);
            exit(TOOL_EXIT_OK);
        case 'V':
            tool_print_version();
            exit(TOOL_EXIT_OK);
        default:
            tool_option_error(argv, ch);
        }
    }
    if (optind >= argc)
        tool_usage_error("missing PATH");
    cfg.path = argv[optind++];
    if (optind < argc)
        tool_usage_error("unexpected argument '%s'", argv[optind]);
    if (!cfg.url)
        tool_usage_error("--redis URL is required");
    if (cfg.nprefixes == 0)
        tool_usage_error("at least one --prefix is required");
    for (int i = 0; i < cfg.nprefixes; i++) {
        const char *p = cfg.prefixes[i];
        if (strncmp(STATUS_KEY, p, strlen(p)) == 0 || strncmp(p, STATUS_KEY, strlen(STATUS_KEY)) == 0)
            tool_usage_error("--prefix %s: overlaps this program's status entries (%s...)", p,
                             STATUS_KEY);
        for (int j = 0; j < cfg.nprefixes; j++)
            if (i != j && strncmp(cfg.prefixes[j], p, strlen(p)) == 0)
                tool_usage_error("--prefix %s and --prefix %s overlap (Redis refuses "
                                 "overlapping tracking prefixes)", p, cfg.prefixes[j]);
    }
    parse_url(cfg.url);
    read_password();
}

/* ------------------------------------------------------------------------ */
/* What happened, for the log and the status entries                        */
/* ------------------------------------------------------------------------ */

enum { F_START, F_FLUSHDB, F_LOST, F_HEARTBEAT, F_REDIRECT, F_DOWN, F_ERROR, F_NREASONS };
static const char *const flush_reason[F_NREASONS] = {
    "start", "flushdb", "connection_lost", "heartbeat_missed", "redirect_broken", "while_down",
    "delete_failed"};

static struct {
    uint64_t invalidations;          /* keys invalidated */
    uint64_t flushes[F_NREASONS];    /* prefix flushes, by reason */
    uint64_t reconnects;
    uint64_t down_ms;                /* total time without tracking */
    uint64_t down_since_ns;          /* 0 while tracking is on */
} st;

static lmc *cache;

static void status_key(char *buf, size_t cap, const char *prefix)
{
    snprintf(buf, cap, STATUS_KEY "%s", prefix);
}

/* Write the status entries, "up" while tracking is on and "down" while it
 * is not, with a TTL of three heartbeats, so that they vanish on their own
 * if this program dies.  Workers trust the L1 only while one says "up". */
static void status_write(int up)
{
    char key[512], val[1024];
    uint64_t down_ms = st.down_ms;
    if (st.down_since_ns)
        down_ms += (tool_mono_ns() - st.down_since_ns) / 1000000u;
    int n = snprintf(val, sizeof val,
                     "{\"state\":\"%s\",\"pid\":%ld,\"invalidations\":%" PRIu64
                     ",\"reconnects\":%" PRIu64 ",\"down_ms\":%" PRIu64 ",\"flushes\":{",
                     up ? "up" : "down", (long)getpid(), st.invalidations, st.reconnects,
                     down_ms);
    for (int r = 0; r < F_NREASONS; r++)
        n += snprintf(val + n, sizeof val - (size_t)n, "%s\"%s\":%" PRIu64, r ? "," : "",
                      flush_reason[r], st.flushes[r]);
    n += snprintf(val + n, sizeof val - (size_t)n, "}}");
    for (int i = 0; i < cfg.nprefixes; i++) {
        status_key(key, sizeof key, cfg.prefixes[i]);
        int rc = lmc_set(cache, key, strlen(key), val, (size_t)n,
                         (int64_t)(3 * cfg.heartbeat_ms));
        if (rc)
            log_msg("cannot write the status entry %s: %s", key, lmc_strerror(rc));
    }
}

static void status_remove(void)
{
    char key[512];
    for (int i = 0; i < cfg.nprefixes; i++) {
        status_key(key, sizeof key, cfg.prefixes[i]);
        (void)lmc_delete(cache, key, strlen(key));
    }
}

/* Flush every prefix from the cache; quiet for the repeated flushes while
 * disconnected.  0 if every prefix was flushed.  lmc_flush_prefix makes
 * the entries invisible to every worker at once, whatever their number
 * (lmc-sweep deletes them later), so the window in which a worker can
 * still read a value Redis no longer has ends when the call returns, not
 * when a delete of the whole namespace would. */
static int flush_all(int reason, int quiet)
{
    st.flushes[reason]++;
    int failed = 0;
    for (int i = 0; i < cfg.nprefixes; i++) {
        int rc = lmc_flush_prefix(cache, cfg.prefixes[i], strlen(cfg.prefixes[i]));
        if (rc) {
            log_msg("flush of %s failed: %s (%s)", cfg.prefixes[i], lmc_strerror(rc),
                    lmc_errmsg(cache));
            failed = 1;
        }
    }
    if (!quiet)
        log_msg("flushed %d prefix%s (%s)", cfg.nprefixes, cfg.nprefixes == 1 ? "" : "es",
                flush_reason[reason]);
    return failed ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Redis                                                                    */
/* ------------------------------------------------------------------------ */

static struct timeval tv_of(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static const char *redis_where(void)
{
    static char buf[4400];
    if (cfg.is_unix)
        snprintf(buf, sizeof buf, "unix:%s", cfg.sock);
    else
        snprintf(buf, sizeof buf, "%s:%d", cfg.host, cfg.port);
    return buf;
}

/* A command and its reply, or NULL with *err set. */
static redisReply *command(redisContext *c, char *err, size_t cap, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    if (!r) {
        snprintf(err, cap, "%s: %s", argv[0], c->errstr[0] ? c->errstr : "no reply");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, cap, "%s%s%s: %s", argv[0], argc > 1 ? " " : "", argc > 1 ? argv[1] : "",
                 r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* A command of the connection's setup, its reply discarded: -1 with err
 * naming the server (and, for a server that wants a password it was not
 * given, where to give it). */
static int setup_command(redisContext *c, char *err, size_t cap, int argc, const char **argv)
{
    redisReply *r = command(c, err, cap, argc, argv);
    if (r) {
        freeReplyObject(r);
        return 0;
    }
    char why[512];
    snprintf(why, sizeof why, "%s", err);
    snprintf(err, cap, "%s: %s%s", redis_where(), why,
             strstr(why, "NOAUTH") ? " (set --password-file or LMC_REDIS_PASSWORD)" : "");
    return -1;
}

/* A connection, authenticated, named lmc-redis-sync:PID:ROLE in CLIENT
 * LIST (so that an operator, or a test, can tell whose it is). */
static redisContext *connect_one(const char *role, char *err, size_t cap)
{
    struct timeval tv = tv_of(cfg.timeout_ms);
    redisContext *c = cfg.is_unix ? redisConnectUnixWithTimeout(cfg.sock, tv)
                                  : redisConnectWithTimeout(cfg.host, cfg.port, tv);
    if (!c) {
        snprintf(err, cap, "cannot connect to %s: out of memory", redis_where());
        return NULL;
    }
    if (c->err) {
        snprintf(err, cap, "cannot connect to %s: %s", redis_where(), c->errstr);
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(err, cap, "cannot set the timeout of %s", redis_where());
        redisFree(c);
        return NULL;
    }
    if (cfg.password[0]) {
        const char *argv[3] = {"AUTH", cfg.user[0] ? cfg.user : cfg.password, cfg.password};
        redisReply *r = command(c, err, cap, cfg.user[0] ? 3 : 2, argv);
        if (!r) {
            /* err names the command only, never the password. */
            snprintf(err, cap, "%s refused the password: %s", redis_where(),
                     c->err ? c->errstr : "AUTH failed (wrong password or user?)");
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    char name[64];
    snprintf(name, sizeof name, "lmc-redis-sync:%ld:%s", (long)getpid(), role);
    const char *setname[3] = {"CLIENT", "SETNAME", name};
    const char *ping[1] = {"PING"};
    if (setup_command(c, err, cap, 3, setname) || setup_command(c, err, cap, 1, ping)) {
        redisFree(c);
        return NULL;
    }
    return c;
}

typedef struct rlink {
    redisContext *sub; /* SUBSCRIBEd to the invalidation channel */
    redisContext *trk; /* has tracking on, redirected to sub */
    long long sub_id;
    int sub_waiting, trk_waiting; /* heartbeats not answered yet */
} rlink;

static void link_close(rlink *l)
{
    if (l->sub)
        redisFree(l->sub);
    if (l->trk)
        redisFree(l->trk);
    memset(l, 0, sizeof *l);
}

/* Both connections, tracking on.  0, or -1 with err. */
static int link_open(rlink *l, char *err, size_t cap)
{
    memset(l, 0, sizeof *l);
    if (!(l->sub = connect_one("invalidations", err, cap)))
        return -1;
    const char *id[2] = {"CLIENT", "ID"};
    redisReply *r = command(l->sub, err, cap, 2, id);
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        if (r) {
            snprintf(err, cap, "CLIENT ID: unexpected reply");
            freeReplyObject(r);
        }
        goto fail;
    }
    l->sub_id = r->integer;
    freeReplyObject(r);
    /* Subscribe first, then turn tracking on: no invalidation can be sent
     * before the subscription exists. */
    const char *sub[2] = {"SUBSCRIBE", INVALIDATE_CHANNEL};
    if (!(r = command(l->sub, err, cap, 2, sub)))
        goto fail;
    int ok = r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
             r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "subscribe") == 0;
    freeReplyObject(r);
    if (!ok) {
        snprintf(err, cap, "SUBSCRIBE %s: unexpected reply", INVALIDATE_CHANNEL);
        goto fail;
    }
    if (!(l->trk = connect_one("tracking", err, cap)))
        goto fail;
    char idbuf[32];
    snprintf(idbuf, sizeof idbuf, "%lld", l->sub_id);
    const char *argv[6 + 2 * MAX_PREFIXES] = {"CLIENT", "TRACKING", "on", "REDIRECT", idbuf,
                                              "BCAST"};
    int argc = 6;
    for (int i = 0; i < cfg.nprefixes; i++) {
        argv[argc++] = "PREFIX";
        argv[argc++] = cfg.prefixes[i];
    }
    if (!(r = command(l->trk, err, cap, argc, argv))) {
        char why[512];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, cap, "%s refused tracking: %s%s", redis_where(), why,
                 strstr(why, "unknown") || strstr(why, "Unknown")
                     ? " (CLIENT TRACKING needs Redis 6.0 or later)" : "");
        goto fail;
    }
    freeReplyObject(r);
    /* Replies come as they are read from now on. */
    return 0;
fail:
    link_close(l);
    return -1;
}

/* Send a command without waiting for its reply. */
static int send_cmd(redisContext *c, int argc, const char **argv)
{
    if (redisAppendCommandArgv(c, argc, argv, NULL) != REDIS_OK)
        return -1;
    int done = 0;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK)
            return -1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Handling what Redis sends                                                */
/* ------------------------------------------------------------------------ */

static int has_prefix(const char *k, size_t n)
{
    for (int i = 0; i < cfg.nprefixes; i++) {
        size_t pl = strlen(cfg.prefixes[i]);
        if (n >= pl && memcmp(k, cfg.prefixes[i], pl) == 0)
            return 1;
    }
    return 0;
}

static int invalidate_key(const char *k, size_t n)
{
    if (!has_prefix(k, n))
        return 0; /* not ours (BCAST sends only ours) */
    st.invalidations++;
    if (n > LMC_MAX_KEY)
        return 0; /* longer than any key the cache can hold: never in it */
    int rc = lmc_delete(cache, k, n);
    if (rc != LMC_OK && rc != LMC_NOTFOUND) {
        log_msg("cannot delete an invalidated key: %s (%s); flushing instead", lmc_strerror(rc),
                lmc_errmsg(cache));
        return flush_all(F_ERROR, 0) == 0 ? 0 : -1;
    }
    if (cfg.verbose)
        log_msg("invalidated %.*s%s", (int)(n > 200 ? 200 : n), k, n > 200 ? "..." : "");
    return 0;
}

/* A message on the subscribed connection.  NULL, or why the rlink is no
 * longer trusted. */
static const char *on_sub_reply(rlink *l, redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || r->element[0]->type != REDIS_REPLY_STRING)
        return "unexpected reply on the invalidation connection";
    const char *kind = r->element[0]->str;
    if (strcmp(kind, "pong") == 0) {
        l->sub_waiting = 0;
        return NULL;
    }
    if (strcmp(kind, "message") != 0 || r->elements != 3)
        return NULL; /* (un)subscribe confirmations */
    redisReply *p = r->element[2];
    if (p->type == REDIS_REPLY_NIL) {
        log_msg("Redis sent a null invalidation (FLUSHDB or FLUSHALL)");
        flush_all(F_FLUSHDB, 0);
        return NULL;
    }
    if (p->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < p->elements; i++)
            if (p->element[i]->type == REDIS_REPLY_STRING &&
                invalidate_key(p->element[i]->str, p->element[i]->len) != 0)
                return "the cache could not be invalidated";
        return NULL;
    }
    if (p->type == REDIS_REPLY_STRING) /* one key, as some versions send it */
        return invalidate_key(p->str, p->len) == 0 ? NULL : "the cache could not be invalidated";
    return "unexpected invalidation message";
}

/* The reply to CLIENT TRACKINGINFO: tracking must still be on, in BCAST
 * mode, redirected to our subscriber, and the redirect not broken. */
static const char *on_trk_reply(rlink *l, redisReply *r, int *broken)
{
    if (r->type == REDIS_REPLY_ERROR)
        return "CLIENT TRACKINGINFO failed";
    if (r->type != REDIS_REPLY_ARRAY)
        return "unexpected reply on the tracking connection";
    int on = 0, bcast = 0;
    long long redirect = -2;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(k->str, "flags") == 0 && v->type == REDIS_REPLY_ARRAY) {
            for (size_t j = 0; j < v->elements; j++) {
                const char *f = v->element[j]->str;
                if (!f)
                    continue;
                on |= strcmp(f, "on") == 0;
                bcast |= strcmp(f, "bcast") == 0;
                if (strcmp(f, "broken_redirect") == 0)
                    *broken = 1;
            }
        } else if (strcmp(k->str, "redirect") == 0 && v->type == REDIS_REPLY_INTEGER) {
            redirect = v->integer;
        }
    }
    l->trk_waiting = 0;
    if (*broken)
        return "the tracking redirect is broken";
    if (!on || !bcast || redirect != l->sub_id)
        return "tracking is no longer on as it was set";
    return NULL;
}

/* Read what a connection has; NULL, or why the rlink failed. */
static const char *drain(rlink *l, redisContext *c, int is_sub, int *reason)
{
    if (redisBufferRead(c) != REDIS_OK) {
        *reason = F_LOST;
        return c->errstr[0] ? c->errstr : "connection closed";
    }
    for (;;) {
        void *rep = NULL;
        if (redisGetReplyFromReader(c, &rep) != REDIS_OK) {
            *reason = F_LOST;
            return "protocol error";
        }
        if (!rep)
            return NULL;
        int broken = 0;
        const char *why = is_sub ? on_sub_reply(l, rep) : on_trk_reply(l, rep, &broken);
        freeReplyObject(rep);
        if (why) {
            *reason = broken ? F_REDIRECT : F_LOST;
            return why;
        }
    }
}

/* Tracking is on: serve until the rlink fails (returns the flush reason and
 * fills why) or a signal stops us (returns -1). */
static int serve(rlink *l, char *why, size_t cap)
{
    uint64_t hb_ns = cfg.heartbeat_ms * 1000000u;
    uint64_t next = tool_mono_ns() + hb_ns;
    for (;;) {
        struct pollfd fds[2] = {{.fd = l->sub->fd, .events = POLLIN},
                                {.fd = l->trk->fd, .events = POLLIN}};
        int n = tool_ppoll(fds, 2, next);
        if (tool_stop)
            return -1;
        if (n < 0) {
            snprintf(why, cap, "poll: %s", strerror(errno));
            return F_LOST;
        }
        for (int i = 0; i < 2 && n > 0; i++) {
            if (!fds[i].revents)
                continue;
            int reason = F_LOST;
            const char *w = drain(l, i == 0 ? l->sub : l->trk, i == 0, &reason);
            if (w) {
                snprintf(why, cap, "%s connection: %s", i == 0 ? "invalidation" : "tracking", w);
                return reason;
            }
        }
        if (tool_mono_ns() < next)
            continue;
        if (l->sub_waiting || l->trk_waiting) {
            snprintf(why, cap, "no answer to the heartbeat within %" PRIu64 " ms on the %s "
                     "connection", cfg.heartbeat_ms, l->sub_waiting ? "invalidation" : "tracking");
            return F_HEARTBEAT;
        }
        const char *ping[1] = {"PING"};
        const char *info[2] = {"CLIENT", "TRACKINGINFO"};
        if (send_cmd(l->sub, 1, ping) != 0 || send_cmd(l->trk, 2, info) != 0) {
            snprintf(why, cap, "cannot send the heartbeat");
            return F_LOST;
        }
        l->sub_waiting = l->trk_waiting = 1;
        status_write(1);
        next += hb_ns;
        uint64_t now = tool_mono_ns();
        if (next < now)
            next = now + hb_ns;
    }
}

/* ------------------------------------------------------------------------ */
/* Main loop                                                                */
/* ------------------------------------------------------------------------ */

/* Wait for the cache to exist (the workers create it), checking for
 * signals.  0, or the exit code. */
static int open_cache(void)
{
    lmc_options o;
    memset(&o, 0, sizeof o);
    o.flags = LMC_OPEN_NOCREATE;
    int logged = 0;
    for (;;) {
        int rc = lmc_open(&cache, cfg.path, &o);
        if (rc == LMC_OK)
            return 0;
        if (rc != LMC_ENOCACHE) {
            tool_report(NULL, rc, "%s", cfg.path);
            return TOOL_EXIT_ERROR;
        }
        if (!logged++)
            log_msg("no cache at %s yet; waiting for it", cfg.path);
        if (tool_wait_until(tool_mono_ns() + 500000000u))
            return TOOL_EXIT_OK;
    }
}

static void went_down(void)
{
    if (!st.down_since_ns)
        st.down_since_ns = tool_mono_ns();
    status_write(0);
}

static void came_up(void)
{
    if (st.down_since_ns) {
        st.down_ms += (tool_mono_ns() - st.down_since_ns) / 1000000u;
        st.down_since_ns = 0;
    }
}

int main(int argc, char **argv)
{
    tool_name = "lmc-redis-sync";
    tool_synopsis = "Usage: lmc-redis-sync PATH --redis URL --prefix PREFIX [OPTIONS]";
    parse_args(argc, argv);
    if (tool_signals_init() != 0) {
        fprintf(stderr, "%s: cannot install signal handlers: %s\n", tool_name, strerror(errno));
        return TOOL_EXIT_ERROR;
    }
    /* hiredis writes with write(2), not send(MSG_NOSIGNAL): a command sent on
     * a connection Redis has just reset would kill the sidecar with SIGPIPE,
     * silently, in the middle of a reconnect.  Ignored, the write fails with
     * EPIPE, which is a lost connection like any other. */
    signal(SIGPIPE, SIG_IGN);
    int rc = open_cache();
    if (rc || tool_stop) {
        lmc_close(cache);
        return rc;
    }
    log_msg("cache %s, Redis %s, %d prefix%s, heartbeat %" PRIu64 " ms", cfg.path, redis_where(),
            cfg.nprefixes, cfg.nprefixes == 1 ? "" : "es", cfg.heartbeat_ms);
    went_down();
    /* Whatever changed in Redis before we ran is unknown. */
    if (flush_all(F_START, 0) != 0) {
        lmc_close(cache);
        return TOOL_EXIT_ERROR;
    }
    uint64_t backoff_ms = 100;
    int failures = 0, connected_once = 0;
    char err[1024], last_err[1024] = "";
    uint64_t last_log_ns = 0;
    while (!tool_stop) {
        rlink l;
        if (link_open(&l, err, sizeof err) != 0) {
            /* The first failure, a new reason, and then once a minute: a Redis
             * that stays away must not flood the log. */
            uint64_t now_ns = tool_mono_ns();
            if (failures++ == 0 || strcmp(err, last_err) != 0 ||
                now_ns - last_log_ns >= 60000000000u) {
                log_msg("%s; retrying in %.1f s (attempt %d)", err, (double)backoff_ms / 1000.0,
                        failures);
                snprintf(last_err, sizeof last_err, "%s", err);
                last_log_ns = now_ns;
            }
            /* While nothing keeps the cache coherent, flush it every
             * heartbeat: what workers fill meanwhile lives that long. */
            uint64_t until = tool_mono_ns() + backoff_ms * 1000000u;
            while (!tool_stop) {
                uint64_t now = tool_mono_ns();
                if (now >= until)
                    break;
                uint64_t step = now + cfg.heartbeat_ms * 1000000u;
                if (tool_wait_until(step < until ? step : until))
                    break;
                if (tool_mono_ns() < until) {
                    flush_all(F_DOWN, 1);
                    status_write(0);
                }
            }
            backoff_ms = backoff_ms * 2 > cfg.backoff_max_ms ? cfg.backoff_max_ms : backoff_ms * 2;
            continue;
        }
        /* Tracking is on: now flush what was missed while it was off. */
        flush_all(F_DOWN, 1);
        came_up();
        status_write(1);
        if (connected_once)
            st.reconnects++;
        if (connected_once || failures)
            log_msg("reconnected after %d failed attempt%s", failures, failures == 1 ? "" : "s");
        connected_once = 1;
        log_msg("tracking on: %s, BCAST, invalidations to client %lld", redis_where(), l.sub_id);
        failures = 0;
        last_err[0] = 0;
        backoff_ms = 100;
        char why[1024];
        int reason = serve(&l, why, sizeof why);
        link_close(&l);
        went_down();
        if (reason < 0)
            break;
        log_msg("tracking lost: %s", why);
        flush_all(reason, 0);
    }
    status_remove();
    log_msg("stopping (SIGTERM/SIGINT): %" PRIu64 " keys invalidated", st.invalidations);
    lmc_close(cache);
    return TOOL_EXIT_OK;
}
