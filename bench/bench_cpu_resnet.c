/* bench_cpu_resnet: times a zoo ResNet on the CPU backend.
 *
 *   bench_cpu_resnet [--model resnet18] [--batch 8] [--size 224] [--threads N] [--warmup 2] [--iters 10] [--json]
 *
 * Measures (a) inference forward (graph built without training), (b) one training step (forward, zero_grad,
 * backward of the loss on random labels) and (c) every distinct 3x3 convolution of the model alone through the
 * backend (forward, backward-data, backward-filter) at the same batch. Each time is the median, min and max over
 * `iters` runs after `warmup` runs. bench/torch_resnet.py measures the same things in PyTorch with the same JSON
 * keys, and bench/run_cpu_benchmark.sh compares the two. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/graph_internal.h"
#include "engine/layers/conv_common.h"
#include "kelp/kelp.h"

#define MAX_CONV_SHAPES 64

typedef struct options {
    const char *model;
    int batch, size, threads, warmup, iters;
    bool json;
} options;

typedef struct timing {
    double median_ms, min_ms, max_ms;
} timing;

typedef struct conv_shape {
    kelp_conv_desc d;
    int count; /* how many convolutions of the model have this shape */
    timing forward, backward_data, backward_filter;
} conv_shape;

typedef struct results {
    int threads;
    timing inference, training;
    int n_convs;
    conv_shape convs[MAX_CONV_SHAPES];
} results;

static void usage(FILE *to)
{
    fprintf(to, "usage: bench_cpu_resnet [--model resnet18] [--batch 8] [--size 224] [--threads N] [--warmup 2]\n"
                "                        [--iters 10] [--json]\n"
                "  --threads 0 (the default) uses every core\n");
}

/* The library reports what failed; the benchmark only adds what it was doing. */
static void check(kelp_status s, const char *doing)
{
    if (s == KELP_OK)
        return;
    fprintf(stderr, "bench_cpu_resnet: %s: %s\n", doing, kelp_last_error());
    exit(1);
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "bench_cpu_resnet: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static int parse_int(const char *flag, const char *text, int min)
{
    char *end;
    long v = text ? strtol(text, &end, 10) : 0;
    if (!text || *end != '\0' || end == text || v < min || v > INT_MAX) {
        fprintf(stderr, "bench_cpu_resnet: %s needs an integer >= %d, got '%s'\n", flag, min, text ? text : "");
        usage(stderr);
        exit(2);
    }
    return (int)v;
}

static options parse_args(int argc, char **argv)
{
    options o = {.model = "resnet18", .batch = 8, .size = 224, .threads = 0, .warmup = 2, .iters = 10};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            o.json = true;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--model") == 0 && next)
            o.model = next;
        else if (strcmp(a, "--batch") == 0)
            o.batch = parse_int(a, next, 1);
        else if (strcmp(a, "--size") == 0)
            o.size = parse_int(a, next, 1);
        else if (strcmp(a, "--threads") == 0)
            o.threads = parse_int(a, next, 0);
        else if (strcmp(a, "--warmup") == 0)
            o.warmup = parse_int(a, next, 0);
        else if (strcmp(a, "--iters") == 0)
            o.iters = parse_int(a, next, 1);
        else {
            fprintf(stderr, "bench_cpu_resnet: unknown or incomplete argument '%s'\n", a);
            usage(stderr);
            exit(2);
        }
        i++;
    }
    return o;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef kelp_status (*bench_fn)(void *arg);

/* Runs fn warmup times untimed, then iters times timed. The backend is synchronized after each run so that an
 * asynchronous backend would be timed for its work, not for queuing it. */
static timing measure(const options *o, kelp_backend *be, bench_fn fn, void *arg, const char *what)
{
    for (int i = 0; i < o->warmup; i++) {
        check(fn(arg), what);
        check(be->iface->synchronize(be), what);
    }
    double *ms = xmalloc((size_t)o->iters * sizeof *ms);
    for (int i = 0; i < o->iters; i++) {
        double start = now_ms();
        check(fn(arg), what);
        check(be->iface->synchronize(be), what);
        ms[i] = now_ms() - start;
    }
    qsort(ms, (size_t)o->iters, sizeof *ms, compare_doubles);
    int mid = o->iters / 2;
    timing t = {
        .median_ms = o->iters % 2 ? ms[mid] : 0.5 * (ms[mid - 1] + ms[mid]),
        .min_ms = ms[0],
        .max_ms = ms[o->iters - 1],
    };
    free(ms);
    return t;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* U(-1, 1): the values only need to be finite and not all alike. */
static void upload_random(kelp_backend *be, float *dst, size_t count, uint64_t seed)
{
    float *host = xmalloc(count * sizeof *host);
    for (size_t i = 0; i < count; i++)
        host[i] = (float)((double)(splitmix64(&seed) >> 11) * 0x1.0p-52 - 1.0);
    check(be->iface->upload(be, dst, host, count * sizeof *host), "uploading random data");
    free(host);
}

static kelp_graph *build_graph(kelp_ctx *ctx, const options *o, bool training)
{
    kelp_zoo_options zoo = {.height = o->size, .width = o->size};
    char *json;
    check(kelp_model_zoo_json(o->model, &zoo, &json), "generating the zoo model");
    kelp_graph_options go = kelp_graph_defaults();
    go.batch = o->batch;
    go.training = training;
    go.with_loss = training;
    kelp_graph *g;
    kelp_status s = kelp_graph_build(ctx, json, &go, &g);
    kelp_free(json);
    check(s, training ? "building the training graph" : "building the inference graph");
    check(kelp_graph_fill_random(g, 1), "uploading random input and labels");
    return g;
}

static kelp_status inference_step(void *g) { return kelp_graph_forward(g); }

static kelp_status training_step(void *g)
{
    KELP_TRY(kelp_graph_forward(g));
    KELP_TRY(kelp_graph_zero_grad(g));
    return kelp_graph_backward(g);
}

static bool same_desc(const kelp_conv_desc *a, const kelp_conv_desc *b)
{
    return a->n == b->n && a->h == b->h && a->w == b->w && a->c == b->c && a->k == b->k && a->r == b->r &&
           a->s == b->s && a->stride_h == b->stride_h && a->stride_w == b->stride_w && a->pad_h == b->pad_h &&
           a->pad_w == b->pad_w && a->dil_h == b->dil_h && a->dil_w == b->dil_w && a->groups == b->groups &&
           a->oh == b->oh && a->ow == b->ow;
}

/* The distinct 3x3 convolutions of the graph at its planned batch, in order of first use. */
static void collect_conv3x3(const kelp_graph *g, results *r)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const kelp_node *node = &g->nodes[i];
        const kelp_conv_attrs *a = node->attrs;
        if (strcmp(node->type->name, "conv2d") != 0 || a->kernel[0] != 3 || a->kernel[1] != 3)
            continue;
        const kelp_shape *x = &g->values[node->in[0]].shape, *y = &g->values[node->out].shape;
        kelp_conv_desc d = {
            .n = (int)x->dims[0], .h = (int)x->dims[1], .w = (int)x->dims[2], .c = (int)x->dims[3],
            .k = a->out_channels, .r = a->kernel[0], .s = a->kernel[1],
            .stride_h = a->stride[0], .stride_w = a->stride[1],
            .pad_h = a->padding[0], .pad_w = a->padding[1],
            .dil_h = a->dilation[0], .dil_w = a->dilation[1],
            .groups = a->groups,
            .oh = (int)y->dims[1], .ow = (int)y->dims[2],
        };
        int j = 0;
        while (j < r->n_convs && !same_desc(&r->convs[j].d, &d))
            j++;
        if (j == r->n_convs) {
            if (r->n_convs == MAX_CONV_SHAPES) {
                fprintf(stderr, "bench_cpu_resnet: more than %d distinct 3x3 convolutions\n", MAX_CONV_SHAPES);
                exit(1);
            }
            r->convs[r->n_convs++] = (conv_shape){.d = d};
        }
        r->convs[j].count++;
    }
}

typedef struct conv_buffers {
    kelp_backend *be;
    const kelp_conv_desc *d;
    float *x, *w, *y, *dy, *dx, *dw;
    void *workspace;
} conv_buffers;

static float *alloc_random(kelp_backend *be, size_t count, uint64_t seed)
{
    void *p;
    check(be->iface->alloc(be, count * sizeof(float), &p), "allocating convolution buffers");
    upload_random(be, p, count, seed);
    return p;
}

static kelp_status conv_forward(void *arg)
{
    conv_buffers *b = arg;
    return b->be->iface->conv2d_forward(b->be, b->d, b->x, b->w, NULL, b->y, b->workspace);
}

/* The backward kernels accumulate; the buffers are never read back, so they need no zeroing between runs. */
static kelp_status conv_backward_data(void *arg)
{
    conv_buffers *b = arg;
    return b->be->iface->conv2d_backward_data(b->be, b->d, b->dy, b->w, b->dx, b->workspace);
}

static kelp_status conv_backward_filter(void *arg)
{
    conv_buffers *b = arg;
    return b->be->iface->conv2d_backward_filter(b->be, b->d, b->x, b->dy, b->dw, NULL, b->workspace);
}

static void bench_conv(const options *o, kelp_backend *be, conv_shape *cs)
{
    const kelp_conv_desc *d = &cs->d;
    size_t xs = (size_t)d->n * d->h * d->w * d->c, ys = (size_t)d->n * d->oh * d->ow * d->k;
    size_t ws = (size_t)d->k * d->r * d->s * (d->c / d->groups);
    conv_buffers b = {.be = be, .d = d};
    b.x = alloc_random(be, xs, 3);
    b.dx = alloc_random(be, xs, 4);
    b.w = alloc_random(be, ws, 5);
    b.dw = alloc_random(be, ws, 6);
    b.y = alloc_random(be, ys, 7);
    b.dy = alloc_random(be, ys, 8);
    check(be->iface->alloc(be, be->iface->conv2d_workspace(be, d), &b.workspace), "allocating the workspace");
    cs->forward = measure(o, be, conv_forward, &b, "conv2d forward");
    cs->backward_data = measure(o, be, conv_backward_data, &b, "conv2d backward data");
    cs->backward_filter = measure(o, be, conv_backward_filter, &b, "conv2d backward filter");
    void *buffers[] = {b.x, b.dx, b.w, b.dw, b.y, b.dy, b.workspace};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
        be->iface->free(be, buffers[i]);
}

static double conv_flops(const kelp_conv_desc *d)
{
    return 2.0 * d->n * d->oh * d->ow * d->k * (double)(d->c / d->groups) * d->r * d->s;
}

static double gflops(double flops, double ms) { return flops / (ms * 1e6); }

static results run(const options *o)
{
    kelp_ctx_options co = kelp_ctx_defaults();
    co.threads = o->threads;
    co.seed = 1;
    kelp_ctx *ctx;
    check(kelp_ctx_create(&co, &ctx), "creating the CPU context");
    kelp_backend *be = kelp_ctx_backend(ctx);
    results r = {.threads = kelp_ctx_threads(ctx)};

    /* One graph at a time keeps the peak memory at the training graph's. */
    kelp_graph *g = build_graph(ctx, o, false);
    collect_conv3x3(g, &r);
    r.inference = measure(o, be, inference_step, g, "inference forward");
    kelp_graph_destroy(g);

    g = build_graph(ctx, o, true);
    r.training = measure(o, be, training_step, g, "training step");
    kelp_graph_destroy(g);

    for (int i = 0; i < r.n_convs; i++)
        bench_conv(o, be, &r.convs[i]);
    kelp_ctx_destroy(ctx);
    return r;
}

/* "56x56x64->64/s1": the key bench/torch_resnet.py uses for the same shape. */
static void conv_name(const kelp_conv_desc *d, char *buf, size_t len)
{
    snprintf(buf, len, "%dx%dx%d->%d/s%d", d->h, d->w, d->c, d->k, d->stride_h);
}

typedef struct conv_totals {
    double flops, forward_ms, backward_data_ms, backward_filter_ms;
} conv_totals;

/* The 3x3 convolutions of one pass of the model: each shape's median times its count. */
static conv_totals totals_of(const results *r)
{
    conv_totals t = {0};
    for (int i = 0; i < r->n_convs; i++) {
        const conv_shape *cs = &r->convs[i];
        t.flops += cs->count * conv_flops(&cs->d);
        t.forward_ms += cs->count * cs->forward.median_ms;
        t.backward_data_ms += cs->count * cs->backward_data.median_ms;
        t.backward_filter_ms += cs->count * cs->backward_filter.median_ms;
    }
    return t;
}

static void print_table(const options *o, const results *r)
{
    printf("kelp %s on the CPU backend (%s), %s, batch %d, %dx%d, %d threads, %d warmup + %d timed runs\n\n",
           KELP_VERSION_STRING, openblas_get_config(), o->model, o->batch, o->size, o->size, r->threads, o->warmup,
           o->iters);
    printf("%-28s %10s %10s %10s %10s\n", "measurement", "median ms", "min ms", "max ms", "images/s");
    const struct {
        const char *name;
        const timing *t;
    } rows[] = {{"inference forward", &r->inference}, {"training step (fwd+bwd)", &r->training}};
    for (size_t i = 0; i < 2; i++)
        printf("%-28s %10.2f %10.2f %10.2f %10.1f\n", rows[i].name, rows[i].t->median_ms, rows[i].t->min_ms,
               rows[i].t->max_ms, o->batch / (rows[i].t->median_ms * 1e-3));

    printf("\n3x3 convolutions alone (median ms and GFLOP/s; GFLOP = 2*N*OH*OW*K*(C/G)*R*S)\n");
    printf("%-22s %5s %8s %10s %8s %10s %8s %10s %8s\n", "shape HxWxC->K/stride", "count", "GFLOP", "fwd ms",
           "GFLOP/s", "bwd-data", "GFLOP/s", "bwd-filt", "GFLOP/s");
    for (int i = 0; i < r->n_convs; i++) {
        const conv_shape *cs = &r->convs[i];
        char name[64];
        conv_name(&cs->d, name, sizeof name);
        double f = conv_flops(&cs->d);
        printf("%-22s %5d %8.2f %10.2f %8.1f %10.2f %8.1f %10.2f %8.1f\n", name, cs->count, f * 1e-9,
               cs->forward.median_ms, gflops(f, cs->forward.median_ms), cs->backward_data.median_ms,
               gflops(f, cs->backward_data.median_ms), cs->backward_filter.median_ms,
               gflops(f, cs->backward_filter.median_ms));
    }
    conv_totals t = totals_of(r);
    printf("%-22s %5s %8.2f %10.2f %8.1f %10.2f %8.1f %10.2f %8.1f\n", "3x3 total (x count)", "", t.flops * 1e-9,
           t.forward_ms, gflops(t.flops, t.forward_ms), t.backward_data_ms, gflops(t.flops, t.backward_data_ms),
           t.backward_filter_ms, gflops(t.flops, t.backward_filter_ms));
}

static cJSON *timing_json(const timing *t, double flops, int images)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "median_ms", t->median_ms);
    cJSON_AddNumberToObject(j, "min_ms", t->min_ms);
    cJSON_AddNumberToObject(j, "max_ms", t->max_ms);
    if (flops > 0)
        cJSON_AddNumberToObject(j, "gflops", gflops(flops, t->median_ms));
    if (images > 0)
        cJSON_AddNumberToObject(j, "images_per_s", images / (t->median_ms * 1e-3));
    cJSON_AddStringToObject(j, "layout", "nhwc");
    return j;
}

static cJSON *conv_json(const conv_shape *cs)
{
    const kelp_conv_desc *d = &cs->d;
    char name[64];
    conv_name(d, name, sizeof name);
    double f = conv_flops(d);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", name);
    cJSON_AddNumberToObject(j, "n", d->n);
    cJSON_AddNumberToObject(j, "h", d->h);
    cJSON_AddNumberToObject(j, "w", d->w);
    cJSON_AddNumberToObject(j, "c", d->c);
    cJSON_AddNumberToObject(j, "k", d->k);
    cJSON_AddNumberToObject(j, "stride", d->stride_h);
    cJSON_AddNumberToObject(j, "padding", d->pad_h);
    cJSON_AddNumberToObject(j, "groups", d->groups);
    cJSON_AddNumberToObject(j, "count", cs->count);
    cJSON_AddNumberToObject(j, "gflop", f * 1e-9);
    cJSON_AddItemToObject(j, "forward", timing_json(&cs->forward, f, 0));
    cJSON_AddItemToObject(j, "backward_data", timing_json(&cs->backward_data, f, 0));
    cJSON_AddItemToObject(j, "backward_filter", timing_json(&cs->backward_filter, f, 0));
    return j;
}

static cJSON *totals_json(const results *r)
{
    conv_totals t = totals_of(r);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "gflop", t.flops * 1e-9);
    const struct {
        const char *name;
        double ms;
    } parts[] = {{"forward", t.forward_ms}, {"backward_data", t.backward_data_ms},
                 {"backward_filter", t.backward_filter_ms}};
    for (size_t i = 0; i < 3; i++) {
        cJSON *p = cJSON_AddObjectToObject(j, parts[i].name);
        cJSON_AddNumberToObject(p, "ms", parts[i].ms);
        cJSON_AddNumberToObject(p, "gflops", gflops(t.flops, parts[i].ms));
    }
    return j;
}

static void print_json(const options *o, const results *r)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "framework", "kelp");
    cJSON_AddStringToObject(j, "version", KELP_VERSION_STRING);
    cJSON_AddStringToObject(j, "blas", openblas_get_config());
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddNumberToObject(j, "batch", o->batch);
    cJSON_AddNumberToObject(j, "size", o->size);
    cJSON_AddNumberToObject(j, "threads", r->threads);
    cJSON_AddNumberToObject(j, "warmup", o->warmup);
    cJSON_AddNumberToObject(j, "iters", o->iters);
    cJSON_AddItemToObject(j, "inference", timing_json(&r->inference, 0, o->batch));
    cJSON_AddItemToObject(j, "training", timing_json(&r->training, 0, o->batch));
    cJSON *convs = cJSON_AddArrayToObject(j, "conv3x3");
    for (int i = 0; i < r->n_convs; i++)
        cJSON_AddItemToArray(convs, conv_json(&r->convs[i]));
    cJSON_AddItemToObject(j, "conv3x3_total", totals_json(r));
    char *text = cJSON_Print(j);
    if (!text) {
        fprintf(stderr, "bench_cpu_resnet: out of memory printing JSON\n");
        exit(1);
    }
    printf("%s\n", text);
    cJSON_free(text);
    cJSON_Delete(j);
}

int main(int argc, char **argv)
{
    options o = parse_args(argc, argv);
    results r = run(&o);
    if (o.json)
        print_json(&o, &r);
    else
        print_table(&o, &r);
    return 0;
}
