/*
 * options.h - the one table of settings: every key of the configuration
 * file is one row (its kind, range, place in struct opts, default, whether a
 * reload applies it, its argument name and help), and the command line, the
 * usage text, the defaults, the reload report and `ringsocks -T` are all
 * read from it. config.c reads the file's syntax (and the rules) and hands
 * each value to options_set*(); the command line goes through
 * options_apply_args(). So a value the file accepts, the command line
 * accepts, with the same range and the same message when it does not.
 *
 * Pure code over struct opts: no file, socket or thread of its own; called
 * on the main thread at start and on the control thread on reload.
 */
#ifndef RINGSOCKS_OPTIONS_H
#define RINGSOCKS_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "opts.h"

enum options_kind {
    OPTIONS_UINT,   /* unsigned in [min, max] */
    OPTIONS_BOOL,   /* true or false */
    OPTIONS_CHOICE, /* one of words[], stored as its index (the enum's value) */
    OPTIONS_STRING, /* a char[] field; check() says what it may hold; "" is unset */
    OPTIONS_PORTS,  /* "LO-HI", two uint16_t fields; 0-0 is unset */
    OPTIONS_ADDR,   /* one address in a sockaddr_storage; AF_UNSPEC is unset (or "off") */
    OPTIONS_ADDRS,  /* list: sockaddr_storage[] and its count */
    OPTIONS_CSV,    /* list: "a,b" in a char[] field, each element checked by add() */
    OPTIONS_RULES,  /* the access rules: the file only, parsed by config.c */
    OPTIONS_SETS,   /* named address sets the rules use: the file only, parsed by config.c */
};

/* Row flags. */
#define OPTIONS_F_RELOAD   0x01u /* a reload applies it; otherwise it needs a restart */
#define OPTIONS_F_POW2     0x02u /* UINT: a power of two */
#define OPTIONS_F_OFF      0x04u /* ADDR: "off" is a value (AF_UNSPEC) */
#define OPTIONS_F_PORT     0x08u /* ADDR, ADDRS: ":PORT" is required */
#define OPTIONS_F_NONEMPTY 0x10u /* ADDRS: an empty list is an error */

struct options_row {
    const char *key; /* in the file; the long option is the key with '_' as '-' */
    enum options_kind kind;
    unsigned flags;
    long long min, max;       /* UINT: the range; ADDRS, CSV: max is the most elements */
    size_t off, size;         /* the field in struct opts */
    size_t off2;              /* ADDRS: the count (unsigned); PORTS: the hi field */
    const char *const *words; /* CHOICE: in enum order */
    /* STRING: NULL if v may be stored, else why not. */
    const char *(*check)(const char *v);
    /* CSV: append v to list (r->size bytes): 0, -EINVAL or -E2BIG (full), with why. */
    int (*add)(const struct options_row *r, char *list, const char *v, char *why, size_t whycap);
    const char *def;   /* the default as a command-line value; NULL: unset (or empty) */
    const char *unset; /* what unset means; UINT: what 0 means, where it is special */
    const char *arg;   /* the value's name in the usage text: "SEC", "HOST:PORT" */
    const char *alias; /* another long option for it (today's spelling), or NULL */
    const char *help;  /* one line for --help */
};

/* The rows, in the order the usage text, -T and the documentation list them. */
extern const struct options_row options_rows[];
extern const size_t options_n_rows;

/*
 * Is row r set by the file only (the rules and the address sets: config.c
 * parses them; no option, no field in struct opts, not in options_print())?
 */
static inline bool
options_file_only(const struct options_row *r)
{
    return r->kind == OPTIONS_RULES || r->kind == OPTIONS_SETS;
}

/* The SOCKS5 methods auth lists (SOCKS5_METHOD_GSSAPI, SOCKS5_METHOD_PASSWORD), in the
 * order the server prefers them: 0 for "none". */
unsigned options_auth_methods(const struct opts *o, uint8_t methods[OPTS_AUTH_METHODS]);
/* Does auth list method? */
bool options_auth_has(const struct opts *o, uint8_t method);
/* gss_protection's "N" or "LO-HI" (0 <= LO <= HI <= 2): 0, or -EINVAL. */
int options_gss_levels(const char *v, uint8_t *lo, uint8_t *hi);

/* The row of a key, or NULL. */
const struct options_row *options_find(const char *key);

/* Every field of o at its row's default; fields no row owns are zero. */
void options_defaults(struct opts *o);

/*
 * Set row r of o from one value as text (the command line, and the file's
 * strings); for a list kind, append one element. 0, or -EINVAL with the
 * reason (without the key) in why, or -E2BIG when a list is full (why says
 * so; the elements after it need no message of their own).
 */
int options_set(const struct options_row *r, struct opts *o, const char *text, char *why,
                size_t whycap);
/* UINT from an integer (the file's). 0, or -EINVAL with why. */
int options_set_uint(const struct options_row *r, struct opts *o, long long v, char *why,
                     size_t whycap);
/* BOOL. */
void options_set_bool(const struct options_row *r, struct opts *o, bool v);
/* A list kind: empty it (a list given again replaces the one before). */
void options_clear(const struct options_row *r, struct opts *o);
/* Is row r of o a list kind (one value may stand for a list of one)? */
bool options_is_list(const struct options_row *r);

/*
 * Row r of o in the file's syntax: 7200, true, "auto", ["a", "b"], []. Returns
 * false (buf empty) when the value is unset and has no spelling in the file.
 */
bool options_format(const struct options_row *r, const struct opts *o, char *buf, size_t cap);
/* s as a string in the file's syntax: quoted, escaped; cut (still quoted) at cap. */
void options_quote(const char *s, char *buf, size_t cap);
/* Do a and b hold the same value for row r? */
bool options_equal(const struct options_row *r, const struct opts *a, const struct opts *b);
/* Copy row r's field(s) from src to dst. */
void options_copy(const struct options_row *r, struct opts *dst, const struct opts *src);

/* "splice", "copy" or "auto": the word the file and --relay use. */
const char *options_relay_name(enum relay_engine e);

/*
 * "LO-HI", or "N" with allow_single, 1 <= LO <= HI <= 65535, digits only
 * (bind_ports, udp_ports and the rules' ports). 0 or -EINVAL.
 */
int options_parse_ports(const char *s, bool allow_single, uint16_t *lo, uint16_t *hi);

/* What the command line asked for besides settings. */
struct options_cli {
    const char *config; /* -c FILE */
    bool test;          /* -t */
    bool dump;          /* -T: check, then print the effective configuration */
    bool help;          /* --help */
    bool version;       /* --version */
};

/*
 * Apply the command line to o (which holds the defaults, or the file on top
 * of them): --key-with-dashes VALUE for every row but the rules; the first
 * --listen (any list option) replaces the list, the next ones add to it.
 * Parses argv afresh each time (glibc's getopt_long, reset), so a reload can
 * apply the same command line again. 0, or -1 with one line
 * ("--shards: 2000 is not in 0..1024") in err.
 */
int options_apply_args(int argc, char **argv, struct opts *o, struct options_cli *cli, char *err,
                       size_t errlen);

/* The --help text, from the rows. */
void options_usage(FILE *f);

/*
 * Rows whose value differs between was and now, "key OLD -> NEW" joined by
 * ", ", those a reload applies into applied and the others into restart
 * (either may be NULL). Returns the number of rows that differ.
 */
unsigned options_diff(const struct opts *was, const struct opts *now, char *applied,
                      size_t applied_cap, char *restart, size_t restart_cap);

/*
 * Append printf-style text to buf (cap bytes, *used of them written),
 * always terminated, cut when full: the reports and messages built from rows.
 */
void options_append(char *buf, size_t cap, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Write o as a configuration file, every row one line (unset ones as a comment), no rules. */
void options_print(FILE *f, const struct opts *o);

#endif
