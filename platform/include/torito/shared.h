/*
 * What the ring-0 supervisor and the ring-3 runtime share. The structures live in the
 * runtime's memory (user pages) so that ring 3 reads them without a trap; the
 * supervisor writes them at boot, from interrupt handlers and when a fault is handed over.
 */
#ifndef TORITO_SHARED_H
#define TORITO_SHARED_H

#define TORITO_MAX_CORES 16

/* Address-space layout (identity mapped, 4 GiB). */
#define SUPERVISOR_BASE   0x100000     /* 1 MiB: supervisor, supervisor-only pages */
/* 1.4375 MiB: cold read-only data of the image, readable from ring 3 (the source map
 * tables, read only to map an error's stack). Below 2 MiB, where the supervisor already
 * touches host memory, the image's hot part and the heap start ~0.4 MiB lower: the
 * appliance touches one 2 MiB huge page of guest RAM less (its first touch costs ~0.45 ms
 * here). Guest pages here are 4 KiB (QEMU's BIOS region splits the first 2 MiB), each
 * first read ~18 us: fine for data read once, on an error. */
#define COLD_BASE         0x170000
#define RUNTIME_BASE      0x200000     /* 2 MiB: runtime, QuickJS, libc, app (user pages) */
#define LAPIC_BASE        0xfee00000UL
#define IOAPIC_BASE       0xfec00000UL   /* the first IOAPIC (GSI 0-23) without a MADT */

/* Interrupt vectors. 32..63 are device and timer lines; bit (v - 32) of pending_vectors. */
#define VEC_FIRST_IRQ     32
#define VEC_TIMER         32           /* LAPIC timer, one-shot */
#define VEC_LAST_IRQ      63
#define VEC_WAKE          64           /* inter-core wake-up IPI: bit 32 of pending_vectors */
#define VEC_SPURIOUS      0xff

/* SMP (platform/supervisor/boot.S, platform/runtime/smp.c). Every core has its own TSS
 * (a 128-byte header; all share one I/O bitmap), its own ring-0 trap stack, double-fault
 * stack and ring-3 TLS block (FS base); core i's are found by arithmetic on i. */
#define AP_TRAMPOLINE     0x8000UL     /* real-mode start page of the other cores (SIPI 0x08) */
#define TSS_STRIDE        128
#define TRAP_STACK_SIZE   16384
#define TRAP_STACK_SHIFT  14
#define DF_STACK_SIZE     4096
#define TLS_STRIDE        512          /* sizeof(struct runtime_tls), runtime/main.c */

/* Supervisor calls: rax = number, rdi/rsi = arguments, result in rax.
 * Under this machine's /dev/kvm a software interrupt (`int n`) from ring 3 raises #UD and
 * `syscall` does not reach ring 0, but exceptions do; so a supervisor call is `ud2`
 * followed by the two marker bytes below, and the #UD handler resumes after them. */
#define SVC_MARKER0       0x54         /* 'T' */
#define SVC_MARKER1       0x6f         /* 'o' */
#define SVC_LENGTH        4            /* ud2 (2 bytes) + marker */
#define SVC_IDLE          1            /* halt until an interrupt unless one is pending */
#define SVC_CALL_COUNT    2

/* Guest exit codes used by the platform itself (the CLI maps QEMU's (v << 1) | 1 back). */
#define EXIT_UNCAUGHT     1            /* uncaught JavaScript error or rejection */
#define EXIT_CPU_FAULT    3            /* CPU exception in the runtime or the app */
#define EXIT_OUT_OF_MEMORY 4           /* this core's heap limit was reached */
#define EXIT_SUPERVISOR   5            /* fault in the supervisor itself */
#define EXIT_BAD_BOOT     6            /* unusable boot information (memory map, ...) */

#ifndef __ASSEMBLER__
#include <stdint.h>

/* The register frame pushed by the CPU and isr_common (platform/supervisor/boot.S). */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;
};

/* KVM pvclock structures (Documentation/virt/kvm/x86/msr.rst). */
struct pvclock_time_info {
    uint32_t version;
    uint32_t pad0;
    uint64_t tsc_timestamp;
    uint64_t system_time;
    uint32_t tsc_to_system_mul;
    int8_t   tsc_shift;
    uint8_t  flags;
    uint8_t  pad[2];
} __attribute__((packed, aligned(32)));

struct pvclock_wall_clock {
    uint32_t version;
    uint32_t sec;
    uint32_t nsec;
} __attribute__((packed, aligned(4)));

/* A CPU fault in ring 3, as the supervisor saw it before handing it to the runtime. */
struct fault_info {
    struct trap_frame frame;
    uint64_t cr2;
    uint64_t count;                    /* faults taken; a second one means the handler faulted */
};

/* One per core. The runtime owns the memory; the supervisor fills it in. */
struct core_shared {
    volatile uint64_t pending_vectors; /* set by ring-0 handlers, taken by ring 3 with xchg */
    uint64_t boot_tsc;                 /* TSC at the core's first instruction */
    uint64_t start_info;               /* physical address of hvm_start_info (boot core) */
    uint64_t kvmclock;                 /* 1 when pvclock and wall clock below are live */
    struct pvclock_time_info pvclock;
    struct pvclock_wall_clock wall;
    struct fault_info fault;
    uint64_t fault_stack_top;          /* where the runtime's fault handler runs */
    uint64_t fault_entry;              /* runtime fault handler (ring 3) */
    uint64_t entry_stack;              /* ring-3 stack top of an application processor */
    uint32_t apic_id;                  /* this core's local APIC id */
    volatile uint32_t sleeping;        /* 1 while the core may halt: senders must send VEC_WAKE */
    volatile uint32_t failed;          /* 1 once the core stopped (its heap ran out) */
    volatile uint32_t dry;             /* 1 while its event loop has nothing left but messages */
    /* Interrupt forwarding (a multiqueue NIC: one interrupt line, queues on several cores):
       when line i fires on this core and bit i of wake_lines is set, the supervisor sends
       VEC_WAKE at once to every core of wake_cores that is sleeping. */
    volatile uint32_t wake_lines;
    volatile uint32_t wake_cores;
} __attribute__((aligned(64)));

/* Defined by the runtime, written by the supervisor. */
extern struct core_shared torito_cores[TORITO_MAX_CORES];
/* The next core index an application processor takes (lock xadd in boot.S). */
extern volatile uint32_t torito_next_core;
/* Ring-3 entry of the application processors (runtime/start.S): rdi = core index. */
extern char runtime_ap_entry[];

#endif /* __ASSEMBLER__ */

#endif
