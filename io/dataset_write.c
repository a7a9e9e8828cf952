/* The dataset writer: layout v1 (docs/dataset-format.md) into a temp file renamed over the target at the end.
 *
 * Images, masks and boxes go to extendible datasets (unlimited first dim) one record at a time, so an import never
 * holds more than one image. The per-image metadata (labels, ids, shapes, offsets) is a few bytes per record: it
 * is buffered and written once when the split ends, instead of one extent change per dataset per record. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic_file.h"
#include "io/dataset_internal.h"
#include "io/utf8.h"

/* Deflate level 4 compresses image data nearly as well as 9 at a fraction of the time. */
#define DEFLATE_LEVEL 4
/* A variable-size image is read by decompressing every chunk it touches: small chunks keep that close to the
 * image's own size (16 KiB reads 28 x 28 images twice as fast as 64 KiB, and imports them 1.7 times slower). */
#define FLAT_CHUNK_BYTES 16384
#define BOX_CHUNK_ROWS 1024
#define META_CHUNK_ROWS 16384

/* A dataset that grows by records. Its extent runs ahead of `rows` by doubling, so that HDF5 changes the extent
 * a few dozen times per split instead of once per record (which doubles the import speed of small images); the
 * split's end trims it to `rows`. */
typedef struct column {
    hid_t id;
    hsize_t rows, capacity;
} column;

typedef struct ds_vec {
    unsigned char *data;
    size_t len, cap, elem;
} ds_vec;

struct kelp_dataset_writer {
    char *path;
    kelp_atomic_file *temp; /* reserves a fresh name beside the target and does the fsync + rename */
    hid_t file;
    kelp_task task;
    int class_count;
    char **class_names;
    char *source, *license;
    bool begun[KELP_SPLIT_COUNT];
    bool failed; /* an HDF5 write failed: the file is inconsistent and only abort remains */
    /* the split being written */
    bool in_split;
    kelp_split split;
    bool fixed;
    kelp_image_shape shape; /* fixed: every record's; variable: c of the first record */
    int64_t count;
    hid_t group;
    column images, masks, boxes, box_labels;
    ds_vec labels, ids, shapes, image_offsets, box_offsets;
};

/* ================================================================ messages */

/* An HDF5 call failed: the file can no longer be trusted. */
static kelp_status write_failed(kelp_dataset_writer *w, const char *what, const char *name)
{
    char detail[256];
    kelp_ds_h5_detail(detail, sizeof detail);
    w->failed = true;
    return kelp_set_error(KELP_ERR_IO, "%s: cannot %s %s (HDF5: %s)", w->path, what, name, detail);
}

/* A record the format does not allow; nothing of it was written and the writer stays usable. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static kelp_status
reject(const kelp_dataset_writer *w, kelp_status status, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return kelp_set_error(status, "%s: split '%s' record %" PRId64 ": %s", w->path, kelp_split_name(w->split),
                          w->count, what);
}

/* ================================================================ buffers */

static bool vec_push(ds_vec *v, const void *item)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 1024;
        unsigned char *data = realloc(v->data, cap * v->elem);
        if (!data)
            return false;
        v->data = data;
        v->cap = cap;
    }
    memcpy(v->data + v->len * v->elem, item, v->elem);
    v->len++;
    return true;
}

static void vec_reset(ds_vec *v, size_t elem)
{
    free(v->data);
    *v = (ds_vec){.elem = elem};
}

/* ================================================================ info */

static kelp_status check_text(const char *path, const char *what, int index, const char *text, size_t max_len,
                              bool allow_empty)
{
    char name[48];
    snprintf(name, sizeof name, index >= 0 ? "%s %d" : "%s", what, index);
    if (!text)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: %s is NULL", path, name);
    size_t len = strnlen(text, max_len + 1);
    if (len > max_len)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: %s is longer than %zu bytes", path, name, max_len);
    if (len == 0 && !allow_empty)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: %s is empty", path, name);
    if (!kelp_utf8_valid(text, len))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: %s is not valid UTF-8", path, name);
    return KELP_OK;
}

static kelp_status check_info(const char *path, const kelp_dataset_info *info)
{
    if (!info)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: dataset info is NULL", path);
    if ((unsigned)info->task > KELP_TASK_DETECT)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: unknown task %d", path, (int)info->task);
    int max_classes = info->task == KELP_TASK_SEGMENT ? KELP_DS_MAX_SEGMENT_CLASSES : KELP_DATASET_MAX_CLASSES;
    if (info->class_count < 1 || info->class_count > max_classes)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: %d classes; a %s dataset has 1 to %d", path,
                              info->class_count, kelp_task_name(info->task), max_classes);
    if (!info->class_names)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: class_names is NULL", path);
    for (int i = 0; i < info->class_count; i++)
        KELP_TRY(check_text(path, "class name", i, info->class_names[i], KELP_DATASET_MAX_NAME, false));
    if (info->source)
        KELP_TRY(check_text(path, "source", -1, info->source, KELP_DS_MAX_TEXT, true));
    if (info->license)
        KELP_TRY(check_text(path, "license", -1, info->license, KELP_DS_MAX_TEXT, true));
    return KELP_OK;
}

/* ================================================================ writer lifetime */

static void close_split_ids(kelp_dataset_writer *w)
{
    column *columns[] = {&w->images, &w->masks, &w->boxes, &w->box_labels};
    for (size_t i = 0; i < sizeof columns / sizeof *columns; i++)
        kelp_ds_h5_close(columns[i]->id);
    kelp_ds_h5_close(w->group);
    w->images = w->masks = w->boxes = w->box_labels = (column){H5I_INVALID_HID, 0, 0};
    w->group = H5I_INVALID_HID;
}

static void free_split_buffers(kelp_dataset_writer *w)
{
    vec_reset(&w->labels, sizeof(int32_t));
    vec_reset(&w->ids, sizeof(int64_t));
    vec_reset(&w->shapes, 3 * sizeof(uint32_t));
    vec_reset(&w->image_offsets, sizeof(uint64_t));
    vec_reset(&w->box_offsets, sizeof(uint64_t));
}

static void writer_free(kelp_dataset_writer *w)
{
    close_split_ids(w);
    free_split_buffers(w);
    kelp_ds_h5_close(w->file);
    kelp_atomic_abort(w->temp);
    if (w->class_names)
        for (int i = 0; i < w->class_count; i++)
            free(w->class_names[i]);
    free(w->class_names);
    free(w->source);
    free(w->license);
    free(w->path);
    free(w);
}

static kelp_dataset_writer *writer_new(const char *path, const kelp_dataset_info *info)
{
    kelp_dataset_writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->file = w->group = H5I_INVALID_HID;
    w->images = w->masks = w->boxes = w->box_labels = (column){H5I_INVALID_HID, 0, 0};
    w->task = info->task;
    w->class_count = info->class_count;
    bool ok = (w->path = strdup(path)) && (w->class_names = calloc((size_t)info->class_count, sizeof(char *))) &&
              (w->source = strdup(info->source ? info->source : "")) &&
              (w->license = strdup(info->license ? info->license : ""));
    for (int i = 0; ok && i < info->class_count; i++)
        ok = (w->class_names[i] = strdup(info->class_names[i])) != NULL;
    if (!ok) {
        writer_free(w);
        return NULL;
    }
    return w;
}

/* The temp name comes from kelp_atomic_open (a fresh, exclusive file beside the target); HDF5 truncates and fills
 * it, and kelp_atomic_commit later fsyncs that same inode and renames it. */
static kelp_status create_file(kelp_dataset_writer *w)
{
    KELP_TRY(kelp_atomic_open(w->path, &w->temp));
    /* The 1.8 object format stores attributes over 64 KiB (tens of thousands of class names) densely; every
     * HDF5 since 1.8 and h5py read it. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    kelp_status s = KELP_OK;
    if (fapl < 0 || H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0 ||
        (w->file = H5Fcreate(kelp_atomic_temp_path(w->temp), H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0)
        s = write_failed(w, "create", kelp_atomic_temp_path(w->temp));
    kelp_ds_h5_close(fapl);
    return s;
}

kelp_status kelp_dataset_create(const char *path, const kelp_dataset_info *info, kelp_dataset_writer **out)
{
    if (!out)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_dataset_create: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_dataset_create: empty path");
    KELP_TRY(check_info(path, info));
    kelp_ds_h5_quiet();
    kelp_dataset_writer *w = writer_new(path, info);
    if (!w)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory creating the dataset writer", path);
    kelp_status s = create_file(w);
    if (s != KELP_OK) {
        writer_free(w);
        return s;
    }
    *out = w;
    return KELP_OK;
}

void kelp_dataset_writer_abort(kelp_dataset_writer *w)
{
    if (!w)
        return;
    kelp_ds_h5_quiet();
    writer_free(w);
}

static kelp_status check_usable(const kelp_dataset_writer *w, const char *fn)
{
    if (!w)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: writer is NULL", fn);
    if (w->failed)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: %s: an earlier write failed; abort the writer", w->path,
                              fn);
    return KELP_OK;
}

/* ================================================================ datasets */

static hid_t chunked_dcpl(int rank, const hsize_t *chunk)
{
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl >= 0 && (H5Pset_chunk(dcpl, rank, chunk) < 0 || H5Pset_deflate(dcpl, DEFLATE_LEVEL) < 0)) {
        kelp_ds_h5_close(dcpl);
        return H5I_INVALID_HID;
    }
    return dcpl;
}

/* A chunked, deflated dataset of `dims` whose first dim can grow. */
static kelp_status create_dataset(kelp_dataset_writer *w, const char *name, hid_t file_type, int rank,
                                  const hsize_t *dims, const hsize_t *chunk, hid_t *out)
{
    hsize_t max_dims[4];
    for (int d = 0; d < rank; d++)
        max_dims[d] = d == 0 ? H5S_UNLIMITED : dims[d];
    hid_t space = H5Screate_simple(rank, dims, max_dims);
    hid_t dcpl = chunked_dcpl(rank, chunk);
    kelp_status s = KELP_OK;
    if (space < 0 || dcpl < 0 ||
        (*out = H5Dcreate2(w->group, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0)
        s = write_failed(w, "create dataset", name);
    kelp_ds_h5_close(dcpl);
    kelp_ds_h5_close(space);
    return s;
}

/* Appends the count[] block (contiguous in data) after the column's rows. */
static kelp_status append_block(kelp_dataset_writer *w, column *c, hid_t mem_type, int rank, const hsize_t *count,
                                const void *data, const char *name)
{
    hsize_t dims[4], start[4] = {0}, n = 1;
    for (int d = 0; d < rank; d++) {
        dims[d] = count[d];
        n *= count[d];
    }
    if (n == 0)
        return KELP_OK;
    start[0] = c->rows;
    hsize_t need = c->rows + count[0];
    dims[0] = need > 2 * c->capacity ? need : 2 * c->capacity;
    if (need > c->capacity && H5Dset_extent(c->id, dims) < 0)
        return write_failed(w, "extend", name);
    if (need > c->capacity)
        c->capacity = dims[0];
    /* Shaped like the selection, so that HDF5 copies the block whole instead of iterating over runs. */
    hid_t file_space = H5Dget_space(c->id), mem_space = H5Screate_simple(rank, count, NULL);
    kelp_status s = KELP_OK;
    if (file_space < 0 || mem_space < 0 ||
        H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dwrite(c->id, mem_type, mem_space, file_space, H5P_DEFAULT, data) < 0)
        s = write_failed(w, "append to", name);
    kelp_ds_h5_close(mem_space);
    kelp_ds_h5_close(file_space);
    c->rows = need;
    return s;
}

/* Shrinks the extent to the rows written (chunks past them were never allocated). */
static kelp_status trim_column(kelp_dataset_writer *w, column *c, const char *name)
{
    if (c->id < 0 || c->capacity == c->rows)
        return KELP_OK;
    hsize_t dims[4];
    hid_t space = H5Dget_space(c->id);
    kelp_status s = KELP_OK;
    if (space < 0 || H5Sget_simple_extent_dims(space, dims, NULL) < 0)
        s = write_failed(w, "read the extent of", name);
    dims[0] = c->rows;
    if (s == KELP_OK && H5Dset_extent(c->id, dims) < 0)
        s = write_failed(w, "trim", name);
    kelp_ds_h5_close(space);
    return s;
}

/* A whole per-image array, written when its split ends. */
static kelp_status write_array(kelp_dataset_writer *w, const char *name, hid_t file_type, hid_t mem_type, int rank,
                               const hsize_t *dims, const void *data)
{
    hsize_t chunk[2] = {dims[0] < 1 ? 1 : dims[0] > META_CHUNK_ROWS ? META_CHUNK_ROWS : dims[0],
                        rank > 1 ? dims[1] : 0};
    hid_t dset = H5I_INVALID_HID;
    kelp_status s = create_dataset(w, name, file_type, rank, dims, chunk, &dset);
    if (s == KELP_OK && dims[0] > 0 && H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        s = write_failed(w, "write", name);
    kelp_ds_h5_close(dset);
    return s;
}

/* ================================================================ attributes */

/* Variable-length UTF-8 strings: what h5py writes for str and reads back as str. */
static kelp_status write_strings(kelp_dataset_writer *w, hid_t loc, const char *name, const char *const *values,
                                 hsize_t count, bool scalar)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    hid_t space = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &count, NULL);
    hid_t attr = H5I_INVALID_HID;
    kelp_status s = KELP_OK;
    if (type < 0 || space < 0 || H5Tset_size(type, H5T_VARIABLE) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0 ||
        (attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(attr, type, values) < 0)
        s = write_failed(w, "write attribute", name);
    kelp_ds_h5_close(attr);
    kelp_ds_h5_close(space);
    kelp_ds_h5_close(type);
    return s;
}

static kelp_status write_int(kelp_dataset_writer *w, hid_t loc, const char *name, int64_t value)
{
    hid_t space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    kelp_status s = KELP_OK;
    if (space < 0 || (attr = H5Acreate2(loc, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(attr, H5T_NATIVE_INT64, &value) < 0)
        s = write_failed(w, "write attribute", name);
    kelp_ds_h5_close(attr);
    kelp_ds_h5_close(space);
    return s;
}

static kelp_status write_root_attributes(kelp_dataset_writer *w)
{
    const char *format = KELP_DS_FORMAT, *task = kelp_task_name(w->task);
    const char *source = w->source, *license = w->license;
    KELP_TRY(write_strings(w, w->file, "format", &format, 1, true));
    KELP_TRY(write_int(w, w->file, "format_version", KELP_DS_FORMAT_VERSION));
    KELP_TRY(write_strings(w, w->file, "task", &task, 1, true));
    KELP_TRY(write_strings(w, w->file, "class_names", (const char *const *)w->class_names,
                           (hsize_t)w->class_count, false));
    KELP_TRY(write_strings(w, w->file, "source", &source, 1, true));
    return write_strings(w, w->file, "license", &license, 1, true);
}

/* ================================================================ splits */

static kelp_status create_record_datasets(kelp_dataset_writer *w)
{
    kelp_image_shape s = w->shape;
    if (w->fixed) {
        const hsize_t image[4] = {0, s.h, s.w, s.c}, image_chunk[4] = {1, s.h, s.w, s.c};
        KELP_TRY(create_dataset(w, "images", H5T_STD_U8LE, 4, image, image_chunk, &w->images.id));
        if (w->task == KELP_TASK_SEGMENT) {
            const hsize_t mask[3] = {0, s.h, s.w}, mask_chunk[3] = {1, s.h, s.w};
            KELP_TRY(create_dataset(w, "masks", H5T_STD_U8LE, 3, mask, mask_chunk, &w->masks.id));
        }
    } else {
        const hsize_t flat = 0, flat_chunk = FLAT_CHUNK_BYTES;
        KELP_TRY(create_dataset(w, "images_flat", H5T_STD_U8LE, 1, &flat, &flat_chunk, &w->images.id));
        if (w->task == KELP_TASK_SEGMENT)
            KELP_TRY(create_dataset(w, "masks_flat", H5T_STD_U8LE, 1, &flat, &flat_chunk, &w->masks.id));
    }
    if (w->task == KELP_TASK_DETECT) {
        const hsize_t boxes[2] = {0, 4}, box_chunk[2] = {BOX_CHUNK_ROWS, 4};
        const hsize_t labels = 0, label_chunk = BOX_CHUNK_ROWS;
        KELP_TRY(create_dataset(w, "boxes", H5T_IEEE_F32LE, 2, boxes, box_chunk, &w->boxes.id));
        KELP_TRY(create_dataset(w, "box_labels", H5T_STD_I32LE, 1, &labels, &label_chunk, &w->box_labels.id));
    }
    return KELP_OK;
}

static kelp_status start_split(kelp_dataset_writer *w, kelp_split split, const kelp_image_shape *fixed)
{
    w->in_split = true;
    w->split = split;
    w->fixed = fixed != NULL;
    w->shape = fixed ? *fixed : (kelp_image_shape){0, 0, 0};
    w->count = 0;
    free_split_buffers(w);
    const uint64_t zero = 0;
    if (!vec_push(&w->image_offsets, &zero) || !vec_push(&w->box_offsets, &zero)) {
        w->failed = true;
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory starting split '%s'", w->path,
                              kelp_split_name(split));
    }
    w->group = H5Gcreate2(w->file, kelp_split_name(split), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (w->group < 0)
        return write_failed(w, "create group", kelp_split_name(split));
    return create_record_datasets(w);
}

static kelp_status write_split_arrays(kelp_dataset_writer *w)
{
    const hsize_t n = (hsize_t)w->count, offsets = n + 1, shapes[2] = {n, 3};
    KELP_TRY(write_array(w, "image_ids", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n, w->ids.data));
    if (w->task == KELP_TASK_CLASSIFY)
        KELP_TRY(write_array(w, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &n, w->labels.data));
    if (!w->fixed) {
        KELP_TRY(write_array(w, "image_shapes", H5T_STD_U32LE, H5T_NATIVE_UINT32, 2, shapes, w->shapes.data));
        KELP_TRY(write_array(w, "image_offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, &offsets,
                             w->image_offsets.data));
    }
    if (w->task == KELP_TASK_DETECT)
        KELP_TRY(write_array(w, "box_offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, &offsets,
                             w->box_offsets.data));
    if (w->task == KELP_TASK_SEGMENT)
        KELP_TRY(write_int(w, w->masks.id, "ignore_index", KELP_DS_IGNORE_INDEX));
    return KELP_OK;
}

static kelp_status end_split(kelp_dataset_writer *w)
{
    kelp_status s = trim_column(w, &w->images, "images");
    if (s == KELP_OK)
        s = trim_column(w, &w->masks, "masks");
    if (s == KELP_OK)
        s = trim_column(w, &w->boxes, "boxes");
    if (s == KELP_OK)
        s = trim_column(w, &w->box_labels, "box_labels");
    if (s == KELP_OK)
        s = write_split_arrays(w);
    close_split_ids(w);
    free_split_buffers(w);
    w->in_split = false;
    return s;
}

static bool shape_within_caps(const kelp_image_shape *s)
{
    return s->h >= 1 && s->h <= KELP_DATASET_MAX_SIDE && s->w >= 1 && s->w <= KELP_DATASET_MAX_SIDE && s->c >= 1 &&
           s->c <= KELP_DATASET_MAX_CHANNELS;
}

kelp_status kelp_dataset_begin_split(kelp_dataset_writer *w, kelp_split split, const kelp_image_shape *fixed)
{
    KELP_TRY(check_usable(w, "kelp_dataset_begin_split"));
    if ((unsigned)split >= KELP_SPLIT_COUNT)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: unknown split %d", w->path, (int)split);
    if (w->begun[split])
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: split '%s' was already written; each split is written once",
                              w->path, kelp_split_name(split));
    if (fixed && fixed->h == 0 && fixed->w == 0 && fixed->c == 0)
        fixed = NULL;
    if (fixed && !shape_within_caps(fixed))
        return kelp_set_error(KELP_ERR_SHAPE, "%s: split '%s': fixed shape %" PRIu32 " x %" PRIu32 " x %" PRIu32
                              " is outside the caps (sides 1 to %d, 1 to %d channels)", w->path,
                              kelp_split_name(split), fixed->h, fixed->w, fixed->c, KELP_DATASET_MAX_SIDE,
                              KELP_DATASET_MAX_CHANNELS);
    kelp_ds_h5_quiet();
    if (w->in_split)
        KELP_TRY(end_split(w));
    w->begun[split] = true;
    return start_split(w, split, fixed);
}

/* ================================================================ records */

static kelp_status check_shape(const kelp_dataset_writer *w, const kelp_dataset_record *r)
{
    const kelp_image_shape *s = &r->shape;
    if (!shape_within_caps(s))
        return reject(w, KELP_ERR_SHAPE, "shape %" PRIu32 " x %" PRIu32 " x %" PRIu32 " is outside the caps (sides 1 "
                      "to %d, 1 to %d channels)", s->h, s->w, s->c, KELP_DATASET_MAX_SIDE, KELP_DATASET_MAX_CHANNELS);
    if (w->fixed && (s->h != w->shape.h || s->w != w->shape.w || s->c != w->shape.c))
        return reject(w, KELP_ERR_SHAPE, "shape %" PRIu32 " x %" PRIu32 " x %" PRIu32 " differs from the split's "
                      "fixed shape %" PRIu32 " x %" PRIu32 " x %" PRIu32, s->h, s->w, s->c, w->shape.h, w->shape.w,
                      w->shape.c);
    if (!w->fixed && w->count > 0 && s->c != w->shape.c)
        return reject(w, KELP_ERR_SHAPE, "%" PRIu32 " channels, but the split's images have %" PRIu32 " (the "
                      "channel count is shared by a split)", s->c, w->shape.c);
    return KELP_OK;
}

static kelp_status check_mask(const kelp_dataset_writer *w, const kelp_dataset_record *r)
{
    if (!r->mask)
        return reject(w, KELP_ERR_INVALID_ARG, "a segment record needs a mask");
    size_t pixels = (size_t)r->shape.h * r->shape.w;
    for (size_t p = 0; p < pixels; p++) {
        if (r->mask[p] >= w->class_count && r->mask[p] != KELP_DS_IGNORE_INDEX)
            return reject(w, KELP_ERR_INVALID_ARG, "mask pixel (%zu, %zu) has class %d, out of range [0, %d) and "
                          "not the ignore index 255", p / r->shape.w, p % r->shape.w, r->mask[p], w->class_count);
    }
    return KELP_OK;
}

static kelp_status check_boxes(const kelp_dataset_writer *w, const kelp_dataset_record *r)
{
    if (r->n_boxes < 0 || r->n_boxes > KELP_DATASET_MAX_BOXES_PER_IMAGE)
        return reject(w, KELP_ERR_INVALID_ARG, "%d boxes; an image has 0 to %d", r->n_boxes,
                      KELP_DATASET_MAX_BOXES_PER_IMAGE);
    if (r->n_boxes > 0 && (!r->boxes || !r->box_labels))
        return reject(w, KELP_ERR_INVALID_ARG, "%d boxes but boxes or box_labels is NULL", r->n_boxes);
    for (int b = 0; b < r->n_boxes; b++) {
        const float *x = &r->boxes[4 * b];
        if (!isfinite(x[0]) || !isfinite(x[1]) || !isfinite(x[2]) || !isfinite(x[3]))
            return reject(w, KELP_ERR_NUMERIC, "box %d is not finite", b);
        if (x[0] > x[2] || x[1] > x[3])
            return reject(w, KELP_ERR_INVALID_ARG, "box %d (%g, %g, %g, %g) has x1 > x2 or y1 > y2", b, (double)x[0],
                          (double)x[1], (double)x[2], (double)x[3]);
        if (r->box_labels[b] < 0 || r->box_labels[b] >= w->class_count)
            return reject(w, KELP_ERR_INVALID_ARG, "box %d has label %" PRId32 ", out of range [0, %d)", b,
                          r->box_labels[b], w->class_count);
    }
    return KELP_OK;
}

static kelp_status check_record(const kelp_dataset_writer *w, const kelp_dataset_record *r)
{
    if (w->count >= KELP_DATASET_MAX_IMAGES)
        return reject(w, KELP_ERR_INVALID_ARG, "a split holds at most %d images", KELP_DATASET_MAX_IMAGES);
    if (!r->pixels)
        return reject(w, KELP_ERR_INVALID_ARG, "pixels is NULL");
    KELP_TRY(check_shape(w, r));
    if (w->task == KELP_TASK_CLASSIFY && (r->label < 0 || r->label >= w->class_count))
        return reject(w, KELP_ERR_INVALID_ARG, "label %" PRId32 " is out of range [0, %d)", r->label,
                      w->class_count);
    if (w->task == KELP_TASK_SEGMENT)
        KELP_TRY(check_mask(w, r));
    if (w->task == KELP_TASK_DETECT)
        KELP_TRY(check_boxes(w, r));
    return KELP_OK;
}

static kelp_status write_record(kelp_dataset_writer *w, const kelp_dataset_record *r)
{
    const kelp_image_shape s = r->shape;
    if (w->fixed) {
        const hsize_t image[4] = {1, s.h, s.w, s.c}, mask[3] = {1, s.h, s.w};
        KELP_TRY(append_block(w, &w->images, H5T_NATIVE_UINT8, 4, image, r->pixels, "images"));
        if (w->task == KELP_TASK_SEGMENT)
            KELP_TRY(append_block(w, &w->masks, H5T_NATIVE_UINT8, 3, mask, r->mask, "masks"));
    } else {
        const hsize_t bytes = (hsize_t)s.h * s.w * s.c, mask_bytes = (hsize_t)s.h * s.w;
        KELP_TRY(append_block(w, &w->images, H5T_NATIVE_UINT8, 1, &bytes, r->pixels, "images_flat"));
        if (w->task == KELP_TASK_SEGMENT)
            KELP_TRY(append_block(w, &w->masks, H5T_NATIVE_UINT8, 1, &mask_bytes, r->mask, "masks_flat"));
    }
    if (w->task == KELP_TASK_DETECT) {
        const hsize_t boxes[2] = {(hsize_t)r->n_boxes, 4}, labels = (hsize_t)r->n_boxes;
        KELP_TRY(append_block(w, &w->boxes, H5T_NATIVE_FLOAT, 2, boxes, r->boxes, "boxes"));
        KELP_TRY(append_block(w, &w->box_labels, H5T_NATIVE_INT32, 1, &labels, r->box_labels, "box_labels"));
    }
    return KELP_OK;
}

/* Buffers the record's metadata; the offsets are where the record's data ended in its columns. */
static kelp_status note_record(kelp_dataset_writer *w, const kelp_dataset_record *r)
{
    const kelp_image_shape s = r->shape;
    const int64_t id = r->image_id >= 0 ? r->image_id : w->count;
    const uint32_t shape[3] = {s.h, s.w, s.c};
    const uint64_t pixel_end = w->images.rows, box_end = w->boxes.rows;
    bool ok = vec_push(&w->ids, &id);
    if (ok && w->task == KELP_TASK_CLASSIFY)
        ok = vec_push(&w->labels, &r->label);
    if (ok && !w->fixed)
        ok = vec_push(&w->shapes, shape) && vec_push(&w->image_offsets, &pixel_end);
    if (ok && w->task == KELP_TASK_DETECT)
        ok = vec_push(&w->box_offsets, &box_end);
    if (!ok) {
        w->failed = true;
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory buffering split '%s' record %" PRId64,
                              w->path, kelp_split_name(w->split), w->count);
    }
    if (w->count == 0)
        w->shape.c = s.c;
    w->count++;
    return KELP_OK;
}

kelp_status kelp_dataset_append(kelp_dataset_writer *w, const kelp_dataset_record *record)
{
    KELP_TRY(check_usable(w, "kelp_dataset_append"));
    if (!w->in_split)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: kelp_dataset_append before kelp_dataset_begin_split",
                              w->path);
    if (!record)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: kelp_dataset_append: record is NULL", w->path);
    KELP_TRY(check_record(w, record));
    kelp_ds_h5_quiet();
    KELP_TRY(write_record(w, record));
    return note_record(w, record);
}

/* ================================================================ finish */

kelp_status kelp_dataset_writer_finish(kelp_dataset_writer *w)
{
    kelp_status s = check_usable(w, "kelp_dataset_writer_finish");
    if (!w)
        return s;
    kelp_ds_h5_quiet();
    if (s == KELP_OK && w->in_split)
        s = end_split(w);
    if (s == KELP_OK)
        s = write_root_attributes(w);
    if (s == KELP_OK && H5Fclose(w->file) < 0)
        s = write_failed(w, "close", kelp_atomic_temp_path(w->temp));
    w->file = H5I_INVALID_HID;
    if (s == KELP_OK) {
        s = kelp_atomic_commit(w->temp);
        w->temp = NULL;
    }
    writer_free(w);
    return s;
}
