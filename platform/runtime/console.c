/*
 * Console output from ring 3: COM1 through the I/O bitmap, no trap. Each byte costs a VM
 * exit (~40-47 us here; `rep outsb` is no cheaper, the hypervisor emulates each iteration),
 * so callers hand over whole lines. An app that logs a lot writes to the virtio-console
 * instead (`devices.console()`, `torito run --console FILE`): one notification per write.
 */
#include "runtime.h"

/* Cores share the UART: a write (a whole line from the kernel's console) holds this lock,
   so lines from different cores never interleave. Uncontended, it costs one xchg. */
static volatile uint32_t console_lock;

#define COM1        0x3f8
#define UART_FCR    (COM1 + 2)
#define UART_LSR    (COM1 + 5)
#define LSR_THRE    0x20        /* transmit FIFO empty */
#define LSR_TEMT    0x40        /* transmitter idle: everything handed to the host */
#define FIFO_DEPTH  16

static int fifo_enabled;

/* Spins until the LSR shows `bits`, for at most ~100 ms of TSC time: a stuck host side
   must not hang the guest (the bytes are then lost, as they would be anyway). */
static void uart_wait(uint8_t bits)
{
    uint64_t start = rdtsc();
    double limit = clock_tsc_per_ms() > 0 ? clock_tsc_per_ms() * 100 : 3e8;
    while (!(inb(UART_LSR) & bits)) {
        if ((double)(rdtsc() - start) > limit)
            return;
        __builtin_ia32_pause();
    }
}

/* The 16550's FIFO lets the guest write 16 bytes per status read. Without waiting for
   THRE, QEMU drops bytes while its host side is busy (a slow pipe, or power-off right
   after the last write): console output must not lose its tail. */
void console_write(const void *data, size_t len)
{
    const uint8_t *p = data;
    if (!boot_first_output_tsc)
        boot_first_output_tsc = rdtsc();
    while (__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE))
        while (console_lock)
            __builtin_ia32_pause();
    if (!fifo_enabled) {
        outb(UART_FCR, 0x07);   /* enable and clear both FIFOs */
        fifo_enabled = 1;
    }
    for (size_t i = 0; i < len; i += FIFO_DEPTH) {
        uart_wait(LSR_THRE);
        size_t n = len - i < FIFO_DEPTH ? len - i : FIFO_DEPTH;
        for (size_t k = 0; k < n; k++)
            outb(COM1, p[i + k]);
    }
    __atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
}

/* Waits until the UART has handed every byte to the host (before power-off). */
void console_drain(void)
{
    if (fifo_enabled)
        uart_wait(LSR_TEMT);
}

void console_puts(const char *s)
{
    console_write(s, strlen(s));
}

void console_printf(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    console_write(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}
