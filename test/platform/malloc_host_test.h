/* Lets test/platform/malloc_test.c compile platform/runtime/malloc.c on the host:
   the allocator's entry points get a t_ prefix so they do not replace the host's. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#define TORITO_MAX_CORES 1
#define malloc t_malloc
#define free t_free
#define calloc t_calloc
#define realloc t_realloc
#define malloc_usable_size t_malloc_usable_size
#define aligned_alloc t_aligned_alloc
#define aligned_alloc_zeroed t_aligned_alloc_zeroed
#define posix_memalign t_posix_memalign
static inline unsigned this_core_id(void) { return 0; }
void heap_out_of_memory_hook(size_t request);
