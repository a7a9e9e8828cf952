/* Convolution on cuDNN: NHWC activations and OHWI weights, which is cuDNN's NHWC filter layout (K, R, S, C/G), so
 * no copy or permutation is needed. Groups (depthwise included) are cuDNN's group count.
 *
 * Algorithms are chosen once per shape and cached with the cuDNN descriptors per kelp_conv_desc (a linear table: a
 * model has tens of shapes, a lookup is nothing next to a convolution). By default the choice is cuDNN's heuristics
 * (cudnnGet*_v7, which run nothing and allocate nothing); with autotune it is cudnnFind*, which times every
 * candidate once on buffers of its own, as PyTorch's cudnn.benchmark does. Either way the candidates are filtered
 * alike: the math the backend allows (FMA only, so results stay fp32 within rounding of the CPU's, unless
 * allow_tf32), deterministic algorithms unless the backend allows otherwise, and a workspace budget. The math type
 * of each pass's choice is set on the descriptor before that pass runs, as cuDNN requires.
 *
 * Workspace: conv2d_workspace (the graph's planning call) chooses with a generous budget and reports the most any
 * of the three passes needs (and any smaller batch of the same geometry already chosen); the graph allocates the
 * largest report of all its layers once. A backward pass with no acceptable algorithm fails when it is called, so
 * an inference graph is not refused for its backward. A layer may later run
 * with a smaller batch (kelp_graph_set_batch): that shape is then chosen within the workspace reported for the same
 * geometry at a batch at least as large, so it never needs more than the graph holds. A shape never planned at all
 * gets workspace-free algorithms only.
 *
 * Backward passes accumulate (cuDNN's beta = 1), as the interface requires; the bias gradient adds its column sums.
 *
 * Mixed precision: x, w, y and their gradients in d->dtype, F32, BF16 or F16 (cuDNN's FLOAT, BFLOAT16, HALF tensor
 * and filter descriptors), always with a FLOAT compute type, so products accumulate in fp32 (cuDNN's
 * PSEUDO_HALF_CONFIG and PSEUDO_BFLOAT16_CONFIG). 16-bit data may take tensor-core algorithms (CUDNN_TENSOR_OP_MATH):
 * their products of 16-bit values are exact in fp32, so tensor cores lose nothing there, unlike TF32 on fp32 data.
 * The dtype is a field of kelp_conv_desc, which is the cache key, so each storage type has its own entry. The float
 * bias and the fused epilogue's float scale and shift are applied by our kernels on the typed y. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_internal.h"

/* The most workspace one planned shape may take: cuDNN's FFT algorithms can ask for gigabytes, and the graph's one
 * shared workspace is sized by the largest layer. */
#define CONV_WORKSPACE_CAP ((size_t)256 << 20)

struct cuda_conv_entry {
    kelp_conv_desc d;
    size_t workspace; /* the most any of the three algorithms needs */
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t data;
    cudnnConvolutionBwdFilterAlgo_t filter;
    cudnnMathType_t fwd_math, data_math, filter_math;
    size_t fwd_bytes, data_bytes, filter_bytes;
    /* A backward pass without an algorithm fails when it is called, not when the shape is planned: an inference
     * graph never calls it. Its status (KELP_OK: chosen) and message. */
    kelp_status data_status, filter_status;
    char data_why[256], filter_why[256];
};

static void destroy_descriptors(cuda_conv_entry *e)
{
    if (e->x)
        cudnnDestroyTensorDescriptor(e->x);
    if (e->y)
        cudnnDestroyTensorDescriptor(e->y);
    if (e->w)
        cudnnDestroyFilterDescriptor(e->w);
    if (e->conv)
        cudnnDestroyConvolutionDescriptor(e->conv);
}

void cuda_conv_cache_clear(cuda_impl *c)
{
    for (int i = 0; i < c->n_conv; i++)
        destroy_descriptors(&c->conv_cache[i]);
    c->n_conv = 0;
}

/* Every field, the storage type included (kelp_conv_desc is all ints and an enum: no padding bytes to compare). */
static bool same_desc(const kelp_conv_desc *a, const kelp_conv_desc *b) { return memcmp(a, b, sizeof *a) == 0; }

/* Everything but the batch size. */
static bool same_geometry(const kelp_conv_desc *a, const kelp_conv_desc *b)
{
    kelp_conv_desc x = *a;
    x.n = b->n;
    return same_desc(&x, b);
}

static bool half_data(const kelp_conv_desc *d) { return d->dtype == KELP_BF16 || d->dtype == KELP_F16; }

/* The math type a shape's candidates start from: tensor cores for 16-bit data; for fp32, FMA unless TF32 is allowed. */
static cudnnMathType_t allowed_math(const cuda_impl *c, const kelp_conv_desc *d)
{
    if (half_data(d))
        return CUDNN_TENSOR_OP_MATH;
    return c->allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}

static kelp_status make_descriptors(const cuda_impl *c, cuda_conv_entry *e)
{
    const kelp_conv_desc *d = &e->d;
    const cudnnDataType_t type = cudnn_data_type(d->dtype);
    KELP_CUDNN_TRY(cudnnCreateTensorDescriptor(&e->x));
    KELP_CUDNN_TRY(cudnnCreateTensorDescriptor(&e->y));
    KELP_CUDNN_TRY(cudnnCreateFilterDescriptor(&e->w));
    KELP_CUDNN_TRY(cudnnCreateConvolutionDescriptor(&e->conv));
    KELP_CUDNN_TRY(cudnnSetTensor4dDescriptor(e->x, CUDNN_TENSOR_NHWC, type, d->n, d->c, d->h, d->w));
    KELP_CUDNN_TRY(cudnnSetTensor4dDescriptor(e->y, CUDNN_TENSOR_NHWC, type, d->n, d->k, d->oh, d->ow));
    KELP_CUDNN_TRY(cudnnSetFilter4dDescriptor(e->w, type, CUDNN_TENSOR_NHWC, d->k, d->c / d->groups, d->r, d->s));
    /* the compute type is FLOAT for every storage type: sums in fp32 */
    KELP_CUDNN_TRY(cudnnSetConvolution2dDescriptor(e->conv, d->pad_h, d->pad_w, d->stride_h, d->stride_w, d->dil_h,
                                                   d->dil_w, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    KELP_CUDNN_TRY(cudnnSetConvolutionGroupCount(e->conv, d->groups));
    /* What the candidates may use (PyTorch's rule for fp32 data): the default math mode lets cuDNN use TF32 tensor
     * cores on Ampere and later, FMA keeps fp32 products. 16-bit data: tensor cores. */
    KELP_CUDNN_TRY(cudnnSetConvolutionMathType(e->conv, allowed_math(c, d)));
    int n, k, oh, ow;
    KELP_CUDNN_TRY(cudnnGetConvolution2dForwardOutputDim(e->conv, e->x, e->w, &n, &k, &oh, &ow));
    if (n != d->n || k != d->k || oh != d->oh || ow != d->ow)
        return kelp_set_error(KELP_ERR_UNSUPPORTED,
                              "conv2d (cuda): output %dx%dx%dx%d given, cuDNN computes %dx%dx%dx%d for this geometry",
                              d->n, d->oh, d->ow, d->k, n, oh, ow, k);
    return KELP_OK;
}

/* fp32 data: FMA math multiplies in fp32; the default and tensor-op math types may use TF32 on Ampere and later.
 * 16-bit data: any of FMA, default and tensor-op math, whose products of 16-bit values are exact in the fp32
 * accumulator. CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION rounds to fp16 (bf16 data would lose its range) and is never
 * taken. Deterministic backends take deterministic algorithms only, whatever the storage type. */
static bool acceptable(const cuda_impl *c, const kelp_conv_desc *d, cudnnStatus_t status, cudnnMathType_t math,
                       cudnnDeterminism_t det)
{
    if (status != CUDNN_STATUS_SUCCESS || math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
        return false;
    bool tf32 = math == CUDNN_DEFAULT_MATH || math == CUDNN_TENSOR_OP_MATH;
    if (!half_data(d) && math != CUDNN_FMA_MATH && !(c->allow_tf32 && tf32))
        return false;
    return !c->deterministic || det == CUDNN_DETERMINISTIC;
}

static kelp_status no_algorithm(const cuda_impl *c, const char *pass, const kelp_conv_desc *d, size_t budget)
{
    return kelp_set_error(KELP_ERR_UNSUPPORTED,
                          "conv2d (cuda) %s: no %s%scuDNN algorithm fits %zu bytes of workspace for %s x %dx%dx%dx%d, "
                          "w %dx%dx%dx%d, groups %d (was the layer's workspace planned for this shape?)",
                          pass, c->deterministic ? "deterministic " : "",
                          c->allow_tf32 || half_data(d) ? "" : "FMA-math ", budget, cuda_dtype_name(d->dtype), d->n,
                          d->h, d->w, d->c, d->k, d->r, d->s, d->c / d->groups, d->groups);
}

/* The first acceptable candidate within the budget, in cuDNN's order (heuristic rank, or measured time). The three
 * passes' perf structs share their field names, so one template serves them; `workspace_of` asks cuDNN for a
 * heuristic candidate's workspace under that candidate's own math type (which it leaves set on the descriptor:
 * fill_entry resets it), or returns `memory` for measured ones. */
template <typename Perf, typename Algo, typename WorkspaceOf>
static bool pick(const cuda_impl *c, const kelp_conv_desc *d, const Perf *perf, int got, size_t budget,
                 WorkspaceOf workspace_of, Algo *algo, cudnnMathType_t *math, size_t *bytes)
{
    for (int i = 0; i < got; i++) {
        size_t need = 0;
        if (!acceptable(c, d, perf[i].status, perf[i].mathType, perf[i].determinism) ||
            !workspace_of(perf[i], &need) || need > budget)
            continue;
        *algo = perf[i].algo;
        *math = perf[i].mathType;
        *bytes = need;
        return true;
    }
    return false;
}

/* Measured candidates carry their workspace. */
template <typename Perf> static bool measured_memory(const Perf &p, size_t *bytes)
{
    *bytes = p.memory;
    return true;
}

/* cudnnFind* fails only for reasons that leave the heuristics usable (most often: no memory for its own trial
 * buffers), so a failed measurement falls back to them rather than failing the layer. */
static bool measured(cudnnStatus_t status) { return status == CUDNN_STATUS_SUCCESS; }

/* cudnnFind* allocates and waits, which a capture cannot hold (a shape is normally chosen in the plain run before
 * any capture; this keeps a late one legal, with the heuristics) */
static bool measuring(const cuda_impl *c) { return c->autotune && !cuda_capturing(c); }

static kelp_status choose_forward(cuda_impl *c, cuda_conv_entry *e, size_t budget)
{
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0;
    if (measuring(c) && measured(cudnnFindConvolutionForwardAlgorithm(c->cudnn, e->x, e->w, e->conv, e->y,
                                                                     CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf)) &&
        pick(c, &e->d, perf, got, budget, measured_memory<cudnnConvolutionFwdAlgoPerf_t>, &e->fwd, &e->fwd_math,
             &e->fwd_bytes))
        return KELP_OK;
    KELP_CUDNN_TRY(cudnnGetConvolutionForwardAlgorithm_v7(c->cudnn, e->x, e->w, e->conv, e->y,
                                                          CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf));
    auto size = [&](const cudnnConvolutionFwdAlgoPerf_t &p, size_t *bytes) {
        return cudnnSetConvolutionMathType(e->conv, p.mathType) == CUDNN_STATUS_SUCCESS &&
               cudnnGetConvolutionForwardWorkspaceSize(c->cudnn, e->x, e->w, e->conv, e->y, p.algo, bytes) ==
                   CUDNN_STATUS_SUCCESS;
    };
    if (pick(c, &e->d, perf, got, budget, size, &e->fwd, &e->fwd_math, &e->fwd_bytes))
        return KELP_OK;
    return no_algorithm(c, "forward", &e->d, budget);
}

static kelp_status choose_backward_data(cuda_impl *c, cuda_conv_entry *e, size_t budget)
{
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int got = 0;
    if (measuring(c) &&
        measured(cudnnFindConvolutionBackwardDataAlgorithm(c->cudnn, e->w, e->y, e->conv, e->x,
                                                           CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, perf)) &&
        pick(c, &e->d, perf, got, budget, measured_memory<cudnnConvolutionBwdDataAlgoPerf_t>, &e->data, &e->data_math,
             &e->data_bytes))
        return KELP_OK;
    KELP_CUDNN_TRY(cudnnGetConvolutionBackwardDataAlgorithm_v7(c->cudnn, e->w, e->y, e->conv, e->x,
                                                               CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, perf));
    auto size = [&](const cudnnConvolutionBwdDataAlgoPerf_t &p, size_t *bytes) {
        return cudnnSetConvolutionMathType(e->conv, p.mathType) == CUDNN_STATUS_SUCCESS &&
               cudnnGetConvolutionBackwardDataWorkspaceSize(c->cudnn, e->w, e->y, e->conv, e->x, p.algo, bytes) ==
                   CUDNN_STATUS_SUCCESS;
    };
    if (pick(c, &e->d, perf, got, budget, size, &e->data, &e->data_math, &e->data_bytes))
        return KELP_OK;
    return no_algorithm(c, "backward data", &e->d, budget);
}

static kelp_status choose_backward_filter(cuda_impl *c, cuda_conv_entry *e, size_t budget)
{
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int got = 0;
    if (measuring(c) &&
        measured(cudnnFindConvolutionBackwardFilterAlgorithm(c->cudnn, e->x, e->y, e->conv, e->w,
                                                             CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, perf)) &&
        pick(c, &e->d, perf, got, budget, measured_memory<cudnnConvolutionBwdFilterAlgoPerf_t>, &e->filter,
             &e->filter_math, &e->filter_bytes))
        return KELP_OK;
    KELP_CUDNN_TRY(cudnnGetConvolutionBackwardFilterAlgorithm_v7(c->cudnn, e->x, e->y, e->conv, e->w,
                                                                 CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, perf));
    auto size = [&](const cudnnConvolutionBwdFilterAlgoPerf_t &p, size_t *bytes) {
        return cudnnSetConvolutionMathType(e->conv, p.mathType) == CUDNN_STATUS_SUCCESS &&
               cudnnGetConvolutionBackwardFilterWorkspaceSize(c->cudnn, e->x, e->y, e->conv, e->w, p.algo,
                                                              bytes) == CUDNN_STATUS_SUCCESS;
    };
    if (pick(c, &e->d, perf, got, budget, size, &e->filter, &e->filter_math, &e->filter_bytes))
        return KELP_OK;
    return no_algorithm(c, "backward filter", &e->d, budget);
}

/* The workspace budget of a new shape: the least that a cached shape of the same geometry and a batch at least as
 * large reported, else the cap when planning, else nothing. The least, because the cache is the backend's and
 * several graphs may share it: the graph running this shape planned one of those siblings (its own batch), so it
 * holds at least the smallest of their workspaces, not necessarily the largest. */
static size_t budget_for(const cuda_impl *c, const kelp_conv_desc *d, bool planning)
{
    bool sibling = false;
    size_t budget = 0;
    for (int i = 0; i < c->n_conv; i++) {
        const cuda_conv_entry *e = &c->conv_cache[i];
        if (e->d.n >= d->n && same_geometry(&e->d, d)) {
            budget = !sibling || e->workspace < budget ? e->workspace : budget;
            sibling = true;
        }
    }
    if (sibling)
        return budget;
    return planning ? CONV_WORKSPACE_CAP : 0;
}

static kelp_status check_desc(const kelp_conv_desc *d)
{
    if (d->n <= 0 || d->h <= 0 || d->w <= 0 || d->c <= 0 || d->k <= 0 || d->r <= 0 || d->s <= 0 || d->groups <= 0 ||
        d->c % d->groups != 0 || d->k % d->groups != 0 || d->oh <= 0 || d->ow <= 0)
        return kelp_set_error(KELP_ERR_SHAPE, "conv2d (cuda): impossible descriptor (n %d, c %d, k %d, groups %d)",
                              d->n, d->c, d->k, d->groups);
    if (!kelp_dtype_is_float(d->dtype))
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "conv2d (cuda): storage type %d is not F32, BF16 or F16",
                              (int)d->dtype);
    return KELP_OK;
}

/* A backward pass's choice: kept, or its failure kept for when the pass is called. */
static kelp_status choose_backward(cuda_impl *c, cuda_conv_entry *e, size_t budget,
                                   kelp_status (*choose)(cuda_impl *, cuda_conv_entry *, size_t), kelp_status *status,
                                   char *why, size_t why_len)
{
    KELP_CUDNN_TRY(cudnnSetConvolutionMathType(e->conv, allowed_math(c, &e->d)));
    *status = choose(c, e, budget);
    if (*status != KELP_OK)
        snprintf(why, why_len, "%s", kelp_last_error());
    return KELP_OK;
}

static kelp_status fill_entry(cuda_impl *c, cuda_conv_entry *e, size_t budget)
{
    KELP_TRY(make_descriptors(c, e));
    /* each choice starts from the math types the backend allows: the workspace queries leave the last candidate's */
    KELP_TRY(choose_forward(c, e, budget));
    KELP_TRY(choose_backward(c, e, budget, choose_backward_data, &e->data_status, e->data_why, sizeof e->data_why));
    KELP_TRY(choose_backward(c, e, budget, choose_backward_filter, &e->filter_status, e->filter_why,
                             sizeof e->filter_why));
    size_t most = e->fwd_bytes > e->data_bytes ? e->fwd_bytes : e->data_bytes;
    e->workspace = most > e->filter_bytes ? most : e->filter_bytes;
    return KELP_OK;
}

static kelp_status backward_chosen(kelp_status status, const char *why)
{
    return status == KELP_OK ? KELP_OK : kelp_set_error(status, "%s", why);
}

static kelp_status lookup(cuda_impl *c, const kelp_conv_desc *d, bool planning, cuda_conv_entry **out)
{
    for (int i = 0; i < c->n_conv; i++)
        if (same_desc(&c->conv_cache[i].d, d)) {
            *out = &c->conv_cache[i];
            return KELP_OK;
        }
    KELP_TRY(check_desc(d));
    if (c->n_conv == c->cap_conv) {
        int cap = c->cap_conv ? 2 * c->cap_conv : 32;
        cuda_conv_entry *grown = (cuda_conv_entry *)realloc(c->conv_cache, (size_t)cap * sizeof *grown);
        if (!grown)
            return kelp_set_error(KELP_ERR_NO_MEMORY, "conv2d (cuda): out of host memory for the algorithm cache");
        c->conv_cache = grown;
        c->cap_conv = cap;
    }
    cuda_conv_entry *e = &c->conv_cache[c->n_conv];
    memset(e, 0, sizeof *e);
    e->d = *d;
    kelp_status s = fill_entry(c, e, budget_for(c, d, planning));
    if (s != KELP_OK) {
        destroy_descriptors(e);
        return s;
    }
    c->n_conv++;
    *out = e;
    return KELP_OK;
}

/* The most of this shape's choice and of every cached choice of the same geometry at a smaller batch: the graph
 * may run those (kelp_graph_set_batch), and another graph on this backend may have made them, under its own
 * budget, before this one planned. */
kelp_status cuda_conv2d_workspace(kelp_backend *be, const kelp_conv_desc *d, size_t *out)
{
    cuda_impl *c;
    cuda_conv_entry *e;
    KELP_TRY(cuda_enter(be, &c));
    KELP_TRY(lookup(c, d, true, &e));
    size_t most = e->workspace;
    for (int i = 0; i < c->n_conv; i++) {
        const cuda_conv_entry *s = &c->conv_cache[i];
        if (s->d.n <= d->n && same_geometry(&s->d, d) && s->workspace > most)
            most = s->workspace;
    }
    *out = most;
    return KELP_OK;
}

static kelp_status need_workspace(size_t bytes, const void *workspace, const char *pass)
{
    if (bytes && !workspace)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "conv2d (cuda) %s: %zu bytes of workspace needed, none given",
                              pass, bytes);
    return KELP_OK;
}

kelp_status cuda_conv2d_forward(kelp_backend *be, const kelp_conv_desc *d, const void *x, const void *w,
                                const float *bias, void *y, void *workspace)
{
    cuda_impl *c;
    cuda_conv_entry *e;
    KELP_TRY(cuda_enter(be, &c));
    KELP_TRY(lookup(c, d, false, &e));
    KELP_TRY(need_workspace(e->fwd_bytes, workspace, "forward"));
    const float one = 1.0f, zero = 0.0f;
    KELP_CUDNN_TRY(cudnnSetConvolutionMathType(e->conv, e->fwd_math));
    KELP_CUDNN_TRY(cudnnConvolutionForward(c->cudnn, &one, e->x, x, e->w, w, e->conv, e->fwd, workspace,
                                           e->fwd_bytes, &zero, e->y, y));
    if (bias)
        KELP_TRY(cuda_bias_add(be, d->dtype, (int64_t)d->n * d->oh * d->ow, d->k, bias, y));
    return KELP_OK;
}

/* Inference fusion: cuDNN's convolution, then the folded batch norm and clamp in one pass over y, instead of the
 * bias, batch-norm and ReLU passes. (cudnnConvolutionBiasActivationForward would fold it all into the convolution,
 * but takes one scale for every channel and so would need the weights rescaled at every forward.) */
kelp_status cuda_conv2d_forward_fused(kelp_backend *be, const kelp_conv_desc *d, const void *x, const void *w,
                                      const kelp_conv_epilogue *ep, void *y, void *workspace)
{
    KELP_TRY(cuda_conv2d_forward(be, d, x, w, NULL, y, workspace));
    return cuda_conv_epilogue(cuda_of(be), d->dtype, (int64_t)d->n * d->oh * d->ow, d->k, ep, y);
}

// dy (N,OH,OW,K), w (K,R,S,C/G) -> dx (N,H,W,C) +=
kelp_status cuda_conv2d_backward_data(kelp_backend *be, const kelp_conv_desc *d, const void *dy, const void *w,
                                      void *dx, void *workspace)
{
    cuda_impl *c;
    cuda_conv_entry *e;
    KELP_TRY(cuda_enter(be, &c));
    KELP_TRY(lookup(c, d, false, &e));
    KELP_TRY(backward_chosen(e->data_status, e->data_why));
    KELP_TRY(need_workspace(e->data_bytes, workspace, "backward data"));
    const float one = 1.0f;
    KELP_CUDNN_TRY(cudnnSetConvolutionMathType(e->conv, e->data_math));
    KELP_CUDNN_TRY(cudnnConvolutionBackwardData(c->cudnn, &one, e->w, w, e->y, dy, e->conv, e->data, workspace,
                                                e->data_bytes, &one, e->x, dx));
    return KELP_OK;
}

// x (N,H,W,C), dy (N,OH,OW,K) -> dw (K,R,S,C/G) +=, db (K) += when given
kelp_status cuda_conv2d_backward_filter(kelp_backend *be, const kelp_conv_desc *d, const void *x, const void *dy,
                                        void *dw, float *db, void *workspace)
{
    cuda_impl *c;
    cuda_conv_entry *e;
    KELP_TRY(cuda_enter(be, &c));
    KELP_TRY(lookup(c, d, false, &e)); /* before touching db: a failure leaves both gradients as they were */
    KELP_TRY(backward_chosen(e->filter_status, e->filter_why));
    KELP_TRY(need_workspace(e->filter_bytes, workspace, "backward filter"));
    if (db)
        KELP_TRY(cuda_bias_backward(be, d->dtype, (int64_t)d->n * d->oh * d->ow, d->k, dy, db));
    const float one = 1.0f;
    KELP_CUDNN_TRY(cudnnSetConvolutionMathType(e->conv, e->filter_math));
    KELP_CUDNN_TRY(cudnnConvolutionBackwardFilter(c->cudnn, &one, e->x, x, e->y, dy, e->conv, e->filter, workspace,
                                                  e->filter_bytes, &one, e->w, dw));
    return KELP_OK;
}
