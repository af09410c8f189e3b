/*
 * Ring-0 console: COM1 output, used only for the supervisor's own reports (faults,
 * fatal boot errors). The runtime writes to COM1 itself from ring 3.
 */
#include "supervisor.h"

static inline void outb(uint16_t port, uint8_t value)
{
    __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* Like the runtime's console: wait for the transmit FIFO to empty (LSR.THRE, bounded)
   before each 16 bytes, or QEMU drops bytes while its host side is busy. */
void uart_puts(const char *s)
{
    while (*s) {
        for (uint32_t spins = 0; !(inb(0x3fd) & 0x20) && spins < 100000; spins++)
            ;
        for (int n = 0; n < 16 && *s; n++)
            outb(0x3f8, (uint8_t)*s++);
    }
}

void uart_hex(uint64_t value)
{
    char buf[19];
    buf[0] = '0';
    buf[1] = 'x';
    for (int i = 0; i < 16; i++)
        buf[2 + i] = "0123456789abcdef"[(value >> (60 - 4 * i)) & 0xf];
    buf[18] = 0;
    uart_puts(buf);
}

void sup_power_off(uint32_t code)
{
    __asm__ volatile("outl %0, %1" : : "a"(code), "Nd"((uint16_t)0xf4));
    for (;;)
        __asm__ volatile("cli; hlt");
}
