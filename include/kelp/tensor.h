/* kelp: dtypes, shapes and tensors.
 *
 * Activations are NHWC on every backend. A tensor is a view: shape, dtype and a pointer into memory owned by a
 * backend (host memory for the CPU backend, device memory for CUDA). */
#ifndef KELP_TENSOR_H
#define KELP_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "kelp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kelp_dtype {
    KELP_F32 = 0,
    KELP_F16,
    KELP_BF16,
    KELP_U8,
    KELP_I32,
    KELP_I64,
} kelp_dtype;

#define KELP_DTYPE_COUNT 6

size_t kelp_dtype_size(kelp_dtype dtype);
/* safetensors spelling: "F32", "F16", "BF16", "U8", "I32", "I64". */
const char *kelp_dtype_name(kelp_dtype dtype);
/* Parses the safetensors spelling; KELP_ERR_NOT_FOUND for anything else. */
kelp_status kelp_dtype_parse(const char *name, kelp_dtype *out);

#define KELP_MAX_DIMS 5

typedef struct kelp_shape {
    int ndim;
    int64_t dims[KELP_MAX_DIMS];
} kelp_shape;

kelp_shape kelp_shape_make(int ndim, const int64_t *dims);
kelp_shape kelp_shape4(int64_t n, int64_t h, int64_t w, int64_t c);
kelp_shape kelp_shape2(int64_t rows, int64_t cols);
int64_t kelp_shape_numel(const kelp_shape *shape);

/* The largest tensor kelp allocates: a bound far above any real model that keeps every size product far from
 * overflow. */
#define KELP_TENSOR_MAX_BYTES ((size_t)1 << 40)

/* numel * dtype size, failing (KELP_ERR_SHAPE) on a negative dim, an overflow or more than KELP_TENSOR_MAX_BYTES. */
kelp_status kelp_shape_bytes(const kelp_shape *shape, kelp_dtype dtype, size_t *out);
int kelp_shape_equal(const kelp_shape *a, const kelp_shape *b);
/* "[8,56,56,64]" into buf; returns buf. */
const char *kelp_shape_str(const kelp_shape *shape, char *buf, size_t len);

struct kelp_backend;

typedef struct kelp_tensor {
    kelp_shape shape;
    kelp_dtype dtype;
    void *data;                    /* backend memory; not necessarily host-addressable */
    struct kelp_backend *backend;  /* owner of `data` */
} kelp_tensor;

size_t kelp_tensor_bytes(const kelp_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
