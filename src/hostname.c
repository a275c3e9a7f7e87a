/*
 * hostname.c - the one check and normal form of a host name (see
 * hostname.h). Pure: no globals, no allocation, any thread.
 */
#include "hostname.h"

#include <stdbool.h>

#define LABEL_MAX 63

static bool
is_name_byte(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_';
}

int
hostname_norm(const char *in, size_t len, char *out)
{
    /* The root dot is not part of the name. */
    if (len > 0 && in[len - 1] == '.')
        len--;
    if (len == 0)
        return -HOSTNAME_EMPTY;
    if (len > HOSTNAME_MAX)
        return -HOSTNAME_TOO_LONG;
    size_t label = 0;
    bool numeric = true; /* the current label is all digits so far */
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == '.') {
            /* A leading dot, two in a row, or one before the root's. */
            if (label == 0)
                return -HOSTNAME_EMPTY_LABEL;
            label = 0;
            numeric = true;
            out[i] = '.';
            continue;
        }
        if (!is_name_byte(ch))
            return -HOSTNAME_BAD_CHAR;
        if (++label > LABEL_MAX)
            return -HOSTNAME_LONG_LABEL;
        numeric = numeric && ch >= '0' && ch <= '9';
        out[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
    }
    /* "localhost..": one dot was the root's, the other ends an empty label. */
    if (label == 0)
        return -HOSTNAME_EMPTY_LABEL;
    if (numeric)
        return -HOSTNAME_NUMERIC;
    out[len] = '\0';
    return (int)len;
}

const char *
hostname_strerror(int err)
{
    switch (err < 0 ? -err : err) {
    case HOSTNAME_OK:
        return "is a host name";
    case HOSTNAME_EMPTY:
        return "is empty";
    case HOSTNAME_TOO_LONG:
        return "is longer than 253 bytes";
    case HOSTNAME_EMPTY_LABEL:
        return "has an empty label";
    case HOSTNAME_LONG_LABEL:
        return "has a label longer than 63 bytes";
    case HOSTNAME_BAD_CHAR:
        return "is not a host name (letters, digits, '-', '_' and '.' between labels; no "
               "wildcards, ports or spaces)";
    case HOSTNAME_NUMERIC:
        return "ends in an all-digit label: no host name does (an address belongs in \"to\")";
    default:
        return "is not a host name";
    }
}
