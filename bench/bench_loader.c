/* bench_loader: images per second through the data loader with the training augmentations.
 *
 *   bench_loader [--images 300] [--side 300] [--size 224] [--batch 32] [--epochs 3] [--threads 1,2]
 *
 * Writes a temporary HDF5 dataset of `images` variable-size RGB images (sides drawn around `side`, +-15%), then,
 * for each thread count, runs `epochs` epochs of a loader producing size x size batches with random resized crop,
 * horizontal and vertical flips, brightness/contrast jitter and ImageNet normalization, after one warmup epoch.
 * Two single-threaded rows split the work: reading and decoding the records alone, and augmenting plus
 * normalizing in-memory images alone. Prints a markdown table. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/augment.h"
#include "io/dataset.h"
#include "io/loader.h"

#define MAX_THREAD_COUNTS 8

typedef struct options {
    int images, side, size, batch, epochs;
    int threads[MAX_THREAD_COUNTS], n_threads;
} options;

static const float IMAGENET_MEAN[3] = {0.485f, 0.456f, 0.406f}, IMAGENET_STD[3] = {0.229f, 0.224f, 0.225f};

static void usage(FILE *to)
{
    fprintf(to, "usage: bench_loader [--images 300] [--side 300] [--size 224] [--batch 32] [--epochs 3]\n"
                "                    [--threads 1,2]\n");
}

/* The library reports what failed; the benchmark only adds what it was doing. */
static void check(kelp_status s, const char *doing)
{
    if (s == KELP_OK)
        return;
    fprintf(stderr, "bench_loader: %s: %s\n", doing, kelp_last_error());
    exit(1);
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "bench_loader: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static int parse_int(const char *flag, const char *text, int min, int max)
{
    char *end;
    long v = text ? strtol(text, &end, 10) : 0;
    if (!text || end == text || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "bench_loader: %s needs an integer in %d..%d, got '%s'\n", flag, min, max,
                text ? text : "");
        usage(stderr);
        exit(2);
    }
    return (int)v;
}

static void parse_thread_list(options *o, const char *text)
{
    char buf[128];
    if (!text || strlen(text) >= sizeof buf) {
        fprintf(stderr, "bench_loader: --threads needs a list like 1,2\n");
        exit(2);
    }
    strcpy(buf, text);
    o->n_threads = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (o->n_threads == MAX_THREAD_COUNTS) {
            fprintf(stderr, "bench_loader: at most %d thread counts\n", MAX_THREAD_COUNTS);
            exit(2);
        }
        o->threads[o->n_threads++] = parse_int("--threads", tok, 1, KELP_LOADER_MAX_THREADS);
    }
}

static options parse_args(int argc, char **argv)
{
    options o = {.images = 300, .side = 300, .size = 224, .batch = 32, .epochs = 3, .threads = {1, 2},
                 .n_threads = 2};
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(flag, "--help") == 0 || strcmp(flag, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(flag, "--images") == 0) {
            o.images = parse_int(flag, value, 1, 100000);
        } else if (strcmp(flag, "--side") == 0) {
            o.side = parse_int(flag, value, 8, 4096);
        } else if (strcmp(flag, "--size") == 0) {
            o.size = parse_int(flag, value, 1, 4096);
        } else if (strcmp(flag, "--batch") == 0) {
            o.batch = parse_int(flag, value, 1, 4096);
        } else if (strcmp(flag, "--epochs") == 0) {
            o.epochs = parse_int(flag, value, 1, 1000);
        } else if (strcmp(flag, "--threads") == 0) {
            parse_thread_list(&o, value);
        } else {
            fprintf(stderr, "bench_loader: unknown option '%s'\n", flag);
            usage(stderr);
            exit(2);
        }
        i++;
    }
    return o;
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Smooth gradients plus noise: something like a photograph for the compressor, not a constant. */
static void fill_image(uint8_t *pixels, int h, int w, uint64_t *rng)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                pixels[((size_t)y * w + x) * 3 + c] =
                    (uint8_t)((x * (c + 1) + y * (3 - c)) / 3 + (int)(next_random(rng) % 16));
}

static int side_around(int side, uint64_t *rng)
{
    int spread = side * 15 / 100;
    return side - spread + (int)(next_random(rng) % (uint64_t)(2 * spread + 1));
}

static void write_dataset(const char *path, const options *o)
{
    const char *names[2] = {"a", "b"};
    kelp_dataset_info info = {.task = KELP_TASK_CLASSIFY, .class_names = names, .class_count = 2,
                              .source = "bench_loader"};
    kelp_dataset_writer *w;
    check(kelp_dataset_create(path, &info, &w), "creating the dataset");
    check(kelp_dataset_begin_split(w, KELP_SPLIT_TRAIN, NULL), "starting the train split");
    int max_side = o->side + o->side * 15 / 100;
    uint8_t *pixels = xmalloc((size_t)max_side * max_side * 3);
    uint64_t rng = 1;
    for (int i = 0; i < o->images; i++) {
        int h = side_around(o->side, &rng), wd = side_around(o->side, &rng);
        fill_image(pixels, h, wd, &rng);
        kelp_dataset_record rec = {.pixels = pixels, .shape = {(uint32_t)h, (uint32_t)wd, 3}, .label = i % 2,
                                   .image_id = i};
        check(kelp_dataset_append(w, &rec), "appending an image");
    }
    free(pixels);
    check(kelp_dataset_writer_finish(w), "finishing the dataset");
}

static void train_augmentations(kelp_augment_config *a, int size)
{
    kelp_augment_config_init(a, size, size);
    a->random_resized_crop = a->hflip = a->vflip = true;
    a->brightness = a->contrast = 0.2f;
}

/* Images per second over `epochs` loader epochs, after one warmup epoch. */
static double time_loader(kelp_dataset *ds, const options *o, int threads)
{
    kelp_loader_config cfg;
    kelp_loader_config_init(&cfg, KELP_SPLIT_TRAIN, o->batch, o->size, o->size);
    cfg.threads = threads;
    cfg.shuffle = true;
    cfg.seed = 1;
    train_augmentations(&cfg.augment, o->size);
    memcpy(cfg.mean, IMAGENET_MEAN, sizeof IMAGENET_MEAN);
    memcpy(cfg.std, IMAGENET_STD, sizeof IMAGENET_STD);
    kelp_loader *l;
    check(kelp_loader_create(ds, &cfg, &l), "creating the loader");
    double start = 0;
    int64_t images = 0;
    for (int epoch = 0; epoch <= o->epochs; epoch++) {
        if (epoch == 1)
            start = now_seconds();
        check(kelp_loader_start_epoch(l, epoch, 0), "starting an epoch");
        const kelp_batch *b;
        for (;;) {
            check(kelp_loader_next(l, &b), "loading a batch");
            if (!b)
                break;
            images += epoch > 0 ? b->n : 0;
        }
    }
    double seconds = now_seconds() - start;
    kelp_loader_destroy(l);
    return (double)images / seconds;
}

/* Reading and decoding every record, on this thread. */
static double time_reading(kelp_dataset *ds, const options *o)
{
    int max_side = o->side + o->side * 15 / 100;
    size_t cap = (size_t)max_side * max_side * 3;
    uint8_t *pixels = xmalloc(cap);
    double start = now_seconds();
    for (int e = 0; e < o->epochs; e++)
        for (int64_t i = 0; i < o->images; i++)
            check(kelp_dataset_read_image(ds, KELP_SPLIT_TRAIN, i, pixels, cap), "reading an image");
    double seconds = now_seconds() - start;
    free(pixels);
    return (double)o->images * o->epochs / seconds;
}

/* Augmenting and normalizing in-memory images, on this thread. */
static double time_augmenting(const options *o)
{
    enum { POOL = 16 };
    uint8_t *images[POOL];
    int sides[POOL][2];
    uint64_t rng = 2;
    for (int i = 0; i < POOL; i++) {
        sides[i][0] = side_around(o->side, &rng), sides[i][1] = side_around(o->side, &rng);
        images[i] = xmalloc((size_t)sides[i][0] * sides[i][1] * 3);
        fill_image(images[i], sides[i][0], sides[i][1], &rng);
    }
    kelp_augment_config a;
    train_augmentations(&a, o->size);
    size_t values = (size_t)o->size * o->size * 3;
    uint8_t *out = xmalloc(values);
    float *normalized = xmalloc(values * sizeof *normalized);
    int total = o->images * o->epochs;
    double start = now_seconds();
    for (int k = 0; k < total; k++) {
        kelp_augment_input in = {.pixels = images[k % POOL], .h = sides[k % POOL][0], .w = sides[k % POOL][1],
                                 .c = 3};
        kelp_augment_output res = {.pixels = out};
        check(kelp_augment_sample(&a, 1, (uint64_t)k, &in, &res), "augmenting");
        check(kelp_augment_normalize(out, (size_t)o->size * o->size, 3, IMAGENET_MEAN, IMAGENET_STD, normalized),
              "normalizing");
    }
    double seconds = now_seconds() - start;
    for (int i = 0; i < POOL; i++)
        free(images[i]);
    free(out);
    free(normalized);
    return total / seconds;
}

int main(int argc, char **argv)
{
    options o = parse_args(argc, argv);
    char path[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/kelp-bench-loader-%d.h5", tmp ? tmp : "/tmp", (int)getpid());
    double t0 = now_seconds();
    write_dataset(path, &o);
    double written = now_seconds() - t0;
    kelp_dataset *ds;
    check(kelp_dataset_open(path, &ds), "opening the dataset");

    printf("%d RGB images of about %dx%d (+-15%%), written in %.1f s; batches of %d at %dx%d; train augmentations "
           "(random resized crop, h+v flips, brightness/contrast 0.2, normalization); %d timed epochs\n\n",
           o.images, o.side, o.side, written, o.batch, o.size, o.size, o.epochs);
    printf("| measurement | threads | images/s | images/s per thread | ms per image |\n|---|---:|---:|---:|---:|\n");
    double read = time_reading(ds, &o), augment = time_augmenting(&o);
    printf("| read + decode only (HDF5) | 1 | %.0f | %.0f | %.2f |\n", read, read, 1000.0 / read);
    printf("| augment + normalize only | 1 | %.0f | %.0f | %.2f |\n", augment, augment, 1000.0 / augment);
    for (int i = 0; i < o.n_threads; i++) {
        double rate = time_loader(ds, &o, o.threads[i]);
        printf("| loader (read, augment, normalize, batch) | %d | %.0f | %.0f | %.2f |\n", o.threads[i], rate,
               rate / o.threads[i], 1000.0 / rate);
    }
    kelp_dataset_close(ds);
    if (remove(path) != 0)
        fprintf(stderr, "bench_loader: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}
