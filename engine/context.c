/* kelp_ctx: the device, its backend, the thread count and the seed. Everything process-wide lives here, passed
 * explicitly, so two contexts in one process never interfere. */
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "kelp/kelp.h"
#include "kernels/ops/half.h"

#if KELP_HAVE_CUDA
#include "kernels/cuda/backend_cuda.h"
#include "kernels/cuda/device_info.h"
#endif

struct kelp_ctx {
    kelp_backend *be;
    int threads;
    uint64_t seed;
};

kelp_ctx_options kelp_ctx_defaults(void)
{
    kelp_ctx_options o = {.device = "cpu", .threads = 0, .seed = 0, .cuda_graphs = true};
    return o;
}

/* "cuda" or "cuda:N": the CUDA backend on device N (0 by default) when kelp was built with it and the device
 * exists; otherwise a clear error, never a silent fall back to the CPU. */
static kelp_status create_cuda(const kelp_ctx_options *o, const char *device, kelp_backend **out)
{
#if KELP_HAVE_CUDA
    int index = 0;
    if (device[4] == ':') {
        char *end = NULL;
        long v = strtol(device + 5, &end, 10);
        if (end == device + 5 || *end != '\0' || v < 0 || v > 1024)
            return kelp_set_error(KELP_ERR_INVALID_ARG, "device '%s': expected cuda or cuda:N with N a device index",
                                  device);
        index = (int)v;
    } else if (device[4] != '\0') {
        return kelp_set_error(KELP_ERR_INVALID_ARG, "unknown device '%s' (expected cpu or cuda[:N])", device);
    }
    int count = kelp_cuda_device_count();
    if (count == 0)
        return kelp_set_error(KELP_ERR_UNSUPPORTED,
                              "device '%s': no CUDA device is visible (no GPU or no driver); use --device cpu", device);
    if (index >= count)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "device '%s': only %d CUDA device%s visible", device, count,
                              count == 1 ? " is" : "s are");
    kelp_cuda_config config = {
        .deterministic = !o->nondeterministic, .allow_tf32 = o->allow_tf32, .autotune = o->autotune,
        .cuda_graphs = o->cuda_graphs};
    return kelp_backend_cuda_create(index, &config, out);
#else
    (void)o;
    (void)out;
    return kelp_set_error(KELP_ERR_UNSUPPORTED,
                          "device '%s': this kelp was built without CUDA (configure with -DKELP_CUDA=ON on a machine "
                          "with nvcc and cuDNN); use --device cpu",
                          device);
#endif
}

kelp_status kelp_ctx_create(const kelp_ctx_options *options, kelp_ctx **out)
{
    kelp_ctx_options o = options ? *options : kelp_ctx_defaults();
    const char *device = o.device ? o.device : "cpu";
    kelp_backend *be = NULL;
    if (strcmp(device, "cpu") == 0) {
        KELP_TRY(kelp_backend_cpu_create(o.threads, &be));
    } else if (strncmp(device, "cuda", 4) == 0) {
        KELP_TRY(create_cuda(&o, device, &be));
    } else {
        return kelp_set_error(KELP_ERR_INVALID_ARG, "unknown device '%s' (expected cpu or cuda[:N])", device);
    }
    kelp_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        kelp_backend_destroy(be);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "context: out of memory");
    }
    ctx->be = be;
    /* the CPU backend resolves 0 to its team size; a GPU context keeps what was asked (host-side work only) */
    ctx->threads = strcmp(be->iface->name, "cpu") == 0 ? kelp_backend_cpu_threads(be) : o.threads;
    ctx->seed = o.seed;
    *out = ctx;
    return KELP_OK;
}

void kelp_ctx_destroy(kelp_ctx *ctx)
{
    if (!ctx)
        return;
    kelp_backend_destroy(ctx->be);
    free(ctx);
}

kelp_backend *kelp_ctx_backend(kelp_ctx *ctx) { return ctx->be; }
uint64_t kelp_ctx_seed(const kelp_ctx *ctx) { return ctx->seed; }
int kelp_ctx_threads(const kelp_ctx *ctx) { return ctx->threads; }

kelp_status kelp_tensor_alloc(kelp_ctx *ctx, const kelp_shape *shape, kelp_dtype dtype, kelp_tensor *out)
{
    memset(out, 0, sizeof *out);
    size_t bytes;
    KELP_TRY(kelp_shape_bytes(shape, dtype, &bytes));
    out->shape = *shape;
    out->dtype = dtype;
    out->backend = ctx->be;
    return ctx->be->iface->alloc(ctx->be, bytes, &out->data);
}

void kelp_tensor_free(kelp_ctx *ctx, kelp_tensor *t)
{
    if (t && t->data)
        ctx->be->iface->free(ctx->be, t->data);
    if (t)
        t->data = NULL;
}

static kelp_status check_bytes(const kelp_tensor *t, size_t bytes, const char *what)
{
    if (bytes != kelp_tensor_bytes(t))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "tensor %s: %zu bytes given, the tensor holds %zu", what, bytes,
                              kelp_tensor_bytes(t));
    return KELP_OK;
}

kelp_status kelp_tensor_upload(kelp_tensor *t, const void *host, size_t bytes)
{
    KELP_TRY(check_bytes(t, bytes, "upload"));
    return t->backend->iface->upload(t->backend, t->data, host, bytes);
}

kelp_status kelp_tensor_download(const kelp_tensor *t, void *host, size_t bytes)
{
    KELP_TRY(check_bytes(t, bytes, "download"));
    return t->backend->iface->download(t->backend, host, t->data, bytes);
}

/* Checks that `count` floats fill t, and gives the 16-bit host buffer a low-precision tensor goes through. */
static kelp_status floats_staging(const kelp_tensor *t, int64_t count, const char *what, uint16_t **half)
{
    *half = NULL;
    if (!kelp_dtype_is_float(t->dtype))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "tensor %s: floats into a %s tensor", what,
                              kelp_dtype_name(t->dtype));
    if (count != kelp_shape_numel(&t->shape))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "tensor %s: %lld floats given, the tensor holds %lld", what,
                              (long long)count, (long long)kelp_shape_numel(&t->shape));
    if (t->dtype != KELP_F32 && !(*half = malloc((size_t)count * sizeof **half + 1)))
        return kelp_set_error(KELP_ERR_NO_MEMORY, "tensor %s: out of memory converting %lld floats", what,
                              (long long)count);
    return KELP_OK;
}

kelp_status kelp_tensor_upload_floats(kelp_tensor *t, const float *host, int64_t count)
{
    uint16_t *half;
    KELP_TRY(floats_staging(t, count, "upload", &half));
    if (!half)
        return kelp_tensor_upload(t, host, (size_t)count * sizeof *host);
    for (int64_t i = 0; i < count; i++)
        kelp_lowp_store(t->dtype, half, i, host[i]);
    kelp_status s = kelp_tensor_upload(t, half, (size_t)count * sizeof *half);
    free(half);
    return s;
}

kelp_status kelp_tensor_download_floats(const kelp_tensor *t, float *host, int64_t count)
{
    uint16_t *half;
    KELP_TRY(floats_staging(t, count, "download", &half));
    if (!half)
        return kelp_tensor_download(t, host, (size_t)count * sizeof *host);
    kelp_status s = kelp_tensor_download(t, half, (size_t)count * sizeof *half);
    for (int64_t i = 0; s == KELP_OK && i < count; i++)
        host[i] = kelp_lowp_load(t->dtype, half, i);
    free(half);
    return s;
}

void kelp_free(void *p) { free(p); }
