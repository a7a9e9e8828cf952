/* io/idx: MNIST-style IDX files, plain and gzip'd; every malformed header or length is an error naming the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "io/idx.h"
#include "ref/test_util.h"

typedef struct idx_bytes {
    uint8_t *data;
    size_t size;
} idx_bytes;

/* magic (0, 0, dtype, rank), big-endian dims, then `body` bytes of element data. */
static idx_bytes make_idx(uint8_t dtype, int rank, const uint32_t *dims, const uint8_t *body, size_t body_size)
{
    idx_bytes b = {malloc(4 + 4 * (size_t)rank + body_size), 4 + 4 * (size_t)rank + body_size};
    uint8_t *p = b.data;
    *p++ = 0;
    *p++ = 0;
    *p++ = dtype;
    *p++ = (uint8_t)rank;
    for (int d = 0; d < rank; d++) {
        *p++ = (uint8_t)(dims[d] >> 24);
        *p++ = (uint8_t)(dims[d] >> 16);
        *p++ = (uint8_t)(dims[d] >> 8);
        *p++ = (uint8_t)dims[d];
    }
    if (body_size)
        memcpy(p, body, body_size);
    return b;
}

static void write_raw(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void write_gz(const char *path, const void *data, size_t n)
{
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, data, (unsigned)n), (int)n);
    assert_int_equal(gzclose(f), Z_OK);
}

static uint8_t *pattern(size_t n)
{
    uint8_t *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + 3);
    return p;
}

static void test_round_trip_raw_images(void **state)
{
    (void)state;
    const uint32_t dims[3] = {5, 4, 3};
    uint8_t *body = pattern(60);
    idx_bytes b = make_idx(0x08, 3, dims, body, 60);
    const char *path = test_temp_path("-images-idx3-ubyte");
    write_raw(path, b.data, b.size);
    kelp_idx idx;
    TEST_OK(kelp_idx_read(path, &idx));
    assert_int_equal(idx.rank, 3);
    assert_int_equal(idx.dims[0], 5);
    assert_int_equal(idx.dims[1], 4);
    assert_int_equal(idx.dims[2], 3);
    assert_int_equal(idx.count, 60);
    assert_memory_equal(idx.data, body, 60);
    kelp_idx_free(&idx);
    assert_null(idx.data);
    free(b.data);
    free(body);
    remove(path);
}

static void test_round_trip_gzip_labels_and_images(void **state)
{
    (void)state;
    const uint32_t n[1] = {1000};
    uint8_t *labels = pattern(1000);
    idx_bytes b = make_idx(0x08, 1, n, labels, 1000);
    const char *path = test_temp_path("-labels-idx1-ubyte.gz");
    write_gz(path, b.data, b.size);
    kelp_idx idx;
    TEST_OK(kelp_idx_read(path, &idx));
    assert_int_equal(idx.rank, 1);
    assert_int_equal(idx.dims[0], 1000);
    assert_memory_equal(idx.data, labels, 1000);
    kelp_idx_free(&idx);
    free(b.data);

    const uint32_t dims[3] = {300, 28, 28};
    uint8_t *images = pattern(300 * 28 * 28);
    b = make_idx(0x08, 3, dims, images, 300 * 28 * 28);
    write_gz(path, b.data, b.size);
    TEST_OK(kelp_idx_read(path, &idx));
    assert_int_equal(idx.count, 300 * 28 * 28);
    assert_memory_equal(idx.data, images, 300 * 28 * 28);
    kelp_idx_free(&idx);
    free(b.data);
    free(images);
    free(labels);
    remove(path);
}

static void test_bad_magic(void **state)
{
    (void)state;
    const char *path = test_temp_path("-idx");
    write_raw(path, "\x00\x01\x08\x03 not really", 15);
    kelp_idx idx;
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_FORMAT, "not an IDX file");
    assert_non_null(strstr(kelp_last_error(), path));
    assert_null(idx.data);

    write_raw(path, "PK\x03\x04", 4);
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_FORMAT, "magic 50 4b 03 04");
    write_raw(path, "", 0);
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_FORMAT, "truncated");
    TEST_FAILS_WITH(kelp_idx_read("/nonexistent/train-images-idx3-ubyte.gz", &idx), KELP_ERR_IO,
                    "/nonexistent/train-images-idx3-ubyte.gz");
    remove(path);
}

static void test_wrong_dtype_and_rank(void **state)
{
    (void)state;
    const uint32_t dims[3] = {2, 2, 2};
    float body[8] = {0};
    const char *path = test_temp_path("-idx");
    kelp_idx idx;

    idx_bytes b = make_idx(0x0D, 3, dims, (const uint8_t *)body, sizeof body);
    write_raw(path, b.data, b.size);
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_UNSUPPORTED, "dtype 0x0d (float32)");
    free(b.data);

    b = make_idx(0x07, 1, dims, (const uint8_t *)body, 2);
    write_raw(path, b.data, b.size);
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_FORMAT, "unknown IDX dtype byte 0x07");
    free(b.data);

    b = make_idx(0x08, 0, dims, NULL, 0);
    write_raw(path, b.data, b.size);
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_FORMAT, "rank 0");
    free(b.data);

    const uint32_t four[4] = {1, 1, 1, 1};
    b = make_idx(0x08, 4, four, (const uint8_t *)body, 1);
    write_raw(path, b.data, b.size);
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_FORMAT, "rank 4");
    free(b.data);
    remove(path);
}

static void test_huge_or_empty_dims_fail_before_allocation(void **state)
{
    (void)state;
    const char *path = test_temp_path("-idx.gz");
    kelp_idx idx;
    /* The files stop after the header: the dims alone must be refused, not a 4-GiB malloc attempted. */
    const uint32_t too_many[1] = {4000000000u};
    idx_bytes b = make_idx(0x08, 1, too_many, NULL, 0);
    write_gz(path, b.data, b.size);
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_NO_MEMORY, "dimension 0 is 4000000000");
    free(b.data);

    const uint32_t too_wide[3] = {10, 28, 70000};
    b = make_idx(0x08, 3, too_wide, NULL, 0);
    write_gz(path, b.data, b.size);
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_NO_MEMORY, "dimension 2 is 70000");
    free(b.data);

    const uint32_t too_big[3] = {100000000, 16384, 16384};
    b = make_idx(0x08, 3, too_big, NULL, 0);
    write_gz(path, b.data, b.size);
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_NO_MEMORY, "exceeds the cap");
    free(b.data);

    const uint32_t empty[3] = {10, 0, 28};
    b = make_idx(0x08, 3, empty, NULL, 0);
    write_gz(path, b.data, b.size);
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_FORMAT, "dimension 1 is 0");
    assert_null(idx.data);
    free(b.data);
    remove(path);
}

static void test_truncated_files(void **state)
{
    (void)state;
    const uint32_t dims[3] = {20, 10, 10};
    uint8_t *body = pattern(2000);
    idx_bytes b = make_idx(0x08, 3, dims, body, 2000);
    const char *path = test_temp_path("-idx");
    kelp_idx idx;

    write_raw(path, b.data, b.size - 1);
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_FORMAT, "truncated: the data");
    assert_null(idx.data);
    write_raw(path, b.data, 10);
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_FORMAT, "truncated: the header");

    /* A complete gzip stream of a short file, and a gzip stream cut in the middle. */
    write_gz(path, b.data, b.size - 100);
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_FORMAT, "truncated");
    write_gz(path, b.data, b.size);
    FILE *f = fopen(path, "rb");
    uint8_t gz[4096];
    size_t gz_size = fread(gz, 1, sizeof gz, f);
    fclose(f);
    assert_true(gz_size > 40 && gz_size < sizeof gz);
    write_raw(path, gz, gz_size / 2);
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_FORMAT, path);
    free(b.data);
    free(body);
    remove(path);
}

static void test_trailing_bytes(void **state)
{
    (void)state;
    const uint32_t n[1] = {6};
    const uint8_t labels[7] = {1, 2, 3, 4, 5, 6, 99};
    idx_bytes b = make_idx(0x08, 1, n, labels, 7);
    const char *path = test_temp_path("-idx");
    kelp_idx idx;
    write_raw(path, b.data, b.size);
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_FORMAT, "trailing bytes after the 6 data bytes");
    write_gz(path, b.data, b.size);
    TEST_FAILS_WITH(kelp_idx_read(path, &idx), KELP_ERR_FORMAT, "trailing bytes");
    assert_null(idx.data);
    write_gz(path, b.data, b.size - 1);
    TEST_OK(kelp_idx_read(path, &idx));
    assert_memory_equal(idx.data, labels, 6);
    kelp_idx_free(&idx);
    free(b.data);
    remove(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_raw_images),
        cmocka_unit_test(test_round_trip_gzip_labels_and_images),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_wrong_dtype_and_rank),
        cmocka_unit_test(test_huge_or_empty_dims_fail_before_allocation),
        cmocka_unit_test(test_truncated_files),
        cmocka_unit_test(test_trailing_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
