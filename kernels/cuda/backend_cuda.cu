/* The CUDA backend: context, memory, stream, GEMM and the iface table. The kernels live by topic in
 * cuda_elementwise.cu, cuda_spatial.cu, cuda_dnn.cu (cuDNN convolution), cuda_batchnorm.cu and
 * cuda_loss_optim.cu; each implements its CPU twin's exact semantics (kernels/cpu), backward ops accumulating.
 *
 * Everything runs on one stream per backend, with cuBLAS and cuDNN bound to it. Because of that, memory returned
 * to the caching allocator can be handed out again at once: any later use is queued behind the earlier one. The one
 * exception is prepare_images' copies (cuda_prep.cu), on a copy stream into buffers of their own, ordered by
 * events. The host waits only where the interface returns a value to it (download, the loss's label check) and in
 * synchronize. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/backend_cuda.h"
#include "kernels/cuda/cuda_internal.h"

/* ---- caching allocator ----
 * Blocks are rounded to size classes (512 bytes below 1 MiB, 2 MiB above) and never returned to CUDA before
 * destroy, except when cudaMalloc runs out: then every free block is released and the allocation retried. A graph
 * allocates its arena, parameters and workspace once, so a training step calls no cudaMalloc/cudaFree. */
#define SMALL_CLASS 512
#define LARGE_LIMIT ((size_t)1 << 20)
#define LARGE_CLASS ((size_t)2 << 20)
#define PINNED_BYTES 64
/* cuBLAS's recommended workspace for Hopper; given at create so that cuBLAS never allocates during a step. */
#define CUBLAS_WORKSPACE_BYTES ((size_t)32 << 20)

static size_t size_class(size_t bytes)
{
    if (bytes == 0)
        bytes = 1;
    size_t unit = bytes < LARGE_LIMIT ? SMALL_CLASS : LARGE_CLASS;
    return (bytes + unit - 1) / unit * unit;
}

/* The smallest free block that fits without wasting more than the request itself. */
static cuda_block *find_free(cuda_impl *c, size_t bytes)
{
    cuda_block *best = NULL;
    for (int i = 0; i < c->n_blocks; i++) {
        cuda_block *b = &c->blocks[i];
        if (!b->in_use && b->bytes >= bytes && b->bytes / 2 <= bytes && (!best || b->bytes < best->bytes))
            best = b;
    }
    return best;
}

static void release_free_blocks(cuda_impl *c)
{
    int kept = 0;
    for (int i = 0; i < c->n_blocks; i++) {
        if (c->blocks[i].in_use) {
            c->blocks[kept++] = c->blocks[i];
        } else {
            cudaFree(c->blocks[i].ptr);
            c->reserved -= c->blocks[i].bytes;
        }
    }
    c->n_blocks = kept;
}

static kelp_status add_block(cuda_impl *c, void *ptr, size_t bytes)
{
    if (c->n_blocks == c->cap_blocks) {
        int cap = c->cap_blocks ? 2 * c->cap_blocks : 64;
        cuda_block *grown = (cuda_block *)realloc(c->blocks, (size_t)cap * sizeof *grown);
        if (!grown)
            return kelp_set_error(KELP_ERR_NO_MEMORY, "cuda: out of host memory for the allocator's table");
        c->blocks = grown;
        c->cap_blocks = cap;
    }
    cuda_block b = {ptr, bytes, true};
    c->blocks[c->n_blocks++] = b;
    c->reserved += bytes;
    return KELP_OK;
}

static void count_in_use(cuda_impl *c, size_t bytes)
{
    c->in_use += bytes;
    c->peak_in_use = c->in_use > c->peak_in_use ? c->in_use : c->peak_in_use;
}

kelp_status cuda_alloc_impl(cuda_impl *c, size_t bytes, void **out)
{
    /* a block taken from the cache during a capture would be baked into the recording, and freed after it */
    if (cuda_capturing(c))
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "cuda: allocation of %zu bytes while a graph is being captured",
                              bytes);
    size_t rounded = size_class(bytes);
    if (rounded < bytes)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "cuda: allocation of %zu bytes overflows", bytes);
    cuda_block *hit = find_free(c, rounded);
    if (hit) {
        hit->in_use = true;
        count_in_use(c, hit->bytes);
        *out = hit->ptr;
        return KELP_OK;
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, rounded);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError(); /* clear the non-sticky error before retrying */
        cudaStreamSynchronize(c->stream);
        release_free_blocks(c);
        e = cudaMalloc(&p, rounded);
    }
    if (e != cudaSuccess) {
        cudaGetLastError(); /* or the next launch check would report this failure as its own */
        return kelp_set_error(e == cudaErrorMemoryAllocation ? KELP_ERR_NO_MEMORY : KELP_ERR_BACKEND,
                              "%s:%d: cudaMalloc(%zu bytes): %s", __FILE__, __LINE__, rounded, cudaGetErrorString(e));
    }
    kelp_status s = add_block(c, p, rounded);
    if (s != KELP_OK) {
        cudaFree(p);
        return s;
    }
    count_in_use(c, rounded);
    *out = p;
    return KELP_OK;
}

void cuda_free_impl(cuda_impl *c, void *ptr)
{
    if (!ptr)
        return;
    for (int i = 0; i < c->n_blocks; i++)
        if (c->blocks[i].ptr == ptr) {
            if (c->blocks[i].in_use)
                c->in_use -= c->blocks[i].bytes;
            c->blocks[i].in_use = false;
            return;
        }
}

kelp_status cuda_scratch(cuda_impl *c, size_t bytes, void **out)
{
    if (bytes > c->scratch_bytes) {
        /* refused before the old buffer goes: the capture fails either way, and other recordings stay valid */
        if (cuda_capturing(c))
            return kelp_set_error(KELP_ERR_UNSUPPORTED, "cuda: the scratch buffer would grow during a capture");
        size_t grown = bytes < 2 * c->scratch_bytes ? 2 * c->scratch_bytes : bytes;
        /* Stream order makes the old buffer safe to recycle even while queued kernels still read it; a recording
         * that addresses it is stale from now on. */
        cuda_free_impl(c, c->scratch);
        c->scratch = NULL;
        c->scratch_bytes = 0;
        c->scratch_moves++;
        KELP_TRY(cuda_alloc_impl(c, grown, &c->scratch));
        c->scratch_bytes = grown;
    }
    *out = c->scratch;
    return KELP_OK;
}

kelp_status cuda_enter(kelp_backend *be, cuda_impl **out)
{
    cuda_impl *c = cuda_of(be);
    KELP_CUDA_TRY(cudaSetDevice(c->device));
    *out = c;
    return KELP_OK;
}

/* ---- iface: lifetime, memory, synchronization ---- */

static void cuda_destroy(kelp_backend *be)
{
    cuda_impl *c = cuda_of(be);
    cudaSetDevice(c->device);
    if (c->stream)
        cudaStreamSynchronize(c->stream);
    cuda_prep_destroy(c);
    cuda_conv_cache_clear(c);
    free(c->conv_cache);
    free(c->bn_choices);
    if (c->cudnn)
        cudnnDestroy(c->cudnn);
    if (c->cublas)
        cublasDestroy(c->cublas);
    for (int i = 0; i < c->n_blocks; i++)
        cudaFree(c->blocks[i].ptr);
    free(c->blocks);
    if (c->host_pinned)
        cudaFreeHost(c->host_pinned);
    if (c->label_flag_host)
        cudaFreeHost(c->label_flag_host);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c);
    free(be);
}

/* The caching allocator's figures; prepare_images' two staging buffers (cuda_prep.cu) are outside it. */
static void cuda_memory_stats(kelp_backend *be, kelp_device_memory *out)
{
    cuda_impl *c = cuda_of(be);
    out->in_use = c->in_use;
    out->peak = c->peak_in_use;
    out->reserved = c->reserved;
}

/* Every activation op takes F32, BF16 and F16 storage (cuda_dtype.h), and so does convert; the optimizers update
 * the float parameters and their float gradients only. */
static bool cuda_supports(kelp_backend *be, kelp_op op, kelp_dtype dtype)
{
    (void)be;
    if (op >= KELP_OP_COUNT)
        return false;
    if (op == KELP_OP_SGD || op == KELP_OP_ADAMW)
        return dtype == KELP_F32;
    return kelp_dtype_is_float(dtype);
}

static kelp_status cuda_alloc(kelp_backend *be, size_t bytes, void **out)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    return cuda_alloc_impl(c, bytes, out);
}

static void cuda_free(kelp_backend *be, void *ptr) { cuda_free_impl(cuda_of(be), ptr); }

static kelp_status cuda_memset(kelp_backend *be, void *dst, int value, size_t bytes)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (bytes)
        KELP_CUDA_TRY(cudaMemsetAsync(dst, value, bytes, c->stream));
    return KELP_OK;
}

static bool ranges_overlap(const void *a, const void *b, size_t bytes)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y + bytes && y < x + bytes;
}

/* memmove semantics, as the CPU backend's: overlapping ranges go through the scratch buffer. */
static kelp_status cuda_copy(kelp_backend *be, void *dst, const void *src, size_t bytes)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (!bytes || dst == src)
        return KELP_OK;
    if (!ranges_overlap(dst, src, bytes)) {
        KELP_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
        return KELP_OK;
    }
    void *tmp;
    KELP_TRY(cuda_scratch(c, bytes, &tmp));
    KELP_CUDA_TRY(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
    KELP_CUDA_TRY(cudaMemcpyAsync(dst, tmp, bytes, cudaMemcpyDeviceToDevice, c->stream));
    return KELP_OK;
}

/* From pageable memory CUDA stages the bytes before returning, so the caller may reuse its buffer at once, as with
 * the CPU backend. From page-locked memory the copy is truly asynchronous: wait for it to keep that promise. */
static kelp_status cuda_upload(kelp_backend *be, void *dst, const void *host_src, size_t bytes)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (!bytes)
        return KELP_OK;
    KELP_CUDA_TRY(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, c->stream));
    cudaPointerAttributes attr;
    KELP_CUDA_TRY(cudaPointerGetAttributes(&attr, host_src));
    if (attr.type == cudaMemoryTypeHost)
        KELP_CUDA_TRY(cudaStreamSynchronize(c->stream));
    return KELP_OK;
}

static kelp_status cuda_download(kelp_backend *be, void *host_dst, const void *src, size_t bytes)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (!bytes)
        return KELP_OK;
    KELP_CUDA_TRY(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    KELP_CUDA_TRY(cudaStreamSynchronize(c->stream));
    return cuda_deferred_check(c);
}

static kelp_status cuda_synchronize(kelp_backend *be)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    KELP_CUDA_TRY(cudaStreamSynchronize(c->stream));
    return cuda_deferred_check(c);
}

kelp_status cuda_deferred_check(cuda_impl *c)
{
    if (!c->label_check_pending)
        return KELP_OK;
    c->label_check_pending = false;
    if (!*c->label_flag_host)
        return KELP_OK;
    *c->label_flag_host = 0;
    KELP_CUDA_TRY(cudaMemsetAsync(c->label_flag, 0, sizeof(int), c->stream));
    return kelp_set_error(KELP_ERR_INVALID_ARG,
                          "softmax_cross_entropy: a label is outside [0, %d) and is not the ignore index %d (found "
                          "after a replayed training step)",
                          c->label_classes, c->label_ignore_index);
}

/* Row-major C = alpha op(A) op(B) + beta C is column-major C^T = alpha op(B)^T op(A)^T + beta C^T: the same
 * buffers read as their transposes, so cuBLAS gets B first and the dimensions swapped.
 * fp32 is cublasSgemm under the handle's math mode (TF32 only when allowed). BF16 and F16 go through cublasGemmEx
 * with CUBLAS_COMPUTE_32F: A, B and C in the storage type, products summed in float (alpha and beta are floats for
 * that compute type), C rounded once; init_impl forbids reductions in the output type. */
static kelp_status cuda_gemm(kelp_backend *be, kelp_dtype dt, bool ta, bool tb, int m, int n, int k, float alpha,
                             const void *a, int lda, const void *b, int ldb, float beta, void *c_mat, int ldc)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (!kelp_dtype_is_float(dt))
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "gemm (cuda): storage type %d is not F32, BF16 or F16", (int)dt);
    if (m <= 0 || n <= 0)
        return KELP_OK;
    const cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (dt == KELP_F32) {
        KELP_CUBLAS_TRY(cublasSgemm(c->cublas, op_b, op_a, n, m, k, &alpha, (const float *)b, ldb, (const float *)a,
                                    lda, &beta, (float *)c_mat, ldc));
        return KELP_OK;
    }
    const cudaDataType type = cublas_data_type(dt);
    KELP_CUBLAS_TRY(cublasGemmEx(c->cublas, op_b, op_a, n, m, k, &alpha, b, type, ldb, a, type, lda, &beta, c_mat, type,
                                 ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return KELP_OK;
}

/* ---- CUDA graphs (engine/graph_replay.c) ----
 * Capture is thread-local: a call this thread may not make while capturing (cudaMalloc when the scratch buffer
 * grows, a synchronization) fails the capture instead of running, and the engine then runs the forward plainly. */
typedef struct cuda_replay {
    cudaGraphExec_t exec;
    uint64_t scratch_moves; /* the scratch buffer's generation the recorded kernels address */
    bool checks_labels;     /* holds a loss whose label check waits for the next read (cuda_deferred_check) */
} cuda_replay;

static kelp_status cuda_capture_begin(kelp_backend *be)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (!c->cuda_graphs)
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "cuda: CUDA graphs are off for this context");
    KELP_CUDA_TRY(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    c->capture_scratch_moves = c->scratch_moves;
    c->capture_checks_labels = false;
    return KELP_OK;
}

static kelp_status cuda_capture_end(kelp_backend *be, void **out)
{
    cuda_impl *c = cuda_of(be);
    cudaSetDevice(c->device); /* whatever it says, the capture must end */
    /* The deferred label flag's copy to page-locked memory is part of the recording, so that a replay is one
     * launch: it either queued everything or nothing, and a failed replay can be run plainly again. */
    if (out && c->capture_checks_labels)
        cudaMemcpyAsync(c->label_flag_host, c->label_flag, sizeof(int), cudaMemcpyDeviceToHost, c->stream);
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &graph);
    if (e == cudaSuccess && out && c->scratch_moves != c->capture_scratch_moves) {
        cudaGraphDestroy(graph); /* the scratch moved during the capture: the kernels before address the old one */
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "cuda: the scratch buffer moved during the capture");
    }
    if (e != cudaSuccess || !out) {
        if (graph)
            cudaGraphDestroy(graph);
        cudaGetLastError(); /* capture errors are not sticky: clear this one for the calls that follow */
        /* discarding (out NULL) follows a failure inside the capture, which invalidated it: that failure's message
         * is the reason worth keeping, not the invalidation's */
        return e == cudaSuccess || !out
                   ? KELP_OK
                   : kelp_set_error(KELP_ERR_BACKEND, "cudaStreamEndCapture: %s", cudaGetErrorString(e));
    }
    cuda_replay *r = (cuda_replay *)calloc(1, sizeof *r);
    if (!r) {
        cudaGraphDestroy(graph);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "cuda: out of memory for a captured graph");
    }
    e = cudaGraphInstantiate(&r->exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
        free(r);
        cudaGetLastError();
        return kelp_set_error(KELP_ERR_BACKEND, "cudaGraphInstantiate: %s", cudaGetErrorString(e));
    }
    r->scratch_moves = c->scratch_moves;
    r->checks_labels = c->capture_checks_labels;
    *out = r;
    return KELP_OK;
}

static kelp_status cuda_replay_launch(kelp_backend *be, void *recorded)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    cuda_replay *r = (cuda_replay *)recorded;
    if (r->scratch_moves != c->scratch_moves)
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "cuda: the captured graph's scratch memory has moved since");
    KELP_CUDA_TRY(cudaGraphLaunch(r->exec, c->stream));
    c->label_check_pending |= r->checks_labels; /* the recording copies the flag to the host (capture_end) */
    return KELP_OK;
}

static void cuda_replay_destroy(kelp_backend *be, void *recorded)
{
    cuda_replay *r = (cuda_replay *)recorded;
    if (!r)
        return;
    cudaSetDevice(cuda_of(be)->device);
    cudaGraphExecDestroy(r->exec);
    free(r);
}

/* Filled once at first create; designated initializers are C++20, so it is assigned field by field. */
static void fill_iface(kelp_backend_iface *t)
{
    memset(t, 0, sizeof *t);
    t->name = "cuda";
    t->destroy = cuda_destroy;
    t->supports = cuda_supports;
    t->alloc = cuda_alloc;
    t->free = cuda_free;
    t->memset = cuda_memset;
    t->copy = cuda_copy;
    t->upload = cuda_upload;
    t->download = cuda_download;
    t->synchronize = cuda_synchronize;
    t->memory_stats = cuda_memory_stats;
    t->capture_begin = cuda_capture_begin;
    t->capture_end = cuda_capture_end;
    t->replay = cuda_replay_launch;
    t->replay_destroy = cuda_replay_destroy;
    t->gemm = cuda_gemm;
    t->convert = cuda_convert;
    t->conv2d_workspace = cuda_conv2d_workspace;
    t->conv2d_forward = cuda_conv2d_forward;
    t->conv2d_forward_fused = cuda_conv2d_forward_fused;
    t->batchnorm_fold = cuda_bn_fold;
    t->conv2d_backward_data = cuda_conv2d_backward_data;
    t->conv2d_backward_filter = cuda_conv2d_backward_filter;
    t->bias_add = cuda_bias_add;
    t->bias_backward = cuda_bias_backward;
    t->batchnorm_forward_train = cuda_bn_forward_train;
    t->batchnorm_forward_infer = cuda_bn_forward_infer;
    t->batchnorm_backward = cuda_bn_backward;
    t->batchnorm_backward_infer = cuda_bn_backward_infer;
    t->activation_forward = cuda_activation_forward;
    t->activation_backward = cuda_activation_backward;
    t->add = cuda_add;
    t->axpy = cuda_axpy;
    t->scale = cuda_scale;
    t->counter_add = cuda_counter_add;
    t->sum_squares = cuda_sum_squares;
    t->pool2d_forward = cuda_pool2d_forward;
    t->pool2d_backward = cuda_pool2d_backward;
    t->global_avg_pool_forward = cuda_global_avg_pool_forward;
    t->global_avg_pool_backward = cuda_global_avg_pool_backward;
    t->copy_rows = cuda_copy_rows;
    t->nhwc_to_nchw = cuda_nhwc_to_nchw;
    t->nchw_to_nhwc_accumulate = cuda_nchw_to_nhwc_accumulate;
    t->upsample_forward = cuda_upsample_forward;
    t->upsample_backward = cuda_upsample_backward;
    t->dropout_forward = cuda_dropout_forward;
    t->dropout_backward = cuda_dropout_backward;
    t->softmax_xent_forward = cuda_xent_forward;
    t->softmax_xent_backward = cuda_xent_backward;
    t->step_check = cuda_step_check;
    t->sgd_step = cuda_sgd_step;
    t->adamw_step = cuda_adamw_step;
    t->prepare_images = cuda_prepare_images;
}

/* Handles, stream, pinned buffer and cuBLAS workspace; on failure the caller destroys what exists. */
static kelp_status init_impl(cuda_impl *c)
{
    KELP_CUDA_TRY(cudaSetDevice(c->device));
    KELP_CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    KELP_CUDA_TRY(cudaMallocHost(&c->host_pinned, PINNED_BYTES));
    KELP_CUDA_TRY(cudaMallocHost(&c->label_flag_host, sizeof(int)));
    *c->label_flag_host = 0;
    KELP_CUBLAS_TRY(cublasCreate(&c->cublas));
    KELP_CUBLAS_TRY(cublasSetStream(c->cublas, c->stream));
    /* Without allow_tf32, fp32 math as on the CPU: the default math mode never uses TF32 tensor cores, so results
     * stay within float rounding of OpenBLAS's. DISALLOW_REDUCED_PRECISION_REDUCTION: a 16-bit GEMM's split-K
     * partial sums are reduced in its float compute type, not in the 16-bit output type (cuBLAS allows that by
     * default), so C is rounded once, as on the CPU. It changes nothing for fp32. */
    const cublasMath_t math = c->allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
    KELP_CUBLAS_TRY(cublasSetMathMode(
        c->cublas, (cublasMath_t)(math | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    KELP_TRY(cuda_alloc_impl(c, CUBLAS_WORKSPACE_BYTES, &c->cublas_workspace));
    KELP_TRY(cuda_alloc_impl(c, sizeof(int), (void **)&c->label_flag));
    KELP_CUDA_TRY(cudaMemsetAsync(c->label_flag, 0, sizeof(int), c->stream));
    KELP_CUBLAS_TRY(cublasSetWorkspace(c->cublas, c->cublas_workspace, CUBLAS_WORKSPACE_BYTES));
    KELP_CUDNN_TRY(cudnnCreate(&c->cudnn));
    KELP_CUDNN_TRY(cudnnSetStream(c->cudnn, c->stream));
    return KELP_OK;
}

extern "C" kelp_status kelp_backend_cuda_create(int device, const kelp_cuda_config *config, kelp_backend **out)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess)
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "cuda backend: no usable CUDA device: cudaGetDeviceCount: %s",
                              cudaGetErrorString(e));
    if (device < 0 || device >= count)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "cuda backend: device %d does not exist (%d device%s visible)",
                              device, count, count == 1 ? "" : "s");
    kelp_backend *be = (kelp_backend *)calloc(1, sizeof *be);
    cuda_impl *c = (cuda_impl *)calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "cuda backend: out of memory");
    }
    c->device = device;
    c->deterministic = config ? config->deterministic : true;
    c->allow_tf32 = config && config->allow_tf32;
    c->autotune = config && config->autotune;
    c->cuda_graphs = !config || config->cuda_graphs;
    c->batchnorm = config ? config->batchnorm : KELP_CUDA_BN_AUTO;
    /* a function-local static: C++ initializes it once, even when two threads create their first contexts */
    static const kelp_backend_iface cuda_iface = [] {
        kelp_backend_iface t;
        fill_iface(&t);
        return t;
    }();
    be->iface = &cuda_iface;
    be->impl = c;
    kelp_status s = init_impl(c);
    if (s != KELP_OK) {
        cuda_destroy(be);
        return kelp_wrap_error(s, "cuda backend on device %d: ", device);
    }
    *out = be;
    return KELP_OK;
}
