/* BF16 and F16 activations on the CPU backend (backend_cpu.c). The CPU kernels compute in float only, so an op
 * on low-precision storage widens what it reads into float scratch, runs the float kernel and narrows what it
 * wrote. A scope collects an op's buffers:
 *
 *     kelp_lowp_scope s;
 *     kelp_lowp_begin(&s, "add", dt, threads);
 *     const float *fa = kelp_lowp_in(&s, a, n), *fb = kelp_lowp_in(&s, b, n);
 *     float *fy = kelp_lowp_out(&s, y, n, false);
 *     if (kelp_lowp_ok(&s))
 *         kelp_cpu_add(threads, n, fa, fb, fy);
 *     return kelp_lowp_end(&s);
 *
 * For F32 every call hands back the caller's own pointer: the float path copies nothing. A bad dtype or a failed
 * allocation is remembered by the scope (later calls then return NULL), the kernel is skipped, and kelp_lowp_end
 * reports it naming the op. */
#ifndef KELP_ENGINE_BACKEND_CPU_LOWP_H
#define KELP_ENGINE_BACKEND_CPU_LOWP_H

#include <stdbool.h>
#include <stdint.h>

#include "kelp/status.h"
#include "kelp/tensor.h"

/* The most activation buffers one op reads or writes (activation_backward: x, y, dy, dx). */
#define KELP_LOWP_MAX_BUFFERS 4

typedef struct kelp_lowp_buffer {
    void *data;           /* the caller's buffer, in the scope's dtype */
    float *wide;          /* its float copy, rows x cols without gaps */
    int64_t rows, cols, stride;
    bool loaded, written; /* wide holds data's values; wide is narrowed back into data at the end */
} kelp_lowp_buffer;

typedef struct kelp_lowp_scope {
    const char *op;
    kelp_dtype dt;
    int threads;
    kelp_status status;
    int count;
    kelp_lowp_buffer buffers[KELP_LOWP_MAX_BUFFERS];
} kelp_lowp_scope;

/* KELP_OK when dt is storage an activation may have (F32, BF16, F16), else KELP_ERR_UNSUPPORTED naming op. */
kelp_status kelp_lowp_check(const char *op, kelp_dtype dt);

void kelp_lowp_begin(kelp_lowp_scope *s, const char *op, kelp_dtype dt, int threads);
/* n elements the op reads. NULL stays NULL. */
const float *kelp_lowp_in(kelp_lowp_scope *s, const void *data, int64_t n);
/* n elements the op writes; `load` when it also reads them (accumulates into them). */
float *kelp_lowp_out(kelp_lowp_scope *s, void *data, int64_t n, bool load);
/* A matrix of rows x cols whose rows lie `*ld` elements apart (a channel slice, a GEMM operand); *ld becomes the
 * float copy's row stride. */
const float *kelp_lowp_in_rows(kelp_lowp_scope *s, const void *data, int64_t rows, int64_t cols, int *ld);
float *kelp_lowp_out_rows(kelp_lowp_scope *s, void *data, int64_t rows, int64_t cols, int *ld, bool load);
static inline bool kelp_lowp_ok(const kelp_lowp_scope *s) { return s->status == KELP_OK; }
/* Narrows the written buffers (when the kernel ran), frees the scratch and returns the scope's status. */
kelp_status kelp_lowp_end(kelp_lowp_scope *s);

/* y = x or y += x over n elements, from src_dt to dst_dt storage (both checked by the caller). */
void kelp_lowp_convert(int threads, int64_t n, kelp_dtype src_dt, const void *x, kelp_dtype dst_dt, void *y,
                       bool accumulate);

#endif
