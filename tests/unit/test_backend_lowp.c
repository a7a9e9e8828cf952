/* The CPU backend's BF16 and F16 activations, through its iface: each op on low-precision buffers gives what the
 * F32 op gives on the same values (the inputs are drawn already rounded), rounded once to the storage type; ops
 * that accumulate add to what the output held; parameters, statistics and losses stay float and equal the F32
 * run's. Then the convert op, the dtypes the backend refuses, and scratch too large to allocate. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops/conv.h"
#include "kernels/ops/half.h"
#include "ref/test_util.h"

/* The CPU backend runs the float kernel on widened copies and rounds each stored value once, so its results are in
 * fact the float path's rounded, bit for bit (a tolerance of 0 passes); one ulp is what the interface promises. */
#define ULPS 1

static kelp_dtype bf16 = KELP_BF16, f16 = KELP_F16;

static kelp_backend *cpu(void) { return test_cpu_backend(); }

static void *mem(size_t bytes)
{
    void *p = NULL;
    TEST_OK(cpu()->iface->alloc(cpu(), bytes, &p));
    return p;
}

static void release(void *p) { cpu()->iface->free(cpu(), p); }

static float *floats_random(int64_t n, uint64_t seed, float lo, float hi)
{
    float *p = mem((size_t)n * sizeof(float));
    test_fill_uniform(p, (size_t)n, seed, lo, hi);
    return p;
}

static float *floats_copy(const float *src, int64_t n)
{
    float *p = mem((size_t)n * sizeof(float));
    memcpy(p, src, (size_t)n * sizeof(float));
    return p;
}

/* The float outputs of the two runs (statistics, parameter gradients, losses) are equal. */
static void expect_same_floats(const float *got, const float *want, int64_t n, const char *what)
{
    test_assert_close_f(got, want, (size_t)n, 0.0, 0.0, what);
}

/* One activation buffer twice: `f` for the F32 run and `l` in dt for the low-precision run. */
typedef struct pair {
    kelp_dtype dt;
    int64_t n;
    float *f;
    void *l;
} pair;

/* f = the float values of l: the next op of the F32 run reads what the low-precision run stored. */
static void pair_sync(pair *p)
{
    for (int64_t i = 0; i < p->n; i++)
        p->f[i] = kelp_lowp_load(p->dt, p->l, i);
}

static pair pair_random(kelp_dtype dt, int64_t n, uint64_t seed, float lo, float hi)
{
    pair p = {dt, n, floats_random(n, seed, lo, hi), mem((size_t)n * sizeof(uint16_t))};
    for (int64_t i = 0; i < n; i++)
        kelp_lowp_store(dt, p.l, i, p.f[i]);
    pair_sync(&p);
    return p;
}

static void pair_free(pair *p)
{
    release(p->f);
    release(p->l);
}

/* Patterns in value order, so that neighbours differ by 1 (either zero is 0). */
static int ordered(uint16_t h) { return (h & 0x8000u) ? -(int)(h & 0x7fffu) : (int)(h & 0x7fffu); }

/* l holds f rounded to dt, within ULPS; NaN where f is NaN. Then f takes l's values, so that a later op of both
 * runs reads the same inputs. */
static void pair_check(pair *p, const char *what)
{
    const uint16_t *got = p->l;
    for (int64_t i = 0; i < p->n; i++) {
        uint16_t want = p->dt == KELP_BF16 ? kelp_bf16_from_float(p->f[i]) : kelp_f16_from_float(p->f[i]);
        bool got_nan = isnan(kelp_lowp_load(p->dt, got, i)), want_nan = isnan(p->f[i]);
        if (got_nan != want_nan || (!want_nan && abs(ordered(got[i]) - ordered(want)) > ULPS))
            fail_msg("%s, %s[%lld]: 0x%04x (%.6g); the F32 run gave %.9g, rounded 0x%04x", what,
                     kelp_dtype_name(p->dt), (long long)i, got[i], (double)kelp_lowp_load(p->dt, got, i),
                     (double)p->f[i], want);
    }
    pair_sync(p);
}

static kelp_dtype dtype_of(void **state) { return *(const kelp_dtype *)*state; }

/* ---- GEMM ---- */

/* Every transposition, padded leading dimensions (the padding is neither read nor written) and beta 0 and not. */
static void test_gemm(void **state)
{
    kelp_backend *be = cpu();
    const kelp_dtype dt = dtype_of(state);
    const int m = 13, n = 17, k = 19;
    for (int t = 0; t < 8; t++) {
        const bool ta = t & 1, tb = t & 2;
        const float beta = (t & 4) ? 0.5f : 0.0f;
        const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
        pair a = pair_random(dt, (int64_t)(ta ? k : m) * lda, 1 + t, -2.0f, 2.0f);
        pair b = pair_random(dt, (int64_t)(tb ? n : k) * ldb, 11 + t, -2.0f, 2.0f);
        pair c = pair_random(dt, (int64_t)m * ldc, 21 + t, -2.0f, 2.0f);
        TEST_OK(be->iface->gemm(be, KELP_F32, ta, tb, m, n, k, 1.5f, a.f, lda, b.f, ldb, beta, c.f, ldc));
        TEST_OK(be->iface->gemm(be, dt, ta, tb, m, n, k, 1.5f, a.l, lda, b.l, ldb, beta, c.l, ldc));
        pair_check(&c, "gemm");
        pair_free(&a), pair_free(&b), pair_free(&c);
    }
}

/* ---- convolution ---- */

static kelp_conv_desc conv_desc(int n, int h, int w, int c, int k, int rs, int stride, int pad, int groups)
{
    kelp_conv_desc d = {n, h, w, c, k, rs, rs, stride, stride, pad, pad, 1, 1, groups, 0, 0, KELP_F32};
    d.oh = (int)kelp_conv_out_size(h, rs, stride, pad, 1);
    d.ow = (int)kelp_conv_out_size(w, rs, stride, pad, 1);
    return d;
}

/* Forward (plain and fused), backward data and backward filter, which accumulate into dx, dw and db. */
static void test_conv(void **state)
{
    kelp_backend *be = cpu();
    const kelp_dtype dt = dtype_of(state);
    const kelp_conv_desc descs[] = {conv_desc(2, 7, 6, 5, 4, 3, 1, 1, 1), conv_desc(2, 8, 8, 4, 6, 3, 2, 1, 2)};
    for (size_t i = 0; i < sizeof descs / sizeof descs[0]; i++) {
        kelp_conv_desc df = descs[i], dl = descs[i];
        dl.dtype = dt;
        const int64_t nx = (int64_t)df.n * df.h * df.w * df.c, ny = (int64_t)df.n * df.oh * df.ow * df.k;
        const int64_t nw = (int64_t)df.k * df.r * df.s * (df.c / df.groups);
        size_t ws_f, ws_l;
        TEST_OK(be->iface->conv2d_workspace(be, &df, &ws_f));
        TEST_OK(be->iface->conv2d_workspace(be, &dl, &ws_l));
        void *ws = mem(ws_f > ws_l ? ws_f : ws_l);
        pair x = pair_random(dt, nx, 1, -2.0f, 2.0f), w = pair_random(dt, nw, 2, -1.0f, 1.0f);
        pair y = pair_random(dt, ny, 3, -1.0f, 1.0f);
        float *bias = floats_random(df.k, 4, -1.0f, 1.0f);
        TEST_OK(be->iface->conv2d_forward(be, &df, x.f, w.f, bias, y.f, ws));
        TEST_OK(be->iface->conv2d_forward(be, &dl, x.l, w.l, bias, y.l, ws));
        pair_check(&y, "conv2d_forward");

        float *scale = floats_random(df.k, 5, 0.5f, 1.5f);
        const kelp_conv_epilogue ep = {scale, bias, KELP_CLAMP_RELU};
        TEST_OK(be->iface->conv2d_forward_fused(be, &df, x.f, w.f, &ep, y.f, ws));
        TEST_OK(be->iface->conv2d_forward_fused(be, &dl, x.l, w.l, &ep, y.l, ws));
        pair_check(&y, "conv2d_forward_fused");

        pair dy = pair_random(dt, ny, 6, -1.0f, 1.0f), dx = pair_random(dt, nx, 7, -1.0f, 1.0f);
        TEST_OK(be->iface->conv2d_backward_data(be, &df, dy.f, w.f, dx.f, ws));
        TEST_OK(be->iface->conv2d_backward_data(be, &dl, dy.l, w.l, dx.l, ws));
        pair_check(&dx, "conv2d_backward_data");

        pair dw = pair_random(dt, nw, 8, -1.0f, 1.0f);
        float *db_f = floats_random(df.k, 9, -1.0f, 1.0f), *db_l = floats_copy(db_f, df.k);
        TEST_OK(be->iface->conv2d_backward_filter(be, &df, x.f, dy.f, dw.f, db_f, ws));
        TEST_OK(be->iface->conv2d_backward_filter(be, &dl, x.l, dy.l, dw.l, db_l, ws));
        pair_check(&dw, "conv2d_backward_filter dw");
        expect_same_floats(db_l, db_f, df.k, "conv2d_backward_filter db");

        pair_free(&x), pair_free(&w), pair_free(&y), pair_free(&dy), pair_free(&dx), pair_free(&dw);
        release(bias), release(scale), release(db_f), release(db_l), release(ws);
    }
}

/* ---- bias and batch norm ---- */

static void test_bias(void **state)
{
    kelp_backend *be = cpu();
    const kelp_dtype dt = dtype_of(state);
    const int64_t rows = 23;
    const int c = 6;
    pair y = pair_random(dt, rows * c, 1, -2.0f, 2.0f);
    float *bias = floats_random(c, 2, -1.0f, 1.0f);
    TEST_OK(be->iface->bias_add(be, KELP_F32, rows, c, bias, y.f));
    TEST_OK(be->iface->bias_add(be, dt, rows, c, bias, y.l));
    pair_check(&y, "bias_add");

    pair dy = pair_random(dt, rows * c, 3, -1.0f, 1.0f);
    float *db_f = floats_random(c, 4, -1.0f, 1.0f), *db_l = floats_copy(db_f, c);
    TEST_OK(be->iface->bias_backward(be, KELP_F32, rows, c, dy.f, db_f));
    TEST_OK(be->iface->bias_backward(be, dt, rows, c, dy.l, db_l));
    expect_same_floats(db_l, db_f, c, "bias_backward db");
    pair_free(&y), pair_free(&dy);
    release(bias), release(db_f), release(db_l);
}

/* Training forward and backward, then the inference pair; the running and saved statistics stay float. */
static void test_batchnorm(void **state)
{
    kelp_backend *be = cpu();
    const kelp_dtype dt = dtype_of(state);
    const int64_t rows = 37;
    const int c = 6;
    const float eps = 1e-5f, momentum = 0.1f;
    pair x = pair_random(dt, rows * c, 1, -3.0f, 5.0f), y = pair_random(dt, rows * c, 2, -1.0f, 1.0f);
    float *gamma = floats_random(c, 3, 0.5f, 1.5f), *beta = floats_random(c, 4, -0.5f, 0.5f);
    float *rm_f = floats_random(c, 5, -0.1f, 0.1f), *rm_l = floats_copy(rm_f, c);
    float *rv_f = floats_random(c, 6, 0.9f, 1.1f), *rv_l = floats_copy(rv_f, c);
    float *mean_f = floats_random(c, 7, 0.0f, 1.0f), *mean_l = floats_copy(mean_f, c);
    float *invstd_f = floats_random(c, 8, 0.0f, 1.0f), *invstd_l = floats_copy(invstd_f, c);
    TEST_OK(be->iface->batchnorm_forward_train(be, KELP_F32, rows, c, x.f, gamma, beta, rm_f, rv_f, momentum, eps,
                                               y.f, mean_f, invstd_f));
    TEST_OK(be->iface->batchnorm_forward_train(be, dt, rows, c, x.l, gamma, beta, rm_l, rv_l, momentum, eps, y.l,
                                               mean_l, invstd_l));
    pair_check(&y, "batchnorm_forward_train");
    expect_same_floats(rm_l, rm_f, c, "running mean");
    expect_same_floats(rv_l, rv_f, c, "running var");
    expect_same_floats(mean_l, mean_f, c, "saved mean");
    expect_same_floats(invstd_l, invstd_f, c, "saved invstd");

    pair dy = pair_random(dt, rows * c, 9, -1.0f, 1.0f), dx = pair_random(dt, rows * c, 10, -1.0f, 1.0f);
    float *dgamma_f = floats_random(c, 11, -1.0f, 1.0f), *dgamma_l = floats_copy(dgamma_f, c);
    float *dbeta_f = floats_random(c, 12, -1.0f, 1.0f), *dbeta_l = floats_copy(dbeta_f, c);
    TEST_OK(be->iface->batchnorm_backward(be, KELP_F32, rows, c, x.f, dy.f, gamma, mean_f, invstd_f, eps, dx.f,
                                          dgamma_f, dbeta_f));
    TEST_OK(be->iface->batchnorm_backward(be, dt, rows, c, x.l, dy.l, gamma, mean_l, invstd_l, eps, dx.l, dgamma_l,
                                          dbeta_l));
    pair_check(&dx, "batchnorm_backward dx");
    expect_same_floats(dgamma_l, dgamma_f, c, "batchnorm_backward dgamma");
    expect_same_floats(dbeta_l, dbeta_f, c, "batchnorm_backward dbeta");

    TEST_OK(be->iface->batchnorm_forward_infer(be, KELP_F32, rows, c, x.f, gamma, beta, rm_f, rv_f, eps, y.f));
    TEST_OK(be->iface->batchnorm_forward_infer(be, dt, rows, c, x.l, gamma, beta, rm_l, rv_l, eps, y.l));
    pair_check(&y, "batchnorm_forward_infer");
    TEST_OK(be->iface->batchnorm_backward_infer(be, KELP_F32, rows, c, x.f, dy.f, gamma, rm_f, rv_f, eps, dx.f,
                                                dgamma_f, dbeta_f));
    TEST_OK(be->iface->batchnorm_backward_infer(be, dt, rows, c, x.l, dy.l, gamma, rm_l, rv_l, eps, dx.l, dgamma_l,
                                                dbeta_l));
    pair_check(&dx, "batchnorm_backward_infer dx");
    expect_same_floats(dgamma_l, dgamma_f, c, "batchnorm_backward_infer dgamma");

    pair_free(&x), pair_free(&y), pair_free(&dy), pair_free(&dx);
    release(gamma), release(beta), release(rm_f), release(rm_l), release(rv_f), release(rv_l);
    release(mean_f), release(mean_l), release(invstd_f), release(invstd_l);
    release(dgamma_f), release(dgamma_l), release(dbeta_f), release(dbeta_l);
}

/* ---- elementwise: sizes past the kernels' and the conversions' parallel threshold ---- */

#define BIG 40003

static void test_activation(void **state)
{
    kelp_backend *be = cpu();
    const kelp_dtype dt = dtype_of(state);
    const kelp_act_kind kinds[] = {KELP_ACT_RELU, KELP_ACT_SILU, KELP_ACT_GELU, KELP_ACT_SIGMOID};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        pair x = pair_random(dt, BIG, 1 + k, -4.0f, 4.0f), y = pair_random(dt, BIG, 2, -1.0f, 1.0f);
        TEST_OK(be->iface->activation_forward(be, KELP_F32, kinds[k], 0.0f, BIG, x.f, y.f));
        TEST_OK(be->iface->activation_forward(be, dt, kinds[k], 0.0f, BIG, x.l, y.l));
        pair_check(&y, "activation_forward");

        pair dy = pair_random(dt, BIG, 3, -1.0f, 1.0f), dx = pair_random(dt, BIG, 4, -1.0f, 1.0f);
        TEST_OK(be->iface->activation_backward(be, KELP_F32, kinds[k], 0.0f, BIG, x.f, y.f, dy.f, dx.f));
        TEST_OK(be->iface->activation_backward(be, dt, kinds[k], 0.0f, BIG, x.l, y.l, dy.l, dx.l));
        pair_check(&dx, "activation_backward");

        /* in place, y = x: the op names one buffer twice */
        TEST_OK(be->iface->activation_forward(be, KELP_F32, kinds[k], 0.0f, BIG, x.f, x.f));
        TEST_OK(be->iface->activation_forward(be, dt, kinds[k], 0.0f, BIG, x.l, x.l));
        pair_check(&x, "activation_forward in place");
        pair_free(&x), pair_free(&y), pair_free(&dy), pair_free(&dx);
    }
}

static void test_add_and_axpy(void **state)
{
    kelp_backend *be = cpu();
    const kelp_dtype dt = dtype_of(state);
    pair a = pair_random(dt, BIG, 1, -3.0f, 3.0f), b = pair_random(dt, BIG, 2, -3.0f, 3.0f);
    pair y = pair_random(dt, BIG, 3, -3.0f, 3.0f);
    TEST_OK(be->iface->add(be, KELP_F32, BIG, a.f, b.f, y.f));
    TEST_OK(be->iface->add(be, dt, BIG, a.l, b.l, y.l));
    pair_check(&y, "add");
    TEST_OK(be->iface->add(be, KELP_F32, BIG, a.f, b.f, a.f));
    TEST_OK(be->iface->add(be, dt, BIG, a.l, b.l, a.l));
    pair_check(&a, "add in place");

    TEST_OK(be->iface->axpy(be, KELP_F32, BIG, 0.75f, b.f, y.f));
    TEST_OK(be->iface->axpy(be, dt, BIG, 0.75f, b.l, y.l));
    pair_check(&y, "axpy");
    pair_free(&a), pair_free(&b), pair_free(&y);

    /* exact in both types: 1 + 0.5 */
    const int64_t n = 100;
    uint16_t *one = mem((size_t)n * sizeof(uint16_t)), *half = mem((size_t)n * sizeof(uint16_t));
    for (int64_t i = 0; i < n; i++) {
        kelp_lowp_store(dt, one, i, 1.0f);
        kelp_lowp_store(dt, half, i, 0.5f);
    }
    TEST_OK(be->iface->axpy(be, dt, n, 1.0f, half, one));
    for (int64_t i = 0; i < n; i++)
        assert_float_equal(kelp_lowp_load(dt, one, i), 1.5f, 0.0f);
    release(one), release(half);
}

/* ---- pooling ---- */

static void test_pool(void **state)
{
    kelp_backend *be = cpu();
    const kelp_dtype dt = dtype_of(state);
    for (int kind = KELP_POOL_MAX; kind <= KELP_POOL_AVG; kind++) {
        kelp_pool_desc df = {(kelp_pool_kind)kind, 2, 7, 7, 5, 3, 3, 2, 2, 1, 1, 4, 4, false, KELP_F32};
        kelp_pool_desc dl = df;
        dl.dtype = dt;
        const int64_t nx = 2 * 7 * 7 * 5, ny = 2 * 4 * 4 * 5;
        /* a narrow range: equal values in a window (more of them in bf16) take the same index in both runs */
        pair x = pair_random(dt, nx, 1, -1.0f, 1.0f), y = pair_random(dt, ny, 2, -1.0f, 1.0f);
        int32_t *arg_f = NULL, *arg_l = NULL;
        if (kind == KELP_POOL_MAX) {
            arg_f = mem((size_t)ny * sizeof(int32_t));
            arg_l = mem((size_t)ny * sizeof(int32_t));
        }
        TEST_OK(be->iface->pool2d_forward(be, &df, x.f, y.f, arg_f));
        TEST_OK(be->iface->pool2d_forward(be, &dl, x.l, y.l, arg_l));
        pair_check(&y, kind == KELP_POOL_MAX ? "max pool forward" : "avg pool forward");
        if (arg_f)
            assert_memory_equal(arg_l, arg_f, (size_t)ny * sizeof(int32_t));

        pair dy = pair_random(dt, ny, 3, -1.0f, 1.0f), dx = pair_random(dt, nx, 4, -1.0f, 1.0f);
        TEST_OK(be->iface->pool2d_backward(be, &df, dy.f, arg_f, dx.f));
        TEST_OK(be->iface->pool2d_backward(be, &dl, dy.l, arg_l, dx.l));
        pair_check(&dx, kind == KELP_POOL_MAX ? "max pool backward" : "avg pool backward");
        pair_free(&x), pair_free(&y), pair_free(&dy), pair_free(&dx);
        if (arg_f)
            release(arg_f), release(arg_l);
    }
}

static void test_global_avg_pool(void **state)
{
    kelp_backend *be = cpu();
    const kelp_dtype dt = dtype_of(state);
    const int n = 3, hw = 10, c = 7;
    pair x = pair_random(dt, n * hw * c, 1, -2.0f, 2.0f), y = pair_random(dt, n * c, 2, -1.0f, 1.0f);
    TEST_OK(be->iface->global_avg_pool_forward(be, KELP_F32, n, hw, c, x.f, y.f));
    TEST_OK(be->iface->global_avg_pool_forward(be, dt, n, hw, c, x.l, y.l));
    pair_check(&y, "global_avg_pool_forward");
    pair dy = pair_random(dt, n * c, 3, -1.0f, 1.0f), dx = pair_random(dt, n * hw * c, 4, -1.0f, 1.0f);
    TEST_OK(be->iface->global_avg_pool_backward(be, KELP_F32, n, hw, c, dy.f, dx.f));
    TEST_OK(be->iface->global_avg_pool_backward(be, dt, n, hw, c, dy.l, dx.l));
    pair_check(&dx, "global_avg_pool_backward");
    pair_free(&x), pair_free(&y), pair_free(&dy), pair_free(&dx);
}

/* ---- layout and copies ---- */

/* A channel slice of a wider tensor into a slice of another (concat), copied and accumulated: the columns outside
 * the slices keep their values. */
static void test_copy_rows(void **state)
{
    kelp_backend *be = cpu();
    const kelp_dtype dt = dtype_of(state);
    const int64_t rows = 9;
    const int cols = 5, src_stride = 8, dst_stride = 12, src_at = 2, dst_at = 4;
    for (int accumulate = 0; accumulate < 2; accumulate++) {
        pair src = pair_random(dt, rows * src_stride, 1, -2.0f, 2.0f);
        pair dst = pair_random(dt, rows * dst_stride, 2, -2.0f, 2.0f);
        TEST_OK(be->iface->copy_rows(be, KELP_F32, rows, cols, src.f + src_at, src_stride, dst.f + dst_at, dst_stride,
                                     accumulate));
        TEST_OK(be->iface->copy_rows(be, dt, rows, cols, (uint16_t *)src.l + src_at, src_stride,
                                     (uint16_t *)dst.l + dst_at, dst_stride, accumulate));
        pair_check(&dst, accumulate ? "copy_rows accumulate" : "copy_rows");
        pair_free(&src), pair_free(&dst);
    }
}

static void test_layout(void **state)
{
    kelp_backend *be = cpu();
    const kelp_dtype dt = dtype_of(state);
    const int n = 2, h = 3, w = 4, c = 5;
    const int64_t len = n * h * w * c;
    pair x = pair_random(dt, len, 1, -2.0f, 2.0f), y = pair_random(dt, len, 2, -2.0f, 2.0f);
    TEST_OK(be->iface->nhwc_to_nchw(be, KELP_F32, n, h, w, c, x.f, y.f));
    TEST_OK(be->iface->nhwc_to_nchw(be, dt, n, h, w, c, x.l, y.l));
    pair_check(&y, "nhwc_to_nchw");
    TEST_OK(be->iface->nchw_to_nhwc_accumulate(be, KELP_F32, n, h, w, c, y.f, x.f));
    TEST_OK(be->iface->nchw_to_nhwc_accumulate(be, dt, n, h, w, c, y.l, x.l));
    pair_check(&x, "nchw_to_nhwc_accumulate");
    pair_free(&x), pair_free(&y);
}

static void test_upsample(void **state)
{
    kelp_backend *be = cpu();
    const kelp_dtype dt = dtype_of(state);
    kelp_upsample_desc df = {KELP_UPSAMPLE_BILINEAR, 2, 4, 5, 3, 8, 10, 0.5f, 0.5f, KELP_F32};
    kelp_upsample_desc dl = df;
    dl.dtype = dt;
    const int64_t nx = 2 * 4 * 5 * 3, ny = 2 * 8 * 10 * 3;
    pair x = pair_random(dt, nx, 1, -2.0f, 2.0f), y = pair_random(dt, ny, 2, -1.0f, 1.0f);
    TEST_OK(be->iface->upsample_forward(be, &df, x.f, y.f));
    TEST_OK(be->iface->upsample_forward(be, &dl, x.l, y.l));
    pair_check(&y, "upsample_forward");
    pair dy = pair_random(dt, ny, 3, -1.0f, 1.0f), dx = pair_random(dt, nx, 4, -1.0f, 1.0f);
    TEST_OK(be->iface->upsample_backward(be, &df, dy.f, dx.f));
    TEST_OK(be->iface->upsample_backward(be, &dl, dy.l, dx.l));
    pair_check(&dx, "upsample_backward");
    pair_free(&x), pair_free(&y), pair_free(&dy), pair_free(&dx);
}

/* ---- dropout and the loss ---- */

static void test_dropout(void **state)
{
    kelp_backend *be = cpu();
    const kelp_dtype dt = dtype_of(state);
    const float p = 0.3f;
    pair x = pair_random(dt, BIG, 1, -2.0f, 2.0f), y = pair_random(dt, BIG, 2, -1.0f, 1.0f);
    uint8_t *mask_f = mem(BIG), *mask_l = mem(BIG);
    const kelp_rng_seed seed = {.seed = 42};
    TEST_OK(be->iface->dropout_forward(be, KELP_F32, BIG, p, seed, 7, x.f, y.f, mask_f));
    TEST_OK(be->iface->dropout_forward(be, dt, BIG, p, seed, 7, x.l, y.l, mask_l));
    pair_check(&y, "dropout_forward");
    assert_memory_equal(mask_l, mask_f, BIG);
    pair dy = pair_random(dt, BIG, 3, -1.0f, 1.0f), dx = pair_random(dt, BIG, 4, -1.0f, 1.0f);
    TEST_OK(be->iface->dropout_backward(be, KELP_F32, BIG, p, mask_f, dy.f, dx.f));
    TEST_OK(be->iface->dropout_backward(be, dt, BIG, p, mask_l, dy.l, dx.l));
    pair_check(&dx, "dropout_backward");
    pair_free(&x), pair_free(&y), pair_free(&dy), pair_free(&dx);
    release(mask_f), release(mask_l);
}

static void test_softmax_xent(void **state)
{
    kelp_backend *be = cpu();
    const kelp_dtype dt = dtype_of(state);
    const int64_t rows = 11;
    const int classes = 7;
    kelp_xent_desc df = {rows, classes, 0.1f, -100, KELP_F32};
    kelp_xent_desc dl = df;
    dl.dtype = dt;
    int32_t *labels = mem((size_t)rows * sizeof(int32_t));
    uint64_t seed = 5;
    for (int64_t i = 0; i < rows; i++)
        labels[i] = i == 3 ? -100 : test_rand_int(&seed, 0, classes - 1);
    pair logits = pair_random(dt, rows * classes, 1, -4.0f, 4.0f);
    float *loss_f = floats_random(1, 2, 0, 1), *loss_l = floats_copy(loss_f, 1);
    float *norm_f = floats_random(1, 3, 0, 1), *norm_l = floats_copy(norm_f, 1);
    float *probs_f = floats_random(rows * classes, 4, 0, 1), *probs_l = floats_copy(probs_f, rows * classes);
    TEST_OK(be->iface->softmax_xent_forward(be, &df, logits.f, labels, NULL, loss_f, probs_f, norm_f));
    TEST_OK(be->iface->softmax_xent_forward(be, &dl, logits.l, labels, NULL, loss_l, probs_l, norm_l));
    expect_same_floats(loss_l, loss_f, 1, "softmax_xent_forward loss");
    expect_same_floats(norm_l, norm_f, 1, "softmax_xent_forward norm");
    expect_same_floats(probs_l, probs_f, rows * classes, "softmax_xent_forward probs");

    const float dloss = 1.0f;
    pair dlogits = pair_random(dt, rows * classes, 5, -0.1f, 0.1f);
    TEST_OK(be->iface->softmax_xent_backward(be, &df, probs_f, labels, NULL, norm_f, &dloss, dlogits.f));
    TEST_OK(be->iface->softmax_xent_backward(be, &dl, probs_l, labels, NULL, norm_l, &dloss, dlogits.l));
    pair_check(&dlogits, "softmax_xent_backward");

    /* a bad label is still reported, once the scratch is gone */
    labels[0] = classes;
    TEST_FAILS_WITH(be->iface->softmax_xent_forward(be, &dl, logits.l, labels, NULL, loss_l, probs_l, norm_l),
                    KELP_ERR_INVALID_ARG, "label");
    pair_free(&logits), pair_free(&dlogits);
    release(labels), release(loss_f), release(loss_l), release(norm_f), release(norm_l);
    release(probs_f), release(probs_l);
}

/* ---- input preparation: the table's values narrowed once, in the serial and the parallel loop ---- */

static void test_prepare_images(void **state)
{
    kelp_backend *be = cpu();
    const kelp_dtype dt = dtype_of(state);
    const int64_t sizes[] = {7, 20000};
    for (int s = 0; s < 2; s++) {
        kelp_prep_desc df = {sizes[s], 3, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, KELP_F32};
        kelp_prep_desc dl = df;
        dl.dtype = dt;
        const int64_t n = sizes[s] * 3;
        uint8_t *pixels = malloc((size_t)n);
        assert_non_null(pixels);
        for (int64_t i = 0; i < n; i++)
            pixels[i] = (uint8_t)(i * 31 + 7);
        pair out = pair_random(dt, n, 1, -1.0f, 1.0f);
        TEST_OK(be->iface->prepare_images(be, &df, pixels, out.f));
        TEST_OK(be->iface->prepare_images(be, &dl, pixels, out.l));
        pair_check(&out, "prepare_images");
        pair_free(&out);
        free(pixels);
    }
}

/* ---- convert ---- */

/* Every pair of storage types, copied and accumulated, on values from f16's subnormals to past its range: element
 * i of y is x[i] (+ y[i]) computed in float and rounded once to y's type. */
static void test_convert(void **state)
{
    (void)state;
    kelp_backend *be = cpu();
    const kelp_dtype types[] = {KELP_F32, KELP_BF16, KELP_F16};
    const int64_t n = BIG;
    float *values = mem((size_t)n * sizeof(float));
    uint64_t seed = 3;
    for (int64_t i = 0; i < n; i++)
        values[i] = ldexpf(test_rand_uniform(&seed, -1.0f, 1.0f), test_rand_int(&seed, -30, 18));
    for (int s = 0; s < 3; s++)
        for (int d = 0; d < 3; d++)
            for (int accumulate = 0; accumulate < 2; accumulate++) {
                const kelp_dtype src = types[s], dst = types[d];
                const size_t dst_bytes = (size_t)n * kelp_dtype_size(dst);
                void *x = mem((size_t)n * kelp_dtype_size(src)), *y = mem(dst_bytes), *want = mem(dst_bytes);
                for (int64_t i = 0; i < n; i++) {
                    kelp_lowp_store(src, x, i, values[i]);
                    kelp_lowp_store(dst, y, i, values[(i * 7 + 1) % n]);
                }
                memcpy(want, y, dst_bytes);
                for (int64_t i = 0; i < n; i++) {
                    float v = kelp_lowp_load(src, x, i);
                    if (accumulate)
                        v += kelp_lowp_load(dst, want, i);
                    kelp_lowp_store(dst, want, i, v);
                }
                TEST_OK(be->iface->convert(be, n, src, x, dst, y, accumulate));
                if (memcmp(y, want, dst_bytes) != 0)
                    fail_msg("convert %s to %s%s differs", kelp_dtype_name(src), kelp_dtype_name(dst),
                             accumulate ? ", accumulating," : "");
                release(x), release(y), release(want);
            }
    release(values);
}

/* ---- what the backend refuses ---- */

static void expect_refused(kelp_status got, const char *op, const char *dtype)
{
    TEST_FAILS_WITH(got, KELP_ERR_UNSUPPORTED, dtype);
    if (!strstr(kelp_last_error(), op))
        fail_msg("\"%s\" does not name the op %s", kelp_last_error(), op);
}

static void test_supports(void **state)
{
    (void)state;
    kelp_backend *be = cpu();
    for (int op = 0; op < KELP_OP_COUNT; op++) {
        const bool master_only = op == KELP_OP_SGD || op == KELP_OP_ADAMW;
        assert_true(be->iface->supports(be, (kelp_op)op, KELP_F32));
        assert_true(be->iface->supports(be, (kelp_op)op, KELP_BF16) == !master_only);
        assert_true(be->iface->supports(be, (kelp_op)op, KELP_F16) == !master_only);
        assert_false(be->iface->supports(be, (kelp_op)op, KELP_U8));
        assert_false(be->iface->supports(be, (kelp_op)op, KELP_I32));
        assert_string_not_equal(kelp_op_name((kelp_op)op), "unknown");
    }
    assert_false(be->iface->supports(be, KELP_OP_COUNT, KELP_F32));
    assert_string_equal(kelp_op_name(KELP_OP_CONVERT), "convert");
}

/* A dtype that is no floating storage fails naming the op and the dtype, and leaves the output alone. */
static void test_unsupported_dtypes(void **state)
{
    (void)state;
    kelp_backend *be = cpu();
    float a[4] = {1, 2, 3, 4}, b[4] = {1, 1, 1, 1}, c[4] = {9, 9, 9, 9};
    expect_refused(be->iface->gemm(be, KELP_U8, false, false, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2), "gemm", "U8");
    expect_refused(be->iface->add(be, KELP_I32, 4, a, b, c), "add", "I32");
    expect_refused(be->iface->axpy(be, KELP_I64, 4, 1.0f, a, c), "axpy", "I64");
    for (int i = 0; i < 4; i++)
        assert_float_equal(c[i], 9.0f, 0.0f);

    kelp_conv_desc conv = conv_desc(1, 2, 2, 1, 1, 1, 1, 0, 1);
    conv.dtype = KELP_U8;
    size_t ws;
    expect_refused(be->iface->conv2d_workspace(be, &conv, &ws), "conv2d", "U8");
    expect_refused(be->iface->conv2d_forward(be, &conv, a, b, NULL, c, NULL), "conv2d_forward", "U8");
    kelp_pool_desc pool = {KELP_POOL_AVG, 1, 2, 2, 1, 1, 1, 1, 1, 0, 0, 2, 2, false, KELP_I32};
    expect_refused(be->iface->pool2d_forward(be, &pool, a, c, NULL), "pool2d_forward", "I32");
    kelp_xent_desc xent = {1, 4, 0.0f, -100, KELP_U8};
    const int32_t label = 0;
    float loss, norm, probs[4];
    expect_refused(be->iface->softmax_xent_forward(be, &xent, a, &label, NULL, &loss, probs, &norm),
                   "softmax_xent_forward", "U8");
    kelp_prep_desc prep = {1, 1, {0.0f}, {1.0f}, KELP_U8};
    const uint8_t pixel = 3;
    expect_refused(be->iface->prepare_images(be, &prep, &pixel, c), "prepare_images", "U8");
    expect_refused(be->iface->convert(be, 4, KELP_U8, a, KELP_F32, c, false), "convert", "U8");
    expect_refused(be->iface->convert(be, 4, KELP_F32, a, KELP_I32, c, false), "convert", "I32");
    for (int i = 0; i < 4; i++)
        assert_float_equal(c[i], 9.0f, 0.0f);
}

/* Widening more than a tensor may hold fails as out of memory, naming the op, before anything is read. */
static void test_scratch_too_large(void **state)
{
    kelp_backend *be = cpu();
    const kelp_dtype dt = dtype_of(state);
    uint16_t a[4] = {0}, y[4] = {0x1234, 0x1234, 0x1234, 0x1234};
    TEST_FAILS_WITH(be->iface->add(be, dt, (int64_t)1 << 40, a, a, y), KELP_ERR_NO_MEMORY, "add");
    for (int i = 0; i < 4; i++)
        assert_int_equal(y[i], 0x1234);
}

#define PER_DTYPE(f) {#f " bf16", f, NULL, NULL, &bf16}, {#f " f16", f, NULL, NULL, &f16}

int main(void)
{
    const struct CMUnitTest tests[] = {
        PER_DTYPE(test_gemm),
        PER_DTYPE(test_conv),
        PER_DTYPE(test_bias),
        PER_DTYPE(test_batchnorm),
        PER_DTYPE(test_activation),
        PER_DTYPE(test_add_and_axpy),
        PER_DTYPE(test_pool),
        PER_DTYPE(test_global_avg_pool),
        PER_DTYPE(test_copy_rows),
        PER_DTYPE(test_layout),
        PER_DTYPE(test_upsample),
        PER_DTYPE(test_dropout),
        PER_DTYPE(test_softmax_xent),
        PER_DTYPE(test_prepare_images),
        PER_DTYPE(test_scratch_too_large),
        cmocka_unit_test(test_convert),
        cmocka_unit_test(test_supports),
        cmocka_unit_test(test_unsupported_dtypes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
