/* kelp against PyTorch: one training step (forward, loss, backward, batch-norm statistics) of
 * tests/fixtures/every_layer.json, which uses every layer type, compared with the tensors tests/torch/make_fixture.py
 * recorded from torch. No torch is needed here: the fixture is committed.
 *
 * `test_torch_fixture MODEL WEIGHTS EXPECTED` (MODEL a zoo name or a JSON model file) runs the same comparison on
 * another fixture and prints every tensor's error: make_fixture.py --check-resnet18 uses it. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "io/text_file.h"
#include "ref/graph_util.h"

/* Per tensor: max|kelp - torch| <= TOLERANCE * max(1, max|torch|). The reference is float64 torch rounded to float32,
 * so this measures kelp's float32 error: a few ulps per op summed through the network, well below 1e-4 of the
 * tensor's scale, while a wrong formula, layout, mask or statistic misses by far more. Below magnitude 1 the bound
 * is absolute: a relative bound would compare rounding noise on tensors that are zero in exact arithmetic (a conv
 * bias feeding a training-mode batch norm has gradient 0). A deep network in training mode can exceed it in float32
 * whoever computes it, torch included (tests/torch/README.md): that is what the per-tensor report is for. */
#define TOLERANCE 1e-4

typedef struct fixture {
    const char *label;         /* for messages */
    char *model_json;
    char weights_path[512], expected_path[512];
    bool verbose;              /* print every tensor's error */
} fixture;

/* Every tensor is compared before the test fails, so that one run shows all that differ. */
typedef struct comparison {
    kelp_st_file *expected;
    bool verbose;
    int checked, failed;       /* tensors compared, and over the tolerance */
    char first_failure[512];
    double worst;
    char worst_name[160];
} comparison;

static const char *arg_model, *arg_weights, *arg_expected;

static fixture every_layer_fixture(void)
{
    fixture fx = {.label = "every_layer", .model_json = test_read_fixture("every_layer.json")};
    snprintf(fx.weights_path, sizeof fx.weights_path, "%s/tests/fixtures/every_layer.weights.safetensors",
             KELP_SOURCE_DIR);
    snprintf(fx.expected_path, sizeof fx.expected_path, "%s/tests/fixtures/every_layer.expected.safetensors",
             KELP_SOURCE_DIR);
    return fx;
}

static const kelp_st_info *expected_info(kelp_st_file *f, const char *name, kelp_st_dtype dtype)
{
    const kelp_st_info *info;
    TEST_OK(kelp_st_find(f, name, &info));
    if (info->dtype != dtype)
        fail_msg("expected tensor '%s' is %s, not %s", name, kelp_st_dtype_name(info->dtype),
                 kelp_st_dtype_name(dtype));
    return info;
}

/* The named tensor of the expected file; it must hold `bytes` bytes. Free with free(). */
static void *read_expected(kelp_st_file *f, const char *name, kelp_st_dtype dtype, size_t bytes)
{
    const kelp_st_info *info = expected_info(f, name, dtype);
    if (info->nbytes != bytes)
        fail_msg("expected tensor '%s' holds %llu bytes; kelp's holds %zu", name, (unsigned long long)info->nbytes,
                 bytes);
    void *host = malloc(bytes ? bytes : 1);
    TEST_OK(kelp_st_read(f, info, host, bytes));
    return host;
}

/* max|got - want| / max(1, max|want|); infinite when either side has a NaN. *at receives the worst index. */
static double tensor_error(const float *got, const float *want, size_t n, size_t *at)
{
    double diff = 0.0, scale = 1.0;
    *at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (isnan(d))
            d = INFINITY;
        if (d > diff) {
            diff = d;
            *at = i;
        }
        scale = fmax(scale, fabs((double)want[i]));
    }
    return diff / scale;
}

static void check_close(comparison *c, const char *name, const float *got, size_t n)
{
    float *want = read_expected(c->expected, name, KELP_ST_F32, n * sizeof *want);
    size_t at;
    double err = tensor_error(got, want, n, &at);
    bool ok = err <= TOLERANCE;
    if (c->verbose)
        printf("  %-40s error %.3g%s\n", name, err, ok ? "" : "  FAILS");
    if (!ok && c->failed++ == 0)
        snprintf(c->first_failure, sizeof c->first_failure, "%s: error %.3g > %g at element %zu: kelp %.9g, torch %.9g",
                 name, err, TOLERANCE, at, (double)got[at], (double)want[at]);
    if (!(err < c->worst)) {
        c->worst = err;
        snprintf(c->worst_name, sizeof c->worst_name, "%s", name);
    }
    c->checked++;
    free(want);
}

static void check_tensor(comparison *c, const char *name, const kelp_tensor *t)
{
    size_t n = (size_t)kelp_shape_numel(&t->shape);
    float *got = malloc(n * sizeof *got);
    TEST_OK(kelp_tensor_download(t, got, n * sizeof *got));
    check_close(c, name, got, n);
    free(got);
}

static uint64_t fixture_seed(kelp_st_file *f, const char *path)
{
    const char *text = kelp_st_metadata_get(f, "seed");
    if (!text)
        fail_msg("%s: no \"seed\" in the metadata", path);
    char *end;
    errno = 0;
    unsigned long long seed = strtoull(text, &end, 10);
    if (errno || *end || end == text)
        fail_msg("%s: metadata seed \"%s\" is not an unsigned 64-bit integer", path, text);
    return (uint64_t)seed;
}

static kelp_ctx *context_with_seed(uint64_t seed)
{
    kelp_ctx_options o = kelp_ctx_defaults();
    o.threads = 2;
    o.seed = seed;
    kelp_ctx *ctx;
    TEST_OK(kelp_ctx_create(&o, &ctx));
    return ctx;
}

/* A training graph with loss and input gradients at the batch of the expected input, weights loaded strictly, the
 * fixture's input and labels uploaded. */
static kelp_graph *prepare_graph(kelp_ctx *ctx, const fixture *fx, kelp_st_file *expected)
{
    kelp_graph *probe;
    kelp_graph_options o = kelp_graph_defaults();
    TEST_OK(kelp_graph_build(ctx, fx->model_json, &o, &probe));
    const kelp_st_info *image = expected_info(expected, kelp_graph_input_name(probe, 0), KELP_ST_F32);
    kelp_graph_destroy(probe);
    o.batch = image->shape.ndim > 0 ? (int)image->shape.dims[0] : 0;
    o.training = o.with_loss = o.input_grads = true;
    kelp_graph *g;
    TEST_OK(kelp_graph_build(ctx, fx->model_json, &o, &g));
    TEST_OK(kelp_graph_load_weights(g, fx->weights_path, KELP_LOAD_STRICT));
    kelp_tensor *x = kelp_graph_input(g, 0), *label = kelp_graph_label(g);
    char got[96], want[96];
    if (!kelp_shape_equal(&x->shape, &image->shape))
        fail_msg("%s: input '%s' has shape %s; the model's is %s", fx->label, image->name,
                 kelp_shape_str(&image->shape, got, sizeof got), kelp_shape_str(&x->shape, want, sizeof want));
    void *host = read_expected(expected, image->name, KELP_ST_F32, kelp_tensor_bytes(x));
    TEST_OK(kelp_tensor_upload(x, host, kelp_tensor_bytes(x)));
    free(host);
    host = read_expected(expected, "label", KELP_ST_I32, kelp_tensor_bytes(label));
    TEST_OK(kelp_tensor_upload(label, host, kelp_tensor_bytes(label)));
    free(host);
    return g;
}

static void check_param(comparison *c, kelp_graph *g, int index)
{
    kelp_param_info info;
    TEST_OK(kelp_graph_param_info(g, index, &info));
    bool trainable = info.kind == KELP_PARAM_TRAINABLE;
    char name[160];
    snprintf(name, sizeof name, "%s.%s", trainable ? "grad" : "after", info.name);
    size_t bytes = (size_t)kelp_shape_numel(&info.shape) * kelp_dtype_size(info.dtype);
    void *got = malloc(bytes);
    TEST_OK(kelp_graph_read_param(g, index, trainable, got, bytes));
    if (info.dtype == KELP_F32) {
        check_close(c, name, got, bytes / sizeof(float));
    } else {
        /* the batch counter must be exact */
        void *want = read_expected(c->expected, name, KELP_ST_I64, bytes);
        bool ok = memcmp(got, want, bytes) == 0;
        if (c->verbose)
            printf("  %-40s %s\n", name, ok ? "equal" : "differs  FAILS");
        if (!ok && c->failed++ == 0)
            snprintf(c->first_failure, sizeof c->first_failure, "%s: kelp's counter differs from torch's", name);
        c->checked++;
        free(want);
    }
    free(got);
}

/* Every gradient and updated buffer the file holds must have been compared: none of torch's is left unchecked. */
static void check_all_compared(const comparison *c, int compared_before_params)
{
    int recorded = 0;
    for (size_t k = 0; k < kelp_st_count(c->expected); k++) {
        const char *name = kelp_st_info_at(c->expected, k)->name;
        recorded += strncmp(name, "grad.", 5) == 0 || strncmp(name, "after.", 6) == 0;
    }
    if (recorded != c->checked - compared_before_params)
        fail_msg("the expected file holds %d gradients and updated buffers; kelp compared %d", recorded,
                 c->checked - compared_before_params);
}

/* Returns how many tensors differ from torch, after cleaning up, so that a failing run leaks nothing. */
static int run_fixture(const fixture *fx, char *first_failure, size_t len)
{
    comparison c = {.verbose = fx->verbose, .worst = 0.0};
    TEST_OK(kelp_st_open(fx->expected_path, &c.expected));
    kelp_ctx *ctx = context_with_seed(fixture_seed(c.expected, fx->expected_path));
    kelp_graph *g = prepare_graph(ctx, fx, c.expected);
    /* "mode": "eval" runs batch norm on its running statistics, forward and backward (a frozen backbone) */
    const char *mode = kelp_st_metadata_get(c.expected, "mode");
    if (mode && strcmp(mode, "eval") == 0)
        TEST_OK(kelp_graph_set_training(g, false));
    else if (mode && strcmp(mode, "train") != 0)
        fail_msg("%s: metadata mode \"%s\" is neither train nor eval", fx->expected_path, mode);

    TEST_OK(kelp_graph_forward(g));
    check_tensor(&c, "logits", kelp_graph_output(g, 0));
    float loss;
    TEST_OK(kelp_graph_loss(g, &loss));
    check_close(&c, "loss", &loss, 1);

    TEST_OK(kelp_graph_zero_grad(g));
    TEST_OK(kelp_graph_backward(g));
    char name[160];
    snprintf(name, sizeof name, "grad.%s", kelp_graph_input_name(g, 0));
    int before = c.checked;
    check_tensor(&c, name, kelp_graph_input_grad(g, 0));
    for (int i = 0; i < kelp_graph_param_count(g); i++)
        check_param(&c, g, i);
    check_all_compared(&c, before);
    printf("%s: %d of %d tensors within %g of torch; worst error %.3g (%s)\n", fx->label, c.checked - c.failed,
           c.checked, TOLERANCE, c.worst, c.worst_name);
    snprintf(first_failure, len, "%s", c.first_failure);
    kelp_graph_destroy(g);
    kelp_ctx_destroy(ctx);
    kelp_st_close(c.expected);
    return c.failed;
}

static void run_and_free(fixture *fx)
{
    char first_failure[512];
    int failed = run_fixture(fx, first_failure, sizeof first_failure);
    free(fx->model_json);
    if (failed)
        fail_msg("%s: %d tensors differ from torch; the first: %s", fx->label, failed, first_failure);
}

static void test_every_layer_matches_torch(void **state)
{
    (void)state;
    fixture fx = every_layer_fixture();
    run_and_free(&fx);
}

/* Another context seed gives another dropout mask, and the logits must then miss torch's: the comparison above
 * really checks the mask rather than passing whatever it is. */
static void test_logits_depend_on_the_dropout_seed(void **state)
{
    (void)state;
    fixture fx = every_layer_fixture();
    kelp_st_file *expected;
    TEST_OK(kelp_st_open(fx.expected_path, &expected));
    kelp_ctx *ctx = context_with_seed(fixture_seed(expected, fx.expected_path) + 1);
    kelp_graph *g = prepare_graph(ctx, &fx, expected);
    TEST_OK(kelp_graph_forward(g));
    kelp_tensor *y = kelp_graph_output(g, 0);
    size_t n = (size_t)kelp_shape_numel(&y->shape), at;
    float *got = malloc(n * sizeof *got);
    TEST_OK(kelp_tensor_download(y, got, n * sizeof *got));
    float *want = read_expected(expected, "logits", KELP_ST_F32, n * sizeof *want);
    assert_true(tensor_error(got, want, n, &at) > 100 * TOLERANCE);
    free(got);
    free(want);
    kelp_graph_destroy(g);
    kelp_ctx_destroy(ctx);
    kelp_st_close(expected);
    free(fx.model_json);
}

/* kelp_graph_read_param gives back exactly the file's bytes: conv weights permuted to OIHW, counters as int64. */
static void test_read_param_returns_the_loaded_weights(void **state)
{
    (void)state;
    fixture fx = every_layer_fixture();
    kelp_graph *g = test_build(fx.model_json, 2, false, false, false);
    TEST_OK(kelp_graph_load_weights(g, fx.weights_path, KELP_LOAD_STRICT));
    kelp_st_file *weights;
    TEST_OK(kelp_st_open(fx.weights_path, &weights));
    assert_int_equal(kelp_st_count(weights), kelp_graph_param_count(g));
    for (int i = 0; i < kelp_graph_param_count(g); i++) {
        kelp_param_info info;
        TEST_OK(kelp_graph_param_info(g, i, &info));
        size_t bytes = (size_t)kelp_shape_numel(&info.shape) * kelp_dtype_size(info.dtype);
        void *got = malloc(bytes);
        TEST_OK(kelp_graph_read_param(g, i, false, got, bytes));
        void *want = read_expected(weights, info.name, info.dtype == KELP_I64 ? KELP_ST_I64 : KELP_ST_F32, bytes);
        assert_memory_equal(got, want, bytes);
        free(got);
        free(want);
    }
    kelp_st_close(weights);
    kelp_graph_destroy(g);
    free(fx.model_json);
}

static int param_index(kelp_graph *g, const char *name)
{
    for (int i = 0; i < kelp_graph_param_count(g); i++) {
        kelp_param_info info;
        TEST_OK(kelp_graph_param_info(g, i, &info));
        if (strcmp(info.name, name) == 0)
            return i;
    }
    fail_msg("no parameter '%s'", name);
    return -1;
}

static void test_read_param_rejects_bad_requests(void **state)
{
    (void)state;
    fixture fx = every_layer_fixture();
    kelp_graph *train = test_build(fx.model_json, 2, true, false, false);
    kelp_graph *infer = test_build(fx.model_json, 2, false, false, false);
    float w[6 * 3 * 3 * 3];
    int conv1 = param_index(train, "conv1.weight"), mean = param_index(train, "bn1.running_mean");
    TEST_FAILS_WITH(kelp_graph_read_param(train, -1, false, w, sizeof w), KELP_ERR_INVALID_ARG, "index -1");
    TEST_FAILS_WITH(kelp_graph_read_param(train, kelp_graph_param_count(train), false, w, sizeof w),
                    KELP_ERR_INVALID_ARG, "outside");
    TEST_FAILS_WITH(kelp_graph_read_param(train, conv1, false, w, sizeof w - 4), KELP_ERR_INVALID_ARG,
                    "conv1.weight");
    TEST_FAILS_WITH(kelp_graph_read_param(train, mean, true, w, 6 * sizeof(float)), KELP_ERR_INVALID_ARG,
                    "bn1.running_mean");
    TEST_FAILS_WITH(kelp_graph_read_param(infer, conv1, true, w, sizeof w), KELP_ERR_INVALID_ARG, "no gradient");
    TEST_OK(kelp_graph_read_param(train, conv1, true, w, sizeof w));
    kelp_graph_destroy(train);
    kelp_graph_destroy(infer);
    free(fx.model_json);
}

static char *model_json(const char *model)
{
    char *zoo;
    if (kelp_model_zoo_json(model, NULL, &zoo) == KELP_OK) {
        size_t len = strlen(zoo) + 1;
        char *copy = malloc(len);
        memcpy(copy, zoo, len);
        kelp_free(zoo);
        return copy;
    }
    char *text;
    TEST_OK(kelp_read_text_file(model, KELP_MODEL_FILE_MAX_BYTES, &text));
    return text;
}

static void test_fixture_from_args(void **state)
{
    (void)state;
    fixture fx = {.label = arg_model, .model_json = model_json(arg_model), .verbose = true};
    snprintf(fx.weights_path, sizeof fx.weights_path, "%s", arg_weights);
    snprintf(fx.expected_path, sizeof fx.expected_path, "%s", arg_expected);
    run_and_free(&fx);
}

int main(int argc, char **argv)
{
    if (argc == 4) {
        /* the per-tensor lines stay in order with cmocka's messages on stderr when both go to one pipe */
        setvbuf(stdout, NULL, _IOLBF, 0);
        arg_model = argv[1];
        arg_weights = argv[2];
        arg_expected = argv[3];
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_fixture_from_args)};
        return cmocka_run_group_tests(tests, NULL, NULL);
    }
    if (argc != 1) {
        fprintf(stderr, "usage: %s [MODEL WEIGHTS EXPECTED]   (MODEL: a zoo name or a JSON model file)\n", argv[0]);
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_layer_matches_torch),
        cmocka_unit_test(test_logits_depend_on_the_dropout_seed),
        cmocka_unit_test(test_read_param_returns_the_loaded_weights),
        cmocka_unit_test(test_read_param_rejects_bad_requests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
