/*
 * Clocks: the TSC is the time base (rdtsc runs natively in ring 3). Its rate and the
 * wall clock come from kvmclock when KVM offers it (the supervisor registered the
 * pvclock areas at boot); otherwise PIT channel 0 measures the TSC rate and the CMOS RTC gives
 * the wall clock, or the host's `torito.epoch_ms=` on the command line when there is no RTC.
 */
#include "runtime.h"

static double tsc_per_ms;          /* ticks per millisecond */
static uint64_t tsc_at_boot;       /* the boot core's first instruction */
static double epoch_ms_at_boot;    /* wall clock at tsc_at_boot */
static const char *source = "none";

#define PIT_HZ 1193182.0

/* Reads a consistent pvclock snapshot (version is odd while the host updates it). */
static void pvclock_read(const volatile struct pvclock_time_info *p, struct pvclock_time_info *out, uint64_t *tsc)
{
    uint32_t v;
    do {
        v = p->version;
        __asm__ volatile("" ::: "memory");
        out->tsc_timestamp = p->tsc_timestamp;
        out->system_time = p->system_time;
        out->tsc_to_system_mul = p->tsc_to_system_mul;
        out->tsc_shift = p->tsc_shift;
        *tsc = rdtsc();
        __asm__ volatile("" ::: "memory");
    } while ((v & 1) || v != p->version);
}

static uint64_t pvclock_scale(uint64_t delta, uint32_t mul, int8_t shift)
{
    if (shift < 0)
        delta >>= -shift;
    else
        delta <<= shift;
    return (uint64_t)(((unsigned __int128)delta * mul) >> 32);
}

static int kvmclock_init(struct core_shared *core)
{
    if (!core->kvmclock)
        return 0;
    struct pvclock_time_info t;
    uint64_t tsc;
    pvclock_read(&core->pvclock, &t, &tsc);
    if (!t.tsc_to_system_mul)
        return 0;
    /* ns = (ticks << shift) * mul >> 32, so ticks per ns = 2^32 / (mul << shift) */
    double ns_per_tick = (double)t.tsc_to_system_mul / 4294967296.0;
    ns_per_tick = t.tsc_shift >= 0 ? ns_per_tick * (double)(1u << t.tsc_shift)
                                   : ns_per_tick / (double)(1u << -t.tsc_shift);
    tsc_per_ms = 1e6 / ns_per_tick;
    uint64_t system_ns = t.system_time + pvclock_scale(tsc - t.tsc_timestamp, t.tsc_to_system_mul, t.tsc_shift);
    const volatile struct pvclock_wall_clock *w = &core->wall;
    uint32_t v, sec, nsec;
    do {
        v = w->version;
        sec = w->sec;
        nsec = w->nsec;
    } while ((v & 1) || v != w->version);
    double now_epoch_ms = (double)sec * 1e3 + (double)nsec / 1e6 + (double)system_ns / 1e6;
    epoch_ms_at_boot = now_epoch_ms - (double)(tsc - tsc_at_boot) / tsc_per_ms;
    source = "kvmclock";
    return 1;
}

/* PIT channel 0 counts down 5 ms while the TSC runs (microvm has no port 0x61 gate,
   so the counter itself is read back with latch commands). */
static unsigned pit_count(void)
{
    outb(0x43, 0x00);                               /* latch channel 0 */
    unsigned lo = inb(0x40);
    return lo | (unsigned)inb(0x40) << 8;
}

static void pit_calibrate(void)
{
    const unsigned ticks = (unsigned)(PIT_HZ / 200);  /* 5 ms */
    outb(0x43, 0x34);                               /* channel 0, lo/hi, mode 2 */
    outb(0x40, 0xff);
    outb(0x40, 0xff);
    unsigned c0 = pit_count();
    uint64_t t0 = rdtsc();
    unsigned c;
    do
        c = pit_count();
    while (c <= c0 && c0 - c < ticks);
    uint64_t t1 = rdtsc();
    unsigned elapsed = c <= c0 ? c0 - c : ticks;
    tsc_per_ms = (double)(t1 - t0) * PIT_HZ / (elapsed ? elapsed : 1) / 1000.0;
}

static uint8_t cmos(uint8_t reg)
{
    outb(0x70, reg);
    return inb(0x71);
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int rtc_read_epoch_ms(double *out)
{
    if (cmos(0x0a) == 0xff)
        return 0;                                   /* no RTC on this machine */
    while (cmos(0x0a) & 0x80)                       /* update in progress */
        ;
    unsigned sec = cmos(0x00), min = cmos(0x02), hour = cmos(0x04);
    unsigned day = cmos(0x07), mon = cmos(0x08), year = cmos(0x09);
    uint8_t b = cmos(0x0b);
    if (!(b & 0x04)) {                              /* BCD */
#define BCD(x) (((x) & 0x0f) + ((x) >> 4) * 10)
        sec = BCD(sec); min = BCD(min); hour = BCD(hour & 0x7f) | (hour & 0x80);
        day = BCD(day); mon = BCD(mon); year = BCD(year);
#undef BCD
    }
    if (!(b & 0x02) && (hour & 0x80))               /* 12-hour clock, PM */
        hour = ((hour & 0x7f) % 12) + 12;
    hour &= 0x7f;
    int64_t days = days_from_civil(2000 + year, mon, day);
    *out = ((double)days * 86400.0 + hour * 3600.0 + min * 60.0 + sec) * 1000.0;
    return 1;
}

static double cmdline_number(const char *cmdline, const char *key)
{
    const char *p = strstr(cmdline, key);
    return p ? strtod(p + strlen(key), NULL) : 0.0;
}

void clock_init(const char *cmdline)
{
    struct core_shared *core = &torito_cores[0];
    tsc_at_boot = core->boot_tsc;
    if (kvmclock_init(core))
        return;
    pit_calibrate();
    uint64_t tsc = rdtsc();
    double epoch;
    if (rtc_read_epoch_ms(&epoch)) {
        source = "pit+rtc";
    } else {
        epoch = cmdline_number(cmdline, "torito.epoch_ms=");
        source = epoch ? "pit+cmdline" : "pit";
    }
    epoch_ms_at_boot = epoch - (double)(tsc - tsc_at_boot) / tsc_per_ms;
}

double clock_tsc_to_ms(uint64_t tsc) { return (double)(int64_t)(tsc - tsc_at_boot) / tsc_per_ms; }
double clock_now_ms(void) { return clock_tsc_to_ms(rdtsc()); }
double clock_epoch_ms(void) { return epoch_ms_at_boot + clock_now_ms(); }
double clock_tsc_per_ms(void) { return tsc_per_ms; }
const char *clock_source(void) { return source; }
