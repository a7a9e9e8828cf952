/* The loader: sample positions of an epoch are claimed in order by the workers, one sample at a time, so every
 * worker helps with the batch the consumer waits for. Batch b lives in slot b % prefetch; a worker may claim a
 * sample of batch b only while b < released + prefetch, released being the batch the consumer holds or waits for,
 * so a slot is never refilled while the consumer reads it. One mutex guards the shared state; the pixels are
 * written outside it, each worker into its own samples. */
#include "io/loader.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERROR_LEN 1024
/* Keeps the shuffle's stream apart from the augmentation streams drawn with the same seed. */
#define SHUFFLE_SALT 0x53485546464C45ull

typedef struct slot {
    kelp_batch batch;
    int finished;        /* samples done, failed ones included */
    int failed_sample;   /* the first failing sample of the batch; -1: none */
    kelp_status status;
    char error[ERROR_LEN];
} slot;

/* Per-worker scratch: the record as read, before augmentation. */
typedef struct worker {
    struct kelp_loader *loader;
    pthread_t thread;
    uint8_t *pixels, *mask;
    size_t pixels_cap, mask_cap;
    float *boxes;
    int32_t *box_labels;
} worker;

struct kelp_loader {
    kelp_dataset *ds;
    kelp_loader_config cfg;
    int out_c;
    kelp_task task;
    int64_t count, batches, samples_per_epoch;
    const int32_t *labels;
    uint32_t *order;     /* the epoch's permutation; 32 bits hold KELP_DATASET_MAX_IMAGES */
    slot *slots;
    worker *workers;
    int n_workers;       /* started */

    pthread_mutex_t lock;
    pthread_cond_t work;  /* workers wait for claimable samples */
    pthread_cond_t done;  /* the consumer waits for a batch, or for in-flight samples to drain */
    bool quit, active, holding;
    int64_t epoch;
    int64_t next_claim;  /* the next sample position of the epoch */
    int64_t released;    /* the batch the consumer holds (holding) or waits for */
    int in_flight;
};

void kelp_loader_config_init(kelp_loader_config *cfg, kelp_split split, int batch_size, int out_h, int out_w)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->split = split;
    cfg->batch_size = batch_size;
    cfg->threads = 2;
    cfg->prefetch = 4;
    kelp_augment_config_init(&cfg->augment, out_h, out_w);
    for (int c = 0; c < KELP_AUGMENT_MAX_CHANNELS; c++)
        cfg->std[c] = 1.0f;
    cfg->max_boxes = 100;
}

int64_t kelp_loader_batches_per_epoch(const kelp_loader *loader)
{
    return loader ? loader->batches : 0;
}

/* ------------------------------------------------------------------------------------------------- creation */

static kelp_status check_config(const kelp_dataset *ds, const kelp_loader_config *cfg)
{
    const char *path = kelp_dataset_path(ds);
    if (cfg->split < KELP_SPLIT_TRAIN || cfg->split >= KELP_SPLIT_COUNT)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: loader: unknown split %d", path, (int)cfg->split);
    if (cfg->batch_size < 1 || cfg->batch_size > KELP_LOADER_MAX_BATCH)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: loader: batch size %d is outside 1..%d", path,
                              cfg->batch_size, KELP_LOADER_MAX_BATCH);
    if (cfg->threads < 1 || cfg->threads > KELP_LOADER_MAX_THREADS)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: loader: %d threads is outside 1..%d", path, cfg->threads,
                              KELP_LOADER_MAX_THREADS);
    if (cfg->prefetch < 1 || cfg->prefetch > KELP_LOADER_MAX_PREFETCH)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: loader: prefetch %d is outside 1..%d", path,
                              cfg->prefetch, KELP_LOADER_MAX_PREFETCH);
    if (cfg->max_boxes < 0 || cfg->max_boxes > KELP_DATASET_MAX_BOXES_PER_IMAGE)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: loader: max_boxes %d is outside 0..%d", path,
                              cfg->max_boxes, KELP_DATASET_MAX_BOXES_PER_IMAGE);
    if (kelp_augment_config_check(&cfg->augment) != KELP_OK)
        return kelp_wrap_error(KELP_ERR_INVALID_ARG, "%s: loader: ", path);
    return KELP_OK;
}

/* The batch's channels: the configured ones, else those of the split's first image. */
static kelp_status resolve_channels(kelp_loader *l)
{
    const char *path = kelp_dataset_path(l->ds), *split = kelp_split_name(l->cfg.split);
    l->count = kelp_dataset_count(l->ds, l->cfg.split);
    if (l->count <= 0)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: loader: the split '%s' has no records", path, split);
    kelp_image_shape first;
    KELP_TRY(kelp_dataset_image_shape(l->ds, l->cfg.split, 0, &first));
    l->out_c = kelp_augment_out_channels(&l->cfg.augment, (int)first.c);
    /* normalizing no pixels checks the mean and the std */
    uint8_t pixel = 0;
    float value;
    if (kelp_augment_normalize(&pixel, 0, l->out_c, l->cfg.mean, l->cfg.std, &value) != KELP_OK)
        return kelp_wrap_error(KELP_ERR_INVALID_ARG, "%s: loader: ", path);
    return KELP_OK;
}

static void *alloc_array(size_t count, size_t size, bool wanted)
{
    return wanted ? calloc(count ? count : 1, size) : NULL;
}

static kelp_status alloc_slot(kelp_loader *l, slot *s)
{
    const kelp_loader_config *c = &l->cfg;
    size_t n = (size_t)c->batch_size, plane = (size_t)c->augment.out_h * (size_t)c->augment.out_w;
    size_t values = n * plane * (size_t)l->out_c, boxes = n * (size_t)c->max_boxes;
    bool detect = l->task == KELP_TASK_DETECT;
    kelp_batch *b = &s->batch;
    b->h = c->augment.out_h, b->w = c->augment.out_w, b->c = l->out_c, b->max_boxes = detect ? c->max_boxes : 0;
    b->images = alloc_array(values, sizeof *b->images, !c->pixels_only);
    b->pixels = alloc_array(values, sizeof *b->pixels, true);
    b->indices = alloc_array(n, sizeof *b->indices, true);
    b->labels = alloc_array(n, sizeof *b->labels, l->task == KELP_TASK_CLASSIFY);
    b->masks = alloc_array(n * plane, sizeof *b->masks, l->task == KELP_TASK_SEGMENT);
    b->boxes = alloc_array(boxes * 4, sizeof *b->boxes, detect);
    b->box_labels = alloc_array(boxes, sizeof *b->box_labels, detect);
    b->box_counts = alloc_array(n, sizeof *b->box_counts, detect);
    if ((!c->pixels_only && !b->images) || !b->pixels || !b->indices || (l->task == KELP_TASK_CLASSIFY && !b->labels) ||
        (l->task == KELP_TASK_SEGMENT && !b->masks) || (detect && (!b->boxes || !b->box_labels || !b->box_counts)))
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: loader: out of memory for a batch of %d images of %dx%dx%d",
                              kelp_dataset_path(l->ds), c->batch_size, b->h, b->w, b->c);
    return KELP_OK;
}

static void free_slot(slot *s)
{
    kelp_batch *b = &s->batch;
    free(b->images);
    free(b->pixels);
    free(b->indices);
    free(b->labels);
    free(b->masks);
    free(b->boxes);
    free(b->box_labels);
    free(b->box_counts);
}

/* A batch holds at most KELP_LOADER_MAX_BATCH images of at most 16384^2 * 4 values: the sizes below stay far from
 * 64-bit overflow, but a caller could still ask for more memory than exists; cap it. */
static kelp_status check_batch_bytes(const kelp_loader *l)
{
    const kelp_loader_config *c = &l->cfg;
    uint64_t bytes = (uint64_t)c->batch_size * (uint64_t)c->augment.out_h * (uint64_t)c->augment.out_w *
                     (uint64_t)l->out_c * (sizeof(float) + 2) * (uint64_t)c->prefetch;
    if (bytes > ((uint64_t)1 << 40))
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: loader: %d batches of %d images of %dx%dx%d need %llu bytes",
                              kelp_dataset_path(l->ds), c->prefetch, c->batch_size, c->augment.out_h,
                              c->augment.out_w, l->out_c, (unsigned long long)bytes);
    return KELP_OK;
}

static kelp_status alloc_buffers(kelp_loader *l)
{
    KELP_TRY(check_batch_bytes(l));
    l->order = malloc((size_t)l->count * sizeof *l->order);
    l->slots = calloc((size_t)l->cfg.prefetch, sizeof *l->slots);
    l->workers = calloc((size_t)l->cfg.threads, sizeof *l->workers);
    if (!l->order || !l->slots || !l->workers)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: loader: out of memory for %lld records",
                              kelp_dataset_path(l->ds), (long long)l->count);
    for (int i = 0; i < l->cfg.prefetch; i++)
        KELP_TRY(alloc_slot(l, &l->slots[i]));
    return KELP_OK;
}

/* ----------------------------------------------------------------------------------------------- one sample */

static kelp_status grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return KELP_OK;
    uint8_t *p = realloc(*buf, need);
    if (!p)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory for a record of %zu bytes", need);
    *buf = p;
    *cap = need;
    return KELP_OK;
}

/* Reads the boxes of one record into the worker's scratch, which holds the most a valid file allows. */
static kelp_status read_boxes(kelp_loader *l, worker *w, int64_t index, kelp_augment_input *in)
{
    if (!w->boxes) {
        w->boxes = malloc((size_t)KELP_DATASET_MAX_BOXES_PER_IMAGE * 4 * sizeof *w->boxes);
        w->box_labels = malloc((size_t)KELP_DATASET_MAX_BOXES_PER_IMAGE * sizeof *w->box_labels);
        if (!w->boxes || !w->box_labels)
            return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory for the boxes of a record");
    }
    KELP_TRY(kelp_dataset_read_boxes(l->ds, l->cfg.split, index, w->boxes, w->box_labels,
                                     KELP_DATASET_MAX_BOXES_PER_IMAGE, &in->n_boxes));
    in->boxes = w->boxes;
    in->box_labels = w->box_labels;
    return KELP_OK;
}

static kelp_status read_record(kelp_loader *l, worker *w, int64_t index, kelp_augment_input *in)
{
    kelp_image_shape shape;
    KELP_TRY(kelp_dataset_image_shape(l->ds, l->cfg.split, index, &shape));
    size_t plane = (size_t)shape.h * shape.w, bytes = plane * shape.c;
    KELP_TRY(grow(&w->pixels, &w->pixels_cap, bytes));
    KELP_TRY(kelp_dataset_read_image(l->ds, l->cfg.split, index, w->pixels, bytes));
    *in = (kelp_augment_input){.pixels = w->pixels, .h = (int)shape.h, .w = (int)shape.w, .c = (int)shape.c};
    if (l->task == KELP_TASK_SEGMENT) {
        KELP_TRY(grow(&w->mask, &w->mask_cap, plane));
        KELP_TRY(kelp_dataset_read_mask(l->ds, l->cfg.split, index, w->mask, plane));
        in->mask = w->mask;
    }
    if (l->task == KELP_TASK_DETECT)
        KELP_TRY(read_boxes(l, w, index, in));
    return KELP_OK;
}

/* Reads, augments and normalizes record `index` into sample i of the batch. */
static kelp_status load_sample(kelp_loader *l, worker *w, kelp_batch *b, int i, int64_t index, int64_t epoch)
{
    kelp_augment_input in;
    KELP_TRY(read_record(l, w, index, &in));
    size_t plane = (size_t)b->h * b->w, values = plane * b->c;
    kelp_augment_output out = {.pixels = b->pixels + values * i};
    if (b->masks)
        out.mask = b->masks + plane * i;
    if (b->boxes) {
        out.boxes = b->boxes + (size_t)b->max_boxes * 4 * i;
        out.box_labels = b->box_labels + (size_t)b->max_boxes * i;
        out.max_boxes = b->max_boxes;
    }
    uint64_t key = ((uint64_t)epoch << 32) | (uint64_t)index;
    KELP_TRY(kelp_augment_sample(&l->cfg.augment, l->cfg.seed, key, &in, &out));
    if (b->images)
        KELP_TRY(kelp_augment_normalize(out.pixels, plane, b->c, l->cfg.mean, l->cfg.std, b->images + values * i));
    b->indices[i] = index;
    if (b->labels)
        b->labels[i] = l->labels[index];
    if (b->box_counts)
        b->box_counts[i] = out.n_boxes;
    return KELP_OK;
}

/* ---------------------------------------------------------------------------------------------- the workers */

static bool claimable(const kelp_loader *l)
{
    return l->active && l->next_claim < l->samples_per_epoch &&
           l->next_claim / l->cfg.batch_size < l->released + l->cfg.prefetch;
}

static slot *slot_of(const kelp_loader *l, int64_t batch)
{
    return &l->slots[batch % l->cfg.prefetch];
}

/* Called under the lock when the first sample of `batch` is claimed: the slot's previous batch is released. */
static void open_slot(kelp_loader *l, int64_t batch)
{
    slot *s = slot_of(l, batch);
    int64_t first = batch * l->cfg.batch_size, left = l->samples_per_epoch - first;
    s->batch.n = (int)(left < l->cfg.batch_size ? left : l->cfg.batch_size);
    s->batch.epoch = l->epoch;
    s->batch.number = batch;
    s->finished = 0;
    s->failed_sample = -1;
    s->status = KELP_OK;
}

/* The reader's messages start with the file's path, which the loader's prefix already names. */
static const char *without_path(const kelp_loader *l, const char *message)
{
    const char *path = kelp_dataset_path(l->ds);
    size_t n = strlen(path);
    return strncmp(message, path, n) == 0 && strncmp(message + n, ": ", 2) == 0 ? message + n + 2 : message;
}

/* Called under the lock. A failure keeps the batch's first failing sample: the same whatever the thread count. */
static void finish_sample(kelp_loader *l, slot *s, int i, int64_t index, kelp_status status)
{
    if (status != KELP_OK && (s->failed_sample < 0 || i < s->failed_sample)) {
        s->failed_sample = i;
        s->status = status;
        snprintf(s->error, sizeof s->error, "%s: split '%s', record %lld: %s", kelp_dataset_path(l->ds),
                 kelp_split_name(l->cfg.split), (long long)index, without_path(l, kelp_last_error()));
    }
    s->finished++;
    if (s->finished == s->batch.n)
        pthread_cond_broadcast(&l->done);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    kelp_loader *l = w->loader;
    pthread_mutex_lock(&l->lock);
    for (;;) {
        while (!l->quit && !claimable(l))
            pthread_cond_wait(&l->work, &l->lock);
        if (l->quit)
            break;
        int64_t pos = l->next_claim++, batch = pos / l->cfg.batch_size, epoch = l->epoch;
        int i = (int)(pos % l->cfg.batch_size);
        if (i == 0)
            open_slot(l, batch);
        slot *s = slot_of(l, batch);
        int64_t index = l->order[pos];
        l->in_flight++;
        pthread_mutex_unlock(&l->lock);
        kelp_status status = load_sample(l, w, &s->batch, i, index, epoch);
        pthread_mutex_lock(&l->lock);
        finish_sample(l, s, i, index, status);
        if (--l->in_flight == 0)
            pthread_cond_broadcast(&l->done);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

static void free_worker(worker *w)
{
    free(w->pixels);
    free(w->mask);
    free(w->boxes);
    free(w->box_labels);
}

static kelp_status start_workers(kelp_loader *l)
{
    for (int i = 0; i < l->cfg.threads; i++) {
        l->workers[i].loader = l;
        int err = pthread_create(&l->workers[i].thread, NULL, worker_main, &l->workers[i]);
        if (err)
            return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: loader: cannot start worker thread %d: %s",
                                  kelp_dataset_path(l->ds), i, strerror(err));
        l->n_workers++;
    }
    return KELP_OK;
}

static kelp_status init_sync(kelp_loader *l)
{
    if (pthread_mutex_init(&l->lock, NULL))
        return kelp_set_error(KELP_ERR_NO_MEMORY, "loader: cannot create a mutex");
    if (pthread_cond_init(&l->work, NULL)) {
        pthread_mutex_destroy(&l->lock);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "loader: cannot create a condition variable");
    }
    if (pthread_cond_init(&l->done, NULL)) {
        pthread_cond_destroy(&l->work);
        pthread_mutex_destroy(&l->lock);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "loader: cannot create a condition variable");
    }
    return KELP_OK;
}

kelp_status kelp_loader_create(kelp_dataset *ds, const kelp_loader_config *cfg, kelp_loader **out)
{
    if (!out)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_loader_create: out is NULL");
    *out = NULL;
    if (!ds || !cfg)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_loader_create: no dataset or no config");
    KELP_TRY(check_config(ds, cfg));
    kelp_loader *l = calloc(1, sizeof *l);
    if (!l)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: loader: out of memory", kelp_dataset_path(ds));
    l->ds = ds;
    l->cfg = *cfg;
    l->task = kelp_dataset_task(ds);
    l->labels = kelp_dataset_labels(ds, cfg->split);
    kelp_status s = init_sync(l);
    if (s != KELP_OK) {
        free(l);
        return s;
    }
    l->samples_per_epoch = 0;
    if ((s = resolve_channels(l)) == KELP_OK && (s = alloc_buffers(l)) == KELP_OK) {
        l->samples_per_epoch = cfg->drop_last ? l->count - l->count % cfg->batch_size : l->count;
        l->batches = (l->samples_per_epoch + cfg->batch_size - 1) / cfg->batch_size;
        s = start_workers(l);
    }
    if (s != KELP_OK) {
        kelp_loader_destroy(l);
        return s;
    }
    *out = l;
    return KELP_OK;
}

void kelp_loader_destroy(kelp_loader *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->lock);
    l->quit = true;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->lock);
    for (int i = 0; i < l->n_workers; i++)
        pthread_join(l->workers[i].thread, NULL);
    for (int i = 0; l->workers && i < l->cfg.threads; i++)
        free_worker(&l->workers[i]);
    for (int i = 0; l->slots && i < l->cfg.prefetch; i++)
        free_slot(&l->slots[i]);
    pthread_cond_destroy(&l->done);
    pthread_cond_destroy(&l->work);
    pthread_mutex_destroy(&l->lock);
    free(l->workers);
    free(l->slots);
    free(l->order);
    free(l);
}

/* --------------------------------------------------------------------------------------------- the consumer */

/* Fisher-Yates driven by (seed, epoch) alone. */
static void shuffle_order(kelp_loader *l, int64_t epoch)
{
    for (int64_t i = 0; i < l->count; i++)
        l->order[i] = (uint32_t)i;
    if (!l->cfg.shuffle)
        return;
    kelp_aug_rng rng = kelp_aug_rng_make(l->cfg.seed ^ SHUFFLE_SALT, (uint64_t)epoch);
    for (int64_t i = l->count - 1; i > 0; i--) {
        int64_t j = (int64_t)kelp_aug_rng_below(&rng, (uint64_t)i + 1);
        uint32_t t = l->order[i];
        l->order[i] = l->order[j];
        l->order[j] = t;
    }
}

kelp_status kelp_loader_start_epoch(kelp_loader *l, int64_t epoch, int64_t first_batch)
{
    if (!l)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_loader_start_epoch: loader is NULL");
    if (epoch < 0 || epoch > UINT32_MAX || first_batch < 0 || first_batch > l->batches)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: loader: cannot start epoch %lld at batch %lld of %lld",
                              kelp_dataset_path(l->ds), (long long)epoch, (long long)first_batch,
                              (long long)l->batches);
    pthread_mutex_lock(&l->lock);
    l->active = false;
    while (l->in_flight > 0)
        pthread_cond_wait(&l->done, &l->lock);
    shuffle_order(l, epoch);
    for (int i = 0; i < l->cfg.prefetch; i++)
        l->slots[i].batch.number = -1;
    l->epoch = epoch;
    l->next_claim = first_batch * l->cfg.batch_size;
    l->released = first_batch;
    l->holding = false;
    l->active = true;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->lock);
    return KELP_OK;
}

static bool batch_ready(const kelp_loader *l, const slot *s)
{
    return s->batch.number == l->released && s->finished == s->batch.n;
}

kelp_status kelp_loader_next(kelp_loader *l, const kelp_batch **batch)
{
    if (!batch)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_loader_next: batch is NULL");
    *batch = NULL;
    if (!l)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_loader_next: loader is NULL");
    pthread_mutex_lock(&l->lock);
    if (!l->active) {
        pthread_mutex_unlock(&l->lock);
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: loader: no epoch started", kelp_dataset_path(l->ds));
    }
    if (l->holding) {
        l->holding = false;
        l->released++;
        pthread_cond_broadcast(&l->work);
    }
    kelp_status status = KELP_OK;
    if (l->released < l->batches) {
        slot *s = slot_of(l, l->released);
        while (!batch_ready(l, s))
            pthread_cond_wait(&l->done, &l->lock);
        if (s->failed_sample >= 0) {
            status = kelp_set_error(s->status, "%s", s->error);
        } else {
            l->holding = true;
            *batch = &s->batch;
        }
    }
    pthread_mutex_unlock(&l->lock);
    return status;
}

const kelp_loader_config *kelp_loader_config_of(const kelp_loader *l) { return &l->cfg; }

void kelp_loader_position(kelp_loader *l, int64_t *epoch, int64_t *next_batch)
{
    *epoch = *next_batch = 0;
    if (!l)
        return;
    pthread_mutex_lock(&l->lock);
    *epoch = l->epoch;
    *next_batch = l->released + (l->holding ? 1 : 0);
    pthread_mutex_unlock(&l->lock);
}
