/* softmax_cross_entropy: loss and gradient against a double reference of PyTorch's F.cross_entropy (mean) for
 * plain, label smoothing, ignore_index, class weights and all three together; finite differences; rank-4 logits;
 * invalid labels; all rows ignored; field and shape errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"
#include "ref/layer_harness.h"
#include "ref/ref_elem.h"

typedef struct xent_case {
    const char *name;
    const char *fields;
    const float *weights; /* NULL without class weights */
    double label_smoothing;
    int ignore_index;
    int ignored_rows; /* rows 1, 3, 5... get the ignore index */
} xent_case;

static const float class_weights[5] = {0.5f, 1.0f, 2.0f, 1.5f, 0.25f};

static const xent_case cases[] = {
    {"plain", "{}", NULL, 0.0, -100, 0},
    {"label smoothing", "{\"label_smoothing\": 0.1}", NULL, 0.1, -100, 0},
    {"ignore_index", "{}", NULL, 0.0, -100, 2},
    {"ignore_index 255", "{\"ignore_index\": 255}", NULL, 0.0, 255, 3},
    {"class weights", "{\"weight\": [0.5, 1, 2, 1.5, 0.25]}", class_weights, 0.0, -100, 0},
    {"all three", "{\"weight\": [0.5, 1, 2, 1.5, 0.25], \"label_smoothing\": 0.2, \"ignore_index\": 255}",
     class_weights, 0.2, 255, 2},
};

#define N_CASES (sizeof cases / sizeof cases[0])

static int32_t *labels_of(test_layer *t) { return (int32_t *)t->in[1].data; }

/* Logits spread over [-4, 4] so that the softmax is far from uniform. */
static void setup_case(test_layer *t, const xent_case *c, const kelp_shape *shapes, uint64_t seed)
{
    test_layer_setup(t, "softmax_cross_entropy", c->fields, 2, shapes, true, seed);
    int64_t rows = kelp_shape_numel(&shapes[1]);
    int64_t k = shapes[0].dims[shapes[0].ndim - 1];
    test_fill_uniform(test_f32(&t->in[0]), (size_t)(rows * k), seed + 100, -4.0f, 4.0f);
    for (int r = 0; r < c->ignored_rows; r++)
        labels_of(t)[(2 * r + 1) % rows] = c->ignore_index;
}

static void check_against_reference(test_layer *t, const xent_case *c, int64_t rows, int k)
{
    test_layer_forward(t);
    double *dref = malloc((size_t)(rows * k) * sizeof(double));
    double want = ref_softmax_xent(rows, k, test_f32(&t->in[0]), labels_of(t), c->weights, c->label_smoothing,
                                   c->ignore_index, dref);
    test_assert_close(test_f32(&t->out), &want, 1, 1e-5, 1e-6, c->name);
    /* dout is a device scalar that scales the gradient */
    test_f32(&t->dout)[0] = 2.5f;
    test_layer_backward(t);
    for (int64_t i = 0; i < rows * k; i++)
        dref[i] *= 2.5;
    test_assert_close(test_f32(&t->din[0]), dref, (size_t)(rows * k), 1e-4, 1e-6, c->name);
    test_f32(&t->dout)[0] = 1.0f;
    free(dref);
}

static void test_matches_reference(void **state)
{
    (void)state;
    kelp_shape s[2] = {kelp_shape2(7, 5), {1, {7}}};
    for (size_t i = 0; i < N_CASES; i++) {
        test_layer t;
        setup_case(&t, &cases[i], s, 10 + i);
        kelp_shape scalar = {1, {1}};
        assert_true(kelp_shape_equal(&t.out_shape, &scalar));
        check_against_reference(&t, &cases[i], 7, 5);
        test_layer_teardown(&t);
    }
}

static void test_gradcheck(void **state)
{
    (void)state;
    kelp_shape s[2] = {kelp_shape2(7, 5), {1, {7}}};
    for (size_t i = 0; i < N_CASES; i++) {
        test_layer t;
        setup_case(&t, &cases[i], s, 20 + i);
        test_layer_gradcheck(&t, 1e-3f, 1e-3, 35);
        test_layer_teardown(&t);
    }
}

/* Segmentation: one row per pixel; big enough for the threaded path. */
static void test_rank4_logits(void **state)
{
    (void)state;
    const xent_case *c = &cases[N_CASES - 1];
    kelp_shape s[2] = {kelp_shape4(2, 30, 70, 5), {3, {2, 30, 70}}};
    test_layer t;
    setup_case(&t, c, s, 30);
    for (int64_t i = 0; i < 4200; i += 7)
        labels_of(&t)[i] = 255;
    check_against_reference(&t, c, 4200, 5);
    test_layer_gradcheck(&t, 1e-2f, 2e-3, 40);
    test_layer_teardown(&t);
}

static void test_invalid_label_fails(void **state)
{
    (void)state;
    kelp_shape s[2] = {kelp_shape2(4, 5), {1, {4}}};
    const int32_t bad[] = {5, -1, 255};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        test_layer t;
        test_layer_setup(&t, "softmax_cross_entropy", "{}", 2, s, true, 40);
        labels_of(&t)[2] = bad[i];
        TEST_FAILS_WITH(t.type->forward(&t.io), KELP_ERR_INVALID_ARG, "softmax_cross_entropy");
        assert_non_null(strstr(kelp_last_error(), "[0, 5)"));
        test_layer_teardown(&t);
    }
}

/* The kernel's contract, which the CUDA backend's loss follows too: a failed call leaves loss and norm as they were. */
static void test_invalid_label_leaves_outputs(void **state)
{
    (void)state;
    kelp_xent_desc d = {4, 3, 0.1f, -100, KELP_F32};
    const float logits[12] = {0.5f, -1, 2, 0, 0, 0, 1, 2, 3, -3, 0.25f, 1};
    const int32_t labels[4] = {0, -100, 3, 1};
    float probs[12], loss = 7.0f, norm = 9.0f;
    assert_int_not_equal(kelp_cpu_softmax_xent_forward(1, &d, logits, labels, NULL, &loss, probs, &norm), 0);
    assert_true(loss == 7.0f && norm == 9.0f);
}

/* PyTorch gives NaN here; kelp gives 0 and no gradient. */
static void test_all_ignored_gives_zero(void **state)
{
    (void)state;
    kelp_shape s[2] = {kelp_shape4(1, 2, 3, 4), {3, {1, 2, 3}}};
    test_layer t;
    test_layer_setup(&t, "softmax_cross_entropy", "{\"label_smoothing\": 0.1, \"weight\": [1, 2, 3, 4]}", 2, s, true,
                     50);
    for (int i = 0; i < 6; i++)
        labels_of(&t)[i] = -100;
    test_f32(&t.out)[0] = NAN;
    test_layer_forward(&t);
    assert_true(test_f32(&t.out)[0] == 0.0f);
    test_layer_backward(&t);
    for (int i = 0; i < 24; i++)
        assert_true(test_f32(&t.din[0])[i] == 0.0f);
    test_layer_teardown(&t);
}

/* The graph may run a smaller batch than it planned; the layer must take its sizes from the run-time tensors. */
static void test_smaller_batch_than_planned(void **state)
{
    (void)state;
    const xent_case *c = &cases[N_CASES - 1];
    kelp_shape s[2] = {kelp_shape2(9, 5), {1, {9}}};
    test_layer t;
    setup_case(&t, c, s, 80);
    t.in[0].shape.dims[0] = 4;
    t.din[0].shape.dims[0] = 4;
    t.in[1].shape.dims[0] = 4;
    float *tail = test_f32(&t.din[0]) + 20;
    for (int i = 0; i < 25; i++)
        tail[i] = 7.0f;
    check_against_reference(&t, c, 4, 5);
    for (int i = 0; i < 25; i++)
        assert_true(tail[i] == 7.0f);
    test_layer_teardown(&t);
}

static void test_labels_must_be_int32(void **state)
{
    (void)state;
    kelp_shape s[2] = {kelp_shape2(4, 5), {1, {4}}};
    test_layer t;
    test_layer_setup(&t, "softmax_cross_entropy", "{}", 2, s, true, 90);
    t.in[1].dtype = KELP_F32;
    TEST_FAILS_WITH(t.type->forward(&t.io), KELP_ERR_INVALID_ARG, "I32");
    test_layer_teardown(&t);
}

static void test_field_errors(void **state)
{
    (void)state;
    kelp_shape s[2] = {kelp_shape2(4, 3), {1, {4}}};
    const struct {
        const char *fields;
        kelp_status status;
        const char *needle;
    } bad[] = {
        {"{\"label_smoothing\": 1.5}", KELP_ERR_FORMAT, "label_smoothing"},
        {"{\"ignore_index\": 0.5}", KELP_ERR_FORMAT, "ignore_index"},
        {"{\"weight\": [1, 0, 2]}", KELP_ERR_FORMAT, "weight"},
        {"{\"weight\": [1, -2, 2]}", KELP_ERR_FORMAT, "weight"},
        {"{\"weight\": 2}", KELP_ERR_FORMAT, "weight"},
        {"{\"weight\": []}", KELP_ERR_FORMAT, "weight"},
        {"{\"weight\": [1, \"a\", 2]}", KELP_ERR_FORMAT, "weight"},
        {"{\"weight\": [1, 2]}", KELP_ERR_SHAPE, "weight"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        test_layer t;
        TEST_FAILS_WITH(test_layer_try_setup(&t, "softmax_cross_entropy", bad[i].fields, 2, s, true, 60),
                        bad[i].status, bad[i].needle);
        test_layer_teardown(&t);
    }
    const kelp_layer_type *type = kelp_layer_find("softmax_cross_entropy");
    assert_true(type->is_loss);
    assert_string_equal(type->fields[0], "label_smoothing");
    assert_string_equal(type->fields[1], "ignore_index");
    assert_string_equal(type->fields[2], "weight");
    assert_null(type->fields[3]);
}

static void test_shape_errors(void **state)
{
    (void)state;
    test_layer t;
    kelp_shape labels_wrong[2] = {kelp_shape4(2, 3, 3, 4), {3, {2, 3, 4}}};
    TEST_FAILS_WITH(test_layer_try_setup(&t, "softmax_cross_entropy", "{}", 2, labels_wrong, true, 70),
                    KELP_ERR_SHAPE, "input 1");
    assert_non_null(strstr(kelp_last_error(), "[2,3,4]"));
    assert_non_null(strstr(kelp_last_error(), "[2,3,3]"));
    test_layer_teardown(&t);
    kelp_shape rank3[2] = {{3, {2, 3, 4}}, {2, {2, 3}}};
    TEST_FAILS_WITH(test_layer_try_setup(&t, "softmax_cross_entropy", "{}", 2, rank3, true, 70), KELP_ERR_SHAPE,
                    "input 0");
    test_layer_teardown(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_rank4_logits),
        cmocka_unit_test(test_invalid_label_fails),
        cmocka_unit_test(test_invalid_label_leaves_outputs),
        cmocka_unit_test(test_all_ignored_gives_zero),
        cmocka_unit_test(test_smaller_batch_than_planned),
        cmocka_unit_test(test_labels_must_be_int32),
        cmocka_unit_test(test_field_errors),
        cmocka_unit_test(test_shape_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
