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
void ioapic_route(unsigned gsi, unsigned line, int level);
void ioapic_mask(unsigned gsi);

/* --- malloc.c -------------------------------------------------------------------------- */
void heap_init(unsigned core, uintptr_t start, uintptr_t end);
void heap_usage(size_t *limit, size_t *used, size_t *peak);
void heap_out_of_memory_hook(size_t request);

/* --- main.c ---------------------------------------------------------------------------- */
__attribute__((noreturn)) void power_off(int code);
extern uint64_t boot_first_output_tsc;
extern int heap_exhausted;
const char *kernel_cmdline(void);

/* --- js.c / loop.c / native.c ------------------------------------------------------------ */
void native_install(JSContext *ctx);
void loop_set_hooks(JSContext *ctx, JSValueConst turn, JSValueConst format_error);
__attribute__((noreturn)) void loop_run(JSContext *ctx, JSValue module_promise);
__attribute__((noreturn)) void fatal_error(JSContext *ctx, const char *prefix, JSValueConst error);
char *format_error(JSContext *ctx, JSValueConst error);  /* malloc'ed; never NULL */
void boot_milestone(const char *name);
JSValue boot_milestones(JSContext *ctx);
extern JSContext *current_context;

extern const uint8_t torito_app_bytecode[], torito_app_bytecode_end[];
extern const uint8_t torito_app_sourcemap[], torito_app_sourcemap_end[];
extern const uint8_t torito_app_files[], torito_app_files_end[];

#endif
