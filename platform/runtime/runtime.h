#ifndef RUNTIME_H
#define RUNTIME_H

#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <torito/shared.h>
#include "quickjs.h"

/* --- per-core state (TLS block at %fs; musl's struct pthread fields come first) ------ */
#define TLS_CORE_ID_OFFSET 0x100
static inline unsigned this_core_id(void)
{
    unsigned id;
    __asm__("movl %%fs:" "0x100" ", %0" : "=r"(id));
    return id;
}
static inline struct core_shared *this_core(void) { return &torito_cores[this_core_id()]; }

/* What each core's runtime keeps for itself (no C global is written by two cores except
   the message rings, the console lock and the AP counter, all in smp.c / console.c). */
#define MAX_UNHANDLED 64
struct core_local {
    JSContext *ctx;
    int heap_exhausted;
    size_t dma_used;
    void *stealing;          /* block being handed to another core: its free must not free it */
    JSValue hook_turn, hook_format;
    int unhandled_count;     /* promises rejected with no handler yet (loop.c) */
    JSValue unhandled_promise[MAX_UNHANDLED], unhandled_reason[MAX_UNHANDLED];
};
extern struct core_local core_locals[TORITO_MAX_CORES];
static inline struct core_local *this_local(void) { return &core_locals[this_core_id()]; }

/* True (and consumed) when `p` is the block smp.c is detaching for a transfer. */
static inline int free_is_stolen(void *p)
{
    struct core_local *l = this_local();
    if (p != l->stealing)
        return 0;
    l->stealing = NULL;
    return 1;
}

/* --- hardware from ring 3 ---------------------------------------------------------- */
static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* --- supervisor call (start.S) ------------------------------------------------------ */
void svc_idle(void);

/* --- console.c ------------------------------------------------------------------------ */
void console_write(const void *data, size_t len);
void console_puts(const char *s);
void console_drain(void);
void console_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --- clock.c --------------------------------------------------------------------------- */
void clock_init(const char *cmdline);
double clock_now_ms(void);            /* since the boot core's first instruction */
double clock_epoch_ms(void);          /* wall clock */
double clock_tsc_per_ms(void);
double clock_tsc_to_ms(uint64_t tsc); /* a TSC reading as ms since the first instruction */
const char *clock_source(void);

/* --- apic.c ---------------------------------------------------------------------------- */
void apic_init(void);
uint64_t apic_idle(double deadline_ms); /* returns the vectors (bit n = 32+n) that fired */
void ioapic_add(uintptr_t base, unsigned gsi_base);   /* from the MADT */
int ioapic_has(unsigned gsi);
void ioapic_route(unsigned gsi, unsigned line, int level);
void ioapic_mask(unsigned gsi);

/* --- malloc.c -------------------------------------------------------------------------- */
void heap_init(unsigned core, uintptr_t start, uintptr_t end);
void heap_usage(size_t *limit, size_t *used, size_t *peak);
/* aligned_alloc of zeroed memory; clears only what was ever used before (malloc.c). */
void *aligned_alloc_zeroed(size_t align, size_t n);
void heap_out_of_memory_hook(size_t request);

/* --- main.c ---------------------------------------------------------------------------- */
__attribute__((noreturn)) void power_off(int code);
__attribute__((noreturn)) void boot_fail(const char *what);
extern uint64_t boot_first_output_tsc;
const char *kernel_cmdline(void);

/* --- smp.c ----------------------------------------------------------------------------- */
uintptr_t smp_plan(uint64_t rsdp_paddr, uintptr_t start, uintptr_t end); /* core 0's heap end */
void smp_start_cores(void);
void smp_region(unsigned core, uintptr_t *start, uintptr_t *end);
unsigned smp_core_count(void);
void smp_install(JSContext *ctx, JSValue native);
int smp_last_core_standing(void); /* every other core has failed */
int smp_fail_core(void);          /* marks this core failed; 1 when no core is left */
int smp_vm_finished(void);        /* core 0 failed and every live core ran dry */
#define RUNTIME_STACK       (512 * 1024)   /* each core's ring-3 stack (start.S for core 0) */
#define RUNTIME_FAULT_STACK (64 * 1024)    /* and its fault-handler stack, below it */

/* --- js.c / loop.c / native.c ------------------------------------------------------------ */
void native_install(JSContext *ctx);
void loop_set_hooks(JSContext *ctx, JSValueConst turn, JSValueConst format_error);
__attribute__((noreturn)) void loop_run(JSContext *ctx, JSValue module_promise);
__attribute__((noreturn)) void fatal_error(JSContext *ctx, const char *prefix, JSValueConst error);
__attribute__((noreturn)) void core_out_of_memory(void);   /* main.c */
char *format_error(JSContext *ctx, JSValueConst error);  /* malloc'ed; never NULL */
void boot_milestone(const char *name);
JSValue boot_milestones(JSContext *ctx);

extern const uint8_t torito_app_bytecode[], torito_app_bytecode_end[];
extern const uint8_t torito_app_sourcemap[], torito_app_sourcemap_end[];
extern const uint8_t torito_app_files[], torito_app_files_end[];

#endif
