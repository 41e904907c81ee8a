/*
 * lmc-sweep.c - the sweeper of an lmc cache.
 *
 * Workers never delete expired entries on read, and they evict only when a
 * write finds the map completely full.  This tool does the housekeeping in
 * between: each pass clears reader slots left by dead processes, removes the
 * expired entries, and when the map is fuller than the high watermark evicts
 * down to the low one (soonest-to-expire first, then entries without TTL by
 * approximate LRU).  The policy itself is lmc_sweep() in the library; this
 * program decides when to run it, bounds how long a signal may wait, and
 * reports what each pass did, as one text line or one JSON object.
 *
 * Run it once from cron, or with --interval as a service (see
 * contrib/lmc-sweep@.service).  It stops cleanly on SIGINT and SIGTERM.
 */
#define _GNU_SOURCE

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* By default a pass is run as consecutive lmc_sweep() calls of at most this
 * long, so that a SIGTERM in the middle of sweeping a million entries is
 * honoured within about this time instead of at the end of the pass. */
#define DEFAULT_SLICE_MS 200u

/* In --interval mode, this many failed passes in a row end the program
 * (exit 2), so that a cache that keeps failing is noticed and a service
 * manager gets to restart the sweeper with a fresh handle. */
#define MAX_CONSECUTIVE_FAILURES 5

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s PATH [--once | --interval SECONDS] [OPTIONS]\n"
            "\n"
            "Sweep the lmc cache in directory PATH: clear reader slots of dead\n"
            "processes, delete expired entries, and when the map is fuller than the\n"
            "high watermark evict down to the low one.  Prints one line (or one JSON\n"
            "object) per pass.\n"
            "\n"
            "  --once               run one pass and exit (the default)\n"
            "  --interval SECONDS   run a pass every SECONDS (decimals allowed) until\n"
            "                       SIGINT or SIGTERM\n"
            "  --high RATIO         evict when fill is above RATIO (default 0.80)\n"
            "  --low RATIO          ... down to RATIO (default 0.70)\n"
            "  --batch N            deletions per write transaction (default 1000)\n"
            "  --max-keys N         stop a pass after N deletions (default: no limit)\n"
            "  --max-time-ms N      stop a pass after about N ms (default: no limit)\n"
            "  --no-evict           only remove expired entries\n"
            "  --slice-ms N         run a pass as lmc_sweep() calls of about N ms each and\n"
            "                       check for signals between them (default 200)\n"
            "  --json               one JSON object per pass\n"
            "  -h, --help           show this help and exit\n"
            "  -V, --version        show the version and exit\n"
            "\n"
            "Exit status: 0 done (or stopped by a signal in --interval mode); 1 with\n"
            "--once when a budget or a signal cut the pass short; 2 on a usage error or\n"
            "a failure.\n",
            tool_name);
}

typedef struct config {
    const char *path;
    int once;
    uint64_t interval_ns;
    int json;
    uint64_t slice_ms;
    lmc_sweep_options opts;
} config;

/* Fill cfg from the command line.  Values are checked here so that the
 * message names the option; limits that belong to the library (the largest
 * batch) are left to lmc_sweep(), which reports them. */
static void parse_args(int argc, char **argv, config *cfg)
{
    enum { OPT_ONCE = 256, OPT_INTERVAL, OPT_HIGH, OPT_LOW, OPT_BATCH, OPT_MAX_KEYS,
           OPT_MAX_TIME, OPT_NOEVICT, OPT_JSON, OPT_SLICE };
    static const struct option longopts[] = {
        {"once", no_argument, NULL, OPT_ONCE},
        {"interval", required_argument, NULL, OPT_INTERVAL},
        {"high", required_argument, NULL, OPT_HIGH},
        {"low", required_argument, NULL, OPT_LOW},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"max-keys", required_argument, NULL, OPT_MAX_KEYS},
        {"max-time-ms", required_argument, NULL, OPT_MAX_TIME},
        {"no-evict", no_argument, NULL, OPT_NOEVICT},
        {"json", no_argument, NULL, OPT_JSON},
        {"slice-ms", required_argument, NULL, OPT_SLICE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int have_once = 0, have_interval = 0;
    double high = 0.80, low = 0.70, secs;
    int have_low = 0;
    uint64_t v;
    memset(cfg, 0, sizeof *cfg);
    cfg->slice_ms = DEFAULT_SLICE_MS;
    opterr = 0; /* we print our own messages, with the tool's exit code */
    int ch;
    while ((ch = getopt_long(argc, argv, ":hV", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            usage(stdout);
            exit(tool_flush_stdout() ? TOOL_EXIT_ERROR : TOOL_EXIT_OK);
        case 'V':
            tool_print_version();
            exit(tool_flush_stdout() ? TOOL_EXIT_ERROR : TOOL_EXIT_OK);
        case OPT_ONCE:
            have_once = 1;
            break;
        case OPT_INTERVAL:
            /* At most a day: a longer wait is surely a typo, and the bound
             * keeps the nanosecond arithmetic far from overflow. */
            if (tool_parse_double(optarg, 0.001, 86400.0, &secs))
                tool_usage_error("--interval needs seconds between 0.001 and 86400, not '%s'",
                                 optarg);
            cfg->interval_ns = (uint64_t)(secs * 1e9);
            have_interval = 1;
            break;
        case OPT_HIGH:
            if (tool_parse_double(optarg, 0.0, 1.0, &high) || high <= 0.0)
                tool_usage_error("--high needs a ratio in (0, 1], not '%s'", optarg);
            break;
        case OPT_LOW:
            if (tool_parse_double(optarg, 0.0, 1.0, &low) || low <= 0.0)
                tool_usage_error("--low needs a ratio in (0, 1], not '%s'", optarg);
            have_low = 1;
            break;
        case OPT_BATCH:
            /* The library sets the upper limit and reports it. */
            if (tool_parse_u64(optarg, 1, UINT32_MAX, &v))
                tool_usage_error("--batch needs a positive count, not '%s'", optarg);
            cfg->opts.batch = (unsigned)v;
            break;
        case OPT_MAX_KEYS:
            if (tool_parse_u64(optarg, 1, UINT64_MAX, &v))
                tool_usage_error("--max-keys needs a positive count, not '%s'", optarg);
            cfg->opts.max_keys = v;
            break;
        case OPT_MAX_TIME:
            if (tool_parse_u64(optarg, 1, UINT64_MAX / 1000000u, &v))
                tool_usage_error("--max-time-ms needs a positive number of ms, not '%s'",
                                 optarg);
            cfg->opts.max_time_ms = v;
            break;
        case OPT_NOEVICT:
            cfg->opts.flags |= LMC_SWEEP_NOEVICT;
            break;
        case OPT_JSON:
            cfg->json = 1;
            break;
        case OPT_SLICE:
            if (tool_parse_u64(optarg, 1, 3600000, &v))
                tool_usage_error("--slice-ms needs milliseconds between 1 and 3600000, not '%s'",
                                 optarg);
            cfg->slice_ms = v;
            break;
        default:
            tool_option_error(argv, ch);
        }
    }
    if (have_once && have_interval)
        tool_usage_error("--once and --interval exclude each other");
    cfg->once = !have_interval;
    /* Like the library, a low watermark left out follows a high one set
     * below the default low. */
    if (!have_low && high < low)
        low = high;
    if (low > high)
        tool_usage_error("--low (%g) must not be above --high (%g)", low, high);
    cfg->opts.high_watermark = high;
    cfg->opts.low_watermark = low;
    if (optind >= argc)
        tool_usage_error("missing the cache PATH");
    cfg->path = argv[optind++];
    if (optind < argc)
        tool_usage_error("unexpected argument '%s'", argv[optind]);
}

/*
 * One pass, run as slices of about slice_ms each.  The user's key and time
 * budgets apply to the pass as a whole.  A slice that stops in the middle of
 * evicting leaves fill somewhere between the watermarks, and a plain
 * lmc_sweep() would then not evict at all (fill is below the high mark), so
 * the slices after one that evicted ask for LMC_SWEEP_FORCE, which finishes
 * the descent to the low watermark the pass began.  A slice that removed
 * nothing before its time ran out (measuring fill on a huge map can take
 * that long) doubles the slice, so that the pass always makes progress.
 * (A map filled to its last page needs nothing special here: writers leave
 * a reserve of free pages to deletes, and the library halves a sweep's
 * transactions itself when a batch needs more pages than are free.)
 */
static int run_pass(lmc *c, const config *cfg, lmc_sweep_result *tot, int *stopped,
                    unsigned *slices)
{
    const lmc_sweep_options *base = &cfg->opts;
    uint64_t slice_ms = cfg->slice_ms;
    uint64_t t0 = tool_mono_ns();
    int evicting = 0;
    memset(tot, 0, sizeof *tot);
    *stopped = 0;
    for (unsigned slice = 0;; slice++) {
        lmc_sweep_options o = *base;
        uint64_t deleted = tot->expired + tot->flushed + tot->evicted_soonest + tot->evicted_lru;
        uint64_t elapsed_ms = (tool_mono_ns() - t0) / 1000000u;
        if (slice > 0) {
            if ((base->max_keys && deleted >= base->max_keys) ||
                (base->max_time_ms && elapsed_ms >= base->max_time_ms))
                break; /* the pass's budget is spent */
            if (tool_poll_signals()) {
                *stopped = 1;
                break;
            }
        }
        if (base->max_keys)
            o.max_keys = base->max_keys - deleted;
        o.max_time_ms = slice_ms;
        if (base->max_time_ms && base->max_time_ms - elapsed_ms < slice_ms)
            o.max_time_ms = base->max_time_ms - elapsed_ms;
        if (evicting)
            o.flags |= LMC_SWEEP_FORCE;
        lmc_sweep_result r;
        int rc = lmc_sweep(c, &o, &r);
        *slices = slice + 1;
        if (slice == 0)
            tot->fill_before = r.fill_before;
        tot->fill_after = r.fill_after;
        tot->expired += r.expired;
        tot->flushed += r.flushed;
        tot->rows_refiled += r.rows_refiled;
        tot->evicted_soonest += r.evicted_soonest;
        tot->evicted_lru += r.evicted_lru;
        tot->readers_cleared += r.readers_cleared;
        tot->transactions += r.transactions;
        if (r.evicted_soonest || r.evicted_lru)
            evicting = 1;
        if (rc) {
            tot->elapsed_us = (tool_mono_ns() - t0) / 1000u;
            return rc;
        }
        if (r.complete) {
            tot->complete = 1;
            break;
        }
        if (r.expired + r.flushed + r.evicted_soonest + r.evicted_lru == 0 && slice_ms < 3600000u)
            slice_ms *= 2;
    }
    tot->elapsed_us = (tool_mono_ns() - t0) / 1000u;
    return 0;
}

/* Report one pass: a logfmt line (key=value, greppable in a journal) or a
 * JSON object on one line.  Both carry the same fields. */
static void print_pass(const config *cfg, const lmc_sweep_result *r, unsigned slices)
{
    uint64_t evicted = r->evicted_soonest + r->evicted_lru;
    if (cfg->json) {
        printf("{\"path\":\"");
        tool_json_string(stdout, cfg->path, strlen(cfg->path));
        printf("\",\"time_ms\":%" PRId64 ",\"expired\":%" PRIu64 ",\"evicted\":%" PRIu64
               ",\"evicted_soonest\":%" PRIu64 ",\"evicted_lru\":%" PRIu64
               ",\"readers_cleared\":%" PRIu64 ",\"fill_before\":%.6f,\"fill_after\":%.6f"
               ",\"elapsed_ms\":%.3f,\"transactions\":%" PRIu64 ",\"flushed\":%" PRIu64
               ",\"rows_refiled\":%" PRIu64 ",\"slices\":%u,\"complete\":%s}\n",
               tool_real_ms(), r->expired, evicted, r->evicted_soonest, r->evicted_lru,
               r->readers_cleared, r->fill_before, r->fill_after, (double)r->elapsed_us / 1000.0,
               r->transactions, r->flushed, r->rows_refiled, slices,
               r->complete ? "true" : "false");
    } else {
        printf("expired=%" PRIu64 " evicted=%" PRIu64 " evicted_soonest=%" PRIu64
               " evicted_lru=%" PRIu64 " readers_cleared=%" PRIu64
               " fill_before=%.4f fill_after=%.4f elapsed_ms=%.3f transactions=%" PRIu64
               " flushed=%" PRIu64 " rows_refiled=%" PRIu64 " slices=%u complete=%s\n",
               r->expired, evicted, r->evicted_soonest, r->evicted_lru, r->readers_cleared,
               r->fill_before, r->fill_after, (double)r->elapsed_us / 1000.0, r->transactions,
               r->flushed, r->rows_refiled, slices, r->complete ? "yes" : "no");
    }
}

/* Codes that another pass cannot cure: the configuration or the cache is
 * wrong, so the sweeper exits at once instead of failing every interval. */
static int is_fatal(int rc)
{
    return rc == LMC_EINVAL || rc == LMC_EREADONLY || rc == LMC_EPERM ||
           rc == LMC_ECORRUPT || rc == LMC_EVERSION;
}

/* Open the cache (never creating it), then run one pass or one pass per
 * interval until a signal; see the exit status in usage(). */
int main(int argc, char **argv)
{
    tool_name = "lmc-sweep";
    tool_synopsis = "Usage: lmc-sweep PATH [--once | --interval SECONDS] [OPTIONS]";
    config cfg;
    parse_args(argc, argv, &cfg);
    if (tool_signals_init() != 0) {
        fprintf(stderr, "%s: cannot install signal handlers\n", tool_name);
        return TOOL_EXIT_ERROR;
    }

    /* Never create a cache: a sweeper pointed at a mistyped path should say
     * so, not sweep an empty cache of the default size forever. */
    lmc_options oo;
    memset(&oo, 0, sizeof oo);
    oo.flags = LMC_OPEN_NOCREATE;
    lmc *c = NULL;
    if (tool_open(&c, cfg.path, &oo))
        return TOOL_EXIT_ERROR;

    int status = TOOL_EXIT_OK, failures = 0;
    uint64_t next = tool_mono_ns();
    for (;;) {
        lmc_sweep_result r;
        int stopped = 0;
        unsigned slices = 0;
        int rc = run_pass(c, &cfg, &r, &stopped, &slices);
        if (rc) {
            tool_report(c, rc, "%s: sweep failed", cfg.path);
            failures++;
            if (cfg.once || is_fatal(rc) || failures >= MAX_CONSECUTIVE_FAILURES) {
                if (!cfg.once && !is_fatal(rc))
                    fprintf(stderr, "%s: %d passes in a row failed, giving up\n", tool_name,
                            failures);
                status = TOOL_EXIT_ERROR;
                break;
            }
        } else {
            failures = 0;
            print_pass(&cfg, &r, slices);
            if (tool_flush_stdout()) {
                status = TOOL_EXIT_ERROR;
                break;
            }
            if (cfg.once) {
                status = r.complete ? TOOL_EXIT_OK : TOOL_EXIT_NOTDONE;
                break;
            }
        }
        if (stopped || tool_poll_signals())
            break;
        /* Passes start on a fixed cadence; a pass that overran its interval
         * is followed at once by the next one. */
        next += cfg.interval_ns;
        uint64_t now = tool_mono_ns();
        if (next < now)
            next = now;
        if (tool_wait_until(next))
            break;
    }
    lmc_close(c);
    return status;
}
