/* Batch norm: the custom kernels (cuda_batchnorm.cu) or cuDNN's, whichever is faster, per shape.
 *
 * cuDNN's calls compute the statistics in float, need every gradient (dx, dgamma, dbeta), accumulate them by
 * blending (beta 1), and have no backward through the running statistics; their saved mean and inverse standard
 * deviation mean what kelp's do, so a forward by one and a backward by the other agree. Their backward is not
 * documented as deterministic. So:
 *   - by default the custom kernels run (deterministic; PyTorch's CPU statistics, double, two passes);
 *   - with autotune and nondeterministic, the first call of a shape (rows, channels) times both forwards and keeps
 *     the faster for the shape, the training backward following the training forward's choice. The timing runs
 *     write y, which the real call then overwrites, and copies of the running statistics, so nothing else changes;
 *   - kelp_cuda_config.batchnorm forces one or the other (test_cuda_ops compares both with the CPU).
 * Training uses CUDNN_BATCHNORM_SPATIAL_PERSISTENT, as PyTorch does for channels-last inputs; inference SPATIAL.
 * A shape is given to cuDNN as N=1, C, H=rows, W=1 in NHWC, the same memory as (N, H, W, C): the statistics are
 * over N*H*W either way, and cuDNN's batch-norm kernels limit N (PyTorch keeps N at most 65535 in inference and
 * 880801 in training for them), not H.
 *
 * 16-bit storage (BF16, F16) always runs the custom kernels. cuDNN's legacy batch-norm calls are documented for
 * half x/y with float parameters, but bf16 support there is not something we could confirm from cuDNN's headers or
 * documentation, and PyTorch's backend selection (aten/src/ATen/native/Normalization.cpp) never gives bf16 to
 * cuDNN's batch norm. The custom kernels take every storage type with the statistics in double, so one path, the one
 * the CPU backend mirrors, serves all of them; the choice cache below therefore only ever sees fp32 shapes. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_internal.h"

enum { CHOICE_UNKNOWN = -1, CHOICE_CUSTOM = 0, CHOICE_CUDNN = 1 };
#define TIMED_RUNS 3

/* The descriptors of one call: the data (1, C, rows, 1) NHWC and the derived per-channel one. */
typedef struct bn_descs {
    cudnnTensorDescriptor_t x, channel;
} bn_descs;

static void destroy_descs(bn_descs *d)
{
    if (d->x)
        cudnnDestroyTensorDescriptor(d->x);
    if (d->channel)
        cudnnDestroyTensorDescriptor(d->channel);
}

static kelp_status make_descs(int64_t rows, int c, cudnnBatchNormMode_t mode, bn_descs *d)
{
    memset(d, 0, sizeof *d);
    KELP_CUDNN_TRY(cudnnCreateTensorDescriptor(&d->x));
    KELP_CUDNN_TRY(cudnnCreateTensorDescriptor(&d->channel));
    KELP_CUDNN_TRY(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, c, (int)rows, 1));
    KELP_CUDNN_TRY(cudnnDeriveBNTensorDescriptor(d->channel, d->x, mode));
    return KELP_OK;
}

static kelp_status cudnn_forward_train(cuda_impl *ci, int64_t rows, int c, const float *x, const float *gamma,
                                       const float *beta, float *running_mean, float *running_var, float momentum,
                                       float eps, float *y, float *save_mean, float *save_invstd)
{
    const cudnnBatchNormMode_t mode = CUDNN_BATCHNORM_SPATIAL_PERSISTENT;
    bn_descs d;
    kelp_status s = make_descs(rows, c, mode, &d);
    const float one = 1.0f, zero = 0.0f;
    if (s == KELP_OK) {
        cudnnStatus_t e = cudnnBatchNormalizationForwardTraining(
            ci->cudnn, mode, &one, &zero, d.x, x, d.x, y, d.channel, gamma, beta, (double)momentum, running_mean,
            running_var, (double)eps, save_mean, save_invstd);
        if (e != CUDNN_STATUS_SUCCESS)
            s = KELP_CUDA_FAIL_("cudnnBatchNormalizationForwardTraining", cudnnGetErrorString(e));
    }
    destroy_descs(&d);
    return s;
}

static kelp_status cudnn_forward_infer(cuda_impl *ci, int64_t rows, int c, const float *x, const float *gamma,
                                       const float *beta, const float *running_mean, const float *running_var,
                                       float eps, float *y)
{
    const cudnnBatchNormMode_t mode = CUDNN_BATCHNORM_SPATIAL;
    bn_descs d;
    kelp_status s = make_descs(rows, c, mode, &d);
    const float one = 1.0f, zero = 0.0f;
    if (s == KELP_OK) {
        cudnnStatus_t e = cudnnBatchNormalizationForwardInference(ci->cudnn, mode, &one, &zero, d.x, x, d.x, y,
                                                                  d.channel, gamma, beta, running_mean, running_var,
                                                                  (double)eps);
        if (e != CUDNN_STATUS_SUCCESS)
            s = KELP_CUDA_FAIL_("cudnnBatchNormalizationForwardInference", cudnnGetErrorString(e));
    }
    destroy_descs(&d);
    return s;
}

/* dx, dgamma, dbeta += (blending with beta 1); every gradient must be given; eps is the forward's, as cuDNN asks. */
static kelp_status cudnn_backward(cuda_impl *ci, int64_t rows, int c, const float *x, const float *dy,
                                  const float *gamma, const float *save_mean, const float *save_invstd, float eps,
                                  float *dx, float *dgamma, float *dbeta)
{
    const cudnnBatchNormMode_t mode = CUDNN_BATCHNORM_SPATIAL_PERSISTENT;
    bn_descs d;
    kelp_status s = make_descs(rows, c, mode, &d);
    const float one = 1.0f;
    if (s == KELP_OK) {
        cudnnStatus_t e = cudnnBatchNormalizationBackward(ci->cudnn, mode, &one, &one, &one, &one, d.x, x, d.x, dy,
                                                          d.x, dx, d.channel, gamma, dgamma, dbeta, (double)eps,
                                                          save_mean, save_invstd);
        if (e != CUDNN_STATUS_SUCCESS)
            s = KELP_CUDA_FAIL_("cudnnBatchNormalizationBackward", cudnnGetErrorString(e));
    }
    destroy_descs(&d);
    return s;
}

/* The shape's entry, added (undecided) when new. */
static kelp_status choice_of(cuda_impl *ci, int64_t rows, int c, cuda_bn_choice **out)
{
    for (int i = 0; i < ci->n_bn; i++)
        if (ci->bn_choices[i].rows == rows && ci->bn_choices[i].c == c) {
            *out = &ci->bn_choices[i];
            return KELP_OK;
        }
    if (ci->n_bn == ci->cap_bn) {
        int cap = ci->cap_bn ? 2 * ci->cap_bn : 32;
        cuda_bn_choice *grown = (cuda_bn_choice *)realloc(ci->bn_choices, (size_t)cap * sizeof *grown);
        if (!grown)
            return kelp_set_error(KELP_ERR_NO_MEMORY, "batch_norm (cuda): out of host memory for the choice cache");
        ci->bn_choices = grown;
        ci->cap_bn = cap;
    }
    cuda_bn_choice *e = &ci->bn_choices[ci->n_bn++];
    *e = (cuda_bn_choice){rows, c, CHOICE_UNKNOWN, CHOICE_UNKNOWN};
    *out = e;
    return KELP_OK;
}

/* Milliseconds of TIMED_RUNS calls of `run`, after one untimed call (first-call costs: module loading, cuDNN's
 * own setup), between two events on the compute stream (waits for the device). */
template <typename Run> static kelp_status time_runs(cuda_impl *ci, Run run, float *ms)
{
    cudaEvent_t start = NULL, stop = NULL;
    kelp_status s = run();
    if (s == KELP_OK && (cudaEventCreate(&start) != cudaSuccess || cudaEventCreate(&stop) != cudaSuccess ||
                         cudaEventRecord(start, ci->stream) != cudaSuccess))
        s = kelp_set_error(KELP_ERR_BACKEND, "batch_norm (cuda): cannot create or record timing events");
    for (int i = 0; s == KELP_OK && i < TIMED_RUNS; i++)
        s = run();
    if (s == KELP_OK && (cudaEventRecord(stop, ci->stream) != cudaSuccess || cudaEventSynchronize(stop) != cudaSuccess ||
                         cudaEventElapsedTime(ms, start, stop) != cudaSuccess))
        s = kelp_set_error(KELP_ERR_BACKEND, "batch_norm (cuda): timing failed");
    if (start)
        cudaEventDestroy(start);
    if (stop)
        cudaEventDestroy(stop);
    cudaGetLastError();
    return s;
}

/* Whether cuDNN may run this shape at all, and whether the backend leaves the choice to a measurement. */
/* cuDNN's dimensions are ints, and some of its kernels index with 32 bits */
static bool cudnn_applies(const cuda_impl *ci, int64_t rows, int c)
{
    return rows * c < 0x7fffffff && ci->batchnorm != KELP_CUDA_BN_CUSTOM;
}

static bool measured(const cuda_impl *ci)
{
    return ci->batchnorm == KELP_CUDA_BN_AUTO && ci->autotune && !ci->deterministic;
}

/* A fixed choice, or CHOICE_UNKNOWN when the shape is to be measured. */
static signed char fixed_choice(const cuda_impl *ci, int64_t rows, int c)
{
    if (!cudnn_applies(ci, rows, c))
        return CHOICE_CUSTOM;
    if (ci->batchnorm == KELP_CUDA_BN_CUDNN)
        return CHOICE_CUDNN;
    return measured(ci) ? CHOICE_UNKNOWN : CHOICE_CUSTOM;
}

kelp_status cuda_bn_forward_train(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x_,
                                  const float *gamma, const float *beta, float *running_mean, float *running_var,
                                  float momentum, float eps, void *y_, float *save_mean, float *save_invstd)
{
    cuda_impl *ci;
    KELP_TRY(cuda_enter(be, &ci));
    if (rows <= 0 || c <= 0)
        return KELP_OK;
    if (dt != KELP_F32) /* 16-bit storage: the custom kernels (see the top of this file) */
        return cuda_bn_custom_forward_train(be, dt, rows, c, x_, gamma, beta, running_mean, running_var, momentum, eps,
                                            y_, save_mean, save_invstd);
    const float *x = (const float *)x_;
    float *y = (float *)y_;
    cuda_bn_choice *choice;
    KELP_TRY(choice_of(ci, rows, c, &choice));
    if (choice->train == CHOICE_UNKNOWN)
        choice->train = fixed_choice(ci, rows, c);
    if (choice->train == CHOICE_UNKNOWN && cuda_capturing(ci)) /* no waiting now: measured at a later call */
        return cuda_bn_custom_forward_train(be, KELP_F32, rows, c, x, gamma, beta, running_mean, running_var,
                                            momentum, eps, y, save_mean, save_invstd);
    if (choice->train == CHOICE_UNKNOWN) {
        /* the trials update copies of the running statistics: two vectors of C, allocated once per shape */
        float *stats = NULL;
        KELP_TRY(cuda_alloc_impl(ci, 2 * (size_t)c * sizeof(float), (void **)&stats));
        float custom_ms = 0, cudnn_ms = 0;
        kelp_status s = KELP_OK;
        if (cudaMemcpyAsync(stats, running_mean, (size_t)c * sizeof(float), cudaMemcpyDeviceToDevice, ci->stream) !=
                cudaSuccess ||
            cudaMemcpyAsync(stats + c, running_var, (size_t)c * sizeof(float), cudaMemcpyDeviceToDevice, ci->stream) !=
                cudaSuccess)
            s = kelp_set_error(KELP_ERR_BACKEND, "batch_norm (cuda): cannot copy the running statistics to time");
        if (s == KELP_OK)
            s = time_runs(ci, [&] {
                return cuda_bn_custom_forward_train(be, KELP_F32, rows, c, x, gamma, beta, stats, stats + c, momentum,
                                                    eps, y, save_mean, save_invstd);
            }, &custom_ms);
        if (s == KELP_OK)
            s = time_runs(ci, [&] {
                return cudnn_forward_train(ci, rows, c, x, gamma, beta, stats, stats + c, momentum, eps, y, save_mean,
                                           save_invstd);
            }, &cudnn_ms);
        cuda_free_impl(ci, stats);
        /* a cuDNN that fails on this shape loses the race */
        choice->train = s == KELP_OK && cudnn_ms < custom_ms ? CHOICE_CUDNN : CHOICE_CUSTOM;
    }
    if (choice->train == CHOICE_CUDNN)
        return cudnn_forward_train(ci, rows, c, x, gamma, beta, running_mean, running_var, momentum, eps, y,
                                   save_mean, save_invstd);
    return cuda_bn_custom_forward_train(be, KELP_F32, rows, c, x, gamma, beta, running_mean, running_var, momentum,
                                        eps, y, save_mean, save_invstd);
}

kelp_status cuda_bn_forward_infer(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x_,
                                  const float *gamma, const float *beta, const float *running_mean,
                                  const float *running_var, float eps, void *y_)
{
    cuda_impl *ci;
    KELP_TRY(cuda_enter(be, &ci));
    if (rows <= 0 || c <= 0)
        return KELP_OK;
    if (dt != KELP_F32)
        return cuda_bn_custom_forward_infer(be, dt, rows, c, x_, gamma, beta, running_mean, running_var, eps, y_);
    const float *x = (const float *)x_;
    float *y = (float *)y_;
    cuda_bn_choice *choice;
    KELP_TRY(choice_of(ci, rows, c, &choice));
    if (choice->infer == CHOICE_UNKNOWN)
        choice->infer = fixed_choice(ci, rows, c);
    if (choice->infer == CHOICE_UNKNOWN && cuda_capturing(ci)) /* no waiting now: measured at a later call */
        return cuda_bn_custom_forward_infer(be, KELP_F32, rows, c, x, gamma, beta, running_mean, running_var, eps, y);
    if (choice->infer == CHOICE_UNKNOWN) {
        float custom_ms = 0, cudnn_ms = 0;
        kelp_status s = time_runs(ci, [&] {
            return cuda_bn_custom_forward_infer(be, KELP_F32, rows, c, x, gamma, beta, running_mean, running_var, eps,
                                                y);
        }, &custom_ms);
        if (s == KELP_OK)
            s = time_runs(ci, [&] {
                return cudnn_forward_infer(ci, rows, c, x, gamma, beta, running_mean, running_var, eps, y);
            }, &cudnn_ms);
        choice->infer = s == KELP_OK && cudnn_ms < custom_ms ? CHOICE_CUDNN : CHOICE_CUSTOM;
    }
    if (choice->infer == CHOICE_CUDNN)
        return cudnn_forward_infer(ci, rows, c, x, gamma, beta, running_mean, running_var, eps, y);
    return cuda_bn_custom_forward_infer(be, KELP_F32, rows, c, x, gamma, beta, running_mean, running_var, eps, y);
}

/* The training forward's choice, where cuDNN can do what is asked: all three gradients. */
kelp_status cuda_bn_backward(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x_, const void *dy_,
                             const float *gamma, const float *save_mean, const float *save_invstd, float eps, void *dx_,
                             float *dgamma, float *dbeta)
{
    cuda_impl *ci;
    KELP_TRY(cuda_enter(be, &ci));
    if (rows <= 0 || c <= 0)
        return KELP_OK;
    if (dt != KELP_F32)
        return cuda_bn_custom_backward(be, dt, rows, c, x_, dy_, gamma, save_mean, save_invstd, dx_, dgamma, dbeta);
    const float *x = (const float *)x_, *dy = (const float *)dy_;
    float *dx = (float *)dx_;
    cuda_bn_choice *choice;
    KELP_TRY(choice_of(ci, rows, c, &choice));
    signed char train = choice->train == CHOICE_UNKNOWN ? fixed_choice(ci, rows, c) : choice->train;
    if (train == CHOICE_CUDNN && dx && dgamma && dbeta)
        return cudnn_backward(ci, rows, c, x, dy, gamma, save_mean, save_invstd, eps, dx, dgamma, dbeta);
    return cuda_bn_custom_backward(be, KELP_F32, rows, c, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
}
