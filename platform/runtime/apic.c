/*
 * Local APIC timer and IOAPIC routing, driven from ring 3 (their MMIO pages are user
 * pages). There is no periodic tick: the timer is armed one-shot only while the core
 * idles with a deadline.
 *
 * The LAPIC timer counts at 1 GHz on QEMU and KVM with divide-by-1 (both model a 1 ns
 * bus cycle). The idle loop re-checks the TSC after every wake-up, so a different rate
 * only costs extra wake-ups, never an early return.
 */
#include "runtime.h"

#define LAPIC_SVR     0x0f0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3e0
#define LAPIC_TPR     0x080

static inline void lapic_write(unsigned reg, uint32_t v) { *(volatile uint32_t *)(LAPIC_BASE + reg) = v; }

void apic_init(void)
{
    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);        /* enable */
    lapic_write(LAPIC_TIMER_DIV, 0xb);                   /* divide by 1 */
    lapic_write(LAPIC_LVT_TIMER, VEC_TIMER);             /* one-shot, unmasked */
}

static inline uint64_t take_pending(void)
{
    uint64_t v = 0;
    __asm__ volatile("xchg %0, %1" : "+r"(v), "+m"(this_core()->pending_vectors) : : "memory");
    return v;
}

uint64_t apic_idle(double deadline_ms)
{
    uint64_t fired = take_pending();
    while (!fired) {
        if (deadline_ms >= 0) {
            double left_ms = deadline_ms - clock_now_ms();
            if (left_ms <= 0)
                break;
            double ns = left_ms * 1e6;
            lapic_write(LAPIC_TIMER_INIT, ns >= 4e9 ? 0xffffffffu : (uint32_t)ns + 1);
        }
        svc_idle();
        fired = take_pending();
        if (deadline_ms >= 0 && fired == (1ull << (VEC_TIMER - VEC_FIRST_IRQ))) {
            fired = 0;                                   /* our own timer: loop re-checks */
            if (clock_now_ms() >= deadline_ms)
                break;
        }
    }
    if (deadline_ms >= 0)
        lapic_write(LAPIC_TIMER_INIT, 0);                /* disarm */
    return fired;
}

#define IOREGSEL 0x00
#define IOWIN    0x10

static void ioapic_write(unsigned reg, uint32_t v)
{
    *(volatile uint32_t *)(IOAPIC_BASE + IOREGSEL) = reg;
    *(volatile uint32_t *)(IOAPIC_BASE + IOWIN) = v;
}

void ioapic_route(unsigned gsi, unsigned line, int level)
{
    /* physical destination: this core's APIC id */
    ioapic_write(0x11 + 2 * gsi, this_core()->apic_id << 24);
    ioapic_write(0x10 + 2 * gsi, (VEC_FIRST_IRQ + line) | (level ? 1u << 15 : 0));
}

void ioapic_mask(unsigned gsi)
{
    ioapic_write(0x10 + 2 * gsi, 1u << 16);
}
