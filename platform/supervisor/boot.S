/*
 * Boot and trap entry of the ring-0 supervisor.
 *
 * Under this machine's /dev/kvm every ring-0 instruction is emulated (~1 us each), so
 * everything that can be computed at build time is: the GDT, the TSS with its I/O
 * bitmap, the IDT and the page tables are static data below, and the boot path runs a
 * few dozen instructions before it drops to ring 3.
 *
 * PVH entry (QEMU microvm, Firecracker): 32-bit protected mode, paging off,
 * %ebx = physical address of struct hvm_start_info.
 */
#include <torito/shared.h>

#define KERNEL_CS 0x08
#define KERNEL_DS 0x10
#define USER_CS   0x1b
#define USER_DS   0x23
#define TSS_SEL   0x28

/* Fixed addresses (checked by ASSERTs in link.ld) so the assembler can build gate and
   descriptor fields as constants. */
#define ISR_BASE  0x101000
#define TSS_BASE  0x102000               /* TORITO_MAX_CORES TSS headers, TSS_STRIDE apart */
#define IOBITMAP  (TSS_BASE + 0x800)     /* the one I/O bitmap every core's TSS points at */

/* ---------------------------------------------------------------------------------- */
/* XEN_ELFNOTE_PHYS32_ENTRY: where a PVH loader jumps. */
        .section .note.pvh, "a"
        .balign 4
        .long 4, 8, 18
        .asciz "Xen"
        .balign 4
        .quad pvh_entry

/* ---------------------------------------------------------------------------------- */
        .section .boot, "ax"
        .code32
        .globl pvh_entry
pvh_entry:
        rdtsc                           /* first instruction's timestamp, for boot timing */
        mov     %eax, boot_tsc
        mov     %edx, boot_tsc + 4
        mov     %ebx, boot_start_info
        lgdt    gdt_pointer
        mov     $0x620, %eax            /* CR4: PAE | OSFXSR | OSXMMEXCPT (SSE for ring 3) */
        mov     %eax, %cr4
        mov     $pml4, %eax
        mov     %eax, %cr3
        mov     $0xc0000080, %ecx       /* EFER.LME */
        rdmsr
        or      $0x100, %eax
        wrmsr
        mov     $0x80010023, %eax       /* CR0: PG | WP | NE | MP | PE (EM, TS clear) */
        mov     %eax, %cr0
        ljmp    $KERNEL_CS, $long_mode

        .code64
long_mode:
        mov     $KERNEL_DS, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        xor     %eax, %eax
        mov     %ax, %fs
        mov     %ax, %gs
        mov     $boot_stack_top, %rsp
        lidt    idt_pointer
        mov     $TSS_SEL, %ax
        ltr     %ax
        call    supervisor_main         /* never returns: it enters ring 3 */
1:      hlt
        jmp     1b

/*
 * Application processors arrive here from ap_trampoline (below), already in long mode on
 * the static page tables and GDT. Each takes the next core index and finds everything
 * else by arithmetic on it: trap stack, TSS selector, then C for the FS base and ring 3.
 */
ap_long_mode:
        mov     $KERNEL_DS, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        xor     %eax, %eax
        mov     %ax, %fs
        mov     %ax, %gs
        mov     $1, %eax
        lock xadd %eax, torito_next_core
        cmp     $TORITO_MAX_CORES, %eax
        jae     2f
        mov     %eax, %edi              /* core index, first argument */
        lea     1(%rdi), %rsp
        shl     $TRAP_STACK_SHIFT, %rsp
        add     $trap_stacks, %rsp      /* this core's rsp0 (empty: we are going to ring 3) */
        lidt    idt_pointer
        shl     $4, %eax
        add     $TSS_SEL, %eax
        ltr     %ax
        call    supervisor_ap_main      /* never returns */
2:      cli
        hlt
        jmp     2b

/*
 * The real-mode start of the application processors: the boot core (ring 3) copies these
 * bytes to AP_TRAMPOLINE and sends INIT-SIPI-SIPI. Every instruction is emulated here, so
 * it goes straight from real mode to long mode (PE and PG in one CR0 write, as on the PVH
 * path) with the boot core's GDT and page tables.
 */
        .section .ap_trampoline, "a"
        .code16
        .globl ap_trampoline, ap_trampoline_end
ap_trampoline:
        cli
        mov     %cs, %ax
        mov     %ax, %ds
        lgdtl   ap_gdt_pointer - ap_trampoline
        mov     $0x620, %eax            /* CR4 as on the boot core */
        mov     %eax, %cr4
        mov     $pml4, %eax
        mov     %eax, %cr3
        mov     $0xc0000080, %ecx       /* EFER.LME */
        rdmsr
        or      $0x100, %eax
        wrmsr
        mov     $0x80010023, %eax       /* CR0 as on the boot core */
        mov     %eax, %cr0
        ljmpl   $KERNEL_CS, $ap_long_mode
        .balign 4
        .word 0
ap_gdt_pointer:
        .word gdt_end - gdt - 1
        .long gdt
ap_trampoline_end:
        .code64

/*
 * enter_ring3(entry, stack, arg0, arg1): iretq into the runtime with interrupts enabled.
 * rdi = entry, rsi = stack top, rdx = first argument, rcx = second argument.
 */
        .section .text.enter_ring3, "ax"
        .globl enter_ring3
enter_ring3:
        push    $USER_DS                /* ss */
        push    %rsi                    /* rsp */
        push    $0x202                  /* rflags: IF */
        push    $USER_CS                /* cs */
        push    %rdi                    /* rip */
        mov     %rdx, %rdi
        mov     %rcx, %rsi
        xor     %eax, %eax
        xor     %edx, %edx
        xor     %ecx, %ecx
        mov     $USER_DS, %r8d
        mov     %r8w, %ds
        mov     %r8w, %es
        xor     %r8d, %r8d
        iretq

/* ---------------------------------------------------------------------------------- */
/* 256 interrupt stubs, 16 bytes apart at ISR_BASE; each pushes (error, vector). */
        .section .isr, "ax"
        .globl isr_stubs
isr_stubs:
        .set vec, 0
        .rept 256
        .balign 16
        .if (vec - 8) * (vec - 10) * (vec - 11) * (vec - 12) * (vec - 13) * (vec - 14) * (vec - 17) * (vec - 21) * (vec - 29) * (vec - 30)
        push    $0                      /* no error code from the CPU: push a zero */
        .endif
        push    $vec
        jmp     isr_common
        .set vec, vec + 1
        .endr

        .section .text.isr_common, "ax"
isr_common:
        cld
        push    %rax
        push    %rbx
        push    %rcx
        push    %rdx
        push    %rsi
        push    %rdi
        push    %rbp
        push    %r8
        push    %r9
        push    %r10
        push    %r11
        push    %r12
        push    %r13
        push    %r14
        push    %r15
        mov     %rsp, %rdi
        call    trap                    /* trap(struct trap_frame *) */
        pop     %r15
        pop     %r14
        pop     %r13
        pop     %r12
        pop     %r11
        pop     %r10
        pop     %r9
        pop     %r8
        pop     %rbp
        pop     %rdi
        pop     %rsi
        pop     %rdx
        pop     %rcx
        pop     %rbx
        pop     %rax
        add     $16, %rsp               /* vector, error */
        iretq

/* ---------------------------------------------------------------------------------- */
        .section .rodata.tables, "a"
        .balign 16
gdt:
        .quad 0
        .quad 0x00af9a000000ffff        /* 0x08 kernel code, 64-bit */
        .quad 0x00cf92000000ffff        /* 0x10 kernel data */
        .quad 0x00affa000000ffff        /* 0x18 user code, 64-bit, DPL 3 */
        .quad 0x00cff2000000ffff        /* 0x20 user data, DPL 3 */
        /* 0x28 + 16 * core: available 64-bit TSS of each core; its limit reaches the end
           of the shared I/O bitmap (terminating byte included) */
        .set core, 0
        .rept TORITO_MAX_CORES
        .set base, TSS_BASE + core * TSS_STRIDE
        .set limit, IOBITMAP + 8192 - base
        .quad (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89 << 40) | (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56)
        .quad 0
        .set core, core + 1
        .endr
gdt_end:

        .balign 4
        .word 0
gdt_pointer:
        .word gdt_end - gdt - 1
        .quad gdt

/*
 * IDT: interrupt gates (IF cleared on entry) to the stubs. Exceptions and device
 * vectors are DPL 0; the breakpoint is reachable from ring 3 (supervisor calls arrive
 * as #UD, see shared.h).
 * Double fault (8) runs on IST1 so that a broken stack still gets reported.
 */
        .balign 16
idt:
        .set vec, 0
        .rept 256
        .set handler, ISR_BASE + vec * 16
        .set dpl, 0
        .if vec == 3
        .set dpl, 3
        .endif
        .set ist, 0
        .if vec == 8
        .set ist, 1
        .endif
        .quad (handler & 0xffff) | (KERNEL_CS << 16) | (ist << 32) | ((0x8e | (dpl << 5)) << 40) | (((handler >> 16) & 0xffff) << 48)
        .quad 0
        .set vec, vec + 1
        .endr
idt_end:

        .balign 4
        .word 0
idt_pointer:
        .word idt_end - idt - 1
        .quad idt

/* ---------------------------------------------------------------------------------- */
/*
 * Task state segments at TSS_BASE, one TSS_STRIDE-byte header per core: rsp0 (its stack for
 * traps from ring 3), ist1 (double fault), and the offset of the one I/O permission bitmap
 * they share at IOBITMAP, that opens to ring 3 exactly the ports the
 * runtime drives itself: PIT 0x40-0x43 and 0x61, CMOS 0x70-0x71, isa-debug-exit
 * 0xf4-0xf7, COM1 0x3f8-0x3ff, fw_cfg 0x510-0x51b (selector, data, DMA address).
 * A set bit denies the port.
 */
        .section .tss, "aw"
        .globl tss, iobitmap
tss:
        .set core, 0
        .rept TORITO_MAX_CORES
        .long 0
        .quad trap_stacks + (core + 1) * TRAP_STACK_SIZE        /* rsp0 */
        .quad 0, 0                      /* rsp1, rsp2 */
        .quad 0                         /* reserved */
        .quad double_fault_stacks + (core + 1) * DF_STACK_SIZE  /* ist1 */
        .quad 0, 0, 0, 0, 0, 0          /* ist2..ist7 */
        .quad 0
        .word 0
        .word IOBITMAP - (TSS_BASE + core * TSS_STRIDE)         /* I/O map base */
        .balign TSS_STRIDE
        .set core, core + 1
        .endr
iobitmap:
        .fill 8, 1, 0xff                /* ports 0x00-0x3f */
        .byte 0xf0                      /* 0x40-0x43 open */
        .fill 3, 1, 0xff
        .byte 0xfd                      /* 0x61 open */
        .byte 0xff
        .byte 0xfc                      /* 0x70-0x71 open */
        .fill 0x1e - 0x0f, 1, 0xff
        .byte 0x0f                      /* 0xf4-0xf7 open */
        .fill 0x7f - 0x1f, 1, 0xff
        .byte 0x00                      /* 0x3f8-0x3ff open */
        .fill 0xa2 - 0x80, 1, 0xff
        .byte 0x00                      /* fw_cfg 0x510-0x517 open */
        .byte 0xf0                      /* fw_cfg DMA low half 0x518-0x51b open */
        .fill 8192 - 0xa4, 1, 0xff
        .byte 0xff                      /* terminator */

/* ---------------------------------------------------------------------------------- */
/*
 * Page tables: identity map of the low 4 GiB.
 *   0..4 KiB        not present (null pointer dereferences fault)
 *   4 KiB..1 MiB    user (hvm_start_info, command line and memory map live here)
 *   1 MiB..COLD_BASE supervisor only: this code, its stacks and these tables
 *   COLD_BASE..2 MiB user, read-only: the image's cold data (source map tables)
 *   2 MiB..4 GiB    user, 2 MiB pages; 0xfe000000.. (virtio-mmio, IOAPIC, LAPIC) uncached
 */
        .section .pagetables, "aw"
        .balign 4096
pml4:
        .quad pdpt + 0x7
        .fill 511, 8, 0
pdpt:
        .quad pd0 + 0x7
        .quad pd1 + 0x7
        .quad pd2 + 0x7
        .quad pd3 + 0x7
        .fill 508, 8, 0
pd0:
        .quad pt0 + 0x7
        .set n, 1
        .rept 511
        .quad (n << 21) | 0x87
        .set n, n + 1
        .endr
pd1:
        .set n, 512
        .rept 512
        .quad (n << 21) | 0x87
        .set n, n + 1
        .endr
pd2:
        .set n, 1024
        .rept 512
        .quad (n << 21) | 0x87
        .set n, n + 1
        .endr
pd3:
        .set n, 1536
        .rept 512
        .if n >= 0x7f0                  /* 0xfe000000 and up: MMIO, PCD | PWT */
        .quad (n << 21) | 0x9f
        .else
        .quad (n << 21) | 0x87
        .endif
        .set n, n + 1
        .endr
pt0:
        .quad 0
        .set n, 1
        .rept 511
        .if n < 256
        .quad (n << 12) | 0x7
        .elseif n < (COLD_BASE >> 12)
        .quad (n << 12) | 0x3
        .else
        .quad (n << 12) | 0x5            /* cold data: user, read-only */
        .endif
        .set n, n + 1
        .endr

/* ---------------------------------------------------------------------------------- */
        .section .bss.stacks, "aw", @nobits
        .balign 16
boot_stack:
        .skip 8192
boot_stack_top:
        .globl trap_stacks
trap_stacks:                            /* core i's rsp0 is trap_stacks + (i + 1) * size */
        .skip TRAP_STACK_SIZE * TORITO_MAX_CORES
double_fault_stacks:
        .skip DF_STACK_SIZE * TORITO_MAX_CORES

        .section .data.boot, "aw"
        .balign 8
        .globl boot_tsc, boot_start_info
boot_tsc:
        .quad 0
boot_start_info:
        .quad 0
