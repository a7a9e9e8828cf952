#include "engine/memory_plan.h"

#include <stdlib.h>

static size_t align_up(size_t n) { return (n + KELP_PLAN_ALIGN - 1) & ~(size_t)(KELP_PLAN_ALIGN - 1); }

static int overlaps_in_time(const kelp_plan_buffer *a, const kelp_plan_buffer *b)
{
    return a->first <= b->last && b->first <= a->last;
}

/* Sort key carried with its index, so qsort needs no context pointer (C11 has no qsort_r). */
typedef struct {
    size_t size;
    int first, index;
} order_key;

static int by_size_desc(const void *pa, const void *pb)
{
    const order_key *a = pa, *b = pb;
    if (a->size != b->size)
        return a->size < b->size ? 1 : -1;
    if (a->first != b->first)
        return a->first < b->first ? -1 : 1;
    return a->index - b->index;
}

kelp_status kelp_memory_plan(kelp_plan_buffer *buffers, int count, size_t *arena_size)
{
    *arena_size = 0;
    if (count <= 0)
        return KELP_OK;
    order_key *order = malloc((size_t)count * sizeof *order);
    int *by_offset = malloc((size_t)count * sizeof *by_offset); /* placed buffers, sorted by offset */
    if (!order || !by_offset) {
        free(order);
        free(by_offset);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "memory plan: out of memory for %d buffers", count);
    }
    for (int i = 0; i < count; i++)
        order[i] = (order_key){buffers[i].size, buffers[i].first, i};
    qsort(order, (size_t)count, sizeof *order, by_size_desc);

    size_t arena = 0;
    for (int k = 0; k < count; k++) {
        kelp_plan_buffer *b = &buffers[order[k].index];
        size_t need = align_up(b->size);
        /* Walk the placed buffers in offset order, keeping those alive at the same time, and take the smallest gap
         * between them that holds the buffer (best fit), else the end of the last one. */
        size_t best = (size_t)-1, best_gap = (size_t)-1, cursor = 0;
        for (int j = 0; j < k; j++) {
            const kelp_plan_buffer *p = &buffers[by_offset[j]];
            if (!overlaps_in_time(b, p))
                continue;
            if (p->offset > cursor) {
                size_t gap = p->offset - cursor;
                if (gap >= need && gap < best_gap) {
                    best = cursor;
                    best_gap = gap;
                }
            }
            size_t end = p->offset + align_up(p->size);
            if (end > cursor)
                cursor = end;
        }
        b->offset = best != (size_t)-1 ? best : cursor;
        int at = k;
        while (at > 0 && buffers[by_offset[at - 1]].offset > b->offset) {
            by_offset[at] = by_offset[at - 1];
            at--;
        }
        by_offset[at] = order[k].index;
        if (b->offset + need > arena)
            arena = b->offset + need;
    }
    free(order);
    free(by_offset);
    *arena_size = arena;
    return KELP_OK;
}
