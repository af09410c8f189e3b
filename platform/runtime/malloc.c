/*
 * The allocator: one heap per core over that core's memory region, with a hard limit
 * (the end of the region). QuickJS, libc and DMA buffers all allocate here.
 *
 * Boundary-tag blocks with segregated free lists:
 *   - a block is an 8-byte header (size | flags) followed by the payload; block sizes are
 *     multiples of 16 and blocks start at 8 mod 16, so payloads are 16-byte aligned;
 *   - a free block keeps list links in its payload and its size in its last 8 bytes, so
 *     the next block can find and merge with it (PREV_FREE tells it to look);
 *   - 63 exact-size bins for blocks up to 1 KiB, then one bin per power of two; a bitmap
 *     of non-empty bins finds the smallest usable bin in two instructions;
 *   - the untouched rest of the region (the "top") grows and shrinks as blocks next to it
 *     are allocated and freed; memory above the highest the top has ever been ("fresh") was
 *     never part of a block, so it is still zero, as guest RAM starts: zeroed allocations
 *     (calloc, aligned_alloc_zeroed for DMA) clear only what lies below it, and the pages of
 *     a large buffer are first touched when they are used, not all at start-up (each first
 *     touch of a page is a VM exit);
 *   - freed blocks of up to QUICK_LIMIT bytes first go to a short LIFO list per size (at
 *     most QUICK_DEPTH each) and stay marked in use, so the next request of that size
 *     takes one back without binning, splitting or merging: QuickJS frees and allocates
 *     objects of a few sizes all the time. An allocation that finds no room empties these
 *     lists into the bins (merging) and tries again.
 * No locks: a heap belongs to one core, and nothing migrates.
 */
#ifdef MALLOC_HOST_TEST
#include "malloc_host_test.h"        /* test/platform/: renames the API, fakes the core */
#else
#include "runtime.h"
#endif

#define IN_USE      1ul
#define PREV_FREE   2ul
#define FLAGS       (IN_USE | PREV_FREE)
#define MIN_BLOCK   32ul
#define SMALL_LIMIT 1024ul
#define NUM_BINS    128
#define QUICK_LIMIT 256ul            /* block sizes kept on quick lists: 32 ... 256 */
#define QUICK_LISTS (QUICK_LIMIT / 16 + 1)
#define QUICK_DEPTH 64               /* blocks per quick list: at most 240 KiB held in all */

struct free_block {
    size_t header;
    struct free_block *next, *prev;
};

struct heap {
    uintptr_t start, top, end;     /* [start, top) holds blocks; [top, end) is free */
    uintptr_t fresh;               /* [fresh, end) was never inside a block: still zero */
    size_t used, peak;             /* bytes in allocated blocks, headers included */
    uint64_t bitmap[NUM_BINS / 64];
    struct free_block *bins[NUM_BINS];
    struct free_block *quick[QUICK_LISTS];     /* by size / 16; linked through `next` */
    unsigned quick_count[QUICK_LISTS];
};

static struct heap heaps[TORITO_MAX_CORES];

static inline struct heap *this_heap(void) { return &heaps[this_core_id()]; }
static inline size_t block_size(const void *b) { return *(const size_t *)b & ~FLAGS; }
static inline size_t *header_of(void *payload) { return (size_t *)((uintptr_t)payload - 8); }

static inline unsigned bin_index(size_t size)
{
    if (size <= SMALL_LIMIT)
        return (unsigned)(size / 16 - 1);                   /* 32 -> 1 ... 1024 -> 63 */
    unsigned log2 = 63 - (unsigned)__builtin_clzl(size);    /* >= 10 */
    unsigned idx = 64 + (log2 - 10);
    return idx < NUM_BINS ? idx : NUM_BINS - 1;
}

static void bin_insert(struct heap *h, struct free_block *b, size_t size)
{
    unsigned i = bin_index(size);
    b->prev = NULL;
    b->next = h->bins[i];
    if (b->next)
        b->next->prev = b;
    h->bins[i] = b;
    h->bitmap[i / 64] |= 1ull << (i % 64);
}

static void bin_remove(struct heap *h, struct free_block *b, size_t size)
{
    unsigned i = bin_index(size);
    if (b->prev)
        b->prev->next = b->next;
    else
        h->bins[i] = b->next;
    if (b->next)
        b->next->prev = b->prev;
    if (!h->bins[i])
        h->bitmap[i / 64] &= ~(1ull << (i % 64));
}

/* Marks [b, b+size) free, records its size at its end and tells the next block. */
static void make_free(struct heap *h, uintptr_t b, size_t size)
{
    *(size_t *)b = size | (*(size_t *)b & PREV_FREE);
    *(size_t *)(b + size - 8) = size;
    if (b + size < h->top)
        *(size_t *)(b + size) |= PREV_FREE;
    bin_insert(h, (struct free_block *)b, size);
}

/* Splits an in-use block so it keeps `size` bytes; the rest becomes a free block. */
static void split(struct heap *h, uintptr_t b, size_t size)
{
    size_t total = block_size((void *)b);
    if (total - size < MIN_BLOCK)
        return;
    *(size_t *)b = size | (*(size_t *)b & FLAGS);
    uintptr_t rest = b + size;
    *(size_t *)rest = 0;
    h->used -= total - size;
    /* merging forward keeps free blocks maximal */
    uintptr_t next = rest + (total - size);
    size_t rest_size = total - size;
    if (next < h->top && !(*(size_t *)next & IN_USE)) {
        size_t ns = block_size((void *)next);
        bin_remove(h, (struct free_block *)next, ns);
        rest_size += ns;
    } else if (next == h->top) {
        h->top = rest;                 /* give it back to the top */
        return;
    }
    make_free(h, rest, rest_size);
}

static size_t request_size(size_t n)
{
    if (n > (1ul << 40))
        return 0;
    size_t size = (n + 8 + 15) & ~15ul;
    return size < MIN_BLOCK ? MIN_BLOCK : size;
}

static void account(struct heap *h, size_t size)
{
    h->used += size;
    if (h->used > h->peak)
        h->peak = h->used;
}

/* Moves the top up to `top` (the two places blocks grow into it), raising the fresh mark. */
static void grow_top(struct heap *h, uintptr_t top)
{
    h->top = top;
    if (top > h->fresh)
        h->fresh = top;
}

static void *heap_alloc(struct heap *h, size_t n)
{
    size_t size = request_size(n);
    if (!size)
        return NULL;
    unsigned i = bin_index(size);
    /* exact small bin, then the first non-empty bin at or above i */
    for (unsigned word = i / 64; word < NUM_BINS / 64; word++) {
        uint64_t bits = h->bitmap[word];
        if (word == i / 64)
            bits &= ~0ull << (i % 64);
        while (bits) {
            unsigned j = word * 64 + (unsigned)__builtin_ctzll(bits);
            bits &= bits - 1;
            for (struct free_block *b = h->bins[j]; b; b = b->next) {
                size_t bs = block_size(b);
                if (bs < size)
                    continue;                               /* only in log2 bins */
                bin_remove(h, b, bs);
                b->header = bs | IN_USE | (b->header & PREV_FREE);
                uintptr_t next = (uintptr_t)b + bs;
                if (next < h->top)
                    *(size_t *)next &= ~PREV_FREE;
                account(h, bs);
                split(h, (uintptr_t)b, size);
                return (void *)((uintptr_t)b + 8);
            }
        }
    }
    /* carve from the top */
    if (h->end - h->top < size)
        return NULL;
    uintptr_t b = h->top;
    grow_top(h, b + size);
    *(size_t *)b = size | IN_USE;       /* a free block never borders the top */
    account(h, size);
    return (void *)(b + 8);
}

static void heap_free(struct heap *h, void *p);

/* Returns every quick-listed block to the bins (merging); true if there were any. */
static int quick_flush(struct heap *h)
{
    int any = 0;
    for (unsigned i = 0; i < QUICK_LISTS; i++) {
        struct free_block *b = h->quick[i];
        h->quick[i] = NULL;
        h->quick_count[i] = 0;
        while (b) {
            struct free_block *next = b->next;
            h->used += block_size(b);          /* heap_free takes it off again */
            heap_free(h, (void *)((uintptr_t)b + 8));
            b = next;
            any = 1;
        }
    }
    return any;
}

static void heap_free(struct heap *h, void *p)
{
    uintptr_t b = (uintptr_t)header_of(p);
    size_t size = block_size((void *)b);
    h->used -= size;
    if (*(size_t *)b & PREV_FREE) {                       /* merge backwards */
        size_t ps = *(size_t *)(b - 8);
        b -= ps;
        bin_remove(h, (struct free_block *)b, ps);
        size += ps;
    }
    uintptr_t next = b + size;
    if (next == h->top) {                                  /* back into the top */
        h->top = b;
        return;
    }
    if (!(*(size_t *)next & IN_USE)) {                     /* merge forwards */
        size_t ns = block_size((void *)next);
        bin_remove(h, (struct free_block *)next, ns);
        size += ns;
        if (next + ns == h->top) {
            h->top = b;
            return;
        }
    }
    *(size_t *)b = *(size_t *)b & PREV_FREE;
    make_free(h, b, size);
}

void heap_init(unsigned core, uintptr_t start, uintptr_t end)
{
    struct heap *h = &heaps[core];
    /* blocks start at 8 mod 16 so that payloads are 16-byte aligned */
    h->start = h->top = h->fresh = ((start + 15) & ~15ul) + 8;
    h->end = end & ~15ul;
    h->end = h->end > h->start ? h->end - 8 : h->start;
}

void heap_usage(size_t *limit, size_t *used, size_t *peak)
{
    struct heap *h = this_heap();
    *limit = h->end - h->start;
    *used = h->used;
    *peak = h->peak;
}

static void out_of_memory(size_t n)
{
    heap_out_of_memory_hook(n);
    errno = ENOMEM;
}

void *malloc(size_t n)
{
    struct heap *h = this_heap();
    if (n <= QUICK_LIMIT - 8) {
        size_t size = request_size(n);
        struct free_block *b = h->quick[size / 16];
        if (b) {
            h->quick[size / 16] = b->next;
            h->quick_count[size / 16]--;
            account(h, size);
            return (void *)((uintptr_t)b + 8);
        }
    }
    void *p = heap_alloc(h, n);
    if (!p && quick_flush(h))
        p = heap_alloc(h, n);
    if (!p)
        out_of_memory(n);
    return p;
}

void free(void *p)
{
    if (!p)
        return;
    struct heap *h = this_heap();
    struct free_block *b = (struct free_block *)header_of(p);
    size_t size = block_size(b);
    if (size <= QUICK_LIMIT && h->quick_count[size / 16] < QUICK_DEPTH) {
        b->next = h->quick[size / 16];         /* the block stays marked in use */
        h->quick[size / 16] = b;
        h->quick_count[size / 16]++;
        h->used -= size;
        return;
    }
    heap_free(h, p);
}


/* Clears the part of a new block [p, p+n) that lies below `fresh_before` (the heap's fresh
   mark before the block was allocated): the rest was never inside a block, so it is zero. */
static void *zero_below(void *p, size_t n, uintptr_t fresh_before)
{
    uintptr_t a = (uintptr_t)p;
    if (p && a < fresh_before)
        memset(p, 0, fresh_before - a < n ? fresh_before - a : n);
    return p;
}

void *calloc(size_t count, size_t n)
{
    size_t total;
    if (__builtin_mul_overflow(count, n, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    uintptr_t fresh = this_heap()->fresh;
    return zero_below(malloc(total), total, fresh);
}

size_t malloc_usable_size(void *p)
{
    return p ? block_size(header_of(p)) - 8 : 0;
}

void *realloc(void *p, size_t n)
{
    if (!p)
        return malloc(n);
    if (!n) {
        free(p);
        return NULL;
    }
    struct heap *h = this_heap();
    uintptr_t b = (uintptr_t)header_of(p);
    size_t have = block_size((void *)b);
    size_t want = request_size(n);
    if (!want)
        return NULL;
    if (want <= have) {
        split(h, b, want);
        return p;
    }
    uintptr_t next = b + have;
    if (next == h->top && h->end - b >= want) {           /* grow into the top */
        grow_top(h, b + want);
        *(size_t *)b = want | (*(size_t *)b & FLAGS);
        account(h, want - have);
        return p;
    }
    if (next < h->top && !(*(size_t *)next & IN_USE)) {   /* grow into a free neighbour */
        size_t ns = block_size((void *)next);
        if (have + ns >= want) {
            bin_remove(h, (struct free_block *)next, ns);
            *(size_t *)b = (have + ns) | (*(size_t *)b & FLAGS);
            if (next + ns < h->top)
                *(size_t *)(next + ns) &= ~PREV_FREE;
            account(h, ns);
            split(h, b, want);
            return p;
        }
    }
    void *q = malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, have - 8);
    free(p);
    return q;
}

/* Aligned allocation (DMA rings and buffers): over-allocate, then free the lead-in. */
void *aligned_alloc(size_t align, size_t n)
{
    if (align <= 16)
        return malloc(n);
    if (align & (align - 1)) {
        errno = EINVAL;
        return NULL;
    }
    struct heap *h = this_heap();
    uint8_t *p = malloc(n + align + MIN_BLOCK);
    if (!p)
        return NULL;
    uintptr_t payload = (uintptr_t)p;
    uintptr_t aligned = (payload + MIN_BLOCK + align - 1) & ~(align - 1);
    if (payload % align == 0)
        aligned = payload;
    if (aligned != payload) {
        /* the lead-in [b, aligned - 8) becomes a free block of its own */
        uintptr_t b = payload - 8;
        size_t total = block_size((void *)b);
        size_t lead = aligned - payload;
        *(size_t *)(aligned - 8) = (total - lead) | IN_USE;
        *(size_t *)b = lead | IN_USE | (*(size_t *)b & PREV_FREE);
        heap_free(h, (void *)payload);   /* also marks the aligned block PREV_FREE */
        p = (uint8_t *)aligned;
    }
    split(h, (uintptr_t)header_of(p), request_size(n));
    return p;
}

/* aligned_alloc of zeroed memory (DMA rings and buffers). */
void *aligned_alloc_zeroed(size_t align, size_t n)
{
    uintptr_t fresh = this_heap()->fresh;
    return zero_below(aligned_alloc(align, n), n, fresh);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (align < sizeof(void *) || (align & (align - 1)))
        return EINVAL;
    void *p = aligned_alloc(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}
