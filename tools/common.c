/*
 * common.c - helpers shared by the lmc command-line tools: messages and exit
 * codes, strict number parsing, output escaping (JSON, terminal, Prometheus
 * labels) and signal handling for the long-running modes.
 *
 * Everything here uses only the public API of include/lmc.h, like the tools
 * themselves.
 */
#define _GNU_SOURCE /* ppoll */

#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

const char *tool_name = "lmc";
const char *tool_synopsis = "";
volatile sig_atomic_t tool_stop = 0;

/* The signal mask to use while waiting: the original one, which lets
 * SIGINT/SIGTERM through. */
static sigset_t wait_mask;

void tool_print_version(void)
{
    printf("%s %s (liblmc %s)\n", tool_name, LMC_VERSION_STRING, lmc_version(NULL, NULL, NULL));
}

void tool_usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", tool_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s\nTry '%s --help' for more information.\n", tool_synopsis, tool_name);
    exit(TOOL_EXIT_ERROR);
}

void tool_option_error(char **argv, int ch)
{
    /* glibc sets optopt to the character of a bad short option, to the val
     * of a long option given a value it does not take or missing one, and
     * to 0 for an unknown long option; only a short option's character is
     * worth printing, otherwise the offending word is argv[optind - 1]. */
    int shortopt = optopt > ' ' && optopt < 127;
    if (ch == ':') {
        if (shortopt)
            tool_usage_error("option '-%c' needs a value", optopt);
        tool_usage_error("option '%s' needs a value", argv[optind - 1]);
    }
    if (shortopt)
        tool_usage_error("unknown option '-%c'", optopt);
    tool_usage_error("unknown or malformed option '%s'", argv[optind - 1]);
}

void tool_report(const lmc *c, int rc, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", tool_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    /* The library's message describes the call that just failed on c, and
     * starts with the code's name ("LMC_EPERM: refusing ..."); it is empty
     * for a failure that needs none, and then the code's text says it all. */
    const char *detail = lmc_errmsg(c);
    fprintf(stderr, ": %s\n", *detail ? detail : lmc_strerror(rc));
}

int tool_open(lmc **out, const char *path, const lmc_options *opts)
{
    lmc_options o = *opts;
    /* A cache set up for group sharing (group bits on its directory) must be
     * opened with a group mode, or the library refuses its group-writable
     * files.  The tools adopt the sharing the cache was created with, so
     * that an operator in the group does not need to know the mode; the
     * library still checks ownership and refuses anything world-writable. */
    struct stat st;
    if (o.mode == 0 && lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0070))
        o.mode = 0600 | ((st.st_mode & 0060) ? (unsigned)(st.st_mode & 0060) : 0040u);
    int rc = lmc_open(out, path, &o);
    if (rc == LMC_ENOCACHE) {
        /* The one failure an operator meets most (a mistyped path), in
         * words, with the code name for scripts that grep. */
        fprintf(stderr, "%s: %s: no lmc cache there (%s)\n", tool_name, path, lmc_errname(rc));
    } else if (rc) {
        tool_report(NULL, rc, "cannot open %s", path);
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                  */
/* ------------------------------------------------------------------------ */

int tool_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    /* strtoull accepts leading blanks and a minus sign (negating the value);
     * neither is a valid count, so insist on a leading digit. */
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

int tool_parse_i64(const char *s, int64_t *out)
{
    if (!s || !(*s == '-' || *s == '+' || (*s >= '0' && *s <= '9')))
        return -1;
    if ((*s == '-' || *s == '+') && !(s[1] >= '0' && s[1] <= '9'))
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = (int64_t)v;
    return 0;
}

int tool_parse_double(const char *s, double min, double max, double *out)
{
    if (!s || !*s || !((*s >= '0' && *s <= '9') || *s == '.'))
        return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int tool_parse_size(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: break;
    }
    if (shift && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
        end += strlen(end);
    else if (!shift && strcmp(end, "B") == 0)
        end++;
    if (*end)
        return -1;
    if (shift && v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

int tool_is_negative_number(const char *s)
{
    if (!s || s[0] != '-' || !s[1])
        return 0;
    for (const char *p = s + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Escaping                                                                 */
/* ------------------------------------------------------------------------ */

void tool_json_string(FILE *f, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = s[i];
        switch (ch) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (ch < 0x20 || ch >= 0x7f)
                fprintf(f, "\\u%04x", ch);
            else
                fputc(ch, f);
        }
    }
}

void tool_escape_bytes(FILE *f, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = s[i];
        if (ch == '\\')
            fputs("\\\\", f);
        else if (ch < 0x20 || ch >= 0x7f)
            fprintf(f, "\\x%02x", ch);
        else
            fputc(ch, f);
    }
}

void tool_prom_label(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '"')
            fputs("\\\"", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

/* ------------------------------------------------------------------------ */
/* Signals and time                                                         */
/* ------------------------------------------------------------------------ */

static void on_stop_signal(int sig)
{
    (void)sig;
    tool_stop = 1;
}

int tool_signals_init(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a wait must return with EINTR when a signal arrives. */
    sa.sa_flags = 0;
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        return -1;
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &block, &wait_mask) != 0)
        return -1;
    /* The mask used while waiting must let both signals through even if
     * our parent started us with them blocked. */
    sigdelset(&wait_mask, SIGINT);
    sigdelset(&wait_mask, SIGTERM);
    return 0;
}

uint64_t tool_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t tool_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tool_wait_until(uint64_t deadline_ns)
{
    /* ppoll swaps in wait_mask atomically, so a signal that arrived while
     * it was blocked (during a sweep pass, say) is delivered right here and
     * ends the wait at once, instead of being missed until the deadline. */
    while (!tool_stop) {
        uint64_t now = tool_mono_ns();
        if (now >= deadline_ns)
            return 0;
        uint64_t left = deadline_ns - now;
        struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
        if (ppoll(NULL, 0, &ts, &wait_mask) < 0 && errno != EINTR)
            return tool_stop; /* cannot wait: let the caller carry on */
    }
    return 1;
}

int tool_ppoll(struct pollfd *fds, unsigned n, uint64_t deadline_ns)
{
    if (tool_stop)
        return 0;
    uint64_t now = tool_mono_ns();
    uint64_t left = deadline_ns > now ? deadline_ns - now : 0;
    struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
    int r = ppoll(fds, (nfds_t)n, &ts, &wait_mask);
    if (r < 0 && errno == EINTR)
        return 0;
    return r;
}

int tool_poll_signals(void)
{
    struct timespec zero = {0, 0};
    (void)ppoll(NULL, 0, &zero, &wait_mask);
    return tool_stop;
}

int tool_flush_stdout(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: writing the output failed: %s\n", tool_name, strerror(errno));
        return -1;
    }
    return 0;
}
