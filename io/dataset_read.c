/* The hardened reader of dataset layout v1 (docs/dataset-format.md, "What the reader checks").
 *
 * HDF5 trusts its input; this file does not. Before HDF5 reads a byte of data, every object kelp touches has been
 * reached through a hard link (an external link would make HDF5 open another file), its storage is neither
 * virtual nor external (both pull in other files), its filters are deflate and shuffle only (plugins are off as
 * well), its dtype is the exact standard type, its rank and every dim are within the caps of io/dataset.h, and a
 * chunk cannot be larger than one record or 64 MiB. Only then are the small per-image arrays (shapes, offsets,
 * labels, box offsets, ids) read whole and cross-checked; images, masks and boxes are read one record at a time. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/dataset_internal.h"
#include "io/utf8.h"

typedef enum ds_dtype { DT_U8, DT_U32, DT_U64, DT_I32, DT_I64, DT_F32 } ds_dtype;

static const struct {
    const char *name;
    H5T_class_t cls;
    size_t size;
    bool is_signed;
} DTYPES[] = {
    [DT_U8] = {"uint8", H5T_INTEGER, 1, false},  [DT_U32] = {"uint32", H5T_INTEGER, 4, false},
    [DT_U64] = {"uint64", H5T_INTEGER, 8, false}, [DT_I32] = {"int32", H5T_INTEGER, 4, true},
    [DT_I64] = {"int64", H5T_INTEGER, 8, true},  [DT_F32] = {"float32", H5T_FLOAT, 4, true},
};

/* HDF5's predefined type ids are library globals set at run time, so they cannot sit in the table above. */
static hid_t std_type(ds_dtype d, bool big_endian)
{
    switch (d) {
    case DT_U8: return big_endian ? H5T_STD_U8BE : H5T_STD_U8LE;
    case DT_U32: return big_endian ? H5T_STD_U32BE : H5T_STD_U32LE;
    case DT_U64: return big_endian ? H5T_STD_U64BE : H5T_STD_U64LE;
    case DT_I32: return big_endian ? H5T_STD_I32BE : H5T_STD_I32LE;
    case DT_I64: return big_endian ? H5T_STD_I64BE : H5T_STD_I64LE;
    case DT_F32: return big_endian ? H5T_IEEE_F32BE : H5T_IEEE_F32LE;
    }
    return H5I_INVALID_HID;
}

static hid_t native_type(ds_dtype d)
{
    switch (d) {
    case DT_U8: return H5T_NATIVE_UINT8;
    case DT_U32: return H5T_NATIVE_UINT32;
    case DT_U64: return H5T_NATIVE_UINT64;
    case DT_I32: return H5T_NATIVE_INT32;
    case DT_I64: return H5T_NATIVE_INT64;
    case DT_F32: return H5T_NATIVE_FLOAT;
    }
    return H5I_INVALID_HID;
}

typedef struct ds_split {
    bool present;
    bool fixed;             /* the `images` layout */
    int64_t count;
    kelp_image_shape shape; /* fixed: every image's; variable: only c, shared by the split */
    hid_t images;           /* `images` or `images_flat` */
    hid_t masks;            /* `masks` or `masks_flat` */
    hid_t boxes, box_labels;
    kelp_ds_chunking image_chunks, mask_chunks;
    uint64_t *image_offsets; /* variable: count + 1 */
    uint32_t *image_shapes;  /* variable: count * 3 (h, w, c) */
    int32_t *labels;
    uint64_t *box_offsets; /* count + 1 */
    int64_t *image_ids;    /* NULL: the index */
} ds_split;

struct kelp_dataset {
    char *path;
    hid_t file;
    kelp_task task;
    char **class_names;
    int class_count;
    char *source, *license;
    ds_split splits[KELP_SPLIT_COUNT];
    pthread_mutex_t lock; /* serializes the HDF5 calls of the record reads */
};

/* ================================================================ messages */

/* A format error "<file>: <object>: <what>"; obj NULL leaves the object out. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static kelp_status
bad(const kelp_dataset *ds, const char *obj, const char *fmt, ...)
{
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (obj)
        return kelp_set_error(KELP_ERR_FORMAT, "%s: %s: %s", ds->path, obj, what);
    return kelp_set_error(KELP_ERR_FORMAT, "%s: %s", ds->path, what);
}

/* A failed HDF5 call, with HDF5's own reason. */
static kelp_status bad_h5(const kelp_dataset *ds, const char *obj, const char *what)
{
    char detail[256];
    kelp_ds_h5_detail(detail, sizeof detail);
    return bad(ds, obj, "%s (HDF5: %s)", what, detail);
}

static kelp_status no_memory(const kelp_dataset *ds, const char *obj, uint64_t count)
{
    return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: %s: out of memory for %" PRIu64 " entries", ds->path, obj,
                          count);
}

static void member_name(char *out, size_t size, kelp_split split, const char *name)
{
    snprintf(out, size, "/%s/%s", kelp_split_name(split), name);
}

/* ================================================================ links, storage, types, dims */

static const char *link_kind(H5L_type_t type)
{
    switch (type) {
    case H5L_TYPE_SOFT: return "a soft link";
    case H5L_TYPE_EXTERNAL: return "an external link";
    default: return "a user-defined link";
    }
}

/* Only hard links are followed: an external link makes HDF5 open another file, and soft and user-defined links
 * may lead anywhere. */
static kelp_status check_link(const kelp_dataset *ds, hid_t loc, const char *name, const char *obj, bool *exists)
{
    *exists = false;
    htri_t found = H5Lexists(loc, name, H5P_DEFAULT);
    if (found < 0)
        return bad_h5(ds, obj, "cannot look up the link");
    if (!found)
        return KELP_OK;
    H5L_info_t info;
    if (H5Lget_info(loc, name, &info, H5P_DEFAULT) < 0)
        return bad_h5(ds, obj, "cannot read the link");
    if (info.type != H5L_TYPE_HARD)
        return bad(ds, obj, "is %s; only objects stored in this file are read", link_kind(info.type));
    *exists = true;
    return KELP_OK;
}

/* Virtual and external storage read other files; unknown filters would need plugins (which are off) or, worse,
 * a decoder kelp does not know. */
static kelp_status check_storage_rules(const kelp_dataset *ds, hid_t dcpl, const char *obj)
{
    H5D_layout_t layout = H5Pget_layout(dcpl);
    if (layout < 0)
        return bad_h5(ds, obj, "cannot read the storage layout");
    if (layout == H5D_VIRTUAL)
        return bad(ds, obj, "is a virtual dataset (its data would come from other files)");
    int external = H5Pget_external_count(dcpl);
    if (external < 0)
        return bad_h5(ds, obj, "cannot read the external storage list");
    if (external > 0)
        return bad(ds, obj, "uses external storage (%d raw files outside this file)", external);
    int nfilters = H5Pget_nfilters(dcpl);
    if (nfilters < 0)
        return bad_h5(ds, obj, "cannot read the filter pipeline");
    for (int i = 0; i < nfilters; i++) {
        unsigned flags, config;
        size_t nvalues = 0;
        char name[64] = "";
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &nvalues, NULL, sizeof name, name, &config);
        if (id < 0)
            return bad_h5(ds, obj, "cannot read the filter pipeline");
        if (id != H5Z_FILTER_DEFLATE && id != H5Z_FILTER_SHUFFLE)
            return bad(ds, obj, "uses filter %d ('%s'); only deflate (1) and shuffle (2) are read", (int)id,
                       name);
    }
    return KELP_OK;
}

static uint64_t saturating_mul(uint64_t a, uint64_t b)
{
    return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

static kelp_status check_chunk_size(const kelp_dataset *ds, hid_t dcpl, int rank, const hsize_t *dims,
                                    size_t elem_size, const char *obj)
{
    if (H5Pget_layout(dcpl) != H5D_CHUNKED)
        return KELP_OK;
    hsize_t chunk[4];
    if (H5Pget_chunk(dcpl, rank, chunk) != rank)
        return bad_h5(ds, obj, "cannot read the chunk shape");
    uint64_t chunk_bytes = elem_size, record_bytes = elem_size;
    for (int d = 0; d < rank; d++) {
        chunk_bytes = saturating_mul(chunk_bytes, chunk[d]);
        if (d > 0)
            record_bytes = saturating_mul(record_bytes, dims[d]);
    }
    uint64_t cap = record_bytes > KELP_DS_MAX_CHUNK_BYTES ? record_bytes : KELP_DS_MAX_CHUNK_BYTES;
    if (chunk_bytes > cap)
        return bad(ds, obj, "chunks of %" PRIu64 " bytes are over the cap of %" PRIu64 " (one record or 64 MiB)",
                   chunk_bytes, cap);
    return KELP_OK;
}

static kelp_status check_storage(const kelp_dataset *ds, hid_t dset, int rank, const hsize_t *dims,
                                 size_t elem_size, const char *obj)
{
    hid_t dcpl = H5Dget_create_plist(dset);
    if (dcpl < 0)
        return bad_h5(ds, obj, "cannot read the creation properties");
    kelp_status s = check_storage_rules(ds, dcpl, obj);
    if (s == KELP_OK)
        s = check_chunk_size(ds, dcpl, rank, dims, elem_size, obj);
    kelp_ds_h5_close(dcpl);
    return s;
}

static void describe_type(hid_t type, char *out, size_t size)
{
    H5T_class_t cls = H5Tget_class(type);
    size_t bits = H5Tget_size(type) * 8;
    if (cls == H5T_INTEGER)
        snprintf(out, size, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", bits);
    else if (cls == H5T_FLOAT)
        snprintf(out, size, "float%zu", bits);
    else if (cls == H5T_STRING)
        snprintf(out, size, "a string");
    else if (cls == H5T_COMPOUND)
        snprintf(out, size, "a compound type");
    else
        snprintf(out, size, "HDF5 type class %d", (int)cls);
}

static bool is_dtype(hid_t type, ds_dtype d)
{
    if (H5Tget_class(type) != DTYPES[d].cls || H5Tget_size(type) != DTYPES[d].size)
        return false;
    return DTYPES[d].cls == H5T_FLOAT || (H5Tget_sign(type) != H5T_SGN_NONE) == DTYPES[d].is_signed;
}

/* Exactly the standard little- or big-endian type: HDF5 also allows odd precisions, offsets and padding, whose
 * conversion code kelp has no reason to exercise. */
static kelp_status check_dtype(const kelp_dataset *ds, hid_t dset, ds_dtype d, const char *obj)
{
    hid_t type = H5Dget_type(dset);
    if (type < 0)
        return bad_h5(ds, obj, "cannot read the dtype");
    char found[48];
    describe_type(type, found, sizeof found);
    bool same_kind = is_dtype(type, d);
    bool standard = same_kind && (H5Tequal(type, std_type(d, false)) > 0 || H5Tequal(type, std_type(d, true)) > 0);
    kelp_ds_h5_close(type);
    if (!same_kind)
        return bad(ds, obj, "dtype is %s, expected %s", found, DTYPES[d].name);
    if (!standard)
        return bad(ds, obj, "dtype is a non-standard %s (precision, offset or byte order), expected %s", found,
                   DTYPES[d].name);
    return KELP_OK;
}

/* What one dim must be: lo == hi for an exact count. */
typedef struct dim_rule {
    const char *what;
    uint64_t lo, hi;
} dim_rule;

static kelp_status check_dims(const kelp_dataset *ds, hid_t dset, int rank, const dim_rule *rules, hsize_t *dims,
                              const char *obj)
{
    hid_t space = H5Dget_space(dset);
    if (space < 0)
        return bad_h5(ds, obj, "cannot read the dataspace");
    H5S_class_t cls = H5Sget_simple_extent_type(space);
    int got = cls == H5S_SIMPLE ? H5Sget_simple_extent_ndims(space) : 0;
    bool rank_ok = got == rank && H5Sget_simple_extent_dims(space, dims, NULL) == rank;
    kelp_ds_h5_close(space);
    if (!rank_ok)
        return bad(ds, obj, "has rank %d, expected %d", got, rank);
    for (int d = 0; d < rank; d++) {
        const dim_rule *r = &rules[d];
        if (r->lo == r->hi && dims[d] != r->lo)
            return bad(ds, obj, "%s is %" PRIu64 ", expected %" PRIu64, r->what, (uint64_t)dims[d], r->lo);
        if (dims[d] < r->lo || dims[d] > r->hi)
            return bad(ds, obj, "%s %" PRIu64 " is outside [%" PRIu64 ", %" PRIu64 "]", r->what, (uint64_t)dims[d],
                       r->lo, r->hi);
    }
    return KELP_OK;
}

/* ================================================================ members */

/* One dataset of a split, opened and checked; dims holds its extent. */
typedef struct ds_member {
    char obj[48];
    hid_t id;
    hsize_t dims[4];
} ds_member;

static kelp_status member_exists(const kelp_dataset *ds, hid_t group, kelp_split split, const char *name,
                                 bool *exists)
{
    char obj[48];
    member_name(obj, sizeof obj, split, name);
    return check_link(ds, group, name, obj, exists);
}

/* Opens group/name and checks link, dtype, rank, dims (against rules) and storage, in an order where nothing is
 * read from the dataset before its shape is known to be within the caps. On failure m->id is closed. */
static kelp_status open_member(const kelp_dataset *ds, hid_t group, kelp_split split, const char *name,
                               ds_dtype dtype, int rank, const dim_rule *rules, ds_member *m)
{
    member_name(m->obj, sizeof m->obj, split, name);
    m->id = H5I_INVALID_HID;
    bool exists;
    KELP_TRY(check_link(ds, group, name, m->obj, &exists));
    if (!exists)
        return bad(ds, m->obj, "is missing");
    m->id = H5Dopen2(group, name, H5P_DEFAULT);
    if (m->id < 0)
        return bad_h5(ds, m->obj, "is not a readable dataset");
    kelp_status s = check_dtype(ds, m->id, dtype, m->obj);
    if (s == KELP_OK)
        s = check_dims(ds, m->id, rank, rules, m->dims, m->obj);
    if (s == KELP_OK)
        s = check_storage(ds, m->id, rank, m->dims, DTYPES[dtype].size, m->obj);
    if (s != KELP_OK) {
        kelp_ds_h5_close(m->id);
        m->id = H5I_INVALID_HID;
    }
    return s;
}

/* Reads a whole (small) member into a new array and closes it. */
static kelp_status read_member(const kelp_dataset *ds, ds_member *m, int rank, ds_dtype dtype, void **out)
{
    uint64_t count = 1;
    for (int d = 0; d < rank; d++)
        count = saturating_mul(count, m->dims[d]);
    void *data = NULL;
    kelp_status s = KELP_OK;
    if (count > SIZE_MAX / DTYPES[dtype].size || !(data = malloc(count ? count * DTYPES[dtype].size : 1)))
        s = no_memory(ds, m->obj, count);
    else if (count > 0 && H5Dread(m->id, native_type(dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        s = bad_h5(ds, m->obj, "cannot be read");
    kelp_ds_h5_close(m->id);
    m->id = H5I_INVALID_HID;
    if (s != KELP_OK) {
        free(data);
        return s;
    }
    *out = data;
    return KELP_OK;
}

/* ================================================================ attributes */

static kelp_status attribute_open(const kelp_dataset *ds, hid_t loc, const char *obj, const char *name, hid_t *out)
{
    *out = H5I_INVALID_HID;
    htri_t found = H5Aexists(loc, name);
    if (found < 0)
        return bad_h5(ds, obj, "cannot look up an attribute");
    if (found && (*out = H5Aopen(loc, name, H5P_DEFAULT)) < 0)
        return bad_h5(ds, obj, "cannot open an attribute");
    return KELP_OK;
}

/* Number of elements of a scalar or 1-D attribute; anything else is an error. */
static kelp_status attribute_count(const kelp_dataset *ds, hid_t attr, const char *what, uint64_t *count)
{
    hid_t space = H5Aget_space(attr);
    H5S_class_t cls = space < 0 ? H5S_NO_CLASS : H5Sget_simple_extent_type(space);
    hsize_t dim = 0;
    bool ok = cls == H5S_SCALAR || (cls == H5S_SIMPLE && H5Sget_simple_extent_ndims(space) == 1 &&
                                    H5Sget_simple_extent_dims(space, &dim, NULL) == 1);
    kelp_ds_h5_close(space);
    if (!ok)
        return bad(ds, NULL, "attribute '%s' is neither a scalar nor a 1-D list", what);
    *count = cls == H5S_SCALAR ? 1 : dim;
    return KELP_OK;
}

static void free_strings(char **strings, size_t count)
{
    if (!strings)
        return;
    for (size_t i = 0; i < count; i++)
        free(strings[i]);
    free(strings);
}

static kelp_status keep_string(const kelp_dataset *ds, const char *what, size_t index, const char *text,
                               size_t len, size_t max_len, char **out)
{
    if (len > max_len)
        return bad(ds, NULL, "attribute '%s' entry %zu is %zu bytes long, over the cap of %zu", what, index, len,
                   max_len);
    if (!kelp_utf8_valid(text, len))
        return bad(ds, NULL, "attribute '%s' entry %zu is not valid UTF-8", what, index);
    if (!(*out = malloc(len + 1)))
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory reading attribute '%s'", ds->path, what);
    memcpy(*out, text, len);
    (*out)[len] = '\0';
    return KELP_OK;
}

/* Variable-length strings: HDF5 allocates each one; H5Dvlen_reclaim frees them. */
static kelp_status read_vlen_strings(const kelp_dataset *ds, hid_t attr, hid_t type, const char *what,
                                     size_t count, size_t max_len, char **out)
{
    char **raw = calloc(count, sizeof *raw);
    hid_t mem = H5Tcopy(H5T_C_S1);
    hid_t space = H5Aget_space(attr);
    kelp_status s = KELP_OK;
    if (!raw)
        s = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory reading attribute '%s'", ds->path, what);
    else if (mem < 0 || space < 0 || H5Tset_size(mem, H5T_VARIABLE) < 0 ||
             H5Tset_cset(mem, H5Tget_cset(type)) < 0 || H5Aread(attr, mem, raw) < 0)
        s = bad_h5(ds, NULL, "cannot read a string attribute");
    for (size_t i = 0; s == KELP_OK && i < count; i++) {
        const char *text = raw[i] ? raw[i] : "";
        s = keep_string(ds, what, i, text, strnlen(text, max_len + 1), max_len, &out[i]);
    }
    if (raw && mem >= 0 && space >= 0)
        H5Dvlen_reclaim(mem, space, H5P_DEFAULT, raw);
    free(raw);
    kelp_ds_h5_close(space);
    kelp_ds_h5_close(mem);
    return s;
}

/* Fixed-length strings (numpy's bytes_): padded with NULs or spaces to the type's size. */
static kelp_status read_fixed_strings(const kelp_dataset *ds, hid_t attr, hid_t type, const char *what,
                                      size_t count, size_t max_len, char **out)
{
    size_t size = H5Tget_size(type);
    if (size == 0 || size > max_len + 1)
        return bad(ds, NULL, "attribute '%s' holds strings of %zu bytes, over the cap of %zu", what, size, max_len);
    char *raw = malloc(count * size);
    if (!raw)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory reading attribute '%s'", ds->path, what);
    kelp_status s = KELP_OK;
    if (H5Aread(attr, type, raw) < 0)
        s = bad_h5(ds, NULL, "cannot read a string attribute");
    bool space_padded = H5Tget_strpad(type) == H5T_STR_SPACEPAD;
    for (size_t i = 0; s == KELP_OK && i < count; i++) {
        const char *text = raw + i * size;
        size_t len = strnlen(text, size);
        while (space_padded && len > 0 && text[len - 1] == ' ')
            len--;
        s = keep_string(ds, what, i, text, len, max_len, &out[i]);
    }
    free(raw);
    return s;
}

/* A string attribute (scalar or 1-D, variable- or fixed-length, ASCII or UTF-8) as count new strings; *out is NULL
 * when the attribute is absent. */
static kelp_status read_strings(const kelp_dataset *ds, hid_t loc, const char *name, size_t max_count,
                                size_t max_len, char ***out, size_t *count)
{
    *out = NULL;
    *count = 0;
    hid_t attr, type = H5I_INVALID_HID;
    KELP_TRY(attribute_open(ds, loc, NULL, name, &attr));
    if (attr < 0)
        return KELP_OK;
    uint64_t n = 0;
    char **strings = NULL;
    kelp_status s = attribute_count(ds, attr, name, &n);
    if (s == KELP_OK && (type = H5Aget_type(attr)) < 0)
        s = bad_h5(ds, NULL, "cannot read an attribute's type");
    if (s == KELP_OK && H5Tget_class(type) != H5T_STRING)
        s = bad(ds, NULL, "attribute '%s' is not a string", name);
    if (s == KELP_OK && n > max_count)
        s = bad(ds, NULL, "attribute '%s' has %" PRIu64 " entries, over the cap of %zu", name, n, max_count);
    if (s == KELP_OK && !(strings = calloc(n ? n : 1, sizeof *strings)))
        s = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory reading attribute '%s'", ds->path, name);
    if (s == KELP_OK && n > 0 && H5Tis_variable_str(type) > 0)
        s = read_vlen_strings(ds, attr, type, name, n, max_len, strings);
    else if (s == KELP_OK && n > 0)
        s = read_fixed_strings(ds, attr, type, name, n, max_len, strings);
    kelp_ds_h5_close(type);
    kelp_ds_h5_close(attr);
    if (s != KELP_OK) {
        free_strings(strings, n);
        return s;
    }
    *out = strings;
    *count = n;
    return KELP_OK;
}

static kelp_status read_one_string(const kelp_dataset *ds, hid_t loc, const char *name, size_t max_len,
                                   char **out)
{
    char **strings;
    size_t count;
    *out = NULL;
    KELP_TRY(read_strings(ds, loc, name, 1, max_len, &strings, &count));
    if (strings && count == 1) {
        *out = strings[0];
        free(strings);
        return KELP_OK;
    }
    free_strings(strings, count);
    return strings ? bad(ds, NULL, "attribute '%s' is an empty list", name) : KELP_OK;
}

/* An integer attribute holding one value; *exists false when absent. */
static kelp_status read_int(const kelp_dataset *ds, hid_t loc, const char *obj, const char *name, int64_t *out,
                            bool *exists)
{
    hid_t attr, type = H5I_INVALID_HID;
    *exists = false;
    KELP_TRY(attribute_open(ds, loc, obj, name, &attr));
    if (attr < 0)
        return KELP_OK;
    uint64_t n = 0;
    kelp_status s = attribute_count(ds, attr, name, &n);
    if (s == KELP_OK && n != 1)
        s = bad(ds, obj, "attribute '%s' has %" PRIu64 " values, expected one", name, n);
    if (s == KELP_OK && ((type = H5Aget_type(attr)) < 0 || H5Tget_class(type) != H5T_INTEGER))
        s = bad(ds, obj, "attribute '%s' is not an integer", name);
    if (s == KELP_OK && H5Aread(attr, H5T_NATIVE_INT64, out) < 0)
        s = bad_h5(ds, obj, "cannot read an integer attribute");
    kelp_ds_h5_close(type);
    kelp_ds_h5_close(attr);
    *exists = s == KELP_OK;
    return s;
}

/* ================================================================ root */

static kelp_status read_format(kelp_dataset *ds)
{
    char *format = NULL;
    KELP_TRY(read_one_string(ds, ds->file, "format", 64, &format));
    if (!format)
        return bad(ds, NULL, "has no 'format' attribute: not a kelp dataset");
    bool ours = strcmp(format, KELP_DS_FORMAT) == 0;
    kelp_status s = ours ? KELP_OK : bad(ds, NULL, "format is '%s', not '" KELP_DS_FORMAT "'", format);
    free(format);
    KELP_TRY(s);
    int64_t version = 0;
    bool exists;
    KELP_TRY(read_int(ds, ds->file, NULL, "format_version", &version, &exists));
    if (!exists)
        return bad(ds, NULL, "has no 'format_version' attribute");
    if (version != KELP_DS_FORMAT_VERSION)
        return bad(ds, NULL, "format_version %" PRId64 " is not supported (this kelp reads version %d)", version,
                   KELP_DS_FORMAT_VERSION);
    return KELP_OK;
}

static kelp_status read_task(kelp_dataset *ds)
{
    char *task = NULL;
    KELP_TRY(read_one_string(ds, ds->file, "task", 64, &task));
    if (!task)
        return bad(ds, NULL, "has no 'task' attribute");
    for (int t = KELP_TASK_CLASSIFY; t <= KELP_TASK_DETECT; t++) {
        if (strcmp(task, kelp_task_name((kelp_task)t)) == 0) {
            ds->task = (kelp_task)t;
            free(task);
            return KELP_OK;
        }
    }
    kelp_status s = bad(ds, NULL, "unknown task '%s' (expected classify, segment or detect)", task);
    free(task);
    return s;
}

static kelp_status read_class_names(kelp_dataset *ds)
{
    size_t count;
    KELP_TRY(read_strings(ds, ds->file, "class_names", KELP_DATASET_MAX_CLASSES, KELP_DATASET_MAX_NAME,
                          &ds->class_names, &count));
    ds->class_count = (int)count;
    if (!ds->class_names)
        return bad(ds, NULL, "has no 'class_names' attribute");
    if (count == 0)
        return bad(ds, NULL, "attribute 'class_names' is empty");
    if (ds->task == KELP_TASK_SEGMENT && count > KELP_DS_MAX_SEGMENT_CLASSES)
        return bad(ds, NULL, "a segment dataset has at most %d classes (255 marks ignored pixels), not %zu",
                   KELP_DS_MAX_SEGMENT_CLASSES, count);
    return KELP_OK;
}

static kelp_status read_root(kelp_dataset *ds)
{
    KELP_TRY(read_format(ds));
    KELP_TRY(read_task(ds));
    KELP_TRY(read_class_names(ds));
    KELP_TRY(read_one_string(ds, ds->file, "source", KELP_DS_MAX_TEXT, &ds->source));
    return read_one_string(ds, ds->file, "license", KELP_DS_MAX_TEXT, &ds->license);
}

/* ================================================================ splits */

static const dim_rule IMAGE_COUNT = {"the image count", 0, KELP_DATASET_MAX_IMAGES};

static kelp_status load_fixed_images(kelp_dataset *ds, hid_t g, kelp_split split, ds_split *sp)
{
    const dim_rule rules[4] = {IMAGE_COUNT,
                               {"height", 1, KELP_DATASET_MAX_SIDE},
                               {"width", 1, KELP_DATASET_MAX_SIDE},
                               {"the channel count", 1, KELP_DATASET_MAX_CHANNELS}};
    ds_member m;
    KELP_TRY(open_member(ds, g, split, "images", DT_U8, 4, rules, &m));
    sp->images = m.id;
    kelp_ds_chunking_inspect(sp->images, 4, &sp->image_chunks);
    sp->fixed = true;
    sp->count = (int64_t)m.dims[0];
    sp->shape = (kelp_image_shape){(uint32_t)m.dims[1], (uint32_t)m.dims[2], (uint32_t)m.dims[3]};
    return KELP_OK;
}

/* Every image within the caps and with the channel count of image 0. */
static kelp_status check_image_shapes(const kelp_dataset *ds, const ds_split *sp, const char *obj)
{
    for (int64_t i = 0; i < sp->count; i++) {
        const uint32_t *s = &sp->image_shapes[3 * i];
        if (s[0] < 1 || s[0] > KELP_DATASET_MAX_SIDE || s[1] < 1 || s[1] > KELP_DATASET_MAX_SIDE)
            return bad(ds, obj, "image %" PRId64 " is %" PRIu32 " x %" PRIu32 " pixels; each side must be in [1, %d]",
                       i, s[0], s[1], KELP_DATASET_MAX_SIDE);
        if (s[2] < 1 || s[2] > KELP_DATASET_MAX_CHANNELS)
            return bad(ds, obj, "image %" PRId64 " has %" PRIu32 " channels; expected 1 to %d", i, s[2],
                       KELP_DATASET_MAX_CHANNELS);
        if (s[2] != sp->image_shapes[2])
            return bad(ds, obj, "image %" PRId64 " has %" PRIu32 " channels but image 0 has %" PRIu32
                       " (a split's images share their channel count)", i, s[2], sp->image_shapes[2]);
    }
    return KELP_OK;
}

/* offsets[0] == 0 and never decreasing: what both image and box offsets must be before their spans mean anything. */
static kelp_status check_offset_order(const kelp_dataset *ds, const uint64_t *off, int64_t count, const char *obj)
{
    if (off[0] != 0)
        return bad(ds, obj, "starts at %" PRIu64 ", expected 0", off[0]);
    for (int64_t i = 0; i < count; i++) {
        if (off[i + 1] < off[i])
            return bad(ds, obj, "decreases at entry %" PRId64 " (%" PRIu64 " after %" PRIu64 ")", i + 1,
                       off[i + 1], off[i]);
    }
    return KELP_OK;
}

static kelp_status check_image_offsets(const kelp_dataset *ds, const ds_split *sp, uint64_t total,
                                       const char *obj)
{
    const uint64_t *off = sp->image_offsets;
    KELP_TRY(check_offset_order(ds, off, sp->count, obj));
    for (int64_t i = 0; i < sp->count; i++) {
        const uint32_t *s = &sp->image_shapes[3 * i];
        uint64_t need = (uint64_t)s[0] * s[1] * s[2];
        if (off[i + 1] - off[i] != need)
            return bad(ds, obj, "image %" PRId64 " spans %" PRIu64 " bytes but its shape %" PRIu32 " x %" PRIu32
                       " x %" PRIu32 " in image_shapes needs %" PRIu64, i, off[i + 1] - off[i], s[0], s[1], s[2],
                       need);
    }
    if (off[sp->count] != total)
        return bad(ds, obj, "ends at %" PRIu64 " but images_flat holds %" PRIu64 " bytes", off[sp->count], total);
    return KELP_OK;
}

static kelp_status load_variable_images(kelp_dataset *ds, hid_t g, kelp_split split, ds_split *sp)
{
    const dim_rule flat_rules[1] = {{"the byte count", 0, UINT64_MAX}};
    const dim_rule shape_rules[2] = {IMAGE_COUNT, {"the column count (h, w, c)", 3, 3}};
    ds_member flat, shapes, offsets;
    KELP_TRY(open_member(ds, g, split, "images_flat", DT_U8, 1, flat_rules, &flat));
    sp->images = flat.id;
    kelp_ds_chunking_inspect(sp->images, 1, &sp->image_chunks);
    KELP_TRY(open_member(ds, g, split, "image_shapes", DT_U32, 2, shape_rules, &shapes));
    sp->count = (int64_t)shapes.dims[0];
    KELP_TRY(read_member(ds, &shapes, 2, DT_U32, (void **)&sp->image_shapes));
    const dim_rule offset_rules[1] = {{"the entry count (images + 1)", (uint64_t)sp->count + 1,
                                       (uint64_t)sp->count + 1}};
    KELP_TRY(open_member(ds, g, split, "image_offsets", DT_U64, 1, offset_rules, &offsets));
    KELP_TRY(read_member(ds, &offsets, 1, DT_U64, (void **)&sp->image_offsets));
    KELP_TRY(check_image_shapes(ds, sp, shapes.obj));
    sp->shape.c = sp->count > 0 ? sp->image_shapes[2] : 0;
    return check_image_offsets(ds, sp, flat.dims[0], offsets.obj);
}

static kelp_status load_images(kelp_dataset *ds, hid_t g, kelp_split split, ds_split *sp)
{
    bool fixed, variable;
    KELP_TRY(member_exists(ds, g, split, "images", &fixed));
    KELP_TRY(member_exists(ds, g, split, "images_flat", &variable));
    char obj[16];
    snprintf(obj, sizeof obj, "/%s", kelp_split_name(split));
    if (fixed && variable)
        return bad(ds, obj, "has both 'images' and 'images_flat'; a split uses one layout");
    if (!fixed && !variable)
        return bad(ds, obj, "has neither 'images' nor 'images_flat'");
    return fixed ? load_fixed_images(ds, g, split, sp) : load_variable_images(ds, g, split, sp);
}

static kelp_status load_labels(kelp_dataset *ds, hid_t g, kelp_split split, ds_split *sp)
{
    const dim_rule rules[1] = {{"the label count (one per image)", (uint64_t)sp->count, (uint64_t)sp->count}};
    ds_member m;
    KELP_TRY(open_member(ds, g, split, "labels", DT_I32, 1, rules, &m));
    KELP_TRY(read_member(ds, &m, 1, DT_I32, (void **)&sp->labels));
    for (int64_t i = 0; i < sp->count; i++) {
        if (sp->labels[i] < 0 || sp->labels[i] >= ds->class_count)
            return bad(ds, m.obj, "label %" PRId32 " of image %" PRId64 " is out of range [0, %d) (%d class names)",
                       sp->labels[i], i, ds->class_count, ds->class_count);
    }
    return KELP_OK;
}

/* ignore_index is optional; when present it must say what the API promises. */
static kelp_status check_ignore_index(kelp_dataset *ds, const ds_member *m)
{
    int64_t value = 0;
    bool exists;
    KELP_TRY(read_int(ds, m->id, m->obj, "ignore_index", &value, &exists));
    if (exists && value != KELP_DS_IGNORE_INDEX)
        return bad(ds, m->obj, "ignore_index is %" PRId64 "; kelp reads only %d", value, KELP_DS_IGNORE_INDEX);
    return KELP_OK;
}

static kelp_status load_masks(kelp_dataset *ds, hid_t g, kelp_split split, ds_split *sp)
{
    ds_member m;
    if (sp->fixed) {
        const dim_rule rules[3] = {{"the mask count", (uint64_t)sp->count, (uint64_t)sp->count},
                                   {"the mask height (its image's)", sp->shape.h, sp->shape.h},
                                   {"the mask width (its image's)", sp->shape.w, sp->shape.w}};
        KELP_TRY(open_member(ds, g, split, "masks", DT_U8, 3, rules, &m));
    } else {
        uint64_t pixels = sp->count > 0 ? sp->image_offsets[sp->count] / sp->shape.c : 0;
        const dim_rule rules[1] = {{"the byte count (the images' h * w summed)", pixels, pixels}};
        KELP_TRY(open_member(ds, g, split, "masks_flat", DT_U8, 1, rules, &m));
    }
    sp->masks = m.id;
    kelp_ds_chunking_inspect(sp->masks, sp->fixed ? 3 : 1, &sp->mask_chunks);
    return check_ignore_index(ds, &m);
}

static kelp_status check_box_offsets(const kelp_dataset *ds, const ds_split *sp, uint64_t total, const char *obj)
{
    const uint64_t *off = sp->box_offsets;
    KELP_TRY(check_offset_order(ds, off, sp->count, obj));
    for (int64_t i = 0; i < sp->count; i++) {
        if (off[i + 1] - off[i] > KELP_DATASET_MAX_BOXES_PER_IMAGE)
            return bad(ds, obj, "image %" PRId64 " has %" PRIu64 " boxes, over the cap of %d", i,
                       off[i + 1] - off[i], KELP_DATASET_MAX_BOXES_PER_IMAGE);
    }
    if (off[sp->count] != total)
        return bad(ds, obj, "ends at %" PRIu64 " but boxes holds %" PRIu64 " boxes", off[sp->count], total);
    return KELP_OK;
}

static kelp_status load_boxes(kelp_dataset *ds, hid_t g, kelp_split split, ds_split *sp)
{
    const dim_rule box_rules[2] = {{"the box count", 0, UINT64_MAX}, {"the column count (x1, y1, x2, y2)", 4, 4}};
    ds_member boxes, labels, offsets;
    KELP_TRY(open_member(ds, g, split, "boxes", DT_F32, 2, box_rules, &boxes));
    sp->boxes = boxes.id;
    const dim_rule label_rules[1] = {{"the box label count (one per box)", boxes.dims[0], boxes.dims[0]}};
    KELP_TRY(open_member(ds, g, split, "box_labels", DT_I32, 1, label_rules, &labels));
    sp->box_labels = labels.id;
    const dim_rule offset_rules[1] = {{"the entry count (images + 1)", (uint64_t)sp->count + 1,
                                       (uint64_t)sp->count + 1}};
    KELP_TRY(open_member(ds, g, split, "box_offsets", DT_U64, 1, offset_rules, &offsets));
    KELP_TRY(read_member(ds, &offsets, 1, DT_U64, (void **)&sp->box_offsets));
    return check_box_offsets(ds, sp, boxes.dims[0], offsets.obj);
}

static kelp_status load_image_ids(kelp_dataset *ds, hid_t g, kelp_split split, ds_split *sp)
{
    bool exists;
    KELP_TRY(member_exists(ds, g, split, "image_ids", &exists));
    if (!exists)
        return KELP_OK;
    const dim_rule rules[1] = {{"the id count (one per image)", (uint64_t)sp->count, (uint64_t)sp->count}};
    ds_member m;
    KELP_TRY(open_member(ds, g, split, "image_ids", DT_I64, 1, rules, &m));
    return read_member(ds, &m, 1, DT_I64, (void **)&sp->image_ids);
}

static kelp_status load_split_members(kelp_dataset *ds, hid_t g, kelp_split split, ds_split *sp)
{
    KELP_TRY(load_images(ds, g, split, sp));
    if (ds->task == KELP_TASK_CLASSIFY)
        KELP_TRY(load_labels(ds, g, split, sp));
    if (ds->task == KELP_TASK_SEGMENT)
        KELP_TRY(load_masks(ds, g, split, sp));
    if (ds->task == KELP_TASK_DETECT)
        KELP_TRY(load_boxes(ds, g, split, sp));
    return load_image_ids(ds, g, split, sp);
}

static kelp_status load_split(kelp_dataset *ds, kelp_split split)
{
    const char *name = kelp_split_name(split);
    char obj[16];
    snprintf(obj, sizeof obj, "/%s", name);
    bool exists;
    KELP_TRY(check_link(ds, ds->file, name, obj, &exists));
    if (!exists)
        return KELP_OK;
    hid_t g = H5Gopen2(ds->file, name, H5P_DEFAULT);
    if (g < 0)
        return bad_h5(ds, obj, "is not a group");
    ds_split *sp = &ds->splits[split];
    sp->present = true;
    kelp_status s = load_split_members(ds, g, split, sp);
    kelp_ds_h5_close(g);
    return s;
}

/* ================================================================ open and close */

static void free_split(ds_split *sp)
{
    kelp_ds_h5_close(sp->images);
    kelp_ds_h5_close(sp->masks);
    kelp_ds_h5_close(sp->boxes);
    kelp_ds_h5_close(sp->box_labels);
    free(sp->image_offsets);
    free(sp->image_shapes);
    free(sp->labels);
    free(sp->box_offsets);
    free(sp->image_ids);
}

void kelp_dataset_close(kelp_dataset *ds)
{
    if (!ds)
        return;
    kelp_ds_h5_quiet();
    for (int s = 0; s < KELP_SPLIT_COUNT; s++)
        free_split(&ds->splits[s]);
    kelp_ds_h5_close(ds->file);
    free_strings(ds->class_names, (size_t)ds->class_count);
    free(ds->source);
    free(ds->license);
    free(ds->path);
    pthread_mutex_destroy(&ds->lock);
    free(ds);
}

/* A missing or unreadable file is an I/O error with the system's reason, before HDF5 turns it into "unable to
 * open file". */
static kelp_status check_readable(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return kelp_set_error(KELP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fclose(f);
    return KELP_OK;
}

static kelp_status open_file(kelp_dataset *ds)
{
    KELP_TRY(check_readable(ds->path));
    htri_t is_hdf5 = H5Fis_hdf5(ds->path);
    if (is_hdf5 <= 0)
        return bad(ds, NULL, "not an HDF5 file (no HDF5 signature)");
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* Closing the file then releases every object still open, whatever path an error took; a file system
     * without locks (NFS, some Lustre mounts) must not make an otherwise readable file fail. */
    if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 || H5Pset_file_locking(fapl, 1, 1) < 0) {
        kelp_ds_h5_close(fapl);
        return bad_h5(ds, NULL, "cannot set up file access");
    }
    ds->file = H5Fopen(ds->path, H5F_ACC_RDONLY, fapl);
    kelp_status s = ds->file < 0 ? bad_h5(ds, NULL, "cannot open as HDF5") : KELP_OK;
    kelp_ds_h5_close(fapl);
    return s;
}

static kelp_dataset *dataset_new(const char *path)
{
    kelp_dataset *ds = calloc(1, sizeof *ds);
    if (!ds)
        return NULL;
    if (!(ds->path = strdup(path)) || pthread_mutex_init(&ds->lock, NULL) != 0) {
        free(ds->path);
        free(ds);
        return NULL;
    }
    ds->file = H5I_INVALID_HID;
    for (int s = 0; s < KELP_SPLIT_COUNT; s++) {
        ds_split *sp = &ds->splits[s];
        sp->images = sp->masks = sp->boxes = sp->box_labels = H5I_INVALID_HID;
    }
    return ds;
}

static kelp_status load(kelp_dataset *ds)
{
    /* Plugins are shared libraries named by the file's filter ids: loading them would run code chosen by the
     * file. */
    if (H5PLset_loading_state(0) < 0)
        return bad_h5(ds, NULL, "cannot turn HDF5 filter plugins off");
    KELP_TRY(open_file(ds));
    KELP_TRY(read_root(ds));
    for (int s = 0; s < KELP_SPLIT_COUNT; s++)
        KELP_TRY(load_split(ds, (kelp_split)s));
    return KELP_OK;
}

kelp_status kelp_dataset_open(const char *path, kelp_dataset **out)
{
    if (!out)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_dataset_open: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_dataset_open: empty path");
    kelp_ds_h5_quiet();
    kelp_dataset *ds = dataset_new(path);
    if (!ds)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory opening the dataset", path);
    kelp_status s = load(ds);
    if (s != KELP_OK) {
        kelp_dataset_close(ds);
        return s;
    }
    *out = ds;
    return KELP_OK;
}

/* ================================================================ metadata */

const char *kelp_dataset_path(const kelp_dataset *ds)
{
    return ds->path;
}

kelp_task kelp_dataset_task(const kelp_dataset *ds)
{
    return ds->task;
}

int kelp_dataset_class_count(const kelp_dataset *ds)
{
    return ds->class_count;
}

const char *kelp_dataset_class_name(const kelp_dataset *ds, int index)
{
    return index >= 0 && index < ds->class_count ? ds->class_names[index] : NULL;
}

const char *kelp_dataset_source(const kelp_dataset *ds)
{
    return ds->source ? ds->source : "";
}

const char *kelp_dataset_license(const kelp_dataset *ds)
{
    return ds->license ? ds->license : "";
}

static const ds_split *find_split(const kelp_dataset *ds, kelp_split split)
{
    return (unsigned)split < KELP_SPLIT_COUNT && ds->splits[split].present ? &ds->splits[split] : NULL;
}

int64_t kelp_dataset_count(const kelp_dataset *ds, kelp_split split)
{
    const ds_split *sp = find_split(ds, split);
    return sp ? sp->count : 0;
}

bool kelp_dataset_fixed_shape(const kelp_dataset *ds, kelp_split split, kelp_image_shape *shape)
{
    const ds_split *sp = find_split(ds, split);
    bool fixed = sp && sp->fixed;
    if (shape)
        *shape = fixed ? sp->shape : (kelp_image_shape){0, 0, 0};
    return fixed;
}

const int32_t *kelp_dataset_labels(const kelp_dataset *ds, kelp_split split)
{
    const ds_split *sp = find_split(ds, split);
    return sp ? sp->labels : NULL;
}

int64_t kelp_dataset_image_id(const kelp_dataset *ds, kelp_split split, int64_t index)
{
    const ds_split *sp = find_split(ds, split);
    if (!sp || index < 0 || index >= sp->count)
        return -1;
    return sp->image_ids ? sp->image_ids[index] : index;
}

/* ================================================================ records */

static kelp_status find_record(const kelp_dataset *ds, kelp_split split, int64_t index, const ds_split **out)
{
    *out = NULL;
    const ds_split *sp = find_split(ds, split);
    if (!sp)
        return kelp_set_error(KELP_ERR_NOT_FOUND, "%s: has no split '%s'", ds->path, kelp_split_name(split));
    if (index < 0 || index >= sp->count)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: image %" PRId64 " is out of range (split '%s' has %" PRId64
                              " images)", ds->path, index, kelp_split_name(split), sp->count);
    *out = sp;
    return KELP_OK;
}

static kelp_image_shape record_shape(const ds_split *sp, int64_t index)
{
    if (sp->fixed)
        return sp->shape;
    const uint32_t *s = &sp->image_shapes[3 * index];
    return (kelp_image_shape){s[0], s[1], s[2]};
}

kelp_status kelp_dataset_image_shape(const kelp_dataset *ds, kelp_split split, int64_t index,
                                     kelp_image_shape *out)
{
    if (!ds || !out)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_dataset_image_shape: NULL argument");
    *out = (kelp_image_shape){0, 0, 0};
    const ds_split *sp = NULL;
    KELP_TRY(find_record(ds, split, index, &sp));
    *out = record_shape(sp, index);
    return KELP_OK;
}

/* Reads count[] elements from start[] of a dataset into dst, as one contiguous block. The caller holds the lock. */
static kelp_status read_block(const kelp_dataset *ds, hid_t dset, ds_dtype dtype, int rank, const hsize_t *start,
                              const hsize_t *count, void *dst, const char *obj, const char *what)
{
    hsize_t n = 1;
    for (int d = 0; d < rank; d++)
        n *= count[d];
    if (n == 0)
        return KELP_OK;
    hid_t file_space = H5Dget_space(dset);
    /* Shaped like the selection, so that HDF5 copies the block whole instead of iterating over runs. */
    hid_t mem_space = H5Screate_simple(rank, count, NULL);
    kelp_status s = KELP_OK;
    if (file_space < 0 || mem_space < 0 ||
        H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(dset, native_type(dtype), mem_space, file_space, H5P_DEFAULT, dst) < 0)
        s = bad_h5(ds, obj, what);
    kelp_ds_h5_close(mem_space);
    kelp_ds_h5_close(file_space);
    return s;
}

static kelp_status check_dst(const kelp_dataset *ds, const void *dst, size_t dst_bytes, uint64_t need,
                             const char *what, int64_t index)
{
    if (!dst || dst_bytes < need)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: %s %" PRId64 " needs %" PRIu64 " bytes; the buffer holds %zu",
                              ds->path, what, index, need, dst ? dst_bytes : 0);
    return KELP_OK;
}

/* One record of u8 values: [start, start + count) of a dataset of `rank` dims. */
typedef struct record_block {
    int rank;
    hsize_t start[KELP_DS_CHUNK_RANK], count[KELP_DS_CHUNK_RANK];
} record_block;

static record_block image_block(const ds_split *sp, int64_t index)
{
    kelp_image_shape shape = record_shape(sp, index);
    if (sp->fixed)
        return (record_block){4, {(hsize_t)index, 0, 0, 0}, {1, shape.h, shape.w, shape.c}};
    return (record_block){1, {sp->image_offsets[index]}, {sp->image_offsets[index + 1] - sp->image_offsets[index]}};
}

static record_block mask_block(const ds_split *sp, int64_t index)
{
    kelp_image_shape shape = record_shape(sp, index);
    if (sp->fixed)
        return (record_block){3, {(hsize_t)index, 0, 0}, {1, shape.h, shape.w}};
    return (record_block){1, {sp->image_offsets[index] / shape.c}, {(hsize_t)shape.h * shape.w}};
}

/* Reads a u8 record. Where the layout allows (dataset_chunks.c) only the chunks' stored bytes are read under the
 * lock, and they are inflated after it, so that the loader's threads inflate in parallel; otherwise H5Dread runs
 * under the lock. */
static kelp_status read_u8_record(kelp_dataset *ds, hid_t dset, const kelp_ds_chunking *k, const record_block *b,
                                  uint8_t *dst, const char *obj, const char *what)
{
    char where[1024];
    snprintf(where, sizeof where, "%s: %s: %s", ds->path, obj, what);
    kelp_ds_chunks raw = {0};
    kelp_ds_h5_quiet();
    pthread_mutex_lock(&ds->lock);
    kelp_status s = k->raw ? kelp_ds_chunks_fetch(dset, k, b->start, b->count, &raw, where) : KELP_OK;
    if (s == KELP_OK && raw.count == 0)
        s = read_block(ds, dset, DT_U8, b->rank, b->start, b->count, dst, obj, what);
    pthread_mutex_unlock(&ds->lock);
    if (s == KELP_OK && raw.count)
        s = kelp_ds_chunks_unpack(k, &raw, b->start, b->count, dst, where);
    kelp_ds_chunks_free(&raw);
    return s;
}

kelp_status kelp_dataset_read_image(kelp_dataset *ds, kelp_split split, int64_t index, uint8_t *dst,
                                    size_t dst_bytes)
{
    if (!ds)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_dataset_read_image: ds is NULL");
    const ds_split *sp = NULL;
    KELP_TRY(find_record(ds, split, index, &sp));
    kelp_image_shape shape = record_shape(sp, index);
    KELP_TRY(check_dst(ds, dst, dst_bytes, (uint64_t)shape.h * shape.w * shape.c, "image", index));
    char obj[48], what[64];
    member_name(obj, sizeof obj, split, sp->fixed ? "images" : "images_flat");
    snprintf(what, sizeof what, "cannot read image %" PRId64, index);
    record_block b = image_block(sp, index);
    return read_u8_record(ds, sp->images, &sp->image_chunks, &b, dst, obj, what);
}

static kelp_status wrong_task(const kelp_dataset *ds, const char *fn, kelp_task want)
{
    return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: %s needs a %s dataset; this one is %s", ds->path, fn,
                          kelp_task_name(want), kelp_task_name(ds->task));
}

static kelp_status check_mask_values(const kelp_dataset *ds, const uint8_t *mask, kelp_image_shape shape,
                                     int64_t index, const char *obj)
{
    for (size_t p = 0; p < (size_t)shape.h * shape.w; p++) {
        if (mask[p] >= ds->class_count && mask[p] != KELP_DS_IGNORE_INDEX)
            return bad(ds, obj, "mask %" PRId64 " has class %d at pixel (%zu, %zu), out of range [0, %d) and not "
                       "the ignore index 255", index, mask[p], p / shape.w, p % shape.w, ds->class_count);
    }
    return KELP_OK;
}

kelp_status kelp_dataset_read_mask(kelp_dataset *ds, kelp_split split, int64_t index, uint8_t *dst,
                                   size_t dst_bytes)
{
    if (!ds)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_dataset_read_mask: ds is NULL");
    if (ds->task != KELP_TASK_SEGMENT)
        return wrong_task(ds, "kelp_dataset_read_mask", KELP_TASK_SEGMENT);
    const ds_split *sp = NULL;
    KELP_TRY(find_record(ds, split, index, &sp));
    kelp_image_shape shape = record_shape(sp, index);
    KELP_TRY(check_dst(ds, dst, dst_bytes, (uint64_t)shape.h * shape.w, "mask", index));
    char obj[48];
    member_name(obj, sizeof obj, split, sp->fixed ? "masks" : "masks_flat");
    char what[64];
    snprintf(what, sizeof what, "cannot read mask %" PRId64, index);
    record_block b = mask_block(sp, index);
    KELP_TRY(read_u8_record(ds, sp->masks, &sp->mask_chunks, &b, dst, obj, what));
    return check_mask_values(ds, dst, shape, index, obj);
}

static kelp_status check_boxes(const kelp_dataset *ds, const float *boxes, const int32_t *labels, int n,
                               int64_t index, kelp_split split)
{
    char obj[48];
    member_name(obj, sizeof obj, split, "boxes");
    for (int b = 0; b < n; b++) {
        const float *x = &boxes[4 * b];
        if (!isfinite(x[0]) || !isfinite(x[1]) || !isfinite(x[2]) || !isfinite(x[3]))
            return bad(ds, obj, "image %" PRId64 " box %d is not finite", index, b);
        if (x[0] > x[2] || x[1] > x[3])
            return bad(ds, obj, "image %" PRId64 " box %d (%g, %g, %g, %g) has x1 > x2 or y1 > y2", index, b,
                       (double)x[0], (double)x[1], (double)x[2], (double)x[3]);
        if (labels[b] < 0 || labels[b] >= ds->class_count) {
            member_name(obj, sizeof obj, split, "box_labels");
            return bad(ds, obj, "image %" PRId64 " box %d has label %" PRId32 ", out of range [0, %d)", index, b,
                       labels[b], ds->class_count);
        }
    }
    return KELP_OK;
}

static kelp_status read_boxes_locked(kelp_dataset *ds, const ds_split *sp, kelp_split split, int64_t index,
                                     float *boxes, int32_t *labels)
{
    char obj[48], what[64];
    snprintf(what, sizeof what, "cannot read the boxes of image %" PRId64, index);
    hsize_t start[2] = {sp->box_offsets[index], 0};
    hsize_t count[2] = {sp->box_offsets[index + 1] - start[0], 4};
    member_name(obj, sizeof obj, split, "boxes");
    KELP_TRY(read_block(ds, sp->boxes, DT_F32, 2, start, count, boxes, obj, what));
    member_name(obj, sizeof obj, split, "box_labels");
    return read_block(ds, sp->box_labels, DT_I32, 1, start, count, labels, obj, what);
}

kelp_status kelp_dataset_read_boxes(kelp_dataset *ds, kelp_split split, int64_t index, float *boxes,
                                    int32_t *labels, int max_boxes, int *count)
{
    if (!ds || !count)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_dataset_read_boxes: NULL argument");
    *count = 0;
    if (ds->task != KELP_TASK_DETECT)
        return wrong_task(ds, "kelp_dataset_read_boxes", KELP_TASK_DETECT);
    const ds_split *sp = NULL;
    KELP_TRY(find_record(ds, split, index, &sp));
    int n = (int)(sp->box_offsets[index + 1] - sp->box_offsets[index]);
    *count = n;
    if (n > max_boxes || (n > 0 && (!boxes || !labels)))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: image %" PRId64 " has %d boxes; the buffers hold %d",
                              ds->path, index, n, boxes && labels ? max_boxes : 0);
    kelp_ds_h5_quiet();
    pthread_mutex_lock(&ds->lock);
    kelp_status s = read_boxes_locked(ds, sp, split, index, boxes, labels);
    pthread_mutex_unlock(&ds->lock);
    KELP_TRY(s);
    return check_boxes(ds, boxes, labels, n, index, split);
}
