/*
 * Supervisor start: the few things only ring 0 can do, then ring 3 for good.
 * Every instruction here is emulated under this machine's /dev/kvm, so the list is short:
 * the kvmclock MSRs, the FS base the runtime's libc uses, and the jump to the runtime.
 */
#include "supervisor.h"

extern char runtime_tls[];

void supervisor_main(void)
{
    struct core_shared *core = &torito_cores[0];
    core->boot_tsc = boot_tsc;
    core->start_info = boot_start_info;

    /* kvmclock: the host tells the TSC rate and the wall clock, no calibration loop. */
    uint32_t a, b, c, d;
    cpuid(0x40000000, &a, &b, &c, &d);
    if (b == 0x4b4d564b && c == 0x564b4d56 && d == 0x4d) {         /* "KVMKVMKVM\0\0\0" */
        cpuid(0x40000001, &a, &b, &c, &d);
        if (a & (1u << 3)) {                                       /* KVM_FEATURE_CLOCKSOURCE2 */
            wrmsr(MSR_KVM_WALL_CLOCK_NEW, (uint64_t)(uintptr_t)&core->wall);
            wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (uint64_t)(uintptr_t)&core->pvclock | 1);
            core->kvmclock = 1;
        }
    }

    wrmsr(MSR_FS_BASE, (uint64_t)(uintptr_t)runtime_tls);
    enter_ring3((uint64_t)(uintptr_t)runtime_entry, (uint64_t)(uintptr_t)runtime_stack_top, 0, 0);
}

/* An application processor (boot.S: ap_long_mode): its TLS block, then ring 3 on the stack
   the boot core prepared in its memory region. Its clock is the boot core's TSC. */
void supervisor_ap_main(unsigned index)
{
    wrmsr(MSR_FS_BASE, (uint64_t)(uintptr_t)runtime_tls + (uint64_t)index * TLS_STRIDE);
    enter_ring3((uint64_t)(uintptr_t)runtime_ap_entry, torito_cores[index].entry_stack, index, 0);
}
