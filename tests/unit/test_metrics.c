/* Classification metrics against values worked out by hand: confusion matrix, top-1/top-k with ties, per-class and
 * macro precision/recall/F1 including classes never seen or never predicted, ignored labels, the JSON report. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine/metrics.h"
#include "ref/test_util.h"

#define EPS 1e-12

static void assert_class(const kelp_metrics *m, int c, double precision, double recall, double f1, int64_t support,
                         int64_t predicted)
{
    kelp_class_metrics cm;
    TEST_OK(kelp_metrics_class(m, c, &cm));
    assert_float_equal(cm.precision, precision, EPS);
    assert_float_equal(cm.recall, recall, EPS);
    assert_float_equal(cm.f1, f1, EPS);
    assert_int_equal(cm.support, support);
    assert_int_equal(cm.predicted, predicted);
}

/* 3 classes, 8 counted rows and 2 ignored:
 *   row label logits        predicted
 *   0   0     2   1   0     0
 *   1   0     0.5 3   1     1
 *   2   0     4   4   1     0   (tie between 0 and 1: the lowest index)
 *   3   1     0   2   1     1
 *   4   1     1   0   2     2
 *   5   2     0   1   5     2
 *   6   2     3   0   1     0
 *   7   2     0   0   0     0   (all tied)
 *   8   -100  9   0   0     ignored (the ignore index)
 *   9   3     0   9   0     ignored (out of range)
 * confusion (rows true, columns predicted): [2 1 0; 0 1 1; 2 0 1]; support 3 2 3; predicted 4 2 2.
 * precision 2/4, 1/2, 1/2; recall 2/3, 1/2, 1/3; F1 = 2tp/(2tp+fp+fn) = 4/7, 2/4, 2/5. */
static const float three_logits[10][3] = {{2, 1, 0}, {0.5f, 3, 1}, {4, 4, 1}, {0, 2, 1}, {1, 0, 2},
                                          {0, 1, 5}, {3, 0, 1},    {0, 0, 0}, {9, 0, 0}, {0, 9, 0}};
static const int32_t three_labels[10] = {0, 0, 0, 1, 1, 2, 2, 2, -100, 3};

static kelp_metrics *three_class_example(void)
{
    kelp_metrics *m;
    TEST_OK(kelp_metrics_create(3, -100, &m));
    /* two batches, so that counts accumulate across calls */
    TEST_OK(kelp_metrics_add(m, &three_logits[0][0], three_labels, 4));
    TEST_OK(kelp_metrics_add(m, &three_logits[4][0], three_labels + 4, 6));
    return m;
}

static void test_three_classes_by_hand(void **state)
{
    (void)state;
    kelp_metrics *m = three_class_example();
    assert_int_equal(kelp_metrics_classes(m), 3);
    assert_int_equal(kelp_metrics_samples(m), 8);
    const int64_t want[9] = {2, 1, 0, 0, 1, 1, 2, 0, 1};
    const int64_t *confusion = kelp_metrics_confusion(m);
    for (int i = 0; i < 9; i++)
        assert_int_equal(confusion[i], want[i]);
    assert_float_equal(kelp_metrics_top1(m), 4.0 / 8.0, EPS);
    assert_int_equal(kelp_metrics_top_k(m), 3);
    assert_float_equal(kelp_metrics_top5(m), 1.0, EPS); /* k = min(5, 3) = 3 of 3 classes: every row */
    assert_class(m, 0, 2.0 / 4.0, 2.0 / 3.0, 4.0 / 7.0, 3, 4);
    assert_class(m, 1, 1.0 / 2.0, 1.0 / 2.0, 2.0 / 4.0, 2, 2);
    assert_class(m, 2, 1.0 / 2.0, 1.0 / 3.0, 2.0 / 5.0, 3, 2);
    kelp_macro_metrics macro = kelp_metrics_macro(m);
    assert_int_equal(macro.classes, 3);
    assert_float_equal(macro.precision, 0.5, EPS);
    assert_float_equal(macro.recall, (2.0 / 3.0 + 1.0 / 2.0 + 1.0 / 3.0) / 3.0, EPS); /* 0.5 */
    assert_float_equal(macro.f1, (4.0 / 7.0 + 2.0 / 4.0 + 2.0 / 5.0) / 3.0, EPS);   /* 0.49047619... */
    kelp_metrics_destroy(m);
}

/* K = 7, so k = 5: a label is a hit when at most 4 classes beat it, ties ranked by index as for argmax. */
static void test_top5_with_seven_classes(void **state)
{
    (void)state;
    const float logits[6][7] = {
        {0, 1, 2, 3, 4, 5, 6},        /* label 2: beaten by 3,4,5,6 -> rank 4, hit */
        {0, 1, 2, 3, 4, 5, 6},        /* label 1: rank 5, miss */
        {1, 1, 1, 1, 1, 1, 1},        /* label 4: beaten by the equal 0..3 -> rank 4, hit */
        {1, 1, 1, 1, 1, 1, 1},        /* label 5: rank 5, miss */
        {INFINITY, 0, 0, 0, 0, 0, 0}, /* label 0: top-1 hit */
        {-1, -1, -1, 0, -1, -1, 7},   /* label 0: beaten by 6 and 3 only (1, 2, 4, 5 tie after it): hit */
    };
    const int32_t labels[6] = {2, 1, 4, 5, 0, 0};
    kelp_metrics *m;
    TEST_OK(kelp_metrics_create(7, -1, &m));
    TEST_OK(kelp_metrics_add(m, &logits[0][0], labels, 6));
    assert_int_equal(kelp_metrics_top_k(m), 5);
    assert_float_equal(kelp_metrics_top5(m), 4.0 / 6.0, EPS);
    assert_float_equal(kelp_metrics_top1(m), 1.0 / 6.0, EPS);
    /* argmax: 6, 6, 0 (tie), 0 (tie), 0, 6 */
    const int64_t *confusion = kelp_metrics_confusion(m);
    assert_int_equal(confusion[2 * 7 + 6], 1);
    assert_int_equal(confusion[4 * 7 + 0], 1);
    assert_int_equal(confusion[0 * 7 + 0], 1);
    assert_int_equal(confusion[0 * 7 + 6], 1);
    kelp_metrics_destroy(m);

    TEST_OK(kelp_metrics_create(2, -1, &m));
    assert_int_equal(kelp_metrics_top_k(m), 2);
    kelp_metrics_destroy(m);
}

/* K = 5. Rows (label -> predicted): 0->0, 0->1, 1->1, 1->2, 3->0. Class 2 is predicted once but never a label,
 * class 3 is a label but never predicted, class 4 never occurs. A rate with a zero denominator is 0. */
static void test_zero_support_and_zero_predictions(void **state)
{
    (void)state;
    const float logits[5][5] = {{5, 0, 0, 0, 0}, {0, 5, 0, 0, 0}, {0, 5, 0, 0, 0}, {0, 0, 5, 0, 0}, {5, 0, 0, 0, 0}};
    const int32_t labels[5] = {0, 0, 1, 1, 3};
    kelp_metrics *m;
    TEST_OK(kelp_metrics_create(5, -100, &m));
    TEST_OK(kelp_metrics_add(m, &logits[0][0], labels, 5));
    assert_class(m, 0, 1.0 / 2.0, 1.0 / 2.0, 2.0 / 4.0, 2, 2); /* tp 1, fp 1 (the 3), fn 1 */
    assert_class(m, 1, 1.0 / 2.0, 1.0 / 2.0, 2.0 / 4.0, 2, 2);
    assert_class(m, 2, 0.0, 0.0, 0.0, 0, 1); /* recall 0/0 -> 0 */
    assert_class(m, 3, 0.0, 0.0, 0.0, 1, 0); /* precision 0/0 -> 0 */
    assert_class(m, 4, 0.0, 0.0, 0.0, 0, 0);
    /* averaged over classes 0..3: class 4 occurs neither as label nor as prediction */
    kelp_macro_metrics macro = kelp_metrics_macro(m);
    assert_int_equal(macro.classes, 4);
    assert_float_equal(macro.precision, 1.0 / 4.0, EPS);
    assert_float_equal(macro.recall, 1.0 / 4.0, EPS);
    assert_float_equal(macro.f1, 1.0 / 4.0, EPS);
    kelp_metrics_destroy(m);
}

static void test_empty_reset_and_ignore_index_inside_range(void **state)
{
    (void)state;
    kelp_metrics *m;
    TEST_OK(kelp_metrics_create(3, 1, &m));
    assert_float_equal(kelp_metrics_top1(m), 0.0, 0.0);
    assert_float_equal(kelp_metrics_top5(m), 0.0, 0.0);
    kelp_macro_metrics macro = kelp_metrics_macro(m);
    assert_int_equal(macro.classes, 0);
    assert_float_equal(macro.f1, 0.0, 0.0);
    TEST_OK(kelp_metrics_add(m, NULL, NULL, 0));

    /* ignore index 1 is a valid class: its rows are skipped, and -100 is merely out of range */
    TEST_OK(kelp_metrics_add(m, &three_logits[0][0], three_labels, 10));
    assert_int_equal(kelp_metrics_samples(m), 6);
    assert_float_equal(kelp_metrics_top1(m), 3.0 / 6.0, EPS);
    kelp_class_metrics cm;
    TEST_OK(kelp_metrics_class(m, 1, &cm));
    assert_int_equal(cm.support, 0);
    assert_int_equal(cm.predicted, 1);

    kelp_metrics_reset(m);
    assert_int_equal(kelp_metrics_samples(m), 0);
    for (int i = 0; i < 9; i++)
        assert_int_equal(kelp_metrics_confusion(m)[i], 0);
    TEST_OK(kelp_metrics_class(m, 0, &cm));
    assert_int_equal(cm.support + cm.predicted, 0);
    kelp_metrics_destroy(m);
}

static void test_bad_input(void **state)
{
    (void)state;
    kelp_metrics *m = (kelp_metrics *)&m;
    TEST_FAILS_WITH(kelp_metrics_create(0, -1, &m), KELP_ERR_INVALID_ARG, "metrics: 0 classes");
    assert_null(m);
    TEST_FAILS_WITH(kelp_metrics_create(KELP_METRICS_MAX_CLASSES + 1, -1, &m), KELP_ERR_INVALID_ARG, "classes");

    m = three_class_example();
    float logits[2][3] = {{1, 2, 3}, {1, NAN, 3}};
    int32_t labels[2] = {0, 2};
    TEST_FAILS_WITH(kelp_metrics_add(m, &logits[0][0], labels, 2), KELP_ERR_NUMERIC, "logit 1 of row 1 is NaN");
    assert_int_equal(kelp_metrics_samples(m), 8); /* the failed batch counted nothing, not even row 0 */
    labels[1] = -100;                             /* a NaN in an ignored row does not matter */
    TEST_OK(kelp_metrics_add(m, &logits[0][0], labels, 2));
    assert_int_equal(kelp_metrics_samples(m), 9);

    TEST_FAILS_WITH(kelp_metrics_add(m, &logits[0][0], labels, -1), KELP_ERR_INVALID_ARG, "-1 rows");
    TEST_FAILS_WITH(kelp_metrics_add(m, &logits[0][0], NULL, 2), KELP_ERR_INVALID_ARG, "no labels");
    TEST_FAILS_WITH(kelp_metrics_add(m, NULL, labels, 2), KELP_ERR_INVALID_ARG, "no logits");
    kelp_class_metrics cm = {.support = 7};
    TEST_FAILS_WITH(kelp_metrics_class(m, 3, &cm), KELP_ERR_INVALID_ARG, "class 3 is not in [0, 3)");
    assert_int_equal(cm.support, 0);
    TEST_FAILS_WITH(kelp_metrics_class(m, -1, &cm), KELP_ERR_INVALID_ARG, "class -1");
    const char *names[3] = {"cat", NULL, "dog"};
    cJSON *json = (cJSON *)&json;
    TEST_FAILS_WITH(kelp_metrics_to_json(m, names, &json), KELP_ERR_INVALID_ARG, "class name 1 of 3 is NULL");
    assert_null(json);
    kelp_metrics_destroy(m);
    kelp_metrics_destroy(NULL);
}

static double number(const cJSON *obj, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(item))
        fail_msg("'%s' is not a number", key);
    return item->valuedouble;
}

static void test_json_report(void **state)
{
    (void)state;
    kelp_metrics *m = three_class_example();
    const char *names[3] = {"cat", "dog", "bird"};
    cJSON *json;
    TEST_OK(kelp_metrics_to_json(m, names, &json));
    assert_float_equal(number(json, "samples"), 8, 0);
    assert_float_equal(number(json, "top1"), 0.5, EPS);
    assert_float_equal(number(json, "top5"), 1.0, EPS);
    assert_float_equal(number(json, "top_k"), 3, 0);
    const cJSON *macro = cJSON_GetObjectItemCaseSensitive(json, "macro");
    assert_float_equal(number(macro, "precision"), 0.5, EPS);
    assert_float_equal(number(macro, "f1"), (4.0 / 7.0 + 2.0 / 4.0 + 2.0 / 5.0) / 3.0, EPS);

    const cJSON *per_class = cJSON_GetObjectItemCaseSensitive(json, "per_class");
    assert_true(cJSON_IsArray(per_class));
    assert_int_equal(cJSON_GetArraySize(per_class), 3);
    const double recall[3] = {2.0 / 3.0, 1.0 / 2.0, 1.0 / 3.0}, support[3] = {3, 2, 3};
    for (int c = 0; c < 3; c++) {
        const cJSON *entry = cJSON_GetArrayItem(per_class, c);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(entry, "name")), names[c]);
        assert_float_equal(number(entry, "recall"), recall[c], EPS);
        assert_float_equal(number(entry, "precision"), 0.5, EPS); /* 2/4, 1/2, 1/2 */
        assert_float_equal(number(entry, "support"), support[c], 0);
        assert_non_null(cJSON_GetObjectItemCaseSensitive(entry, "f1"));
        assert_int_equal(cJSON_GetArraySize(entry), 5);
    }

    const cJSON *confusion = cJSON_GetObjectItemCaseSensitive(json, "confusion");
    assert_int_equal(cJSON_GetArraySize(confusion), 3);
    const double want[3][3] = {{2, 1, 0}, {0, 1, 1}, {2, 0, 1}};
    for (int i = 0; i < 3; i++) {
        const cJSON *row = cJSON_GetArrayItem(confusion, i);
        assert_int_equal(cJSON_GetArraySize(row), 3);
        for (int j = 0; j < 3; j++)
            assert_float_equal(cJSON_GetArrayItem(row, j)->valuedouble, want[i][j], 0);
    }
    cJSON_Delete(json);

    /* without names, classes are named by index */
    TEST_OK(kelp_metrics_to_json(m, NULL, &json));
    per_class = cJSON_GetObjectItemCaseSensitive(json, "per_class");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(per_class, 2),
                                                                               "name")),
                        "2");
    cJSON_Delete(json);
    kelp_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_classes_by_hand),
        cmocka_unit_test(test_top5_with_seven_classes),
        cmocka_unit_test(test_zero_support_and_zero_predictions),
        cmocka_unit_test(test_empty_reset_and_ignore_index_inside_range),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_json_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
