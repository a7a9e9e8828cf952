/* kelp io: HDF5 image datasets, layout v1 (docs/dataset-format.md).
 *
 * One file holds the splits (train, val, test) of one task (classify, segment, detect): uint8 HWC images, either
 * all of one size (`images` [N,H,W,C], one chunk per image) or each of its own size (`images_flat` +
 * `image_offsets` + `image_shapes`), with labels, masks or boxes, image ids, and the class names.
 *
 * Reading is hardened, because HDF5 "is not designed to handle maliciously crafted files safely": error printing
 * and filter plugins off, read-only, no external or virtual links, every rank, dim and dtype checked before any
 * allocation, every size overflow-checked against caps, only known filters (deflate, shuffle), labels checked
 * against the class count. kelp_dataset_open validates the metadata of every split; images and masks are read one
 * at a time (one hyperslab, one chunk), never the whole file, so a dataset larger than RAM trains.
 * kelp_dataset_check additionally reads every record and reports every problem.
 *
 * A reader may be used from several threads: HDF5 calls are serialized inside it.
 *
 *   kelp_dataset *ds;
 *   KELP_TRY(kelp_dataset_open("plankton.h5", &ds));
 *   int64_t n = kelp_dataset_count(ds, KELP_SPLIT_TRAIN);
 *   kelp_image_shape shape;  kelp_dataset_image_shape(ds, KELP_SPLIT_TRAIN, 0, &shape);
 *   uint8_t *pixels = malloc(shape.h * shape.w * shape.c);
 *   kelp_dataset_read_image(ds, KELP_SPLIT_TRAIN, 0, pixels, shape.h * shape.w * shape.c);
 *   int32_t label = kelp_dataset_labels(ds, KELP_SPLIT_TRAIN)[0];
 *   kelp_dataset_close(ds);
 *
 * Writing goes to a temporary file renamed over the target by kelp_dataset_writer_finish, so a failed import never
 * leaves a half-written dataset under the real name. */
#ifndef KELP_IO_DATASET_H
#define KELP_IO_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kelp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kelp_task { KELP_TASK_CLASSIFY = 0, KELP_TASK_SEGMENT, KELP_TASK_DETECT } kelp_task;
typedef enum kelp_split { KELP_SPLIT_TRAIN = 0, KELP_SPLIT_VAL, KELP_SPLIT_TEST } kelp_split;
#define KELP_SPLIT_COUNT 3

const char *kelp_task_name(kelp_task task);   /* "classify", "segment", "detect" */
const char *kelp_split_name(kelp_split split); /* "train", "val", "test" */
kelp_status kelp_split_parse(const char *name, kelp_split *out);

/* Caps that a valid file must respect (a reader allocates nothing beyond them). */
#define KELP_DATASET_MAX_SIDE 16384           /* pixels per image side */
#define KELP_DATASET_MAX_CHANNELS 4
#define KELP_DATASET_MAX_CLASSES 65536
#define KELP_DATASET_MAX_IMAGES 100000000     /* per split */
#define KELP_DATASET_MAX_BOXES_PER_IMAGE 100000
#define KELP_DATASET_MAX_NAME 256             /* bytes per class name */

typedef struct kelp_image_shape {
    uint32_t h, w, c;
} kelp_image_shape;

/* ---- reading ---- */
typedef struct kelp_dataset kelp_dataset;

kelp_status kelp_dataset_open(const char *path, kelp_dataset **out);
void kelp_dataset_close(kelp_dataset *ds);

const char *kelp_dataset_path(const kelp_dataset *ds);
kelp_task kelp_dataset_task(const kelp_dataset *ds);
int kelp_dataset_class_count(const kelp_dataset *ds);
const char *kelp_dataset_class_name(const kelp_dataset *ds, int index);
const char *kelp_dataset_source(const kelp_dataset *ds);  /* "" when absent */
const char *kelp_dataset_license(const kelp_dataset *ds); /* "" when absent */

/* 0 for a split the file does not have. */
int64_t kelp_dataset_count(const kelp_dataset *ds, kelp_split split);
/* True when every image of the split has the same shape (the `images` layout); *shape receives it. */
bool kelp_dataset_fixed_shape(const kelp_dataset *ds, kelp_split split, kelp_image_shape *shape);
kelp_status kelp_dataset_image_shape(const kelp_dataset *ds, kelp_split split, int64_t index,
                                     kelp_image_shape *out);
/* Reads image `index` (HWC uint8) into dst, which holds dst_bytes >= h*w*c bytes. */
kelp_status kelp_dataset_read_image(kelp_dataset *ds, kelp_split split, int64_t index, uint8_t *dst,
                                    size_t dst_bytes);
/* classify: the split's labels, loaded and range-checked at open (count entries). NULL for other tasks. */
const int32_t *kelp_dataset_labels(const kelp_dataset *ds, kelp_split split);
/* segment: mask `index` (H*W uint8, same H, W as the image; 255 = ignore) into dst. */
kelp_status kelp_dataset_read_mask(kelp_dataset *ds, kelp_split split, int64_t index, uint8_t *dst,
                                   size_t dst_bytes);
/* detect: the boxes of image `index` (x1,y1,x2,y2 in pixels) and their class labels; *count receives how many.
 * boxes holds max_boxes*4 floats, labels max_boxes entries; an image with more boxes is an error (*count still says
 * how many). */
kelp_status kelp_dataset_read_boxes(kelp_dataset *ds, kelp_split split, int64_t index, float *boxes,
                                    int32_t *labels, int max_boxes, int *count);
/* The image id (for COCO round trips); the index when the file has none; -1 for an index out of range. */
int64_t kelp_dataset_image_id(const kelp_dataset *ds, kelp_split split, int64_t index);

/* ---- checking: reads every record; calls report once per problem; returns the number of problems (-1 when the
 * file cannot be opened at all, with the reason in kelp_last_error()). ---- */
typedef void (*kelp_dataset_report_fn)(void *user, const char *problem);
int64_t kelp_dataset_check(const char *path, kelp_dataset_report_fn report, void *user);

/* ---- writing ---- */
typedef struct kelp_dataset_writer kelp_dataset_writer;

typedef struct kelp_dataset_info {
    kelp_task task;
    const char *const *class_names; /* class_count UTF-8 names */
    int class_count;
    const char *source, *license;   /* free text; may be NULL */
} kelp_dataset_info;

kelp_status kelp_dataset_create(const char *path, const kelp_dataset_info *info, kelp_dataset_writer **out);
/* Starts a split. A fixed shape (all of h, w, c > 0) selects the `images` layout (chunks of one image, gzip);
 * NULL selects the variable-size layout. Splits are written one after the other, each at most once. */
kelp_status kelp_dataset_begin_split(kelp_dataset_writer *w, kelp_split split, const kelp_image_shape *fixed);

typedef struct kelp_dataset_record {
    const uint8_t *pixels;     /* h*w*c bytes, HWC */
    kelp_image_shape shape;
    int32_t label;             /* classify */
    const uint8_t *mask;       /* segment: h*w bytes */
    const float *boxes;        /* detect: n_boxes * 4 floats x1,y1,x2,y2 */
    const int32_t *box_labels; /* detect: n_boxes */
    int n_boxes;
    int64_t image_id;          /* negative: the record's index in its split */
} kelp_dataset_record;

kelp_status kelp_dataset_append(kelp_dataset_writer *w, const kelp_dataset_record *record);
/* Writes the file's attributes, closes it and renames it over the target. Frees w whatever the outcome; on failure
 * the temp file is removed and the target is untouched. */
kelp_status kelp_dataset_writer_finish(kelp_dataset_writer *w);
/* Drops everything written (removes the temporary file). NULL is a no-op. */
void kelp_dataset_writer_abort(kelp_dataset_writer *w);

#ifdef __cplusplus
}
#endif
#endif
