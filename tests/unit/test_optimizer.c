/* Optimizers against a scalar double reference written from the torch.optim.SGD / torch.optim.AdamW documentation
 * pseudo-code; frozen segments; checkpoint state round trips; config parsing; gradient clipping. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/optimizer.h"
#include "test_util.h"

/* ---- the reference: one parameter at a time, in double ---- */

typedef struct ref_state {
    double *theta, *b, *m, *v;
    int t; /* steps taken */
} ref_state;

/* torch.optim.SGD: g += wd theta; b = g (t = 1) or mu b + (1 - tau) g; g = g + mu b (nesterov) or b;
 * theta -= lr g. */
static void ref_sgd(const kelp_optimizer_config *c, double lr, ref_state *r, const float *grad, int64_t lo,
                    int64_t hi)
{
    double mu = c->momentum, tau = c->dampening, wd = c->weight_decay;
    for (int64_t i = lo; i < hi; i++) {
        double g = grad[i];
        if (wd != 0.0)
            g += wd * r->theta[i];
        if (mu != 0.0) {
            r->b[i] = r->t > 1 ? mu * r->b[i] + (1.0 - tau) * g : g;
            g = c->nesterov ? g + mu * r->b[i] : r->b[i];
        }
        r->theta[i] -= lr * g;
    }
}

/* torch.optim.AdamW: theta -= lr wd theta; m, v moving averages; bias-corrected m / (sqrt(v) + eps). */
static void ref_adamw(const kelp_optimizer_config *c, double lr, ref_state *r, const float *grad, int64_t lo,
                      int64_t hi)
{
    double b1 = c->beta1, b2 = c->beta2, eps = c->eps, wd = c->weight_decay;
    for (int64_t i = lo; i < hi; i++) {
        double g = grad[i];
        r->theta[i] -= lr * wd * r->theta[i];
        r->m[i] = b1 * r->m[i] + (1.0 - b1) * g;
        r->v[i] = b2 * r->v[i] + (1.0 - b2) * g * g;
        double m_hat = r->m[i] / (1.0 - pow(b1, r->t));
        double v_hat = r->v[i] / (1.0 - pow(b2, r->t));
        r->theta[i] -= lr * m_hat / (sqrt(v_hat) + eps);
    }
}

static void ref_step(const kelp_optimizer_config *c, double lr, ref_state *r, const float *grad,
                     const kelp_param_segment *segs, int n_segs, int64_t n)
{
    r->t++;
    kelp_param_segment whole = {0, n};
    if (!segs) {
        segs = &whole;
        n_segs = 1;
    }
    for (int s = 0; s < n_segs; s++) {
        int64_t lo = segs[s].offset, hi = segs[s].offset + segs[s].count;
        if (c->kind == KELP_OPTIM_SGD)
            ref_sgd(c, lr, r, grad, lo, hi);
        else
            ref_adamw(c, lr, r, grad, lo, hi);
    }
}

/* ---- a buffer of n parameters and gradients on the backend ---- */

typedef struct fixture {
    kelp_backend *be;
    int64_t n;
    float *params, *grads; /* backend memory */
    float *host;           /* n floats of scratch */
    ref_state ref;
} fixture;

static void *be_alloc(kelp_backend *be, size_t bytes)
{
    void *p;
    TEST_OK(be->iface->alloc(be, bytes, &p));
    return p;
}

static void fixture_init(fixture *f, int64_t n, uint64_t seed)
{
    f->be = test_cpu_backend();
    f->n = n;
    size_t bytes = (size_t)n * sizeof(float);
    f->params = be_alloc(f->be, bytes);
    f->grads = be_alloc(f->be, bytes);
    f->host = malloc(bytes);
    f->ref.theta = calloc((size_t)n, sizeof(double));
    f->ref.b = calloc((size_t)n, sizeof(double));
    f->ref.m = calloc((size_t)n, sizeof(double));
    f->ref.v = calloc((size_t)n, sizeof(double));
    f->ref.t = 0;
    assert_non_null(f->host);
    assert_non_null(f->ref.v);
    test_fill_uniform(f->host, (size_t)n, seed, -1.0f, 1.0f);
    for (int64_t i = 0; i < n; i++)
        f->ref.theta[i] = f->host[i];
    TEST_OK(f->be->iface->upload(f->be, f->params, f->host, bytes));
}

static void fixture_free(fixture *f)
{
    f->be->iface->free(f->be, f->params);
    f->be->iface->free(f->be, f->grads);
    free(f->host);
    free(f->ref.theta);
    free(f->ref.b);
    free(f->ref.m);
    free(f->ref.v);
}

/* Gradients of step `step`, in f->host and on the backend. */
static void fixture_set_grads(fixture *f, int step)
{
    test_fill_uniform(f->host, (size_t)f->n, 1000u + (uint64_t)step, -1.0f, 1.0f);
    TEST_OK(f->be->iface->upload(f->be, f->grads, f->host, (size_t)f->n * sizeof(float)));
}

static float *download(kelp_backend *be, const float *src, int64_t n)
{
    float *host = malloc((size_t)n * sizeof(float));
    assert_non_null(host);
    TEST_OK(be->iface->download(be, host, src, (size_t)n * sizeof(float)));
    return host;
}

/* Runs `steps` steps with a learning rate that changes every step, checking against the reference each time. */
static void run_against_reference(const kelp_optimizer_config *c, int64_t n, int steps,
                                  const kelp_param_segment *segs, int n_segs)
{
    fixture f;
    fixture_init(&f, n, 7);
    kelp_optimizer *opt;
    TEST_OK(kelp_optimizer_create(f.be, c, n, &opt));
    double *want = malloc((size_t)n * sizeof(double));
    assert_non_null(want);
    for (int s = 0; s < steps; s++) {
        float lr = 0.05f / (float)(s + 1);
        fixture_set_grads(&f, s);
        TEST_OK(kelp_optimizer_step(opt, lr, f.params, f.grads, segs, n_segs));
        ref_step(c, lr, &f.ref, f.host, segs, n_segs, n);
        float *got = download(f.be, f.params, n);
        memcpy(want, f.ref.theta, (size_t)n * sizeof(double));
        test_assert_close(got, want, (size_t)n, 1e-5, 1e-6, "params");
        free(got);
    }
    assert_int_equal(kelp_optimizer_step_count(opt), steps);
    free(want);
    kelp_optimizer_destroy(opt);
    fixture_free(&f);
}

static kelp_optimizer_config sgd_config(float momentum, float dampening, bool nesterov, float weight_decay)
{
    kelp_optimizer_config c = kelp_optimizer_defaults(KELP_OPTIM_SGD);
    c.momentum = momentum;
    c.dampening = dampening;
    c.nesterov = nesterov;
    c.weight_decay = weight_decay;
    return c;
}

static void test_sgd_plain(void **state)
{
    (void)state;
    kelp_optimizer_config c = sgd_config(0.0f, 0.0f, false, 0.0f);
    run_against_reference(&c, 1001, 4, NULL, 0);
}

static void test_sgd_momentum(void **state)
{
    (void)state;
    kelp_optimizer_config c = sgd_config(0.9f, 0.0f, false, 0.0f);
    run_against_reference(&c, 1001, 5, NULL, 0);
}

/* Dampening shows whether the first step seeds the buffer with the raw gradient, as PyTorch does. */
static void test_sgd_dampening(void **state)
{
    (void)state;
    kelp_optimizer_config c = sgd_config(0.8f, 0.3f, false, 0.0f);
    run_against_reference(&c, 1001, 5, NULL, 0);
}

static void test_sgd_nesterov(void **state)
{
    (void)state;
    kelp_optimizer_config c = sgd_config(0.9f, 0.0f, true, 0.0f);
    run_against_reference(&c, 1001, 5, NULL, 0);
}

static void test_sgd_weight_decay(void **state)
{
    (void)state;
    kelp_optimizer_config plain = sgd_config(0.0f, 0.0f, false, 0.1f);
    run_against_reference(&plain, 1001, 4, NULL, 0);
    kelp_optimizer_config nesterov = sgd_config(0.9f, 0.0f, true, 5e-2f);
    run_against_reference(&nesterov, 1001, 5, NULL, 0);
}

static void test_adamw_defaults(void **state)
{
    (void)state;
    kelp_optimizer_config c = kelp_optimizer_defaults(KELP_OPTIM_ADAMW);
    assert_true(c.beta1 == 0.9f && c.beta2 == 0.999f && c.eps == 1e-8f && c.weight_decay == 0.01f);
    run_against_reference(&c, 1001, 6, NULL, 0);
}

static void test_adamw_custom(void **state)
{
    (void)state;
    kelp_optimizer_config c = kelp_optimizer_defaults(KELP_OPTIM_ADAMW);
    c.beta1 = 0.5f;
    c.beta2 = 0.9f;
    c.eps = 1e-3f;
    c.weight_decay = 0.2f;
    run_against_reference(&c, 1001, 6, NULL, 0);
}

/* Large enough for the kernels' parallel loops. */
static void test_large_buffer(void **state)
{
    (void)state;
    kelp_optimizer_config sgd = sgd_config(0.9f, 0.1f, false, 1e-2f);
    run_against_reference(&sgd, 70001, 3, NULL, 0);
    kelp_optimizer_config adamw = kelp_optimizer_defaults(KELP_OPTIM_ADAMW);
    run_against_reference(&adamw, 70001, 3, NULL, 0);
}

/* Frozen ranges keep their exact bits, even with weight decay; trainable ranges follow the reference. */
static void check_frozen(const kelp_optimizer_config *c)
{
    const int64_t n = 500;
    const kelp_param_segment segs[] = {{10, 90}, {100, 0}, {250, 50}, {400, 100}};
    run_against_reference(c, n, 4, segs, 4);

    fixture f;
    fixture_init(&f, n, 11);
    float *before = download(f.be, f.params, n);
    kelp_optimizer *opt;
    TEST_OK(kelp_optimizer_create(f.be, c, n, &opt));
    for (int s = 0; s < 3; s++) {
        fixture_set_grads(&f, s);
        TEST_OK(kelp_optimizer_step(opt, 0.1f, f.params, f.grads, segs, 4));
    }
    float *after = download(f.be, f.params, n);
    int64_t frozen[][2] = {{0, 10}, {100, 250}, {300, 400}};
    for (int r = 0; r < 3; r++)
        assert_memory_equal(after + frozen[r][0], before + frozen[r][0],
                            (size_t)(frozen[r][1] - frozen[r][0]) * sizeof(float));
    assert_memory_not_equal(after + 10, before + 10, 90 * sizeof(float));
    for (int i = 0; i < kelp_optimizer_state_count(opt); i++) {
        const char *name;
        kelp_tensor t;
        TEST_OK(kelp_optimizer_state(opt, i, &name, &t));
        float *st = download(f.be, t.data, n);
        for (int r = 0; r < 3; r++)
            for (int64_t j = frozen[r][0]; j < frozen[r][1]; j++)
                if (st[j] != 0.0f)
                    fail_msg("%s[%lld] of a frozen parameter is %g", name, (long long)j, st[j]);
        free(st);
    }
    free(before);
    free(after);
    kelp_optimizer_destroy(opt);
    fixture_free(&f);
}

static void test_segments_freeze(void **state)
{
    (void)state;
    kelp_optimizer_config sgd = sgd_config(0.9f, 0.0f, false, 0.5f);
    check_frozen(&sgd);
    kelp_optimizer_config adamw = kelp_optimizer_defaults(KELP_OPTIM_ADAMW);
    adamw.weight_decay = 0.5f;
    check_frozen(&adamw);
}

static void test_segments_invalid(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 100, 3);
    fixture_set_grads(&f, 0);
    kelp_optimizer_config c = sgd_config(0.9f, 0.0f, false, 0.0f);
    kelp_optimizer *opt;
    TEST_OK(kelp_optimizer_create(f.be, &c, f.n, &opt));
    const kelp_param_segment overlap[] = {{0, 50}, {40, 10}};
    TEST_FAILS_WITH(kelp_optimizer_step(opt, 0.1f, f.params, f.grads, overlap, 2), KELP_ERR_INVALID_ARG,
                    "segment 1 (offset 40)");
    const kelp_param_segment outside[] = {{90, 11}};
    TEST_FAILS_WITH(kelp_optimizer_step(opt, 0.1f, f.params, f.grads, outside, 1), KELP_ERR_INVALID_ARG,
                    "outside the 100 parameters");
    const kelp_param_segment negative[] = {{-1, 5}};
    TEST_FAILS_WITH(kelp_optimizer_step(opt, 0.1f, f.params, f.grads, negative, 1), KELP_ERR_INVALID_ARG,
                    "segment 0");
    TEST_FAILS_WITH(kelp_optimizer_step(opt, 0.1f, f.params, f.grads, NULL, 2), KELP_ERR_INVALID_ARG, "NULL");
    TEST_FAILS_WITH(kelp_optimizer_step(opt, -0.1f, f.params, f.grads, NULL, 0), KELP_ERR_INVALID_ARG,
                    "learning rate");
    TEST_FAILS_WITH(kelp_optimizer_step(opt, NAN, f.params, f.grads, NULL, 0), KELP_ERR_INVALID_ARG,
                    "learning rate");
    assert_int_equal(kelp_optimizer_step_count(opt), 0);
    kelp_optimizer_destroy(opt);
    fixture_free(&f);
}

static void test_state_names(void **state)
{
    (void)state;
    kelp_backend *be = test_cpu_backend();
    struct {
        kelp_optimizer_config c;
        int count;
        const char *names[2];
    } cases[] = {
        {sgd_config(0.0f, 0.0f, false, 0.1f), 0, {NULL, NULL}},
        {sgd_config(0.9f, 0.0f, false, 0.0f), 1, {"momentum_buffer", NULL}},
        {kelp_optimizer_defaults(KELP_OPTIM_ADAMW), 2, {"exp_avg", "exp_avg_sq"}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        kelp_optimizer *opt;
        TEST_OK(kelp_optimizer_create(be, &cases[k].c, 33, &opt));
        assert_int_equal(kelp_optimizer_state_count(opt), cases[k].count);
        for (int i = 0; i < cases[k].count; i++) {
            const char *name;
            kelp_tensor t;
            TEST_OK(kelp_optimizer_state(opt, i, &name, &t));
            assert_string_equal(name, cases[k].names[i]);
            assert_int_equal(t.dtype, KELP_F32);
            assert_int_equal(t.shape.ndim, 1);
            assert_int_equal(t.shape.dims[0], 33);
            assert_ptr_equal(t.backend, be);
        }
        const char *name;
        kelp_tensor t;
        TEST_FAILS_WITH(kelp_optimizer_state(opt, cases[k].count, &name, &t), KELP_ERR_NOT_FOUND, "state index");
        TEST_FAILS_WITH(kelp_optimizer_set_step_count(opt, -1), KELP_ERR_INVALID_ARG, "negative");
        kelp_optimizer_destroy(opt);
    }
}

/* Copies every state tensor and the step count of `from` into `to`, through host memory as a checkpoint would. */
static void copy_state(kelp_backend *be, kelp_optimizer *from, kelp_optimizer *to, int64_t n)
{
    assert_int_equal(kelp_optimizer_state_count(from), kelp_optimizer_state_count(to));
    for (int i = 0; i < kelp_optimizer_state_count(from); i++) {
        const char *name_from, *name_to;
        kelp_tensor src, dst;
        TEST_OK(kelp_optimizer_state(from, i, &name_from, &src));
        TEST_OK(kelp_optimizer_state(to, i, &name_to, &dst));
        assert_string_equal(name_from, name_to);
        float *host = download(be, src.data, n);
        TEST_OK(be->iface->upload(be, dst.data, host, kelp_tensor_bytes(&dst)));
        free(host);
    }
    TEST_OK(kelp_optimizer_set_step_count(to, kelp_optimizer_step_count(from)));
}

/* Steps opt on params with the gradients of steps first..first+count-1 and returns the final parameters. */
static float *continue_run(fixture *f, kelp_optimizer *opt, float *params, int first, int count)
{
    for (int s = first; s < first + count; s++) {
        fixture_set_grads(f, s);
        TEST_OK(kelp_optimizer_step(opt, 0.01f * (float)(s + 1), params, f->grads, NULL, 0));
    }
    return download(f->be, params, f->n);
}

static void check_resume(const kelp_optimizer_config *c)
{
    fixture f;
    fixture_init(&f, 257, 5);
    size_t bytes = (size_t)f.n * sizeof(float);
    kelp_optimizer *a, *b, *fresh;
    TEST_OK(kelp_optimizer_create(f.be, c, f.n, &a));
    TEST_OK(kelp_optimizer_create(f.be, c, f.n, &b));
    TEST_OK(kelp_optimizer_create(f.be, c, f.n, &fresh));
    free(continue_run(&f, a, f.params, 0, 3));

    float *resumed = be_alloc(f.be, bytes), *restarted = be_alloc(f.be, bytes);
    TEST_OK(f.be->iface->copy(f.be, resumed, f.params, bytes));
    TEST_OK(f.be->iface->copy(f.be, restarted, f.params, bytes));
    copy_state(f.be, a, b, f.n);

    float *want = continue_run(&f, a, f.params, 3, 3);
    float *got = continue_run(&f, b, resumed, 3, 3);
    assert_memory_equal(got, want, bytes);
    assert_int_equal(kelp_optimizer_step_count(b), 6);
    /* Without the state the continuation differs: the comparison above can fail. */
    float *other = continue_run(&f, fresh, restarted, 3, 3);
    assert_memory_not_equal(other, want, bytes);

    free(want);
    free(got);
    free(other);
    f.be->iface->free(f.be, resumed);
    f.be->iface->free(f.be, restarted);
    kelp_optimizer_destroy(a);
    kelp_optimizer_destroy(b);
    kelp_optimizer_destroy(fresh);
    fixture_free(&f);
}

static void test_state_resume(void **state)
{
    (void)state;
    kelp_optimizer_config sgd = sgd_config(0.9f, 0.5f, false, 1e-3f);
    check_resume(&sgd);
    kelp_optimizer_config adamw = kelp_optimizer_defaults(KELP_OPTIM_ADAMW);
    check_resume(&adamw);
}

/* ---- configuration ---- */

static kelp_status parse(const char *text, kelp_optimizer_config *out)
{
    cJSON *json = cJSON_Parse(text);
    assert_non_null(json);
    kelp_status s = kelp_optimizer_config_parse(json, out);
    cJSON_Delete(json);
    return s;
}

static void test_config_parse(void **state)
{
    (void)state;
    kelp_optimizer_config c;
    TEST_OK(parse("{\"type\":\"sgd\",\"momentum\":0.9,\"nesterov\":true,\"weight_decay\":1e-4}", &c));
    assert_int_equal(c.kind, KELP_OPTIM_SGD);
    assert_true(c.momentum == 0.9f && c.nesterov && c.weight_decay == 1e-4f && c.dampening == 0.0f);
    TEST_OK(parse("{\"type\":\"sgd\"}", &c));
    assert_true(c.momentum == 0.0f && !c.nesterov && c.weight_decay == 0.0f);
    TEST_OK(parse("{\"type\":\"adamw\",\"beta2\":0.95}", &c));
    assert_int_equal(c.kind, KELP_OPTIM_ADAMW);
    assert_true(c.beta1 == 0.9f && c.beta2 == 0.95f && c.eps == 1e-8f && c.weight_decay == 0.01f);
    TEST_OK(parse("{\"type\":\"adamw\",\"weight_decay\":0,\"eps\":1e-6,\"beta1\":0}", &c));
    assert_true(c.weight_decay == 0.0f && c.eps == 1e-6f && c.beta1 == 0.0f);
    assert_string_equal(kelp_optimizer_kind_name(KELP_OPTIM_ADAMW), "adamw");
}

static void test_config_errors(void **state)
{
    (void)state;
    kelp_optimizer_config c;
    TEST_FAILS_WITH(parse("{\"momentum\":0.9}", &c), KELP_ERR_FORMAT, "missing field 'type'");
    TEST_FAILS_WITH(parse("{\"type\":\"adam\"}", &c), KELP_ERR_FORMAT, "'adam'");
    TEST_FAILS_WITH(parse("{\"type\":3}", &c), KELP_ERR_FORMAT, "field 'type'");
    TEST_FAILS_WITH(parse("[1]", &c), KELP_ERR_FORMAT, "JSON object");
    TEST_FAILS_WITH(parse("{\"type\":\"sgd\",\"beta1\":0.9}", &c), KELP_ERR_FORMAT, "unknown field 'beta1'");
    TEST_FAILS_WITH(parse("{\"type\":\"adamw\",\"momentum\":0.9}", &c), KELP_ERR_FORMAT, "unknown field 'momentum'");
    TEST_FAILS_WITH(parse("{\"type\":\"adamw\",\"lr\":0.1}", &c), KELP_ERR_FORMAT, "unknown field 'lr'");
    TEST_FAILS_WITH(parse("{\"type\":\"sgd\",\"momentum\":2}", &c), KELP_ERR_FORMAT, "'momentum'");
    TEST_FAILS_WITH(parse("{\"type\":\"sgd\",\"momentum\":\"high\"}", &c), KELP_ERR_FORMAT, "'momentum'");
    TEST_FAILS_WITH(parse("{\"type\":\"sgd\",\"nesterov\":1}", &c), KELP_ERR_FORMAT, "'nesterov'");
    TEST_FAILS_WITH(parse("{\"type\":\"sgd\",\"weight_decay\":-1}", &c), KELP_ERR_FORMAT, "'weight_decay'");
    TEST_FAILS_WITH(parse("{\"type\":\"sgd\",\"nesterov\":true}", &c), KELP_ERR_INVALID_ARG, "'nesterov'");
    TEST_FAILS_WITH(parse("{\"type\":\"sgd\",\"nesterov\":true,\"momentum\":0.9,\"dampening\":0.1}", &c),
                    KELP_ERR_INVALID_ARG, "zero dampening");
    TEST_FAILS_WITH(parse("{\"type\":\"adamw\",\"beta1\":1}", &c), KELP_ERR_INVALID_ARG, "'beta1'");
    TEST_FAILS_WITH(parse("{\"type\":\"adamw\",\"eps\":-1e-8}", &c), KELP_ERR_FORMAT, "'eps'");

    kelp_backend *be = test_cpu_backend();
    kelp_optimizer *opt;
    kelp_optimizer_config bad = kelp_optimizer_defaults(KELP_OPTIM_ADAMW);
    bad.beta2 = NAN;
    TEST_FAILS_WITH(kelp_optimizer_create(be, &bad, 10, &opt), KELP_ERR_INVALID_ARG, "'beta2'");
    kelp_optimizer_config ok = kelp_optimizer_defaults(KELP_OPTIM_SGD);
    TEST_FAILS_WITH(kelp_optimizer_create(be, &ok, 0, &opt), KELP_ERR_INVALID_ARG, "parameters");
}

/* ---- gradient clipping ---- */

static void upload_grads(fixture *f, const float *g)
{
    TEST_OK(f->be->iface->upload(f->be, f->grads, g, (size_t)f->n * sizeof(float)));
}

static void test_clip_scales_down(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 3001, 1);
    fixture_set_grads(&f, 0);
    double sum = 0.0;
    for (int64_t i = 0; i < f.n; i++)
        sum += (double)f.host[i] * f.host[i];
    double norm = sqrt(sum), max_norm = 2.5, total = 0.0;
    double *want = malloc((size_t)f.n * sizeof(double));
    assert_non_null(want);
    for (int64_t i = 0; i < f.n; i++)
        want[i] = f.host[i] * (max_norm / (norm + 1e-6));
    TEST_OK(kelp_clip_grad_norm(f.be, f.grads, f.n, NULL, 0, max_norm, &total));
    assert_true(fabs(total - norm) <= 1e-6 * norm);
    float *got = download(f.be, f.grads, f.n);
    test_assert_close(got, want, (size_t)f.n, 1e-6, 1e-9, "clipped grads");
    double after = 0.0;
    for (int64_t i = 0; i < f.n; i++)
        after += (double)got[i] * got[i];
    assert_true(fabs(sqrt(after) - max_norm) < 1e-4);
    free(got);
    free(want);
    fixture_free(&f);
}

static void test_clip_leaves_small(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 4, 1);
    const float g[4] = {0.3f, -0.4f, 0.0f, 1.2f}; /* norm 1.3 */
    upload_grads(&f, g);
    double total = 0.0;
    TEST_OK(kelp_clip_grad_norm(f.be, f.grads, f.n, NULL, 0, 1.3001, &total));
    assert_true(fabs(total - 1.3) < 1e-6);
    float *got = download(f.be, f.grads, f.n);
    assert_memory_equal(got, g, sizeof g);
    free(got);
    TEST_FAILS_WITH(kelp_clip_grad_norm(f.be, f.grads, f.n, NULL, 0, 0.0, &total), KELP_ERR_INVALID_ARG,
                    "max_norm");
    fixture_free(&f);
}

static void test_clip_segments(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 6, 1);
    const float g[6] = {100.0f, 3.0f, 100.0f, 100.0f, 4.0f, 100.0f};
    upload_grads(&f, g);
    const kelp_param_segment segs[] = {{1, 1}, {4, 1}};
    double total = 0.0;
    TEST_OK(kelp_clip_grad_norm(f.be, f.grads, f.n, segs, 2, 1.0, &total));
    assert_true(fabs(total - 5.0) < 1e-9);
    float *got = download(f.be, f.grads, f.n);
    const double want[6] = {100.0, 3.0 / (5.0 + 1e-6), 100.0, 100.0, 4.0 / (5.0 + 1e-6), 100.0};
    test_assert_close(got, want, 6, 1e-6, 0.0, "clipped segment grads");
    free(got);
    fixture_free(&f);
}

static void check_nonfinite(float bad, const char *needle)
{
    fixture f;
    fixture_init(&f, 5, 1);
    const float g[5] = {10.0f, 20.0f, bad, 30.0f, 40.0f};
    upload_grads(&f, g);
    double total = 0.0;
    TEST_FAILS_WITH(kelp_clip_grad_norm(f.be, f.grads, f.n, NULL, 0, 1.0, &total), KELP_ERR_NUMERIC, needle);
    assert_false(isfinite(total));
    float *got = download(f.be, f.grads, f.n);
    assert_memory_equal(got, g, sizeof g);
    free(got);
    fixture_free(&f);
}

static void test_clip_nonfinite(void **state)
{
    (void)state;
    check_nonfinite(NAN, "nan");
    check_nonfinite(INFINITY, "inf");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_plain),
        cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_sgd_dampening),
        cmocka_unit_test(test_sgd_nesterov),
        cmocka_unit_test(test_sgd_weight_decay),
        cmocka_unit_test(test_adamw_defaults),
        cmocka_unit_test(test_adamw_custom),
        cmocka_unit_test(test_large_buffer),
        cmocka_unit_test(test_segments_freeze),
        cmocka_unit_test(test_segments_invalid),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_state_resume),
        cmocka_unit_test(test_config_parse),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_clip_scales_down),
        cmocka_unit_test(test_clip_leaves_small),
        cmocka_unit_test(test_clip_segments),
        cmocka_unit_test(test_clip_nonfinite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
