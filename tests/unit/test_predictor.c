/* The public inference API (kelp/predictor.h) that libkelp.so exports: a checkpoint and a bundle directory open
 * alike; pixels, encoded bytes and files give the same answer; results are sorted, self-contained and outlive the
 * predictor; bad input is refused with its status and a message; fine-tuning writes new weights, cleans up, and
 * refuses to start while another one of the same output runs. Runs under the sanitizers in CI, where the Python side
 * of the bundle cannot. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/checkpoint.h"
#include "engine/trainer.h"
#include "io/atomic_file.h"
#include "io/dataset.h"
#include "io/image.h"
#include "kelp/predictor.h"
#include "ref/test_util.h"

#define SIDE 10
static const char *const NAMES[3] = {"copepod", "diatom", "detritus"};

static char data_path[512], model_path[512], run_dir[512], checkpoint[600], bundle[512];

/* Class k is a bright blob in one of three places on a dark, noisy background: learnable in an epoch or two. */
static void draw(int label, uint64_t *rng, uint8_t *pixels)
{
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            int cy = 2 + 3 * label, cx = 2 + 3 * label;
            int inside = abs(y - cy) <= 1 && abs(x - cx) <= 1;
            pixels[y * SIDE + x] = (uint8_t)(inside ? 200 + test_rand_int(rng, 0, 55) : test_rand_int(rng, 0, 40));
        }
}

static void write_dataset(void)
{
    kelp_dataset_info info = {.task = KELP_TASK_CLASSIFY, .class_names = NAMES, .class_count = 3};
    kelp_dataset_writer *w;
    TEST_OK(kelp_dataset_create(data_path, &info, &w));
    kelp_image_shape shape = {SIDE, SIDE, 1};
    uint64_t rng = 7;
    const int counts[3] = {60, 15, 15};
    for (int split = 0; split < 3; split++) {
        TEST_OK(kelp_dataset_begin_split(w, (kelp_split)split, &shape));
        for (int i = 0; i < counts[split]; i++) {
            uint8_t pixels[SIDE * SIDE];
            draw(i % 3, &rng, pixels);
            kelp_dataset_record r = {.pixels = pixels, .shape = shape, .label = i % 3, .image_id = -1};
            TEST_OK(kelp_dataset_append(w, &r));
        }
    }
    TEST_OK(kelp_dataset_writer_finish(w));
}

static const char MODEL[] =
    "{\"format\": \"kelp-model\", \"version\": 1, \"name\": \"blobs\", \"task\": \"classify\","
    " \"inputs\": [{\"name\": \"image\", \"shape\": [10, 10, 1], \"mean\": [0.2], \"std\": [0.3]}],"
    " \"nodes\": [{\"name\": \"conv1\", \"type\": \"conv2d\", \"inputs\": [\"image\"], \"out_channels\": 8,"
    " \"kernel_size\": 3, \"padding\": 1}, {\"name\": \"relu1\", \"type\": \"relu\"},"
    " {\"name\": \"pool\", \"type\": \"max_pool2d\", \"kernel_size\": 2, \"stride\": 2},"
    " {\"name\": \"flat\", \"type\": \"flatten\"}, {\"name\": \"fc\", \"type\": \"linear\", \"out_features\": 3}],"
    " \"outputs\": [\"fc\"], \"loss\": {\"type\": \"softmax_cross_entropy\"}}";

/* One training run shared by the tests: a checkpoint, and a bundle directory holding it as its weights. */
static int setup(void **state)
{
    (void)state;
    snprintf(data_path, sizeof data_path, "%s", test_temp_path(".h5"));
    snprintf(model_path, sizeof model_path, "%s", test_temp_path(".json"));
    snprintf(run_dir, sizeof run_dir, "%s", test_temp_path(".run"));
    snprintf(bundle, sizeof bundle, "%s", test_temp_path(".bundle"));
    write_dataset();
    TEST_OK(kelp_atomic_write(model_path, MODEL, strlen(MODEL)));
    kelp_train_options o;
    kelp_train_options_defaults(&o);
    o.data = data_path;
    o.model = model_path;
    o.out = run_dir;
    o.epochs = 3;
    o.batch = 10;
    o.lr = 0.1;
    o.hflip = false;
    o.seed = 3;
    TEST_OK(kelp_train(&o, NULL, NULL));
    snprintf(checkpoint, sizeof checkpoint, "%s/best.ckpt", run_dir);
    char dir[600], weights[700];
    snprintf(dir, sizeof dir, "%s/model", bundle);
    assert_int_equal(mkdir(bundle, 0777), 0);
    assert_int_equal(mkdir(dir, 0777), 0);
    snprintf(weights, sizeof weights, "%s/weights.safetensors", dir);
    kelp_ctx *ctx;
    TEST_OK(kelp_ctx_create(NULL, &ctx));
    TEST_OK(kelp_checkpoint_strip(ctx, checkpoint, weights));
    kelp_ctx_destroy(ctx);
    snprintf(weights, sizeof weights, "%s/bundle.json", dir);
    const char *info = "{\"max_pixels\": 400}";
    TEST_OK(kelp_atomic_write(weights, info, strlen(info)));
    return 0;
}

static kelp_predictor *open_model(const char *path)
{
    kelp_predictor *p = NULL;
    TEST_OK(kelp_predictor_open(path, NULL, &p));
    assert_non_null(p);
    return p;
}

static void test_describes_the_model(void **state)
{
    (void)state;
    kelp_predictor *p = open_model(checkpoint);
    assert_string_equal(kelp_predictor_task(p), "classification");
    assert_int_equal(kelp_predictor_class_count(p), 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(kelp_predictor_class_name(p, i), NAMES[i]);
    assert_null(kelp_predictor_class_name(p, 3));
    assert_null(kelp_predictor_class_name(p, -1));
    int h, w, c;
    kelp_predictor_input_size(p, &h, &w, &c);
    assert_int_equal(h, SIDE);
    assert_int_equal(w, SIDE);
    assert_int_equal(c, 1);
    kelp_predictor_close(p);
    kelp_predictor_close(NULL);
}

/* Sorted, consistent with the class names, and learnt: each blob is recognised. */
static void test_pixels_are_classified(void **state)
{
    (void)state;
    kelp_predictor *p = open_model(checkpoint);
    uint64_t rng = 99;
    int correct = 0;
    for (int label = 0; label < 3; label++) {
        uint8_t pixels[SIDE * SIDE];
        draw(label, &rng, pixels);
        kelp_prediction *r = NULL;
        TEST_OK(kelp_predictor_predict_pixels(p, pixels, SIDE, SIDE, 1, 2, &r));
        assert_int_equal(r->count, 2);
        assert_true(r->probabilities[0] >= r->probabilities[1]);
        assert_true(r->probabilities[0] + r->probabilities[1] <= 1.0f + 1e-6f);
        for (int i = 0; i < r->count; i++)
            assert_string_equal(r->labels[i], NAMES[r->classes[i]]);
        correct += r->classes[0] == label;
        kelp_prediction_free(r);
    }
    assert_int_equal(correct, 3);
    kelp_prediction *r = NULL;
    uint8_t rgb[SIDE * SIDE * 3] = {0};
    TEST_OK(kelp_predictor_predict_pixels(p, rgb, SIDE, SIDE, 3, 0, &r)); /* RGB is converted; top_k 0 means 5 */
    assert_int_equal(r->count, 3);                                         /* capped at the classes */
    kelp_prediction_free(r);
    kelp_predictor_close(p);
}

/* The same image as pixels, as PNG bytes and as a file: one answer, bit for bit. And a bundle directory opens as
 * its weights. */
static void test_pixels_bytes_file_and_bundle_agree(void **state)
{
    (void)state;
    uint8_t pixels[SIDE * SIDE];
    uint64_t rng = 5;
    draw(1, &rng, pixels);
    uint8_t *png;
    size_t size;
    TEST_OK(kelp_image_encode_png(pixels, SIDE, SIDE, 1, &png, &size));
    const char *file = test_temp_path(".png");
    TEST_OK(kelp_atomic_write(file, png, size));
    kelp_predictor *p = open_model(checkpoint), *b = open_model(bundle);
    kelp_prediction *r[4];
    TEST_OK(kelp_predictor_predict_pixels(p, pixels, SIDE, SIDE, 1, 3, &r[0]));
    TEST_OK(kelp_predictor_predict_encoded(p, png, size, "blob.png", 3, &r[1]));
    TEST_OK(kelp_predictor_predict_file(p, file, 3, &r[2]));
    TEST_OK(kelp_predictor_predict_file(b, file, 3, &r[3]));
    kelp_predictor_close(p);
    kelp_predictor_close(b);
    for (int k = 1; k < 4; k++) { /* read after the predictors are gone: results own their text */
        assert_int_equal(r[k]->count, r[0]->count);
        assert_memory_equal(r[k]->classes, r[0]->classes, 3 * sizeof(int));
        assert_memory_equal(r[k]->probabilities, r[0]->probabilities, 3 * sizeof(float));
        for (int i = 0; i < 3; i++)
            assert_string_equal(r[k]->labels[i], r[0]->labels[i]);
    }
    char *json = kelp_prediction_json(r[0]);
    cJSON *j = cJSON_Parse(json);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "labels")), 3);
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "labels"), 0)->valuestring, r[0]->labels[0]);
    assert_float_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "probabilities"), 0)->valuedouble,
                       r[0]->probabilities[0], 1e-7);
    cJSON_Delete(j);
    kelp_free(json);
    for (int k = 0; k < 4; k++)
        kelp_prediction_free(r[k]);
    free(png);
    unlink(file);
}

static void test_bad_input_is_refused(void **state)
{
    (void)state;
    kelp_predictor *p = open_model(checkpoint), *b = open_model(bundle);
    kelp_prediction *r = (kelp_prediction *)1;
    const char text[] = "not an image at all";
    TEST_FAILS_WITH(kelp_predictor_predict_encoded(p, text, sizeof text, "note.txt", 1, &r), KELP_ERR_FORMAT,
                    "note.txt");
    assert_null(r);
    uint8_t pixels[30 * 30] = {0};
    uint8_t *png;
    size_t size;
    TEST_OK(kelp_image_encode_png(pixels, 30, 30, 1, &png, &size));
    /* the bundle's own limit (bundle.json: 400 pixels) applies, as on its server */
    TEST_FAILS_WITH(kelp_predictor_predict_encoded(b, png, size, "big.png", 1, &r), KELP_ERR_INVALID_ARG,
                    "limit of 400");
    kelp_predictor_options o = kelp_predictor_defaults();
    o.max_pixels = 899;
    kelp_predictor *small;
    TEST_OK(kelp_predictor_open(checkpoint, &o, &small));
    TEST_FAILS_WITH(kelp_predictor_predict_encoded(small, png, size, "big.png", 1, &r), KELP_ERR_INVALID_ARG, "899");
    kelp_predictor_close(small);
    TEST_OK(kelp_predictor_predict_encoded(p, png, size, "big.png", 1, &r)); /* the default limit lets it through */
    kelp_prediction_free(r);
    free(png);
    TEST_FAILS_WITH(kelp_predictor_predict_pixels(p, pixels, 30, 30, 2, 1, &r), KELP_ERR_INVALID_ARG, "channels");
    TEST_FAILS_WITH(kelp_predictor_predict_pixels(p, NULL, 30, 30, 1, 1, &r), KELP_ERR_INVALID_ARG, "NULL");
    TEST_FAILS_WITH(kelp_predictor_predict_file(p, "/nonexistent/fish.png", 1, &r), KELP_ERR_IO, "fish.png");
    kelp_predictor_close(p);
    kelp_predictor_close(b);
    kelp_predictor *none = (kelp_predictor *)1;
    TEST_FAILS_WITH(kelp_predictor_open("/nonexistent/model", NULL, &none), KELP_ERR_IO, "/nonexistent/model");
    assert_null(none);
    TEST_FAILS_WITH(kelp_predictor_open(run_dir, NULL, &none), KELP_ERR_NOT_FOUND, "not a kelp bundle");
    TEST_FAILS_WITH(kelp_predictor_open(data_path, NULL, &none), KELP_ERR_FORMAT, data_path);
}

static void test_finetune_replaces_the_weights_and_cleans_up(void **state)
{
    (void)state;
    char out[700], pattern[720];
    snprintf(out, sizeof out, "%s/model/weights.safetensors", bundle);
    snprintf(pattern, sizeof pattern, "%s.train-*", out);
    char stale[720];
    snprintf(stale, sizeof stale, "%s.train-AAAAAA", out); /* what a killed run leaves */
    assert_int_equal(mkdir(stale, 0777), 0);
    struct stat before, after;
    assert_int_equal(stat(out, &before), 0);
    kelp_finetune_options o = kelp_finetune_defaults();
    o.data = data_path;
    o.out = out;
    o.epochs = 1;
    o.batch = 15;
    char *result = NULL;
    TEST_OK(kelp_finetune(bundle, &o, &result));
    cJSON *j = cJSON_Parse(result);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "scored_split")), "test");
    assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "images")), 15);
    double top1 = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "top1"));
    assert_true(top1 >= 0 && top1 <= 1);
    cJSON_Delete(j);
    kelp_free(result);
    assert_int_equal(stat(out, &after), 0);
    assert_true(before.st_ino != after.st_ino); /* replaced by a rename */
    glob_t left;
    assert_int_equal(glob(pattern, 0, NULL, &left), GLOB_NOMATCH);
    globfree(&left);
    kelp_predictor *p = open_model(bundle); /* the new weights load */
    kelp_predictor_close(p);
    o.data = "/nonexistent/data.h5";
    TEST_FAILS_WITH(kelp_finetune(bundle, &o, &result), KELP_ERR_IO, "/nonexistent/data.h5");
    o.data = data_path;
    o.device = "cuda:99"; /* no such device anywhere: refused, by name, before any training */
    assert_int_not_equal(kelp_finetune(bundle, &o, NULL), KELP_OK);
    assert_non_null(strstr(kelp_last_error(), "cuda:99"));
}

/* The lock of OUT.lock, taken as another fine-tuning (another DEEPaaS worker) holds it: flock locks belong to an
 * open file description, so a second open in this process conflicts exactly like another process. -1 when busy. */
static int lock_like_another_run(const char *out)
{
    char path[720];
    snprintf(path, sizeof path, "%s.lock", out);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    assert_true(fd >= 0);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void test_finetune_is_refused_while_another_runs(void **state)
{
    (void)state;
    char out[700], live[720];
    snprintf(out, sizeof out, "%s/model/weights.safetensors", bundle);
    snprintf(live, sizeof live, "%s.train-BBBBBB", out); /* the running fine-tuning's directory */
    assert_int_equal(mkdir(live, 0777), 0);
    kelp_finetune_options o = kelp_finetune_defaults();
    o.data = data_path;
    o.out = out;
    o.batch = 15;
    int held = lock_like_another_run(out);
    assert_true(held >= 0);
    char *result = (char *)1;
    TEST_FAILS_WITH(kelp_finetune(bundle, &o, &result), KELP_ERR_IO, "another fine-tuning");
    assert_null(result);
    assert_non_null(strstr(kelp_last_error(), out)); /* says which output is busy */
    struct stat st;
    assert_int_equal(stat(live, &st), 0); /* the other run's directory is left alone */
    close(held);

    /* its owner gone, the directory is stale: the next fine-tuning removes it */
    TEST_OK(kelp_finetune(bundle, &o, NULL));
    assert_int_equal(stat(live, &st), -1);
    held = lock_like_another_run(out); /* and released the lock */
    assert_true(held >= 0);
    close(held);

    /* a failed fine-tuning releases it too */
    o.data = "/nonexistent/data.h5";
    TEST_FAILS_WITH(kelp_finetune(bundle, &o, NULL), KELP_ERR_IO, "/nonexistent/data.h5");
    held = lock_like_another_run(out);
    assert_true(held >= 0);
    close(held);
}

static void test_onnx_is_written(void **state)
{
    (void)state;
    kelp_predictor *p = open_model(bundle);
    const char *path = test_temp_path(".onnx");
    TEST_OK(kelp_predictor_save_onnx(p, path));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 8 * 3 * 3 * 4); /* at least conv1's weights */
    TEST_FAILS_WITH(kelp_predictor_save_onnx(p, "/nonexistent/dir/m.onnx"), KELP_ERR_IO, "/nonexistent/dir/m.onnx");
    kelp_predictor_close(p);
    unlink(path);
    assert_string_equal(kelp_version(), KELP_VERSION_STRING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_describes_the_model),
        cmocka_unit_test(test_pixels_are_classified),
        cmocka_unit_test(test_pixels_bytes_file_and_bundle_agree),
        cmocka_unit_test(test_bad_input_is_refused),
        cmocka_unit_test(test_finetune_replaces_the_weights_and_cleans_up),
        cmocka_unit_test(test_finetune_is_refused_while_another_runs),
        cmocka_unit_test(test_onnx_is_written),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
