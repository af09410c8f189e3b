#ifndef SUPERVISOR_H
#define SUPERVISOR_H

#include <stdint.h>
#include <torito/shared.h>

void uart_puts(const char *s);
void uart_hex(uint64_t value);
__attribute__((noreturn)) void sup_power_off(uint32_t code);

void trap(struct trap_frame *frame);
__attribute__((noreturn)) void supervisor_main(void);
__attribute__((noreturn)) void supervisor_ap_main(unsigned index);
__attribute__((noreturn)) void enter_ring3(uint64_t entry, uint64_t stack, uint64_t arg0, uint64_t arg1);

extern uint64_t boot_tsc, boot_start_info;
extern char trap_stacks[];

/* The core a trap arrived on: the frame sits on that core's trap stack (boot.S). */
static inline struct core_shared *trap_core(const void *frame)
{
    uint64_t i = ((uint64_t)(uintptr_t)frame - (uint64_t)(uintptr_t)trap_stacks) >> TRAP_STACK_SHIFT;
    return &torito_cores[i < TORITO_MAX_CORES ? i : 0];   /* double fault (IST): core 0 */
}

/* Runtime symbols the supervisor hands control to. */
extern char runtime_entry[], runtime_stack_top[];

static inline void wrmsr(uint32_t msr, uint64_t value)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32)));
}

static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

#define MSR_FS_BASE            0xc0000100
#define MSR_KVM_WALL_CLOCK_NEW 0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define LAPIC_EOI              (LAPIC_BASE + 0xb0)

#endif
