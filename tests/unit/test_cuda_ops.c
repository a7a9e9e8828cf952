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
#include "kernels/cuda/backend_cuda.h"
#include "kernels/cuda/device_info.h"
#include "kernels/ops/conv.h"

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
            TEST_OK(cpu()->iface->gemm(cpu(), ta, tb, m, n, k, 0.7f, a, lda, b, ldb, 0.5f, c, ldc));
            TEST_OK(gpu->iface->gemm(gpu, ta, tb, m, n, k, 0.7f, da, lda, db, ldb, 0.5f, dc, ldc));
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
    kelp_conv_desc d = {n, h, w, c, k, r, s, stride, stride, pad, pad, dil, dil, groups, 0, 0};
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

/* ---- bias, batch norm ---- */

static void test_bias(void **state)
{
    (void)state;
    const int64_t rows = 1000;
    const int c = 37;
    size_t n = (size_t)rows * c;
    float *bias = host_random(c, 1, -1, 1), *y = host_random(n, 2, -1, 1), *db = host_random(c, 3, -1, 1);
    float *g_bias = dev_from(bias, c), *g_y = dev_from(y, n), *g_db = dev_from(db, c);
    TEST_OK(cpu()->iface->bias_add(cpu(), rows, c, bias, y));
    TEST_OK(gpu->iface->bias_add(gpu, rows, c, g_bias, g_y));
    expect_close(g_y, y, n, RTOL, ATOL, "bias_add");
    TEST_OK(cpu()->iface->bias_backward(cpu(), rows, c, y, db));
    TEST_OK(gpu->iface->bias_backward(gpu, rows, c, g_y, g_db));
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

    TEST_OK(cpu()->iface->batchnorm_forward_train(cpu(), rows, c, x, gamma, beta, rm, rv, momentum, eps, y, sm, si));
    TEST_OK(be->iface->batchnorm_forward_train(be, rows, c, g_x, g_gamma, g_beta, g_rm, g_rv, momentum, eps, g_y,
                                               g_sm, g_si));
    handover(be, gpu);
    expect_close(g_y, y, n, rtol, atol, "batchnorm train y");
    expect_close(g_sm, sm, c, rtol, atol, "batchnorm save_mean");
    expect_close(g_si, si, c, rtol, atol, "batchnorm save_invstd");
    expect_close(g_rm, rm, c, rtol, atol, "batchnorm running_mean");
    expect_close(g_rv, rv, c, rtol, atol, "batchnorm running_var");

    TEST_OK(cpu()->iface->batchnorm_backward(cpu(), rows, c, x, dy, gamma, sm, si, eps, dx, dg, dbeta));
    TEST_OK(be->iface->batchnorm_backward(be, rows, c, g_x, g_dy, g_gamma, g_sm, g_si, eps, g_dx, g_dg, g_dbeta));
    handover(be, gpu);
    expect_close(g_dx, dx, n, rtol, atol, "batchnorm backward dx");
    expect_close(g_dg, dg, c, rtol, atol, "batchnorm backward dgamma");
    expect_close(g_dbeta, dbeta, c, rtol, atol, "batchnorm backward dbeta");
    /* parameters without gradient: dx only */
    TEST_OK(cpu()->iface->batchnorm_backward(cpu(), rows, c, x, dy, gamma, sm, si, eps, dx, NULL, NULL));
    TEST_OK(be->iface->batchnorm_backward(be, rows, c, g_x, g_dy, g_gamma, g_sm, g_si, eps, g_dx, NULL, NULL));
    handover(be, gpu);
    expect_close(g_dx, dx, n, rtol, atol, "batchnorm backward dx without parameter gradients");

    TEST_OK(cpu()->iface->batchnorm_forward_infer(cpu(), rows, c, x, gamma, beta, rm, rv, eps, y2));
    TEST_OK(be->iface->batchnorm_forward_infer(be, rows, c, g_x, g_gamma, g_beta, g_rm, g_rv, eps, g_y2));
    handover(be, gpu);
    expect_close(g_y2, y2, n, rtol, atol, "batchnorm infer y");

    TEST_OK(cpu()->iface->batchnorm_backward_infer(cpu(), rows, c, x, dy, gamma, rm, rv, eps, dx, dg, dbeta));
    TEST_OK(be->iface->batchnorm_backward_infer(be, rows, c, g_x, g_dy, g_gamma, g_rm, g_rv, eps, g_dx, g_dg,
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
        TEST_OK(cpu()->iface->activation_forward(cpu(), kinds[k], 0.1f, n, x, y));
        TEST_OK(gpu->iface->activation_forward(gpu, kinds[k], 0.1f, n, g_x, g_y));
        char what[64];
        snprintf(what, sizeof what, "activation %d forward", (int)kinds[k]);
        expect_close(g_y, y, n, RTOL, 1e-6, what);
        TEST_OK(cpu()->iface->activation_backward(cpu(), kinds[k], 0.1f, n, x, y, dy, dx));
        TEST_OK(gpu->iface->activation_backward(gpu, kinds[k], 0.1f, n, g_x, g_y, g_dy, g_dx));
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
    TEST_OK(cpu()->iface->add(cpu(), n, a, b, y));
    TEST_OK(gpu->iface->add(gpu, n, g_a, g_b, g_y));
    expect_close(g_y, y, n, RTOL, ATOL, "add");
    TEST_OK(cpu()->iface->axpy(cpu(), n, -0.3f, a, y));
    TEST_OK(gpu->iface->axpy(gpu, n, -0.3f, g_a, g_y));
    expect_close(g_y, y, n, RTOL, ATOL, "axpy");
    TEST_OK(cpu()->iface->scale(cpu(), n, 1.7f, y));
    TEST_OK(gpu->iface->scale(gpu, n, 1.7f, g_y));
    expect_close(g_y, y, n, RTOL, ATOL, "scale");
    double want = 0, got = NAN;
    TEST_OK(cpu()->iface->sum_squares(cpu(), n, y, &want));
    TEST_OK(gpu->iface->sum_squares(gpu, n, g_y, &got));
    if (isnan(got) || fabs(got - want) > 1e-10 * fabs(want))
        fail_msg("sum_squares: got %.17g, want %.17g", got, want);
    dev_free(g_a), dev_free(g_b), dev_free(g_y);
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
    kelp_pool_desc d = {KELP_POOL_MAX, 2, 10, 10, 19, 3, 3, 2, 2, 1, 1, 6, 6, false};
    check_pool(&d, 200, false, "max pool");
    check_pool(&d, 205, true, "max pool with ties");
    d.kind = KELP_POOL_AVG;
    check_pool(&d, 210, false, "avg pool");
    d.count_include_pad = true;
    check_pool(&d, 220, false, "avg pool counting padding");
    kelp_pool_desc plain = {KELP_POOL_MAX, 3, 8, 6, 8, 2, 2, 2, 2, 0, 0, 4, 3, false};
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
    TEST_OK(cpu()->iface->global_avg_pool_forward(cpu(), n, hw, c, x, y));
    TEST_OK(gpu->iface->global_avg_pool_forward(gpu, n, hw, c, g_x, g_y));
    expect_close(g_y, y, ny, RTOL, ATOL, "global_avg_pool forward");
    TEST_OK(cpu()->iface->global_avg_pool_backward(cpu(), n, hw, c, y, dx));
    TEST_OK(gpu->iface->global_avg_pool_backward(gpu, n, hw, c, g_y, g_dx));
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
    TEST_OK(cpu()->iface->copy_rows(cpu(), rows, cols, src, ss, dst, ds, false));
    TEST_OK(gpu->iface->copy_rows(gpu, rows, cols, g_src, ss, g_dst, ds, false));
    expect_close(g_dst, dst, nd, 0, 0, "copy_rows");
    TEST_OK(cpu()->iface->copy_rows(cpu(), rows, cols, src, ss, dst, ds, true));
    TEST_OK(gpu->iface->copy_rows(gpu, rows, cols, g_src, ss, g_dst, ds, true));
    expect_close(g_dst, dst, nd, RTOL, ATOL, "copy_rows accumulate");

    const int n = 2, h = 5, w = 3, c = 7;
    size_t nt = (size_t)n * h * w * c;
    float *x = host_random(nt, 252, -1, 1), *y = host_nan(nt), *back = host_random(nt, 253, -1, 1);
    float *g_x = dev_from(x, nt), *g_y = dev_nan(nt), *g_back = dev_from(back, nt);
    TEST_OK(cpu()->iface->nhwc_to_nchw(cpu(), n, h, w, c, x, y));
    TEST_OK(gpu->iface->nhwc_to_nchw(gpu, n, h, w, c, g_x, g_y));
    expect_close(g_y, y, nt, 0, 0, "nhwc_to_nchw");
    TEST_OK(cpu()->iface->nchw_to_nhwc_accumulate(cpu(), n, h, w, c, y, back));
    TEST_OK(gpu->iface->nchw_to_nhwc_accumulate(gpu, n, h, w, c, g_y, g_back));
    expect_close(g_back, back, nt, RTOL, ATOL, "nchw_to_nhwc_accumulate");
    dev_free(g_src), dev_free(g_dst), dev_free(g_x), dev_free(g_y), dev_free(g_back);
    free(src), free(dst), free(x), free(y), free(back);
}

/* ---- upsampling ---- */

static void check_upsample(kelp_upsample_kind kind, int h, int w, int oh, int ow, float scale_h, float scale_w,
                           uint64_t seed, const char *name)
{
    kelp_upsample_desc d = {kind, 2, h, w, 5, oh, ow, scale_h, scale_w};
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
    const uint64_t seed = 0x1234567890abcdefull, offset = 6; /* an offset inside a Philox block */
    float *x = host_random(n, 310, -1, 1), *y = host_nan(n), *dy = host_random(n, 311, -1, 1);
    float *dx = host_random(n, 312, -1, 1);
    uint8_t *mask = malloc(n);
    assert_non_null(mask);
    memset(mask, 7, n);
    float *g_x = dev_from(x, n), *g_y = dev_nan(n), *g_dy = dev_from(dy, n), *g_dx = dev_from(dx, n);
    uint8_t *g_mask = dev_from_bytes(mask, n);
    TEST_OK(cpu()->iface->dropout_forward(cpu(), n, 0.3f, seed, offset, x, y, mask));
    TEST_OK(gpu->iface->dropout_forward(gpu, n, 0.3f, seed, offset, g_x, g_y, g_mask));
    expect_equal_bytes(g_mask, mask, n, "dropout mask");
    expect_close(g_y, y, n, RTOL, ATOL, "dropout forward");
    TEST_OK(cpu()->iface->dropout_backward(cpu(), n, 0.3f, mask, dy, dx));
    TEST_OK(gpu->iface->dropout_backward(gpu, n, 0.3f, g_mask, g_dy, g_dx));
    expect_close(g_dx, dx, n, RTOL, ATOL, "dropout backward");
    dev_free(g_x), dev_free(g_y), dev_free(g_dy), dev_free(g_dx), dev_free(g_mask);
    free(x), free(y), free(dy), free(dx), free(mask);
}

/* ---- softmax cross-entropy ---- */

static void check_xent(int64_t rows, int classes, float smoothing, bool weighted, uint64_t seed, const char *name)
{
    kelp_xent_desc d = {rows, classes, smoothing, -100};
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

static void test_optimizers(void **state)
{
    (void)state;
    const int64_t n = 5003;
    float *p = host_random(n, 500, -1, 1), *g = host_random(n, 501, -1, 1), *buf = host_random(n, 502, -1, 1);
    float *m = host_random(n, 503, -1, 1), *v = host_random(n, 504, 0, 1);
    float *g_p = dev_from(p, n), *g_g = dev_from(g, n), *g_buf = dev_from(buf, n), *g_m = dev_from(m, n);
    float *g_v = dev_from(v, n);
    kelp_sgd_params sgd = {0.1f, 0.9f, 0.1f, 1e-2f, true, false};
    TEST_OK(cpu()->iface->sgd_step(cpu(), n, &sgd, p, g, buf));
    TEST_OK(gpu->iface->sgd_step(gpu, n, &sgd, g_p, g_g, g_buf));
    expect_close(g_p, p, n, RTOL, ATOL, "sgd nesterov param");
    expect_close(g_buf, buf, n, RTOL, ATOL, "sgd momentum buffer");
    sgd.momentum = 0.0f;
    sgd.nesterov = false;
    TEST_OK(cpu()->iface->sgd_step(cpu(), n, &sgd, p, g, NULL));
    TEST_OK(gpu->iface->sgd_step(gpu, n, &sgd, g_p, g_g, NULL));
    expect_close(g_p, p, n, RTOL, ATOL, "sgd without momentum");
    kelp_adamw_params adam = {1e-3f, 0.9f, 0.999f, 1e-8f, 1e-2f, 3};
    TEST_OK(cpu()->iface->adamw_step(cpu(), n, &adam, p, g, m, v));
    TEST_OK(gpu->iface->adamw_step(gpu, n, &adam, g_p, g_g, g_m, g_v));
    expect_close(g_p, p, n, RTOL, ATOL, "adamw param");
    expect_close(g_m, m, n, RTOL, ATOL, "adamw exp_avg");
    expect_close(g_v, v, n, RTOL, ATOL, "adamw exp_avg_sq");
    dev_free(g_p), dev_free(g_g), dev_free(g_buf), dev_free(g_m), dev_free(g_v);
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
    for (int op = 0; op < KELP_OP_COUNT; op++)
        assert_true(kelp_ctx_backend(ctx)->iface->supports(kelp_ctx_backend(ctx), (kelp_op)op, KELP_F32));
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
        cmocka_unit_test(test_graph_forwards_replayed),
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
