/* io/safetensors: round trips, byte-exact agreement with the reference writer, and one malformed file per
 * validation rule, each rejected with a message that starts with the path and names the rule. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "ref/test_util.h"

static void write_bytes(const char *path, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* The 8-byte little-endian length `declared`, then header_len bytes of header, then data_len bytes 0xA5. */
static void write_st(const char *path, uint64_t declared, const char *header, size_t header_len, size_t data_len)
{
    size_t n = 8 + header_len + data_len;
    unsigned char *buf = malloc(n);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(declared >> (8 * i));
    memcpy(buf + 8, header, header_len);
    memset(buf + 8 + header_len, 0xA5, data_len);
    write_bytes(path, buf, n);
    free(buf);
}

static void *read_whole(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(*n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, *n, f), *n);
    fclose(f);
    return buf;
}

/* Opens the file at path expecting `status` with `needle` in a message that starts with the path. */
static void assert_open_fails(const char *path, kelp_status status, const char *needle)
{
    static int sentinel;
    kelp_st_file *f = (kelp_st_file *)&sentinel; /* proves the failure resets *out */
    TEST_FAILS_WITH(kelp_st_open(path, &f), status, needle);
    assert_null(f);
    if (strncmp(kelp_last_error(), path, strlen(path)) != 0)
        fail_msg("message \"%s\" does not start with the path %s", kelp_last_error(), path);
}

/* A file whose header is `header` (its real length) followed by data_len bytes must fail to open. */
static void header_fails(const char *header, size_t data_len, kelp_status status, const char *needle)
{
    const char *path = test_temp_path(".safetensors");
    write_st(path, strlen(header), header, strlen(header), data_len);
    assert_open_fails(path, status, needle);
    remove(path);
}

static kelp_st_file *open_header(const char *path, const char *header, size_t data_len)
{
    write_st(path, strlen(header), header, strlen(header), data_len);
    kelp_st_file *f;
    TEST_OK(kelp_st_open(path, &f));
    return f;
}

/* ---------------------------------------------------------------- dtypes */

static void test_dtype_table(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        size_t size;
    } want[KELP_ST_DTYPE_COUNT] = {
        {"BOOL", 1}, {"U8", 1},   {"I8", 1},  {"I16", 2}, {"U16", 2}, {"F16", 2},     {"BF16", 2},   {"I32", 4},
        {"U32", 4},  {"F32", 4},  {"F64", 8}, {"I64", 8}, {"U64", 8}, {"F8_E5M2", 1}, {"F8_E4M3", 1},
    };
    for (int d = 0; d < KELP_ST_DTYPE_COUNT; d++) {
        kelp_st_dtype parsed;
        assert_string_equal(kelp_st_dtype_name((kelp_st_dtype)d), want[d].name);
        assert_int_equal(kelp_st_dtype_size((kelp_st_dtype)d), want[d].size);
        TEST_OK(kelp_st_dtype_parse(want[d].name, &parsed));
        assert_int_equal(parsed, d);
    }
    kelp_st_dtype parsed;
    TEST_FAILS_WITH(kelp_st_dtype_parse("f32", &parsed), KELP_ERR_NOT_FOUND, "f32");
    assert_int_equal(kelp_st_dtype_size((kelp_st_dtype)KELP_ST_DTYPE_COUNT), 0);
    assert_string_equal(kelp_st_dtype_name((kelp_st_dtype)-1), "?");
}

/* ---------------------------------------------------------------- round trips */

static void test_round_trip_dtypes_scalar_and_empty(void **state)
{
    (void)state;
    uint64_t seed = 7;
    float w[2 * 3];
    test_fill_uniform(w, 6, 11, -1.0f, 1.0f);
    int64_t steps[4] = {-1, 0, INT64_MAX, 42};
    uint16_t bf[3] = {0x3f80, 0xc000, 0x7fc0};
    uint8_t scalar = 200;
    uint8_t flags[3] = {1, 0, 1};
    uint8_t fp8[5];
    for (int i = 0; i < 5; i++)
        fp8[i] = (uint8_t)test_rand_u64(&seed);
    const kelp_st_record records[] = {
        {"conv1.weight", KELP_ST_F32, kelp_shape2(2, 3), w},
        {"step", KELP_ST_I64, kelp_shape_make(1, (int64_t[]){4}), steps},
        {"bn.\"odd\"\\name\n\xc3\xa9", KELP_ST_BF16, kelp_shape_make(1, (int64_t[]){3}), bf},
        {"scalar", KELP_ST_U8, kelp_shape_make(0, NULL), &scalar},
        {"empty", KELP_ST_F16, kelp_shape2(0, 5), NULL},
        {"mask", KELP_ST_BOOL, kelp_shape_make(1, (int64_t[]){3}), flags},
        {"fp8", KELP_ST_F8_E4M3, kelp_shape_make(5, (int64_t[]){1, 1, 5, 1, 1}), fp8},
    };
    const size_t n = sizeof records / sizeof records[0];
    const kelp_st_meta meta[] = {{"format", "pt"}, {"note", "tab\there \"quoted\" \\ \x01"}};
    const char *path = test_temp_path(".safetensors");
    TEST_OK(kelp_st_write(path, records, n, meta, 2));

    kelp_st_file *f;
    TEST_OK(kelp_st_open(path, &f));
    assert_int_equal(kelp_st_count(f), n);
    assert_null(kelp_st_info_at(f, n));
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const kelp_st_info *info = kelp_st_info_at(f, i), *found;
        assert_string_equal(info->name, records[i].name);
        TEST_OK(kelp_st_find(f, records[i].name, &found));
        assert_ptr_equal(found, info);
        assert_int_equal(info->dtype, records[i].dtype);
        assert_true(kelp_shape_equal(&info->shape, &records[i].shape));
        uint64_t bytes = (uint64_t)kelp_shape_numel(&records[i].shape) * kelp_st_dtype_size(records[i].dtype);
        assert_int_equal(info->nbytes, bytes);
        /* The writer tiles the data section in record order. */
        assert_int_equal(info->offset, offset);
        offset += bytes;
        unsigned char got[64];
        memset(got, 0xEE, sizeof got);
        TEST_OK(kelp_st_read(f, info, got, (size_t)bytes));
        if (bytes > 0)
            assert_memory_equal(got, records[i].data, (size_t)bytes);
    }
    size_t meta_count;
    const kelp_st_meta *got_meta = kelp_st_metadata(f, &meta_count);
    assert_int_equal(meta_count, 2);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(got_meta[i].key, meta[i].key);
        assert_string_equal(got_meta[i].value, meta[i].value);
    }
    assert_string_equal(kelp_st_metadata_get(f, "note"), meta[1].value);
    assert_null(kelp_st_metadata_get(f, "missing"));

    const kelp_st_info *info;
    TEST_FAILS_WITH(kelp_st_find(f, "conv2.weight", &info), KELP_ERR_NOT_FOUND, "conv2.weight");
    TEST_OK(kelp_st_find(f, "conv1.weight", &info));
    float small[5];
    TEST_FAILS_WITH(kelp_st_read(f, info, small, sizeof small), KELP_ERR_INVALID_ARG, "24 bytes");
    kelp_st_close(f);
    kelp_st_close(NULL);

    /* The header is padded so that the data section starts 8-byte aligned. */
    size_t size;
    unsigned char *raw = read_whole(path, &size);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = header_len << 8 | raw[i];
    assert_int_equal(header_len % 8, 0);
    assert_int_equal(size, 8 + header_len + offset);
    free(raw);
    remove(path);
}

/* save({"b": np.array(3.0), "w": np.arange(6, dtype=np.int16).reshape(2, 3)}, metadata={"format": "np"}) from
 * Python's safetensors 0.8 (it orders tensors by dtype alignment, then name). */
static const unsigned char PYTHON_TWO_TENSORS[] =
    "\x90\x00\x00\x00\x00\x00\x00\x00"
    "{\"__metadata__\":{\"format\":\"np\"},\"b\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]},"
    "\"w\":{\"dtype\":\"I16\",\"shape\":[2,3],\"data_offsets\":[8,20]}}    "
    "\x00\x00\x00\x00\x00\x00\x08\x40"
    "\x00\x00\x01\x00\x02\x00\x03\x00\x04\x00\x05\x00";

static void test_writer_matches_python_bytes(void **state)
{
    (void)state;
    double b = 3.0;
    int16_t w[6] = {0, 1, 2, 3, 4, 5};
    const kelp_st_record records[] = {
        {"b", KELP_ST_F64, kelp_shape_make(0, NULL), &b},
        {"w", KELP_ST_I16, kelp_shape2(2, 3), w},
    };
    const kelp_st_meta meta[] = {{"format", "np"}};
    const char *path = test_temp_path(".safetensors");
    TEST_OK(kelp_st_write(path, records, 2, meta, 1));
    size_t n;
    unsigned char *got = read_whole(path, &n);
    assert_int_equal(n, sizeof PYTHON_TWO_TENSORS - 1);
    assert_memory_equal(got, PYTHON_TWO_TENSORS, n);
    free(got);
    remove(path);
}

/* The reference implementation's own expectations for files without tensors (its test_empty). */
static void test_writer_matches_reference_without_tensors(void **state)
{
    (void)state;
    const char *path = test_temp_path(".safetensors");
    TEST_OK(kelp_st_write(path, NULL, 0, NULL, 0));
    size_t n;
    unsigned char *got = read_whole(path, &n);
    assert_int_equal(n, 16);
    assert_memory_equal(got, "\x08\0\0\0\0\0\0\0{}      ", 16);
    free(got);

    const kelp_st_meta meta[] = {{"framework", "pt"}};
    TEST_OK(kelp_st_write(path, NULL, 0, meta, 1));
    got = read_whole(path, &n);
    assert_int_equal(n, 48);
    assert_memory_equal(got, "\x28\0\0\0\0\0\0\0{\"__metadata__\":{\"framework\":\"pt\"}}     ", 48);
    free(got);

    kelp_st_file *f;
    TEST_OK(kelp_st_open(path, &f));
    assert_int_equal(kelp_st_count(f), 0);
    assert_string_equal(kelp_st_metadata_get(f, "framework"), "pt");
    kelp_st_close(f);
    remove(path);
}

/* save({"a": np.array([1.0, -2.5], dtype=np.float32)}) from Python's safetensors 0.8. */
static const unsigned char PYTHON_ONE_TENSOR[] =
    "\x38\x00\x00\x00\x00\x00\x00\x00"
    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  "
    "\x00\x00\x80\x3f\x00\x00\x20\xc0";

static void test_reads_python_file(void **state)
{
    (void)state;
    const char *path = test_temp_path(".safetensors");
    write_bytes(path, PYTHON_ONE_TENSOR, sizeof PYTHON_ONE_TENSOR - 1);
    kelp_st_file *f;
    TEST_OK(kelp_st_open(path, &f));
    assert_int_equal(kelp_st_count(f), 1);
    size_t meta_count;
    kelp_st_metadata(f, &meta_count);
    assert_int_equal(meta_count, 0);
    const kelp_st_info *a;
    TEST_OK(kelp_st_find(f, "a", &a));
    assert_int_equal(a->dtype, KELP_ST_F32);
    assert_int_equal(a->shape.ndim, 1);
    assert_int_equal(a->shape.dims[0], 2);
    float got[2];
    TEST_OK(kelp_st_read(f, a, got, sizeof got));
    assert_true(got[0] == 1.0f && got[1] == -2.5f);
    kelp_st_close(f);
    remove(path);
}

static void test_read_after_the_file_shrank(void **state)
{
    (void)state;
    const char *path = test_temp_path(".safetensors");
    write_bytes(path, PYTHON_ONE_TENSOR, sizeof PYTHON_ONE_TENSOR - 1);
    kelp_st_file *f;
    TEST_OK(kelp_st_open(path, &f));
    assert_int_equal(truncate(path, 8 + 56 + 4), 0);
    const kelp_st_info *a;
    TEST_OK(kelp_st_find(f, "a", &a));
    float got[2];
    TEST_FAILS_WITH(kelp_st_read(f, a, got, sizeof got), KELP_ERR_IO, "ends early");
    assert_int_equal(strncmp(kelp_last_error(), path, strlen(path)), 0);
    kelp_st_close(f);
    remove(path);
}

/* Files the reference accepts that a naive reader might not. */
static void test_accepts_reference_edge_cases(void **state)
{
    (void)state;
    const char *path = test_temp_path(".safetensors");
    /* Zero-size tensors may share an offset; sorting by (begin, end) still tiles. */
    kelp_st_file *f = open_header(path,
                                  "{\"z\":{\"dtype\":\"U8\",\"shape\":[3,0],\"data_offsets\":[2,2]},"
                                  "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
                                  "\"y\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]},"
                                  "\"a\":{\"dtype\":\"I16\",\"shape\":[],\"data_offsets\":[0,2]}} \t\r\n",
                                  4);
    assert_int_equal(kelp_st_count(f), 4);
    assert_string_equal(kelp_st_info_at(f, 0)->name, "z");
    kelp_st_close(f);
    /* A null __metadata__ means none, and unicode escapes decode to UTF-8. */
    f = open_header(path, "{\"__metadata__\":null,\"\\u00e9\\ud83d\\ude00\":{\"dtype\":\"U8\",\"shape\":[1],"
                          "\"data_offsets\":[0,1]}}", 1);
    const kelp_st_info *info;
    TEST_OK(kelp_st_find(f, "\xc3\xa9\xf0\x9f\x98\x80", &info));
    kelp_st_close(f);
    /* No tensors: the data section is empty. */
    f = open_header(path, "{}", 0);
    assert_int_equal(kelp_st_count(f), 0);
    TEST_FAILS_WITH(kelp_st_find(f, "a", &info), KELP_ERR_NOT_FOUND, path);
    kelp_st_close(f);
    remove(path);
}

/* ---------------------------------------------------------------- one test per validation rule */

static void test_rule1_file_shorter_than_8_bytes(void **state)
{
    (void)state;
    const char *path = test_temp_path(".safetensors");
    write_bytes(path, "\x02\0\0\0\0\0\0", 7);
    assert_open_fails(path, KELP_ERR_FORMAT, "file too small");
    write_bytes(path, "", 0);
    assert_open_fails(path, KELP_ERR_FORMAT, "file too small");
    remove(path);
}

static void test_rule2_header_too_large(void **state)
{
    (void)state;
    const char *path = test_temp_path(".safetensors");
    write_st(path, 100000001, "{}", 2, 0);
    assert_open_fails(path, KELP_ERR_FORMAT, "header too large");
    write_st(path, UINT64_MAX, "{}", 2, 0);
    assert_open_fails(path, KELP_ERR_FORMAT, "header too large");
    remove(path);
}

static void test_rule3_header_beyond_file_size(void **state)
{
    (void)state;
    const char *path = test_temp_path(".safetensors");
    write_st(path, 64, "{}      ", 8, 0);
    assert_open_fails(path, KELP_ERR_FORMAT, "header length beyond file size");
    write_st(path, 9, "{}      ", 8, 0);
    assert_open_fails(path, KELP_ERR_FORMAT, "header length beyond file size");
    remove(path);
}

static void test_rule4_header_not_utf8(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"\xff\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}",     /* invalid byte */
        "{\"\xc0\xaf\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", /* overlong '/' */
        "{\"\xed\xa0\x80\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", /* surrogate */
        "{\"\xf4\x90\x80\x80\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", /* > U+10FFFF */
        "{}\xe2\x82",                                                               /* truncated */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        header_fails(bad[i], 0, KELP_ERR_FORMAT, "not valid UTF-8");
}

static void test_rule5_header_does_not_start_with_brace(void **state)
{
    (void)state;
    header_fails(" {}", 0, KELP_ERR_FORMAT, "does not start with '{'");
    header_fails("[]", 0, KELP_ERR_FORMAT, "does not start with '{'");
    header_fails("", 0, KELP_ERR_FORMAT, "does not start with '{'");
}

static void test_rule6_header_not_json(void **state)
{
    (void)state;
    header_fails("{\"a\":", 0, KELP_ERR_FORMAT, "not valid JSON");
    header_fails("{\"a\" 1}", 0, KELP_ERR_FORMAT, "not valid JSON");
    header_fails("{} {}", 0, KELP_ERR_FORMAT, "trailing characters");
    header_fails("{}x", 0, KELP_ERR_FORMAT, "trailing characters");
    /* cJSON accepts these; JSON does not. */
    header_fails("{\"a\x01\":{}}", 0, KELP_ERR_FORMAT, "not valid JSON: control character");
    header_fails("{\x0b}", 0, KELP_ERR_FORMAT, "not valid JSON: control character");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[+1],\"data_offsets\":[0,1]}}", 1, KELP_ERR_FORMAT,
                 "not a non-negative integer");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[01],\"data_offsets\":[0,1]}}", 1, KELP_ERR_FORMAT,
                 "not a non-negative integer");
}

static void test_rule7_duplicate_keys(void **state)
{
    (void)state;
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                 "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]},"
                 "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                 2, KELP_ERR_FORMAT, "duplicate key 'a'");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, KELP_ERR_FORMAT,
                 "duplicate key 'dtype'");
    header_fails("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, KELP_ERR_FORMAT, "duplicate key 'k'");
    header_fails("{\"__metadata__\":{},\"__metadata__\":{}}", 0, KELP_ERR_FORMAT, "duplicate key '__metadata__'");
}

static void test_rule8_metadata_not_object_of_strings(void **state)
{
    (void)state;
    header_fails("{\"__metadata__\":{\"epoch\":3}}", 0, KELP_ERR_FORMAT, "__metadata__ is not an object of string");
    header_fails("{\"__metadata__\":[\"a\"]}", 0, KELP_ERR_FORMAT, "__metadata__ is not an object of string");
    header_fails("{\"__metadata__\":\"pt\"}", 0, KELP_ERR_FORMAT, "__metadata__ is not an object of string");
    header_fails("{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", 0, KELP_ERR_FORMAT, "__metadata__ is not an object");
}

static void test_rule9_tensor_entry_fields(void **state)
{
    (void)state;
    header_fails("{\"a\":[1]}", 0, KELP_ERR_FORMAT, "tensor 'a': entry is not an object");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 0, KELP_ERR_FORMAT, "missing field 'data_offsets'");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, KELP_ERR_FORMAT, "missing field 'shape'");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"scale\":\"2\"}}", 1,
                 KELP_ERR_FORMAT, "unknown field 'scale'");
    header_fails("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,1]}}", 1, KELP_ERR_FORMAT,
                 "dtype is not a string");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":1,\"data_offsets\":[0,1]}}", 1, KELP_ERR_FORMAT,
                 "shape is not an array of non-negative integers");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}}", 1, KELP_ERR_FORMAT,
                 "shape is not an array of non-negative integers");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1, KELP_ERR_FORMAT,
                 "'-1' at header byte 28 is not a non-negative integer");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}", 1, KELP_ERR_FORMAT,
                 "'1.0' at header byte 28 is not a non-negative integer");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1e0]}}", 1, KELP_ERR_FORMAT,
                 "not a non-negative integer");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,1]}}", 1, KELP_ERR_FORMAT,
                 "data_offsets is not [begin, end]");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, KELP_ERR_FORMAT,
                 "data_offsets is not [begin, end]");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":{\"0\":1}}}", 1, KELP_ERR_FORMAT,
                 "data_offsets is not [begin, end]");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[1,0]}}", 1, KELP_ERR_FORMAT,
                 "data_offsets [1,0] end before they begin");
}

static void test_rule10_unknown_dtype(void **state)
{
    (void)state;
    header_fails("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, KELP_ERR_FORMAT,
                 "tensor 'a': unknown dtype 'F33'");
    header_fails("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, KELP_ERR_FORMAT,
                 "unknown dtype 'f32'");
}

static void test_rule11_size_overflow(void **state)
{
    (void)state;
    /* numel 2^64 */
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
                 KELP_ERR_FORMAT, "overflow");
    /* numel 2^62 fits; 4 bytes each do not */
    header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,0]}}", 0,
                 KELP_ERR_FORMAT, "overflow");
}

static void test_rule12_offsets_disagree_with_size(void **state)
{
    (void)state;
    header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, KELP_ERR_FORMAT,
                 "span 4 bytes but F32 [2] needs 8 (size mismatch)");
    header_fails("{\"a\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, KELP_ERR_FORMAT,
                 "size mismatch");
}

static void test_rule13_offsets_must_tile(void **state)
{
    (void)state;
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                 "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]}}",
                 12, KELP_ERR_FORMAT, "tensor 'b': data_offsets [8,12] leave a gap");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4,12]}}",
                 12, KELP_ERR_FORMAT, "tensor 'b': data_offsets [4,12] overlap");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8, KELP_ERR_FORMAT,
                 "leave a gap (the tensors must tile the data section from 0: expected begin 0)");
    /* Two tensors on the same bytes. */
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                 "\"b\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]}}",
                 4, KELP_ERR_FORMAT, "overlap");
}

static void test_rule14_file_size_must_match(void **state)
{
    (void)state;
    const char *one = "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}";
    header_fails(one, 5, KELP_ERR_FORMAT, "file size mismatch");
    header_fails(one, 3, KELP_ERR_FORMAT, "file size mismatch");
    header_fails("{}", 1, KELP_ERR_FORMAT, "file size mismatch");
}

/* ---------------------------------------------------------------- caps beyond the format */

static void test_caps_on_hostile_headers(void **state)
{
    (void)state;
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, KELP_ERR_UNSUPPORTED,
                 "shape has 6 dims; kelp holds at most 5");
    header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[0,9007199254740992],\"data_offsets\":[0,0]}}", 0,
                 KELP_ERR_UNSUPPORTED, "'9007199254740992' at header byte 30 is 2^53 or more");
    header_fails("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, KELP_ERR_UNSUPPORTED,
                 "\\u0000");

    /* Too many tensors: each entry is tiny and valid, only their count is hostile. */
    const size_t count = KELP_ST_MAX_TENSORS + 1;
    const char *entry = "\"t%07zu\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},";
    size_t cap = count * 64 + 16, len = 1;
    char *header = malloc(cap);
    assert_non_null(header);
    header[0] = '{';
    for (size_t i = 0; i < count; i++)
        len += (size_t)snprintf(header + len, cap - len, entry, i);
    header[len - 1] = '}';
    header[len] = '\0';
    header_fails(header, 0, KELP_ERR_NO_MEMORY, "header lists 100001 tensors; kelp reads at most 100000");

    /* Too many JSON values: one shape of millions of dims must be refused before cJSON builds a node for each. */
    const size_t dims = 2 * 1000 * 1000 + 1;
    free(header);
    header = malloc(dims * 2 + 128);
    assert_non_null(header);
    len = (size_t)sprintf(header, "{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,0],\"shape\":[");
    for (size_t i = 0; i < dims; i++) {
        header[len++] = '0';
        header[len++] = ',';
    }
    strcpy(header + len - 1, "]}}");
    header_fails(header, 0, KELP_ERR_NO_MEMORY, "JSON values");
    free(header);
}

static void test_open_errors_name_the_path(void **state)
{
    (void)state;
    const char *path = test_temp_path("-missing.safetensors");
    assert_open_fails(path, KELP_ERR_IO, "cannot open");
    const char *dir = test_temp_path("-dir");
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_open_fails(dir, KELP_ERR_IO, "not a regular file");
    rmdir(dir);
}

/* ---------------------------------------------------------------- writer argument checks */

static void assert_write_rejected(const kelp_st_record *records, size_t n, const kelp_st_meta *meta, size_t n_meta,
                                  const char *needle)
{
    const char *path = test_temp_path(".safetensors");
    TEST_FAILS_WITH(kelp_st_write(path, records, n, meta, n_meta), KELP_ERR_INVALID_ARG, needle);
    assert_int_equal(strncmp(kelp_last_error(), path, strlen(path)), 0);
    /* Checked before touching the disk: nothing was created. */
    assert_int_equal(access(path, F_OK), -1);
}

static void test_writer_rejects_bad_records(void **state)
{
    (void)state;
    float x[4] = {0};
    kelp_shape two = kelp_shape_make(1, (int64_t[]){2});
    const kelp_st_record empty_name[] = {{"", KELP_ST_F32, two, x}};
    assert_write_rejected(empty_name, 1, NULL, 0, "empty tensor name");
    const kelp_st_record null_name[] = {{NULL, KELP_ST_F32, two, x}};
    assert_write_rejected(null_name, 1, NULL, 0, "empty tensor name");
    const kelp_st_record dup[] = {{"w", KELP_ST_F32, two, x}, {"b", KELP_ST_F32, two, x}, {"w", KELP_ST_F32, two, x}};
    assert_write_rejected(dup, 3, NULL, 0, "duplicate tensor name 'w'");
    const kelp_st_record reserved[] = {{"__metadata__", KELP_ST_F32, two, x}};
    assert_write_rejected(reserved, 1, NULL, 0, "reserved");
    const kelp_st_record not_utf8[] = {{"w\xff", KELP_ST_F32, two, x}};
    assert_write_rejected(not_utf8, 1, NULL, 0, "not UTF-8");
    const kelp_st_record bad_dtype[] = {{"w", (kelp_st_dtype)KELP_ST_DTYPE_COUNT, two, x}};
    assert_write_rejected(bad_dtype, 1, NULL, 0, "not a safetensors dtype");
    const kelp_st_record negative[] = {{"w", KELP_ST_F32, kelp_shape2(2, -1), x}};
    assert_write_rejected(negative, 1, NULL, 0, "dim 1 is -1");
    const kelp_st_record no_data[] = {{"w", KELP_ST_F32, two, NULL}};
    assert_write_rejected(no_data, 1, NULL, 0, "data is NULL");
    const kelp_st_record ok[] = {{"w", KELP_ST_F32, two, x}};
    const kelp_st_meta dup_meta[] = {{"k", "1"}, {"k", "2"}};
    assert_write_rejected(ok, 1, dup_meta, 2, "duplicate metadata key 'k'");
    const kelp_st_meta null_value[] = {{"k", NULL}};
    assert_write_rejected(ok, 1, null_value, 1, "metadata entry 0");
}

static void test_writer_failure_keeps_the_old_file(void **state)
{
    (void)state;
    const char *path = test_temp_path(".safetensors");
    write_bytes(path, PYTHON_ONE_TENSOR, sizeof PYTHON_ONE_TENSOR - 1);
    float x[2] = {0};
    const kelp_st_record dup[] = {{"a", KELP_ST_F32, kelp_shape2(1, 2), x}, {"a", KELP_ST_F32, kelp_shape2(1, 2), x}};
    TEST_FAILS_WITH(kelp_st_write(path, dup, 2, NULL, 0), KELP_ERR_INVALID_ARG, "duplicate");
    size_t n;
    unsigned char *got = read_whole(path, &n);
    assert_int_equal(n, sizeof PYTHON_ONE_TENSOR - 1);
    assert_memory_equal(got, PYTHON_ONE_TENSOR, n);
    free(got);
    remove(path);

    char missing[512];
    snprintf(missing, sizeof missing, "%s/no-such-dir/w.safetensors", test_temp_path("-gone"));
    const kelp_st_record one[] = {{"a", KELP_ST_F32, kelp_shape2(1, 2), x}};
    TEST_FAILS_WITH(kelp_st_write(missing, one, 1, NULL, 0), KELP_ERR_IO, missing);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_round_trip_dtypes_scalar_and_empty),
        cmocka_unit_test(test_writer_matches_python_bytes),
        cmocka_unit_test(test_writer_matches_reference_without_tensors),
        cmocka_unit_test(test_reads_python_file),
        cmocka_unit_test(test_read_after_the_file_shrank),
        cmocka_unit_test(test_accepts_reference_edge_cases),
        cmocka_unit_test(test_rule1_file_shorter_than_8_bytes),
        cmocka_unit_test(test_rule2_header_too_large),
        cmocka_unit_test(test_rule3_header_beyond_file_size),
        cmocka_unit_test(test_rule4_header_not_utf8),
        cmocka_unit_test(test_rule5_header_does_not_start_with_brace),
        cmocka_unit_test(test_rule6_header_not_json),
        cmocka_unit_test(test_rule7_duplicate_keys),
        cmocka_unit_test(test_rule8_metadata_not_object_of_strings),
        cmocka_unit_test(test_rule9_tensor_entry_fields),
        cmocka_unit_test(test_rule10_unknown_dtype),
        cmocka_unit_test(test_rule11_size_overflow),
        cmocka_unit_test(test_rule12_offsets_disagree_with_size),
        cmocka_unit_test(test_rule13_offsets_must_tile),
        cmocka_unit_test(test_rule14_file_size_must_match),
        cmocka_unit_test(test_caps_on_hostile_headers),
        cmocka_unit_test(test_open_errors_name_the_path),
        cmocka_unit_test(test_writer_rejects_bad_records),
        cmocka_unit_test(test_writer_failure_keeps_the_old_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
