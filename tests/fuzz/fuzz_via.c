/*
 * fuzz_via.c - libFuzzer harness for the client side of the handshake with a
 * parent proxy (src/via.c), which reads what a parent (or anything posing as one)
 * answers.
 *
 * The first input byte picks the parent's scheme and credentials and the target;
 * the rest is the parent's byte stream. It is played as the shard plays it: the
 * reply so far is offered (in a heap block of exactly that size), and "need more"
 * keeps every byte offered, anything else takes *used bytes and starts the next
 * message. The stream is played whole and arriving in pieces; the outcomes must
 * agree, *used stays within what was offered and is never 0 for a message
 * understood, a message to send fits VIA_MSG_MAX, and "need more" never holds more
 * than VIA_REPLY_MAX bytes.
 */
#include "fuzz.h"
#include "via.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const urls[] = {
    "socks5://192.0.2.1:1080", "socks5h://u:p@192.0.2.1:1080", "socks4a://id@192.0.2.1:1080",
    "socks4://192.0.2.1:1080", "http://192.0.2.1:3128",        "http://u:p@[2001:db8::1]:3128",
};
static const struct via_target targets[] = {
    {.kind = VIA_T_NAME, .name = "example.com", .port = 443},
    {.kind = VIA_T_IPV4, .addr = {198, 51, 100, 7}, .port = 80},
    {.kind = VIA_T_IPV6, .addr = {0x20, 0x01, 0x0d, 0xb8, [15] = 1}, .port = 22},
};

struct outcome {
    enum via_res res; /* VIA_MORE: the stream ended first */
    uint8_t rep;
    size_t consumed; /* bytes of the stream the handshake took */
    unsigned sends;
};

/* Play the stream p[0..n) arriving at the cut points; cuts NULL: all at once. */
static struct outcome
play(struct via_list *vl, const struct via_target *t, const uint8_t *p, size_t n,
     const size_t *cuts, size_t ncuts)
{
    struct via_hs h;
    uint8_t out[VIA_MSG_MAX];
    struct outcome o = {.res = VIA_MORE};
    FUZZ_CHECK(via_hs_start(&h, vl, 0, t, out) <= VIA_MSG_MAX);
    size_t start = 0; /* first byte of the message being read */
    size_t arrived = 0;
    for (size_t k = 0; k < (cuts ? ncuts : 1); k++) {
        arrived = cuts ? cuts[k] : n;
        for (;;) {
            size_t have = arrived - start, used, olen;
            if (have == 0)
                break;
            uint8_t *b = fuzz_dup(p + start, have);
            enum via_res r = via_hs_feed(&h, b, have, &used, out, &olen);
            free(b);
            if (r == VIA_MORE) {
                FUZZ_CHECK(have < VIA_REPLY_MAX);
                break;
            }
            /* A broken reply takes nothing: the connection is dropped. */
            FUZZ_CHECK(used <= have && (used > 0 || r == VIA_BROKEN));
            start += used;
            if (r == VIA_SEND) {
                FUZZ_CHECK(olen > 0 && olen <= VIA_MSG_MAX);
                o.sends++;
                continue;
            }
            if (r == VIA_AGAIN) {
                o.sends++; /* an interim response taken; the next one follows */
                continue;
            }
            o.res = r;
            o.rep = h.rep;
            o.consumed = start;
            if (r == VIA_BROKEN)
                FUZZ_CHECK(h.why != NULL);
            return o;
        }
    }
    o.consumed = start;
    return o;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned pick = data[0];
    const char *url = urls[pick % (sizeof(urls) / sizeof(urls[0]))];
    const struct via_target *t = &targets[(pick / 8) % 3];
    char why[300];
    struct via_list *vl = via_list_new(&url, 1, why, sizeof(why));
    FUZZ_CHECK(vl != NULL);
    struct via_hs h;
    uint8_t out[VIA_MSG_MAX];
    if (via_hs_start(&h, vl, 0, t, out) == 0) {
        via_list_put(vl);
        return 0; /* this parent cannot carry the target */
    }
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    struct outcome whole = play(vl, t, p, n, NULL, 0);
    struct fuzz_rng r;
    size_t cuts[FUZZ_BYTEWISE_MAX + FUZZ_CUTS + 1];
    for (int style = 0; style < 2; style++) {
        fuzz_rng_seed(&r, data, size, (uint64_t)style);
        size_t nc = fuzz_cuts(&r, n, style, cuts);
        if (nc == 0)
            continue;
        struct outcome piece = play(vl, t, p, n, cuts, nc);
        FUZZ_CHECK(piece.res == whole.res);
        FUZZ_CHECK(piece.rep == whole.rep);
        FUZZ_CHECK(piece.sends == whole.sends);
        if (whole.res != VIA_MORE)
            FUZZ_CHECK(piece.consumed == whole.consumed);
    }
    via_list_put(vl);
    return 0;
}
