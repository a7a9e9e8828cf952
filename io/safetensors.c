/* safetensors reader and writer.
 *
 * The reader checks, in this order, the rules of the reference implementation (huggingface/safetensors,
 * SafeTensors::read_metadata and Metadata::validate), made strict where the reference is lenient:
 *   1. the file holds at least the 8-byte header length N;        2. N <= 100,000,000;
 *   3. 8 + N <= file size;                                        4. the header is UTF-8;
 *   5. it starts with '{';                                        6. it is one JSON object (then only whitespace);
 *   7. no object repeats a key;                                   8. "__metadata__" is null or an object of strings;
 *   9. every other entry is {"dtype","shape","data_offsets"} and nothing else, the shape and the offsets
 *      non-negative integers, begin <= end;                       10. the dtype is one of the format's;
 *  11. numel * dtype size fits in 64 bits;                         12. end - begin is exactly that size;
 *  13. sorted by (begin, end), the tensors tile the data section from 0, no gap, no overlap;
 *  14. 8 + N + the last end is the file size. */
#include "io/safetensors.h"

#include "io/utf8.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/atomic_file.h"

#define HEADER_LEN_BYTES 8
#define METADATA_KEY "__metadata__"
/* cJSON reads numbers as doubles, which hold every integer below 2^53 exactly and no more. */
#define EXACT_INT_LIMIT (UINT64_C(1) << 53)
/* A tensor entry is at most 15 JSON values (name, entry, 3 field names, dtype, shape and its dims, the offsets
 * and their 2 numbers) and a metadata entry 2: bounding the values bounds what cJSON allocates (~64 bytes each). */
#define MAX_JSON_VALUES (15 * (size_t)KELP_ST_MAX_TENSORS + 2 * (size_t)KELP_ST_MAX_METADATA + 8)

static const struct {
    const char *name;
    size_t size;
} DTYPES[KELP_ST_DTYPE_COUNT] = {
    [KELP_ST_BOOL] = {"BOOL", 1},       [KELP_ST_U8] = {"U8", 1},           [KELP_ST_I8] = {"I8", 1},
    [KELP_ST_I16] = {"I16", 2},         [KELP_ST_U16] = {"U16", 2},         [KELP_ST_F16] = {"F16", 2},
    [KELP_ST_BF16] = {"BF16", 2},       [KELP_ST_I32] = {"I32", 4},         [KELP_ST_U32] = {"U32", 4},
    [KELP_ST_F32] = {"F32", 4},         [KELP_ST_F64] = {"F64", 8},         [KELP_ST_I64] = {"I64", 8},
    [KELP_ST_U64] = {"U64", 8},         [KELP_ST_F8_E5M2] = {"F8_E5M2", 1}, [KELP_ST_F8_E4M3] = {"F8_E4M3", 1},
};

static int dtype_valid(kelp_st_dtype dtype)
{
    return (unsigned)dtype < KELP_ST_DTYPE_COUNT;
}

size_t kelp_st_dtype_size(kelp_st_dtype dtype)
{
    return dtype_valid(dtype) ? DTYPES[dtype].size : 0;
}

const char *kelp_st_dtype_name(kelp_st_dtype dtype)
{
    return dtype_valid(dtype) ? DTYPES[dtype].name : "?";
}

kelp_status kelp_st_dtype_parse(const char *name, kelp_st_dtype *out)
{
    for (int d = 0; d < KELP_ST_DTYPE_COUNT; d++) {
        if (name && strcmp(name, DTYPES[d].name) == 0) {
            *out = (kelp_st_dtype)d;
            return KELP_OK;
        }
    }
    return kelp_set_error(KELP_ERR_NOT_FOUND, "unknown safetensors dtype '%s'", name ? name : "(null)");
}

/* numel * dtype size; 0 when numel or the product overflows 64 bits, which the reference checks in that order.
 * Dims are non-negative here. */
static int byte_size(kelp_st_dtype dtype, const kelp_shape *shape, uint64_t *bytes)
{
    uint64_t numel = 1;
    for (int d = 0; d < shape->ndim; d++) {
        uint64_t dim = (uint64_t)shape->dims[d];
        if (dim != 0 && numel > UINT64_MAX / dim)
            return 0;
        numel *= dim;
    }
    if (numel > UINT64_MAX / DTYPES[dtype].size)
        return 0;
    *bytes = numel * DTYPES[dtype].size;
    return 1;
}

static bool utf8_valid(const char *s) { return kelp_utf8_valid(s, strlen(s)); }

/* ================================================================ reading */

struct kelp_st_file {
    char *path;
    int fd;
    uint64_t data_start; /* 8 + N */
    size_t count;
    kelp_st_info *tensors;        /* header order */
    const kelp_st_info **by_name; /* sorted by name, for kelp_st_find */
    size_t meta_count;
    kelp_st_meta *meta;
    char *strings; /* every name, key and value, so the JSON tree can go */
};

#define format_error(...) kelp_set_error(KELP_ERR_FORMAT, __VA_ARGS__)

/* Reads exactly n bytes at offset; a file that ends first is an I/O error (it shrank after validation). */
static kelp_status read_at(int fd, void *dst, size_t n, uint64_t offset, const char *what)
{
    unsigned char *p = dst;
    while (n > 0) {
        ssize_t got = pread(fd, p, n, (off_t)offset);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return kelp_set_error(KELP_ERR_IO, "cannot read %s: %s", what, strerror(errno));
        if (got == 0)
            return kelp_set_error(KELP_ERR_IO, "cannot read %s: the file ends early (did it shrink?)", what);
        p += got;
        n -= (size_t)got;
        offset += (uint64_t)got;
    }
    return KELP_OK;
}

static kelp_status open_regular(kelp_st_file *f, uint64_t *size)
{
    f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0)
        return kelp_set_error(KELP_ERR_IO, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(f->fd, &st) != 0)
        return kelp_set_error(KELP_ERR_IO, "cannot stat: %s", strerror(errno));
    if (!S_ISREG(st.st_mode))
        return kelp_set_error(KELP_ERR_IO, "not a regular file");
    *size = (uint64_t)st.st_size;
    return KELP_OK;
}

/* Rules 1-3; returns the header NUL-terminated (for cJSON) in *out. */
static kelp_status read_header(const kelp_st_file *f, uint64_t file_size, char **out, size_t *len)
{
    if (file_size < HEADER_LEN_BYTES)
        return format_error("file too small (%" PRIu64 " bytes): a safetensors file starts with an 8-byte "
                            "header length", file_size);
    unsigned char raw[HEADER_LEN_BYTES];
    KELP_TRY(read_at(f->fd, raw, sizeof raw, 0, "the header length"));
    uint64_t n = 0;
    for (int i = HEADER_LEN_BYTES - 1; i >= 0; i--)
        n = (n << 8) | raw[i];
    if (n > KELP_ST_MAX_HEADER_BYTES)
        return format_error("header too large (%" PRIu64 " bytes, the format allows %u)", n,
                            KELP_ST_MAX_HEADER_BYTES);
    if (n > file_size - HEADER_LEN_BYTES)
        return format_error("header length beyond file size (8 + %" PRIu64 " > %" PRIu64 " bytes)", n,
                            file_size);
    char *text = malloc((size_t)n + 1);
    if (!text)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory for a %" PRIu64 "-byte header", n);
    kelp_status s = read_at(f->fd, text, (size_t)n, HEADER_LEN_BYTES, "the header");
    if (s != KELP_OK) {
        free(text);
        return s;
    }
    text[n] = '\0';
    *out = text;
    *len = (size_t)n;
    return KELP_OK;
}

static int is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Scans a string from its opening quote; returns the index of the closing quote (len when unterminated, which
 * cJSON then reports). Raw control characters are invalid JSON that cJSON accepts; an escaped NUL is valid JSON
 * that a C string cannot hold. */
static kelp_status scan_string(const char *text, size_t len, size_t start, size_t *end)
{
    size_t i = start + 1;
    while (i < len && text[i] != '"') {
        if ((unsigned char)text[i] < 0x20)
            return format_error("header is not valid JSON: control character 0x%02x in a string at byte %zu",
                                (unsigned char)text[i], i);
        if (text[i] == '\\' && len - i >= 6 && memcmp(text + i + 1, "u0000", 5) == 0)
            return kelp_set_error(KELP_ERR_UNSUPPORTED, "header string at byte %zu holds \\u0000, which kelp "
                                  "strings cannot hold", start);
        i += text[i] == '\\' ? 2 : 1;
    }
    *end = i;
    return KELP_OK;
}

/* Every number of a valid header is a dim or an offset, so any other number form is an error; checking the text
 * also rejects forms cJSON accepts and JSON does not ("01", "1.", "-0"). */
static kelp_status check_number(const char *tok, size_t len, size_t at)
{
    int shown = len > 32 ? 32 : (int)len;
    int digits_only = 1;
    for (size_t k = 0; k < len; k++)
        digits_only &= tok[k] >= '0' && tok[k] <= '9';
    if (!digits_only || (len > 1 && tok[0] == '0'))
        return format_error("number '%.*s' at header byte %zu is not a non-negative integer (shape and "
                            "data_offsets hold only those)", shown, tok, at);
    uint64_t value = 0;
    for (size_t k = 0; k < len && value < EXACT_INT_LIMIT; k++)
        value = value * 10 + (uint64_t)(tok[k] - '0');
    if (value >= EXACT_INT_LIMIT)
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "integer '%.*s' at header byte %zu is 2^53 or more; kelp "
                              "reads smaller ones", shown, tok, at);
    return KELP_OK;
}

static int is_number_char(char c)
{
    return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E';
}

/* A pass over the header text before cJSON: strict JSON where cJSON is lenient, integers only, and a cap on the
 * number of values before cJSON allocates a node for each. */
static kelp_status check_lexemes(const char *text, size_t len)
{
    size_t values = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '"') {
            KELP_TRY(scan_string(text, len, i, &i));
        } else if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.') {
            size_t start = i;
            while (i + 1 < len && is_number_char(text[i + 1]))
                i++;
            KELP_TRY(check_number(text + start, i + 1 - start, start));
        } else if (c >= 'a' && c <= 'z') {
            /* true, false or null; cJSON rejects any other word */
            while (i + 1 < len && text[i + 1] >= 'a' && text[i + 1] <= 'z')
                i++;
        } else if ((unsigned char)c < 0x20 && !is_json_space(c)) {
            return format_error("header is not valid JSON: control character 0x%02x at byte %zu",
                                (unsigned char)c, i);
        } else if (c != '{' && c != '[') {
            continue;
        }
        if (++values > MAX_JSON_VALUES)
            return kelp_set_error(KELP_ERR_NO_MEMORY, "header holds more than %zu JSON values (cap: %d "
                                  "tensors, %d metadata entries)", MAX_JSON_VALUES, KELP_ST_MAX_TENSORS,
                                  KELP_ST_MAX_METADATA);
    }
    return KELP_OK;
}

/* Rule 6: one JSON value (an object, as the text starts with '{') and then only whitespace, which the format
 * uses as padding. */
static kelp_status parse_json(const char *text, size_t len, cJSON **out)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root)
        return format_error("header is not valid JSON (parsing stops at byte %td)", end ? end - text : (ptrdiff_t)0);
    for (const char *p = end; p < text + len; p++) {
        if (!is_json_space(*p)) {
            cJSON_Delete(root);
            return format_error("header is not valid JSON: trailing characters at byte %td after the object",
                                p - text);
        }
    }
    *out = root;
    return KELP_OK;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Rule 7 for an object of n members: cJSON keeps every copy of a repeated key. */
static kelp_status check_unique_keys(const cJSON *object, size_t n, const char *where)
{
    if (n < 2)
        return KELP_OK;
    const char **keys = malloc(n * sizeof *keys);
    if (!keys)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory checking %zu keys", n);
    size_t i = 0;
    for (const cJSON *item = object->child; item; item = item->next)
        keys[i++] = item->string;
    qsort(keys, n, sizeof *keys, compare_strings);
    kelp_status s = KELP_OK;
    for (i = 1; i < n && s == KELP_OK; i++) {
        if (strcmp(keys[i - 1], keys[i]) == 0)
            s = format_error("duplicate key '%s' in %s", keys[i], where);
    }
    free(keys);
    return s;
}

static size_t member_count(const cJSON *object)
{
    size_t n = 0;
    for (const cJSON *item = object->child; item; item = item->next)
        n++;
    return n;
}

/* Rule 8. A null "__metadata__" means none, as in the reference. */
static kelp_status parse_metadata(kelp_st_file *f, const cJSON *meta)
{
    if (cJSON_IsNull(meta))
        return KELP_OK;
    if (!cJSON_IsObject(meta))
        return format_error(METADATA_KEY " is not an object of string values");
    size_t n = member_count(meta);
    if (n > KELP_ST_MAX_METADATA)
        return kelp_set_error(KELP_ERR_NO_MEMORY, METADATA_KEY " has %zu entries; kelp reads at most %d", n,
                              KELP_ST_MAX_METADATA);
    KELP_TRY(check_unique_keys(meta, n, METADATA_KEY));
    f->meta = calloc(n ? n : 1, sizeof *f->meta);
    if (!f->meta)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory for %zu metadata entries", n);
    for (const cJSON *item = meta->child; item; item = item->next) {
        if (!cJSON_IsString(item))
            return format_error(METADATA_KEY " is not an object of string values: '%s' is not a string",
                                item->string);
        f->meta[f->meta_count++] = (kelp_st_meta){item->string, item->valuestring};
    }
    return KELP_OK;
}

static kelp_status parse_dtype(const char *name, const cJSON *item, kelp_st_dtype *out)
{
    if (!cJSON_IsString(item))
        return format_error("tensor '%s': dtype is not a string", name);
    if (kelp_st_dtype_parse(item->valuestring, out) != KELP_OK)
        return format_error("tensor '%s': unknown dtype '%s'", name, item->valuestring);
    return KELP_OK;
}

/* The lexical pass admitted only integers in [0, 2^53), so a JSON number here converts exactly. */
static int read_integer(const cJSON *item, uint64_t *out)
{
    if (!cJSON_IsNumber(item))
        return 0;
    *out = (uint64_t)item->valuedouble;
    return 1;
}

static kelp_status parse_shape(const char *name, const cJSON *item, kelp_shape *out)
{
    if (!cJSON_IsArray(item))
        return format_error("tensor '%s': shape is not an array of non-negative integers", name);
    int ndim = cJSON_GetArraySize(item);
    if (ndim > KELP_MAX_DIMS)
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "tensor '%s': shape has %d dims; kelp holds at most %d",
                              name, ndim, KELP_MAX_DIMS);
    out->ndim = ndim;
    int d = 0;
    for (const cJSON *dim = item->child; dim; dim = dim->next) {
        uint64_t value;
        if (!read_integer(dim, &value))
            return format_error("tensor '%s': shape is not an array of non-negative integers", name);
        out->dims[d++] = (int64_t)value;
    }
    return KELP_OK;
}

static kelp_status parse_offsets(const char *name, const cJSON *item, uint64_t *begin, uint64_t *end)
{
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2 || !read_integer(item->child, begin) ||
        !read_integer(item->child->next, end))
        return format_error("tensor '%s': data_offsets is not [begin, end] of non-negative integers", name);
    if (*begin > *end)
        return format_error("tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64 "] end before they begin", name,
                            *begin, *end);
    return KELP_OK;
}

/* The three fields of an entry, each exactly once and nothing else (rules 7 and 9). */
static kelp_status find_fields(const char *name, const cJSON *entry, const cJSON *fields[3])
{
    static const char *const NAMES[3] = {"dtype", "shape", "data_offsets"};
    for (const cJSON *item = entry->child; item; item = item->next) {
        int k = 0;
        while (k < 3 && strcmp(item->string, NAMES[k]) != 0)
            k++;
        if (k == 3)
            return format_error("tensor '%s': unknown field '%s' (an entry holds exactly dtype, shape and "
                                "data_offsets)", name, item->string);
        if (fields[k])
            return format_error("duplicate key '%s' in tensor '%s'", NAMES[k], name);
        fields[k] = item;
    }
    for (int k = 0; k < 3; k++) {
        if (!fields[k])
            return format_error("tensor '%s': missing field '%s'", name, NAMES[k]);
    }
    return KELP_OK;
}

/* Rules 9-12 for one entry. */
static kelp_status parse_tensor(const cJSON *entry, kelp_st_info *info)
{
    const char *name = entry->string;
    if (!cJSON_IsObject(entry))
        return format_error("tensor '%s': entry is not an object", name);
    const cJSON *fields[3] = {NULL, NULL, NULL};
    KELP_TRY(find_fields(name, entry, fields));
    uint64_t begin = 0, end = 0;
    info->name = name;
    KELP_TRY(parse_dtype(name, fields[0], &info->dtype));
    KELP_TRY(parse_shape(name, fields[1], &info->shape));
    KELP_TRY(parse_offsets(name, fields[2], &begin, &end));
    char shape_str[128];
    kelp_shape_str(&info->shape, shape_str, sizeof shape_str);
    uint64_t bytes;
    if (!byte_size(info->dtype, &info->shape, &bytes))
        return format_error("tensor '%s': byte size of %s %s overflows uint64 (overflow)", name,
                            DTYPES[info->dtype].name, shape_str);
    if (end - begin != bytes)
        return format_error("tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64 "] span %" PRIu64 " bytes but %s "
                            "%s needs %" PRIu64 " (size mismatch)", name, begin, end, end - begin,
                            DTYPES[info->dtype].name, shape_str, bytes);
    info->offset = begin;
    info->nbytes = bytes;
    return KELP_OK;
}

static int compare_extents(const void *a, const void *b)
{
    const kelp_st_info *x = *(const kelp_st_info *const *)a, *y = *(const kelp_st_info *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

/* Rules 13 and 14. */
static kelp_status check_tiling(const kelp_st_file *f, uint64_t file_size)
{
    const kelp_st_info **order = malloc((f->count ? f->count : 1) * sizeof *order);
    if (!order)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory sorting %zu tensors", f->count);
    for (size_t i = 0; i < f->count; i++)
        order[i] = &f->tensors[i];
    qsort(order, f->count, sizeof *order, compare_extents);
    uint64_t end = 0;
    kelp_status s = KELP_OK;
    for (size_t i = 0; i < f->count && s == KELP_OK; i++) {
        const kelp_st_info *t = order[i];
        if (t->offset != end)
            s = format_error("tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64 "] %s (the tensors must tile the "
                             "data section from 0: expected begin %" PRIu64 ")", t->name, t->offset,
                             t->offset + t->nbytes, t->offset > end ? "leave a gap" : "overlap", end);
        end = t->offset + t->nbytes;
    }
    free(order);
    if (s == KELP_OK && f->data_start + end != file_size)
        s = format_error("file size mismatch: the data section ends at byte %" PRIu64 " but the file has %" PRIu64
                         " bytes", f->data_start + end, file_size);
    return s;
}

static const char *copy_into(char **arena, const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = memcpy(*arena, s, n);
    *arena += n;
    return copy;
}

/* Copies every string out of the JSON tree into one block owned by the file. */
static kelp_status copy_strings(kelp_st_file *f)
{
    size_t total = 1;
    for (size_t i = 0; i < f->count; i++)
        total += strlen(f->tensors[i].name) + 1;
    for (size_t i = 0; i < f->meta_count; i++)
        total += strlen(f->meta[i].key) + strlen(f->meta[i].value) + 2;
    f->strings = malloc(total);
    if (!f->strings)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory for %zu bytes of names", total);
    char *arena = f->strings;
    for (size_t i = 0; i < f->count; i++)
        f->tensors[i].name = copy_into(&arena, f->tensors[i].name);
    for (size_t i = 0; i < f->meta_count; i++) {
        f->meta[i].key = copy_into(&arena, f->meta[i].key);
        f->meta[i].value = copy_into(&arena, f->meta[i].value);
    }
    return KELP_OK;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp((*(const kelp_st_info *const *)a)->name, (*(const kelp_st_info *const *)b)->name);
}

static kelp_status index_names(kelp_st_file *f)
{
    f->by_name = malloc((f->count ? f->count : 1) * sizeof *f->by_name);
    if (!f->by_name)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory indexing %zu tensors", f->count);
    for (size_t i = 0; i < f->count; i++)
        f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, f->count, sizeof *f->by_name, compare_names);
    return KELP_OK;
}

/* Rules 7-12 over the parsed header, filling the file's tables. */
static kelp_status load_entries(kelp_st_file *f, const cJSON *root)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, METADATA_KEY);
    size_t n = member_count(root);
    if (n - (meta != NULL) > KELP_ST_MAX_TENSORS)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "header lists %zu tensors; kelp reads at most %d",
                              n - (meta != NULL), KELP_ST_MAX_TENSORS);
    KELP_TRY(check_unique_keys(root, n, "the header"));
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory for %zu tensors", n);
    for (const cJSON *item = root->child; item; item = item->next) {
        if (item != meta)
            KELP_TRY(parse_tensor(item, &f->tensors[f->count++]));
    }
    if (meta)
        KELP_TRY(parse_metadata(f, meta));
    return KELP_OK;
}

/* Rules 4-14 on the header text. */
static kelp_status parse_header(kelp_st_file *f, const char *text, size_t len, uint64_t file_size)
{
    size_t valid = kelp_utf8_valid_prefix((const unsigned char *)text, len);
    if (valid < len)
        return format_error("header is not valid UTF-8 (byte %zu)", valid);
    if (len == 0 || text[0] != '{')
        return format_error("header does not start with '{'");
    KELP_TRY(check_lexemes(text, len));
    cJSON *root = NULL;
    KELP_TRY(parse_json(text, len, &root));
    kelp_status s = load_entries(f, root);
    if (s == KELP_OK)
        s = copy_strings(f);
    cJSON_Delete(root);
    if (s == KELP_OK)
        s = check_tiling(f, file_size);
    if (s == KELP_OK)
        s = index_names(f);
    return s;
}

static kelp_status open_and_validate(kelp_st_file *f)
{
    uint64_t file_size = 0;
    KELP_TRY(open_regular(f, &file_size));
    char *text = NULL;
    size_t len = 0;
    KELP_TRY(read_header(f, file_size, &text, &len));
    f->data_start = HEADER_LEN_BYTES + (uint64_t)len;
    kelp_status s = parse_header(f, text, len, file_size);
    free(text);
    return s;
}

kelp_status kelp_st_open(const char *path, kelp_st_file **out)
{
    if (!out || !path)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_st_open: NULL %s", out ? "path" : "out");
    *out = NULL;
    kelp_st_file *f = calloc(1, sizeof *f);
    size_t n = strlen(path) + 1;
    if (!f || !(f->path = malloc(n))) {
        free(f);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory opening", path);
    }
    memcpy(f->path, path, n);
    f->fd = -1;
    kelp_status s = open_and_validate(f);
    if (s != KELP_OK) {
        kelp_st_close(f);
        return kelp_wrap_error(s, "%s: ", path);
    }
    *out = f;
    return KELP_OK;
}

void kelp_st_close(kelp_st_file *file)
{
    if (!file)
        return;
    if (file->fd >= 0)
        close(file->fd);
    free(file->by_name);
    free(file->tensors);
    free(file->meta);
    free(file->strings);
    free(file->path);
    free(file);
}

size_t kelp_st_count(const kelp_st_file *file)
{
    return file->count;
}

const kelp_st_info *kelp_st_info_at(const kelp_st_file *file, size_t index)
{
    return index < file->count ? &file->tensors[index] : NULL;
}

static int compare_name_key(const void *key, const void *elem)
{
    return strcmp(key, (*(const kelp_st_info *const *)elem)->name);
}

kelp_status kelp_st_find(const kelp_st_file *file, const char *name, const kelp_st_info **out)
{
    const kelp_st_info *const *hit =
        name ? bsearch(name, file->by_name, file->count, sizeof *file->by_name, compare_name_key) : NULL;
    if (!hit)
        return kelp_set_error(KELP_ERR_NOT_FOUND, "%s: no tensor named '%s'", file->path, name ? name : "(null)");
    *out = *hit;
    return KELP_OK;
}

kelp_status kelp_st_read(const kelp_st_file *file, const kelp_st_info *info, void *dst, size_t dst_bytes)
{
    if (!info || (!dst && dst_bytes > 0))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: kelp_st_read: NULL %s", file->path, info ? "dst" : "info");
    if (dst_bytes != info->nbytes)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: tensor '%s' holds %" PRIu64 " bytes, not %zu", file->path,
                              info->name, info->nbytes, dst_bytes);
    char what[64];
    snprintf(what, sizeof what, "%" PRIu64 " bytes of tensor data", info->nbytes);
    kelp_status s = read_at(file->fd, dst, dst_bytes, file->data_start + info->offset, what);
    if (s != KELP_OK)
        return kelp_wrap_error(s, "%s: tensor '%s': ", file->path, info->name);
    return KELP_OK;
}

const kelp_st_meta *kelp_st_metadata(const kelp_st_file *file, size_t *count)
{
    *count = file->meta_count;
    return file->meta;
}

const char *kelp_st_metadata_get(const kelp_st_file *file, const char *key)
{
    for (size_t i = 0; i < file->meta_count && key; i++) {
        if (strcmp(file->meta[i].key, key) == 0)
            return file->meta[i].value;
    }
    return NULL;
}

/* ================================================================ writing */

typedef struct text_buf {
    char *data;
    size_t len, cap;
    int failed; /* an allocation failed: later appends are dropped */
} text_buf;

static void buf_append(text_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (n > SIZE_MAX / 2 - b->len) {
        b->failed = 1;
        return;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static void buf_puts(text_buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

static void buf_u64(text_buf *b, uint64_t v)
{
    char digits[24];
    buf_append(b, digits, (size_t)snprintf(digits, sizeof digits, "%" PRIu64, v));
}

/* A JSON string escaped the way serde_json (the reference writer) does it: quote, backslash and control
 * characters only, with lowercase hex. */
static void buf_json_string(text_buf *b, const char *s)
{
    static const char HEX[] = "0123456789abcdef";
    buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *esc = *p == '"' ? "\\\"" : *p == '\\' ? "\\\\" : *p == '\b' ? "\\b" : *p == '\f' ? "\\f"
                        : *p == '\n' ? "\\n" : *p == '\r' ? "\\r" : *p == '\t' ? "\\t" : NULL;
        if (esc) {
            buf_puts(b, esc);
        } else if (*p < 0x20) {
            char u[6] = {'\\', 'u', '0', '0', HEX[*p >> 4], HEX[*p & 15]};
            buf_append(b, u, sizeof u);
        } else {
            buf_append(b, (const char *)p, 1);
        }
    }
    buf_append(b, "\"", 1);
}

/* Checks one record and returns its byte size. */
static kelp_status check_record(const kelp_st_record *r, size_t index, uint64_t *bytes)
{
    if (!r->name || !*r->name)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "record %zu: empty tensor name", index);
    if (strcmp(r->name, METADATA_KEY) == 0 || !utf8_valid(r->name))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "record %zu: tensor name '%s' is reserved or not UTF-8", index,
                              r->name);
    if (!dtype_valid(r->dtype))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "tensor '%s': dtype %d is not a safetensors dtype", r->name,
                              (int)r->dtype);
    if (r->shape.ndim < 0 || r->shape.ndim > KELP_MAX_DIMS)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "tensor '%s': %d dims", r->name, r->shape.ndim);
    for (int d = 0; d < r->shape.ndim; d++) {
        if (r->shape.dims[d] < 0 || (uint64_t)r->shape.dims[d] >= EXACT_INT_LIMIT)
            return kelp_set_error(KELP_ERR_INVALID_ARG, "tensor '%s': dim %d is %" PRId64 ", outside [0, 2^53)",
                                  r->name, d, r->shape.dims[d]);
    }
    if (!byte_size(r->dtype, &r->shape, bytes) || *bytes >= EXACT_INT_LIMIT)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "tensor '%s': byte size overflows 2^53", r->name);
    if (*bytes > 0 && !r->data)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "tensor '%s': data is NULL", r->name);
    return KELP_OK;
}

/* Sorts the n names in place and fails on a repeat. */
static kelp_status check_no_repeats(const char **names, size_t n, const char *what)
{
    qsort(names, n, sizeof *names, compare_strings);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(names[i - 1], names[i]) == 0)
            return kelp_set_error(KELP_ERR_INVALID_ARG, "duplicate %s '%s'", what, names[i]);
    }
    return KELP_OK;
}

/* Every check that needs no disk, so that an invalid call leaves the target untouched. Fills sizes[i]. */
static kelp_status check_write_args(const kelp_st_record *records, size_t count, const kelp_st_meta *meta,
                                    size_t meta_count, uint64_t *sizes)
{
    if (count > KELP_ST_MAX_TENSORS || meta_count > KELP_ST_MAX_METADATA)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%zu tensors and %zu metadata entries exceed the reader's caps",
                              count, meta_count);
    uint64_t total = 0;
    for (size_t i = 0; i < count; i++) {
        KELP_TRY(check_record(&records[i], i, &sizes[i]));
        total += sizes[i];
        if (total >= EXACT_INT_LIMIT)
            return kelp_set_error(KELP_ERR_INVALID_ARG, "tensor '%s': the data section reaches 2^53 bytes",
                                  records[i].name);
    }
    for (size_t i = 0; i < meta_count; i++) {
        if (!meta[i].key || !meta[i].value || !utf8_valid(meta[i].key) || !utf8_valid(meta[i].value))
            return kelp_set_error(KELP_ERR_INVALID_ARG, "metadata entry %zu: key or value NULL or not UTF-8", i);
    }
    size_t n = count > meta_count ? count : meta_count;
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory checking %zu names", n);
    for (size_t i = 0; i < count; i++)
        names[i] = records[i].name;
    kelp_status s = check_no_repeats(names, count, "tensor name");
    for (size_t i = 0; i < meta_count; i++)
        names[i] = meta[i].key;
    if (s == KELP_OK)
        s = check_no_repeats(names, meta_count, "metadata key");
    free(names);
    return s;
}

static kelp_status build_header(text_buf *b, const kelp_st_record *records, size_t count, const uint64_t *sizes,
                         const kelp_st_meta *meta, size_t meta_count)
{
    buf_puts(b, "{");
    if (meta_count > 0) {
        buf_puts(b, "\"" METADATA_KEY "\":{");
        for (size_t i = 0; i < meta_count; i++) {
            buf_puts(b, i ? "," : "");
            buf_json_string(b, meta[i].key);
            buf_puts(b, ":");
            buf_json_string(b, meta[i].value);
        }
        buf_puts(b, count ? "}," : "}");
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < count; i++) {
        const kelp_st_record *r = &records[i];
        buf_puts(b, i ? "," : "");
        buf_json_string(b, r->name);
        buf_puts(b, ":{\"dtype\":\"");
        buf_puts(b, DTYPES[r->dtype].name);
        buf_puts(b, "\",\"shape\":[");
        for (int d = 0; d < r->shape.ndim; d++) {
            buf_puts(b, d ? "," : "");
            buf_u64(b, (uint64_t)r->shape.dims[d]);
        }
        buf_puts(b, "],\"data_offsets\":[");
        buf_u64(b, offset);
        buf_puts(b, ",");
        buf_u64(b, offset + sizes[i]);
        buf_puts(b, "]}");
        offset += sizes[i];
    }
    buf_puts(b, "}");
    /* The reference pads with spaces so that the data section starts 8-byte aligned. */
    while (b->len % 8 != 0)
        buf_puts(b, " ");
    if (b->failed)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory building the header");
    if (b->len > KELP_ST_MAX_HEADER_BYTES)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "header of %zu bytes exceeds the format's %u-byte cap", b->len,
                              KELP_ST_MAX_HEADER_BYTES);
    return KELP_OK;
}

static kelp_status write_body(FILE *out, const text_buf *header, const kelp_st_record *records, size_t count,
                              const uint64_t *sizes)
{
    unsigned char len_le[HEADER_LEN_BYTES];
    for (int i = 0; i < HEADER_LEN_BYTES; i++)
        len_le[i] = (unsigned char)((uint64_t)header->len >> (8 * i));
    errno = 0;
    int ok = fwrite(len_le, 1, sizeof len_le, out) == sizeof len_le &&
             fwrite(header->data, 1, header->len, out) == header->len;
    for (size_t i = 0; i < count && ok; i++)
        ok = sizes[i] == 0 || fwrite(records[i].data, 1, (size_t)sizes[i], out) == sizes[i];
    if (!ok)
        return kelp_set_error(KELP_ERR_IO, "cannot write: %s", strerror(errno ? errno : EIO));
    return KELP_OK;
}

static kelp_status write_atomically(const char *path, const text_buf *header, const kelp_st_record *records,
                                   size_t count, const uint64_t *sizes)
{
    kelp_atomic_file *file;
    KELP_TRY(kelp_atomic_open(path, &file));
    kelp_status s = write_body(kelp_atomic_stream(file), header, records, count, sizes);
    if (s != KELP_OK) {
        kelp_atomic_abort(file);
        return kelp_wrap_error(s, "%s: ", path);
    }
    return kelp_atomic_commit(file);
}

kelp_status kelp_st_write(const char *path, const kelp_st_record *records, size_t count,
                          const kelp_st_meta *metadata, size_t metadata_count)
{
    if (!path || (count > 0 && !records) || (metadata_count > 0 && !metadata))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_st_write: NULL path, records or metadata");
    uint64_t *sizes = malloc((count ? count : 1) * sizeof *sizes);
    if (!sizes)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory for %zu records", path, count);
    text_buf header = {0};
    kelp_status s = check_write_args(records, count, metadata, metadata_count, sizes);
    if (s == KELP_OK)
        s = build_header(&header, records, count, sizes, metadata, metadata_count);
    /* io/atomic_file's messages already start with the path. */
    if (s == KELP_OK)
        s = write_atomically(path, &header, records, count, sizes);
    else
        s = kelp_wrap_error(s, "%s: ", path);
    free(header.data);
    free(sizes);
    return s;
}
