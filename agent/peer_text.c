/* peer_text.c — a printable copy of text the server chose (see peer_text.h). */
#include "peer_text.h"

#include <string.h>

#include "utf8.h"

const char *agent_peer_text(char *dst, size_t cap, const char *src)
{
    if (!dst || cap == 0)
        return dst;
    const unsigned char *p = (const unsigned char *)(src ? src : "");
    size_t n = strlen((const char *)p), o = 0, i = 0;
    /* room kept for "..." when the text does not fit */
    size_t room = cap > 4 ? cap - 4 : cap - 1;
    while (i < n) {
        size_t l = utf8_seq_len(p + i, n - i);
        int c1 = l == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0; /* U+0080..U+009F */
        size_t w = l <= 1 || c1 ? 1 : l;
        if (o + w > room)
            break;
        if (l <= 1 || c1) {
            dst[o++] = l == 1 && p[i] >= 0x20 && p[i] != 0x7f ? (char)p[i] : '?';
            i += l ? l : 1;
        } else {
            memcpy(dst + o, p + i, l);
            o += l;
            i += l;
        }
    }
    if (i < n && cap > 4) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
    return dst;
}
