/* Input preparation on the device: the host ships a batch's uint8 pixels (a quarter of the bytes of its floats),
 * the device normalizes them (kernels/ops/prep.h, the loader's own formula).
 *
 * The copy overlaps the work already queued: the pixels go through one of two page-locked staging buffers to one
 * of two device buffers, on a copy stream of the backend's own. Events order it:
 *   - the host refills a page-locked buffer only after that buffer's previous copy finished (`copied`; two batches
 *     back, so normally long done);
 *   - the copy into a device buffer waits for the kernel that last read it (`consumed`, on the compute stream);
 *   - the normalization waits for its copy (`copied`), and runs on the compute stream, so everything queued after
 *     it sees the batch.
 * So while the GPU still computes the previous step, the next batch is already on its way. The staging buffers
 * are allocated outside the caching allocator: a block it recycles is only safe on the compute stream. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_internal.h"
#include "kernels/ops/prep.h"

// pixels (n_values) uint8, NHWC with c channels -> out (n_values) in d.dtype, normalized in float, stored once
template <typename T> __global__ void prepare_kernel(int64_t n_values, kelp_prep_desc d, const uint8_t *pixels, T *out)
{
    GRID_STRIDE(i, n_values)
    {
        int ch = (int)(i % d.c);
        store(out, i, kelp_normalize_pixel(pixels[i], d.mean[ch], d.std[ch]));
    }
}

/* The copy stream and the slots' events, all or nothing: the stream is what says they exist. */
static kelp_status create_staging(cuda_impl *c)
{
    cudaEvent_t events[2 * CUDA_PREP_SLOTS] = {0};
    cudaStream_t stream = NULL;
    cudaError_t e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    for (int i = 0; e == cudaSuccess && i < 2 * CUDA_PREP_SLOTS; i++)
        /* blocking: the host waits on these while the loader's threads want the cores, so it sleeps, not spins */
        e = cudaEventCreateWithFlags(&events[i], cudaEventDisableTiming | cudaEventBlockingSync);
    if (e != cudaSuccess) {
        for (int i = 0; i < 2 * CUDA_PREP_SLOTS; i++)
            if (events[i])
                cudaEventDestroy(events[i]);
        if (stream)
            cudaStreamDestroy(stream);
        cudaGetLastError();
        return kelp_set_error(KELP_ERR_BACKEND, "%s:%d: prepare_images: creating its copy stream and events: %s",
                              __FILE__, __LINE__, cudaGetErrorString(e));
    }
    for (int i = 0; i < CUDA_PREP_SLOTS; i++) {
        c->prep[i].copied = events[2 * i];
        c->prep[i].consumed = events[2 * i + 1];
    }
    c->copy_stream = stream;
    return KELP_OK;
}

/* Grows a slot's two buffers, once idle: its last copy finished (the caller waited on `copied`), and so has the
 * kernel that read the device buffer (waited for here; growth is rare). */
static kelp_status grow_slot(cuda_prep_slot *s, size_t bytes)
{
    if (s->bytes >= bytes)
        return KELP_OK;
    if (s->used)
        KELP_CUDA_TRY(cudaEventSynchronize(s->consumed));
    if (s->host)
        cudaFreeHost(s->host);
    if (s->device)
        cudaFree(s->device);
    s->host = s->device = NULL;
    s->bytes = 0;
    KELP_CUDA_TRY(cudaMallocHost(&s->host, bytes));
    KELP_CUDA_TRY(cudaMalloc(&s->device, bytes));
    s->bytes = bytes;
    return KELP_OK;
}

kelp_status cuda_prepare_images(kelp_backend *be, const kelp_prep_desc *d, const uint8_t *host_pixels, void *out)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (d->c < 1 || d->c > KELP_PREP_MAX_CHANNELS || d->pixels < 0)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "prepare_images (cuda): %lld pixels of %d channels (1..%d)",
                              (long long)d->pixels, d->c, KELP_PREP_MAX_CHANNELS);
    if (!kelp_dtype_is_float(d->dtype)) /* before any copy is queued: a refused call leaves the staging ring as it was */
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "prepare_images (cuda): storage type %d is not F32, BF16 or F16",
                              (int)d->dtype);
    int64_t n_values = d->pixels * d->c;
    if (n_values == 0)
        return KELP_OK;
    if (!c->copy_stream)
        KELP_TRY(create_staging(c));
    cuda_prep_slot *s = &c->prep[c->prep_next];
    c->prep_next = (c->prep_next + 1) % CUDA_PREP_SLOTS;
    if (s->used)
        KELP_CUDA_TRY(cudaEventSynchronize(s->copied));
    KELP_TRY(grow_slot(s, (size_t)n_values));
    memcpy(s->host, host_pixels, (size_t)n_values);
    if (s->used)
        KELP_CUDA_TRY(cudaStreamWaitEvent(c->copy_stream, s->consumed, 0));
    KELP_CUDA_TRY(cudaMemcpyAsync(s->device, s->host, (size_t)n_values, cudaMemcpyHostToDevice, c->copy_stream));
    s->used = true; /* from here on a copy may read `host`: its next refill waits for `copied` */
    KELP_CUDA_TRY(cudaEventRecord(s->copied, c->copy_stream));
    KELP_CUDA_TRY(cudaStreamWaitEvent(c->stream, s->copied, 0));
    KELP_TRY(cuda_dispatch(d->dtype, "prepare_images", [&](auto tag) {
        using T = typename decltype(tag)::type;
        prepare_kernel<<<cuda_grid(n_values), CUDA_THREADS, 0, c->stream>>>(n_values, *d, (const uint8_t *)s->device,
                                                                          (T *)out);
        KELP_CUDA_LAUNCHED(prepare_kernel);
        return KELP_OK;
    }));
    KELP_CUDA_TRY(cudaEventRecord(s->consumed, c->stream));
    return KELP_OK;
}

void cuda_prep_destroy(cuda_impl *c)
{
    if (c->copy_stream)
        cudaStreamSynchronize(c->copy_stream);
    for (int i = 0; i < CUDA_PREP_SLOTS; i++) {
        cuda_prep_slot *s = &c->prep[i];
        if (s->host)
            cudaFreeHost(s->host);
        if (s->device)
            cudaFree(s->device);
        if (s->copied)
            cudaEventDestroy(s->copied);
        if (s->consumed)
            cudaEventDestroy(s->consumed);
        memset(s, 0, sizeof *s);
    }
    if (c->copy_stream)
        cudaStreamDestroy(c->copy_stream);
    c->copy_stream = NULL;
}
