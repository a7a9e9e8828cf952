/* kelp io: importers that turn image folders and IDX files into kelp datasets (io/dataset.h).
 *
 * Folder import: SRC has one subfolder per class (class names are the folder names, sorted bytewise). A first
 * pass reads every file's header: hidden names are skipped, and so are files that are not PNG or JPEG by their
 * first bytes, unless their name ends in .png, .jpg or .jpeg: such a file was meant to be an image, so it is
 * "bad", like a corrupt or unreadable image, and stops the import with its name (or is skipped and counted with
 * skip_bad). The headers decide the default channel count (3 if any image has colour, else 1) and the splits;
 * the second pass decodes each image once and writes it. With skip_bad, an image whose header was fine but whose
 * pixels are corrupt is dropped in the second pass, after the split was drawn, so that split is one image short.
 *
 * Splits are stratified: each class is shuffled with a stream that depends only on the seed and the class index,
 * then its first round(val * n) images go to val, the next round(test * n) to test, the rest to train (at least
 * one image of every class stays in train). Records keep the source order within a split; image ids are the
 * images' indices in that order (folder: the sorted listing; IDX: the index in its file).
 *
 * The output is written through the dataset writer, so a failed import leaves no file under the target name. */
#ifndef KELP_IO_IMPORT_H
#define KELP_IO_IMPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "io/dataset.h"
#include "kelp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Called after each written image; total is the number of images the import expects to write. */
typedef void (*kelp_import_progress_fn)(void *user, int64_t done, int64_t total);

typedef struct kelp_import_options {
    uint32_t height, width;  /* folder: resize every image to height x width (fixed layout); 0, 0: own sizes */
    int channels;            /* folder: 1 or 3; 0: 3 if any image has colour, else 1 */
    double val_fraction;     /* of each class of the training images, in [0, 1) */
    double test_fraction;    /* likewise; IDX: only without test files */
    uint64_t seed;           /* the only input of the shuffle */
    bool skip_bad;           /* folder: skip (and count) unreadable or corrupt images instead of failing */
    const char *source, *license;        /* free text stored in the file; may be NULL */
    const char *const *class_names;      /* IDX: names for labels 0..class_count-1; NULL: "0", "1", ... */
    int class_count;
    kelp_import_progress_fn progress;    /* may be NULL */
    void *progress_user;
} kelp_import_options;

typedef struct kelp_import_summary {
    int class_count;
    uint32_t channels;
    int64_t count[KELP_SPLIT_COUNT]; /* images written per split */
    int64_t skipped_hidden;          /* folder: names starting with '.' */
    int64_t skipped_other;           /* folder: not images by their first bytes, or not regular files */
    int64_t skipped_bad;             /* folder: unreadable or corrupt images skipped with skip_bad */
} kelp_import_summary;

/* Zeroes everything: no resize, default channels, no val/test split, seed 0. */
kelp_import_options kelp_import_defaults(void);

kelp_status kelp_import_folder(const char *src_dir, const char *out_path, const kelp_import_options *options,
                               kelp_import_summary *summary);

/* test_images and test_labels are both NULL (no test files) or both set; the test files become the test split. */
kelp_status kelp_import_idx(const char *train_images, const char *train_labels, const char *test_images,
                            const char *test_labels, const char *out_path, const kelp_import_options *options,
                            kelp_import_summary *summary);

/* The stratified split described above: out[i] receives the split of item i (labels in [0, class_count)). */
kelp_status kelp_import_assign_splits(const int32_t *labels, int64_t count, int class_count, double val_fraction,
                                      double test_fraction, uint64_t seed, uint8_t *out);

#ifdef __cplusplus
}
#endif
#endif
