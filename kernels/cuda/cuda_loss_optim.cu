/* Softmax cross-entropy (PyTorch's F.cross_entropy, mean reduction, class weights, label smoothing, ignore index)
 * and the fused SGD and AdamW steps, with the per-row and per-element math of kernels/ops/xent.h and optim.h.
 *
 * The loss's forward is the one op that waits for the device outside download: a label outside
 * [0, K) that is not the ignore index must fail the call, as on the CPU, and only the device has seen the labels.
 * That is one wait per training step (the loss runs once), not one per layer. Inside a recording (a replayed
 * training step) it may not wait: the check raises the backend's label flag instead, and the first read after a
 * replay fails (cuda_deferred_check), before the caller uses the loss.
 *
 * Logits and their gradient are in d->dtype (loaded to float, the gradient added in float and stored once); the
 * probabilities, the loss and its norm stay float. */
#include <math.h>

#include "kernels/cuda/cuda_internal.h"
#include "kernels/ops/optim.h"
#include "kernels/ops/xent.h"

/* ---- softmax cross-entropy forward: one warp per row, fixed row-to-warp assignment, partials summed in order ---- */
#define XENT_WARPS 8
#define XENT_MAX_BLOCKS 512
#define FULL_MASK 0xffffffffu

__device__ float warp_max(float v)
{
    for (int off = 16; off > 0; off /= 2)
        v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, off));
    return v;
}

__device__ float warp_sum_f(float v)
{
    for (int off = 16; off > 0; off /= 2)
        v += __shfl_xor_sync(FULL_MASK, v, off);
    return v;
}

__device__ double warp_sum_d(double v)
{
    for (int off = 16; off > 0; off /= 2)
        v += __shfl_xor_sync(FULL_MASK, v, off);
    return v;
}

typedef struct xent_partial {
    double nll, smooth, weight;
    int invalid;
} xent_partial;

/* The row's softmax into p (max-shifted log-sum-exp, as the CPU) and its two loss terms, known to every lane. */
template <typename T>
__device__ void softmax_row(const kelp_xent_desc *d, const T *x, const float *w, int32_t label, float *p, int lane,
                            double *nll, double *smooth)
{
    const int k_count = d->classes;
    float mx = -INFINITY;
    for (int k = lane; k < k_count; k += 32)
        mx = fmaxf(mx, load(x, k));
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int k = lane; k < k_count; k += 32) {
        p[k] = expf(load(x, k) - mx);
        sum += p[k];
    }
    sum = warp_sum_f(sum);
    float lse = mx + logf(sum), inv = 1.0f / sum;
    double sm = 0.0;
    for (int k = lane; k < k_count; k += 32) {
        p[k] *= inv;
        sm -= (double)kelp_xent_class_weight(w, k) * (double)(load(x, k) - lse);
    }
    *smooth = warp_sum_d(sm);
    *nll = -(double)kelp_xent_class_weight(w, label) * (double)(load(x, label) - lse);
}

template <typename T>
__global__ void xent_rows_kernel(kelp_xent_desc d, const T *logits, const int32_t *labels, const float *w,
                                 float *probs, xent_partial *partials)
{
    __shared__ xent_partial warp_part[XENT_WARPS];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    xent_partial acc = {0.0, 0.0, 0.0, 0};
    for (int64_t i = (int64_t)blockIdx.x * XENT_WARPS + warp; i < d.rows; i += (int64_t)gridDim.x * XENT_WARPS) {
        int32_t label = labels[i];
        if (kelp_xent_label_invalid(&d, label)) {
            acc.invalid = 1;
            continue;
        }
        if (!kelp_xent_label_counts(&d, label))
            continue;
        double nll, smooth;
        softmax_row(&d, logits + i * d.classes, w, label, probs + i * d.classes, lane, &nll, &smooth);
        acc.nll += nll;
        acc.smooth += smooth;
        acc.weight += kelp_xent_class_weight(w, label);
    }
    if (lane == 0)
        warp_part[warp] = acc;
    __syncthreads();
    if (threadIdx.x != 0)
        return;
    xent_partial total = {0.0, 0.0, 0.0, 0};
    for (int k = 0; k < XENT_WARPS; k++) {
        total.nll += warp_part[k].nll;
        total.smooth += warp_part[k].smooth;
        total.weight += warp_part[k].weight;
        total.invalid |= warp_part[k].invalid;
    }
    partials[blockIdx.x] = total;
}

/* Sums the block partials in block order. loss and norm are written only when every label is valid: a failed call
 * leaves them as they were, as the CPU's does (the host learns of the failure from *invalid after the wait).
 * invalid: set to whether a label was out of range, or with `sticky` only ever raised (the deferred flag, which
 * stays up across replays until the host reads it). A deferred failure cannot stop the recorded step, so it makes
 * the loss NaN instead: the step's check (kelp_step_check) then skips the optimizer, and the parameters stay as
 * they were when the host reports the label. */
__global__ void xent_finish_kernel(int blocks, kelp_xent_desc d, const xent_partial *partials, float *loss,
                                   float *norm, int *invalid, bool sticky)
{
    double nll = 0.0, smooth = 0.0, weight = 0.0;
    int bad = 0;
    for (int b = 0; b < blocks; b++) {
        nll += partials[b].nll;
        smooth += partials[b].smooth;
        weight += partials[b].weight;
        bad |= partials[b].invalid;
    }
    if (!sticky || bad)
        *invalid = bad;
    if (bad) {
        if (sticky)
            *loss = NAN;
        return;
    }
    *loss = kelp_xent_loss(&d, nll, smooth, weight);
    *norm = (float)weight;
}

// logits (M,K), labels (M) -> loss (1), probs (M,K) for counted rows, norm (1)
kelp_status cuda_xent_forward(kelp_backend *be, const kelp_xent_desc *d, const void *logits, const int32_t *labels,
                              const float *class_weights, float *loss, float *probs, float *norm)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    int64_t want = (d->rows + XENT_WARPS - 1) / XENT_WARPS;
    int blocks = (int)(want < 1 ? 1 : want < XENT_MAX_BLOCKS ? want : XENT_MAX_BLOCKS);
    char *scratch;
    size_t part = cuda_align((size_t)blocks * sizeof(xent_partial));
    KELP_TRY(cuda_scratch(c, part + sizeof(int), (void **)&scratch));
    xent_partial *partials = (xent_partial *)scratch;
    const bool deferred = cuda_capturing(c);
    int *invalid = deferred ? c->label_flag : (int *)(scratch + part);
    KELP_TRY(cuda_dispatch(d->dtype, "softmax_xent_forward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        xent_rows_kernel<<<blocks, XENT_WARPS * 32, 0, c->stream>>>(*d, (const T *)logits, labels, class_weights,
                                                                    probs, partials);
        KELP_CUDA_LAUNCHED(xent_rows_kernel);
        return KELP_OK;
    }));
    xent_finish_kernel<<<1, 1, 0, c->stream>>>(blocks, *d, partials, loss, norm, invalid, deferred);
    KELP_CUDA_LAUNCHED(xent_finish_kernel);
    if (deferred) {
        c->capture_checks_labels = true;
        c->label_classes = d->classes;
        c->label_ignore_index = d->ignore_index;
        return KELP_OK;
    }
    KELP_CUDA_TRY(cudaMemcpyAsync(c->host_pinned, invalid, sizeof(int), cudaMemcpyDeviceToHost, c->stream));
    KELP_CUDA_TRY(cudaStreamSynchronize(c->stream));
    if (*(const int *)c->host_pinned)
        return kelp_set_error(KELP_ERR_INVALID_ARG,
                              "softmax_cross_entropy: a label is outside [0, %d) and is not the ignore index %d",
                              d->classes, d->ignore_index);
    return KELP_OK;
}

/* w_sum for the backward, one thread in class order as the CPU sums it */
__global__ void xent_weight_sum_kernel(int classes, const float *w, float *out)
{
    *out = kelp_xent_weight_sum(w, classes);
}

// probs (M,K), labels (M) -> dlogits (M,K) +=; dloss and norm are device scalars
template <typename T>
__global__ void xent_backward_kernel(kelp_xent_desc d, const float *probs, const int32_t *labels, const float *w,
                                     const float *norm, const float *dloss, const float *w_sum, T *dlogits)
{
    const int64_t total = d.rows * d.classes;
    const float scale = kelp_xent_grad_scale(*dloss, *norm);
    GRID_STRIDE(i, total)
    {
        int64_t row = i / d.classes;
        int k = (int)(i % d.classes);
        int32_t label = labels[row];
        if (!kelp_xent_label_counts(&d, label))
            continue;
        float g = kelp_xent_grad(&d, probs[i], k == label, kelp_xent_class_weight(w, label),
                                 kelp_xent_class_weight(w, k), *w_sum);
        store(dlogits, i, load(dlogits, i) + scale * g);
    }
}

kelp_status cuda_xent_backward(kelp_backend *be, const kelp_xent_desc *d, const float *probs, const int32_t *labels,
                               const float *class_weights, const float *norm, const float *dloss, void *dlogits)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    int64_t total = d->rows * d->classes;
    if (total <= 0)
        return KELP_OK;
    float *w_sum;
    KELP_TRY(cuda_scratch(c, sizeof(float), (void **)&w_sum));
    xent_weight_sum_kernel<<<1, 1, 0, c->stream>>>(d->classes, class_weights, w_sum);
    KELP_CUDA_LAUNCHED(xent_weight_sum_kernel);
    return cuda_dispatch(d->dtype, "softmax_xent_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        xent_backward_kernel<<<cuda_grid(total), CUDA_THREADS, 0, c->stream>>>(*d, probs, labels, class_weights, norm,
                                                                             dloss, w_sum, (T *)dlogits);
        KELP_CUDA_LAUNCHED(xent_backward_kernel);
        return KELP_OK;
    });
}

/* ---- optimizers ----
 * This step's scalars come from kelp_step_ctl in device memory, so a recorded step reads each step's values. Every
 * thread loads the struct once (a broadcast read) into registers the updates cannot alias. */

__global__ void step_check_kernel(const float *loss, kelp_step_ctl *ctl) { kelp_step_check(ctl, loss); }

kelp_status cuda_step_check(kelp_backend *be, const float *loss, kelp_step_ctl *ctl)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    step_check_kernel<<<1, 1, 0, c->stream>>>(loss, ctl);
    KELP_CUDA_LAUNCHED(step_check_kernel);
    return KELP_OK;
}

__global__ void sgd_kernel(int64_t n, kelp_sgd_params p, const kelp_step_ctl *ctl, float *param, const float *grad,
                           float *buf)
{
    const kelp_step_ctl c = *ctl;
    if (c.skip)
        return;
    GRID_STRIDE(i, n) kelp_sgd_update(&p, &c, &param[i], grad[i], buf ? &buf[i] : NULL);
}

__global__ void adamw_kernel(int64_t n, kelp_adamw_params p, const kelp_step_ctl *ctl, float *param,
                             const float *grad, float *m, float *v)
{
    const kelp_step_ctl c = *ctl;
    if (c.skip)
        return;
    GRID_STRIDE(i, n) kelp_adamw_update(&p, &c, &param[i], grad[i], &m[i], &v[i]);
}

// param, grad, momentum_buf (n); momentum_buf is NULL when momentum is 0
kelp_status cuda_sgd_step(kelp_backend *be, int64_t n, const kelp_sgd_params *p, const kelp_step_ctl *ctl,
                          float *param, const float *grad, float *momentum_buf)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (n <= 0)
        return KELP_OK;
    sgd_kernel<<<cuda_grid(n), CUDA_THREADS, 0, c->stream>>>(n, *p, ctl, param, grad, momentum_buf);
    KELP_CUDA_LAUNCHED(sgd_kernel);
    return KELP_OK;
}

kelp_status cuda_adamw_step(kelp_backend *be, int64_t n, const kelp_adamw_params *p, const kelp_step_ctl *ctl,
                            float *param, const float *grad, float *exp_avg, float *exp_avg_sq)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    if (n <= 0)
        return KELP_OK;
    adamw_kernel<<<cuda_grid(n), CUDA_THREADS, 0, c->stream>>>(n, *p, ctl, param, grad, exp_avg, exp_avg_sq);
    KELP_CUDA_LAUNCHED(adamw_kernel);
    return KELP_OK;
}
