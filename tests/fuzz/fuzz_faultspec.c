/*
 * fuzz_faultspec.c - libFuzzer harness for a user name's fault parameters
 * (fault_user_params() in src/faultspec.c), which any client sends as its RFC 1929 user
 * name when username_params is on.
 *
 * The input, cut at its first NUL, is the name (in a heap block of exactly its bytes and
 * the NUL). The parser must not crash, the base it gives is no longer than the name, and
 * on success every set it parsed survives fault_format() -> fault_parse() unchanged; on a
 * refusal it says why.
 */
#include <errno.h>

#include "faultspec.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul ? (size_t)(nul - data) : size;
    char *name = malloc(n + 1);
    FUZZ_CHECK(name != NULL);
    memcpy(name, data, n);
    name[n] = '\0';
    struct fault_set f;
    size_t base = SIZE_MAX;
    char err[400] = "";
    int rc = fault_user_params(name, &base, &f, err, sizeof(err));
    FUZZ_CHECK(base <= n);
    if (rc != 0) {
        FUZZ_CHECK(rc == -EINVAL && err[0] != '\0');
        free(name);
        return 0;
    }
    FUZZ_CHECK(fault_name_has_keyword(name) == (base < n));
    FUZZ_CHECK((f.kinds & ~((1u << FAULT__COUNT) - 1)) == 0);
    char text[1024];
    size_t len = fault_format(&f, text, sizeof(text));
    FUZZ_CHECK(len == strlen(text) && len < sizeof(text) - 1);
    struct fault_set g;
    memset(&g, 0, sizeof(g));
    for (const char *s = text; len > 0 && *s;) {
        const char *comma = strchr(s, ',');
        size_t l = comma ? (size_t)(comma - s) : strlen(s);
        FUZZ_CHECK(fault_parse(s, l, &g, err, sizeof(err)) == 0);
        s += l + (comma ? 1 : 0);
    }
    FUZZ_CHECK(g.kinds == f.kinds);
    for (unsigned k = 0; k < FAULT__COUNT; k++)
        if (fault_has(&f, (enum fault_kind)k))
            FUZZ_CHECK(g.arg[k] == f.arg[k]);
    free(name);
    return 0;
}
