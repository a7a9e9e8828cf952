/* Liveness-based placement of buffers in one arena.
 *
 * Each buffer has a size and a lifetime [first, last] in schedule steps (inclusive). Two buffers whose lifetimes
 * overlap never share bytes; others may. Placement is greedy best-fit by decreasing size, which is what TFLite's
 * and ONNX Runtime's planners do: simple, deterministic, and within a few percent of optimal on CNNs. */
#ifndef KELP_ENGINE_MEMORY_PLAN_H
#define KELP_ENGINE_MEMORY_PLAN_H

#include <stddef.h>

#include "kelp/status.h"

typedef struct kelp_plan_buffer {
    size_t size;
    int first, last;   /* lifetime in steps, inclusive */
    size_t offset;     /* output: byte offset in the arena */
} kelp_plan_buffer;

#define KELP_PLAN_ALIGN 64

/* Assigns offsets; *arena_size receives the bytes the arena needs. */
kelp_status kelp_memory_plan(kelp_plan_buffer *buffers, int count, size_t *arena_size);

#endif
