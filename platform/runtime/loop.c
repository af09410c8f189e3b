/*
 * The event loop of one core: the simple scheduler of Toro's design.
 *
 *   drain microtasks -> kernel turn (timers, device polls) -> drain microtasks -> idle
 *
 * Policy (when to poll, how long to spin before halting) is the kernel's, in TypeScript:
 * turn() returns a deadline, -1 (wait for an interrupt) or -2 (nothing left). Nothing
 * preempts a task. Errors nobody catches end the VM with EXIT_UNCAUGHT, like Node.
 */
#include "runtime.h"

/* Per core (struct core_local): the hooks (zero, the integer 0, means "not installed") and
   the promises rejected with no handler yet, checked once the microtask queue is empty. */
#define hook_turn (this_local()->hook_turn)
#define hook_format (this_local()->hook_format)
#define unhandled_promise (this_local()->unhandled_promise)
#define unhandled_reason (this_local()->unhandled_reason)
#define unhandled_count (this_local()->unhandled_count)

/* Boot milestones: (name, TSC) pairs reported by bootTimes(). */
#define MAX_MILESTONES 16
static const char *milestone_name[MAX_MILESTONES];
static uint64_t milestone_tsc[MAX_MILESTONES];
static int milestone_count;

void boot_milestone(const char *name)
{
    if (milestone_count < MAX_MILESTONES && this_core_id() == 0) {
        milestone_name[milestone_count] = name;
        milestone_tsc[milestone_count++] = rdtsc();
    }
}

JSValue boot_milestones(JSContext *ctx)
{
    JSValue obj = JS_NewObject(ctx);
    for (int i = 0; i < milestone_count; i++)
        JS_SetPropertyStr(ctx, obj, milestone_name[i], JS_NewFloat64(ctx, clock_tsc_to_ms(milestone_tsc[i])));
    if (boot_first_output_tsc)
        JS_SetPropertyStr(ctx, obj, "firstOutput", JS_NewFloat64(ctx, clock_tsc_to_ms(boot_first_output_tsc)));
    JS_SetPropertyStr(ctx, obj, "clockSource", JS_NewString(ctx, clock_source()));
    return obj;
}

void loop_set_hooks(JSContext *ctx, JSValueConst turn, JSValueConst format_error)
{
    JS_FreeValue(ctx, hook_turn);
    JS_FreeValue(ctx, hook_format);
    hook_turn = JS_DupValue(ctx, turn);
    hook_format = JS_DupValue(ctx, format_error);
}

static char *dup_cstring(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p ? p : (char *)"(out of memory while formatting the error)";
}

/* The error as text: the kernel's formatter (source-mapped stack) when it works,
   else "String(error)" and the raw stack. */
char *format_error(JSContext *ctx, JSValueConst error)
{
    if (JS_IsFunction(ctx, hook_format)) {
        JSValue arg = JS_DupValue(ctx, error);
        JSValue r = JS_Call(ctx, hook_format, JS_UNDEFINED, 1, &arg);
        JS_FreeValue(ctx, arg);
        if (!JS_IsException(r)) {
            const char *s = JS_ToCString(ctx, r);
            JS_FreeValue(ctx, r);
            if (s) {
                char *out = dup_cstring(s);
                JS_FreeCString(ctx, s);
                return out;
            }
        }
        JS_FreeValue(ctx, JS_GetException(ctx));
    }
    const char *s = JS_ToCString(ctx, error);
    char *out = dup_cstring(s ? s : "(unprintable error)");
    if (s)
        JS_FreeCString(ctx, s);
    if (JS_IsObject(error)) {
        JSValue stack = JS_GetPropertyStr(ctx, error, "stack");
        const char *st = JS_IsString(stack) ? JS_ToCString(ctx, stack) : NULL;
        if (st) {
            size_t a = strlen(out), b = strlen(st);
            char *both = malloc(a + b + 2);
            if (both) {
                memcpy(both, out, a);
                both[a] = '\n';
                memcpy(both + a + 1, st, b + 1);
                out = both;
            }
            JS_FreeCString(ctx, st);
        }
        JS_FreeValue(ctx, stack);
    }
    return out;
}

static int is_out_of_memory(JSContext *ctx, JSValueConst error)
{
    if (!this_local()->heap_exhausted)
        return 0;
    JSValue msg = JS_GetPropertyStr(ctx, error, "message");
    const char *s = JS_ToCString(ctx, msg);
    int oom = s && strcmp(s, "out of memory") == 0;
    if (s)
        JS_FreeCString(ctx, s);
    JS_FreeValue(ctx, msg);
    return oom || JS_IsNull(error);
}

void fatal_error(JSContext *ctx, const char *prefix, JSValueConst error)
{
    if (is_out_of_memory(ctx, error))
        core_out_of_memory();
    char *text = format_error(ctx, error);
    char core_tag[16] = "";              /* with several cores, say which one failed */
    if (smp_core_count() > 1)
        snprintf(core_tag, sizeof core_tag, "[core %u] ", this_core_id());
    size_t t = strlen(core_tag), n = t + strlen(prefix) + strlen(text) + 2;
    char *line = malloc(n);
    if (line) {
        memcpy(line, core_tag, t);
        memcpy(line + t, prefix, strlen(prefix));
        memcpy(line + t + strlen(prefix), text, strlen(text));
        line[n - 2] = '\n';
        console_write(line, n - 1);
    } else {
        console_puts(core_tag);
        console_puts(prefix);
        console_puts(text);
        console_puts("\n");
    }
    power_off(EXIT_UNCAUGHT);
}

static void rejection_tracker(JSContext *ctx, JSValueConst promise, JSValueConst reason,
                              JS_BOOL is_handled, void *opaque)
{
    (void)opaque;
    if (!is_handled) {
        if (unhandled_count == MAX_UNHANDLED)
            fatal_error(ctx, "Uncaught (in promise) ", reason);
        unhandled_promise[unhandled_count] = JS_DupValue(ctx, promise);
        unhandled_reason[unhandled_count++] = JS_DupValue(ctx, reason);
        return;
    }
    for (int i = 0; i < unhandled_count; i++) {
        if (JS_VALUE_GET_PTR(unhandled_promise[i]) == JS_VALUE_GET_PTR(promise)) {
            JS_FreeValue(ctx, unhandled_promise[i]);
            JS_FreeValue(ctx, unhandled_reason[i]);
            unhandled_promise[i] = unhandled_promise[unhandled_count - 1];
            unhandled_reason[i] = unhandled_reason[--unhandled_count];
            return;
        }
    }
}

/* Runs every queued microtask; returns how many ran. */
static int drain_jobs(JSContext *ctx)
{
    JSRuntime *rt = JS_GetRuntime(ctx);
    int ran = 0;
    for (;;) {
        JSContext *job_ctx;
        int r = JS_ExecutePendingJob(rt, &job_ctx);
        if (r == 0)
            break;
        if (r < 0)
            fatal_error(job_ctx, "Uncaught ", JS_GetException(job_ctx));
        ran++;
    }
    if (unhandled_count)
        fatal_error(ctx, "Uncaught (in promise) ", unhandled_reason[0]);
    return ran;
}

/* QuickJS runs its cycle collector when allocations pass 1.5x what its last collection left
   live; with the heap near its hard limit that point can lie beyond the limit, and the core
   would run out of memory holding garbage. Between turns (no JavaScript on the stack) this
   collects once the heap is 3/4 full and has grown by 1/16 of the limit since the last
   collection made here; `mark` is that level, per core (it lives on the core's loop stack). */
static void collect_under_pressure(JSContext *ctx, size_t *mark)
{
    size_t limit, used, peak;
    heap_usage(&limit, &used, &peak);
    if (used < *mark)
        *mark = used;
    if (used < limit / 4 * 3 || used < *mark + limit / 16)
        return;
    JS_RunGC(JS_GetRuntime(ctx));
    heap_usage(&limit, &used, &peak);
    *mark = used;
}

void loop_run(JSContext *ctx, JSValue module_promise)
{
    size_t gc_mark = 0;
    JS_SetHostPromiseRejectionTracker(JS_GetRuntime(ctx), rejection_tracker, NULL);
    uint64_t fired = 0;
    int jobs = 0;                         /* microtasks run since the last turn */
    for (;;) {
        int ran = drain_jobs(ctx);
        jobs += ran;
        JSPromiseStateEnum state = JS_PromiseState(ctx, module_promise);
        if (state == JS_PROMISE_REJECTED)
            fatal_error(ctx, "Uncaught ", JS_PromiseResult(ctx, module_promise));

        double next = -2;
        if (JS_IsFunction(ctx, hook_turn)) {
            JSValue args[2] = { JS_NewFloat64(ctx, (double)fired), JS_NewBool(ctx, jobs != 0) };
            JSValue r = JS_Call(ctx, hook_turn, JS_UNDEFINED, 2, args);
            fired = 0;
            jobs = 0;
            if (JS_IsException(r))
                fatal_error(ctx, "Uncaught ", JS_GetException(ctx));
            if (JS_ToFloat64(ctx, &next, r))
                next = -2;
            JS_FreeValue(ctx, r);
        }
        jobs = drain_jobs(ctx);
        ran += jobs;
        collect_under_pressure(ctx, &gc_mark);
        if (ran)
            continue;                     /* microtasks may have started new work */
        if (next == -2 && this_core_id() != 0) {
            /* Another core's loop ran dry: it waits for messages; the VM's life is the
               boot core's (kernel/process/cores.ts), or the last live cores' once core 0
               has stopped. */
            this_core()->dry = 1;
            this_core()->sleeping = 1;    /* a failing core wakes it to look again */
            __asm__ volatile("mfence" ::: "memory");
            if (smp_vm_finished())
                power_off(EXIT_OUT_OF_MEMORY);
            fired = apic_idle(-1);
            this_core()->dry = 0;
            continue;
        }
        if (next == -2) {
            if (state == JS_PROMISE_PENDING) {
                console_puts("Warning: Detected unsettled top-level await\n");
                power_off(13);
            }
            power_off(0);
        }
        if (next == -1 || next > clock_now_ms()) {
            fired = apic_idle(next);
            /* Awake: senders need not interrupt this core until its next coreArmWake(). */
            this_core()->sleeping = 0;
        }
    }
}
