/*
 * opts.c - option values that name one of a few choices: --close (connrate's end of a
 * tunnel: rst, fin, target) and --direction (throughput). Pure: main.c parses with them, the reports print
 * the names back; no state of its own.
 */
#include "socksload.h"

#include <errno.h>
#include <string.h>

int
opts_close_parse(const char *s, enum close_how *out)
{
    if (!strcmp(s, "rst"))
        *out = CLOSE_RST;
    else if (!strcmp(s, "fin"))
        *out = CLOSE_FIN;
    else if (!strcmp(s, "target"))
        *out = CLOSE_TARGET;
    else
        return -EINVAL;
    return 0;
}

const char *
opts_close_str(enum close_how c)
{
    return c == CLOSE_FIN ? "fin" : c == CLOSE_TARGET ? "target" : "rst";
}

int
opts_dir_parse(const char *s, enum dir *out)
{
    if (!strcmp(s, "down"))
        *out = DIR_DOWN;
    else if (!strcmp(s, "up"))
        *out = DIR_UP;
    else if (!strcmp(s, "both"))
        *out = DIR_BOTH;
    else
        return -EINVAL;
    return 0;
}

const char *
opts_dir_str(enum dir d)
{
    return d == DIR_DOWN ? "down" : d == DIR_UP ? "up" : "both";
}
