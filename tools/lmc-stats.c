/*
 * lmc-stats.c - read the counters and gauges of an lmc cache, for people
 * (text), programs (JSON) and Prometheus (text exposition format).
 *
 * Operators run it to see hit ratio, fill, evictions and stuck readers, and
 * dashboards poll it.  It opens the cache read-only (LMC_OPEN_RDONLY), so it
 * never creates a missing cache, never changes an existing one, takes no
 * stats slot and never stamps recency: looking at a cache does not disturb
 * it.  Every field is printed from the table of lmc_stat_fields(), so a
 * field added to the library appears here without a change to this file.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

enum format { FMT_TEXT, FMT_JSON, FMT_PROM };

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s PATH [--json | --prometheus] [--watch SECONDS] [--per-process]\n"
            "                 [--output FILE]\n"
            "\n"
            "Print the counters and gauges of the lmc cache in directory PATH.  The\n"
            "cache is opened read-only: nothing is created or changed.\n"
            "\n"
            "  --json              one JSON object (one line) per snapshot\n"
            "  --prometheus        Prometheus text exposition format, for the\n"
            "                      node_exporter textfile collector\n"
            "  --watch SECONDS     print a snapshot every SECONDS until SIGINT/SIGTERM\n"
            "  --per-process       also the counters of each attached process\n"
            "  -o, --output FILE   write each snapshot to FILE, replacing it atomically\n"
            "                      (a temporary file in the same directory is renamed)\n"
            "  -h, --help          show this help and exit\n"
            "  -V, --version       show the version and exit\n"
            "\n"
            "Exit status: 0 ok; 2 on a usage error, a missing cache or a failure.\n",
            tool_name);
}

typedef struct config {
    const char *path;
    enum format fmt;
    uint64_t watch_ns; /* 0: one snapshot */
    int per_process;
    const char *output;
} config;

/* Fill cfg from the command line; usage errors exit 2, --help and
 * --version exit 0. */
static void parse_args(int argc, char **argv, config *cfg)
{
    enum { OPT_JSON = 256, OPT_PROM, OPT_WATCH, OPT_PERPROC };
    static const struct option longopts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"prometheus", no_argument, NULL, OPT_PROM},
        {"watch", required_argument, NULL, OPT_WATCH},
        {"per-process", no_argument, NULL, OPT_PERPROC},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    memset(cfg, 0, sizeof *cfg);
    int formats = 0;
    double secs;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":hVo:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            usage(stdout);
            exit(tool_flush_stdout() ? TOOL_EXIT_ERROR : TOOL_EXIT_OK);
        case 'V':
            tool_print_version();
            exit(tool_flush_stdout() ? TOOL_EXIT_ERROR : TOOL_EXIT_OK);
        case OPT_JSON:
            cfg->fmt = FMT_JSON;
            formats++;
            break;
        case OPT_PROM:
            cfg->fmt = FMT_PROM;
            formats++;
            break;
        case OPT_WATCH:
            if (tool_parse_double(optarg, 0.001, 86400.0, &secs))
                tool_usage_error("--watch needs seconds between 0.001 and 86400, not '%s'",
                                 optarg);
            cfg->watch_ns = (uint64_t)(secs * 1e9);
            break;
        case OPT_PERPROC:
            cfg->per_process = 1;
            break;
        case 'o':
            if (!*optarg)
                tool_usage_error("--output needs a file name");
            cfg->output = optarg;
            break;
        default:
            tool_option_error(argv, ch);
        }
    }
    if (formats > 1)
        tool_usage_error("--json and --prometheus exclude each other");
    if (optind >= argc)
        tool_usage_error("missing the cache PATH");
    cfg->path = argv[optind++];
    if (optind < argc)
        tool_usage_error("unexpected argument '%s'", argv[optind]);
}

/* ------------------------------------------------------------------------ */
/* One snapshot                                                             */
/* ------------------------------------------------------------------------ */

/* The state lmc-redis-sync keeps in the cache, one entry per prefix it
 * tracks: "lmc-redis-sync/status/PREFIX" -> a flat JSON object with one
 * nested object of flushes by reason (tools/lmc-redis-sync.c writes it). */
#define SYNC_STATUS_KEY "lmc-redis-sync/status/"
#define SYNC_MAX 16
#define SYNC_REASONS 12

typedef struct sync_status {
    char prefix[256];
    size_t prefix_len;
    int up;
    uint64_t pid, invalidations, reconnects, down_ms;
    int nreasons;
    char reason[SYNC_REASONS][32];
    uint64_t flushes[SYNC_REASONS];
} sync_status;
/*
 * The per-view counters of lmc.flask.HttpCache (python/lmc/flask.py): each
 * worker adds its counts now and then to the entries
 * "lmc-http-stats/<endpoint>\0<kind>", decimal text.  Key order keeps the
 * kinds of one endpoint together.
 */
#define HTTP_STATS_PREFIX "lmc-http-stats/"
static const char *const http_kinds[] = {"hit",     "miss",         "stale",
                                         "updating", "not_modified", "uncached"};
#define HTTP_NKINDS (sizeof http_kinds / sizeof http_kinds[0])

typedef struct http_view {
    char *endpoint; /* NUL-terminated copy */
    size_t len;
    uint64_t n[HTTP_NKINDS];
} http_view;

typedef struct snapshot {
    lmc_info info;
    lmc_stat st;
    lmc_proc_stat *procs; /* NULL unless --per-process */
    size_t nprocs;
    double hit_ratio;
    uint64_t evictions;
    sync_status sync[SYNC_MAX];
    int nsync;
    http_view *views; /* the HttpCache views, in key order */
    size_t nviews, views_cap;
    int views_nomem;
} snapshot;

/* The number after "key": in a JSON text of n bytes; 0 if absent. */
static uint64_t json_u64(const char *j, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(j, pat);
    return p ? strtoull(p + strlen(pat), NULL, 10) : 0;
}

/* lmc_scan callback: parse one status entry (the data is borrowed: copied
 * here).  Entries that are not such objects are skipped. */
static int sync_cb(void *arg, const lmc_value *e)
{
    snapshot *s = arg;
    size_t plen = strlen(SYNC_STATUS_KEY);
    if (s->nsync == SYNC_MAX || e->klen <= plen || e->len == 0 || e->len >= 1024)
        return 0;
    char j[1024];
    memcpy(j, e->data, e->len);
    j[e->len] = 0;
    if (j[0] != '{' || !strstr(j, "\"state\":"))
        return 0;
    sync_status *y = &s->sync[s->nsync++];
    memset(y, 0, sizeof *y);
    y->prefix_len = e->klen - plen < sizeof y->prefix ? e->klen - plen : sizeof y->prefix - 1;
    memcpy(y->prefix, (const char *)e->key + plen, y->prefix_len);
    y->up = strstr(j, "\"state\":\"up\"") != NULL;
    y->pid = json_u64(j, "pid");
    y->invalidations = json_u64(j, "invalidations");
    y->reconnects = json_u64(j, "reconnects");
    y->down_ms = json_u64(j, "down_ms");
    const char *f = strstr(j, "\"flushes\":{");
    if (f) {
        f += strlen("\"flushes\":{");
        while (*f == '"' && y->nreasons < SYNC_REASONS) {
            const char *end = strchr(f + 1, '"');
            if (!end || end[1] != ':' || (size_t)(end - f - 1) >= sizeof y->reason[0])
                break;
            /* Reasons become label values and key names: [a-z0-9_] only. */
            const char *c = f + 1;
            while (c < end && ((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
                c++;
            if (c != end)
                break;
            int r = y->nreasons++;
            memcpy(y->reason[r], f + 1, (size_t)(end - f - 1));
            y->reason[r][end - f - 1] = 0;
            char *next;
            y->flushes[r] = strtoull(end + 2, &next, 10);
            f = *next == ',' ? next + 1 : next;
        }
    }
    return 0;
}


static void free_views(snapshot *s)
{
    for (size_t i = 0; i < s->nviews; i++)
        free(s->views[i].endpoint);
    s->nviews = 0;
}

/* lmc_scan callback: one counter of one view. */
static int http_entry(void *arg, const lmc_value *e)
{
    snapshot *s = arg;
    const char *k = (const char *)e->key + strlen(HTTP_STATS_PREFIX);
    size_t klen = e->klen - strlen(HTTP_STATS_PREFIX);
    const char *nul = memchr(k, '\0', klen);
    if (!nul)
        return 0;
    size_t elen = (size_t)(nul - k);
    const char *kind = nul + 1;
    size_t kindlen = klen - elen - 1;
    size_t which = HTTP_NKINDS;
    for (size_t i = 0; i < HTTP_NKINDS; i++)
        if (strlen(http_kinds[i]) == kindlen && memcmp(http_kinds[i], kind, kindlen) == 0)
            which = i;
    uint64_t v = 0;
    const char *d = e->data;
    for (size_t i = 0; i < e->len && i < 20; i++) {
        if (d[i] < '0' || d[i] > '9')
            return 0; /* not a counter of HttpCache */
        v = v * 10 + (uint64_t)(d[i] - '0');
    }
    if (which == HTTP_NKINDS || e->len == 0 || e->len > 20)
        return 0;
    http_view *last = s->nviews ? &s->views[s->nviews - 1] : NULL;
    if (!last || last->len != elen || memcmp(last->endpoint, k, elen) != 0) {
        if (s->nviews == s->views_cap) {
            size_t cap = s->views_cap ? 2 * s->views_cap : 16;
            http_view *nv = realloc(s->views, cap * sizeof *nv);
            if (!nv)
                return s->views_nomem = 1;
            s->views = nv;
            s->views_cap = cap;
        }
        last = &s->views[s->nviews];
        memset(last, 0, sizeof *last);
        if (!(last->endpoint = malloc(elen + 1)))
            return s->views_nomem = 1;
        memcpy(last->endpoint, k, elen);
        last->endpoint[elen] = '\0';
        last->len = elen;
        s->nviews++;
    }
    last->n[which] = v;
    return 0;
}

/* Answers served from the cache (fresh or stale) over all answers. */
static double view_hit_ratio(const http_view *v)
{
    uint64_t served = v->n[0] + v->n[2];
    uint64_t all = served + v->n[1] + v->n[3] + v->n[5];
    return all ? (double)served / (double)all : 0.0;
}

/* Not an lmc code: the snapshot failed in the tool, which said why. */
#define SNAPSHOT_NOMEM 1

/* The per-process table can grow between the sizing call and the reading
 * call (a worker starts); read again with more room until it fits. */
static int read_procs(lmc *c, snapshot *s)
{
    size_t n = 0, cap = 0;
    int rc = lmc_stats_processes(c, NULL, 0, &n);
    while (rc == 0) {
        cap = n + 16;
        lmc_proc_stat *p = realloc(s->procs, cap * sizeof *p);
        if (!p) {
            fprintf(stderr, "%s: out of memory for the table of %zu processes\n", tool_name,
                    cap);
            return SNAPSHOT_NOMEM;
        }
        s->procs = p;
        rc = lmc_stats_processes(c, s->procs, cap, &n);
        if (rc == 0 && n <= cap) {
            s->nprocs = n;
            return 0;
        }
    }
    return rc;
}

/* Read everything one snapshot prints: the cache's facts, its counters and
 * gauges, the per-process table if asked for, and the derived figures.
 * Returns the lmc code of the call that failed, or SNAPSHOT_NOMEM; s->procs
 * is reused (and grown) across snapshots. */
static int take_snapshot(lmc *c, const config *cfg, snapshot *s)
{
    int rc = lmc_info_get(c, &s->info);
    if (rc == 0)
        rc = lmc_stats(c, &s->st);
    if (rc == 0 && cfg->per_process)
        rc = read_procs(c, s);
    s->nsync = 0;
    if (rc == 0)
        rc = lmc_scan(c, SYNC_STATUS_KEY, strlen(SYNC_STATUS_KEY), sync_cb, s);
    if (rc == 0) {
        free_views(s);
        rc = lmc_scan(c, HTTP_STATS_PREFIX, strlen(HTTP_STATS_PREFIX), http_entry, s);
        if (s->views_nomem) {
            fprintf(stderr, "%s: out of memory for the HTTP views\n", tool_name);
            return SNAPSHOT_NOMEM;
        }
    }
    if (rc)
        return rc;
    const lmc_counters *t = &s->st.counters;
    s->hit_ratio = t->gets ? (double)t->hits / (double)t->gets : 0.0;
    s->evictions = t->evictions_expired + t->evictions_soonest + t->evictions_lru;
    return 0;
}

/* A field of lmc_stat, located through the library's field table.  memcpy
 * keeps the read free of alignment and aliasing assumptions. */
static uint64_t field_u64(const void *base, const lmc_stat_field *f)
{
    uint64_t v;
    memcpy(&v, (const char *)base + f->offset, sizeof v);
    return v;
}

static double field_double(const void *base, const lmc_stat_field *f)
{
    double v;
    memcpy(&v, (const char *)base + f->offset, sizeof v);
    return v;
}

/* A counter of one process.  lmc_stat and lmc_proc_stat both embed
 * lmc_counters, so a counter's offset in the field table, less where the
 * counters start in lmc_stat, is its offset in lmc_proc_stat.counters. */
static uint64_t proc_counter(const lmc_proc_stat *p, const lmc_stat_field *f)
{
    uint64_t v;
    memcpy(&v, (const char *)&p->counters + (f->offset - offsetof(lmc_stat, counters)),
           sizeof v);
    return v;
}

/* ------------------------------------------------------------------------ */
/* Text: name:value lines under # Section headers                           */
/* ------------------------------------------------------------------------ */

/* Redis-INFO-like text.  Sections come from the field kinds, so a new
 * counter or gauge lands in the right section by itself. */
static void print_text(FILE *f, const config *cfg, const snapshot *s)
{
    size_t nf;
    const lmc_stat_field *fields = lmc_stat_fields(&nf);
    fprintf(f, "# Cache\npath:");
    tool_escape_bytes(f, cfg->path, strlen(cfg->path));
    fprintf(f, "\nlmc_version:%s\nlmdb_version:%s\nformat_version:%u\ncreated_ms:%" PRId64
               "\non_tmpfs:%d\ntime_ms:%" PRId64 "\n",
            lmc_version(NULL, NULL, NULL), s->info.lmdb_version, s->info.format_version,
            s->info.created_ms, s->info.on_tmpfs, tool_real_ms());
    fprintf(f, "\n# Counters\n");
    for (size_t i = 0; i < nf; i++)
        if (fields[i].kind == LMC_FIELD_COUNTER)
            fprintf(f, "%s:%" PRIu64 "\n", fields[i].name, field_u64(&s->st, &fields[i]));
    fprintf(f, "\n# Gauges\n");
    for (size_t i = 0; i < nf; i++) {
        if (fields[i].kind == LMC_FIELD_GAUGE_U64)
            fprintf(f, "%s:%" PRIu64 "\n", fields[i].name, field_u64(&s->st, &fields[i]));
        else if (fields[i].kind == LMC_FIELD_GAUGE_DOUBLE)
            fprintf(f, "%s:%.6f\n", fields[i].name, field_double(&s->st, &fields[i]));
    }
    fprintf(f, "\n# Derived\nhit_ratio:%.6f\nevictions:%" PRIu64 "\n", s->hit_ratio,
            s->evictions);
    for (int i = 0; i < s->nsync; i++) {
        const sync_status *y = &s->sync[i];
        fprintf(f, "\n# Redis sync\nprefix:");
        tool_escape_bytes(f, y->prefix, y->prefix_len);
        fprintf(f, "\nstate:%s\npid:%" PRIu64 "\ninvalidations:%" PRIu64 "\nreconnects:%" PRIu64
                   "\ndown_ms:%" PRIu64 "\n",
                y->up ? "up" : "down", y->pid, y->invalidations, y->reconnects, y->down_ms);
        for (int r = 0; r < y->nreasons; r++)
            fprintf(f, "flushes_%s:%" PRIu64 "\n", y->reason[r], y->flushes[r]);
    }
    if (s->nviews)
        fprintf(f, "\n# HTTP views\n");
    for (size_t v = 0; v < s->nviews; v++) {
        tool_escape_bytes(f, s->views[v].endpoint, s->views[v].len);
        for (size_t i = 0; i < HTTP_NKINDS; i++)
            fprintf(f, "%s%s=%" PRIu64, i ? " " : ":", http_kinds[i], s->views[v].n[i]);
        fprintf(f, " hit_ratio=%.6f\n", view_hit_ratio(&s->views[v]));
    }
    for (size_t p = 0; cfg->per_process && p < s->nprocs; p++) {
        const lmc_proc_stat *ps = &s->procs[p];
        fprintf(f, "\n# Process %" PRId64 "\npid:%" PRId64 "\nalive:%d\nstarted_ms:%" PRId64 "\n",
                ps->pid, ps->pid, ps->alive, ps->started_ms);
        for (size_t i = 0; i < nf; i++)
            if (fields[i].kind == LMC_FIELD_COUNTER)
                fprintf(f, "%s:%" PRIu64 "\n", fields[i].name,
                        proc_counter(ps, &fields[i]));
    }
}

/* ------------------------------------------------------------------------ */
/* JSON: one object per snapshot, on one line; keys are the text names      */
/* ------------------------------------------------------------------------ */

/* One flat object whose keys are the text names, so that `jq .hit_ratio`
 * and the text form agree; the per-process table is the only nested part. */
static void print_json(FILE *f, const config *cfg, const snapshot *s)
{
    size_t nf;
    const lmc_stat_field *fields = lmc_stat_fields(&nf);
    fprintf(f, "{\"path\":\"");
    tool_json_string(f, cfg->path, strlen(cfg->path));
    fprintf(f, "\",\"lmc_version\":\"%s\",\"lmdb_version\":\"", lmc_version(NULL, NULL, NULL));
    tool_json_string(f, s->info.lmdb_version, strlen(s->info.lmdb_version));
    fprintf(f, "\",\"format_version\":%u,\"created_ms\":%" PRId64 ",\"on_tmpfs\":%d"
               ",\"time_ms\":%" PRId64,
            s->info.format_version, s->info.created_ms, s->info.on_tmpfs, tool_real_ms());
    for (size_t i = 0; i < nf; i++) {
        if (fields[i].kind == LMC_FIELD_GAUGE_DOUBLE)
            fprintf(f, ",\"%s\":%.6f", fields[i].name, field_double(&s->st, &fields[i]));
        else
            fprintf(f, ",\"%s\":%" PRIu64, fields[i].name, field_u64(&s->st, &fields[i]));
    }
    fprintf(f, ",\"hit_ratio\":%.6f,\"evictions\":%" PRIu64, s->hit_ratio, s->evictions);
    /* Only with a sidecar's entries, like the per-process table: the other
     * keys are exactly the text form's names. */
    if (s->nsync)
        fprintf(f, ",\"redis_sync\":[");
    for (int i = 0; i < s->nsync; i++) {
        const sync_status *y = &s->sync[i];
        fprintf(f, "%s{\"prefix\":\"", i ? "," : "");
        tool_json_string(f, y->prefix, y->prefix_len);
        fprintf(f, "\",\"state\":\"%s\",\"pid\":%" PRIu64 ",\"invalidations\":%" PRIu64
                   ",\"reconnects\":%" PRIu64 ",\"down_ms\":%" PRIu64 ",\"flushes\":{",
                y->up ? "up" : "down", y->pid, y->invalidations, y->reconnects, y->down_ms);
        for (int r = 0; r < y->nreasons; r++)
            fprintf(f, "%s\"%s\":%" PRIu64, r ? "," : "", y->reason[r], y->flushes[r]);
        fprintf(f, "}}");
    }
    if (s->nsync)
        fputc(']', f);
    if (s->nviews) {
        fprintf(f, ",\"http_views\":{");
        for (size_t v = 0; v < s->nviews; v++) {
            fprintf(f, "%s\"", v ? "," : "");
            tool_json_string(f, s->views[v].endpoint, s->views[v].len);
            fputs("\":{", f);
            for (size_t i = 0; i < HTTP_NKINDS; i++)
                fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "", http_kinds[i], s->views[v].n[i]);
            fprintf(f, ",\"hit_ratio\":%.6f}", view_hit_ratio(&s->views[v]));
        }
        fputc('}', f);
    }
    if (cfg->per_process) {
        fprintf(f, ",\"per_process\":[");
        for (size_t p = 0; p < s->nprocs; p++) {
            const lmc_proc_stat *ps = &s->procs[p];
            fprintf(f, "%s{\"pid\":%" PRId64 ",\"alive\":%d,\"started_ms\":%" PRId64,
                    p ? "," : "", ps->pid, ps->alive, ps->started_ms);
            for (size_t i = 0; i < nf; i++)
                if (fields[i].kind == LMC_FIELD_COUNTER)
                    fprintf(f, ",\"%s\":%" PRIu64, fields[i].name,
                            proc_counter(ps, &fields[i]));
            fputc('}', f);
        }
        fputc(']', f);
    }
    fprintf(f, "}\n");
}

/* ------------------------------------------------------------------------ */
/* Prometheus text exposition format                                        */
/* ------------------------------------------------------------------------ */

/*
 * Every sample carries a path label, so that the textfile collector can read
 * the files of several caches on one host without clashing series.  There
 * are no timestamps: the textfile collector rejects them.  Each family is
 * one contiguous group: HELP, TYPE, then its samples.
 */
static void prom_family(FILE *f, const char *name, const char *suffix, const char *type,
                        const char *help)
{
    fprintf(f, "# HELP lmc_%s%s %s\n# TYPE lmc_%s%s %s\n", name, suffix, help, name, suffix,
            type);
}

static void prom_labels(FILE *f, const config *cfg, const lmc_proc_stat *ps)
{
    fprintf(f, "{path=\"");
    tool_prom_label(f, cfg->path);
    fputc('"', f);
    if (ps)
        fprintf(f, ",pid=\"%" PRId64 "\"", ps->pid);
    fputc('}', f);
}

/* lmc-redis-sync's state, a family per figure with a prefix label (and a
 * reason label for the flushes). */
static void prom_sync_labels(FILE *f, const config *cfg, const sync_status *y, const char *reason)
{
    fprintf(f, "{path=\"");
    tool_prom_label(f, cfg->path);
    fprintf(f, "\",prefix=\"");
    char p[sizeof y->prefix];
    memcpy(p, y->prefix, y->prefix_len);
    p[y->prefix_len] = 0;
    tool_prom_label(f, p);
    if (reason)
        fprintf(f, "\",reason=\"%s", reason);
    fprintf(f, "\"}");
}

static void print_prom_sync(FILE *f, const config *cfg, const snapshot *s)
{
    if (s->nsync == 0)
        return;
    static const struct {
        const char *name, *suffix, *type, *help;
    } fam[] = {
        {"redis_sync_up", "", "gauge", "1 while lmc-redis-sync keeps the prefix coherent"},
        {"redis_sync_invalidations", "_total", "counter", "keys lmc-redis-sync invalidated"},
        {"redis_sync_reconnects", "_total", "counter", "times lmc-redis-sync turned tracking on again"},
        {"redis_sync_down_ms", "_total", "counter", "milliseconds lmc-redis-sync spent without tracking"},
    };
    for (size_t k = 0; k < sizeof fam / sizeof fam[0]; k++) {
        prom_family(f, fam[k].name, fam[k].suffix, fam[k].type, fam[k].help);
        for (int i = 0; i < s->nsync; i++) {
            const sync_status *y = &s->sync[i];
            uint64_t v = k == 0 ? (uint64_t)y->up : k == 1 ? y->invalidations
                       : k == 2 ? y->reconnects : y->down_ms;
            fprintf(f, "lmc_%s%s", fam[k].name, fam[k].suffix);
            prom_sync_labels(f, cfg, y, NULL);
            fprintf(f, " %" PRIu64 "\n", v);
        }
    }
    prom_family(f, "redis_sync_flushes", "_total", "counter",
                "flushes of the prefix by lmc-redis-sync, by reason");
    for (int i = 0; i < s->nsync; i++)
        for (int r = 0; r < s->sync[i].nreasons; r++) {
            fprintf(f, "lmc_redis_sync_flushes_total");
            prom_sync_labels(f, cfg, &s->sync[i], s->sync[i].reason[r]);
            fprintf(f, " %" PRIu64 "\n", s->sync[i].flushes[r]);
        }
}

static void print_prom(FILE *f, const config *cfg, const snapshot *s)
{
    size_t nf;
    const lmc_stat_field *fields = lmc_stat_fields(&nf);

    prom_family(f, "info", "", "gauge", "constant 1, labelled with the versions of the cache");
    fprintf(f, "lmc_info{path=\"");
    tool_prom_label(f, cfg->path);
    fprintf(f, "\",lmc_version=\"%s\",lmdb_version=\"", lmc_version(NULL, NULL, NULL));
    tool_prom_label(f, s->info.lmdb_version);
    fprintf(f, "\",format_version=\"%u\"} 1\n", s->info.format_version);
    prom_family(f, "created_ms", "", "gauge", "when the cache was created, ms since the epoch");
    fprintf(f, "lmc_created_ms");
    prom_labels(f, cfg, NULL);
    fprintf(f, " %" PRId64 "\n", s->info.created_ms);
    prom_family(f, "on_tmpfs", "", "gauge", "1 if the cache files live on tmpfs or ramfs");
    fprintf(f, "lmc_on_tmpfs");
    prom_labels(f, cfg, NULL);
    fprintf(f, " %d\n", s->info.on_tmpfs);

    for (size_t i = 0; i < nf; i++) {
        const lmc_stat_field *fd = &fields[i];
        int counter = fd->kind == LMC_FIELD_COUNTER;
        prom_family(f, fd->name, counter ? "_total" : "", counter ? "counter" : "gauge",
                    fd->help);
        fprintf(f, "lmc_%s%s", fd->name, counter ? "_total" : "");
        prom_labels(f, cfg, NULL);
        if (fd->kind == LMC_FIELD_GAUGE_DOUBLE)
            fprintf(f, " %.6f\n", field_double(&s->st, fd));
        else
            fprintf(f, " %" PRIu64 "\n", field_u64(&s->st, fd));
    }
    prom_family(f, "hit_ratio", "", "gauge", "hits / gets since the cache was created");
    fprintf(f, "lmc_hit_ratio");
    prom_labels(f, cfg, NULL);
    fprintf(f, " %.6f\n", s->hit_ratio);
    prom_family(f, "evictions", "_total", "counter", "entries evicted, for any reason");
    fprintf(f, "lmc_evictions_total");
    prom_labels(f, cfg, NULL);
    fprintf(f, " %" PRIu64 "\n", s->evictions);

    print_prom_sync(f, cfg, s);
    if (s->nviews) {
        prom_family(f, "http_responses", "_total", "counter",
                    "answers of lmc.flask.HttpCache by view (endpoint) and X-Cache "
                    "(uncached: not storable, rendered for this request only)");
        for (size_t v = 0; v < s->nviews; v++)
            for (size_t i = 0; i < HTTP_NKINDS; i++) {
                if (strcmp(http_kinds[i], "not_modified") == 0)
                    continue;
                fprintf(f, "lmc_http_responses_total{path=\"");
                tool_prom_label(f, cfg->path);
                fprintf(f, "\",endpoint=\"");
                tool_prom_label(f, s->views[v].endpoint);
                fprintf(f, "\",x_cache=\"%s\"} %" PRIu64 "\n", http_kinds[i], s->views[v].n[i]);
            }
        prom_family(f, "http_not_modified", "_total", "counter",
                    "answers of lmc.flask.HttpCache that were 304 Not Modified, by view");
        for (size_t v = 0; v < s->nviews; v++) {
            fprintf(f, "lmc_http_not_modified_total{path=\"");
            tool_prom_label(f, cfg->path);
            fprintf(f, "\",endpoint=\"");
            tool_prom_label(f, s->views[v].endpoint);
            fprintf(f, "\"} %" PRIu64 "\n", s->views[v].n[4]);
        }
    }
    if (!cfg->per_process || s->nprocs == 0)
        return;
    /* Per-process counters form families of their own, with a pid label;
     * the shared overflow slot appears as pid 0. */
    for (size_t i = 0; i < nf; i++) {
        const lmc_stat_field *fd = &fields[i];
        if (fd->kind != LMC_FIELD_COUNTER)
            continue;
        fprintf(f, "# HELP lmc_process_%s_total %s, by process\n", fd->name, fd->help);
        fprintf(f, "# TYPE lmc_process_%s_total counter\n", fd->name);
        for (size_t p = 0; p < s->nprocs; p++) {
            fprintf(f, "lmc_process_%s_total", fd->name);
            prom_labels(f, cfg, &s->procs[p]);
            fprintf(f, " %" PRIu64 "\n", proc_counter(&s->procs[p], fd));
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Output                                                                   */
/* ------------------------------------------------------------------------ */

/* Print one snapshot in the chosen format to f. */
static void print_snapshot(FILE *f, const config *cfg, const snapshot *s)
{
    if (cfg->fmt == FMT_JSON)
        print_json(f, cfg, s);
    else if (cfg->fmt == FMT_PROM)
        print_prom(f, cfg, s);
    else
        print_text(f, cfg, s);
}

/*
 * --output: write the snapshot to a temporary file next to FILE and rename
 * it over FILE, so that a reader (the textfile collector) sees either the
 * old or the new snapshot, never half of one.
 */
static int write_output(const config *cfg, const snapshot *s)
{
    size_t len = strlen(cfg->output);
    char *tmp = malloc(len + 32);
    if (!tmp) {
        fprintf(stderr, "%s: out of memory\n", tool_name);
        return -1;
    }
    snprintf(tmp, len + 32, "%s.tmp.%ld", cfg->output, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        fprintf(stderr, "%s: cannot write %s: %s\n", tool_name, tmp, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        free(tmp);
        return -1;
    }
    print_snapshot(f, cfg, s);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "%s: cannot write %s: %s\n", tool_name, tmp, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    if (rename(tmp, cfg->output) != 0) {
        fprintf(stderr, "%s: cannot rename %s to %s: %s\n", tool_name, tmp, cfg->output,
                strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

/* Open read-only, then print one snapshot, or one every --watch interval
 * until SIGINT/SIGTERM (exit 0). */
int main(int argc, char **argv)
{
    tool_name = "lmc-stats";
    tool_synopsis = "Usage: lmc-stats PATH [--json | --prometheus] [--watch SECONDS] "
                    "[--per-process] [--output FILE]";
    config cfg;
    parse_args(argc, argv, &cfg);
    if (cfg.watch_ns && tool_signals_init() != 0) {
        fprintf(stderr, "%s: cannot install signal handlers\n", tool_name);
        return TOOL_EXIT_ERROR;
    }

    /* Read-only: never creates anything; a missing cache is LMC_ENOCACHE. */
    lmc_options oo;
    memset(&oo, 0, sizeof oo);
    oo.flags = LMC_OPEN_RDONLY;
    lmc *c = NULL;
    if (tool_open(&c, cfg.path, &oo))
        return TOOL_EXIT_ERROR;

    int status = TOOL_EXIT_OK;
    snapshot s;
    memset(&s, 0, sizeof s);
    uint64_t next = tool_mono_ns();
    for (unsigned n = 0;; n++) {
        int rc = take_snapshot(c, &cfg, &s);
        if (rc) {
            if (rc != SNAPSHOT_NOMEM)
                tool_report(c, rc, "%s: reading the stats failed", cfg.path);
            status = TOOL_EXIT_ERROR;
            break;
        }
        if (cfg.output) {
            if (write_output(&cfg, &s)) {
                status = TOOL_EXIT_ERROR;
                break;
            }
        } else {
            /* Snapshots of text and Prometheus output are separated by a
             * blank line; JSON snapshots are one line each already. */
            if (n > 0 && cfg.fmt != FMT_JSON)
                putchar('\n');
            print_snapshot(stdout, &cfg, &s);
            if (tool_flush_stdout()) {
                status = TOOL_EXIT_ERROR;
                break;
            }
        }
        if (!cfg.watch_ns)
            break;
        next += cfg.watch_ns;
        uint64_t now = tool_mono_ns();
        if (next < now)
            next = now;
        if (tool_wait_until(next))
            break;
    }
    free(s.procs);
    free_views(&s);
    free(s.views);
    lmc_close(c);
    return status;
}
