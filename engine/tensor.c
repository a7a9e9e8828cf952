/* dtypes and shapes. */
#include "kelp/tensor.h"

#include <stdio.h>
#include <string.h>

#include "engine/backend.h"

static const struct {
    const char *name;
    size_t size;
} dtype_table[KELP_DTYPE_COUNT] = {
    [KELP_F32] = {"F32", 4}, [KELP_F16] = {"F16", 2}, [KELP_BF16] = {"BF16", 2},
    [KELP_U8] = {"U8", 1},   [KELP_I32] = {"I32", 4}, [KELP_I64] = {"I64", 8},
};

size_t kelp_dtype_size(kelp_dtype dtype) { return (unsigned)dtype < KELP_DTYPE_COUNT ? dtype_table[dtype].size : 0; }

const char *kelp_dtype_name(kelp_dtype dtype)
{
    return (unsigned)dtype < KELP_DTYPE_COUNT ? dtype_table[dtype].name : "?";
}

kelp_status kelp_dtype_parse(const char *name, kelp_dtype *out)
{
    for (int i = 0; i < KELP_DTYPE_COUNT; i++)
        if (strcmp(name, dtype_table[i].name) == 0) {
            *out = (kelp_dtype)i;
            return KELP_OK;
        }
    return kelp_set_error(KELP_ERR_NOT_FOUND, "unknown dtype '%s'", name);
}

static const struct {
    const char *name;
    kelp_dtype dtype;
} precisions[] = {{"fp32", KELP_F32}, {"bf16", KELP_BF16}, {"fp16", KELP_F16}};

kelp_status kelp_precision_parse(const char *name, kelp_dtype *out)
{
    for (size_t i = 0; i < sizeof precisions / sizeof precisions[0]; i++)
        if (name && strcmp(name, precisions[i].name) == 0) {
            *out = precisions[i].dtype;
            return KELP_OK;
        }
    return kelp_set_error(KELP_ERR_INVALID_ARG, "precision '%s' is not fp32, bf16 or fp16", name ? name : "(none)");
}

const char *kelp_precision_name(kelp_dtype precision)
{
    for (size_t i = 0; i < sizeof precisions / sizeof precisions[0]; i++)
        if (precisions[i].dtype == precision)
            return precisions[i].name;
    return "?";
}

kelp_shape kelp_shape_make(int ndim, const int64_t *dims)
{
    kelp_shape s = {0};
    s.ndim = ndim < 0 ? 0 : ndim > KELP_MAX_DIMS ? KELP_MAX_DIMS : ndim;
    for (int i = 0; i < ndim && i < KELP_MAX_DIMS; i++)
        s.dims[i] = dims[i];
    return s;
}

kelp_shape kelp_shape4(int64_t n, int64_t h, int64_t w, int64_t c)
{
    kelp_shape s = {4, {n, h, w, c, 0}};
    return s;
}

kelp_shape kelp_shape2(int64_t rows, int64_t cols)
{
    kelp_shape s = {2, {rows, cols, 0, 0, 0}};
    return s;
}

int64_t kelp_shape_numel(const kelp_shape *shape)
{
    int64_t n = 1;
    for (int i = 0; i < shape->ndim; i++)
        n *= shape->dims[i];
    return n;
}

kelp_status kelp_shape_bytes(const kelp_shape *shape, kelp_dtype dtype, size_t *out)
{
    char buf[128];
    if (shape->ndim < 0 || shape->ndim > KELP_MAX_DIMS)
        return kelp_set_error(KELP_ERR_SHAPE, "a tensor of rank %d (at most %d)", shape->ndim, KELP_MAX_DIMS);
    uint64_t bytes = kelp_dtype_size(dtype);
    for (int i = 0; i < shape->ndim; i++) {
        int64_t d = shape->dims[i];
        if (d < 0)
            return kelp_set_error(KELP_ERR_SHAPE, "shape %s has a negative dimension",
                                  kelp_shape_str(shape, buf, sizeof buf));
        if (d > 0 && bytes > KELP_TENSOR_MAX_BYTES / (uint64_t)d)
            return kelp_set_error(KELP_ERR_SHAPE, "a %s tensor of shape %s is larger than the %zu-byte limit",
                                  kelp_dtype_name(dtype), kelp_shape_str(shape, buf, sizeof buf),
                                  KELP_TENSOR_MAX_BYTES);
        bytes *= (uint64_t)d;
    }
    *out = (size_t)bytes;
    return KELP_OK;
}

int kelp_shape_equal(const kelp_shape *a, const kelp_shape *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i])
            return 0;
    return 1;
}

const char *kelp_shape_str(const kelp_shape *shape, char *buf, size_t len)
{
    size_t used = 0;
    used += (size_t)snprintf(buf + used, len - used, "[");
    for (int i = 0; i < shape->ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? ",%lld" : "%lld", (long long)shape->dims[i]);
    if (used < len)
        snprintf(buf + used, len - used, "]");
    return buf;
}

size_t kelp_tensor_bytes(const kelp_tensor *t)
{
    return (size_t)kelp_shape_numel(&t->shape) * kelp_dtype_size(t->dtype);
}
