/*
 * json.h - JSON text for the admin API (pure, any thread).
 */
#ifndef RINGSOCKS_JSON_H
#define RINGSOCKS_JSON_H

#include <stddef.h>

/*
 * s[0..n) as a JSON string with its quotes (RFC 8259 section 7) into out
 * (cap bytes with the NUL). '"' and '\' are backslash-escaped; control
 * bytes, DEL and every byte >= 0x80 become \u00XX (byte N is U+00NN, as in
 * the access log's JSON): names are arbitrary bytes, and the text stays
 * ASCII, hence valid UTF-8, with the exact bytes recoverable. Returns the
 * length the whole text needs (at most 6 n + 2); out holds it, NUL-ended,
 * when that is below cap, else a cut prefix (always NUL-ended when cap > 0).
 */
size_t json_escape(const char *s, size_t n, char *out, size_t cap);

#endif
