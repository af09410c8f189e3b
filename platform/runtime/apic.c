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
#define IOAPIC_MAX 4

/* The IOAPICs and their first GSI: from the MADT (smp.c), else the one at IOAPIC_BASE.
   QEMU microvm with acpi=on has two; its virtio-mmio slots raise GSI 24 + slot on the
   second one. */
static struct { uintptr_t base; unsigned gsi_base, pins; } ioapics[IOAPIC_MAX] = { { IOAPIC_BASE, 0, 24 } };
static unsigned ioapic_count = 1, ioapic_from_madt;

/* An IOAPIC is one register window (select, then data) shared by every core, and each core
   routes its own devices, possibly at the same moment: the select/data pairs must not
   interleave. Routing happens when a driver starts, never on a hot path. */
static volatile int ioapic_lock;

static void ioapic_acquire(void)
{
    while (__atomic_exchange_n(&ioapic_lock, 1, __ATOMIC_ACQUIRE))
        __asm__ volatile("pause");
}

static void ioapic_release(void)
{
    __atomic_store_n(&ioapic_lock, 0, __ATOMIC_RELEASE);
}

static uint32_t ioapic_read(uintptr_t base, unsigned reg)
{
    *(volatile uint32_t *)(base + IOREGSEL) = reg;
    return *(volatile uint32_t *)(base + IOWIN);
}

static void ioapic_write(uintptr_t base, unsigned reg, uint32_t v)
{
    *(volatile uint32_t *)(base + IOREGSEL) = reg;
    *(volatile uint32_t *)(base + IOWIN) = v;
}

void ioapic_add(uintptr_t base, unsigned gsi_base)
{
    if (base < 0xfe000000ul)              /* only the user-mapped device window */
        return;
    if (!ioapic_from_madt) {              /* the MADT replaces the default */
        ioapic_from_madt = 1;
        ioapic_count = 0;
    }
    if (ioapic_count == IOAPIC_MAX)
        return;
    unsigned pins = ((ioapic_read(base, 0x01) >> 16) & 0xff) + 1;   /* IOAPICVER: max entry */
    ioapics[ioapic_count].base = base;
    ioapics[ioapic_count].gsi_base = gsi_base;
    ioapics[ioapic_count++].pins = pins;
}

/* The IOAPIC serving `gsi` and the pin on it, or 0. */
static uintptr_t ioapic_of(unsigned gsi, unsigned *pin)
{
    for (unsigned i = 0; i < ioapic_count; i++) {
        if (gsi >= ioapics[i].gsi_base && gsi < ioapics[i].gsi_base + ioapics[i].pins) {
            *pin = gsi - ioapics[i].gsi_base;
            return ioapics[i].base;
        }
    }
    return 0;
}

int ioapic_has(unsigned gsi)
{
    unsigned pin;
    return ioapic_of(gsi, &pin) != 0;
}

/* Routes `gsi` to vector VEC_FIRST_IRQ + line on the calling core: a device's interrupts
   go to the core that owns it. */
void ioapic_route(unsigned gsi, unsigned line, int level)
{
    unsigned pin;
    uintptr_t base = ioapic_of(gsi, &pin);
    if (!base)
        return;
    ioapic_acquire();
    ioapic_write(base, 0x11 + 2 * pin, this_core()->apic_id << 24);   /* physical destination */
    ioapic_write(base, 0x10 + 2 * pin, (VEC_FIRST_IRQ + line) | (level ? 1u << 15 : 0));
    ioapic_release();
}

void ioapic_mask(unsigned gsi)
{
    unsigned pin;
    uintptr_t base = ioapic_of(gsi, &pin);
    if (base) {
        ioapic_acquire();
        ioapic_write(base, 0x10 + 2 * pin, 1u << 16);
        ioapic_release();
    }
}
