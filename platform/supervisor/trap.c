/*
 * Traps: interrupts, supervisor calls and CPU exceptions.
 *
 * Device and timer interrupts only record their vector for ring 3 to find (polling
 * happens there); the supervisor call set is one entry wide (idle). A CPU exception in
 * ring 3 is printed with its registers and handed to the runtime's fault handler, which
 * prints the JavaScript stack and powers off; an exception in ring 0 powers off at once.
 */
#include "supervisor.h"

static const char *const exception_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound range", "#UD invalid opcode", "#NM device not available", "#DF double fault",
    "coprocessor overrun", "#TS invalid TSS", "#NP segment not present", "#SS stack fault",
    "#GP general protection", "#PF page fault", "reserved", "#MF x87 error",
    "#AC alignment check", "#MC machine check", "#XM SIMD error", "#VE virtualization",
    "#CP control protection", "reserved", "reserved", "reserved", "reserved", "reserved",
    "reserved", "#HV", "#VC", "#SX", "reserved",
};

static inline void lapic_eoi(void)
{
    *(volatile uint32_t *)LAPIC_EOI = 0;
}

/* Wakes the sleeping cores of `cores` (bit i: core i) with VEC_WAKE: the owner of a
   multiqueue NIC takes its one interrupt for every core's queue pair, and a halted core
   must not wait for the owner's event loop to come round to it. A few dozen instructions,
   only for lines the runtime asked for (apic.c irqForward). */
static void forward_wake(uint32_t cores)
{
    volatile uint32_t *icr_high = (volatile uint32_t *)(LAPIC_BASE + 0x310);
    volatile uint32_t *icr_low = (volatile uint32_t *)(LAPIC_BASE + 0x300);
    /* Ring 3 may have been interrupted between its own two ICR writes: keep its destination. */
    uint32_t saved = *icr_high;
    for (unsigned i = 0; cores != 0 && i < TORITO_MAX_CORES; i++, cores >>= 1) {
        if ((cores & 1) == 0 || !torito_cores[i].sleeping)
            continue;
        *icr_high = torito_cores[i].apic_id << 24;
        *icr_low = 0x4000 | VEC_WAKE;
    }
    *icr_high = saved;
}

static inline uint64_t read_cr2(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr2, %0" : "=r"(v));
    return v;
}

static void print_frame(const struct trap_frame *f, uint64_t cr2)
{
    static const char *const names[] = {
        "r15", "r14", "r13", "r12", "r11", "r10", "r9 ", "r8 ",
        "rbp", "rdi", "rsi", "rdx", "rcx", "rbx", "rax",
    };
    const uint64_t *regs = &f->r15;
    uart_puts("\n*** CPU fault: ");
    uart_puts(f->vector < 32 ? exception_names[f->vector] : "unexpected vector");
    uart_puts(" (vector ");
    uart_hex(f->vector);
    uart_puts(", error ");
    uart_hex(f->error);
    uart_puts(") in ring ");
    uart_puts((f->cs & 3) ? "3\n" : "0 (supervisor)\n");
    uart_puts("rip ");
    uart_hex(f->rip);
    uart_puts(" rsp ");
    uart_hex(f->rsp);
    uart_puts(" rflags ");
    uart_hex(f->rflags);
    uart_puts(" cr2 ");
    uart_hex(cr2);
    for (int i = 14; i >= 0; i--) {
        uart_puts((14 - i) % 4 == 0 ? "\n" : " ");
        uart_puts(names[i]);
        uart_puts(" ");
        uart_hex(regs[i]);
    }
    uart_puts("\n");
}

/* Halts until an interrupt arrives, unless one is already waiting for ring 3. */
static void idle(struct core_shared *core)
{
    if (core->pending_vectors)
        return;
    /* sti takes effect after hlt starts, so no interrupt slips in between. */
    __asm__ volatile("sti; hlt; cli" ::: "memory");
}

/* ud2 + marker at rip (ring-3 text is readable from ring 0: no SMAP) */
static int is_supervisor_call(uint64_t rip)
{
    if (rip < RUNTIME_BASE || rip > 0xfe000000ull - SVC_LENGTH)
        return 0;
    const volatile uint8_t *p = (const volatile uint8_t *)(uintptr_t)rip;
    return p[0] == 0x0f && p[1] == 0x0b && p[2] == SVC_MARKER0 && p[3] == SVC_MARKER1;
}

void trap(struct trap_frame *f)
{
    struct core_shared *core = trap_core(f);
    uint64_t v = f->vector;

    if (v >= VEC_FIRST_IRQ && v <= VEC_WAKE) {
        core->pending_vectors |= 1ull << (v - VEC_FIRST_IRQ);
        if (v < VEC_WAKE && (core->wake_lines >> (v - VEC_FIRST_IRQ)) & 1)
            forward_wake(core->wake_cores);
        lapic_eoi();
        return;
    }
    if (v == VEC_SPURIOUS)
        return;                         /* no EOI for the spurious vector */
    if (v == 6 && (f->cs & 3) == 3 && is_supervisor_call(f->rip)) {
        f->rip += SVC_LENGTH;
        switch (f->rax) {
        case SVC_IDLE:
            idle(core);
            f->rax = 0;
            return;
        default:
            f->rax = (uint64_t)-1;
            return;
        }
    }

    uint64_t cr2 = read_cr2();
    print_frame(f, cr2);
    if ((f->cs & 3) != 3 || core->fault.count++ > 0 || !core->fault_entry) {
        uart_puts((f->cs & 3) != 3 ? "*** fault in the supervisor: powering off\n"
                                   : "*** fault while handling a fault: powering off\n");
        sup_power_off((f->cs & 3) != 3 ? EXIT_SUPERVISOR : EXIT_CPU_FAULT);
    }
    /* Hand the fault to the runtime: it resumes in its fault handler on its own stack. */
    const uint64_t *from = (const uint64_t *)f;
    uint64_t *to = (uint64_t *)&core->fault.frame;
    for (unsigned i = 0; i < sizeof *f / 8; i++)
        to[i] = from[i];
    core->fault.cr2 = cr2;
    f->rip = core->fault_entry;
    f->rsp = core->fault_stack_top;
    f->rflags &= ~(1ull << 9);          /* interrupts off: the runtime is going down */
    f->rdi = (uint64_t)(uintptr_t)&core->fault;
}
