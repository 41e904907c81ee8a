/*
 * common.h - helpers shared by the lmc command-line tools (lmc, lmc-sweep,
 * lmc-stats).
 *
 * The tools use only the public API of include/lmc.h.  What they have in
 * common lives here so that every tool reports errors, parses numbers,
 * escapes output and handles signals the same way: exit codes and message
 * formats are part of what scripts rely on.
 */
#ifndef LMC_TOOLS_COMMON_H
#define LMC_TOOLS_COMMON_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lmc.h"

/* Exit codes shared by every tool (see docs/tools.md). */
#define TOOL_EXIT_OK 0
#define TOOL_EXIT_NOTDONE 1 /* a miss, an existing key, an incomplete pass */
#define TOOL_EXIT_ERROR 2   /* usage error or failure */

#if defined(__GNUC__) || defined(__clang__)
#define TOOL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define TOOL_NORETURN __attribute__((noreturn))
#else
#define TOOL_PRINTF(f, a)
#define TOOL_NORETURN
#endif

/* Name of the running tool, used as the prefix of every message. */
extern const char *tool_name;

/* The tool's one-line synopsis ("Usage: ..."), printed with usage errors. */
extern const char *tool_synopsis;

/* Set by the SIGINT/SIGTERM handler installed by tool_signals_init(). */
extern volatile sig_atomic_t tool_stop;

/* Print "NAME VERSION (liblmc VERSION)" on stdout. */
void tool_print_version(void);

/* A usage error: the message, the synopsis and a hint to --help on stderr,
 * exit 2. */
TOOL_NORETURN void tool_usage_error(const char *fmt, ...) TOOL_PRINTF(1, 2);

/* A usage error for getopt_long's result ch (':' for a missing value, '?'
 * for anything else it did not accept), exit 2.  Call right after
 * getopt_long, with opterr = 0 and an optstring starting with ':'. */
TOOL_NORETURN void tool_option_error(char **argv, int ch);

/* Print "NAME: CONTEXT: LMC_X: detail" on stderr, right after the library
 * call on c failed with rc: the detail is lmc_errmsg(c), or lmc_strerror(rc)
 * when the call left no message.  c is NULL for a failed lmc_open(). */
void tool_report(const lmc *c, int rc, const char *fmt, ...) TOOL_PRINTF(3, 4);

/* Open the cache at path with the given options.  Without a mode in opts,
 * the group sharing of an existing cache directory is adopted.  A missing
 * cache gets a message of its own, because "no such entry" would confuse
 * there.  Returns the lmc code; on failure the message is already printed. */
int tool_open(lmc **out, const char *path, const lmc_options *opts);

/* Strict number parsers: the whole string must be the number, with no sign
 * for unsigned values, and within [min, max].  They return 0 on success and
 * -1 on failure (nothing printed). */
int tool_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
int tool_parse_i64(const char *s, int64_t *out);
int tool_parse_double(const char *s, double min, double max, double *out);
/* A byte size: digits with an optional K, M, G or T suffix (powers of 1024),
 * optionally followed by "B" or "iB". */
int tool_parse_size(const char *s, uint64_t *out);

/* True when s looks like a negative decimal number ("-3"), which the
 * argument parsers treat as an operand rather than an option. */
int tool_is_negative_number(const char *s);

/* Write bytes as the body of a JSON string (no quotes).  Bytes >= 0x80 are
 * written as \u00XX so the output is always valid JSON, even for keys that
 * are not UTF-8. */
void tool_json_string(FILE *f, const void *p, size_t n);

/* Write bytes for a terminal or a line-based file: printable ASCII as is,
 * a backslash as "\\", everything else (tab, newline, bytes >= 0x7f) as
 * "\xHH".  The result never contains a tab or a newline. */
void tool_escape_bytes(FILE *f, const void *p, size_t n);

/* Write a Prometheus label value: backslash, double quote and newline are
 * escaped as the text exposition format requires. */
void tool_prom_label(FILE *f, const char *s);

/* Install SIGINT/SIGTERM handlers that set tool_stop, and block both
 * signals: they are delivered only inside tool_wait_until() and
 * tool_poll_signals(), so no signal can slip in between checking tool_stop
 * and starting to wait. */
int tool_signals_init(void);

/* Wait until the CLOCK_MONOTONIC time `deadline_ns`, or until SIGINT/SIGTERM.
 * Returns 1 if a stop was requested, 0 when the deadline passed. */
int tool_wait_until(uint64_t deadline_ns);

/* ppoll(2) on n descriptors until the CLOCK_MONOTONIC time deadline_ns,
 * with SIGINT/SIGTERM let through: the number of ready descriptors, 0 on
 * timeout or a signal (check tool_stop), -1 with errno on an error. */
struct pollfd;
int tool_ppoll(struct pollfd *fds, unsigned n, uint64_t deadline_ns);

/* Deliver any pending SIGINT/SIGTERM now; returns tool_stop. */
int tool_poll_signals(void);

/* Clocks: CLOCK_MONOTONIC in ns, CLOCK_REALTIME in ms. */
uint64_t tool_mono_ns(void);
int64_t tool_real_ms(void);

/* Flush stdout and report a write error (e.g. a full disk); returns 0 or -1. */
int tool_flush_stdout(void);

#endif /* LMC_TOOLS_COMMON_H */
