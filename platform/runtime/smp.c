/*
 * The other cores (ring 3): found in ACPI's MADT, given equal memory regions, started with
 * INIT-SIPI-SIPI through the local APIC (its page is a user page); and the message rings
 * between cores, with the native bindings kernel/process/cores.ts drives them through.
 *
 * Memory: RAM above the image is split into equal regions, one per core. Each region holds,
 * from the top down: the core's outgoing message rings, and on the other cores their ring-3
 * stack and fault stack; the rest is the core's heap (malloc.c), whose end is a hard limit.
 *
 * Messages: one single-producer/single-consumer ring per ordered pair of cores, in the
 * producer's region. A record carries the message text (inline, or a block of the sender's
 * heap when large) and the ArrayBuffers transferred with it as (address, length): memory
 * is identity mapped and shared, so a transfer hands the block over without copying. A
 * block always goes back to the heap it came from: whoever frees it on another core sends
 * a FREE record to the owner, which frees it (heaps have no locks).
 * A core that may halt sets `sleeping`; a sender that sees it sends the VEC_WAKE IPI.
 */
#include "runtime.h"

#define RING_BYTES     (32 * 1024)           /* a ring, header included */
#define RING_DATA      (RING_BYTES - 128)
#define INLINE_TEXT    (RING_DATA / 4)       /* longer texts travel as a heap block */
#define MIN_REGION     (4u << 20)            /* smallest region worth a core */

struct ring {
    volatile uint64_t head;                  /* bytes ever written (producer) */
    uint8_t pad0[56];
    volatile uint64_t tail;                  /* bytes ever consumed (consumer) */
    uint8_t pad1[56];
    uint8_t data[RING_DATA];
};
_Static_assert(sizeof(struct ring) == RING_BYTES, "ring layout");

enum { REC_PAD = 1, REC_MESSAGE = 2, REC_FREE = 3 };

struct record {                              /* 8-byte aligned in the ring */
    uint32_t size;                           /* whole record, multiple of 8 */
    uint32_t kind;
    uint32_t text_len;
    uint32_t buffer_count;
    uint64_t text_block;                     /* REC_MESSAGE: 0 = text inline; REC_FREE: the block */
    struct { uint64_t addr, len; } buffers[];
    /* then the inline text */
};

static unsigned core_count = 1;
static struct { uintptr_t start, end; } regions[TORITO_MAX_CORES];
static struct ring *rings[TORITO_MAX_CORES][TORITO_MAX_CORES];   /* [from][to] */
static uint32_t madt_apic_ids[TORITO_MAX_CORES];
static unsigned madt_count;
volatile uint32_t torito_next_core = 1;

/* Blocks of other cores freed here while the ring home was full (linked through the
   blocks themselves), per core. */
static void *deferred_frees[TORITO_MAX_CORES];

/* Messages waiting for room in a full ring, in order, per [from][to] (heap copies of the
   records; their buffers are already detached). */
struct parked {
    struct parked *next;
    uint64_t pad;
    struct record record;
};
static struct parked *parked_first[TORITO_MAX_CORES][TORITO_MAX_CORES];
static struct parked *parked_last[TORITO_MAX_CORES][TORITO_MAX_CORES];

extern const uint8_t ap_trampoline[], ap_trampoline_end[];

unsigned smp_core_count(void) { return core_count; }

void smp_region(unsigned core, uintptr_t *start, uintptr_t *end)
{
    *start = regions[core].start;
    *end = regions[core].end;
}

/* --- ACPI: RSDP -> XSDT/RSDT -> MADT processor local APIC entries ----------------------- */

struct acpi_header {
    char signature[4];
    uint32_t length;
    uint8_t revision, checksum;
    char oem[6], oem_table[8];
    uint32_t oem_revision, creator, creator_revision;
} __attribute__((packed));

/* ACPI tables live in low memory or anywhere below 4 GiB; the supervisor's pages and the
   null page are not readable from ring 3. */
static const void *acpi_table(uint64_t addr)
{
    if (addr < 0x1000 || addr >= 0xfe000000ull || (addr >= SUPERVISOR_BASE && addr < RUNTIME_BASE))
        return NULL;
    return (const void *)(uintptr_t)addr;
}

static void madt_read(const struct acpi_header *madt)
{
    const uint8_t *p = (const uint8_t *)madt + 44, *end = (const uint8_t *)madt + madt->length;
    while (p + 2 <= end && p[1] >= 2 && p + p[1] <= end) {
        /* type 0: processor local APIC (ACPI id, APIC id, flags: enabled | online-capable) */
        if (p[0] == 0 && p[1] >= 8 && madt_count < TORITO_MAX_CORES) {
            uint32_t flags;
            memcpy(&flags, p + 4, 4);
            if (flags & 1)
                madt_apic_ids[madt_count++] = p[3];
        }
        /* type 1: IOAPIC (id, reserved, address, first GSI) */
        if (p[0] == 1 && p[1] >= 12) {
            uint32_t addr, gsi_base;
            memcpy(&addr, p + 4, 4);
            memcpy(&gsi_base, p + 8, 4);
            ioapic_add(addr, gsi_base);
        }
        p += p[1];
    }
}

static void acpi_find_cores(uint64_t rsdp_paddr)
{
    const uint8_t *rsdp = acpi_table(rsdp_paddr);
    if (!rsdp || memcmp(rsdp, "RSD PTR ", 8))
        return;
    uint32_t rsdt;
    uint64_t xsdt = 0;
    memcpy(&rsdt, rsdp + 16, 4);
    if (rsdp[15] >= 2)
        memcpy(&xsdt, rsdp + 24, 8);
    const struct acpi_header *root = acpi_table(xsdt ? xsdt : rsdt);
    if (!root)
        return;
    unsigned entry = xsdt ? 8 : 4;
    for (uint32_t at = sizeof *root; at + entry <= root->length; at += entry) {
        uint64_t addr = 0;
        memcpy(&addr, (const uint8_t *)root + at, entry);
        const struct acpi_header *t = acpi_table(addr);
        if (t && !memcmp(t->signature, "APIC", 4)) {
            madt_read(t);
            return;
        }
    }
}

/* --- bring-up ------------------------------------------------------------------------------ */

/* Reads torito.mem_weights=w0,w1,... (positive integers, one per core) from the command
   line into `weights`; all 1 when absent or malformed (with a message). */
static void memory_weights(unsigned n, unsigned *weights)
{
    for (unsigned i = 0; i < n; i++)
        weights[i] = 1;
    const char *opt = strstr(kernel_cmdline(), "torito.mem_weights=");
    const char *args = strstr(kernel_cmdline(), " -- ");
    if (!opt || (args && opt > args))
        return;
    const char *p = opt + strlen("torito.mem_weights=");
    unsigned got[TORITO_MAX_CORES], k = 0;
    while (k < TORITO_MAX_CORES) {
        unsigned v = 0, digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 6) {
            v = v * 10 + (unsigned)(*p++ - '0');
            digits++;
        }
        if (!digits || !v)
            break;
        got[k++] = v;
        if (*p != ',')
            break;
        p++;
    }
    if (k != n || (*p && *p != ' ')) {
        console_printf("torito: ignoring torito.mem_weights: expected %u positive integers separated by commas\n", n);
        return;
    }
    for (unsigned i = 0; i < n; i++)
        weights[i] = got[i];
}

/* Splits [start, end) into page-aligned regions in proportion to `weights`; returns the
   first core whose region is below MIN_REGION, or n. */
static unsigned split_regions(unsigned n, const unsigned *weights, uintptr_t start, uintptr_t end)
{
    unsigned total = 0, small = n;
    for (unsigned i = 0; i < n; i++)
        total += weights[i];
    uintptr_t pages = (end - start) >> 12, at = start;
    for (unsigned i = 0; i < n; i++) {
        regions[i].start = at;
        at += (uintptr_t)((uint64_t)pages * weights[i] / total) << 12;
        regions[i].end = i == n - 1 ? end : at;
        if (small == n && regions[i].end - regions[i].start < MIN_REGION)
            small = i;
    }
    return small;
}

uintptr_t smp_plan(uint64_t rsdp_paddr, uintptr_t start, uintptr_t end)
{
    acpi_find_cores(rsdp_paddr);
    unsigned n = madt_count ? madt_count : 1;
    if ((end - start) / n < MIN_REGION) {
        unsigned fit = (unsigned)((end - start) / MIN_REGION);
        console_printf("torito: %u cores need %u MiB above the image; using %u (raise --mem)\n",
                       n, (unsigned)(n * (MIN_REGION >> 20)), fit ? fit : 1);
        n = fit ? fit : 1;
    }
    core_count = n;
    /* torito.mem_weights=w0,w1,...: region i gets w_i / sum(w) of the memory (default all
       equal). Regions stay page aligned; a region below MIN_REGION is refused. */
    unsigned weights[TORITO_MAX_CORES];
    memory_weights(n, weights);
    unsigned small = split_regions(n, weights, start, end);
    if (small < n) {
        console_printf("torito: torito.mem_weights gives core %u %lu KiB, below the %u MiB a core needs; using equal shares\n",
                       small, (unsigned long)((regions[small].end - regions[small].start) >> 10), MIN_REGION >> 20);
        for (unsigned i = 0; i < n; i++)
            weights[i] = 1;
        split_regions(n, weights, start, end);
    }
    if (n == 1)
        return end;
    for (unsigned i = 0; i < n; i++) {
        for (unsigned j = 0; j < n; j++) {
            if (i == j)
                continue;
            regions[i].end -= RING_BYTES;
            rings[i][j] = (struct ring *)regions[i].end;
            rings[i][j]->head = rings[i][j]->tail = 0;
        }
        if (i > 0) {
            uintptr_t top = regions[i].end & ~15ul;
            torito_cores[i].entry_stack = top - RUNTIME_FAULT_STACK;
            regions[i].end = top - RUNTIME_FAULT_STACK - RUNTIME_STACK;
        }
    }
    return regions[0].end;
}

static inline void lapic_write(unsigned reg, uint32_t v) { *(volatile uint32_t *)(LAPIC_BASE + reg) = v; }

static void send_ipi(uint32_t apic_id, uint32_t command)
{
    lapic_write(0x310, apic_id << 24);       /* ICR high: destination */
    lapic_write(0x300, command);             /* ICR low: sends */
}

void smp_start_cores(void)
{
    if (core_count == 1)
        return;
    memcpy((void *)AP_TRAMPOLINE, ap_trampoline, (size_t)(ap_trampoline_end - ap_trampoline));
    uint32_t self = *(volatile uint32_t *)(LAPIC_BASE + 0x20) >> 24;
    torito_cores[0].apic_id = self;
    unsigned started = 1;
    for (unsigned i = 0; i < madt_count && started < core_count; i++) {
        if (madt_apic_ids[i] == self)
            continue;
        /* No delays: QEMU and KVM latch INIT and SIPI in order (the MP spec's 10 ms and
           200 us are for real hardware). */
        send_ipi(madt_apic_ids[i], 0x4500);                              /* INIT */
        send_ipi(madt_apic_ids[i], 0x4600 | (uint32_t)(AP_TRAMPOLINE >> 12)); /* SIPI */
        send_ipi(madt_apic_ids[i], 0x4600 | (uint32_t)(AP_TRAMPOLINE >> 12));
        started++;
    }
}

/* --- failure ---------------------------------------------------------------------------------- */

int smp_last_core_standing(void)
{
    for (unsigned i = 0; i < core_count; i++)
        if (i != this_core_id() && !torito_cores[i].failed)
            return 0;
    return 1;
}

int smp_fail_core(void)
{
    torito_cores[this_core_id()].failed = 1;
    __asm__ volatile("mfence" ::: "memory");
    int left = 0;
    for (unsigned i = 0; i < core_count; i++) {
        if (torito_cores[i].failed)
            continue;
        left = 1;
        if (torito_cores[i].sleeping)     /* its calls to this core must reject now */
            send_ipi(torito_cores[i].apic_id, 0x4000 | VEC_WAKE);
    }
    return !left;
}

/* Whether the VM has nothing left to do once core 0 failed: the VM's life is core 0's
   (kernel/process/cores.ts); without it, the VM ends when every live core has run dry and
   no message waits for one of them. Called by a core whose loop just ran dry. */
int smp_vm_finished(void)
{
    if (!torito_cores[0].failed)
        return 0;
    __asm__ volatile("mfence" ::: "memory");
    for (unsigned i = 1; i < core_count; i++) {
        if (torito_cores[i].failed)
            continue;
        if (!torito_cores[i].dry)
            return 0;
        for (unsigned from = 0; from < core_count; from++)
            if (from != i && !torito_cores[from].failed && rings[from][i]->tail != rings[from][i]->head)
                return 0;
    }
    return 1;
}

/* --- rings ---------------------------------------------------------------------------------- */

static unsigned owner_of(uintptr_t p)
{
    for (unsigned i = 0; i < core_count; i++)
        if (p >= regions[i].start && p < regions[i].end)
            return i;
    return TORITO_MAX_CORES;
}

/* Space for a record of `size` bytes at the producer's position, or NULL. */
static struct record *ring_reserve(struct ring *r, uint32_t size)
{
    uint64_t head = r->head, tail = r->tail;
    uint32_t at = (uint32_t)(head % RING_DATA), room_to_end = RING_DATA - at;
    uint32_t need = size <= room_to_end ? size : size + room_to_end;
    if (RING_DATA - (head - tail) < need)
        return NULL;
    if (size > room_to_end) {                 /* pad to the end, start over at 0 */
        struct record *pad = (struct record *)&r->data[at];
        pad->size = room_to_end;
        pad->kind = REC_PAD;
        r->head = head + room_to_end;
        at = 0;
    }
    return (struct record *)&r->data[at];
}

static void ring_publish(struct ring *r, uint32_t size, unsigned to)
{
    __asm__ volatile("" ::: "memory");       /* x86: stores are seen in order */
    r->head += size;
    __asm__ volatile("mfence" ::: "memory");  /* head before reading `sleeping` (Dekker) */
    if (torito_cores[to].sleeping)
        send_ipi(torito_cores[to].apic_id, 0x4000 | VEC_WAKE);
}

static int send_free(unsigned owner, void *block)
{
    struct ring *r = rings[this_core_id()][owner];
    struct record *rec = ring_reserve(r, sizeof *rec);
    if (!rec)
        return 0;
    rec->size = sizeof *rec;
    rec->kind = REC_FREE;
    rec->text_block = (uint64_t)(uintptr_t)block;
    ring_publish(r, sizeof *rec, owner);
    return 1;
}

/* Frees a block wherever it came from: here, or home through the owner's ring. */
static void free_anywhere(void *block)
{
    unsigned owner = owner_of((uintptr_t)block);
    if (owner == this_core_id() || owner >= core_count) {
        free(block);
        return;
    }
    if (!send_free(owner, block)) {
        *(void **)block = deferred_frees[this_core_id()];
        deferred_frees[this_core_id()] = block;
    }
}

static void flush_deferred_frees(void)
{
    void **list = &deferred_frees[this_core_id()];
    while (*list) {
        void *block = *list;
        unsigned owner = owner_of((uintptr_t)block);
        void *next = *(void **)block;
        if (!send_free(owner, block))
            return;
        *list = next;
    }
}

/* The free function of every ArrayBuffer that arrived from another core. */
static void transferred_free(JSRuntime *rt, void *opaque, void *ptr)
{
    (void)rt;
    (void)opaque;
    if (!free_is_stolen(ptr))
        free_anywhere(ptr);
}

/* --- native bindings ----------------------------------------------------------------------- */

#define ARGS JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv
#define MAX_TRANSFER 64

/* Moves parked messages into their rings while they fit; returns how many are left. */
static unsigned flush_parked(void)
{
    unsigned self = this_core_id(), left = 0;
    for (unsigned to = 0; to < core_count; to++) {
        struct parked *p;
        while ((p = parked_first[self][to]) != NULL) {
            struct record *rec = ring_reserve(rings[self][to], p->record.size);
            if (!rec) {
                for (; p; p = p->next)
                    left++;
                break;
            }
            memcpy(rec, &p->record, p->record.size);
            ring_publish(rings[self][to], p->record.size, to);
            parked_first[self][to] = p->next;
            free(p);
        }
    }
    return left;
}

/* coreSend(to, text, buffers): true when the message is on the ring, false when it was
   parked behind a full ring (coreFlush sends it later). Either way the buffers are gone. */
static JSValue n_core_send(ARGS)
{
    uint32_t to, count;
    if (JS_ToUint32(ctx, &to, argv[0]))
        return JS_EXCEPTION;
    unsigned self = this_core_id();
    if (to >= core_count || to == self)
        return JS_ThrowRangeError(ctx, "no core %u to send to (this is core %u of %u)", to, self, core_count);
    if (torito_cores[to].failed)
        return JS_ThrowInternalError(ctx, "core %u has stopped (its heap ran out)", to);
    JSValue len_v = JS_GetPropertyStr(ctx, argv[2], "length");
    if (JS_ToUint32(ctx, &count, len_v)) {
        JS_FreeValue(ctx, len_v);
        return JS_EXCEPTION;
    }
    JS_FreeValue(ctx, len_v);
    if (count > MAX_TRANSFER)
        return JS_ThrowRangeError(ctx, "at most %u ArrayBuffers per message", MAX_TRANSFER);
    JSValue bufs[MAX_TRANSFER];
    uint64_t addr[MAX_TRANSFER], blen[MAX_TRANSFER];
    uint32_t got = 0;
    JSValue result = JS_EXCEPTION;
    size_t text_len;
    const char *text = NULL;
    for (; got < count; got++) {
        bufs[got] = JS_GetPropertyUint32(ctx, argv[2], got);
        size_t size;
        uint8_t *p = JS_GetArrayBuffer(ctx, &size, bufs[got]);
        if (!p) {
            got++;
            goto out;
        }
        if (owner_of((uintptr_t)p) >= core_count) {
            JS_ThrowTypeError(ctx, "this ArrayBuffer cannot be transferred (it is not heap memory)");
            got++;
            goto out;
        }
        addr[got] = (uint64_t)(uintptr_t)p;
        blen[got] = size;
    }
    text = JS_ToCStringLen(ctx, &text_len, argv[1]);
    if (!text)
        goto out;
    int inline_text = text_len <= INLINE_TEXT;
    void *block = NULL;
    if (!inline_text) {
        block = malloc(text_len ? text_len : 1);
        if (!block) {
            JS_ThrowRangeError(ctx, "out of memory for a %zu-byte message", text_len);
            goto out;
        }
        memcpy(block, text, text_len);
    }
    uint32_t size = (uint32_t)((sizeof(struct record) + count * 16 + (inline_text ? text_len : 0) + 7) & ~7ul);
    struct ring *r = rings[self][to];
    struct record *rec = parked_first[self][to] ? NULL : ring_reserve(r, size);
    struct parked *park = NULL;
    if (!rec) {
        park = malloc(sizeof *park + size);
        if (!park) {
            free(block);
            JS_ThrowRangeError(ctx, "out of memory for a message to core %u", to);
            goto out;
        }
        park->next = NULL;
        rec = &park->record;
    }
    rec->size = size;
    rec->kind = REC_MESSAGE;
    rec->text_len = (uint32_t)text_len;
    rec->buffer_count = count;
    rec->text_block = (uint64_t)(uintptr_t)block;
    for (uint32_t i = 0; i < count; i++) {
        rec->buffers[i].addr = addr[i];
        rec->buffers[i].len = blen[i];
        /* detach without freeing: the block now belongs to the message */
        this_local()->stealing = (void *)(uintptr_t)addr[i];
        JS_DetachArrayBuffer(ctx, bufs[i]);
        this_local()->stealing = NULL;
    }
    if (inline_text)
        memcpy((uint8_t *)&rec->buffers[count], text, text_len);
    if (park) {
        if (parked_first[self][to])
            parked_last[self][to]->next = park;
        else
            parked_first[self][to] = park;
        parked_last[self][to] = park;
        result = JS_FALSE;
    } else {
        ring_publish(r, size, to);
        result = JS_TRUE;
    }
out:
    if (text)
        JS_FreeCString(ctx, text);
    for (uint32_t i = 0; i < got; i++)
        JS_FreeValue(ctx, bufs[i]);
    return result;
}

/* coreReceive(): [from, text, buffers] for the next message from any core, or null. */
static JSValue n_core_receive(ARGS)
{
    unsigned self = this_core_id();
    if (torito_cores[self].sleeping)
        torito_cores[self].sleeping = 0;
    if (deferred_frees[self])
        flush_deferred_frees();
    for (unsigned k = 1; k < core_count; k++) {
        unsigned from = (self + k) % core_count;
        struct ring *r = rings[from][self];
        while (r->tail != r->head) {
            __asm__ volatile("" ::: "memory");
            struct record *rec = (struct record *)&r->data[r->tail % RING_DATA];
            if (rec->kind == REC_PAD) {
                r->tail += rec->size;
                continue;
            }
            if (rec->kind == REC_FREE) {
                void *block = (void *)(uintptr_t)rec->text_block;
                r->tail += rec->size;
                free(block);
                continue;
            }
            const char *text = rec->text_block ? (const char *)(uintptr_t)rec->text_block
                                               : (const char *)&rec->buffers[rec->buffer_count];
            JSValue msg = JS_NewArray(ctx);
            JS_SetPropertyUint32(ctx, msg, 0, JS_NewInt32(ctx, (int)from));
            JS_SetPropertyUint32(ctx, msg, 1, JS_NewStringLen(ctx, text, rec->text_len));
            JSValue bufs = JS_NewArray(ctx);
            for (uint32_t i = 0; i < rec->buffer_count; i++) {
                void *p = (void *)(uintptr_t)rec->buffers[i].addr;
                JS_SetPropertyUint32(ctx, bufs, i, JS_NewArrayBuffer(ctx, p, rec->buffers[i].len, transferred_free, NULL, 0));
            }
            JS_SetPropertyUint32(ctx, msg, 2, bufs);
            void *text_block = (void *)(uintptr_t)rec->text_block;
            __asm__ volatile("" ::: "memory");
            r->tail += rec->size;
            if (text_block)
                free_anywhere(text_block);
            return msg;
        }
    }
    return JS_NULL;
}

/* coreFlush(): sends parked messages that fit now; returns how many are still parked. */
static JSValue n_core_flush(ARGS)
{
    return JS_NewInt32(ctx, (int)flush_parked());
}

/* coreArmWake(): this core may halt; true if a message raced in (then it must not). */
static JSValue n_core_arm_wake(ARGS)
{
    unsigned self = this_core_id();
    torito_cores[self].sleeping = 1;
    __asm__ volatile("mfence" ::: "memory");
    for (unsigned from = 0; from < core_count; from++) {
        if (from != self && rings[from][self]->tail != rings[from][self]->head) {
            torito_cores[self].sleeping = 0;
            return JS_TRUE;
        }
    }
    return JS_FALSE;
}

/* coreWake(core): sends the wake-up IPI to `core` if it may be halting (its `sleeping` is
   set). The owner of a multiqueue NIC calls it from the NIC's interrupt: virtio-mmio has
   one interrupt per device, routed to the owner, and the other cores' queue pairs wake
   through it (kernel/devices/virtio/net.ts). */
static JSValue n_core_wake(ARGS)
{
    uint32_t core;
    if (JS_ToUint32(ctx, &core, argv[0]))
        return JS_EXCEPTION;
    if (core >= core_count || core == this_core_id() || torito_cores[core].failed)
        return JS_FALSE;
    __asm__ volatile("mfence" ::: "memory");
    if (!torito_cores[core].sleeping)
        return JS_FALSE;
    send_ipi(torito_cores[core].apic_id, 0x4000 | VEC_WAKE);
    return JS_TRUE;
}

/* coresFailed(): bit i set when core i has stopped. */
static JSValue n_cores_failed(ARGS)
{
    uint32_t mask = 0;
    for (unsigned i = 0; i < core_count; i++)
        if (torito_cores[i].failed)
            mask |= 1u << i;
    return JS_NewUint32(ctx, mask);
}

static const JSCFunctionListEntry smp_functions[] = {
    JS_CFUNC_DEF("coresFailed", 0, n_cores_failed),
    JS_CFUNC_DEF("coreSend", 3, n_core_send),
    JS_CFUNC_DEF("coreReceive", 0, n_core_receive),
    JS_CFUNC_DEF("coreArmWake", 0, n_core_arm_wake),
    JS_CFUNC_DEF("coreFlush", 0, n_core_flush),
    JS_CFUNC_DEF("coreWake", 1, n_core_wake),
};

void smp_install(JSContext *ctx, JSValue native)
{
    JS_SetPropertyFunctionList(ctx, native, smp_functions, sizeof smp_functions / sizeof smp_functions[0]);
}
