/* The CUDA backend against the CPU backend, op by op: the same random inputs on both, outputs compared within fp32
 * tolerances (NaN never passes). Outputs that an op overwrites are poisoned with NaN first, so an element the GPU
 * forgets to write fails; outputs that an op accumulates into start from the same random values on both sides, so
 * a kernel that overwrites instead of adding fails too.
 *
 * Without CUDA in the build or without a visible device the test prints "SKIPPED: no CUDA device" and passes: CI
 * machines have no GPU, and the skip must show in the log rather than pass silently. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref/test_util.h"

#if KELP_HAVE_CUDA
#include "engine/graph_internal.h"
#include "engine/optimizer.h"
#include "engine/train_step.h"
#include "kernels/cuda/backend_cuda.h"
#include "kernels/cuda/device_info.h"
#include "kernels/ops/conv.h"
#include "kernels/ops/half.h"
#include "kernels/ops/optim.h"

static kelp_backend *gpu;

/* fp32 against fp32 with a different summation order (and FMA contraction on the device) */
#define RTOL 1e-5
#define ATOL 1e-5
/* sums of a hundred products or more: convolution and GEMM */
#define RTOL_SUM 1e-4
#define ATOL_SUM 1e-4
/* TF32 tensor-core products (allow_tf32) */
#define RTOL_TF32 1e-3
#define ATOL_TF32 1e-2

static kelp_backend *cpu(void) { return test_cpu_backend(); }

/* ---- host and device buffers ---- */

static float *host_alloc(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    assert_non_null(p);
    return p;
}

static float *host_random(size_t n, uint64_t seed, float lo, float hi)
{
    float *p = host_alloc(n);
    test_fill_uniform(p, n, seed, lo, hi);
    return p;
}

static float *host_copy(const float *src, size_t n)
{
    float *p = host_alloc(n);
    memcpy(p, src, n * sizeof(float));
    return p;
}

static float *host_nan(size_t n)
{
    float *p = host_alloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
    return p;
}

static void *dev_alloc(size_t bytes)
{
    void *p = NULL;
    TEST_OK(gpu->iface->alloc(gpu, bytes, &p));
    return p;
}

static void *dev_from_bytes(const void *host, size_t bytes)
{
    void *p = dev_alloc(bytes);
    TEST_OK(gpu->iface->upload(gpu, p, host, bytes));
    return p;
}

static float *dev_from(const float *host, size_t n) { return dev_from_bytes(host, n * sizeof(float)); }

static float *dev_nan(size_t n)
{
    float *h = host_nan(n);
    float *d = dev_from(h, n);
    free(h);
    return d;
}

static void dev_free(void *p) { gpu->iface->free(gpu, p); }

/* Buffers are uploaded and downloaded on `gpu`'s stream; another backend computes on its own. Before it reads them
 * the uploads must be done, and before they are compared its work must be: each stream waits for the other. */
static void handover(kelp_backend *from, kelp_backend *to)
{
    if (from != to)
        TEST_OK(from->iface->synchronize(from));
}

/* Downloads n floats of `dev` and compares them with the CPU's `want`. */
static void expect_close(const float *dev, const float *want, size_t n, double rtol, double atol, const char *what)
{
    float *got = host_alloc(n);
    TEST_OK(gpu->iface->download(gpu, got, dev, n * sizeof(float)));
    test_assert_close_f(got, want, n, rtol, atol, what);
    free(got);
}

static void expect_equal_bytes(const void *dev, const void *want, size_t bytes, const char *what)
{
    unsigned char *got = malloc(bytes ? bytes : 1);
    assert_non_null(got);
    TEST_OK(gpu->iface->download(gpu, got, dev, bytes));
    for (size_t i = 0; i < bytes; i++)
        if (got[i] != ((const unsigned char *)want)[i])
            fail_msg("%s: byte %zu is %u on the GPU, %u on the CPU", what, i, got[i], ((const unsigned char *)want)[i]);
    free(got);
}

/* ---- memory ---- */

static void test_memory_round_trip(void **state)
{
    (void)state;
    const size_t n = 1000;
    float *h = host_random(n, 1, -1, 1);
    float *d = dev_from(h, n);
    expect_close(d, h, n, 0, 0, "upload/download");
    /* overlapping copy: memmove semantics, as on the CPU */
    float *want = host_copy(h, n);
    memmove(want + 10, want, 500 * sizeof(float));
    TEST_OK(gpu->iface->copy(gpu, d + 10, d, 500 * sizeof(float)));
    expect_close(d, want, n, 0, 0, "overlapping copy");
    float *d2 = dev_nan(n);
    TEST_OK(gpu->iface->copy(gpu, d2, d, n * sizeof(float)));
    expect_close(d2, want, n, 0, 0, "copy");
    TEST_OK(gpu->iface->memset(gpu, d2, 0, 100 * sizeof(float)));
    memset(want, 0, 100 * sizeof(float));
    expect_close(d2, want, n, 0, 0, "memset");
    TEST_OK(gpu->iface->synchronize(gpu));
    /* a freed block is reused for the same size class rather than reallocated, and the figures follow */
    kelp_device_memory before, freed, after;
    gpu->iface->memory_stats(gpu, &before);
    dev_free(d2);
    gpu->iface->memory_stats(gpu, &freed);
    float *d3 = dev_alloc(n * sizeof(float));
    gpu->iface->memory_stats(gpu, &after);
    assert_ptr_equal(d3, d2);
    assert_true(freed.in_use + n * sizeof(float) <= before.in_use);
    assert_int_equal(after.in_use, before.in_use);
    assert_int_equal(after.reserved, before.reserved);
    assert_true(after.peak >= after.in_use && after.reserved >= after.in_use);
    dev_free(d3);
    /* a counter in device memory counts there */
    int64_t count = 41;
    int64_t *g_count = dev_from_bytes(&count, sizeof count);
    TEST_OK(gpu->iface->counter_add(gpu, g_count, 1));
    TEST_OK(gpu->iface->counter_add(gpu, g_count, -3));
    TEST_OK(gpu->iface->download(gpu, &count, g_count, sizeof count));
    assert_int_equal(count, 39);
    dev_free(g_count);
    dev_free(d);
    free(h);
    free(want);
}

/* ---- GEMM ---- */

static void test_gemm(void **state)
{
    (void)state;
    const int m = 37, n = 29, k = 53;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int lda = ta ? m + 3 : k + 3, ldb = tb ? k + 2 : n + 2, ldc = n + 1;
            size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
            float *a = host_random(na, 10 + ta, -1, 1), *b = host_random(nb, 20 + tb, -1, 1);
            float *c = host_random(nc, 30, -1, 1);
            float *da = dev_from(a, na), *db = dev_from(b, nb), *dc = dev_from(c, nc);
            TEST_OK(cpu()->iface->gemm(cpu(), KELP_F32, ta, tb, m, n, k, 0.7f, a, lda, b, ldb, 0.5f, c, ldc));
            TEST_OK(gpu->iface->gemm(gpu, KELP_F32, ta, tb, m, n, k, 0.7f, da, lda, db, ldb, 0.5f, dc, ldc));
            char what[64];
            snprintf(what, sizeof what, "gemm ta=%d tb=%d", ta, tb);
            expect_close(dc, c, nc, RTOL_SUM, ATOL_SUM, what);
            dev_free(da);
            dev_free(db);
            dev_free(dc);
            free(a);
            free(b);
            free(c);
        }
}

/* ---- convolution ---- */

static kelp_conv_desc conv_desc(int n, int h, int w, int c, int k, int r, int s, int stride, int pad, int dil,
                                int groups)
{
    kelp_conv_desc d = {n, h, w, c, k, r, s, stride, stride, pad, pad, dil, dil, groups, 0, 0, KELP_F32};
    d.oh = (int)kelp_conv_out_size(h, r, stride, pad, dil);
    d.ow = (int)kelp_conv_out_size(w, s, stride, pad, dil);
    return d;
}

/* Forward, backward data and backward filter of d on `be` and on the CPU, compared within rtol/atol; the GPU's
 * workspace is `gpu_ws` bytes (the planned size of d or of a larger batch). */
static void check_conv_on(kelp_backend *be, const kelp_conv_desc *d, size_t gpu_ws, uint64_t seed, const char *name,
                          double rtol, double atol)
{
    size_t nx = (size_t)d->n * d->h * d->w * d->c, nw = (size_t)d->k * d->r * d->s * (d->c / d->groups);
    size_t ny = (size_t)d->n * d->oh * d->ow * d->k;
    float *x = host_random(nx, seed, -1, 1), *w = host_random(nw, seed + 1, -1, 1);
    float *bias = host_random((size_t)d->k, seed + 2, -1, 1), *dy = host_random(ny, seed + 3, -1, 1);
    float *dx = host_random(nx, seed + 4, -1, 1), *dw = host_random(nw, seed + 5, -1, 1);
    float *db = host_random((size_t)d->k, seed + 6, -1, 1), *y = host_nan(ny);
    float *g_x = dev_from(x, nx), *g_w = dev_from(w, nw), *g_b = dev_from(bias, (size_t)d->k);
    float *g_dy = dev_from(dy, ny), *g_dx = dev_from(dx, nx), *g_dw = dev_from(dw, nw);
    float *g_db = dev_from(db, (size_t)d->k), *g_y = dev_nan(ny);
    size_t cpu_ws = 0;
    TEST_OK(cpu()->iface->conv2d_workspace(cpu(), d, &cpu_ws));
    void *ws = cpu_ws ? aligned_alloc(64, (cpu_ws + 63) & ~(size_t)63) : NULL;
    void *g_ws = gpu_ws ? dev_alloc(gpu_ws) : NULL;
    handover(gpu, be);

    TEST_OK(cpu()->iface->conv2d_forward(cpu(), d, x, w, bias, y, ws));
    TEST_OK(be->iface->conv2d_forward(be, d, g_x, g_w, g_b, g_y, g_ws));
    handover(be, gpu);
    char what[96];
    snprintf(what, sizeof what, "%s forward", name);
    expect_close(g_y, y, ny, rtol, atol, what);

    TEST_OK(cpu()->iface->conv2d_backward_data(cpu(), d, dy, w, dx, ws));
    TEST_OK(be->iface->conv2d_backward_data(be, d, g_dy, g_w, g_dx, g_ws));
    handover(be, gpu);
    snprintf(what, sizeof what, "%s backward data (accumulated)", name);
    expect_close(g_dx, dx, nx, rtol, atol, what);

    TEST_OK(cpu()->iface->conv2d_backward_filter(cpu(), d, x, dy, dw, db, ws));
    TEST_OK(be->iface->conv2d_backward_filter(be, d, g_x, g_dy, g_dw, g_db, g_ws));
    handover(be, gpu);
    snprintf(what, sizeof what, "%s backward filter (accumulated)", name);
    expect_close(g_dw, dw, nw, rtol, atol, what);
    snprintf(what, sizeof what, "%s bias gradient (accumulated)", name);
    expect_close(g_db, db, (size_t)d->k, rtol, atol, what);

    void *bufs[] = {g_x, g_w, g_b, g_dy, g_dx, g_dw, g_db, g_y, g_ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        dev_free(bufs[i]);
    free(x), free(w), free(bias), free(dy), free(dx), free(dw), free(db), free(y), free(ws);
}

static void check_conv(const kelp_conv_desc *d, size_t gpu_ws, uint64_t seed, const char *name)
{
    check_conv_on(gpu, d, gpu_ws, seed, name, RTOL_SUM, ATOL_SUM);
}

/* The convolution shapes of every model kind: plain, strided, pointwise, grouped, depthwise, dilated, a stem. */
static void check_conv_cases(kelp_backend *be, double rtol, double atol)
{
    struct {
        const char *name;
        kelp_conv_desc d;
    } cases[] = {
        {"3x3", conv_desc(2, 9, 7, 16, 24, 3, 3, 1, 1, 1, 1)},
        {"3x3 stride 2", conv_desc(2, 11, 10, 8, 12, 3, 3, 2, 1, 1, 1)},
        {"1x1", conv_desc(3, 5, 6, 32, 16, 1, 1, 1, 0, 1, 1)},
        {"grouped", conv_desc(2, 8, 8, 16, 8, 3, 3, 1, 1, 1, 4)},
        {"depthwise stride 2", conv_desc(2, 9, 9, 24, 24, 3, 3, 2, 1, 1, 24)},
        {"dilated", conv_desc(1, 12, 10, 8, 8, 3, 3, 1, 2, 2, 1)},
        {"7x7 stem", conv_desc(2, 20, 18, 3, 16, 7, 7, 2, 3, 1, 1)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t ws = 0;
        TEST_OK(be->iface->conv2d_workspace(be, &cases[i].d, &ws));
        check_conv_on(be, &cases[i].d, ws, 100 + 10 * i, cases[i].name, rtol, atol);
    }
}

static void test_conv(void **state)
{
    (void)state;
    check_conv_cases(gpu, RTOL_SUM, ATOL_SUM);
}

/* TF32 products keep 10 mantissa bits: about 1e-3 relative per product, and a sum of a few hundred products of
 * values in [-1, 1] (magnitudes of about 5) stays within 1e-2 absolute. The algorithms are timed (cudnnFind) and
 * may be non-deterministic, so this also runs the choices the fp32 default never makes. */
static void test_conv_tf32_autotuned(void **state)
{
    (void)state;
    kelp_cuda_config config = {.deterministic = false, .allow_tf32 = true, .autotune = true};
    kelp_backend *fast = NULL;
    TEST_OK(kelp_backend_cuda_create(0, &config, &fast));
    check_conv_cases(fast, RTOL_TF32, ATOL_TF32);
    kelp_backend_destroy(fast);
}

/* Inference fusion: a batch norm (after a biased convolution) folded into per-channel scale and shift on each
 * backend, then the convolution with that epilogue and each clamp, against the CPU's. */
static void test_conv_fused(void **state)
{
    (void)state;
    kelp_conv_desc d = conv_desc(2, 9, 7, 16, 24, 3, 3, 1, 1, 1, 1);
    const int k = d.k;
    float *gamma = host_random(k, 500, 0.5f, 1.5f), *beta = host_random(k, 501, -1, 1);
    float *mean = host_random(k, 502, -1, 1), *var = host_random(k, 503, 0.5f, 2), *bias = host_random(k, 504, -1, 1);
    float *scale = host_nan(k), *shift = host_nan(k);
    TEST_OK(cpu()->iface->batchnorm_fold(cpu(), k, gamma, beta, mean, var, 1e-5f, bias, scale, shift));
    float *g_gamma = dev_from(gamma, k), *g_beta = dev_from(beta, k), *g_mean = dev_from(mean, k);
    float *g_var = dev_from(var, k), *g_bias = dev_from(bias, k), *g_scale = dev_nan(k), *g_shift = dev_nan(k);
    TEST_OK(gpu->iface->batchnorm_fold(gpu, k, g_gamma, g_beta, g_mean, g_var, 1e-5f, g_bias, g_scale, g_shift));
    expect_close(g_scale, scale, k, RTOL, ATOL, "batchnorm_fold scale");
    expect_close(g_shift, shift, k, RTOL, ATOL, "batchnorm_fold shift");

    size_t nx = (size_t)d.n * d.h * d.w * d.c, nw = (size_t)d.k * d.r * d.s * d.c, ny = (size_t)d.n * d.oh * d.ow * k;
    float *x = host_random(nx, 505, -1, 1), *w = host_random(nw, 506, -1, 1), *y = host_nan(ny);
    float *g_x = dev_from(x, nx), *g_w = dev_from(w, nw), *g_y = dev_nan(ny);
    size_t cpu_ws = 0, gpu_ws = 0;
    TEST_OK(cpu()->iface->conv2d_workspace(cpu(), &d, &cpu_ws));
    TEST_OK(gpu->iface->conv2d_workspace(gpu, &d, &gpu_ws));
    void *ws = cpu_ws ? aligned_alloc(64, (cpu_ws + 63) & ~(size_t)63) : NULL;
    void *g_ws = gpu_ws ? dev_alloc(gpu_ws) : NULL;
    const kelp_clamp_kind clamps[] = {KELP_CLAMP_NONE, KELP_CLAMP_RELU, KELP_CLAMP_RELU6};
    for (size_t i = 0; i < sizeof clamps / sizeof clamps[0]; i++) {
        kelp_conv_epilogue ep = {scale, shift, clamps[i]}, g_ep = {g_scale, g_shift, clamps[i]};
        TEST_OK(cpu()->iface->conv2d_forward_fused(cpu(), &d, x, w, &ep, y, ws));
        TEST_OK(gpu->iface->conv2d_forward_fused(gpu, &d, g_x, g_w, &g_ep, g_y, g_ws));
        char what[64];
        snprintf(what, sizeof what, "fused convolution, clamp %d", (int)clamps[i]);
        expect_close(g_y, y, ny, RTOL_SUM, ATOL_SUM, what);
    }
    void *bufs[] = {g_gamma, g_beta, g_mean, g_var, g_bias, g_scale, g_shift, g_x, g_w, g_y, g_ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        dev_free(bufs[i]);
    free(gamma), free(beta), free(mean), free(var), free(bias), free(scale), free(shift);
    free(x), free(w), free(y), free(ws);
}

/* kelp_graph_set_batch: a graph planned for batch 4 runs batch 3 in the workspace it planned */
static void test_conv_smaller_batch_fits_plan(void **state)
{
    (void)state;
    kelp_conv_desc planned = conv_desc(4, 14, 14, 32, 32, 3, 3, 1, 1, 1, 1);
    size_t ws = 0;
    TEST_OK(gpu->iface->conv2d_workspace(gpu, &planned, &ws));
    kelp_conv_desc run = planned;
    run.n = 3;
    check_conv(&run, ws, 300, "batch 3 of a batch-4 plan");
}

/* Two graphs on one backend: one planned batch 2 of a geometry first, then another plans batch 6 of it and may
 * run batch 2 with the first one's choice, so its workspace covers that choice too, and batch 2 runs in it. */
static void test_conv_workspace_covers_smaller_choices(void **state)
{
    (void)state;
    kelp_conv_desc small = conv_desc(2, 28, 28, 16, 24, 5, 5, 1, 2, 1, 1), large = small;
    large.n = 6;
    size_t ws_small = 0, ws_large = 0;
    TEST_OK(gpu->iface->conv2d_workspace(gpu, &small, &ws_small));
    TEST_OK(gpu->iface->conv2d_workspace(gpu, &large, &ws_large));
    assert_true(ws_large >= ws_small);
    check_conv(&small, ws_large, 310, "batch 2 in the workspace of a batch-6 plan made after it");
}

/* ---- bias, batch norm ---- */

static void test_bias(void **state)
{
    (void)state;
    const int64_t rows = 1000;
    const int c = 37;
    size_t n = (size_t)rows * c;
    float *bias = host_random(c, 1, -1, 1), *y = host_random(n, 2, -1, 1), *db = host_random(c, 3, -1, 1);
    float *g_bias = dev_from(bias, c), *g_y = dev_from(y, n), *g_db = dev_from(db, c);
    TEST_OK(cpu()->iface->bias_add(cpu(), KELP_F32, rows, c, bias, y));
    TEST_OK(gpu->iface->bias_add(gpu, KELP_F32, rows, c, g_bias, g_y));
    expect_close(g_y, y, n, RTOL, ATOL, "bias_add");
    TEST_OK(cpu()->iface->bias_backward(cpu(), KELP_F32, rows, c, y, db));
    TEST_OK(gpu->iface->bias_backward(gpu, KELP_F32, rows, c, g_y, g_db));
    expect_close(g_db, db, c, RTOL, ATOL, "bias_backward");
    dev_free(g_bias), dev_free(g_y), dev_free(g_db);
    free(bias), free(y), free(db);
}

/* Every batch-norm op on `be` against the CPU, within rtol/atol. */
static void check_batchnorm_on(kelp_backend *be, int64_t rows, int c, uint64_t seed, double rtol, double atol)
{
    size_t n = (size_t)rows * c;
    /* a mean well away from 0 next to the spread: the centred two-pass statistics matter */
    float *x = host_random(n, seed, 2, 4), *dy = host_random(n, seed + 1, -1, 1);
    float *gamma = host_random(c, seed + 2, 0.5f, 1.5f), *beta = host_random(c, seed + 3, -1, 1);
    float *rm = host_random(c, seed + 4, -1, 1), *rv = host_random(c, seed + 5, 0.5f, 2);
    float *dx = host_random(n, seed + 6, -1, 1), *dg = host_random(c, seed + 7, -1, 1);
    float *dbeta = host_random(c, seed + 8, -1, 1);
    float *y = host_nan(n), *sm = host_nan(c), *si = host_nan(c);
    float *g_x = dev_from(x, n), *g_dy = dev_from(dy, n), *g_gamma = dev_from(gamma, c), *g_beta = dev_from(beta, c);
    float *g_rm = dev_from(rm, c), *g_rv = dev_from(rv, c), *g_dx = dev_from(dx, n), *g_dg = dev_from(dg, c);
    float *g_dbeta = dev_from(dbeta, c), *g_y = dev_nan(n), *g_sm = dev_nan(c), *g_si = dev_nan(c);
    float *y2 = host_nan(n);
    float *g_y2 = dev_nan(n);
    const float momentum = 0.1f, eps = 1e-5f;
    handover(gpu, be);

    TEST_OK(cpu()->iface->batchnorm_forward_train(cpu(), KELP_F32, rows, c, x, gamma, beta, rm, rv, momentum, eps, y,
                                                  sm, si));
    TEST_OK(be->iface->batchnorm_forward_train(be, KELP_F32, rows, c, g_x, g_gamma, g_beta, g_rm, g_rv, momentum, eps,
                                               g_y, g_sm, g_si));
    handover(be, gpu);
    expect_close(g_y, y, n, rtol, atol, "batchnorm train y");
    expect_close(g_sm, sm, c, rtol, atol, "batchnorm save_mean");
    expect_close(g_si, si, c, rtol, atol, "batchnorm save_invstd");
    expect_close(g_rm, rm, c, rtol, atol, "batchnorm running_mean");
    expect_close(g_rv, rv, c, rtol, atol, "batchnorm running_var");

    TEST_OK(cpu()->iface->batchnorm_backward(cpu(), KELP_F32, rows, c, x, dy, gamma, sm, si, eps, dx, dg, dbeta));
    TEST_OK(be->iface->batchnorm_backward(be, KELP_F32, rows, c, g_x, g_dy, g_gamma, g_sm, g_si, eps, g_dx, g_dg,
                                          g_dbeta));
    handover(be, gpu);
    expect_close(g_dx, dx, n, rtol, atol, "batchnorm backward dx");
    expect_close(g_dg, dg, c, rtol, atol, "batchnorm backward dgamma");
    expect_close(g_dbeta, dbeta, c, rtol, atol, "batchnorm backward dbeta");
    /* parameters without gradient: dx only */
    TEST_OK(cpu()->iface->batchnorm_backward(cpu(), KELP_F32, rows, c, x, dy, gamma, sm, si, eps, dx, NULL, NULL));
    TEST_OK(be->iface->batchnorm_backward(be, KELP_F32, rows, c, g_x, g_dy, g_gamma, g_sm, g_si, eps, g_dx, NULL,
                                          NULL));
    handover(be, gpu);
    expect_close(g_dx, dx, n, rtol, atol, "batchnorm backward dx without parameter gradients");

    TEST_OK(cpu()->iface->batchnorm_forward_infer(cpu(), KELP_F32, rows, c, x, gamma, beta, rm, rv, eps, y2));
    TEST_OK(be->iface->batchnorm_forward_infer(be, KELP_F32, rows, c, g_x, g_gamma, g_beta, g_rm, g_rv, eps, g_y2));
    handover(be, gpu);
    expect_close(g_y2, y2, n, rtol, atol, "batchnorm infer y");

    TEST_OK(cpu()->iface->batchnorm_backward_infer(cpu(), KELP_F32, rows, c, x, dy, gamma, rm, rv, eps, dx, dg, dbeta));
    TEST_OK(be->iface->batchnorm_backward_infer(be, KELP_F32, rows, c, g_x, g_dy, g_gamma, g_rm, g_rv, eps, g_dx, g_dg,
                                                g_dbeta));
    handover(be, gpu);
    expect_close(g_dx, dx, n, rtol, atol, "batchnorm backward_infer dx");
    expect_close(g_dg, dg, c, rtol, atol, "batchnorm backward_infer dgamma");
    expect_close(g_dbeta, dbeta, c, rtol, atol, "batchnorm backward_infer dbeta");

    void *bufs[] = {g_x, g_dy, g_gamma, g_beta, g_rm, g_rv, g_dx, g_dg, g_dbeta, g_y, g_sm, g_si, g_y2};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        dev_free(bufs[i]);
    float *hbufs[] = {x, dy, gamma, beta, rm, rv, dx, dg, dbeta, y, sm, si, y2};
    for (size_t i = 0; i < sizeof hbufs / sizeof hbufs[0]; i++)
        free(hbufs[i]);
}

static void test_batchnorm(void **state)
{
    (void)state;
    check_batchnorm_on(gpu, 4, 3, 30, RTOL, ATOL); /* few rows: the running variance's unbiased factor 4/3 shows */
    check_batchnorm_on(gpu, 300, 37, 40, RTOL, ATOL);
    check_batchnorm_on(gpu, 70000, 5, 50, RTOL, ATOL); /* many row chunks */
}

/* cuDNN's batch norm (statistics in float, one pass) where kelp_cuda_config asks for it, and the measured choice
 * between it and the custom kernels: the same results within float accumulation's tolerance. */
static void test_batchnorm_cudnn_and_measured(void **state)
{
    (void)state;
    kelp_cuda_config configs[] = {
        {.deterministic = true, .batchnorm = KELP_CUDA_BN_CUDNN},
        {.deterministic = false, .autotune = true, .batchnorm = KELP_CUDA_BN_AUTO},
    };
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        kelp_backend *be = NULL;
        TEST_OK(kelp_backend_cuda_create(0, &configs[i], &be));
        check_batchnorm_on(be, 4, 3, 30, RTOL_SUM, ATOL_SUM);
        check_batchnorm_on(be, 300, 37, 40, RTOL_SUM, ATOL_SUM);
        check_batchnorm_on(be, 70000, 5, 50, RTOL_SUM, ATOL_SUM);
        check_batchnorm_on(be, 224 * 224 * 2, 16, 60, RTOL_SUM, ATOL_SUM); /* more rows than cuDNN allows as N */
        kelp_backend_destroy(be);
    }
}

/* ---- activations and elementwise ---- */

static void test_activations(void **state)
{
    (void)state;
    const int64_t n = 10007;
    const kelp_act_kind kinds[] = {KELP_ACT_RELU, KELP_ACT_LEAKY_RELU, KELP_ACT_SILU,
                                   KELP_ACT_SIGMOID, KELP_ACT_GELU, KELP_ACT_RELU6};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        float *x = host_random(n, 60 + k, -8, 8), *dy = host_random(n, 70 + k, -1, 1);
        float *dx = host_random(n, 80 + k, -1, 1), *y = host_nan(n);
        float *g_x = dev_from(x, n), *g_dy = dev_from(dy, n), *g_dx = dev_from(dx, n), *g_y = dev_nan(n);
        TEST_OK(cpu()->iface->activation_forward(cpu(), KELP_F32, kinds[k], 0.1f, n, x, y));
        TEST_OK(gpu->iface->activation_forward(gpu, KELP_F32, kinds[k], 0.1f, n, g_x, g_y));
        char what[64];
        snprintf(what, sizeof what, "activation %d forward", (int)kinds[k]);
        expect_close(g_y, y, n, RTOL, 1e-6, what);
        TEST_OK(cpu()->iface->activation_backward(cpu(), KELP_F32, kinds[k], 0.1f, n, x, y, dy, dx));
        TEST_OK(gpu->iface->activation_backward(gpu, KELP_F32, kinds[k], 0.1f, n, g_x, g_y, g_dy, g_dx));
        snprintf(what, sizeof what, "activation %d backward", (int)kinds[k]);
        expect_close(g_dx, dx, n, RTOL, 1e-6, what);
        dev_free(g_x), dev_free(g_dy), dev_free(g_dx), dev_free(g_y);
        free(x), free(dy), free(dx), free(y);
    }
}

static void test_elementwise(void **state)
{
    (void)state;
    const int64_t n = 100003;
    float *a = host_random(n, 90, -1, 1), *b = host_random(n, 91, -1, 1), *y = host_nan(n);
    float *g_a = dev_from(a, n), *g_b = dev_from(b, n), *g_y = dev_nan(n);
    TEST_OK(cpu()->iface->add(cpu(), KELP_F32, n, a, b, y));
    TEST_OK(gpu->iface->add(gpu, KELP_F32, n, g_a, g_b, g_y));
    expect_close(g_y, y, n, RTOL, ATOL, "add");
    TEST_OK(cpu()->iface->axpy(cpu(), KELP_F32, n, -0.3f, a, y));
    TEST_OK(gpu->iface->axpy(gpu, KELP_F32, n, -0.3f, g_a, g_y));
    expect_close(g_y, y, n, RTOL, ATOL, "axpy");
    TEST_OK(cpu()->iface->scale(cpu(), n, 1.7f, y));
    TEST_OK(gpu->iface->scale(gpu, n, 1.7f, g_y));
    expect_close(g_y, y, n, RTOL, ATOL, "scale");
    /* sum_squares adds to a double in backend memory: twice over y */
    double want = 0.5, got = NAN, start = 0.5;
    double *g_acc = dev_from_bytes(&start, sizeof start);
    for (int i = 0; i < 2; i++) {
        TEST_OK(cpu()->iface->sum_squares(cpu(), n, y, &want));
        TEST_OK(gpu->iface->sum_squares(gpu, n, g_y, g_acc));
    }
    TEST_OK(gpu->iface->download(gpu, &got, g_acc, sizeof got));
    if (isnan(got) || fabs(got - want) > 1e-10 * fabs(want))
        fail_msg("sum_squares: got %.17g, want %.17g", got, want);
    dev_free(g_a), dev_free(g_b), dev_free(g_y), dev_free(g_acc);
    free(a), free(b), free(y);
}

/* ---- pooling ---- */

/* ties: inputs rounded to -1, 0 or 1, so that most windows hold several maxima and the GPU must pick the CPU's */
static void check_pool(const kelp_pool_desc *d, uint64_t seed, bool ties, const char *name)
{
    size_t nx = (size_t)d->n * d->h * d->w * d->c, ny = (size_t)d->n * d->oh * d->ow * d->c;
    float *x = host_random(nx, seed, -1, 1), *dy = host_random(ny, seed + 1, -1, 1);
    for (size_t i = 0; ties && i < nx; i++)
        x[i] = roundf(x[i]);
    float *dx = host_random(nx, seed + 2, -1, 1), *y = host_nan(ny);
    int32_t *arg = malloc(ny * sizeof *arg);
    assert_non_null(arg);
    memset(arg, 0xff, ny * sizeof *arg);
    float *g_x = dev_from(x, nx), *g_dy = dev_from(dy, ny), *g_dx = dev_from(dx, nx), *g_y = dev_nan(ny);
    int32_t *g_arg = dev_from_bytes(arg, ny * sizeof *arg);
    TEST_OK(cpu()->iface->pool2d_forward(cpu(), d, x, y, arg));
    TEST_OK(gpu->iface->pool2d_forward(gpu, d, g_x, g_y, g_arg));
    char what[96];
    snprintf(what, sizeof what, "%s forward", name);
    expect_close(g_y, y, ny, RTOL, ATOL, what);
    if (d->kind == KELP_POOL_MAX) {
        snprintf(what, sizeof what, "%s argmax", name);
        expect_equal_bytes(g_arg, arg, ny * sizeof *arg, what);
    }
    TEST_OK(cpu()->iface->pool2d_backward(cpu(), d, dy, arg, dx));
    TEST_OK(gpu->iface->pool2d_backward(gpu, d, g_dy, g_arg, g_dx));
    snprintf(what, sizeof what, "%s backward", name);
    expect_close(g_dx, dx, nx, RTOL, ATOL, what);
    dev_free(g_x), dev_free(g_dy), dev_free(g_dx), dev_free(g_y), dev_free(g_arg);
    free(x), free(dy), free(dx), free(y), free(arg);
}

static void test_pool(void **state)
{
    (void)state;
    /* 3x3 stride 2 pad 1 on 10x10, ceil mode: 6x6 outputs, the last windows clipped */
    kelp_pool_desc d = {KELP_POOL_MAX, 2, 10, 10, 19, 3, 3, 2, 2, 1, 1, 6, 6, false, KELP_F32};
    check_pool(&d, 200, false, "max pool");
    check_pool(&d, 205, true, "max pool with ties");
    d.kind = KELP_POOL_AVG;
    check_pool(&d, 210, false, "avg pool");
    d.count_include_pad = true;
    check_pool(&d, 220, false, "avg pool counting padding");
    kelp_pool_desc plain = {KELP_POOL_MAX, 3, 8, 6, 8, 2, 2, 2, 2, 0, 0, 4, 3, false, KELP_F32};
    check_pool(&plain, 230, false, "2x2 max pool");
    check_pool(&plain, 235, true, "2x2 max pool with ties");
}

static void test_global_avg_pool(void **state)
{
    (void)state;
    const int n = 3, hw = 49, c = 40;
    size_t nx = (size_t)n * hw * c, ny = (size_t)n * c;
    float *x = host_random(nx, 240, -1, 1), *y = host_nan(ny), *dx = host_random(nx, 241, -1, 1);
    float *g_x = dev_from(x, nx), *g_y = dev_nan(ny), *g_dx = dev_from(dx, nx);
    TEST_OK(cpu()->iface->global_avg_pool_forward(cpu(), KELP_F32, n, hw, c, x, y));
    TEST_OK(gpu->iface->global_avg_pool_forward(gpu, KELP_F32, n, hw, c, g_x, g_y));
    expect_close(g_y, y, ny, RTOL, ATOL, "global_avg_pool forward");
    TEST_OK(cpu()->iface->global_avg_pool_backward(cpu(), KELP_F32, n, hw, c, y, dx));
    TEST_OK(gpu->iface->global_avg_pool_backward(gpu, KELP_F32, n, hw, c, g_y, g_dx));
    expect_close(g_dx, dx, nx, RTOL, ATOL, "global_avg_pool backward");
    dev_free(g_x), dev_free(g_y), dev_free(g_dx);
    free(x), free(y), free(dx);
}

/* ---- copies and layout ---- */

static void test_copy_rows_and_layout(void **state)
{
    (void)state;
    const int64_t rows = 50;
    const int cols = 13, ss = 20, ds = 17;
    size_t ns = (size_t)rows * ss, nd = (size_t)rows * ds;
    float *src = host_random(ns, 250, -1, 1), *dst = host_random(nd, 251, -1, 1);
    float *g_src = dev_from(src, ns), *g_dst = dev_from(dst, nd);
    TEST_OK(cpu()->iface->copy_rows(cpu(), KELP_F32, rows, cols, src, ss, dst, ds, false));
    TEST_OK(gpu->iface->copy_rows(gpu, KELP_F32, rows, cols, g_src, ss, g_dst, ds, false));
    expect_close(g_dst, dst, nd, 0, 0, "copy_rows");
    TEST_OK(cpu()->iface->copy_rows(cpu(), KELP_F32, rows, cols, src, ss, dst, ds, true));
    TEST_OK(gpu->iface->copy_rows(gpu, KELP_F32, rows, cols, g_src, ss, g_dst, ds, true));
    expect_close(g_dst, dst, nd, RTOL, ATOL, "copy_rows accumulate");

    const int n = 2, h = 5, w = 3, c = 7;
    size_t nt = (size_t)n * h * w * c;
    float *x = host_random(nt, 252, -1, 1), *y = host_nan(nt), *back = host_random(nt, 253, -1, 1);
    float *g_x = dev_from(x, nt), *g_y = dev_nan(nt), *g_back = dev_from(back, nt);
    TEST_OK(cpu()->iface->nhwc_to_nchw(cpu(), KELP_F32, n, h, w, c, x, y));
    TEST_OK(gpu->iface->nhwc_to_nchw(gpu, KELP_F32, n, h, w, c, g_x, g_y));
    expect_close(g_y, y, nt, 0, 0, "nhwc_to_nchw");
    TEST_OK(cpu()->iface->nchw_to_nhwc_accumulate(cpu(), KELP_F32, n, h, w, c, y, back));
    TEST_OK(gpu->iface->nchw_to_nhwc_accumulate(gpu, KELP_F32, n, h, w, c, g_y, g_back));
    expect_close(g_back, back, nt, RTOL, ATOL, "nchw_to_nhwc_accumulate");
    dev_free(g_src), dev_free(g_dst), dev_free(g_x), dev_free(g_y), dev_free(g_back);
    free(src), free(dst), free(x), free(y), free(back);
}

/* ---- upsampling ---- */

static void check_upsample(kelp_upsample_kind kind, int h, int w, int oh, int ow, float scale_h, float scale_w,
                           uint64_t seed, const char *name)
{
    kelp_upsample_desc d = {kind, 2, h, w, 5, oh, ow, scale_h, scale_w, KELP_F32};
    size_t nx = (size_t)d.n * h * w * d.c, ny = (size_t)d.n * oh * ow * d.c;
    float *x = host_random(nx, seed, -1, 1), *dy = host_random(ny, seed + 1, -1, 1);
    float *dx = host_random(nx, seed + 2, -1, 1), *y = host_nan(ny);
    float *g_x = dev_from(x, nx), *g_dy = dev_from(dy, ny), *g_dx = dev_from(dx, nx), *g_y = dev_nan(ny);
    TEST_OK(cpu()->iface->upsample_forward(cpu(), &d, x, y));
    TEST_OK(gpu->iface->upsample_forward(gpu, &d, g_x, g_y));
    char what[96];
    snprintf(what, sizeof what, "%s forward", name);
    expect_close(g_y, y, ny, RTOL, ATOL, what);
    TEST_OK(cpu()->iface->upsample_backward(cpu(), &d, dy, dx));
    TEST_OK(gpu->iface->upsample_backward(gpu, &d, g_dy, g_dx));
    snprintf(what, sizeof what, "%s backward", name);
    expect_close(g_dx, dx, nx, RTOL, ATOL, what);
    dev_free(g_x), dev_free(g_dy), dev_free(g_dx), dev_free(g_y);
    free(x), free(dy), free(dx), free(y);
}

static void test_upsample(void **state)
{
    (void)state;
    check_upsample(KELP_UPSAMPLE_NEAREST, 4, 3, 8, 6, 0.5f, 0.5f, 260, "nearest 2x");
    check_upsample(KELP_UPSAMPLE_NEAREST, 5, 7, 7, 3, 5.0f / 7, 7.0f / 3, 270, "nearest 5->7, 7->3");
    check_upsample(KELP_UPSAMPLE_BILINEAR, 4, 3, 8, 6, 0.5f, 0.5f, 280, "bilinear 2x");
    check_upsample(KELP_UPSAMPLE_BILINEAR, 5, 7, 7, 4, 5.0f / 7, 7.0f / 4, 290, "bilinear 5->7, 7->4");
    check_upsample(KELP_UPSAMPLE_BILINEAR, 3, 3, 10, 7, 1.0f / 3.3f, 1.0f / 2.5f, 300, "bilinear scale factors");
}

/* ---- dropout ---- */

static void test_dropout(void **state)
{
    (void)state;
    const int64_t n = 10001;
    const uint64_t offset = 6; /* an offset inside a Philox block */
    /* the seed derived on each backend from a step counter in its memory, as a training graph's dropout does */
    const int64_t step = 9;
    int64_t *g_step = dev_from_bytes(&step, sizeof step);
    const kelp_rng_seed seed = {0x1234567890abcdefull, 77, &step}, g_seed = {seed.seed, seed.stream, g_step};
    float *x = host_random(n, 310, -1, 1), *y = host_nan(n), *dy = host_random(n, 311, -1, 1);
    float *dx = host_random(n, 312, -1, 1);
    uint8_t *mask = malloc(n);
    assert_non_null(mask);
    memset(mask, 7, n);
    float *g_x = dev_from(x, n), *g_y = dev_nan(n), *g_dy = dev_from(dy, n), *g_dx = dev_from(dx, n);
    uint8_t *g_mask = dev_from_bytes(mask, n);
    TEST_OK(cpu()->iface->dropout_forward(cpu(), KELP_F32, n, 0.3f, seed, offset, x, y, mask));
    TEST_OK(gpu->iface->dropout_forward(gpu, KELP_F32, n, 0.3f, g_seed, offset, g_x, g_y, g_mask));
    expect_equal_bytes(g_mask, mask, n, "dropout mask");
    expect_close(g_y, y, n, RTOL, ATOL, "dropout forward");
    TEST_OK(cpu()->iface->dropout_backward(cpu(), KELP_F32, n, 0.3f, mask, dy, dx));
    TEST_OK(gpu->iface->dropout_backward(gpu, KELP_F32, n, 0.3f, g_mask, g_dy, g_dx));
    expect_close(g_dx, dx, n, RTOL, ATOL, "dropout backward");
    dev_free(g_x), dev_free(g_y), dev_free(g_dy), dev_free(g_dx), dev_free(g_mask), dev_free(g_step);
    free(x), free(y), free(dy), free(dx), free(mask);
}

/* ---- softmax cross-entropy ---- */

static void check_xent(int64_t rows, int classes, float smoothing, bool weighted, uint64_t seed, const char *name)
{
    kelp_xent_desc d = {rows, classes, smoothing, -100, KELP_F32};
    size_t n = (size_t)rows * classes;
    float *logits = host_random(n, seed, -4, 4), *w = weighted ? host_random(classes, seed + 1, 0.5f, 2) : NULL;
    int32_t *labels = malloc((size_t)rows * sizeof *labels);
    assert_non_null(labels);
    uint64_t rng = seed + 2;
    for (int64_t i = 0; i < rows; i++)
        labels[i] = i % 7 == 3 ? -100 : test_rand_int(&rng, 0, classes - 1);
    float *probs = host_nan(n), *dlogits = host_random(n, seed + 3, -1, 1);
    float loss = NAN, norm = NAN, dloss = 1.5f;
    float *g_logits = dev_from(logits, n), *g_w = weighted ? dev_from(w, classes) : NULL, *g_probs = dev_nan(n);
    int32_t *g_labels = dev_from_bytes(labels, (size_t)rows * sizeof *labels);
    float *g_loss = dev_nan(1), *g_norm = dev_nan(1), *g_dloss = dev_from(&dloss, 1), *g_dlogits = dev_from(dlogits, n);
    TEST_OK(cpu()->iface->softmax_xent_forward(cpu(), &d, logits, labels, w, &loss, probs, &norm));
    TEST_OK(gpu->iface->softmax_xent_forward(gpu, &d, g_logits, g_labels, g_w, g_loss, g_probs, g_norm));
    char what[96];
    snprintf(what, sizeof what, "%s loss", name);
    expect_close(g_loss, &loss, 1, RTOL, ATOL, what);
    snprintf(what, sizeof what, "%s norm", name);
    expect_close(g_norm, &norm, 1, RTOL, ATOL, what);
    /* probs are written for counted rows only, on both backends */
    float *got = host_alloc(n);
    TEST_OK(gpu->iface->download(gpu, got, g_probs, n * sizeof(float)));
    for (int64_t i = 0; i < rows; i++) {
        if (labels[i] == -100)
            continue;
        snprintf(what, sizeof what, "%s probs row %lld", name, (long long)i);
        test_assert_close_f(got + i * classes, probs + i * classes, (size_t)classes, RTOL, 1e-6, what);
    }
    TEST_OK(cpu()->iface->softmax_xent_backward(cpu(), &d, probs, labels, w, &norm, &dloss, dlogits));
    TEST_OK(gpu->iface->softmax_xent_backward(gpu, &d, g_probs, g_labels, g_w, g_norm, g_dloss, g_dlogits));
    snprintf(what, sizeof what, "%s dlogits", name);
    expect_close(g_dlogits, dlogits, n, RTOL, 1e-6, what);

    /* a label that is neither a class nor the ignore index fails the call, as on the CPU */
    labels[rows / 2] = classes;
    TEST_OK(gpu->iface->upload(gpu, g_labels, labels, (size_t)rows * sizeof *labels));
    TEST_FAILS_WITH(gpu->iface->softmax_xent_forward(gpu, &d, g_logits, g_labels, g_w, g_loss, g_probs, g_norm),
                    KELP_ERR_INVALID_ARG, "outside");
    /* ... and leaves the loss and the norm as they were */
    snprintf(what, sizeof what, "%s loss after an invalid label", name);
    expect_close(g_loss, &loss, 1, RTOL, ATOL, what);
    snprintf(what, sizeof what, "%s norm after an invalid label", name);
    expect_close(g_norm, &norm, 1, RTOL, ATOL, what);

    void *bufs[] = {g_logits, g_w, g_probs, g_labels, g_loss, g_norm, g_dloss, g_dlogits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        dev_free(bufs[i]);
    free(logits), free(w), free(labels), free(probs), free(dlogits), free(got);
}

static void test_softmax_xent(void **state)
{
    (void)state;
    check_xent(300, 37, 0.1f, true, 400, "xent weighted, smoothed");
    check_xent(64, 1000, 0.0f, false, 410, "xent 1000 classes");
}

/* ---- optimizers ---- */

/* The step's scalars, checked on each backend from its own copy of the loss and the gradients' sum of squares. */
static void check_step(float loss, double sum_sq, kelp_step_ctl *ctl, kelp_step_ctl *g_ctl)
{
    ctl->sum_sq = sum_sq;
    float *g_loss = dev_from(&loss, 1);
    TEST_OK(gpu->iface->upload(gpu, g_ctl, ctl, sizeof *ctl));
    TEST_OK(cpu()->iface->step_check(cpu(), &loss, ctl));
    TEST_OK(gpu->iface->step_check(gpu, g_loss, g_ctl));
    kelp_step_ctl got;
    TEST_OK(gpu->iface->download(gpu, &got, g_ctl, sizeof got));
    if (got.skip != ctl->skip || got.clip_coef != ctl->clip_coef || got.norm != ctl->norm ||
        !(got.loss == ctl->loss || (isnan(got.loss) && isnan(ctl->loss))))
        fail_msg("step_check: GPU skip %d coef %.9g norm %.17g loss %g, CPU %d %.9g %.17g %g", got.skip,
                 got.clip_coef, got.norm, got.loss, ctl->skip, ctl->clip_coef, ctl->norm, ctl->loss);
    dev_free(g_loss);
}

static void test_optimizers(void **state)
{
    (void)state;
    const int64_t n = 5003;
    float *p = host_random(n, 500, -1, 1), *g = host_random(n, 501, -1, 1), *buf = host_random(n, 502, -1, 1);
    float *m = host_random(n, 503, -1, 1), *v = host_random(n, 504, 0, 1);
    float *g_p = dev_from(p, n), *g_g = dev_from(g, n), *g_buf = dev_from(buf, n), *g_m = dev_from(m, n);
    float *g_v = dev_from(v, n);
    kelp_step_ctl ctl = {.lr = 0.1f, .bc1 = 1.0f, .bc2_sqrt = 1.0f, .inv_scale = 0.25f, .max_norm = 3.0,
                         .check_grads = 1};
    kelp_step_ctl *g_ctl = dev_alloc(sizeof ctl);
    check_step(0.7f, 400.0, &ctl, g_ctl); /* unscaled norm 5: clipped to 3 */
    assert_true(ctl.clip_coef < 1.0f && !ctl.skip);
    kelp_sgd_params sgd = {0.9f, 0.1f, 1e-2f, true};
    TEST_OK(cpu()->iface->sgd_step(cpu(), n, &sgd, &ctl, p, g, buf));
    TEST_OK(gpu->iface->sgd_step(gpu, n, &sgd, g_ctl, g_p, g_g, g_buf));
    expect_close(g_p, p, n, RTOL, ATOL, "sgd nesterov param");
    expect_close(g_buf, buf, n, RTOL, ATOL, "sgd momentum buffer");
    sgd.momentum = 0.0f;
    sgd.nesterov = false;
    TEST_OK(cpu()->iface->sgd_step(cpu(), n, &sgd, &ctl, p, g, NULL));
    TEST_OK(gpu->iface->sgd_step(gpu, n, &sgd, g_ctl, g_p, g_g, NULL));
    expect_close(g_p, p, n, RTOL, ATOL, "sgd without momentum");
    ctl = (kelp_step_ctl){.lr = 1e-3f, .inv_scale = 1.0f, .check_grads = 0};
    kelp_adamw_params adam = {0.9f, 0.999f, 1e-8f, 1e-2f};
    kelp_adamw_bias_corrections(&adam, 3, &ctl.bc1, &ctl.bc2_sqrt);
    check_step(0.7f, 0.0, &ctl, g_ctl);
    TEST_OK(cpu()->iface->adamw_step(cpu(), n, &adam, &ctl, p, g, m, v));
    TEST_OK(gpu->iface->adamw_step(gpu, n, &adam, g_ctl, g_p, g_g, g_m, g_v));
    expect_close(g_p, p, n, RTOL, ATOL, "adamw param");
    expect_close(g_m, m, n, RTOL, ATOL, "adamw exp_avg");
    expect_close(g_v, v, n, RTOL, ATOL, "adamw exp_avg_sq");
    /* a non-finite gradient sum (or loss) skips the update on the device: nothing moves */
    float *before = host_alloc(n), *v_before = host_alloc(n);
    TEST_OK(gpu->iface->download(gpu, before, g_p, n * sizeof(float)));
    TEST_OK(gpu->iface->download(gpu, v_before, g_v, n * sizeof(float)));
    ctl.check_grads = 1;
    check_step(0.7f, INFINITY, &ctl, g_ctl);
    assert_true(ctl.skip);
    TEST_OK(gpu->iface->adamw_step(gpu, n, &adam, g_ctl, g_p, g_g, g_m, g_v));
    expect_close(g_p, before, n, 0, 0, "adamw param after a skipped step");
    expect_close(g_v, v_before, n, 0, 0, "adamw exp_avg_sq after a skipped step");
    check_step(NAN, 1.0, &ctl, g_ctl);
    assert_true(ctl.skip);
    TEST_OK(gpu->iface->sgd_step(gpu, n, &sgd, g_ctl, g_p, g_g, NULL));
    expect_close(g_p, before, n, 0, 0, "sgd param after a skipped step");
    free(before), free(v_before);
    dev_free(g_p), dev_free(g_g), dev_free(g_buf), dev_free(g_m), dev_free(g_v), dev_free(g_ctl);
    free(p), free(g), free(buf), free(m), free(v);
}

/* ---- input preparation ---- */

/* Pixels shipped and normalized on the device equal the CPU's bit for bit (the same formula, kernels/ops/prep.h).
 * Each host buffer is overwritten the moment the call returns, as the interface allows, and the batches change
 * size, so the staging ring turns over and grows while earlier batches may still be in flight. */
static void test_prepare_images(void **state)
{
    (void)state;
    kelp_prep_desc d = {.c = 3, .mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f}};
    enum { ROUNDS = 5 };
    const int64_t pixels[ROUNDS] = {7, 64 * 64, 3, 2 * 224 * 224, 100};
    float *want[ROUNDS], *got[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        size_t n = (size_t)pixels[r] * 3;
        uint8_t *host = malloc(n);
        assert_non_null(host);
        for (size_t i = 0; i < n; i++)
            host[i] = (uint8_t)(i * 31 + (size_t)r * 7);
        d.pixels = pixels[r];
        want[r] = host_alloc(n);
        TEST_OK(cpu()->iface->prepare_images(cpu(), &d, host, want[r]));
        got[r] = dev_nan(n);
        TEST_OK(gpu->iface->prepare_images(gpu, &d, host, got[r]));
        memset(host, 0xAB, n);
        free(host);
    }
    for (int r = 0; r < ROUNDS; r++) {
        char what[48];
        snprintf(what, sizeof what, "prepare_images, batch %d", r);
        expect_close(got[r], want[r], (size_t)pixels[r] * 3, 0, 0, what);
        dev_free(got[r]);
        free(want[r]);
    }
    uint8_t one = 0;
    float *out = dev_nan(8);
    d.pixels = 1;
    d.c = KELP_PREP_MAX_CHANNELS + 1;
    TEST_FAILS_WITH(gpu->iface->prepare_images(gpu, &d, &one, out), KELP_ERR_INVALID_ARG, "channels");
    dev_free(out);
}

/* ---- mixed precision: the ops on BF16 and F16 storage ----
 * The same float inputs are rounded to the storage type by each backend's own `convert`, the op runs on both, and
 * the outputs are widened back by each backend's `convert` and compared in float. Both backends compute in float
 * from identical 16-bit inputs, so the outputs differ by the float rounding of different summation orders, which
 * can move a stored value to the neighbouring 16-bit one: a unit in the last place is 2^-8 relative for bf16 and
 * 2^-11 for f16. Float outputs (statistics, parameter gradients, losses) keep the fp32 tolerances. */

typedef struct lp_type {
    kelp_dtype dt;
    const char *name;
    double rtol, atol;
} lp_type;

static const lp_type lp_types[] = {{KELP_BF16, "bf16", 1e-2, 1e-2}, {KELP_F16, "f16", 2e-3, 2e-3}};
#define LP_TYPES (sizeof lp_types / sizeof lp_types[0])
/* GEMM and convolution: the libraries choose algorithms (tensor cores, split sums) per storage type */
#define LP_SUM 2.0

/* The same values on both backends: `cpu` in the CPU backend's memory, `gpu` in the GPU's, n values of dt. */
typedef struct lp_buf {
    void *cpu, *gpu;
    size_t n;
    kelp_dtype dt;
} lp_buf;

static void *be_alloc(kelp_backend *be, size_t bytes)
{
    void *p = NULL;
    TEST_OK(be->iface->alloc(be, bytes ? bytes : 1, &p));
    return p;
}

/* host floats as n values of dt in be's memory, rounded by be's own convert */
static void *be_from(kelp_backend *be, kelp_dtype dt, const float *host, size_t n)
{
    void *f32 = be_alloc(be, n * sizeof(float)), *out = be_alloc(be, n * kelp_dtype_size(dt));
    TEST_OK(be->iface->upload(be, f32, host, n * sizeof(float)));
    TEST_OK(be->iface->convert(be, (int64_t)n, KELP_F32, f32, dt, out, false));
    be->iface->free(be, f32); /* stream-ordered on the GPU: the convert has read it before a reuse */
    return out;
}

/* n values of dt in be's memory, widened by be's own convert, on the host */
static float *be_read(kelp_backend *be, kelp_dtype dt, const void *buf, size_t n)
{
    void *f32 = be_alloc(be, n * sizeof(float));
    TEST_OK(be->iface->convert(be, (int64_t)n, dt, buf, KELP_F32, f32, false));
    float *host = host_alloc(n);
    TEST_OK(be->iface->download(be, host, f32, n * sizeof(float)));
    be->iface->free(be, f32);
    return host;
}

static lp_buf lp_from(kelp_dtype dt, const float *host, size_t n)
{
    lp_buf b = {be_from(cpu(), dt, host, n), be_from(gpu, dt, host, n), n, dt};
    return b;
}

static lp_buf lp_random(kelp_dtype dt, size_t n, uint64_t seed, float lo, float hi)
{
    float *h = host_random(n, seed, lo, hi);
    lp_buf b = lp_from(dt, h, n);
    free(h);
    return b;
}

/* for outputs the op overwrites: an element it forgets stays NaN and fails */
static lp_buf lp_nan(kelp_dtype dt, size_t n)
{
    float *h = host_nan(n);
    lp_buf b = lp_from(dt, h, n);
    free(h);
    return b;
}

static void lp_free(lp_buf *b)
{
    cpu()->iface->free(cpu(), b->cpu);
    gpu->iface->free(gpu, b->gpu);
}

/* The GPU's values against the CPU's, both widened to float. */
static void lp_expect_close(const lp_buf *b, double rtol, double atol, const char *what)
{
    float *want = be_read(cpu(), b->dt, b->cpu, b->n), *got = be_read(gpu, b->dt, b->gpu, b->n);
    test_assert_close_f(got, want, b->n, rtol, atol, what);
    free(want);
    free(got);
}

/* The bytes of two backends' buffers, equal. */
static void lp_expect_same_bits(const lp_buf *b, const char *what)
{
    size_t bytes = b->n * kelp_dtype_size(b->dt);
    unsigned char *want = malloc(bytes ? bytes : 1);
    assert_non_null(want);
    TEST_OK(cpu()->iface->download(cpu(), want, b->cpu, bytes));
    expect_equal_bytes(b->gpu, want, bytes, what);
    free(want);
}

/* Rounding: the GPU stores kernels/ops/half.h's bits (round to nearest even, overflow to infinity, subnormal f16),
 * as the CPU does; widening is exact; accumulation adds in float and rounds once; BF16 <-> F16 goes through float.
 * All of it bit for bit. (A NaN stays a NaN, but its payload bits may differ: checked apart.) */
static void test_lowp_convert(void **state)
{
    (void)state;
    const size_t n = 4099;
    float *x = host_random(n, 600, -4, 4);
    const float edges[] = {
        1.0f + 1.0f / 256, 1.0f + 3.0f / 256,   /* bf16 halfway cases: to even, down and up */
        1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, /* f16 halfway cases */
        65504.0f, 65519.0f, 65520.0f, -70000.0f, /* f16: the largest, the last that rounds to it, overflow */
        3e-8f, 6e-8f, 1e-5f, -2.5e-6f,           /* f16 subnormals, and below its smallest */
        3.4e38f, -0.0f, INFINITY, -INFINITY,     /* bf16 overflow, signed zero, infinities */
    };
    memcpy(x, edges, sizeof edges);
    for (size_t t = 0; t < LP_TYPES; t++) {
        const lp_type *lt = &lp_types[t];
        char what[96];
        uint16_t *bits = malloc(n * sizeof *bits);
        float *widened = host_alloc(n);
        assert_non_null(bits);
        for (size_t i = 0; i < n; i++) {
            bits[i] = lt->dt == KELP_BF16 ? kelp_bf16_from_float(x[i]) : kelp_f16_from_float(x[i]);
            widened[i] = lt->dt == KELP_BF16 ? kelp_bf16_to_float(bits[i]) : kelp_f16_to_float(bits[i]);
        }
        lp_buf y = lp_from(lt->dt, x, n);
        snprintf(what, sizeof what, "convert F32 -> %s (GPU against half.h)", lt->name);
        expect_equal_bytes(y.gpu, bits, n * sizeof *bits, what);
        snprintf(what, sizeof what, "convert F32 -> %s (GPU against the CPU)", lt->name);
        lp_expect_same_bits(&y, what);

        float *back = be_read(gpu, lt->dt, y.gpu, n);
        snprintf(what, sizeof what, "convert %s -> F32", lt->name);
        if (memcmp(back, widened, n * sizeof(float)) != 0)
            fail_msg("%s: not the exact widening", what);
        free(back);

        /* y += x into float, and into the 16-bit type */
        lp_buf acc = lp_random(KELP_F32, n, 601, -4, 4);
        TEST_OK(cpu()->iface->convert(cpu(), (int64_t)n, lt->dt, y.cpu, KELP_F32, acc.cpu, true));
        TEST_OK(gpu->iface->convert(gpu, (int64_t)n, lt->dt, y.gpu, KELP_F32, acc.gpu, true));
        snprintf(what, sizeof what, "convert %s -> F32, accumulating", lt->name);
        lp_expect_same_bits(&acc, what);
        lp_buf acc16 = lp_random(lt->dt, n, 602, -4, 4), xf = lp_from(KELP_F32, x, n);
        TEST_OK(cpu()->iface->convert(cpu(), (int64_t)n, KELP_F32, xf.cpu, lt->dt, acc16.cpu, true));
        TEST_OK(gpu->iface->convert(gpu, (int64_t)n, KELP_F32, xf.gpu, lt->dt, acc16.gpu, true));
        snprintf(what, sizeof what, "convert F32 -> %s, accumulating", lt->name);
        lp_expect_same_bits(&acc16, what);

        /* to the other 16-bit type */
        kelp_dtype other = lt->dt == KELP_BF16 ? KELP_F16 : KELP_BF16;
        lp_buf cross = lp_nan(other, n);
        TEST_OK(cpu()->iface->convert(cpu(), (int64_t)n, lt->dt, y.cpu, other, cross.cpu, false));
        TEST_OK(gpu->iface->convert(gpu, (int64_t)n, lt->dt, y.gpu, other, cross.gpu, false));
        snprintf(what, sizeof what, "convert %s -> %s", lt->name, lt->dt == KELP_BF16 ? "f16" : "bf16");
        lp_expect_same_bits(&cross, what);

        /* a NaN stays one */
        float nan_in = NAN;
        void *g_nan = be_from(gpu, lt->dt, &nan_in, 1);
        float *nan_out = be_read(gpu, lt->dt, g_nan, 1);
        if (!isnan(nan_out[0]))
            fail_msg("convert: NaN through %s came back as %g", lt->name, nan_out[0]);
        gpu->iface->free(gpu, g_nan);
        free(nan_out);

        lp_free(&y), lp_free(&acc), lp_free(&acc16), lp_free(&xf), lp_free(&cross);
        free(bits), free(widened);
    }
    free(x);
}

static void test_lowp_gemm(void **state)
{
    (void)state;
    const int m = 37, n = 29, k = 53;
    for (size_t t = 0; t < LP_TYPES; t++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                const lp_type *lt = &lp_types[t];
                int lda = ta ? m + 3 : k + 3, ldb = tb ? k + 2 : n + 2, ldc = n + 1;
                size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
                lp_buf a = lp_random(lt->dt, na, 610 + ta, -1, 1), b = lp_random(lt->dt, nb, 620 + tb, -1, 1);
                lp_buf c = lp_random(lt->dt, nc, 630, -1, 1);
                TEST_OK(cpu()->iface->gemm(cpu(), lt->dt, ta, tb, m, n, k, 0.7f, a.cpu, lda, b.cpu, ldb, 0.5f, c.cpu,
                                           ldc));
                TEST_OK(gpu->iface->gemm(gpu, lt->dt, ta, tb, m, n, k, 0.7f, a.gpu, lda, b.gpu, ldb, 0.5f, c.gpu,
                                         ldc));
                char what[64];
                snprintf(what, sizeof what, "%s gemm ta=%d tb=%d", lt->name, ta, tb);
                lp_expect_close(&c, LP_SUM * lt->rtol, LP_SUM * lt->atol, what);
                lp_free(&a), lp_free(&b), lp_free(&c);
            }
}

/* Forward (with the float bias), the fused forward (float scale and shift, ReLU), backward data and backward
 * filter (the float bias gradient) of d in d->dtype. */
static void check_conv_lp(const lp_type *lt, kelp_conv_desc d, uint64_t seed, const char *name)
{
    d.dtype = lt->dt;
    size_t nx = (size_t)d.n * d.h * d.w * d.c, nw = (size_t)d.k * d.r * d.s * (d.c / d.groups);
    size_t ny = (size_t)d.n * d.oh * d.ow * d.k;
    const double rtol = LP_SUM * lt->rtol, atol = LP_SUM * lt->atol;
    lp_buf x = lp_random(lt->dt, nx, seed, -1, 1), w = lp_random(lt->dt, nw, seed + 1, -1, 1);
    lp_buf bias = lp_random(KELP_F32, (size_t)d.k, seed + 2, -1, 1), dy = lp_random(lt->dt, ny, seed + 3, -1, 1);
    lp_buf dx = lp_random(lt->dt, nx, seed + 4, -1, 1), dw = lp_random(lt->dt, nw, seed + 5, -1, 1);
    lp_buf db = lp_random(KELP_F32, (size_t)d.k, seed + 6, -1, 1), y = lp_nan(lt->dt, ny);
    lp_buf scale = lp_random(KELP_F32, (size_t)d.k, seed + 7, 0.5f, 1.5f);
    size_t cpu_ws = 0, gpu_ws = 0;
    TEST_OK(cpu()->iface->conv2d_workspace(cpu(), &d, &cpu_ws));
    TEST_OK(gpu->iface->conv2d_workspace(gpu, &d, &gpu_ws));
    void *ws = be_alloc(cpu(), cpu_ws), *g_ws = be_alloc(gpu, gpu_ws);
    char what[96];

    TEST_OK(cpu()->iface->conv2d_forward(cpu(), &d, x.cpu, w.cpu, bias.cpu, y.cpu, ws));
    TEST_OK(gpu->iface->conv2d_forward(gpu, &d, x.gpu, w.gpu, bias.gpu, y.gpu, g_ws));
    snprintf(what, sizeof what, "%s %s forward", lt->name, name);
    lp_expect_close(&y, rtol, atol, what);

    kelp_conv_epilogue ep = {scale.cpu, bias.cpu, KELP_CLAMP_RELU}, g_ep = {scale.gpu, bias.gpu, KELP_CLAMP_RELU};
    TEST_OK(cpu()->iface->conv2d_forward_fused(cpu(), &d, x.cpu, w.cpu, &ep, y.cpu, ws));
    TEST_OK(gpu->iface->conv2d_forward_fused(gpu, &d, x.gpu, w.gpu, &g_ep, y.gpu, g_ws));
    snprintf(what, sizeof what, "%s %s fused forward", lt->name, name);
    lp_expect_close(&y, rtol, atol, what);

    TEST_OK(cpu()->iface->conv2d_backward_data(cpu(), &d, dy.cpu, w.cpu, dx.cpu, ws));
    TEST_OK(gpu->iface->conv2d_backward_data(gpu, &d, dy.gpu, w.gpu, dx.gpu, g_ws));
    snprintf(what, sizeof what, "%s %s backward data (accumulated)", lt->name, name);
    lp_expect_close(&dx, rtol, atol, what);

    TEST_OK(cpu()->iface->conv2d_backward_filter(cpu(), &d, x.cpu, dy.cpu, dw.cpu, db.cpu, ws));
    TEST_OK(gpu->iface->conv2d_backward_filter(gpu, &d, x.gpu, dy.gpu, dw.gpu, db.gpu, g_ws));
    snprintf(what, sizeof what, "%s %s backward filter (accumulated)", lt->name, name);
    lp_expect_close(&dw, rtol, atol, what);
    snprintf(what, sizeof what, "%s %s bias gradient (float, accumulated)", lt->name, name);
    lp_expect_close(&db, RTOL_SUM, ATOL_SUM, what);

    lp_buf *bufs[] = {&x, &w, &bias, &dy, &dx, &dw, &db, &y, &scale};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        lp_free(bufs[i]);
    cpu()->iface->free(cpu(), ws);
    gpu->iface->free(gpu, g_ws);
}

static void test_lowp_conv(void **state)
{
    (void)state;
    struct {
        const char *name;
        kelp_conv_desc d;
    } cases[] = {
        {"3x3", conv_desc(2, 9, 7, 16, 24, 3, 3, 1, 1, 1, 1)},
        {"3x3 stride 2", conv_desc(2, 11, 10, 8, 12, 3, 3, 2, 1, 1, 1)},
        {"1x1", conv_desc(3, 5, 6, 32, 16, 1, 1, 1, 0, 1, 1)},
        {"depthwise stride 2", conv_desc(2, 9, 9, 24, 24, 3, 3, 2, 1, 1, 24)},
        {"7x7 stem", conv_desc(2, 20, 18, 3, 16, 7, 7, 2, 3, 1, 1)},
    };
    for (size_t t = 0; t < LP_TYPES; t++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            check_conv_lp(&lp_types[t], cases[i].d, 640 + 10 * i, cases[i].name);
}

/* Bias, batch norm (the custom kernels: 16-bit storage never takes cuDNN's), activations, add and axpy. */
static void test_lowp_bias_norm_act(void **state)
{
    (void)state;
    for (size_t t = 0; t < LP_TYPES; t++) {
        const lp_type *lt = &lp_types[t];
        const kelp_dtype dt = lt->dt;
        char what[96];

        const int64_t rows = 300;
        const int c = 37;
        const size_t n = (size_t)rows * c;
        lp_buf bias = lp_random(KELP_F32, c, 700, -1, 1), y = lp_random(dt, n, 701, -1, 1);
        lp_buf db = lp_random(KELP_F32, c, 702, -1, 1);
        TEST_OK(cpu()->iface->bias_add(cpu(), dt, rows, c, bias.cpu, y.cpu));
        TEST_OK(gpu->iface->bias_add(gpu, dt, rows, c, bias.gpu, y.gpu));
        snprintf(what, sizeof what, "%s bias_add", lt->name);
        lp_expect_close(&y, lt->rtol, lt->atol, what);
        TEST_OK(cpu()->iface->bias_backward(cpu(), dt, rows, c, y.cpu, db.cpu));
        TEST_OK(gpu->iface->bias_backward(gpu, dt, rows, c, y.gpu, db.gpu));
        snprintf(what, sizeof what, "%s bias_backward (float)", lt->name);
        lp_expect_close(&db, RTOL_SUM, ATOL_SUM, what);
        lp_free(&bias), lp_free(&y), lp_free(&db);

        /* batch norm: x with a mean away from 0, as the fp32 test; statistics and parameter gradients are float */
        lp_buf x = lp_random(dt, n, 710, 2, 4), dy = lp_random(dt, n, 711, -1, 1);
        lp_buf gamma = lp_random(KELP_F32, c, 712, 0.5f, 1.5f), beta = lp_random(KELP_F32, c, 713, -1, 1);
        lp_buf rm = lp_random(KELP_F32, c, 714, -1, 1), rv = lp_random(KELP_F32, c, 715, 0.5f, 2);
        lp_buf dx = lp_random(dt, n, 716, -1, 1), dg = lp_random(KELP_F32, c, 717, -1, 1);
        lp_buf dbeta = lp_random(KELP_F32, c, 718, -1, 1), by = lp_nan(dt, n);
        lp_buf sm = lp_nan(KELP_F32, c), si = lp_nan(KELP_F32, c);
        const float momentum = 0.1f, eps = 1e-5f;
        TEST_OK(cpu()->iface->batchnorm_forward_train(cpu(), dt, rows, c, x.cpu, gamma.cpu, beta.cpu, rm.cpu, rv.cpu,
                                                      momentum, eps, by.cpu, sm.cpu, si.cpu));
        TEST_OK(gpu->iface->batchnorm_forward_train(gpu, dt, rows, c, x.gpu, gamma.gpu, beta.gpu, rm.gpu, rv.gpu,
                                                    momentum, eps, by.gpu, sm.gpu, si.gpu));
        snprintf(what, sizeof what, "%s batchnorm train y", lt->name);
        lp_expect_close(&by, lt->rtol, lt->atol, what);
        lp_buf *stats[] = {&sm, &si, &rm, &rv};
        const char *stat_names[] = {"save_mean", "save_invstd", "running_mean", "running_var"};
        for (int i = 0; i < 4; i++) {
            snprintf(what, sizeof what, "%s batchnorm %s (float)", lt->name, stat_names[i]);
            lp_expect_close(stats[i], RTOL_SUM, ATOL_SUM, what);
        }
        TEST_OK(cpu()->iface->batchnorm_backward(cpu(), dt, rows, c, x.cpu, dy.cpu, gamma.cpu, sm.cpu, si.cpu, eps,
                                                 dx.cpu, dg.cpu, dbeta.cpu));
        TEST_OK(gpu->iface->batchnorm_backward(gpu, dt, rows, c, x.gpu, dy.gpu, gamma.gpu, sm.gpu, si.gpu, eps,
                                               dx.gpu, dg.gpu, dbeta.gpu));
        snprintf(what, sizeof what, "%s batchnorm backward dx", lt->name);
        lp_expect_close(&dx, lt->rtol, lt->atol, what);
        snprintf(what, sizeof what, "%s batchnorm backward dgamma (float)", lt->name);
        lp_expect_close(&dg, RTOL_SUM, ATOL_SUM, what);
        snprintf(what, sizeof what, "%s batchnorm backward dbeta (float)", lt->name);
        lp_expect_close(&dbeta, RTOL_SUM, ATOL_SUM, what);
        lp_buf by2 = lp_nan(dt, n);
        TEST_OK(cpu()->iface->batchnorm_forward_infer(cpu(), dt, rows, c, x.cpu, gamma.cpu, beta.cpu, rm.cpu, rv.cpu,
                                                      eps, by2.cpu));
        TEST_OK(gpu->iface->batchnorm_forward_infer(gpu, dt, rows, c, x.gpu, gamma.gpu, beta.gpu, rm.gpu, rv.gpu, eps,
                                                    by2.gpu));
        snprintf(what, sizeof what, "%s batchnorm infer y", lt->name);
        lp_expect_close(&by2, lt->rtol, lt->atol, what);
        TEST_OK(cpu()->iface->batchnorm_backward_infer(cpu(), dt, rows, c, x.cpu, dy.cpu, gamma.cpu, rm.cpu, rv.cpu,
                                                       eps, dx.cpu, dg.cpu, dbeta.cpu));
        TEST_OK(gpu->iface->batchnorm_backward_infer(gpu, dt, rows, c, x.gpu, dy.gpu, gamma.gpu, rm.gpu, rv.gpu, eps,
                                                     dx.gpu, dg.gpu, dbeta.gpu));
        snprintf(what, sizeof what, "%s batchnorm backward_infer dx", lt->name);
        lp_expect_close(&dx, lt->rtol, lt->atol, what);
        snprintf(what, sizeof what, "%s batchnorm backward_infer dgamma (float)", lt->name);
        lp_expect_close(&dg, RTOL_SUM, ATOL_SUM, what);
        lp_buf *bn_bufs[] = {&x, &dy, &gamma, &beta, &rm, &rv, &dx, &dg, &dbeta, &by, &sm, &si, &by2};
        for (size_t i = 0; i < sizeof bn_bufs / sizeof bn_bufs[0]; i++)
            lp_free(bn_bufs[i]);

        const int64_t na = 10007;
        const kelp_act_kind kinds[] = {KELP_ACT_RELU, KELP_ACT_LEAKY_RELU, KELP_ACT_SILU,
                                       KELP_ACT_SIGMOID, KELP_ACT_GELU, KELP_ACT_RELU6};
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            lp_buf ax = lp_random(dt, na, 720 + k, -8, 8), ay = lp_nan(dt, na);
            lp_buf ady = lp_random(dt, na, 730 + k, -1, 1), adx = lp_random(dt, na, 740 + k, -1, 1);
            TEST_OK(cpu()->iface->activation_forward(cpu(), dt, kinds[k], 0.1f, na, ax.cpu, ay.cpu));
            TEST_OK(gpu->iface->activation_forward(gpu, dt, kinds[k], 0.1f, na, ax.gpu, ay.gpu));
            snprintf(what, sizeof what, "%s activation %d forward", lt->name, (int)kinds[k]);
            lp_expect_close(&ay, lt->rtol, lt->atol, what);
            TEST_OK(cpu()->iface->activation_backward(cpu(), dt, kinds[k], 0.1f, na, ax.cpu, ay.cpu, ady.cpu, adx.cpu));
            TEST_OK(gpu->iface->activation_backward(gpu, dt, kinds[k], 0.1f, na, ax.gpu, ay.gpu, ady.gpu, adx.gpu));
            snprintf(what, sizeof what, "%s activation %d backward", lt->name, (int)kinds[k]);
            lp_expect_close(&adx, lt->rtol, lt->atol, what);
            lp_free(&ax), lp_free(&ay), lp_free(&ady), lp_free(&adx);
        }

        const int64_t ne = 100003;
        lp_buf a = lp_random(dt, ne, 750, -1, 1), b = lp_random(dt, ne, 751, -1, 1), s = lp_nan(dt, ne);
        TEST_OK(cpu()->iface->add(cpu(), dt, ne, a.cpu, b.cpu, s.cpu));
        TEST_OK(gpu->iface->add(gpu, dt, ne, a.gpu, b.gpu, s.gpu));
        snprintf(what, sizeof what, "%s add", lt->name);
        lp_expect_close(&s, lt->rtol, lt->atol, what);
        TEST_OK(cpu()->iface->axpy(cpu(), dt, ne, -0.3f, a.cpu, s.cpu));
        TEST_OK(gpu->iface->axpy(gpu, dt, ne, -0.3f, a.gpu, s.gpu));
        snprintf(what, sizeof what, "%s axpy", lt->name);
        lp_expect_close(&s, lt->rtol, lt->atol, what);
        lp_free(&a), lp_free(&b), lp_free(&s);
    }
}

static void check_pool_lp(const lp_type *lt, kelp_pool_desc d, uint64_t seed, const char *name)
{
    d.dtype = lt->dt;
    size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.oh * d.ow * d.c;
    lp_buf x = lp_random(lt->dt, nx, seed, -1, 1), dy = lp_random(lt->dt, ny, seed + 1, -1, 1);
    lp_buf dx = lp_random(lt->dt, nx, seed + 2, -1, 1), y = lp_nan(lt->dt, ny);
    int32_t *arg = malloc(ny * sizeof *arg);
    assert_non_null(arg);
    memset(arg, 0xff, ny * sizeof *arg);
    int32_t *g_arg = dev_from_bytes(arg, ny * sizeof *arg);
    char what[96];
    TEST_OK(cpu()->iface->pool2d_forward(cpu(), &d, x.cpu, y.cpu, arg));
    TEST_OK(gpu->iface->pool2d_forward(gpu, &d, x.gpu, y.gpu, g_arg));
    snprintf(what, sizeof what, "%s %s forward", lt->name, name);
    lp_expect_close(&y, lt->rtol, lt->atol, what);
    if (d.kind == KELP_POOL_MAX) { /* identical 16-bit inputs: identical choices, ties included */
        snprintf(what, sizeof what, "%s %s argmax", lt->name, name);
        expect_equal_bytes(g_arg, arg, ny * sizeof *arg, what);
    }
    TEST_OK(cpu()->iface->pool2d_backward(cpu(), &d, dy.cpu, arg, dx.cpu));
    TEST_OK(gpu->iface->pool2d_backward(gpu, &d, dy.gpu, g_arg, dx.gpu));
    snprintf(what, sizeof what, "%s %s backward", lt->name, name);
    lp_expect_close(&dx, lt->rtol, lt->atol, what);
    lp_free(&x), lp_free(&dy), lp_free(&dx), lp_free(&y);
    dev_free(g_arg);
    free(arg);
}

static void check_upsample_lp(const lp_type *lt, kelp_upsample_desc d, uint64_t seed, const char *name)
{
    d.dtype = lt->dt;
    size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.oh * d.ow * d.c;
    lp_buf x = lp_random(lt->dt, nx, seed, -1, 1), dy = lp_random(lt->dt, ny, seed + 1, -1, 1);
    lp_buf dx = lp_random(lt->dt, nx, seed + 2, -1, 1), y = lp_nan(lt->dt, ny);
    char what[96];
    TEST_OK(cpu()->iface->upsample_forward(cpu(), &d, x.cpu, y.cpu));
    TEST_OK(gpu->iface->upsample_forward(gpu, &d, x.gpu, y.gpu));
    snprintf(what, sizeof what, "%s %s forward", lt->name, name);
    lp_expect_close(&y, lt->rtol, lt->atol, what);
    TEST_OK(cpu()->iface->upsample_backward(cpu(), &d, dy.cpu, dx.cpu));
    TEST_OK(gpu->iface->upsample_backward(gpu, &d, dy.gpu, dx.gpu));
    snprintf(what, sizeof what, "%s %s backward", lt->name, name);
    lp_expect_close(&dx, lt->rtol, lt->atol, what);
    lp_free(&x), lp_free(&dy), lp_free(&dx), lp_free(&y);
}

/* Pooling, global average pooling, copies and layout, upsampling, dropout. */
static void test_lowp_spatial(void **state)
{
    (void)state;
    for (size_t t = 0; t < LP_TYPES; t++) {
        const lp_type *lt = &lp_types[t];
        const kelp_dtype dt = lt->dt;
        char what[96];

        kelp_pool_desc pd = {KELP_POOL_MAX, 2, 10, 10, 19, 3, 3, 2, 2, 1, 1, 6, 6, false, KELP_F32};
        check_pool_lp(lt, pd, 800, "max pool");
        pd.kind = KELP_POOL_AVG;
        check_pool_lp(lt, pd, 810, "avg pool");
        pd.count_include_pad = true;
        check_pool_lp(lt, pd, 820, "avg pool counting padding");

        const int gn = 3, hw = 49, gc = 40;
        lp_buf gx = lp_random(dt, (size_t)gn * hw * gc, 830, -1, 1), gy = lp_nan(dt, (size_t)gn * gc);
        lp_buf gdx = lp_random(dt, (size_t)gn * hw * gc, 831, -1, 1);
        TEST_OK(cpu()->iface->global_avg_pool_forward(cpu(), dt, gn, hw, gc, gx.cpu, gy.cpu));
        TEST_OK(gpu->iface->global_avg_pool_forward(gpu, dt, gn, hw, gc, gx.gpu, gy.gpu));
        snprintf(what, sizeof what, "%s global_avg_pool forward", lt->name);
        lp_expect_close(&gy, lt->rtol, lt->atol, what);
        TEST_OK(cpu()->iface->global_avg_pool_backward(cpu(), dt, gn, hw, gc, gy.cpu, gdx.cpu));
        TEST_OK(gpu->iface->global_avg_pool_backward(gpu, dt, gn, hw, gc, gy.gpu, gdx.gpu));
        snprintf(what, sizeof what, "%s global_avg_pool backward", lt->name);
        lp_expect_close(&gdx, lt->rtol, lt->atol, what);
        lp_free(&gx), lp_free(&gy), lp_free(&gdx);

        /* copies move 16-bit values unchanged: bit for bit */
        const int64_t rows = 50;
        const int cols = 13, ss = 20, ds = 17;
        lp_buf src = lp_random(dt, (size_t)rows * ss, 840, -1, 1), dst = lp_random(dt, (size_t)rows * ds, 841, -1, 1);
        TEST_OK(cpu()->iface->copy_rows(cpu(), dt, rows, cols, src.cpu, ss, dst.cpu, ds, false));
        TEST_OK(gpu->iface->copy_rows(gpu, dt, rows, cols, src.gpu, ss, dst.gpu, ds, false));
        snprintf(what, sizeof what, "%s copy_rows", lt->name);
        lp_expect_same_bits(&dst, what);
        TEST_OK(cpu()->iface->copy_rows(cpu(), dt, rows, cols, src.cpu, ss, dst.cpu, ds, true));
        TEST_OK(gpu->iface->copy_rows(gpu, dt, rows, cols, src.gpu, ss, dst.gpu, ds, true));
        snprintf(what, sizeof what, "%s copy_rows accumulate", lt->name);
        lp_expect_close(&dst, lt->rtol, lt->atol, what);
        lp_free(&src), lp_free(&dst);

        const int n = 2, h = 5, w = 3, c = 7;
        const size_t nt = (size_t)n * h * w * c;
        lp_buf lx = lp_random(dt, nt, 850, -1, 1), ly = lp_nan(dt, nt), back = lp_random(dt, nt, 851, -1, 1);
        TEST_OK(cpu()->iface->nhwc_to_nchw(cpu(), dt, n, h, w, c, lx.cpu, ly.cpu));
        TEST_OK(gpu->iface->nhwc_to_nchw(gpu, dt, n, h, w, c, lx.gpu, ly.gpu));
        snprintf(what, sizeof what, "%s nhwc_to_nchw", lt->name);
        lp_expect_same_bits(&ly, what);
        TEST_OK(cpu()->iface->nchw_to_nhwc_accumulate(cpu(), dt, n, h, w, c, ly.cpu, back.cpu));
        TEST_OK(gpu->iface->nchw_to_nhwc_accumulate(gpu, dt, n, h, w, c, ly.gpu, back.gpu));
        snprintf(what, sizeof what, "%s nchw_to_nhwc_accumulate", lt->name);
        lp_expect_close(&back, lt->rtol, lt->atol, what);
        lp_free(&lx), lp_free(&ly), lp_free(&back);

        kelp_upsample_desc ud = {KELP_UPSAMPLE_NEAREST, 2, 5, 7, 5, 7, 3, 5.0f / 7, 7.0f / 3, KELP_F32};
        check_upsample_lp(lt, ud, 860, "nearest 5->7, 7->3");
        ud.kind = KELP_UPSAMPLE_BILINEAR;
        check_upsample_lp(lt, ud, 870, "bilinear 5->7, 7->3");

        const int64_t nd = 10001;
        const kelp_rng_seed seed = {.seed = 0x1234567890abcdefull};
        const uint64_t offset = 6;
        lp_buf dx_in = lp_random(dt, nd, 880, -1, 1), d_y = lp_nan(dt, nd), d_dy = lp_random(dt, nd, 881, -1, 1);
        lp_buf d_dx = lp_random(dt, nd, 882, -1, 1);
        uint8_t *mask = malloc(nd);
        assert_non_null(mask);
        memset(mask, 7, nd);
        uint8_t *g_mask = dev_from_bytes(mask, nd);
        TEST_OK(cpu()->iface->dropout_forward(cpu(), dt, nd, 0.3f, seed, offset, dx_in.cpu, d_y.cpu, mask));
        TEST_OK(gpu->iface->dropout_forward(gpu, dt, nd, 0.3f, seed, offset, dx_in.gpu, d_y.gpu, g_mask));
        snprintf(what, sizeof what, "%s dropout mask", lt->name);
        expect_equal_bytes(g_mask, mask, nd, what);
        snprintf(what, sizeof what, "%s dropout forward", lt->name);
        lp_expect_close(&d_y, lt->rtol, lt->atol, what);
        TEST_OK(cpu()->iface->dropout_backward(cpu(), dt, nd, 0.3f, mask, d_dy.cpu, d_dx.cpu));
        TEST_OK(gpu->iface->dropout_backward(gpu, dt, nd, 0.3f, g_mask, d_dy.gpu, d_dx.gpu));
        snprintf(what, sizeof what, "%s dropout backward", lt->name);
        lp_expect_close(&d_dx, lt->rtol, lt->atol, what);
        lp_free(&dx_in), lp_free(&d_y), lp_free(&d_dy), lp_free(&d_dx);
        dev_free(g_mask);
        free(mask);
    }
}

/* Cross-entropy on 16-bit logits (float loss, probabilities and norm; 16-bit dlogits) and input preparation
 * writing 16-bit values. */
static void test_lowp_loss_prep(void **state)
{
    (void)state;
    for (size_t t = 0; t < LP_TYPES; t++) {
        const lp_type *lt = &lp_types[t];
        char what[96];
        const int64_t rows = 300;
        const int classes = 37;
        kelp_xent_desc d = {rows, classes, 0.1f, -100, lt->dt};
        const size_t n = (size_t)rows * classes;
        lp_buf logits = lp_random(lt->dt, n, 900, -4, 4), cw = lp_random(KELP_F32, classes, 901, 0.5f, 2);
        lp_buf probs = lp_nan(KELP_F32, n), loss = lp_nan(KELP_F32, 1), norm = lp_nan(KELP_F32, 1);
        lp_buf dlogits = lp_random(lt->dt, n, 902, -1, 1);
        float dloss_h = 1.5f;
        lp_buf dloss = lp_from(KELP_F32, &dloss_h, 1);
        int32_t *labels = malloc((size_t)rows * sizeof *labels);
        assert_non_null(labels);
        uint64_t rng = 903;
        for (int64_t i = 0; i < rows; i++)
            labels[i] = i % 7 == 3 ? -100 : test_rand_int(&rng, 0, classes - 1);
        int32_t *g_labels = dev_from_bytes(labels, (size_t)rows * sizeof *labels);
        TEST_OK(cpu()->iface->softmax_xent_forward(cpu(), &d, logits.cpu, labels, cw.cpu, loss.cpu, probs.cpu,
                                                   norm.cpu));
        TEST_OK(gpu->iface->softmax_xent_forward(gpu, &d, logits.gpu, g_labels, cw.gpu, loss.gpu, probs.gpu,
                                                 norm.gpu));
        snprintf(what, sizeof what, "%s xent loss (float)", lt->name);
        lp_expect_close(&loss, RTOL, ATOL, what);
        snprintf(what, sizeof what, "%s xent norm (float)", lt->name);
        lp_expect_close(&norm, RTOL, ATOL, what);
        /* probs are written for counted rows only, on both backends */
        float *want = be_read(cpu(), KELP_F32, probs.cpu, n), *got = be_read(gpu, KELP_F32, probs.gpu, n);
        for (int64_t i = 0; i < rows; i++) {
            if (labels[i] == -100)
                continue;
            snprintf(what, sizeof what, "%s xent probs row %lld (float)", lt->name, (long long)i);
            test_assert_close_f(got + i * classes, want + i * classes, (size_t)classes, RTOL, 1e-6, what);
        }
        free(want), free(got);
        TEST_OK(cpu()->iface->softmax_xent_backward(cpu(), &d, probs.cpu, labels, cw.cpu, norm.cpu, dloss.cpu,
                                                    dlogits.cpu));
        TEST_OK(gpu->iface->softmax_xent_backward(gpu, &d, probs.gpu, g_labels, cw.gpu, norm.gpu, dloss.gpu,
                                                  dlogits.gpu));
        snprintf(what, sizeof what, "%s xent dlogits", lt->name);
        lp_expect_close(&dlogits, lt->rtol, lt->atol, what);
        lp_buf *bufs[] = {&logits, &cw, &probs, &loss, &norm, &dlogits, &dloss};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            lp_free(bufs[i]);
        dev_free(g_labels);
        free(labels);

        /* one float per value, rounded once: the same formula on both sides */
        kelp_prep_desc pd = {.c = 3, .mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f}};
        pd.dtype = lt->dt;
        pd.pixels = 64 * 64;
        const size_t nv = (size_t)pd.pixels * 3;
        uint8_t *host = malloc(nv);
        assert_non_null(host);
        for (size_t i = 0; i < nv; i++)
            host[i] = (uint8_t)(i * 31 + 5);
        lp_buf out = lp_nan(lt->dt, nv);
        TEST_OK(cpu()->iface->prepare_images(cpu(), &pd, host, out.cpu));
        TEST_OK(gpu->iface->prepare_images(gpu, &pd, host, out.gpu));
        snprintf(what, sizeof what, "%s prepare_images", lt->name);
        lp_expect_close(&out, lt->rtol, lt->atol, what);
        lp_free(&out);
        free(host);
    }
}

/* ---- graphs ---- */

/* One inference graph on the GPU, forward after forward, against the same graph (same seed, same weights) on the
 * CPU: the first forward at a batch size runs node by node, the second is recorded as a CUDA graph and replayed,
 * later ones only replay, and a new batch size records again. Every forward has a new input, so a replay that read
 * stale addresses or skipped the folded batch norms' scale and shift would show. With cuda_graphs off, the same. */
static void check_graph_forwards(bool cuda_graphs)
{
    char *json = NULL;
    kelp_zoo_options zoo = {0};
    TEST_OK(kelp_model_zoo_json("small_resnet", &zoo, &json));
    kelp_ctx_options o = kelp_ctx_defaults();
    o.seed = 7;
    o.threads = 2;
    o.cuda_graphs = cuda_graphs;
    kelp_ctx *cpu_ctx = NULL, *gpu_ctx = NULL;
    TEST_OK(kelp_ctx_create(&o, &cpu_ctx));
    o.device = "cuda:0";
    TEST_OK(kelp_ctx_create(&o, &gpu_ctx));
    kelp_graph_options go = kelp_graph_defaults();
    go.batch = 4;
    kelp_graph *on_cpu = NULL, *on_gpu = NULL;
    TEST_OK(kelp_graph_build(cpu_ctx, json, &go, &on_cpu));
    TEST_OK(kelp_graph_build(gpu_ctx, json, &go, &on_gpu));
    const int batches[] = {4, 4, 4, 4, 2, 2, 2, 4, 4};
    for (int r = 0; r < (int)(sizeof batches / sizeof batches[0]); r++) {
        TEST_OK(kelp_graph_set_batch(on_cpu, batches[r]));
        TEST_OK(kelp_graph_set_batch(on_gpu, batches[r]));
        kelp_tensor *x_cpu = kelp_graph_input(on_cpu, 0), *x_gpu = kelp_graph_input(on_gpu, 0);
        size_t n_in = kelp_tensor_bytes(x_cpu) / sizeof(float);
        float *x = host_random(n_in, 900 + (uint64_t)r, -1, 1);
        TEST_OK(kelp_tensor_upload(x_cpu, x, n_in * sizeof(float)));
        TEST_OK(kelp_tensor_upload(x_gpu, x, n_in * sizeof(float)));
        TEST_OK(kelp_graph_forward(on_cpu));
        TEST_OK(kelp_graph_forward(on_gpu));
        kelp_tensor *y_cpu = kelp_graph_output(on_cpu, 0), *y_gpu = kelp_graph_output(on_gpu, 0);
        size_t n_out = kelp_tensor_bytes(y_cpu) / sizeof(float);
        float *want = host_alloc(n_out), *got = host_alloc(n_out);
        TEST_OK(kelp_tensor_download(y_cpu, want, n_out * sizeof(float)));
        TEST_OK(kelp_tensor_download(y_gpu, got, n_out * sizeof(float)));
        char what[80];
        snprintf(what, sizeof what, "small_resnet forward %d (batch %d, CUDA graphs %s)", r, batches[r],
                 cuda_graphs ? "on" : "off");
        test_assert_close_f(got, want, n_out, RTOL_SUM, ATOL_SUM, what);
        /* and the forwards after the first at each batch size did replay (or were not to) */
        bool warm = r > 0 && batches[r - 1] == batches[r];
        if (cuda_graphs && warm && !on_gpu->replay)
            fail_msg("%s: not replayed; capture turned off: %s", what, on_gpu->replay_off_why);
        if (!cuda_graphs)
            assert_null(on_gpu->replay);
        free(x), free(want), free(got);
    }
    kelp_graph_destroy(on_gpu);
    kelp_graph_destroy(on_cpu);
    kelp_ctx_destroy(gpu_ctx);
    kelp_ctx_destroy(cpu_ctx);
    kelp_free(json);
}

static void test_graph_forwards_replayed(void **state)
{
    (void)state;
    check_graph_forwards(true);
    check_graph_forwards(false);
}

/* Training steps of small_resnet (and of a model with dropout) with its loss on the GPU against the CPU
 * (kelp_train_step: forward, backward, the finite check, clipping and the SGD update), each on a new batch and loss
 * scale: from the second step at a batch size on, the whole step is a replayed CUDA graph, and its loss, gradients,
 * gradient norm, updated parameters and batch-norm statistics must still be the CPU's (stale addresses, a loss seed,
 * learning rate or dropout step uploaded inside the recording, or a missed low-precision weight refresh would
 * show). Then a bad label in a replayed step fails the
 * step, leaves the parameters as they were, and the step after it is fine. In F32 and in BF16 (against the CPU's
 * BF16). */
/* ||got - want|| / ||want|| */
static double relative_error(const float *got, const float *want, size_t n)
{
    double diff = 0, norm = 0;
    for (size_t i = 0; i < n; i++) {
        diff += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        norm += (double)want[i] * want[i];
    }
    return sqrt(diff / norm);
}

/* loss_rtol for the loss, grad_rtol for the whole gradient vector's relative error (element by element would fail
 * on the gradients that cancel to nearly zero: a bias before batch norm) */
static void check_training_steps(const char *json, const char *name, kelp_dtype precision, double loss_rtol,
                                 double grad_rtol)
{
    kelp_ctx_options o = kelp_ctx_defaults();
    o.seed = 11;
    o.threads = 2;
    kelp_ctx *ctx[2] = {NULL, NULL};
    TEST_OK(kelp_ctx_create(&o, &ctx[0]));
    o.device = "cuda:0";
    TEST_OK(kelp_ctx_create(&o, &ctx[1]));
    kelp_graph_options go = kelp_graph_defaults();
    go.batch = 4;
    go.training = go.with_loss = true;
    go.precision = precision;
    kelp_graph *g[2];
    kelp_optimizer *opt[2];
    kelp_train_step *step[2];
    kelp_optimizer_config sgd = kelp_optimizer_defaults(KELP_OPTIM_SGD);
    sgd.momentum = 0.9f;
    kelp_train_step_config sc = {.loss_scale = true, .clip_norm = 1.0};
    for (int d = 0; d < 2; d++) {
        TEST_OK(kelp_graph_build(ctx[d], json, &go, &g[d]));
        TEST_OK(kelp_optimizer_create(kelp_ctx_backend(ctx[d]), &sgd, kelp_shape_numel(&kelp_graph_params(g[d])->shape),
                                      &opt[d]));
        TEST_OK(kelp_train_step_create(g[d], opt[d], &sc, &step[d]));
    }
    const size_t n_params = (size_t)kelp_shape_numel(&kelp_graph_params(g[0])->shape);
    float *grads[2] = {host_alloc(n_params), host_alloc(n_params)};
    float *params[2] = {host_alloc(n_params), host_alloc(n_params)};
    for (int r = 0; r < 5; r++) {
        size_t n_in = (size_t)kelp_shape_numel(&kelp_graph_input(g[0], 0)->shape);
        float *x = host_random(n_in, 700 + (uint64_t)r, -1, 1);
        int32_t labels[4] = {r % 10, (r + 3) % 10, (r + 5) % 10, 9};
        kelp_train_step_result res[2];
        for (int d = 0; d < 2; d++) {
            TEST_OK(kelp_tensor_upload_floats(kelp_graph_input(g[d], 0), x, (int64_t)n_in));
            TEST_OK(kelp_tensor_upload(kelp_graph_label(g[d]), labels, sizeof labels));
            /* a loss scale and a learning rate that change between replays: powers of two scale the gradients
             * exactly */
            TEST_OK(kelp_train_step_run(step[d], 0.05f / (float)(r + 1), (float)(1 << (r % 3)), &res[d]));
            TEST_OK(kelp_tensor_download(kelp_graph_grads(g[d]), grads[d], n_params * sizeof(float)));
            TEST_OK(kelp_tensor_download(kelp_graph_params(g[d]), params[d], n_params * sizeof(float)));
        }
        char what[96];
        snprintf(what, sizeof what, "%s %s step %d", name, kelp_precision_name(precision), r);
        test_assert_close_f(&res[1].loss, &res[0].loss, 1, loss_rtol, 0, what);
        assert_true(res[0].applied && res[1].applied);
        if (!(fabs(res[1].grad_norm - res[0].grad_norm) <= grad_rtol * res[0].grad_norm))
            fail_msg("%s: gradient norm %.9g on the GPU, %.9g on the CPU", what, res[1].grad_norm, res[0].grad_norm);
        double err = relative_error(grads[1], grads[0], n_params);
        if (!(err < grad_rtol)) /* NaN fails too */
            fail_msg("%s: gradients differ from the CPU's by %.3g (relative), more than %.3g", what, err, grad_rtol);
        err = relative_error(params[1], params[0], n_params);
        if (!(err < grad_rtol / 10))
            fail_msg("%s: updated parameters differ from the CPU's by %.3g (relative)", what, err);
        if (r >= 1 && !g[1]->replay)
            fail_msg("%s: not replayed; capture turned off: %s", what, g[1]->replay_off_why);
        free(x);
    }
    assert_int_equal(kelp_optimizer_step_count(opt[1]), 5);
    /* batch norm's running statistics and batch counters, updated inside the replays, are the CPU's */
    for (int p = 0; p < kelp_graph_param_count(g[0]); p++) {
        kelp_param_info info;
        TEST_OK(kelp_graph_param_info(g[0], p, &info));
        if (info.kind != KELP_PARAM_BUFFER)
            continue;
        kelp_tensor t[2];
        size_t bytes = 0;
        void *host[2];
        for (int d = 0; d < 2; d++) {
            TEST_OK(kelp_graph_find_param(g[d], info.name, &t[d], NULL));
            bytes = kelp_tensor_bytes(&t[d]);
            host[d] = malloc(bytes);
            TEST_OK(kelp_tensor_download(&t[d], host[d], bytes));
        }
        if (info.dtype == KELP_F32)
            test_assert_close_f(host[1], host[0], bytes / sizeof(float), grad_rtol, grad_rtol / 10, info.name);
        else
            assert_memory_equal(host[1], host[0], bytes);
        free(host[0]);
        free(host[1]);
    }
    /* replayed: the label check waits for the step's read, and the update was skipped on the device */
    int32_t bad[4] = {0, 1, 42, 2};
    TEST_OK(kelp_tensor_upload(kelp_graph_label(g[1]), bad, sizeof bad));
    kelp_train_step_result res;
    TEST_FAILS_WITH(kelp_train_step_run(step[1], 0.05f, 1.0f, &res), KELP_ERR_INVALID_ARG, "replayed");
    TEST_OK(kelp_tensor_download(kelp_graph_params(g[1]), grads[1], n_params * sizeof(float)));
    assert_memory_equal(grads[1], params[1], n_params * sizeof(float));
    int32_t good[4] = {0, 1, 2, 3};
    TEST_OK(kelp_tensor_upload(kelp_graph_label(g[1]), good, sizeof good));
    TEST_OK(kelp_train_step_run(step[1], 0.05f, 1.0f, &res));
    assert_true(isfinite(res.loss) && res.applied);
    for (int d = 0; d < 2; d++) {
        free(grads[d]);
        free(params[d]);
        kelp_train_step_destroy(step[d]);
        kelp_optimizer_destroy(opt[d]);
        kelp_graph_destroy(g[d]);
        kelp_ctx_destroy(ctx[d]);
    }
}

/* A model with dropout: its mask is drawn from the step counter in device memory, so each replay draws that step's
 * mask, the CPU's (the same Philox stream). */
static const char *const dropout_model =
    "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\",\"shape\":[8,8,3]}],\"nodes\":["
    "{\"name\":\"conv\",\"type\":\"conv2d\",\"out_channels\":8,\"kernel_size\":3,\"padding\":1},"
    "{\"name\":\"relu\",\"type\":\"relu\"},{\"name\":\"drop\",\"type\":\"dropout\",\"p\":0.3},"
    "{\"name\":\"pool\",\"type\":\"global_avg_pool\"},{\"name\":\"fc\",\"type\":\"linear\",\"out_features\":10}],"
    "\"loss\":{\"type\":\"softmax_cross_entropy\"}}";

static void test_training_steps_replayed(void **state)
{
    (void)state;
    char *json = NULL;
    kelp_zoo_options zoo = {0};
    TEST_OK(kelp_model_zoo_json("small_resnet", &zoo, &json));
    check_training_steps(json, "small_resnet", KELP_F32, 1e-4, 1e-3);
    check_training_steps(json, "small_resnet", KELP_BF16, 2e-2, 5e-2);
    kelp_free(json);
    check_training_steps(dropout_model, "dropout", KELP_F32, 1e-4, 1e-3);
}

/* ---- creation and the context ---- */

static void test_devices_and_context(void **state)
{
    (void)state;
    kelp_backend *be = NULL;
    TEST_FAILS_WITH(kelp_backend_cuda_create(9999, NULL, &be), KELP_ERR_INVALID_ARG, "does not exist");
    kelp_ctx_options o = kelp_ctx_defaults();
    o.device = "cuda:9999";
    kelp_ctx *ctx = NULL;
    TEST_FAILS_WITH(kelp_ctx_create(&o, &ctx), KELP_ERR_INVALID_ARG, "cuda:9999");
    o.device = "cuda:x";
    TEST_FAILS_WITH(kelp_ctx_create(&o, &ctx), KELP_ERR_INVALID_ARG, "cuda:x");
    o.device = "cuda:0";
    TEST_OK(kelp_ctx_create(&o, &ctx));
    assert_string_equal(kelp_ctx_backend(ctx)->iface->name, "cuda");
    /* every op in F32; every activation op and convert in BF16 and F16 too, the optimizers (float state) not */
    kelp_backend *be_ctx = kelp_ctx_backend(ctx);
    for (int op = 0; op < KELP_OP_COUNT; op++) {
        assert_true(be_ctx->iface->supports(be_ctx, (kelp_op)op, KELP_F32));
        bool lowp = op != KELP_OP_SGD && op != KELP_OP_ADAMW;
        assert_int_equal(be_ctx->iface->supports(be_ctx, (kelp_op)op, KELP_BF16), lowp);
        assert_int_equal(be_ctx->iface->supports(be_ctx, (kelp_op)op, KELP_F16), lowp);
        assert_false(be_ctx->iface->supports(be_ctx, (kelp_op)op, KELP_I32));
    }
    kelp_ctx_destroy(ctx);
}

int main(void)
{
    if (kelp_cuda_device_count() == 0) {
        printf("SKIPPED: no CUDA device (kelp is built with CUDA, but no device is visible)\n");
        return 0;
    }
    if (kelp_backend_cuda_create(0, NULL, &gpu) != KELP_OK) {
        fprintf(stderr, "cuda backend on device 0: %s\n", kelp_last_error());
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_round_trip),
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_conv),
        cmocka_unit_test(test_conv_tf32_autotuned),
        cmocka_unit_test(test_conv_fused),
        cmocka_unit_test(test_conv_smaller_batch_fits_plan),
        cmocka_unit_test(test_conv_workspace_covers_smaller_choices),
        cmocka_unit_test(test_bias),
        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_batchnorm_cudnn_and_measured),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_global_avg_pool),
        cmocka_unit_test(test_copy_rows_and_layout),
        cmocka_unit_test(test_upsample),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_softmax_xent),
        cmocka_unit_test(test_optimizers),
        cmocka_unit_test(test_prepare_images),
        cmocka_unit_test(test_lowp_convert),
        cmocka_unit_test(test_lowp_gemm),
        cmocka_unit_test(test_lowp_conv),
        cmocka_unit_test(test_lowp_bias_norm_act),
        cmocka_unit_test(test_lowp_spatial),
        cmocka_unit_test(test_lowp_loss_prep),
        cmocka_unit_test(test_graph_forwards_replayed),
        cmocka_unit_test(test_training_steps_replayed),
        cmocka_unit_test(test_devices_and_context),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    kelp_backend_destroy(gpu);
    return failed;
}

#else

int main(void)
{
    printf("SKIPPED: no CUDA device (this kelp is built without CUDA: configure with -DKELP_CUDA=ON)\n");
    return 0;
}

#endif
