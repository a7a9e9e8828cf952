/* ONNX export (engine/onnx_export.h): the graph as protobuf-c messages of ONNX's schema (C generated from
 * onnx.proto by cmake/onnx.cmake), packed straight into an atomic file.
 *
 * Memory: every message, name, attribute and weight of one export is allocated from a pool that is freed whole at
 * the end. The messages point at each other, so freeing them one by one would be error-prone; and a failed
 * allocation makes the exporter "failed": every later helper is then a no-op that returns NULL, and each layer
 * checks once, at its end (done()), instead of after every call.
 *
 * Layout: kelp's activations are NHWC, ONNX's are NCHW. Only the ends of the graph and the layers that look at the
 * layout care: every rank-4 value is NCHW in the exported graph, so convolutions, pooling, concatenation (axis 1)
 * and resizing take ONNX's operators as they are; flatten already emits PyTorch's CHW order in kelp; a linear
 * layer on a rank-4 value (over the channels) becomes a 1x1 convolution. */
#include "engine/onnx_export.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/graph_internal.h"
#include "engine/json_attr.h"
#include "engine/layers/attrs.h"
#include "engine/layers/conv_common.h"
#include "io/atomic_file.h"
#include "onnx.pb-c.h"

#define MAX_NODE_ATTRS 8 /* the most one operator gets: ConvTranspose has 6 */

/* ---- the exporter: pool, sticky failure, growing lists ---- */

typedef struct pool_block {
    struct pool_block *next;
    max_align_t data[];
} pool_block;

typedef struct exporter {
    kelp_graph *g;
    const char *path;
    pool_block *blocks;
    kelp_status status;             /* the first failure; its message is already set */
    const cJSON **json;             /* the model file's node objects, by node index */
    char **value_name;              /* the ONNX name of each kelp value */
    char **param_name;              /* the ONNX name of each parameter (reserved up front: PyTorch's name) */
    bool *param_emitted;            /* its initializer is in the graph */
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    char **used;                    /* every name given out: ONNX values are defined once (SSA) */
    size_t n_used, cap_used;
} exporter;

static bool failed(const exporter *ex) { return ex->status != KELP_OK; }

/* Records the first failure (its message set by the caller) and returns NULL, for the helpers' returns. */
static void *fail(exporter *ex, kelp_status status)
{
    if (ex->status == KELP_OK)
        ex->status = status;
    return NULL;
}

/* Zeroed pool memory, or NULL (and the exporter failed). */
static void *pool_alloc(exporter *ex, size_t bytes)
{
    if (failed(ex))
        return NULL;
    if (bytes > SIZE_MAX - sizeof(pool_block))
        return fail(ex, kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", ex->path));
    pool_block *b = calloc(1, sizeof *b + bytes);
    if (!b)
        return fail(ex, kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", ex->path));
    b->next = ex->blocks;
    ex->blocks = b;
    return b->data;
}

static void *pool_array(exporter *ex, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return fail(ex, kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", ex->path));
    return pool_alloc(ex, count * size);
}

static char *pool_strdup(exporter *ex, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = pool_alloc(ex, n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static char *pool_printf(exporter *ex, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static char *pool_printf(exporter *ex, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? pool_alloc(ex, (size_t)n + 1) : NULL;
    if (s) {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return s;
}

static void pool_free(exporter *ex)
{
    while (ex->blocks) {
        pool_block *next = ex->blocks->next;
        free(ex->blocks);
        ex->blocks = next;
    }
}

/* Makes room for one more element in a pool array of `n` elements of `size` bytes (the old one stays in the pool
 * until the end: at most as much again). */
static void *grow(exporter *ex, void *items, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return items;
    size_t bigger = *cap ? 2 * *cap : 64;
    void *fresh = pool_array(ex, bigger, size);
    if (!fresh)
        return NULL;
    if (n)
        memcpy(fresh, items, n * size);
    *cap = bigger;
    return fresh;
}

/* ---- names ---- */

static bool name_used(const exporter *ex, const char *name)
{
    for (size_t i = 0; i < ex->n_used; i++)
        if (strcmp(ex->used[i], name) == 0)
            return true;
    return false;
}

/* `base` when no earlier name took it, else base_1, base_2, ... */
static char *unique_name(exporter *ex, const char *base)
{
    if (failed(ex) || !base)
        return NULL;
    char *name = name_used(ex, base) ? NULL : pool_strdup(ex, base);
    for (int k = 1; !name && !failed(ex); k++) {
        char *candidate = pool_printf(ex, "%s_%d", base, k);
        if (candidate && !name_used(ex, candidate))
            name = candidate;
    }
    char **used = grow(ex, ex->used, ex->n_used, &ex->cap_used, sizeof *used);
    if (!name || !used)
        return NULL;
    ex->used = used;
    ex->used[ex->n_used++] = name;
    return name;
}

/* A helper value of node `n`: "<node>/<what>", made unique. */
static char *helper_name(exporter *ex, const kelp_node *n, const char *what)
{
    return unique_name(ex, pool_printf(ex, "%s/%s", n->name, what));
}

/* ---- initializers ---- */

/* ONNX's raw_data is little-endian whatever the host. */
static void to_little_endian(void *data, size_t bytes, size_t elem)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    unsigned char *p = data;
    for (size_t i = 0; i + elem <= bytes; i += elem)
        for (size_t a = 0, b = elem - 1; a < b; a++, b--) {
            unsigned char t = p[i + a];
            p[i + a] = p[i + b];
            p[i + b] = t;
        }
#else
    (void)data;
    (void)bytes;
    (void)elem;
#endif
}

/* An initializer whose bytes (host order, in the pool) become its raw_data. */
static Onnx__TensorProto *add_initializer(exporter *ex, const char *name, Onnx__TensorProto__DataType type,
                                          const int64_t *dims, int ndim, void *data, size_t bytes)
{
    Onnx__TensorProto *t = pool_alloc(ex, sizeof *t);
    int64_t *d = pool_array(ex, (size_t)(ndim ? ndim : 1), sizeof *d);
    Onnx__TensorProto **inits = grow(ex, ex->inits, ex->n_inits, &ex->cap_inits, sizeof *inits);
    if (!t || !d || !inits || !name || !data)
        return NULL;
    onnx__tensor_proto__init(t);
    if (ndim) /* a scalar has no dims (and memcpy may not take NULL) */
        memcpy(d, dims, (size_t)ndim * sizeof *d);
    to_little_endian(data, bytes, type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? 8 : 4);
    t->name = (char *)name;
    t->n_dims = (size_t)ndim;
    t->dims = d;
    t->has_data_type = true;
    t->data_type = type;
    t->has_raw_data = true;
    t->raw_data.len = bytes;
    t->raw_data.data = data;
    ex->inits = inits;
    ex->inits[ex->n_inits++] = t;
    return t;
}

/* A float scalar constant of node `n` (Clip's bounds, GELU's factors). */
static char *const_scalar(exporter *ex, const kelp_node *n, const char *what, float value)
{
    char *name = helper_name(ex, n, what);
    float *data = pool_alloc(ex, sizeof *data);
    if (data)
        *data = value;
    return add_initializer(ex, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, NULL, 0, data, sizeof *data) ? name : NULL;
}

/* A 1-D int64 constant of node `n` (shapes, sizes, pads). */
static char *const_ints(exporter *ex, const kelp_node *n, const char *what, const int64_t *values, int count)
{
    char *name = helper_name(ex, n, what);
    int64_t *data = pool_array(ex, (size_t)count, sizeof *data);
    if (data)
        memcpy(data, values, (size_t)count * sizeof *data);
    int64_t dims[1] = {count};
    return add_initializer(ex, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, dims, 1, data, (size_t)count * sizeof *data)
               ? name
               : NULL;
}

/* A float constant of node `n` (Resize's scales, pooling divisors). */
static char *const_floats(exporter *ex, const kelp_node *n, const char *what, const float *values,
                          const int64_t *dims, int ndim)
{
    char *name = helper_name(ex, n, what);
    int64_t count = 1;
    for (int d = 0; d < ndim; d++)
        count *= dims[d];
    float *data = pool_array(ex, (size_t)count, sizeof *data);
    if (!data || !values)
        return NULL;
    size_t bytes = (size_t)count * sizeof *data;
    memcpy(data, values, bytes);
    return add_initializer(ex, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, dims, ndim, data, bytes) ? name : NULL;
}

/* The parameter `suffix` of node `n` as an initializer in PyTorch's layout (kelp_graph_read_param permutes
 * convolution weights back to OIHW), emitted once; its name. NULL, with a message, when the node has no such
 * parameter. num_batches_tracked is never asked for: no ONNX operator reads it. */
static char *param_input(exporter *ex, const kelp_node *n, const char *suffix)
{
    if (failed(ex))
        return NULL;
    for (int j = 0; j < n->n_params; j++) {
        int index = n->param[j];
        const kelp_graph_param *p = &ex->g->params[index];
        if (strcmp(p->spec.suffix, suffix) != 0)
            continue;
        if (ex->param_emitted[index])
            return ex->param_name[index];
        size_t bytes = kelp_tensor_bytes(&p->value);
        void *host = pool_alloc(ex, bytes ? bytes : 1);
        if (!host)
            return NULL;
        kelp_status s = kelp_graph_read_param(ex->g, index, false, host, bytes);
        if (s != KELP_OK)
            return fail(ex, kelp_wrap_error(s, "%s: ", ex->path));
        if (!add_initializer(ex, ex->param_name[index], ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, p->spec.shape.dims,
                             p->spec.shape.ndim, host, bytes))
            return NULL;
        ex->param_emitted[index] = true;
        return ex->param_name[index];
    }
    return fail(ex, kelp_set_error(KELP_ERR_INVALID_ARG, "%s: node '%s' (%s) has no parameter '%s'", ex->path,
                                   n->name, n->type->name, suffix));
}

/* ---- nodes and attributes ---- */

/* An operator node with one output; inputs may be "" for an absent optional input, never NULL. */
static Onnx__NodeProto *add_node(exporter *ex, const char *op_type, const char *name, const char *const *inputs,
                                 int n_inputs, const char *output)
{
    if (failed(ex))
        return NULL;
    for (int i = 0; i < n_inputs; i++)
        if (!inputs[i])
            return fail(ex, kelp_set_error(KELP_ERR_INVALID_ARG, "%s: operator %s of '%s' misses input %d", ex->path,
                                           op_type, name, i));
    Onnx__NodeProto *node = pool_alloc(ex, sizeof *node);
    char **in = pool_array(ex, (size_t)n_inputs, sizeof *in);
    char **out = pool_array(ex, 1, sizeof *out);
    Onnx__AttributeProto **attrs = pool_array(ex, MAX_NODE_ATTRS, sizeof *attrs);
    Onnx__NodeProto **nodes = grow(ex, ex->nodes, ex->n_nodes, &ex->cap_nodes, sizeof *nodes);
    char *node_name = unique_name(ex, pool_printf(ex, "%s/%s", name, op_type));
    if (!node || !in || !out || !attrs || !nodes || !output || !node_name)
        return NULL;
    onnx__node_proto__init(node);
    /* protobuf-c's fields are char * but packing only reads them */
    for (int i = 0; i < n_inputs; i++)
        in[i] = (char *)inputs[i];
    out[0] = (char *)output;
    node->n_input = (size_t)n_inputs;
    node->input = in;
    node->n_output = 1;
    node->output = out;
    node->op_type = (char *)op_type;
    node->name = node_name;
    node->attribute = attrs;
    ex->nodes = nodes;
    ex->nodes[ex->n_nodes++] = node;
    return node;
}

static Onnx__AttributeProto *add_attr(exporter *ex, Onnx__NodeProto *node, const char *name,
                                      Onnx__AttributeProto__AttributeType type)
{
    if (!node || failed(ex))
        return NULL;
    if (node->n_attribute == MAX_NODE_ATTRS)
        return fail(ex, kelp_set_error(KELP_ERR_INVALID_ARG, "%s: operator '%s' has too many attributes", ex->path,
                                       node->name));
    Onnx__AttributeProto *a = pool_alloc(ex, sizeof *a);
    if (!a)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = true;
    a->type = type;
    node->attribute[node->n_attribute++] = a;
    return a;
}

static void attr_int(exporter *ex, Onnx__NodeProto *node, const char *name, int64_t value)
{
    Onnx__AttributeProto *a = add_attr(ex, node, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) {
        a->has_i = true;
        a->i = value;
    }
}

static void attr_float(exporter *ex, Onnx__NodeProto *node, const char *name, float value)
{
    Onnx__AttributeProto *a = add_attr(ex, node, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) {
        a->has_f = true;
        a->f = value;
    }
}

static void attr_string(exporter *ex, Onnx__NodeProto *node, const char *name, const char *value)
{
    Onnx__AttributeProto *a = add_attr(ex, node, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    if (a) {
        a->has_s = true;
        a->s.len = strlen(value);
        a->s.data = (uint8_t *)value;
    }
}

static void attr_ints(exporter *ex, Onnx__NodeProto *node, const char *name, const int64_t *values, int count)
{
    Onnx__AttributeProto *a = add_attr(ex, node, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *copy = pool_array(ex, (size_t)count, sizeof *copy);
    if (a && copy) {
        memcpy(copy, values, (size_t)count * sizeof *copy);
        a->n_ints = (size_t)count;
        a->ints = copy;
    }
}

/* A (height, width) pair attribute from kelp's int[2]. */
static void attr_pair(exporter *ex, Onnx__NodeProto *node, const char *name, const int pair[2])
{
    int64_t v[2] = {pair[0], pair[1]};
    attr_ints(ex, node, name, v, 2);
}

/* ONNX's pads: begins then ends, [top, left, bottom, right]. */
static void attr_pads(exporter *ex, Onnx__NodeProto *node, int top, int left, int bottom, int right)
{
    int64_t v[4] = {top, left, bottom, right};
    attr_ints(ex, node, "pads", v, 4);
}

/* ---- layers: one function per kind, node i of the graph to ONNX operators ---- */

static const char *in_name(const exporter *ex, const kelp_node *n, int i) { return ex->value_name[n->in[i]]; }

static const char *out_name(const exporter *ex, const kelp_node *n) { return ex->value_name[n->out]; }

static const kelp_shape *in_shape(const exporter *ex, const kelp_node *n, int i)
{
    return &ex->g->values[n->in[i]].shape;
}

static kelp_status done(const exporter *ex) { return ex->status; }

/* A layer setting the export cannot reproduce exactly: refused rather than approximated. */
static kelp_status unsupported(exporter *ex, const kelp_node *n, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static kelp_status unsupported(exporter *ex, const kelp_node *n, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fail(ex, kelp_set_error(KELP_ERR_UNSUPPORTED, "%s: node '%s' (%s): %s", ex->path, n->name, n->type->name, why));
    return ex->status;
}

static kelp_status export_conv(exporter *ex, int i)
{
    const kelp_node *n = &ex->g->nodes[i];
    const kelp_conv_attrs *a = n->attrs;
    bool transpose = strcmp(n->type->name, "conv_transpose2d") == 0;
    const char *in[3] = {in_name(ex, n, 0), param_input(ex, n, "weight"), a->bias ? param_input(ex, n, "bias") : ""};
    /* PyTorch's ConvTranspose2d weight (Cin, Cout/g, kh, kw) is ONNX's ConvTranspose weight as it is */
    Onnx__NodeProto *op = add_node(ex, transpose ? "ConvTranspose" : "Conv", n->name, in, a->bias ? 3 : 2,
                                   out_name(ex, n));
    attr_pair(ex, op, "kernel_shape", a->kernel);
    attr_pair(ex, op, "strides", a->stride);
    attr_pair(ex, op, "dilations", a->dilation);
    attr_pads(ex, op, a->padding[0], a->padding[1], a->padding[0], a->padding[1]);
    attr_int(ex, op, "group", a->groups);
    if (transpose)
        attr_pair(ex, op, "output_padding", a->output_padding);
    return done(ex);
}

/* Inference batch norm with the running statistics. ONNX's momentum weighs the old running value (PyTorch's
 * weighs the new batch statistic), hence 1 - m; it only matters to a runtime that trains the model further. */
static kelp_status export_batch_norm(exporter *ex, int i)
{
    const kelp_node *n = &ex->g->nodes[i];
    const kelp_bn_attrs *a = n->attrs;
    const char *in[5] = {in_name(ex, n, 0), param_input(ex, n, "weight"), param_input(ex, n, "bias"),
                         param_input(ex, n, "running_mean"), param_input(ex, n, "running_var")};
    Onnx__NodeProto *op = add_node(ex, "BatchNormalization", n->name, in, 5, out_name(ex, n));
    attr_float(ex, op, "epsilon", a->eps);
    attr_float(ex, op, "momentum", 1.0f - a->momentum);
    return done(ex);
}

/* Opset 17 has no SiLU and no GELU operator: they are spelled with Sigmoid, Erf and arithmetic, in the order of
 * kelp's kernels (kernels/ops/activation.h): x * sigmoid(x) and 0.5 * x * (1 + erf(x / sqrt(2))). */
static kelp_status export_activation(exporter *ex, int i)
{
    const kelp_node *n = &ex->g->nodes[i];
    const char *type = n->type->name, *x = in_name(ex, n, 0), *y = out_name(ex, n);
    if (strcmp(type, "relu") == 0) {
        add_node(ex, "Relu", n->name, &x, 1, y);
    } else if (strcmp(type, "sigmoid") == 0) {
        add_node(ex, "Sigmoid", n->name, &x, 1, y);
    } else if (strcmp(type, "leaky_relu") == 0) {
        const kelp_act_attrs *a = n->attrs;
        attr_float(ex, add_node(ex, "LeakyRelu", n->name, &x, 1, y), "alpha", a->alpha);
    } else if (strcmp(type, "relu6") == 0) {
        const char *in[3] = {x, const_scalar(ex, n, "min", 0.0f), const_scalar(ex, n, "max", 6.0f)};
        add_node(ex, "Clip", n->name, in, 3, y);
    } else if (strcmp(type, "silu") == 0) {
        const char *s = helper_name(ex, n, "sigmoid");
        add_node(ex, "Sigmoid", n->name, &x, 1, s);
        const char *in[2] = {x, s};
        add_node(ex, "Mul", n->name, in, 2, y);
    } else if (strcmp(type, "gelu") == 0) {
        const char *scaled = helper_name(ex, n, "scaled"), *erf = helper_name(ex, n, "erf");
        const char *plus1 = helper_name(ex, n, "plus1"), *xp = helper_name(ex, n, "x_plus1");
        const char *in1[2] = {x, const_scalar(ex, n, "rsqrt2", 0.70710678118654752f)};
        add_node(ex, "Mul", n->name, in1, 2, scaled);
        add_node(ex, "Erf", n->name, &scaled, 1, erf);
        const char *in2[2] = {erf, const_scalar(ex, n, "one", 1.0f)};
        add_node(ex, "Add", n->name, in2, 2, plus1);
        const char *in3[2] = {x, plus1};
        add_node(ex, "Mul", n->name, in3, 2, xp);
        const char *in4[2] = {xp, const_scalar(ex, n, "half", 0.5f)};
        add_node(ex, "Mul", n->name, in4, 2, y);
    } else {
        return unsupported(ex, n, "no ONNX mapping for this activation");
    }
    return done(ex);
}

/* Beyond the symmetric padding, the rows (or columns) that PyTorch's ceil_mode reads past the input's end: the
 * last window, which PyTorch keeps only when it starts inside the input or its left padding, may overhang. */
static int ceil_overhang(int64_t in, int64_t out, int kernel, int stride, int pad)
{
    int64_t extra = (out - 1) * stride + kernel - (in + 2 * pad);
    return extra > 0 ? (int)extra : 0;
}

/* PyTorch's divisors of a ceil-mode average pooling that counts its padding but not the overhang, as factors that
 * turn an average over the whole k x k window into it: k*k / ((min(h0 + kh, H + ph) - h0) * (same for w)). */
static float *divisor_factors(exporter *ex, const kelp_pool_attrs *f, const kelp_shape *x, const kelp_shape *y)
{
    int64_t oh = y->dims[1], ow = y->dims[2];
    float *factor = pool_array(ex, (size_t)(oh * ow), sizeof *factor);
    for (int64_t i = 0; i < oh && factor; i++)
        for (int64_t j = 0; j < ow; j++) {
            int64_t h0 = i * f->stride[0] - f->pad[0], w0 = j * f->stride[1] - f->pad[1];
            int64_t h1 = h0 + f->kernel[0] < x->dims[1] + f->pad[0] ? h0 + f->kernel[0] : x->dims[1] + f->pad[0];
            int64_t w1 = w0 + f->kernel[1] < x->dims[2] + f->pad[1] ? w0 + f->kernel[1] : x->dims[2] + f->pad[1];
            factor[i * ow + j] = (float)((double)f->kernel[0] * f->kernel[1] / (double)((h1 - h0) * (w1 - w0)));
        }
    return factor;
}

/* max_pool2d and avg_pool2d without ONNX's ceil_mode, whose output size rule (ONNX 1.17) differs from PyTorch's
 * in the dropped last window. The overhang of a ceil-mode window becomes explicit bottom/right padding instead:
 * MaxPool ignores padding, and AveragePool with count_include_pad = 0 does not count it. Where PyTorch counts the
 * symmetric padding (count_include_pad) but not the overhang, AveragePool counts all its padding (divides by
 * k*k) and a constant map of factors restores PyTorch's divisors. (Spelling that case as Pad + AveragePool with
 * count_include_pad = 0 would be exact too, but onnxruntime 1.20's Pad fusion folds the Pad into the pooling's
 * pads and so stops counting it.) */
static kelp_status export_pool(exporter *ex, int i)
{
    const kelp_node *n = &ex->g->nodes[i];
    const kelp_pool_attrs f = *(const kelp_pool_attrs *)n->attrs;
    const kelp_shape *x = in_shape(ex, n, 0), *y = &ex->g->values[n->out].shape;
    int eh = ceil_overhang(x->dims[1], y->dims[1], f.kernel[0], f.stride[0], f.pad[0]);
    int ew = ceil_overhang(x->dims[2], y->dims[2], f.kernel[1], f.stride[1], f.pad[1]);
    bool max = strcmp(n->type->name, "max_pool2d") == 0;
    bool rescale = !max && f.count_include_pad && (eh || ew);
    const char *in = in_name(ex, n, 0), *pooled = rescale ? helper_name(ex, n, "window_mean") : out_name(ex, n);
    Onnx__NodeProto *op = add_node(ex, max ? "MaxPool" : "AveragePool", n->name, &in, 1, pooled);
    attr_pair(ex, op, "kernel_shape", f.kernel);
    attr_pair(ex, op, "strides", f.stride);
    attr_pads(ex, op, f.pad[0], f.pad[1], f.pad[0] + eh, f.pad[1] + ew);
    if (!max)
        attr_int(ex, op, "count_include_pad", f.count_include_pad);
    if (rescale) {
        int64_t dims[4] = {1, 1, y->dims[1], y->dims[2]};
        const char *mul_in[2] = {pooled, const_floats(ex, n, "divisor_factors", divisor_factors(ex, &f, x, y), dims,
                                                      4)};
        add_node(ex, "Mul", n->name, mul_in, 2, out_name(ex, n));
    }
    return done(ex);
}

/* kelp's global_avg_pool is AdaptiveAvgPool2d(1) then flatten: (N,C,H,W) -> (N,C). */
static kelp_status export_global_avg_pool(exporter *ex, int i)
{
    const kelp_node *n = &ex->g->nodes[i];
    const char *x = in_name(ex, n, 0), *pooled = helper_name(ex, n, "pooled");
    add_node(ex, "GlobalAveragePool", n->name, &x, 1, pooled);
    attr_int(ex, add_node(ex, "Flatten", n->name, &pooled, 1, out_name(ex, n)), "axis", 1);
    return done(ex);
}

/* kelp's flatten emits PyTorch's order, torch.flatten(x, 1) of the NCHW tensor: ONNX's Flatten of the NCHW value. */
static kelp_status export_flatten(exporter *ex, int i)
{
    const kelp_node *n = &ex->g->nodes[i];
    const char *x = in_name(ex, n, 0);
    attr_int(ex, add_node(ex, "Flatten", n->name, &x, 1, out_name(ex, n)), "axis", 1);
    return done(ex);
}

/* nn.Linear: Gemm with the (out, in) weight transposed. On a rank-4 value kelp's linear acts on the channels (the
 * last NHWC dimension), which in NCHW is a 1x1 convolution with the weight reshaped to (out, in, 1, 1); the
 * initializer keeps PyTorch's (out, in) shape and a Reshape adapts it. */
static kelp_status export_linear(exporter *ex, int i)
{
    const kelp_node *n = &ex->g->nodes[i];
    bool bias = n->n_params > 1;
    const char *w = param_input(ex, n, "weight");
    const char *in[3] = {in_name(ex, n, 0), w, bias ? param_input(ex, n, "bias") : ""};
    if (in_shape(ex, n, 0)->ndim == 2) {
        attr_int(ex, add_node(ex, "Gemm", n->name, in, bias ? 3 : 2, out_name(ex, n)), "transB", 1);
        return done(ex);
    }
    const kelp_shape *ws = &ex->g->params[n->param[0]].spec.shape;
    int64_t shape4[4] = {ws->dims[0], ws->dims[1], 1, 1};
    const char *reshape_in[2] = {w, const_ints(ex, n, "weight_shape", shape4, 4)};
    const char *w4 = helper_name(ex, n, "weight_1x1");
    add_node(ex, "Reshape", n->name, reshape_in, 2, w4);
    in[1] = w4;
    attr_ints(ex, add_node(ex, "Conv", n->name, in, bias ? 3 : 2, out_name(ex, n)), "kernel_shape",
              (const int64_t[]){1, 1}, 2);
    return done(ex);
}

static kelp_status export_add(exporter *ex, int i)
{
    const kelp_node *n = &ex->g->nodes[i];
    const char *in[KELP_MAX_INPUTS];
    for (int k = 0; k < n->n_in; k++)
        in[k] = in_name(ex, n, k);
    add_node(ex, n->n_in == 2 ? "Add" : "Sum", n->name, in, n->n_in, out_name(ex, n));
    return done(ex);
}

/* kelp concatenates along the last NHWC dimension, the channels: axis 1 of NCHW (and of a rank-2 (N, F) value). */
static kelp_status export_concat(exporter *ex, int i)
{
    const kelp_node *n = &ex->g->nodes[i];
    const char *in[KELP_MAX_INPUTS];
    for (int k = 0; k < n->n_in; k++)
        in[k] = in_name(ex, n, k);
    attr_int(ex, add_node(ex, "Concat", n->name, in, n->n_in, out_name(ex, n)), "axis", 1);
    return done(ex);
}

/* Dropout is the identity in inference: consumers read its input directly. Only a dropout that is a graph output
 * needs an operator, to give that output its name. */
static kelp_status export_dropout(exporter *ex, int i)
{
    const kelp_node *n = &ex->g->nodes[i];
    bool is_output = false;
    for (int k = 0; k < ex->g->n_outputs; k++)
        is_output |= ex->g->output_values[k] == n->out;
    const char *x = in_name(ex, n, 0);
    if (is_output)
        add_node(ex, "Identity", n->name, &x, 1, out_name(ex, n));
    else
        ex->value_name[n->out] = (char *)x;
    return done(ex);
}

/* upsample's scale_factor for one axis (0: height), from a number or an [h, w] pair. */
static double scale_factor(const cJSON *scale, int axis)
{
    return cJSON_IsArray(scale) ? cJSON_GetArrayItem(scale, axis)->valuedouble : scale->valuedouble;
}

/* The scale ONNX must use for one axis to land on kelp's pixels: kelp (as PyTorch) copies when the size is
 * unchanged and, in nearest mode, takes dst / 2 when it doubles, whatever the scale factor says (ops/upsample.h).
 * Otherwise the scale factor itself, which PyTorch also uses for the coordinates (1 / scale_factor). */
static float axis_scale(bool nearest, double factor, int64_t in, int64_t out)
{
    if (out == in)
        return 1.0f;
    if (nearest && out == 2 * in)
        return 2.0f;
    return (float)factor;
}

/* Resize's inputs (X, roi, scales[, sizes]) for a scale_factor: scales (1, 1, sh, sw). ONNX computes the output
 * size as floor(in * scale) in float arithmetic, kelp in double: a scale whose two results differ is refused. */
static const char *resize_scales(exporter *ex, const kelp_node *n, int i, bool nearest, const char **sizes)
{
    const cJSON *scale = cJSON_GetObjectItemCaseSensitive(ex->json[i], "scale_factor");
    const kelp_shape *x = in_shape(ex, n, 0), *y = &ex->g->values[n->out].shape;
    float scales[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    for (int axis = 0; axis < 2; axis++) {
        int64_t in = x->dims[1 + axis], out = y->dims[1 + axis];
        scales[2 + axis] = axis_scale(nearest, scale_factor(scale, axis), in, out);
        int64_t onnx_out = (int64_t)floorf((float)in * scales[2 + axis]);
        if (onnx_out != out) {
            unsupported(ex, n, "scale_factor %g makes %lld pixels out of %lld, but %lld in ONNX's float arithmetic; "
                        "give 'size' instead", scale_factor(scale, axis), (long long)out, (long long)in,
                        (long long)onnx_out);
            return NULL;
        }
    }
    *sizes = NULL;
    return const_floats(ex, n, "scales", scales, (const int64_t[]){4}, 1);
}

/* Resize's sizes for a fixed output size: (N, C) of the input at run time (the batch is symbolic; opset 17's
 * Resize has no `axes`) followed by the constant (OH, OW). */
static const char *resize_sizes(exporter *ex, const kelp_node *n)
{
    const kelp_shape *y = &ex->g->values[n->out].shape;
    const char *x = in_name(ex, n, 0), *nc = helper_name(ex, n, "batch_channels");
    Onnx__NodeProto *shape = add_node(ex, "Shape", n->name, &x, 1, nc);
    attr_int(ex, shape, "start", 0);
    attr_int(ex, shape, "end", 2);
    int64_t hw[2] = {y->dims[1], y->dims[2]};
    const char *cat_in[2] = {nc, const_ints(ex, n, "size", hw, 2)};
    const char *sizes = helper_name(ex, n, "sizes");
    attr_int(ex, add_node(ex, "Concat", n->name, cat_in, 2, sizes), "axis", 0);
    return sizes;
}

/* PyTorch's legacy nearest is floor(dst * in / out): Resize's "asymmetric" coordinates with nearest_mode "floor".
 * Bilinear with align_corners = False is "half_pixel" ((dst + 0.5) / scale - 0.5, clamped at the edges). */
static kelp_status export_upsample(exporter *ex, int i)
{
    const kelp_node *n = &ex->g->nodes[i];
    const char *mode = "nearest";
    kelp_status s = kelp_json_string(ex->json[i], "mode", &mode);
    if (s != KELP_OK) {
        fail(ex, kelp_wrap_error(s, "%s: node '%s': ", ex->path, n->name));
        return s;
    }
    bool nearest = strcmp(mode, "nearest") == 0;
    const char *sizes = NULL, *scales = NULL;
    if (cJSON_GetObjectItemCaseSensitive(ex->json[i], "scale_factor"))
        scales = resize_scales(ex, n, i, nearest, &sizes);
    else
        sizes = resize_sizes(ex, n);
    if (failed(ex))
        return ex->status;
    const char *in[4] = {in_name(ex, n, 0), "", scales ? scales : "", sizes};
    Onnx__NodeProto *op = add_node(ex, "Resize", n->name, in, sizes ? 4 : 3, out_name(ex, n));
    attr_string(ex, op, "mode", nearest ? "nearest" : "linear");
    attr_string(ex, op, "coordinate_transformation_mode", nearest ? "asymmetric" : "half_pixel");
    if (nearest)
        attr_string(ex, op, "nearest_mode", "floor");
    return done(ex);
}

typedef struct layer_export {
    const char *type;
    kelp_status (*fn)(exporter *ex, int node);
} layer_export;

static const layer_export layer_exports[] = {
    {"conv2d", export_conv},
    {"conv_transpose2d", export_conv},
    {"linear", export_linear},
    {"batch_norm", export_batch_norm},
    {"relu", export_activation},
    {"relu6", export_activation},
    {"leaky_relu", export_activation},
    {"silu", export_activation},
    {"sigmoid", export_activation},
    {"gelu", export_activation},
    {"max_pool2d", export_pool},
    {"avg_pool2d", export_pool},
    {"global_avg_pool", export_global_avg_pool},
    {"add", export_add},
    {"concat", export_concat},
    {"upsample", export_upsample},
    {"dropout", export_dropout},
    {"flatten", export_flatten},
};

static kelp_status export_node(exporter *ex, int i)
{
    const kelp_node *n = &ex->g->nodes[i];
    for (size_t k = 0; k < sizeof layer_exports / sizeof layer_exports[0]; k++)
        if (strcmp(layer_exports[k].type, n->type->name) == 0)
            return layer_exports[k].fn(ex, i);
    return unsupported(ex, n, "no ONNX mapping for this layer type");
}

/* ---- graph inputs, outputs and names ---- */

/* ONNX's shape of a kelp value: NHWC -> (batch, C, H, W), (N, F) -> (batch, F). */
static Onnx__ValueInfoProto *value_info(exporter *ex, int v)
{
    const kelp_shape *s = &ex->g->values[v].shape;
    Onnx__ValueInfoProto *info = pool_alloc(ex, sizeof *info);
    Onnx__TypeProto *type = pool_alloc(ex, sizeof *type);
    Onnx__TypeProto__Tensor *tensor = pool_alloc(ex, sizeof *tensor);
    Onnx__TensorShapeProto *shape = pool_alloc(ex, sizeof *shape);
    Onnx__TensorShapeProto__Dimension *dims = pool_array(ex, (size_t)s->ndim, sizeof *dims);
    Onnx__TensorShapeProto__Dimension **dim_ptrs = pool_array(ex, (size_t)s->ndim, sizeof *dim_ptrs);
    if (!info || !type || !tensor || !shape || !dims || !dim_ptrs)
        return NULL;
    for (int d = 0; d < s->ndim; d++) {
        onnx__tensor_shape_proto__dimension__init(&dims[d]);
        if (d == 0) {
            dims[d].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dims[d].dim_param = "batch";
        } else {
            dims[d].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            /* rank 4: kelp's (N, H, W, C) dim 3, 1, 2 for ONNX's C, H, W */
            dims[d].dim_value = s->ndim == 4 ? s->dims[d == 1 ? 3 : d - 1] : s->dims[d];
        }
        dim_ptrs[d] = &dims[d];
    }
    onnx__tensor_shape_proto__init(shape);
    shape->n_dim = (size_t)s->ndim;
    shape->dim = dim_ptrs;
    onnx__type_proto__tensor__init(tensor);
    tensor->has_elem_type = true;
    tensor->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tensor->shape = shape;
    onnx__type_proto__init(type);
    type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type->tensor_type = tensor;
    onnx__value_info_proto__init(info);
    info->name = ex->value_name[v];
    info->type = type;
    return info;
}

/* What ONNX cannot take as it is, refused before any work: ranks other than 2 and 4 (NHWC images, (N, F)
 * features), outputs that are graph inputs or listed twice. */
static kelp_status check_graph(const exporter *ex)
{
    const kelp_graph *g = ex->g;
    for (int v = 0; v < g->n_values; v++) {
        const kelp_value *val = &g->values[v];
        bool loss = val->producer >= 0 && g->nodes[val->producer].type->is_loss;
        if (!loss && v != g->label_value && val->shape.ndim != 2 && val->shape.ndim != 4)
            return kelp_set_error(KELP_ERR_UNSUPPORTED,
                                  "%s: value '%s' has rank %d; the ONNX export handles rank 2 (N, F) and rank 4 "
                                  "(N, H, W, C) values",
                                  ex->path, val->name, val->shape.ndim);
    }
    for (int k = 0; k < g->n_outputs; k++) {
        int v = g->output_values[k];
        if (g->values[v].producer < 0)
            return kelp_set_error(KELP_ERR_UNSUPPORTED, "%s: output '%s' is a graph input; the ONNX export needs "
                                  "outputs computed by nodes", ex->path, g->values[v].name);
        for (int j = 0; j < k; j++)
            if (g->output_values[j] == v)
                return kelp_set_error(KELP_ERR_UNSUPPORTED, "%s: output '%s' is listed twice", ex->path,
                                      g->values[v].name);
    }
    return KELP_OK;
}

/* Input 0 is "input" and output 0 "logits", taken first. Parameters come next so that they keep their PyTorch
 * names; the other values keep kelp's names, made unique where one collides (a node called "input"). */
static kelp_status assign_names(exporter *ex)
{
    const kelp_graph *g = ex->g;
    ex->value_name = pool_array(ex, (size_t)g->n_values, sizeof *ex->value_name);
    ex->param_name = pool_array(ex, (size_t)g->n_params + 1, sizeof *ex->param_name);
    ex->param_emitted = pool_array(ex, (size_t)g->n_params + 1, sizeof *ex->param_emitted);
    ex->json = pool_array(ex, (size_t)g->n_nodes, sizeof *ex->json);
    if (failed(ex))
        return ex->status;
    ex->value_name[g->input_values[0]] = unique_name(ex, "input");
    ex->value_name[g->output_values[0]] = unique_name(ex, "logits");
    for (int p = 0; p < g->n_params; p++)
        ex->param_name[p] = unique_name(ex, g->params[p].name);
    for (int v = 0; v < g->n_values; v++)
        if (!ex->value_name[v])
            ex->value_name[v] = unique_name(ex, g->values[v].name);
    const cJSON *node = cJSON_GetObjectItemCaseSensitive(g->model, "nodes")->child;
    for (int i = 0; i < g->n_nodes && node; i++, node = node->next)
        ex->json[i] = node;
    return ex->status;
}

/* ---- the model ---- */

/* A metadata entry from a top-level field of the model file (a string as it is, anything else as JSON), so that a
 * runtime finds the class names, the task and the input normalization next to the network. */
static Onnx__StringStringEntryProto *model_metadata(exporter *ex, const char *key, const cJSON *item)
{
    if (!item || failed(ex))
        return NULL;
    Onnx__StringStringEntryProto *e = pool_alloc(ex, sizeof *e);
    char *json = cJSON_IsString(item) ? NULL : cJSON_PrintUnformatted(item);
    char *value = cJSON_IsString(item) ? pool_strdup(ex, item->valuestring) : json ? pool_strdup(ex, json) : NULL;
    if (!cJSON_IsString(item) && !json)
        fail(ex, kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", ex->path));
    free(json);
    if (!e || !value)
        return NULL;
    onnx__string_string_entry_proto__init(e);
    e->key = (char *)key;
    e->value = value;
    return e;
}

/* kelp.task, kelp.class_names and, for input 0, kelp.input_mean and kelp.input_std (normalization of pixels
 * scaled to [0, 1], which the exported graph does not include, as in kelp). */
static Onnx__StringStringEntryProto **metadata_props(exporter *ex, size_t *count)
{
    const cJSON *model = ex->g->model;
    const cJSON *input0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(model, "inputs"), 0);
    const struct {
        const char *key;
        const cJSON *item;
    } fields[] = {
        {"kelp.task", cJSON_GetObjectItemCaseSensitive(model, "task")},
        {"kelp.class_names", cJSON_GetObjectItemCaseSensitive(model, "class_names")},
        {"kelp.input_mean", cJSON_GetObjectItemCaseSensitive(input0, "mean")},
        {"kelp.input_std", cJSON_GetObjectItemCaseSensitive(input0, "std")},
    };
    size_t n_fields = sizeof fields / sizeof fields[0];
    Onnx__StringStringEntryProto **props = pool_array(ex, n_fields, sizeof *props);
    *count = 0;
    for (size_t k = 0; k < n_fields && props; k++) {
        Onnx__StringStringEntryProto *e = model_metadata(ex, fields[k].key, fields[k].item);
        if (e)
            props[(*count)++] = e;
    }
    return props;
}

/* protobuf-c packs through this sink straight into the atomic file: no second copy of the weights in memory. */
typedef struct file_sink {
    ProtobufCBuffer base;
    FILE *f;
    bool failed;
} file_sink;

static void sink_append(ProtobufCBuffer *buffer, size_t len, const uint8_t *data)
{
    file_sink *sink = (file_sink *)buffer;
    if (!sink->failed && len && fwrite(data, 1, len, sink->f) != len)
        sink->failed = true;
}

static kelp_status write_file(exporter *ex, const Onnx__ModelProto *model)
{
    /* protobuf's parsers stop at 2 GiB; larger models would need ONNX's external data, which kelp does not write */
    size_t size = protobuf_c_message_get_packed_size(&model->base);
    if (size > INT32_MAX)
        return kelp_set_error(KELP_ERR_UNSUPPORTED,
                              "%s: the model takes %zu bytes, beyond protobuf's 2 GiB limit (ONNX external data is "
                              "not supported)",
                              ex->path, size);
    kelp_atomic_file *f;
    KELP_TRY(kelp_atomic_open(ex->path, &f));
    file_sink sink = {.base = {.append = sink_append}, .f = kelp_atomic_stream(f)};
    protobuf_c_message_pack_to_buffer(&model->base, &sink.base);
    if (sink.failed) {
        kelp_atomic_abort(f);
        return kelp_set_error(KELP_ERR_IO, "%s: write failed", ex->path);
    }
    return kelp_atomic_commit(f);
}

static kelp_status write_model(exporter *ex, const char *producer_version)
{
    const kelp_graph *g = ex->g;
    Onnx__ValueInfoProto **inputs = pool_array(ex, (size_t)g->n_inputs, sizeof *inputs);
    Onnx__ValueInfoProto **outputs = pool_array(ex, (size_t)g->n_outputs, sizeof *outputs);
    for (int k = 0; k < g->n_inputs && inputs; k++)
        inputs[k] = value_info(ex, g->input_values[k]);
    for (int k = 0; k < g->n_outputs && outputs; k++)
        outputs[k] = value_info(ex, g->output_values[k]);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(g->model, "name");
    const cJSON *description = cJSON_GetObjectItemCaseSensitive(g->model, "description");
    Onnx__GraphProto graph;
    onnx__graph_proto__init(&graph);
    graph.name = cJSON_IsString(name) && *name->valuestring ? name->valuestring : "kelp";
    graph.n_node = ex->n_nodes;
    graph.node = ex->nodes;
    graph.n_initializer = ex->n_inits;
    graph.initializer = ex->inits;
    graph.n_input = (size_t)g->n_inputs;
    graph.input = inputs;
    graph.n_output = (size_t)g->n_outputs;
    graph.output = outputs;

    Onnx__OperatorSetIdProto opset;
    onnx__operator_set_id_proto__init(&opset);
    opset.domain = "";
    opset.has_version = true;
    opset.version = KELP_ONNX_OPSET;
    Onnx__OperatorSetIdProto *opsets[1] = {&opset};

    Onnx__ModelProto model;
    onnx__model_proto__init(&model);
    model.has_ir_version = true;
    model.ir_version = KELP_ONNX_IR_VERSION;
    model.n_opset_import = 1;
    model.opset_import = opsets;
    model.producer_name = "kelp";
    model.producer_version = (char *)(producer_version ? producer_version : KELP_VERSION_STRING);
    model.doc_string = cJSON_IsString(description) ? description->valuestring : NULL;
    model.graph = &graph;
    model.metadata_props = metadata_props(ex, &model.n_metadata_props);
    if (failed(ex))
        return ex->status;
    return write_file(ex, &model);
}

kelp_status kelp_onnx_export(kelp_graph *g, const char *path, const char *producer_version)
{
    if (!g || !path || !*path)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_onnx_export: a graph and a path are required");
    exporter ex = {.g = g, .path = path};
    kelp_status s = check_graph(&ex);
    if (s == KELP_OK)
        s = assign_names(&ex);
    for (int i = 0; i < g->n_nodes && s == KELP_OK; i++)
        if (!g->nodes[i].type->is_loss)
            s = export_node(&ex, i);
    if (s == KELP_OK)
        s = write_model(&ex, producer_version);
    pool_free(&ex);
    return s;
}
