/*
 * Ring-3 entry points of the runtime, and its one supervisor call.
 */
#include <torito/shared.h>

        .section .text.runtime_entry, "ax"
        .globl runtime_entry
runtime_entry:                          /* from supervisor_main, rsp = runtime_stack_top */
        xor     %ebp, %ebp
        call    runtime_main
        ud2

/* An application processor, from supervisor_ap_main: rdi = core index, rsp = the stack
   the boot core carved from this core's region. x87 and SSE state as after a reset. */
        .globl runtime_ap_entry
runtime_ap_entry:
        xor     %ebp, %ebp
        fninit
        push    $0x1f80
        ldmxcsr (%rsp)
        pop     %rax
        call    runtime_ap_main
        ud2

        .globl runtime_fault_entry
runtime_fault_entry:                    /* the supervisor redirects a ring-3 fault here */
        and     $-16, %rsp              /* rdi = struct fault_info * */
        xor     %ebp, %ebp
        call    runtime_fault
        ud2

/* Halts the core until an interrupt arrives (returns at once if one is pending). */
        .globl svc_idle
svc_idle:
        mov     $SVC_IDLE, %eax
        ud2
        .byte   SVC_MARKER0, SVC_MARKER1
        ret

        .section .bss.runtime_stack, "aw", @nobits
        .balign 16
        .skip 512 * 1024
        .globl runtime_stack_top
runtime_stack_top:
        .skip 64 * 1024
        .globl runtime_fault_stack_top
runtime_fault_stack_top:
