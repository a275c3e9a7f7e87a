/*
 * json.c - JSON strings for the admin API (json.h). Pure: any thread; it
 * never allocates.
 */
#include "json.h"

size_t
json_escape(const char *s, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t len = 0;
    char esc[6];
#define JSON_PUT(ch)         \
    do {                     \
        if (len + 1 < cap)   \
            out[len] = (ch); \
        len++;               \
    } while (0)
    JSON_PUT('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t k = 0;
        if (c == '"' || c == '\\') {
            esc[k++] = '\\';
            esc[k++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            esc[0] = '\\', esc[1] = 'u', esc[2] = '0', esc[3] = '0';
            esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
            k = 6;
        } else {
            esc[k++] = (char)c;
        }
        for (size_t j = 0; j < k; j++)
            JSON_PUT(esc[j]);
    }
    JSON_PUT('"');
#undef JSON_PUT
    if (cap)
        out[len < cap ? len : cap - 1] = '\0';
    return len;
}
