/*
 * Randomised stress test of the guest allocator (platform/runtime/malloc.c), run on the
 * host: every live block is filled with a pattern derived from its id and checked before
 * it is freed or reallocated, so overlaps, lost bytes and broken coalescing show up as
 * corrupted patterns. The heap must also return to empty when everything is freed, and
 * allocation beyond the region must fail cleanly.
 */
#define MALLOC_HOST_TEST
#include "../../platform/runtime/malloc.c"
#include <stdio.h>
#include <stdlib.h>

static int oom_calls;
void heap_out_of_memory_hook(size_t request) { (void)request; oom_calls++; }

#define SLOTS 4096
static struct { uint8_t *p; size_t n; uint32_t id; } slot[SLOTS];
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_random(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

static void fill(int i) { for (size_t k = 0; k < slot[i].n; k++) slot[i].p[k] = (uint8_t)(slot[i].id * 31 + k); }
static void check(int i, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (slot[i].p[k] != (uint8_t)(slot[i].id * 31 + k)) {
            fprintf(stderr, "corrupted block %u at byte %zu\n", slot[i].id, k);
            exit(1);
        }
}

static size_t random_size(void)
{
    uint64_t r = next_random() % 100;
    if (r < 70) return next_random() % 128;           /* QuickJS: mostly small objects */
    if (r < 98) return next_random() % 4096;
    return next_random() % (256 * 1024);
}

int main(int argc, char **argv)
{
    static uint8_t mem[64u << 20] __attribute__((aligned(4096)));
    size_t region = sizeof mem;
    heap_init(0, (uintptr_t)mem, (uintptr_t)mem + region);
    /* A block grown into the top by realloc, dirtied and freed back into the top: zeroed
       allocations from there must clear it (the fresh mark followed the top up). */
    {
        uint8_t *p = t_malloc(64);
        p = t_realloc(p, 8192);
        memset(p, 0xff, 8192);
        t_free(p);
        uint8_t *q = t_calloc(1, 8192);
        uint8_t *r = t_aligned_alloc_zeroed(4096, 8192);
        for (size_t k = 0; k < 8192; k++)
            if (q[k] || r[k]) { fprintf(stderr, "zeroed block over freed memory has a non-zero byte at %zu\n", k); return 1; }
        t_free(q);
        t_free(r);
    }
    uint32_t ids = 0;
    long steps = argc > 1 ? atol(argv[1]) : 300000;
    for (long step = 0; step < steps; step++) {
        int i = (int)(next_random() % SLOTS);
        uint64_t op = next_random() % 10;
        if (!slot[i].p) {
            size_t n = random_size();
            size_t align = op == 0 || op == 2 ? (size_t)1 << (4 + next_random() % 9) : 0;
            /* op 1 and 2: zeroed (calloc, aligned_alloc_zeroed), which clear only memory that
               was ever inside a block: every byte must read zero, whatever was there before */
            int zeroed = op == 1 || op == 2;
            slot[i].p = op == 1 ? t_calloc(1, n) : op == 2 ? t_aligned_alloc_zeroed(align, n ? n : 1)
                      : align ? t_aligned_alloc(align, n ? n : 1) : t_malloc(n);
            if (!slot[i].p) { fprintf(stderr, "unexpected out of memory\n"); return 1; }
            if (zeroed)
                for (size_t k = 0; k < n; k++)
                    if (slot[i].p[k]) { fprintf(stderr, "zeroed block has a non-zero byte at %zu of %zu\n", k, n); return 1; }
            if (((uintptr_t)slot[i].p & 15) || (align && ((uintptr_t)slot[i].p & (align - 1)))) {
                fprintf(stderr, "misaligned block\n"); return 1;
            }
            if (t_malloc_usable_size(slot[i].p) < n) { fprintf(stderr, "usable size too small\n"); return 1; }
            slot[i].n = n;
            slot[i].id = ids++;
            fill(i);
        } else if (op < 3) {
            size_t n = random_size();
            check(i, slot[i].n);
            uint8_t *q = t_realloc(slot[i].p, n ? n : 1);
            if (!q) { fprintf(stderr, "unexpected realloc failure\n"); return 1; }
            slot[i].p = q;
            check(i, slot[i].n < n ? slot[i].n : n);
            slot[i].n = n;
            fill(i);
        } else {
            check(i, slot[i].n);
            t_free(slot[i].p);
            slot[i].p = NULL;
        }
    }
    for (int i = 0; i < SLOTS; i++)
        if (slot[i].p) { check(i, slot[i].n); t_free(slot[i].p); slot[i].p = NULL; }
    size_t limit, used, peak;
    heap_usage(&limit, &used, &peak);
    if (used != 0) { fprintf(stderr, "heap not empty after freeing everything: %zu\n", used); return 1; }
    /* small freed blocks wait on the quick lists, marked in use, until an allocation needs room */
    if (!quick_flush(&heaps[0])) { fprintf(stderr, "no small block was kept on a quick list\n"); return 1; }
    if (heaps[0].top != heaps[0].start) { fprintf(stderr, "free blocks did not coalesce back into the top\n"); return 1; }
    /* the hard limit: allocation beyond the region fails and reports */
    void *big = t_malloc(region);
    if (big || oom_calls != 1) { fprintf(stderr, "allocation beyond the limit did not fail cleanly\n"); return 1; }
    void *all = t_malloc(limit - 64);
    if (!all) { fprintf(stderr, "could not allocate the whole region\n"); return 1; }
    /* blocks held on the quick lists go back to the heap when a request needs their room */
    t_free(all);
    void *small[QUICK_DEPTH];
    for (int i = 0; i < QUICK_DEPTH; i++)
        small[i] = t_malloc(200);
    for (int i = 0; i < QUICK_DEPTH; i++)
        t_free(small[i]);
    if (heaps[0].quick_count[208 / 16] != QUICK_DEPTH) { fprintf(stderr, "freed small blocks were not quick-listed\n"); return 1; }
    all = t_malloc(limit - 64);
    if (!all || oom_calls != 1) { fprintf(stderr, "quick-listed blocks were not returned for a large request\n"); return 1; }
    printf("malloc stress: ok (%u allocations, peak %zu KiB)\n", ids, peak >> 10);
    return 0;
}
