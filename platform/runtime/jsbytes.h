/*
 * The bytes a typed array views, for native bindings that read or write them in place
 * (native.c; httphead.c, which the host profiler compiles too, so this needs quickjs.h only).
 */
#ifndef TORITO_JSBYTES_H
#define TORITO_JSBYTES_H

#include <stddef.h>
#include <stdint.h>
#include "quickjs.h"

/* Points *bytes at the view's first byte and sets *len; returns -1 with an exception pending
   (not a typed array, a detached buffer). Never NULL: an empty view without storage points
   at a static byte. */
static inline int typed_array_bytes(JSContext *ctx, JSValueConst value, uint8_t **bytes, size_t *len)
{
    size_t offset, elem, size;
    JSValue buf = JS_GetTypedArrayBuffer(ctx, value, &offset, len, &elem);
    if (JS_IsException(buf))
        return -1;
    uint8_t *p = JS_GetArrayBuffer(ctx, &size, buf);
    JS_FreeValue(ctx, buf);
    if (!p) {
        static uint8_t none;
        *bytes = &none;
        return *len || JS_HasException(ctx) ? -1 : 0;
    }
    *bytes = p + offset;
    return 0;
}

#endif
