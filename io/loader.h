/* kelp io: the data loader. Worker threads read records of one dataset split, augment them (io/augment.h) and
 * assemble batches; the consumer takes the batches in order.
 *
 *   kelp_loader_config cfg;
 *   kelp_loader_config_init(&cfg, KELP_SPLIT_TRAIN, 64, 224, 224);
 *   cfg.shuffle = true, cfg.augment.random_resized_crop = cfg.augment.hflip = true;
 *   KELP_TRY(kelp_loader_create(ds, &cfg, &loader));
 *   for (int64_t epoch = 0; epoch < epochs; epoch++) {
 *       KELP_TRY(kelp_loader_start_epoch(loader, epoch, 0));
 *       const kelp_batch *b;
 *       while ((s = kelp_loader_next(loader, &b)) == KELP_OK && b)
 *           train_on(b);                        // b stays valid until the next kelp_loader_next
 *   }
 *   kelp_loader_destroy(loader);
 *
 * Determinism: an epoch's order is a Fisher-Yates shuffle drawn from (seed, epoch) alone, and each sample's
 * augmentation from (seed, epoch, dataset index) alone (io/augment.h, key = epoch << 32 | index), so the batches
 * are the same bit for bit with any thread count and on every run. Resuming: kelp_loader_position says how many
 * batches of which epoch the consumer has received; kelp_loader_start_epoch(epoch, that count) continues with
 * exactly the batches an uninterrupted run would have produced next.
 *
 * Memory: `prefetch` batches are allocated at create and recycled, the one the consumer holds included: workers
 * run at most prefetch - 1 batches ahead of it. Each worker also keeps a scratch buffer as large as the largest
 * image it has read.
 *
 * Errors: a record that fails to read or augment stops the loader at its batch: the batches before it arrive
 * normally, then kelp_loader_next returns the failure, naming the file, the split and the record index (the first
 * failing record of that batch), and keeps returning it until the next kelp_loader_start_epoch. The workers fill
 * the free slots and then wait; kelp_loader_destroy joins them at any time.
 *
 * Channels: the batch has augment.out_c channels (0: those of the split's first image); each image is converted
 * as io/augment.h describes (gray replicated, RGB to luma, alpha dropped). Targets follow the dataset's task:
 * labels for classify, masks for segment, boxes for detect. */
#ifndef KELP_IO_LOADER_H
#define KELP_IO_LOADER_H

#include <stdbool.h>
#include <stdint.h>

#include "io/augment.h"
#include "io/dataset.h"
#include "kelp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KELP_LOADER_MAX_THREADS 256
#define KELP_LOADER_MAX_PREFETCH 64
#define KELP_LOADER_MAX_BATCH 65536

typedef struct kelp_loader_config {
    kelp_split split;
    int batch_size;
    int threads;        /* worker threads */
    int prefetch;       /* batches in memory, the consumer's included */
    bool shuffle;       /* false: dataset order */
    bool drop_last;     /* false: the last batch may be short */
    uint64_t seed;
    kelp_augment_config augment;               /* output size and channels, fit, random ops */
    float mean[KELP_AUGMENT_MAX_CHANNELS];     /* per output channel, on pixels scaled to [0, 1] */
    float std[KELP_AUGMENT_MAX_CHANNELS];
    int max_boxes;      /* detect: boxes kept per image; more is an error naming the record */
    /* Batches carry pixels but no float images: the consumer normalizes them where it computes (a GPU's
     * prepare_images), so the loader threads skip that work and the memory. */
    bool pixels_only;
} kelp_loader_config;

/* batch_size images of out_h x out_w, 2 threads, prefetch 4, dataset order, short last batch, seed 0, eval-mode
 * augmentation (kelp_augment_config_init), mean 0 and std 1 (images = pixels / 255), 100 boxes per image. */
void kelp_loader_config_init(kelp_loader_config *cfg, kelp_split split, int batch_size, int out_h, int out_w);

typedef struct kelp_batch {
    int n;               /* images in this batch: batch_size, fewer in a short last batch */
    int h, w, c;
    int64_t epoch, number; /* which batch (0-based) of which epoch */
    float *images;       /* (n,h,w,c): (pixel / 255 - mean) / std; NULL with pixels_only */
    uint8_t *pixels;     /* (n,h,w,c): the augmented pixels */
    int64_t *indices;    /* (n): dataset indices of the images */
    int32_t *labels;     /* classify: (n); NULL otherwise */
    uint8_t *masks;      /* segment: (n,h,w), 255 = ignore; NULL otherwise */
    float *boxes;        /* detect: (n,max_boxes,4) x1,y1,x2,y2 in output pixels; NULL otherwise */
    int32_t *box_labels; /* detect: (n,max_boxes) */
    int32_t *box_counts; /* detect: (n) boxes of each image */
    int max_boxes;
} kelp_batch;

typedef struct kelp_loader kelp_loader;

/* Validates the config against the dataset (an empty split is an error), allocates the batches and starts the
 * workers. The dataset must outlive the loader. No epoch runs until kelp_loader_start_epoch. */
kelp_status kelp_loader_create(kelp_dataset *ds, const kelp_loader_config *cfg, kelp_loader **out);
/* Stops and joins the workers (mid-epoch too) and frees everything. NULL is a no-op. */
void kelp_loader_destroy(kelp_loader *loader);

/* The configuration the loader runs with (its mean and std normalize the pixels). */
const kelp_loader_config *kelp_loader_config_of(const kelp_loader *loader);

/* Batches per epoch: count / batch_size, rounded up unless drop_last. */
int64_t kelp_loader_batches_per_epoch(const kelp_loader *loader);

/* Abandons whatever runs and starts `epoch` at batch first_batch (0 <= first_batch <= batches per epoch). */
kelp_status kelp_loader_start_epoch(kelp_loader *loader, int64_t epoch, int64_t first_batch);
/* The next batch in order, or *batch = NULL at the end of the epoch. The batch stays valid until the next call. */
kelp_status kelp_loader_next(kelp_loader *loader, const kelp_batch **batch);
/* The current epoch and how many of its batches the consumer has received (including the one it holds): the
 * arguments of kelp_loader_start_epoch that resume right after it. */
void kelp_loader_position(kelp_loader *loader, int64_t *epoch, int64_t *next_batch);

#ifdef __cplusplus
}
#endif
#endif
