/*
 * Runtime start (ring 3): the boot core's memory, clocks, heap, QuickJS, the app; then the
 * same for every other core (smp.c starts them).
 *
 * The supervisor jumps here with interrupts enabled and %fs pointing at this core's
 * runtime_tls block. From now on nothing enters ring 0 except idle and faults.
 */
#include "runtime.h"

/* Xen's PVH start info (xen/include/public/arch-x86/hvm/start_info.h). */
#define HVM_START_MAGIC 0x336ec578
struct hvm_start_info {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    uint32_t memmap_entries, reserved;
};
struct hvm_memmap_entry {
    uint64_t addr, size;
    uint32_t type, reserved;
};
#define E820_RAM 1

/* musl's thread block: self at 0, errno at 0x34, locale at 0xa8 (checked at build time
   by check-image.sh); our per-core fields from 0x100. One per core, TLS_STRIDE apart (the
   supervisor sets core i's FS base to runtime_tls + i * TLS_STRIDE). */
struct runtime_tls {
    void *self;
    uint8_t musl_fields[0xa8 - 8];
    void *locale;
    uint8_t pad[0x100 - 0xb0];
    unsigned core_id;
} __attribute__((aligned(TLS_STRIDE)));
_Static_assert(sizeof(struct runtime_tls) == TLS_STRIDE, "TLS_STRIDE in shared.h");

static uint64_t c_locale[8];                    /* every category NULL: the C locale */
struct runtime_tls runtime_tls[TORITO_MAX_CORES];
struct core_shared torito_cores[TORITO_MAX_CORES];
struct core_local core_locals[TORITO_MAX_CORES];
uint64_t boot_first_output_tsc;

extern char image_end[];
extern void runtime_fault_entry(void);
extern char runtime_fault_stack_top[];

static char cmdline[2048];

const char *kernel_cmdline(void) { return cmdline; }

void power_off(int code)
{
    console_drain();
    outl(0xf4, (uint32_t)code & 0x7f);
    /* isa-debug-exit absent (e.g. Firecracker): nothing else stops the VM from ring 3 */
    for (;;)
        svc_idle();
}

void boot_fail(const char *what)
{
    console_printf("torito: boot failed: %s\n", what);
    power_off(EXIT_BAD_BOOT);
}

/* Finds the RAM range that holds the image and returns its end: this core's region. */
static uintptr_t ram_end_above_image(const struct hvm_start_info *si)
{
    uintptr_t image = (uintptr_t)image_end;
    if (si->version < 1 || !si->memmap_paddr || !si->memmap_entries)
        boot_fail("no memory map in hvm_start_info");
    const struct hvm_memmap_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
    for (uint32_t i = 0; i < si->memmap_entries; i++) {
        if (e[i].type != E820_RAM)
            continue;
        uint64_t end = e[i].addr + e[i].size;
        if (e[i].addr <= image && image < end)
            return end > 0xfe000000ull ? 0xfe000000ull : (uintptr_t)end;
    }
    boot_fail("the image does not sit in RAM (is --mem too small?)");
    return 0;
}

static void heap_report(void)
{
    size_t limit, used, peak;
    heap_usage(&limit, &used, &peak);
    console_printf("fatal: JavaScript heap out of memory on core %u (limit %zu KiB, in use %zu KiB, peak %zu KiB)\n",
                   this_core_id(), limit >> 10, used >> 10, peak >> 10);
}

/* A core whose heap ran out stops alone: the others go on serving (issue 6). With one core,
   or when it was the last one standing, the VM powers off with EXIT_OUT_OF_MEMORY. */
void core_out_of_memory(void)
{
    heap_report();
    if (smp_core_count() == 1 || smp_last_core_standing())
        power_off(EXIT_OUT_OF_MEMORY);
    /* Print before marking this core failed: that lets the others end the VM. */
    console_printf("torito: core %u stopped; the other cores go on\n", this_core_id());
    if (smp_fail_core())                /* they all failed meanwhile */
        power_off(EXIT_OUT_OF_MEMORY);
    for (;;)
        svc_idle();                     /* interrupts routed here only wake it up again */
}

void heap_out_of_memory_hook(size_t request)
{
    (void)request;
    this_local()->heap_exhausted = 1;
}

static void *js_malloc_cb(JSMallocState *s, size_t n) { (void)s; return malloc(n); }
static void js_free_cb(JSMallocState *s, void *p)
{
    (void)s;
    if (!free_is_stolen(p))             /* an ArrayBuffer's block leaving for another core */
        free(p);
}
static void *js_realloc_cb(JSMallocState *s, void *p, size_t n) { (void)s; return realloc(p, n); }
static size_t js_usable_cb(const void *p) { return malloc_usable_size((void *)p); }
static const JSMallocFunctions malloc_functions = { js_malloc_cb, js_free_cb, js_realloc_cb, js_usable_cb };

static void tls_init(unsigned core_id, uintptr_t fault_stack_top)
{
    struct runtime_tls *tls = &runtime_tls[core_id];
    tls->self = tls;
    tls->locale = c_locale;
    tls->core_id = core_id;
    struct core_shared *core = this_core();
    core->fault_entry = (uint64_t)(uintptr_t)runtime_fault_entry;
    core->fault_stack_top = fault_stack_top;
}

/* The image's modules (host/build.ts encodeModuleTable): "TJM1", a count, then per module
   its name and bytecode as (offset, length) pairs from the table's start. Module 0 is read
   at boot; it imports the kernel's start-up and the app, which are read then too, with the
   chunks they import statically. A chunk reached only by a dynamic import() (the kernel's
   file system drivers, say) is read when first imported. */
#define MODULE_TABLE_MAGIC 0x314d4a54u
struct module_record { uint32_t name_offset, name_length, data_offset, data_length; };

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

/* Modules in the table: checked by the boot core before it starts the others. */
static uint32_t module_total;

static struct module_record module_at(uint32_t i)
{
    const uint8_t *r = torito_app_bytecode + 8 + 16 * i;
    return (struct module_record){ le32(r), le32(r + 4), le32(r + 8), le32(r + 12) };
}

/* Checks the table's records (every name and bytecode inside the table) and counts them. */
static uint32_t check_module_table(void)
{
    size_t size = (size_t)(torito_app_bytecode_end - torito_app_bytecode);
    if (size < 8 || le32(torito_app_bytecode) != MODULE_TABLE_MAGIC)
        boot_fail("the image holds no module table (rebuild it with this platform)");
    uint32_t count = le32(torito_app_bytecode + 4);
    if (count == 0 || count > (size - 8) / 16)
        boot_fail("the image's module table is corrupt");
    for (uint32_t i = 0; i < count; i++) {
        struct module_record m = module_at(i);
        if ((uint64_t)m.name_offset + m.name_length > size || (uint64_t)m.data_offset + m.data_length > size || m.data_length == 0)
            boot_fail("the image's module table is corrupt");
    }
    return count;
}

static JSValue read_module(JSContext *ctx, uint32_t i)
{
    struct module_record m = module_at(i);
    return JS_ReadObject(ctx, torito_app_bytecode + m.data_offset, m.data_length, JS_READ_OBJ_BYTECODE);
}

/* The index of the module named `name` (module 0 is never imported), or 0 when none is. */
static uint32_t find_module(const char *name)
{
    size_t n = strlen(name);
    for (uint32_t i = 1; i < module_total; i++) {
        struct module_record m = module_at(i);
        if (m.name_length == n && memcmp(torito_app_bytecode + m.name_offset, name, n) == 0)
            return i;
    }
    return 0;
}

/* QuickJS asks for a module the first time something imports it (its default normaliser
   has already resolved "./chunk-X.js" against the importer). */
static JSModuleDef *image_module_loader(JSContext *ctx, const char *name, void *opaque)
{
    (void)opaque;
    uint32_t i = find_module(name);
    if (i == 0) {
        JS_ThrowReferenceError(ctx, "cannot find module '%s' (the image holds no such module)", name);
        return NULL;
    }
    JSValue module = read_module(ctx, i);
    if (JS_IsException(module)) {
        JSValue error = JS_GetException(ctx);
        const char *why = JS_ToCString(ctx, error);
        JS_ThrowSyntaxError(ctx, "image module '%s' is damaged: %s", name, why ? why : "unreadable bytecode");
        JS_FreeCString(ctx, why);
        JS_FreeValue(ctx, error);
        return NULL;
    }
    if (JS_VALUE_GET_TAG(module) != JS_TAG_MODULE) {
        JS_FreeValue(ctx, module);
        JS_ThrowSyntaxError(ctx, "image module '%s' is not an ES module", name);
        return NULL;
    }
    /* loaded_modules holds the module: drop the reference JS_ReadObject returned */
    JSModuleDef *def = JS_VALUE_GET_PTR(module);
    JS_FreeValue(ctx, module);
    /* QuickJS finds it by the name its bytecode records (qjsc's): the table's must agree,
       or every import would read it again */
    JSAtom recorded = JS_GetModuleName(ctx, def);
    const char *recorded_name = JS_AtomToCString(ctx, recorded);
    int same = recorded_name && strcmp(recorded_name, name) == 0;
    if (!same)
        JS_ThrowSyntaxError(ctx, "image module '%s' records the name '%s'", name, recorded_name ? recorded_name : "?");
    JS_FreeCString(ctx, recorded_name);
    JS_FreeAtom(ctx, recorded);
    return same ? def : NULL;
}

/* One QuickJS runtime per core over this core's heap: every core loads the same bytecode
   and runs the module's top level (the app branches on `cores.id`). */
static __attribute__((noreturn)) void run_app(void)
{
    JSRuntime *rt = JS_NewRuntime2(&malloc_functions, NULL);
    if (!rt)
        boot_fail("JS_NewRuntime failed");
    JS_SetMaxStackSize(rt, 448 * 1024);      /* of the 512 KiB runtime stack */
    JSContext *ctx = JS_NewContext(rt);
    if (!ctx)
        boot_fail("JS_NewContext failed");
    this_local()->ctx = ctx;
    native_install(ctx);
    boot_milestone("engineReady");

    JS_SetModuleLoaderFunc(rt, NULL, image_module_loader, NULL);
    JSValue module = read_module(ctx, 0);
    if (JS_IsException(module))
        fatal_error(ctx, "cannot load the app's bytecode: ", JS_GetException(ctx));
    if (JS_VALUE_GET_TAG(module) == JS_TAG_MODULE && JS_ResolveModule(ctx, module) < 0)
        fatal_error(ctx, "cannot link the app: ", JS_GetException(ctx));
    boot_milestone("bytecodeLoaded");
    JSValue result = JS_EvalFunction(ctx, module);
    if (JS_IsException(result))
        fatal_error(ctx, "Uncaught ", JS_GetException(ctx));
    loop_run(ctx, result);
}

/* An application processor in ring 3 (start.S, from supervisor_ap_main). */
void runtime_ap_main(unsigned core_id)
{
    uintptr_t start, end;
    smp_region(core_id, &start, &end);
    tls_init(core_id, torito_cores[core_id].entry_stack + RUNTIME_FAULT_STACK);
    apic_init();
    torito_cores[core_id].apic_id = *(volatile uint32_t *)(LAPIC_BASE + 0x20) >> 24;
    heap_init(core_id, start, end);
    run_app();
}

void runtime_main(void)
{
    tls_init(0, (uintptr_t)runtime_fault_stack_top);
    struct core_shared *core = this_core();

    const struct hvm_start_info *si = (const void *)(uintptr_t)core->start_info;
    if (!si || si->magic != HVM_START_MAGIC)
        boot_fail("bad hvm_start_info magic");
    if (si->cmdline_paddr) {
        const char *c = (const char *)(uintptr_t)si->cmdline_paddr;
        size_t n = strnlen(c, sizeof cmdline - 1);
        memcpy(cmdline, c, n);
        cmdline[n] = 0;
    }
    clock_init(cmdline);
    boot_milestone("runtimeEntry");
    apic_init();

    uintptr_t region_start = ((uintptr_t)image_end + 4095) & ~4095ul;
    uintptr_t region_end = ram_end_above_image(si);
    if (region_end <= region_start + (1u << 20))
        boot_fail("less than 1 MiB of memory above the image (raise --mem)");
    module_total = check_module_table();    /* once, before the other cores read it */
    /* With one vCPU QEMU runs acpi=off: no RSDP, one region, no other work. */
    heap_init(0, region_start, si->rsdp_paddr ? smp_plan(si->rsdp_paddr, region_start, region_end) : region_end);
    smp_start_cores();
    if (smp_core_count() > 1)
        boot_milestone("coresStarted");
    run_app();
}

/* The supervisor sends a ring-3 CPU fault here, on the fault stack, interrupts off. */
void runtime_fault(struct fault_info *fault)
{
    (void)fault;
    if (this_local()->heap_exhausted)
        heap_report();
    if (smp_core_count() > 1)
        console_printf("*** the fault above happened on core %u\n", this_core_id());
    JSContext *ctx = this_local()->ctx;
    if (ctx) {
        /* Best effort: the interpreter may be mid-operation, but its frame chain is
           usually intact, and the stack is what tells the developer where they were. */
        JS_ThrowInternalError(ctx, "CPU fault (vector %u) at rip 0x%lx",
                              (unsigned)fault->frame.vector, (unsigned long)fault->frame.rip);
        JSValue e = JS_GetException(ctx);
        char *text = format_error(ctx, e);
        console_printf("JavaScript stack at the fault:\n%s\n", text);
    }
    power_off(EXIT_CPU_FAULT);
}

/* --- libc pieces QuickJS needs that musl would implement with system calls ---------- */

void abort(void)
{
    if (this_local()->heap_exhausted)
        core_out_of_memory();
    console_puts("fatal: abort() called\n");
    power_off(EXIT_CPU_FAULT);
}

void __assert_fail(const char *expr, const char *file, int line, const char *func)
{
    console_printf("fatal: assertion failed: %s (%s:%d, %s)\n", expr, file, line, func);
    power_off(EXIT_CPU_FAULT);
}

void exit(int code)
{
    power_off(code);
}

void _Exit(int code)
{
    power_off(code);
}
