/*
 * Native bindings: the global `__toritoNative`, which kernel/hw.ts captures and hides.
 * Contract: kernel/native.d.ts. Each binding is a thin, checked wrapper; policy lives in
 * TypeScript.
 */
#include "runtime.h"
#include "jsbytes.h"

#define ARGS JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv

static int arg_u64(JSContext *ctx, JSValueConst v, uint64_t *out)
{
    double d;
    if (JS_ToFloat64(ctx, &d, v))
        return -1;
    if (!(d >= 0 && d < 18446744073709551616.0)) {
        JS_ThrowRangeError(ctx, "expected a non-negative integer, got %g", d);
        return -1;
    }
    *out = (uint64_t)d;
    return 0;
}

/* MMIO addresses must lie in the device window (virtio-mmio, IOAPIC, LAPIC) and be
   naturally aligned: anything else is a kernel bug worth a clear exception. */
static int mmio_addr(JSContext *ctx, JSValueConst v, unsigned size, volatile void **out)
{
    uint64_t a;
    if (arg_u64(ctx, v, &a))
        return -1;
    if (a < 0xfe000000ull || a > 0xffffffffull - size || (a & (size - 1))) {
        JS_ThrowRangeError(ctx, "MMIO address 0x%llx outside the device window or misaligned", (unsigned long long)a);
        return -1;
    }
    *out = (volatile void *)(uintptr_t)a;
    return 0;
}

static JSValue n_write(ARGS)
{
    if (JS_IsString(argv[0])) {
        size_t len;
        const char *s = JS_ToCStringLen(ctx, &len, argv[0]);
        if (!s)
            return JS_EXCEPTION;
        console_write(s, len);
        JS_FreeCString(ctx, s);
        return JS_UNDEFINED;
    }
    uint8_t *p;
    size_t len;
    if (typed_array_bytes(ctx, argv[0], &p, &len))
        return JS_EXCEPTION;
    console_write(p, len);
    return JS_UNDEFINED;
}

static JSValue n_now(ARGS) { return JS_NewFloat64(ctx, clock_now_ms()); }
static JSValue n_epoch_ms(ARGS) { return JS_NewFloat64(ctx, clock_epoch_ms()); }
static JSValue n_tsc_per_ms(ARGS) { return JS_NewFloat64(ctx, clock_tsc_per_ms()); }
static JSValue n_rdtsc(ARGS) { return JS_NewFloat64(ctx, (double)rdtsc()); }
static JSValue n_boot_times(ARGS) { return boot_milestones(ctx); }

static JSValue n_idle(ARGS)
{
    double deadline;
    if (JS_ToFloat64(ctx, &deadline, argv[0]))
        return JS_EXCEPTION;
    return JS_NewFloat64(ctx, (double)apic_idle(deadline));
}

static JSValue n_exit(ARGS)
{
    int code;
    if (JS_ToInt32(ctx, &code, argv[0]))
        return JS_EXCEPTION;
    power_off(code);
}

static JSValue n_cmdline(ARGS) { return JS_NewString(ctx, kernel_cmdline()); }
static JSValue n_core_id(ARGS) { return JS_NewInt32(ctx, (int)this_core_id()); }
static JSValue n_core_count(ARGS) { return JS_NewInt32(ctx, (int)smp_core_count()); }

static JSValue n_mmio_read(ARGS, int magic)
{
    volatile void *a;
    if (mmio_addr(ctx, argv[0], (unsigned)magic, &a))
        return JS_EXCEPTION;
    switch (magic) {
    case 1: return JS_NewInt32(ctx, *(volatile uint8_t *)a);
    case 2: return JS_NewInt32(ctx, *(volatile uint16_t *)a);
    case 4: return JS_NewUint32(ctx, *(volatile uint32_t *)a);
    default: return JS_NewBigUint64(ctx, *(volatile uint64_t *)a);
    }
}

static JSValue n_mmio_write(ARGS, int magic)
{
    volatile void *a;
    if (mmio_addr(ctx, argv[0], (unsigned)magic, &a))
        return JS_EXCEPTION;
    if (magic == 8) {
        int64_t v;
        if (JS_ToBigInt64(ctx, &v, argv[1]))   /* BigInt.asUintN(64) semantics */
            return JS_EXCEPTION;
        *(volatile uint64_t *)a = (uint64_t)v;
        return JS_UNDEFINED;
    }
    uint32_t v;
    if (JS_ToUint32(ctx, &v, argv[1]))
        return JS_EXCEPTION;
    switch (magic) {
    case 1: *(volatile uint8_t *)a = (uint8_t)v; break;
    case 2: *(volatile uint16_t *)a = (uint16_t)v; break;
    default: *(volatile uint32_t *)a = v; break;
    }
    return JS_UNDEFINED;
}

static JSValue n_port_in(ARGS, int magic)
{
    uint32_t port;
    if (JS_ToUint32(ctx, &port, argv[0]))
        return JS_EXCEPTION;
    if (port > 0xffff)
        return JS_ThrowRangeError(ctx, "port 0x%x out of range", port);
    switch (magic) {
    case 1: return JS_NewInt32(ctx, inb((uint16_t)port));
    case 2: return JS_NewInt32(ctx, inw((uint16_t)port));
    default: return JS_NewUint32(ctx, inl((uint16_t)port));
    }
}

static JSValue n_port_out(ARGS, int magic)
{
    uint32_t port, v;
    if (JS_ToUint32(ctx, &port, argv[0]) || JS_ToUint32(ctx, &v, argv[1]))
        return JS_EXCEPTION;
    if (port > 0xffff)
        return JS_ThrowRangeError(ctx, "port 0x%x out of range", port);
    switch (magic) {
    case 1: outb((uint16_t)port, (uint8_t)v); break;
    case 2: outw((uint16_t)port, (uint16_t)v); break;
    default: outl((uint16_t)port, v); break;
    }
    return JS_UNDEFINED;
}

#define dma_used (this_local()->dma_used)

static void dma_free(JSRuntime *rt, void *opaque, void *ptr)
{
    (void)rt;
    (void)opaque;
    dma_used -= malloc_usable_size(ptr);
    if (!free_is_stolen(ptr))
        free(ptr);
}

static JSValue n_dma_alloc(ARGS)
{
    uint64_t size, align;
    if (arg_u64(ctx, argv[0], &size) || arg_u64(ctx, argv[1], &align))
        return JS_EXCEPTION;
    if (!size || size > (1ull << 30))
        return JS_ThrowRangeError(ctx, "DMA size %llu out of range", (unsigned long long)size);
    if (align < 16)
        align = 16;
    if (align & (align - 1) || align > 1u << 21)
        return JS_ThrowRangeError(ctx, "DMA alignment %llu is not a power of two up to 2 MiB", (unsigned long long)align);
    void *p = aligned_alloc_zeroed(align, size);
    if (!p)
        return JS_ThrowRangeError(ctx, "out of DMA memory (%llu bytes requested)", (unsigned long long)size);
    dma_used += malloc_usable_size(p);
    JSValue buf = JS_NewArrayBuffer(ctx, p, size, dma_free, NULL, 0);
    if (JS_IsException(buf)) {
        dma_free(NULL, NULL, p);
        return buf;
    }
    JSValue obj = JS_NewObject(ctx);
    JS_SetPropertyStr(ctx, obj, "buffer", buf);
    JS_SetPropertyStr(ctx, obj, "phys", JS_NewFloat64(ctx, (double)(uintptr_t)p));
    return obj;
}

/* Guest memory is identity mapped, so any ArrayBuffer's bytes are physically contiguous
   at their virtual address. */
static JSValue n_phys_addr(ARGS)
{
    size_t size;
    uint8_t *p = JS_GetArrayBuffer(ctx, &size, argv[0]);
    if (!p) {
        JS_FreeValue(ctx, JS_GetException(ctx));
        return JS_NewInt32(ctx, -1);
    }
    return JS_NewFloat64(ctx, (double)(uintptr_t)p);
}

static JSValue n_irq_route(ARGS)
{
    uint32_t gsi, line;
    if (JS_ToUint32(ctx, &gsi, argv[0]) || JS_ToUint32(ctx, &line, argv[1]))
        return JS_EXCEPTION;
    if (!ioapic_has(gsi) || line > VEC_LAST_IRQ - VEC_FIRST_IRQ || line == 0)
        return JS_ThrowRangeError(ctx, "bad interrupt route gsi %u line %u", gsi, line);
    ioapic_route(gsi, line, JS_ToBool(ctx, argv[2]));
    return JS_UNDEFINED;
}

/* irqForward(line, cores): when interrupt line `line` fires on this core, the supervisor
   wakes the sleeping cores of the bit mask `cores` at once (VEC_WAKE); cores 0 stops it. */
static JSValue n_irq_forward(ARGS)
{
    uint32_t line, cores;
    if (JS_ToUint32(ctx, &line, argv[0]) || JS_ToUint32(ctx, &cores, argv[1]))
        return JS_EXCEPTION;
    if (line == 0 || line > VEC_LAST_IRQ - VEC_FIRST_IRQ)
        return JS_ThrowRangeError(ctx, "bad interrupt line %u", line);
    struct core_shared *self = this_core();
    self->wake_cores = cores & ~(1u << this_core_id());
    __asm__ volatile("" ::: "memory");
    if (cores)
        self->wake_lines |= 1u << line;
    else
        self->wake_lines &= ~(1u << line);
    return JS_UNDEFINED;
}

static JSValue n_irq_mask(ARGS)
{
    uint32_t gsi;
    if (JS_ToUint32(ctx, &gsi, argv[0]))
        return JS_EXCEPTION;
    if (!ioapic_has(gsi))
        return JS_ThrowRangeError(ctx, "bad gsi %u", gsi);
    ioapic_mask(gsi);
    return JS_UNDEFINED;
}

/* A full memory barrier: the virtio driver publishes the avail index (a store) and then
   reads the device's avail_event (a load); x86 may reorder those without mfence
   (virtio 1.2 §2.7.13.4). */
static JSValue n_fence(ARGS)
{
    __asm__ volatile("mfence" ::: "memory");
    return JS_UNDEFINED;
}

/* Files packed into the image (torito build --files): a zero-copy view over the image's
   read-only data; kernel/fs/imagefs.ts only reads it. */
static JSValue n_image_files(ARGS)
{
    size_t len = (size_t)(torito_app_files_end - torito_app_files);
    if (!len)
        return JS_NULL;
    return JS_NewArrayBuffer(ctx, (uint8_t *)torito_app_files, len, NULL, NULL, 0);
}

/* ChaCha20 (RFC 8439 §2.3): `blocks` consecutive 64-byte key-stream blocks for an 8-word
   key and a 3-word nonce, counters counter, counter+1, ..., into out (16 words each).
   The kernel's CSPRNG (kernel/devices/random.ts) refills four blocks at a time: ~37 us per
   block in QuickJS, on the boot path (the TCP stack's ISN secret) and behind every
   crypto.getRandomValues/randomUUID; well under a microsecond here. */
#define CHACHA_ROTL(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define CHACHA_QR(a, b, c, d)                                  \
    do {                                                       \
        a += b; d ^= a; d = CHACHA_ROTL(d, 16);                \
        c += d; b ^= c; b = CHACHA_ROTL(b, 12);                \
        a += b; d ^= a; d = CHACHA_ROTL(d, 8);                 \
        c += d; b ^= c; b = CHACHA_ROTL(b, 7);                 \
    } while (0)

static JSValue n_chacha20(ARGS)
{
    uint8_t *k, *n, *o;
    size_t klen, nlen, olen;
    uint32_t counter, blocks;
    if (typed_array_bytes(ctx, argv[0], &k, &klen) || typed_array_bytes(ctx, argv[1], &n, &nlen) ||
        JS_ToUint32(ctx, &counter, argv[2]) || JS_ToUint32(ctx, &blocks, argv[3]) || typed_array_bytes(ctx, argv[4], &o, &olen))
        return JS_EXCEPTION;
    if (klen < 32 || nlen < 12 || blocks > olen / 64)
        return JS_ThrowRangeError(ctx, "chacha20: key %zu bytes (32), nonce %zu (12), %u blocks into %zu bytes", klen, nlen, blocks, olen);
    uint32_t in[16] = { 0x61707865, 0x3320646e, 0x79622d32, 0x6b206574 };
    memcpy(in + 4, k, 32);
    memcpy(in + 13, n, 12);
    for (uint32_t b = 0; b < blocks; b++) {
        uint32_t x[16];
        in[12] = counter + b;
        memcpy(x, in, sizeof x);
        for (int i = 0; i < 10; i++) {
            CHACHA_QR(x[0], x[4], x[8], x[12]);
            CHACHA_QR(x[1], x[5], x[9], x[13]);
            CHACHA_QR(x[2], x[6], x[10], x[14]);
            CHACHA_QR(x[3], x[7], x[11], x[15]);
            CHACHA_QR(x[0], x[5], x[10], x[15]);
            CHACHA_QR(x[1], x[6], x[11], x[12]);
            CHACHA_QR(x[2], x[7], x[8], x[13]);
            CHACHA_QR(x[3], x[4], x[9], x[14]);
        }
        for (int i = 0; i < 16; i++)
            x[i] += in[i];
        memcpy(o + 64 * (size_t)b, x, sizeof x);   /* little-endian words, as a Uint32Array holds them */
        memset(x, 0, sizeof x);
        __asm__ volatile("" : : "r"(x) : "memory"); /* the key stream does not stay on the stack */
    }
    memset(in, 0, sizeof in);
    __asm__ volatile("" : : "r"(in) : "memory");
    return JS_UNDEFINED;
}

/* The Internet checksum's running sum (RFC 1071) of bytes[start, end) as 16-bit
   big-endian words, added to `sum`. A native fast path: in QuickJS the same loop costs
   ~37 us per 1500-byte segment, half of TCP's per-segment time (BENCHMARKS.md). */
static JSValue n_checksum(ARGS)
{
    uint8_t *p;
    size_t len;
    uint32_t start, end;
    double initial;
    if (typed_array_bytes(ctx, argv[0], &p, &len) || JS_ToUint32(ctx, &start, argv[1]) || JS_ToUint32(ctx, &end, argv[2]) ||
        JS_ToFloat64(ctx, &initial, argv[3]))
        return JS_EXCEPTION;
    if (start > end || end > len)
        return JS_ThrowRangeError(ctx, "checksum range %u..%u outside %zu bytes", start, end, len);
    uint64_t sum = 0;
    size_t i = start;
    for (; i + 8 <= end; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        sum += (w & 0xffffffffu) + (w >> 32);   /* little-endian halves; swapped below */
    }
    uint64_t tail = 0;
    for (; i + 1 < end; i += 2)
        tail += (uint32_t)p[i] << 8 | p[i + 1];
    if (i < end)
        tail += (uint32_t)p[i] << 8;
    /* fold the little-endian accumulator to 16 bits and byte-swap it into big-endian words */
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    sum = ((sum & 0xff) << 8) | (sum >> 8);
    return JS_NewFloat64(ctx, initial + (double)sum + (double)tail);
}

/* UTF-8 bytes of a string, as TextEncoder.encode returns them. QuickJS converts natively;
   a JS loop costs ~44 us for a 170-character response head (BENCHMARKS.md). Lone
   surrogates come out as 3-byte sequences (ED A0..BF xx) where WHATWG wants U+FFFD:
   then null is returned and kernel/encoding.ts takes its own path. */
/* httphead.c: the HTTP request-head parser's native fast path */
JSValue torito_http_head(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv);
JSValue torito_http_head_end(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv);

static JSValue n_utf8_encode(ARGS)
{
    size_t len;
    const char *s = JS_ToCStringLen(ctx, &len, argv[0]);
    if (!s)
        return JS_EXCEPTION;
    for (size_t i = 0; i + 1 < len; i++) {
        if ((uint8_t)s[i] == 0xed && ((uint8_t)s[i + 1] & 0xe0) == 0xa0) {
            JS_FreeCString(ctx, s);
            return JS_NULL;
        }
    }
    JSValue buf = JS_NewArrayBufferCopy(ctx, (const uint8_t *)s, len);
    JS_FreeCString(ctx, s);
    return buf;
}

static JSValue n_source_map(ARGS)
{
    size_t len = (size_t)(torito_app_sourcemap_end - torito_app_sourcemap);
    if (!len)
        return JS_NULL;
    return JS_NewArrayBufferCopy(ctx, torito_app_sourcemap, len);
}

static JSValue n_memory_usage(ARGS)
{
    size_t limit, used, peak;
    heap_usage(&limit, &used, &peak);
    JSValue obj = JS_NewObject(ctx);
    JS_SetPropertyStr(ctx, obj, "limit", JS_NewFloat64(ctx, (double)limit));
    JS_SetPropertyStr(ctx, obj, "used", JS_NewFloat64(ctx, (double)used));
    JS_SetPropertyStr(ctx, obj, "peak", JS_NewFloat64(ctx, (double)peak));
    JS_SetPropertyStr(ctx, obj, "dmaUsed", JS_NewFloat64(ctx, (double)dma_used));
    JS_SetPropertyStr(ctx, obj, "dmaLimit", JS_NewFloat64(ctx, (double)limit));
    return obj;
}

static JSValue n_gc(ARGS)
{
    JS_RunGC(JS_GetRuntime(ctx));
    return JS_UNDEFINED;
}

static JSValue n_set_hooks(ARGS)
{
    JSValue turn = JS_GetPropertyStr(ctx, argv[0], "turn");
    JSValue format = JS_GetPropertyStr(ctx, argv[0], "formatError");
    if (!JS_IsFunction(ctx, turn) || !JS_IsFunction(ctx, format)) {
        JS_FreeValue(ctx, turn);
        JS_FreeValue(ctx, format);
        return JS_ThrowTypeError(ctx, "setHooks: expected { turn, formatError } functions");
    }
    loop_set_hooks(ctx, turn, format);
    JS_FreeValue(ctx, turn);
    JS_FreeValue(ctx, format);
    return JS_UNDEFINED;
}

static const JSCFunctionListEntry native_functions[] = {
    JS_CFUNC_DEF("write", 1, n_write),
    JS_CFUNC_DEF("now", 0, n_now),
    JS_CFUNC_DEF("epochMs", 0, n_epoch_ms),
    JS_CFUNC_DEF("tscPerMs", 0, n_tsc_per_ms),
    JS_CFUNC_DEF("rdtsc", 0, n_rdtsc),
    JS_CFUNC_DEF("bootTimes", 0, n_boot_times),
    JS_CFUNC_DEF("idle", 1, n_idle),
    JS_CFUNC_DEF("exit", 1, n_exit),
    JS_CFUNC_DEF("cmdline", 0, n_cmdline),
    JS_CFUNC_DEF("coreId", 0, n_core_id),
    JS_CFUNC_DEF("coreCount", 0, n_core_count),
    JS_CFUNC_MAGIC_DEF("mmioRead8", 1, n_mmio_read, 1),
    JS_CFUNC_MAGIC_DEF("mmioRead16", 1, n_mmio_read, 2),
    JS_CFUNC_MAGIC_DEF("mmioRead32", 1, n_mmio_read, 4),
    JS_CFUNC_MAGIC_DEF("mmioRead64", 1, n_mmio_read, 8),
    JS_CFUNC_MAGIC_DEF("mmioWrite8", 2, n_mmio_write, 1),
    JS_CFUNC_MAGIC_DEF("mmioWrite16", 2, n_mmio_write, 2),
    JS_CFUNC_MAGIC_DEF("mmioWrite32", 2, n_mmio_write, 4),
    JS_CFUNC_MAGIC_DEF("mmioWrite64", 2, n_mmio_write, 8),
    JS_CFUNC_MAGIC_DEF("inb", 1, n_port_in, 1),
    JS_CFUNC_MAGIC_DEF("inw", 1, n_port_in, 2),
    JS_CFUNC_MAGIC_DEF("inl", 1, n_port_in, 4),
    JS_CFUNC_MAGIC_DEF("outb", 2, n_port_out, 1),
    JS_CFUNC_MAGIC_DEF("outw", 2, n_port_out, 2),
    JS_CFUNC_MAGIC_DEF("outl", 2, n_port_out, 4),
    JS_CFUNC_DEF("dmaAlloc", 2, n_dma_alloc),
    JS_CFUNC_DEF("physAddr", 1, n_phys_addr),
    JS_CFUNC_DEF("irqRoute", 3, n_irq_route),
    JS_CFUNC_DEF("irqMask", 1, n_irq_mask),
    JS_CFUNC_DEF("irqForward", 2, n_irq_forward),
    JS_CFUNC_DEF("fence", 0, n_fence),
    JS_CFUNC_DEF("sourceMap", 0, n_source_map),
    JS_CFUNC_DEF("imageFiles", 0, n_image_files),
    JS_CFUNC_DEF("checksum", 4, n_checksum),
    JS_CFUNC_DEF("chacha20", 5, n_chacha20),
    JS_CFUNC_DEF("utf8Encode", 1, n_utf8_encode),
    JS_CFUNC_DEF("httpHead", 5, torito_http_head),
    JS_CFUNC_DEF("httpHeadEnd", 3, torito_http_head_end),
    JS_CFUNC_DEF("memoryUsage", 0, n_memory_usage),
    JS_CFUNC_DEF("gc", 0, n_gc),
    JS_CFUNC_DEF("setHooks", 1, n_set_hooks),
};

void native_install(JSContext *ctx)
{
    JSValue global = JS_GetGlobalObject(ctx);
    JSValue native = JS_NewObject(ctx);
    JS_SetPropertyFunctionList(ctx, native, native_functions,
                               sizeof native_functions / sizeof native_functions[0]);
    smp_install(ctx, native);
    JS_SetPropertyStr(ctx, global, "__toritoNative", native);
    JS_FreeValue(ctx, global);
}
