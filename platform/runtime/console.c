/*
 * Console output from ring 3: COM1 through the I/O bitmap, no trap. Each byte costs a VM
 * exit (~47 us here), so callers hand over whole lines; virtio-console takes over when
 * the devices unit finds one.
 */
#include "runtime.h"

void console_write(const void *data, size_t len)
{
    const uint8_t *p = data;
    if (!boot_first_output_tsc)
        boot_first_output_tsc = rdtsc();
    for (size_t i = 0; i < len; i++)
        outb(0x3f8, p[i]);
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
