/* io/import: folder and IDX importers end to end through the dataset reader, and the stratified split. The folder
 * fixture is a generated tree of PNG and JPEG images (gray and colour, all of different sizes) in 3 class folders,
 * with hidden files, non-image files and a nested folder that must be skipped. */
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <jpeglib.h>

#include "io/dataset.h"
#include "io/image.h"
#include "io/import.h"
#include "ref/test_util.h"

/* ---- fixture tree ---- */

#define MAX_ITEMS 64

static const char *const CLASS_DIRS[3] = {"alpha", "beta", "gamma"};
static const int CLASS_SIZES[3] = {12, 10, 8};

typedef struct fixture {
    char root[256];
    char paths[MAX_ITEMS][320]; /* in sorted order: class by class, names by number */
    int labels[MAX_ITEMS];
    int count;
} fixture;

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void write_jpeg(const char *path, const uint8_t *pixels, uint32_t h, uint32_t w, int c)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr err;
    cinfo.err = jpeg_std_error(&err);
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, f);
    cinfo.image_width = w;
    cinfo.image_height = h;
    cinfo.input_components = c;
    cinfo.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 95, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < h) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * w * c);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    assert_int_equal(fclose(f), 0);
}

static void make_dir(const char *path)
{
    assert_int_equal(mkdir(path, 0755), 0);
}

/* Image k of class `label`: every third a JPEG, every fourth gray, sizes all over the place. */
static void add_image(fixture *fx, int label, int k, uint64_t *rng)
{
    bool jpeg = k % 3 == 2, gray = k % 4 == 1;
    uint32_t h = 5 + (uint32_t)(k * 3 % 7) + (uint32_t)label, w = 6 + (uint32_t)(k * 5 % 9);
    int c = gray ? 1 : 3;
    uint8_t *pixels = malloc((size_t)h * w * c);
    for (size_t i = 0; i < (size_t)h * w * c; i++)
        pixels[i] = (uint8_t)test_rand_int(rng, 0, 255);
    char path[sizeof fx->paths[0]];
    snprintf(path, sizeof path, "%s/%s/img%02d.%s", fx->root, CLASS_DIRS[label], k, jpeg ? "jpg" : "png");
    memcpy(fx->paths[fx->count], path, sizeof path);
    if (jpeg)
        write_jpeg(path, pixels, h, w, c);
    else
        TEST_OK(kelp_image_write_png(path, pixels, h, w, (uint32_t)c));
    fx->labels[fx->count++] = label;
    free(pixels);
}

static void make_fixture(fixture *fx, int extra_in_alpha)
{
    memset(fx, 0, sizeof *fx);
    snprintf(fx->root, sizeof fx->root, "%s", test_temp_path("-import-src"));
    make_dir(fx->root);
    uint64_t rng = 42;
    char path[400];
    for (int label = 0; label < 3; label++) {
        snprintf(path, sizeof path, "%s/%s", fx->root, CLASS_DIRS[label]);
        make_dir(path);
        for (int k = 0; k < CLASS_SIZES[label] + (label == 0 ? extra_in_alpha : 0); k++)
            add_image(fx, label, k, &rng);
    }
    snprintf(path, sizeof path, "%s/README.md", fx->root);
    write_file(path, "# data\n", 7);
    snprintf(path, sizeof path, "%s/.git", fx->root);
    make_dir(path);
    snprintf(path, sizeof path, "%s/.git/HEAD", fx->root);
    write_file(path, "ref\n", 4);
    snprintf(path, sizeof path, "%s/alpha/notes.txt", fx->root);
    write_file(path, "counted by hand\n", 16);
    snprintf(path, sizeof path, "%s/alpha/sub", fx->root);
    make_dir(path);
    snprintf(path, sizeof path, "%s/beta/.DS_Store", fx->root);
    write_file(path, "\0\0\0\1Bud1", 8);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_tree(const char *root)
{
    assert_int_equal(nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

/* ---- dataset helpers ---- */

static kelp_dataset *open_dataset(const char *path)
{
    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(path, &ds));
    return ds;
}

static uint8_t *read_image(kelp_dataset *ds, kelp_split split, int64_t i, kelp_image_shape *shape)
{
    TEST_OK(kelp_dataset_image_shape(ds, split, i, shape));
    size_t n = (size_t)shape->h * shape->w * shape->c;
    uint8_t *px = malloc(n);
    TEST_OK(kelp_dataset_read_image(ds, split, i, px, n));
    return px;
}

static int64_t total_count(const kelp_dataset *ds)
{
    int64_t n = 0;
    for (int s = 0; s < KELP_SPLIT_COUNT; s++)
        n += kelp_dataset_count(ds, (kelp_split)s);
    return n;
}

static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* ---- folder import ---- */

static void test_folder_variable_size(void **state)
{
    (void)state;
    fixture fx;
    make_fixture(&fx, 0);
    const char *out = test_temp_path(".h5");
    kelp_import_options opt = kelp_import_defaults();
    opt.val_fraction = 0.2;
    opt.source = "generated by test_import";
    opt.license = "CC0-1.0";
    kelp_import_summary sum;
    TEST_OK(kelp_import_folder(fx.root, out, &opt, &sum));
    assert_int_equal(sum.class_count, 3);
    assert_int_equal(sum.channels, 3);
    assert_int_equal(sum.count[KELP_SPLIT_TRAIN] + sum.count[KELP_SPLIT_VAL], fx.count);
    assert_int_equal(sum.count[KELP_SPLIT_TEST], 0);
    assert_int_equal(sum.skipped_hidden, 2);
    assert_int_equal(sum.skipped_other, 3);
    assert_int_equal(sum.skipped_bad, 0);

    kelp_dataset *ds = open_dataset(out);
    assert_int_equal(kelp_dataset_task(ds), KELP_TASK_CLASSIFY);
    assert_int_equal(kelp_dataset_class_count(ds), 3);
    for (int c = 0; c < 3; c++)
        assert_string_equal(kelp_dataset_class_name(ds, c), CLASS_DIRS[c]);
    assert_string_equal(kelp_dataset_source(ds), "generated by test_import");
    assert_string_equal(kelp_dataset_license(ds), "CC0-1.0");
    bool seen[MAX_ITEMS] = {0};
    for (int s = 0; s < 2; s++) {
        kelp_split split = (kelp_split)s;
        kelp_image_shape fixed;
        assert_false(kelp_dataset_fixed_shape(ds, split, &fixed));
        assert_int_equal(kelp_dataset_count(ds, split), sum.count[s]);
        for (int64_t i = 0; i < kelp_dataset_count(ds, split); i++) {
            /* The image id is the image's index in the sorted listing: the record must be that file, decoded. */
            int64_t id = kelp_dataset_image_id(ds, split, i);
            assert_in_range(id, 0, fx.count - 1);
            assert_false(seen[id]);
            seen[id] = true;
            assert_int_equal(kelp_dataset_labels(ds, split)[i], fx.labels[id]);
            kelp_image want;
            TEST_OK(kelp_image_decode_file(fx.paths[id], 3, &want));
            kelp_image_shape shape;
            uint8_t *got = read_image(ds, split, i, &shape);
            assert_int_equal(shape.h, want.h);
            assert_int_equal(shape.w, want.w);
            assert_int_equal(shape.c, 3);
            assert_memory_equal(got, want.pixels, (size_t)want.h * want.w * 3);
            free(got);
            kelp_image_free(&want);
        }
    }
    kelp_dataset_close(ds);
    remove(out);
    remove_tree(fx.root);
}

static void test_folder_fixed_size_gray(void **state)
{
    (void)state;
    fixture fx;
    make_fixture(&fx, 0);
    const char *out = test_temp_path(".h5");
    kelp_import_options opt = kelp_import_defaults();
    opt.height = 8;
    opt.width = 10;
    opt.channels = 1;
    opt.test_fraction = 0.25;
    kelp_import_summary sum;
    TEST_OK(kelp_import_folder(fx.root, out, &opt, &sum));
    assert_int_equal(sum.channels, 1);

    kelp_dataset *ds = open_dataset(out);
    assert_int_equal(total_count(ds), fx.count);
    for (int s = 0; s < KELP_SPLIT_COUNT; s++) {
        kelp_split split = (kelp_split)s;
        if (kelp_dataset_count(ds, split) == 0)
            continue;
        kelp_image_shape fixed;
        assert_true(kelp_dataset_fixed_shape(ds, split, &fixed));
        assert_int_equal(fixed.h, 8);
        assert_int_equal(fixed.w, 10);
        assert_int_equal(fixed.c, 1);
    }
    /* One record against the codec and resize run by hand. */
    int64_t id = kelp_dataset_image_id(ds, KELP_SPLIT_TEST, 0);
    kelp_image src;
    TEST_OK(kelp_image_decode_file(fx.paths[id], 1, &src));
    uint8_t want[8 * 10];
    TEST_OK(kelp_image_resize(src.pixels, src.h, src.w, 1, want, 8, 10));
    kelp_image_shape shape;
    uint8_t *got = read_image(ds, KELP_SPLIT_TEST, 0, &shape);
    assert_memory_equal(got, want, sizeof want);
    free(got);
    kelp_image_free(&src);
    kelp_dataset_close(ds);
    remove(out);
    remove_tree(fx.root);
}

/* Class sizes 12, 10, 8 with val 0.25 and test 0.2: round(n * f) of each class, exactly. */
static void test_folder_splits_are_stratified(void **state)
{
    (void)state;
    fixture fx;
    make_fixture(&fx, 0);
    const char *out = test_temp_path(".h5");
    kelp_import_options opt = kelp_import_defaults();
    opt.val_fraction = 0.25;
    opt.test_fraction = 0.2;
    opt.seed = 7;
    kelp_import_summary sum;
    TEST_OK(kelp_import_folder(fx.root, out, &opt, &sum));
    kelp_dataset *ds = open_dataset(out);
    const int want_val[3] = {3, 3, 2}, want_test[3] = {2, 2, 2};
    for (int c = 0; c < 3; c++) {
        int64_t per_split[KELP_SPLIT_COUNT] = {0};
        for (int s = 0; s < KELP_SPLIT_COUNT; s++)
            for (int64_t i = 0; i < kelp_dataset_count(ds, (kelp_split)s); i++)
                per_split[s] += kelp_dataset_labels(ds, (kelp_split)s)[i] == c;
        assert_int_equal(per_split[KELP_SPLIT_VAL], want_val[c]);
        assert_int_equal(per_split[KELP_SPLIT_TEST], want_test[c]);
        assert_int_equal(per_split[KELP_SPLIT_TRAIN], CLASS_SIZES[c] - want_val[c] - want_test[c]);
    }
    kelp_dataset_close(ds);
    remove(out);
    remove_tree(fx.root);
}

static void val_ids(const char *path, int64_t *ids, int64_t *n)
{
    kelp_dataset *ds = open_dataset(path);
    *n = kelp_dataset_count(ds, KELP_SPLIT_VAL);
    for (int64_t i = 0; i < *n; i++)
        ids[i] = kelp_dataset_image_id(ds, KELP_SPLIT_VAL, i);
    kelp_dataset_close(ds);
}

static void test_folder_split_depends_only_on_the_seed(void **state)
{
    (void)state;
    fixture fx;
    make_fixture(&fx, 0);
    const char *out_a = test_temp_path("-a.h5"), *out_b = test_temp_path("-b.h5"), *out_c = test_temp_path("-c.h5");
    kelp_import_options opt = kelp_import_defaults();
    opt.val_fraction = 0.3;
    opt.seed = 123;
    kelp_import_summary sum;
    TEST_OK(kelp_import_folder(fx.root, out_a, &opt, &sum));
    TEST_OK(kelp_import_folder(fx.root, out_b, &opt, &sum));
    opt.seed = 124;
    TEST_OK(kelp_import_folder(fx.root, out_c, &opt, &sum));
    int64_t a[MAX_ITEMS], b[MAX_ITEMS], c[MAX_ITEMS], na, nb, nc;
    val_ids(out_a, a, &na);
    val_ids(out_b, b, &nb);
    val_ids(out_c, c, &nc);
    assert_int_equal(na, 9); /* round(0.3 * 12) + round(0.3 * 10) + round(0.3 * 8) = 4 + 3 + 2 */
    assert_int_equal(nb, na);
    assert_memory_equal(a, b, (size_t)na * sizeof *a);
    assert_int_equal(nc, na);
    assert_memory_not_equal(a, c, (size_t)na * sizeof *a);
    remove(out_a);
    remove(out_b);
    remove(out_c);
    remove_tree(fx.root);
}

static void test_folder_errors_name_the_problem(void **state)
{
    (void)state;
    const char *out = test_temp_path(".h5");
    kelp_import_options opt = kelp_import_defaults();
    kelp_import_summary sum;
    TEST_FAILS_WITH(kelp_import_folder("/nonexistent/images", out, &opt, &sum), KELP_ERR_IO,
                    "/nonexistent/images: cannot open folder");

    char empty[256];
    snprintf(empty, sizeof empty, "%s", test_temp_path("-empty"));
    make_dir(empty);
    TEST_FAILS_WITH(kelp_import_folder(empty, out, &opt, &sum), KELP_ERR_FORMAT, "no class folders");
    char path[400];
    snprintf(path, sizeof path, "%s/only", empty);
    make_dir(path);
    snprintf(path, sizeof path, "%s/only/readme.txt", empty);
    write_file(path, "nothing here", 12);
    TEST_FAILS_WITH(kelp_import_folder(empty, out, &opt, &sum), KELP_ERR_FORMAT, "class folder 'only' holds no "
                                                                                 "images");
    remove_tree(empty);

    opt.val_fraction = 0.6;
    opt.test_fraction = 0.4;
    TEST_FAILS_WITH(kelp_import_folder("/tmp", out, &opt, &sum), KELP_ERR_INVALID_ARG, "sum below 1");
    opt = kelp_import_defaults();
    opt.channels = 2;
    TEST_FAILS_WITH(kelp_import_folder("/tmp", out, &opt, &sum), KELP_ERR_INVALID_ARG, "channels");
    opt = kelp_import_defaults();
    opt.height = 8;
    TEST_FAILS_WITH(kelp_import_folder("/tmp", out, &opt, &sum), KELP_ERR_INVALID_ARG, "size 8 x 0");
    assert_false(file_exists(out));
}

static void test_folder_bad_images_fail_or_are_skipped(void **state)
{
    (void)state;
    fixture fx;
    make_fixture(&fx, 0);
    char truncated[400], fake[400];
    snprintf(truncated, sizeof truncated, "%s/beta/zz-truncated.png", fx.root);
    snprintf(fake, sizeof fake, "%s/gamma/zz-fake.jpg", fx.root);
    /* A PNG cut inside its pixel data passes the header pass and fails at decoding. */
    size_t n;
    uint8_t *bytes;
    TEST_OK(kelp_image_read_file(fx.paths[0], &bytes, &n));
    write_file(truncated, bytes, n - 20);
    free(bytes);
    const char *out = test_temp_path(".h5");
    kelp_import_options opt = kelp_import_defaults();
    kelp_import_summary sum;
    TEST_FAILS_WITH(kelp_import_folder(fx.root, out, &opt, &sum), KELP_ERR_FORMAT, truncated);
    assert_false(file_exists(out));

    /* Named like an image but not one: bad (an HTML error page saved as .jpg), found by the header pass. */
    write_file(fake, "<html>404</html>", 16);
    TEST_FAILS_WITH(kelp_import_folder(fx.root, out, &opt, &sum), KELP_ERR_FORMAT, fake);
    assert_false(file_exists(out));

    opt.skip_bad = true;
    TEST_OK(kelp_import_folder(fx.root, out, &opt, &sum));
    assert_int_equal(sum.skipped_bad, 2);
    assert_int_equal(sum.count[KELP_SPLIT_TRAIN], fx.count);
    assert_int_equal(sum.skipped_other, 3);
    kelp_dataset *ds = open_dataset(out);
    assert_int_equal(total_count(ds), fx.count);
    kelp_dataset_close(ds);
    remove(out);
    remove_tree(fx.root);
}

/* ---- assign_splits directly ---- */

static void test_assign_splits_counts_and_stability(void **state)
{
    (void)state;
    enum { N = 1000 };
    int32_t labels[N];
    uint8_t a[N], b[N], c[N];
    for (int i = 0; i < N; i++)
        labels[i] = i % 10 < 6 ? 0 : i % 10 < 9 ? 1 : 2; /* 600, 300, 100 */
    TEST_OK(kelp_import_assign_splits(labels, N, 4, 0.15, 0.1, 99, a));
    int counts[4][KELP_SPLIT_COUNT] = {{0}};
    for (int i = 0; i < N; i++)
        counts[labels[i]][a[i]]++;
    const int sizes[3] = {600, 300, 100};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(counts[k][KELP_SPLIT_VAL], (int)floor(0.15 * sizes[k] + 0.5));
        assert_int_equal(counts[k][KELP_SPLIT_TEST], (int)floor(0.1 * sizes[k] + 0.5));
    }
    TEST_OK(kelp_import_assign_splits(labels, N, 4, 0.15, 0.1, 99, b));
    assert_memory_equal(a, b, N);
    /* Relabel class 2 as class 3: classes 0 and 1 keep exactly their split. */
    for (int i = 0; i < N; i++)
        labels[i] = labels[i] == 2 ? 3 : labels[i];
    TEST_OK(kelp_import_assign_splits(labels, N, 4, 0.15, 0.1, 99, c));
    for (int i = 0; i < N; i++)
        if (labels[i] < 2)
            assert_int_equal(c[i], a[i]);
    TEST_OK(kelp_import_assign_splits(labels, N, 4, 0.15, 0.1, 100, c));
    assert_memory_not_equal(a, c, N);
}

static void test_assign_splits_edges(void **state)
{
    (void)state;
    /* A class of one image keeps it in train; of two with val 0.5 and test 0.4, one goes to val. */
    const int32_t labels[3] = {0, 1, 1};
    uint8_t out[3];
    TEST_OK(kelp_import_assign_splits(labels, 3, 2, 0.5, 0.4, 1, out));
    assert_int_equal(out[0], KELP_SPLIT_TRAIN);
    assert_int_equal((out[1] == KELP_SPLIT_VAL) + (out[2] == KELP_SPLIT_VAL), 1);
    assert_int_equal((out[1] == KELP_SPLIT_TRAIN) + (out[2] == KELP_SPLIT_TRAIN), 1);

    TEST_FAILS_WITH(kelp_import_assign_splits(labels, 3, 2, 1.0, 0.0, 1, out), KELP_ERR_INVALID_ARG, "val 1");
    TEST_FAILS_WITH(kelp_import_assign_splits(labels, 3, 2, -0.1, 0.0, 1, out), KELP_ERR_INVALID_ARG, "[0, 1)");
    TEST_FAILS_WITH(kelp_import_assign_splits(labels, 3, 2, NAN, 0.0, 1, out), KELP_ERR_INVALID_ARG, "[0, 1)");
    TEST_FAILS_WITH(kelp_import_assign_splits(labels, 3, 1, 0.1, 0.0, 1, out), KELP_ERR_INVALID_ARG,
                    "label 1 of item 1");
}

/* ---- IDX import ---- */

static void write_idx_gz(const char *path, int rank, const uint32_t *dims, const uint8_t *data, size_t n)
{
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    uint8_t head[4 + 12] = {0, 0, 0x08, (uint8_t)rank};
    for (int d = 0; d < rank; d++)
        for (int b = 0; b < 4; b++)
            head[4 + 4 * d + b] = (uint8_t)(dims[d] >> (24 - 8 * b));
    assert_int_equal(gzwrite(f, head, 4 + 4 * (unsigned)rank), 4 + 4 * rank);
    assert_int_equal(gzwrite(f, data, (unsigned)n), (int)n);
    assert_int_equal(gzclose(f), Z_OK);
}

typedef struct idx_files {
    char train_images[256], train_labels[256], test_images[256], test_labels[256];
    uint8_t train_px[40 * 6 * 5], test_px[10 * 6 * 5];
    uint8_t train_lb[40], test_lb[10];
} idx_files;

static void make_idx_files(idx_files *f)
{
    snprintf(f->train_images, sizeof f->train_images, "%s", test_temp_path("-train-images.gz"));
    snprintf(f->train_labels, sizeof f->train_labels, "%s", test_temp_path("-train-labels.gz"));
    snprintf(f->test_images, sizeof f->test_images, "%s", test_temp_path("-test-images.gz"));
    snprintf(f->test_labels, sizeof f->test_labels, "%s", test_temp_path("-test-labels.gz"));
    for (size_t i = 0; i < sizeof f->train_px; i++)
        f->train_px[i] = (uint8_t)(i * 13);
    for (size_t i = 0; i < sizeof f->test_px; i++)
        f->test_px[i] = (uint8_t)(i * 31 + 5);
    for (int i = 0; i < 40; i++)
        f->train_lb[i] = (uint8_t)(i % 4);
    for (int i = 0; i < 10; i++)
        f->test_lb[i] = (uint8_t)(3 - i % 4);
    const uint32_t train_dims[3] = {40, 6, 5}, test_dims[3] = {10, 6, 5}, n_train[1] = {40}, n_test[1] = {10};
    write_idx_gz(f->train_images, 3, train_dims, f->train_px, sizeof f->train_px);
    write_idx_gz(f->train_labels, 1, n_train, f->train_lb, sizeof f->train_lb);
    write_idx_gz(f->test_images, 3, test_dims, f->test_px, sizeof f->test_px);
    write_idx_gz(f->test_labels, 1, n_test, f->test_lb, sizeof f->test_lb);
}

static void remove_idx_files(const idx_files *f)
{
    remove(f->train_images);
    remove(f->train_labels);
    remove(f->test_images);
    remove(f->test_labels);
}

static void test_idx_import_with_test_files(void **state)
{
    (void)state;
    idx_files *f = malloc(sizeof *f);
    make_idx_files(f);
    const char *out = test_temp_path(".h5");
    static const char *const names[4] = {"cod", "hake", "plaice", "sole"};
    kelp_import_options opt = kelp_import_defaults();
    opt.val_fraction = 0.2;
    opt.class_names = names;
    opt.class_count = 4;
    kelp_import_summary sum;
    TEST_OK(kelp_import_idx(f->train_images, f->train_labels, f->test_images, f->test_labels, out, &opt, &sum));
    assert_int_equal(sum.class_count, 4);
    assert_int_equal(sum.channels, 1);
    assert_int_equal(sum.count[KELP_SPLIT_TRAIN], 32);
    assert_int_equal(sum.count[KELP_SPLIT_VAL], 8); /* round(0.2 * 10) of each class */
    assert_int_equal(sum.count[KELP_SPLIT_TEST], 10);

    kelp_dataset *ds = open_dataset(out);
    assert_string_equal(kelp_dataset_class_name(ds, 2), "plaice");
    kelp_image_shape fixed;
    assert_true(kelp_dataset_fixed_shape(ds, KELP_SPLIT_TRAIN, &fixed));
    assert_int_equal(fixed.h, 6);
    assert_int_equal(fixed.w, 5);
    assert_int_equal(fixed.c, 1);
    /* The test files, in order. */
    for (int64_t i = 0; i < 10; i++) {
        kelp_image_shape shape;
        uint8_t *px = read_image(ds, KELP_SPLIT_TEST, i, &shape);
        assert_int_equal(kelp_dataset_image_id(ds, KELP_SPLIT_TEST, i), i);
        assert_memory_equal(px, f->test_px + i * 30, 30);
        assert_int_equal(kelp_dataset_labels(ds, KELP_SPLIT_TEST)[i], f->test_lb[i]);
        free(px);
    }
    /* Train and val partition the train file. */
    int seen[40] = {0};
    for (int s = 0; s < 2; s++)
        for (int64_t i = 0; i < kelp_dataset_count(ds, (kelp_split)s); i++) {
            int64_t id = kelp_dataset_image_id(ds, (kelp_split)s, i);
            assert_in_range(id, 0, 39);
            seen[id]++;
            kelp_image_shape shape;
            uint8_t *px = read_image(ds, (kelp_split)s, i, &shape);
            assert_memory_equal(px, f->train_px + id * 30, 30);
            assert_int_equal(kelp_dataset_labels(ds, (kelp_split)s)[i], f->train_lb[id]);
            free(px);
        }
    for (int i = 0; i < 40; i++)
        assert_int_equal(seen[i], 1);
    kelp_dataset_close(ds);
    remove(out);
    remove_idx_files(f);
    free(f);
}

static void test_idx_import_default_names_and_errors(void **state)
{
    (void)state;
    idx_files *f = malloc(sizeof *f);
    make_idx_files(f);
    const char *out = test_temp_path(".h5");
    kelp_import_options opt = kelp_import_defaults();
    opt.test_fraction = 0.25;
    kelp_import_summary sum;
    TEST_OK(kelp_import_idx(f->train_images, f->train_labels, NULL, NULL, out, &opt, &sum));
    assert_int_equal(sum.count[KELP_SPLIT_TEST], 12); /* round(0.25 * 10) = 3 of each class */
    kelp_dataset *ds = open_dataset(out);
    assert_int_equal(kelp_dataset_class_count(ds), 4);
    assert_string_equal(kelp_dataset_class_name(ds, 0), "0");
    assert_string_equal(kelp_dataset_class_name(ds, 3), "3");
    kelp_dataset_close(ds);
    remove(out);

    TEST_FAILS_WITH(kelp_import_idx(f->train_images, f->train_labels, f->test_images, f->test_labels, out, &opt,
                                    &sum),
                    KELP_ERR_INVALID_ARG, "exclusive");
    opt = kelp_import_defaults();
    static const char *const three[3] = {"a", "b", "c"};
    opt.class_names = three;
    opt.class_count = 3;
    TEST_FAILS_WITH(kelp_import_idx(f->train_images, f->train_labels, NULL, NULL, out, &opt, &sum),
                    KELP_ERR_FORMAT, "label 3 of item 3 is not below the 3 class names");
    opt = kelp_import_defaults();
    TEST_FAILS_WITH(kelp_import_idx(f->train_images, f->test_labels, NULL, NULL, out, &opt, &sum),
                    KELP_ERR_FORMAT, "holds 40 images but");
    TEST_FAILS_WITH(kelp_import_idx(f->train_labels, f->train_labels, NULL, NULL, out, &opt, &sum),
                    KELP_ERR_FORMAT, "expected images [N,H,W]");
    TEST_FAILS_WITH(kelp_import_idx(f->train_images, NULL, NULL, NULL, out, &opt, &sum), KELP_ERR_INVALID_ARG,
                    "IDX import");
    assert_false(file_exists(out));
    remove_idx_files(f);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_folder_variable_size),
        cmocka_unit_test(test_folder_fixed_size_gray),
        cmocka_unit_test(test_folder_splits_are_stratified),
        cmocka_unit_test(test_folder_split_depends_only_on_the_seed),
        cmocka_unit_test(test_folder_errors_name_the_problem),
        cmocka_unit_test(test_folder_bad_images_fail_or_are_skipped),
        cmocka_unit_test(test_assign_splits_counts_and_stability),
        cmocka_unit_test(test_assign_splits_edges),
        cmocka_unit_test(test_idx_import_with_test_files),
        cmocka_unit_test(test_idx_import_default_names_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
