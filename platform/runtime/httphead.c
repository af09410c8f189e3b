/*
 * The HTTP/1.1 request-head parser's native fast path (RFC 9112 §2-§5), the same rules as
 * parseRequestHead in kernel/net/http/wire.ts, which remains the reference (and the path on
 * Node): in the interpreter, cutting and checking a head costs ~90k instructions; here ~3k.
 *   httpHead(bytes, start, end, maxRequestLine, maxHeaderCount)
 *     -> [method, target, minorVersion, name, value, name, value, …] (names in lower case,
 *        values without surrounding SP/HTAB), or a negative error code (HEAD_ERRORS in wire.ts).
 *   httpHeadEnd(bytes, from, end) -> the index just past the first CRLFCRLF or LF LF that
 *        starts at or after `from` and ends by `end`, or -1 (findHeadEnd's rule in wire.ts).
 * Also compiled into the host profiler (bench/profile/prof.c), so keep it free of runtime.h.
 */
#include <stdint.h>
#include <string.h>
#include "quickjs.h"
#include "jsbytes.h"

enum {
    HEAD_BAD_BYTES = -1,        /* NUL, or CR not followed by LF */
    HEAD_LINE_TOO_LONG = -2,    /* 414 */
    HEAD_BAD_REQUEST_LINE = -3,
    HEAD_BAD_METHOD = -4,
    HEAD_BAD_TARGET = -5,
    HEAD_VERSION_UNSUPPORTED = -6, /* 505 */
    HEAD_BAD_VERSION = -7,
    HEAD_FOLDING = -8,
    HEAD_BAD_HEADER_LINE = -9,
    HEAD_BAD_HEADER_NAME = -10,
    HEAD_TOO_MANY_FIELDS = -11, /* 431 */
};

/* tchar (RFC 9110 §5.6.2) */
static int is_tchar(uint8_t c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A JS string of latin-1 bytes (QuickJS takes UTF-8: bytes >= 0x80 become two bytes). */
static JSValue latin1_string(JSContext *ctx, const uint8_t *p, size_t n)
{
    size_t high = 0;
    for (size_t i = 0; i < n; i++)
        high += p[i] >> 7;
    if (!high)
        return JS_NewStringLen(ctx, (const char *)p, n);
    char small[512];
    char *u = n + high <= sizeof small ? small : js_malloc(ctx, n + high);
    if (!u)
        return JS_ThrowOutOfMemory(ctx);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x80) {
            u[k++] = (char)p[i];
        } else {
            u[k++] = (char)(0xc0 | (p[i] >> 6));
            u[k++] = (char)(0x80 | (p[i] & 0x3f));
        }
    }
    JSValue s = JS_NewStringLen(ctx, u, k);
    if (u != small)
        js_free(ctx, u);
    return s;
}

/* The next line of [pos, end): its content [*ls, *le) without the CR of CRLF; returns
   the position after its LF (or end). */
static size_t next_line(const uint8_t *p, size_t pos, size_t end, size_t *ls, size_t *le)
{
    const uint8_t *lf = memchr(p + pos, '\n', end - pos);
    size_t nl = lf ? (size_t)(lf - p) : end;
    size_t e = nl;
    if (e > pos && p[e - 1] == '\r')
        e--;
    *ls = pos;
    *le = e;
    return nl + 1;
}

static int parse(JSContext *ctx, const uint8_t *p, size_t start, size_t end, uint32_t max_line, uint32_t max_count, JSValue out)
{
    /* NUL anywhere, or a CR not followed by LF, makes a head malformed (RFC 9112 §2.2) */
    if (memchr(p + start, 0, end - start))
        return HEAD_BAD_BYTES;
    for (const uint8_t *cr = memchr(p + start, '\r', end - start); cr; cr = memchr(cr + 1, '\r', p + end - (cr + 1)))
        if (cr + 1 >= p + end || cr[1] != '\n')
            return HEAD_BAD_BYTES;

    size_t pos = start, ls = 0, le = 0;
    int have_line = 0;
    while (pos < end) {             /* leading empty lines are ignored */
        pos = next_line(p, pos, end, &ls, &le);
        if (le > ls) {
            have_line = 1;
            break;
        }
    }
    if (!have_line)
        ls = le = start;
    if (le - ls > max_line)
        return HEAD_LINE_TOO_LONG;
    const uint8_t *sp1 = memchr(p + ls, ' ', le - ls);
    const uint8_t *sp2 = sp1 ? memchr(sp1 + 1, ' ', p + le - (sp1 + 1)) : NULL;
    if (!sp1 || sp1 == p + ls || !sp2 || sp2 == sp1 + 1 || memchr(sp2 + 1, ' ', p + le - (sp2 + 1)))
        return HEAD_BAD_REQUEST_LINE;
    for (const uint8_t *c = p + ls; c < sp1; c++)
        if (!is_tchar(*c))
            return HEAD_BAD_METHOD;
    for (const uint8_t *c = sp1 + 1; c < sp2; c++)
        if (*c < 0x21 || *c > 0x7e)
            return HEAD_BAD_TARGET;
    const uint8_t *v = sp2 + 1;
    size_t vlen = (size_t)(p + le - v);
    int minor;
    if (vlen == 8 && !memcmp(v, "HTTP/1.1", 8))
        minor = 1;
    else if (vlen == 8 && !memcmp(v, "HTTP/1.0", 8))
        minor = 0;
    else if (vlen == 8 && !memcmp(v, "HTTP/", 5) && v[5] >= '0' && v[5] <= '9' && v[6] == '.' && v[7] >= '0' && v[7] <= '9')
        return HEAD_VERSION_UNSUPPORTED;
    else
        return HEAD_BAD_VERSION;

    JS_SetPropertyUint32(ctx, out, 0, latin1_string(ctx, p + ls, (size_t)(sp1 - (p + ls))));
    JS_SetPropertyUint32(ctx, out, 1, latin1_string(ctx, sp1 + 1, (size_t)(sp2 - (sp1 + 1))));
    JS_SetPropertyUint32(ctx, out, 2, JS_NewInt32(ctx, minor));

    uint32_t index = 3, count = 0;
    char lower[256];
    while (pos < end) {
        pos = next_line(p, pos, end, &ls, &le);
        if (le == ls)
            continue;
        if (p[ls] == ' ' || p[ls] == '\t')
            return HEAD_FOLDING;
        const uint8_t *colon = memchr(p + ls, ':', le - ls);
        if (!colon || colon == p + ls)
            return HEAD_BAD_HEADER_LINE;
        size_t nlen = (size_t)(colon - (p + ls));
        char *name = nlen <= sizeof lower ? lower : js_malloc(ctx, nlen);
        if (!name)
            return -100;
        for (size_t i = 0; i < nlen; i++) {
            uint8_t c = p[ls + i];
            if (!is_tchar(c)) {
                if (name != lower)
                    js_free(ctx, name);
                return HEAD_BAD_HEADER_NAME;
            }
            name[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        if (++count > max_count) {
            if (name != lower)
                js_free(ctx, name);
            return HEAD_TOO_MANY_FIELDS;
        }
        /* OWS is SP / HTAB only (RFC 9110 §5.6.3) */
        size_t vs = (size_t)(colon - p) + 1, ve = le;
        while (vs < ve && (p[vs] == ' ' || p[vs] == '\t'))
            vs++;
        while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t'))
            ve--;
        JS_SetPropertyUint32(ctx, out, index++, JS_NewStringLen(ctx, name, nlen));
        if (name != lower)
            js_free(ctx, name);
        JS_SetPropertyUint32(ctx, out, index++, latin1_string(ctx, p + vs, ve - vs));
    }
    return 0;
}

JSValue torito_http_head(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv)
{
    (void)this_val;
    (void)argc;
    uint8_t *p;
    size_t len;
    uint32_t start, end, max_line, max_count;
    if (typed_array_bytes(ctx, argv[0], &p, &len) || JS_ToUint32(ctx, &start, argv[1]) || JS_ToUint32(ctx, &end, argv[2]) ||
        JS_ToUint32(ctx, &max_line, argv[3]) || JS_ToUint32(ctx, &max_count, argv[4]))
        return JS_EXCEPTION;
    if (start > end || end > len)
        return JS_ThrowRangeError(ctx, "httpHead range %u..%u outside %zu bytes", start, end, len);
    JSValue out = JS_NewArray(ctx);
    if (JS_IsException(out))
        return out;
    int r = parse(ctx, p, start, end, max_line, max_count, out);
    if (r == -100) {
        JS_FreeValue(ctx, out);
        return JS_ThrowOutOfMemory(ctx);
    }
    if (r < 0) {
        JS_FreeValue(ctx, out);
        return JS_NewInt32(ctx, r);
    }
    return out;
}

/* findHeadEnd (wire.ts): the blank line that ends a head, searched LF by LF. */
JSValue torito_http_head_end(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv)
{
    (void)this_val;
    (void)argc;
    uint8_t *p;
    size_t len;
    int32_t from;
    uint32_t end;
    if (typed_array_bytes(ctx, argv[0], &p, &len) || JS_ToInt32(ctx, &from, argv[1]) || JS_ToUint32(ctx, &end, argv[2]))
        return JS_EXCEPTION;
    if (end > len)
        return JS_ThrowRangeError(ctx, "httpHeadEnd end %u outside %zu bytes", end, len);
    for (uint32_t i = from < 0 ? 0 : (uint32_t)from; i < end; i++) {
        const uint8_t *lf = memchr(p + i, '\n', end - i);
        if (lf == NULL)
            break;
        i = (uint32_t)(lf - p);
        if (i + 1 < end && p[i + 1] == '\n')
            return JS_NewInt32(ctx, (int32_t)(i + 2));
        if (i + 2 < end && p[i + 1] == '\r' && p[i + 2] == '\n')
            return JS_NewInt32(ctx, (int32_t)(i + 3));
    }
    return JS_NewInt32(ctx, -1);
}
