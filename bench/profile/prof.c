/*
 * A sampling profiler for QuickJS on the host (optimisation work only; never in an image).
 * Compiled together with the very quickjs.c the guest uses (#include below), so it can walk
 * the interpreter's stack frames from a SIGPROF handler: each sample records the JavaScript
 * call stack (function bytecode or native function per frame) and the C instruction pointer.
 * Also provides `__toritoNative`-shaped natives the kernel's hot paths use in the guest
 * (checksum, utf8Encode, httpHead, httpHeadEnd), so the profile matches the guest's split between C and JavaScript.
 *   __profStart(intervalUs) / __profStop(path): sample, then write folded stacks to path.
 */
#include "quickjs.c"
#include "../../platform/runtime/httphead.c"
#include <signal.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>

#define PROF_MAX 400000
#define PROF_DEPTH 24
static JSRuntime *prof_rt;
static void *prof_frames[PROF_MAX][PROF_DEPTH];
static uint8_t prof_depth[PROF_MAX];
static void *prof_rip[PROF_MAX];
static volatile int prof_n;
static timer_t prof_timer;

static void prof_handler(int sig, siginfo_t *si, void *ucv)
{
    (void)sig; (void)si;
    int n = prof_n;
    if (n >= PROF_MAX) return;
    int d = 0;
    for (JSStackFrame *sf = prof_rt->current_stack_frame; sf && d < PROF_DEPTH; sf = sf->prev_frame) {
        JSValue f = sf->cur_func;
        void *id = (void *)2;
        if (JS_VALUE_GET_TAG(f) == JS_TAG_OBJECT) {
            JSObject *p = JS_VALUE_GET_OBJ(f);
            if (js_class_has_bytecode(p->class_id)) id = p->u.func.function_bytecode;
            else if (p->class_id == JS_CLASS_C_FUNCTION) id = (void *)((uintptr_t)p->u.cfunc.c_function.generic | 1);
        }
        prof_frames[n][d++] = id;
    }
    prof_depth[n] = d;
    prof_rip[n] = (void *)((ucontext_t *)ucv)->uc_mcontext.gregs[REG_RIP];
    prof_n = n + 1;
}

static JSValue prof_start(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv)
{
    int us = 200;
    if (argc > 0) JS_ToInt32(ctx, &us, argv[0]);
    prof_rt = JS_GetRuntime(ctx);
    prof_n = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = prof_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGPROF, &sa, NULL);
    /* a high-resolution wall-clock timer (CPU-time timers and setitimer tick with HZ); the harness is one busy thread */
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGPROF;
    timer_create(CLOCK_MONOTONIC, &ev, &prof_timer);
    struct itimerspec its = { { 0, us * 1000L }, { 0, us * 1000L } };
    timer_settime(prof_timer, 0, &its, NULL);
    return JS_UNDEFINED;
}

static void prof_name(JSContext *ctx, void *id, char *out, size_t size)
{
    if (id == (void *)2) { snprintf(out, size, "(other)"); return; }
    if ((uintptr_t)id & 1) { snprintf(out, size, "native@%p", (void *)((uintptr_t)id & ~(uintptr_t)1)); return; }
    JSFunctionBytecode *b = id;
    char name[128];
    JS_AtomGetStr(ctx, name, sizeof name, b->func_name);
    int col = 0, line = b->has_debug ? find_line_num(ctx, b, 0, &col) : 0;
    snprintf(out, size, "%s:%d", name[0] ? name : "<anon>", line);
}

static JSValue prof_stop(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv)
{
    timer_delete(prof_timer);
    const char *path = JS_ToCString(ctx, argv[0]);
    FILE *f = path ? fopen(path, "w") : NULL;
    if (path) JS_FreeCString(ctx, path);
    if (!f) return JS_ThrowTypeError(ctx, "cannot write profile");
    char name[256];
    for (int i = 0; i < prof_n; i++) {
        for (int d = prof_depth[i] - 1; d >= 0; d--) {
            prof_name(ctx, prof_frames[i][d], name, sizeof name);
            fprintf(f, "%s;", name);
        }
        fprintf(f, "@%p\n", prof_rip[i]);
    }
    fclose(f);
    return JS_NewInt32(ctx, prof_n);
}

static JSValue prof_now(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return JS_NewFloat64(ctx, ts.tv_sec * 1e3 + ts.tv_nsec / 1e6);
}

/* Same code as platform/runtime/native.c's n_checksum and n_utf8_encode. */
static JSValue prof_checksum(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv)
{
    uint8_t *p;
    size_t len;
    uint32_t start, end;
    double initial;
    if (typed_array_bytes(ctx, argv[0], &p, &len) || JS_ToUint32(ctx, &start, argv[1]) || JS_ToUint32(ctx, &end, argv[2]) || JS_ToFloat64(ctx, &initial, argv[3]))
        return JS_EXCEPTION;
    if (start > end || end > len) return JS_ThrowRangeError(ctx, "checksum range");
    uint64_t sum = 0;
    size_t i = start;
    for (; i + 8 <= end; i += 8) { uint64_t w; memcpy(&w, p + i, 8); sum += (w & 0xffffffffu) + (w >> 32); }
    uint64_t tail = 0;
    for (; i + 1 < end; i += 2) tail += (uint32_t)p[i] << 8 | p[i + 1];
    if (i < end) tail += (uint32_t)p[i] << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    sum = ((sum & 0xff) << 8) | (sum >> 8);
    return JS_NewFloat64(ctx, initial + (double)sum + (double)tail);
}

static JSValue prof_utf8(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv)
{
    size_t len;
    const char *s = JS_ToCStringLen(ctx, &len, argv[0]);
    if (!s) return JS_EXCEPTION;
    for (size_t i = 0; i + 1 < len; i++)
        if ((uint8_t)s[i] == 0xed && ((uint8_t)s[i + 1] & 0xe0) == 0xa0) { JS_FreeCString(ctx, s); return JS_NULL; }
    JSValue buf = JS_NewArrayBufferCopy(ctx, (const uint8_t *)s, len);
    JS_FreeCString(ctx, s);
    return buf;
}

static const JSCFunctionListEntry prof_funcs[] = {
    JS_CFUNC_DEF("checksum", 4, prof_checksum),
    JS_CFUNC_DEF("utf8Encode", 1, prof_utf8),
    JS_CFUNC_DEF("httpHead", 5, torito_http_head),
    JS_CFUNC_DEF("httpHeadEnd", 3, torito_http_head_end),
    JS_CFUNC_DEF("now", 0, prof_now),
};

void prof_install(JSContext *ctx)
{
    JSValue g = JS_GetGlobalObject(ctx);
    JSValue natives = JS_NewObject(ctx);
    JS_SetPropertyFunctionList(ctx, natives, prof_funcs, countof(prof_funcs));
    JS_SetPropertyStr(ctx, g, "__profNative", natives);
    JS_SetPropertyStr(ctx, g, "__profStart", JS_NewCFunction(ctx, prof_start, "__profStart", 1));
    JS_SetPropertyStr(ctx, g, "__profStop", JS_NewCFunction(ctx, prof_stop, "__profStop", 1));
    JS_FreeValue(ctx, g);
}
