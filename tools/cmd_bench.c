/* kelp bench: training and inference throughput, batch-1 latency, memory and a per-layer profile of a model on
 * random data (the time of a step does not depend on the values).
 *
 * Every time comes from `warmup` untimed runs and then `iters` timed ones, the backend synchronized after each run
 * so that an asynchronous backend is timed for its work, not for queuing it.
 *
 * --json prints one object; times in ms, memory in bytes, rates in images/s and GFLOP/s:
 *   model, device, threads, batch, input [H, W, C], warmup, iters, mode
 *   training   {step_ms (median), images_per_s}                          unless --mode infer
 *   inference  {forward_ms (median), images_per_s}                       unless --mode train
 *   latency    {batch: 1, median_ms, p99_ms}                             unless --mode train
 *   memory     {training|inference: {params, grads, optimizer_state, buffers, activations, workspace, total},
 *               peak_rss, and on a GPU device_peak (the allocator's most bytes in use) and device_reserved}
 *   layers     {graph: "training"|"inference", runs, total_ms, forward_ms, backward_ms, step_ms,
 *               nodes: [{name, type, forward_ms, backward_ms, forward_flops, backward_flops, forward_gflops,
 *                        backward_gflops, folded}]}                       with --layers
 * folded: an inference graph ran the node inside the convolution before it (batch norm, ReLU; forward_ms 0, the
 * convolution's time includes it).
 * In `layers`, total_ms is the sum of the nodes' times, forward_ms and backward_ms are measured around
 * kelp_graph_forward and kelp_graph_backward, step_ms around the whole step; all are means over `runs` steps. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "engine/backend.h"
#include "engine/loss_scale.h"
#include "engine/optimizer.h"
#include "engine/train_step.h"
#include "tools/cli.h"

typedef struct bench_options {
    const char *model, *device;
    kelp_zoo_options zoo;
    int batch, threads, warmup, iters;
    bool train, infer, layers, json;
    bool allow_tf32, nondeterministic, autotune; /* GPU numerics, as kelp train's flags */
    bool no_cuda_graphs;                         /* inference forwards queued kernel by kernel */
    kelp_dtype precision;                        /* the graphs' storage type: F32, or BF16/F16 mixed precision */
} bench_options;

typedef struct timing {
    double median_ms, p99_ms, mean_ms;
} timing;

typedef struct layer_row {
    char *name;
    const char *type; /* the layer registry's string: outlives the graph */
    double forward_ms, backward_ms;
    int64_t forward_flops, backward_flops;
    bool folded; /* never ran: folded into the convolution before it (inference fusion) */
} layer_row;

typedef struct layer_profile {
    const char *graph;
    int n_rows;
    layer_row *rows;
    double forward_ms, backward_ms, step_ms; /* measured around the calls, not summed from the rows */
} layer_profile;

typedef struct results {
    kelp_shape input; /* at the benchmark's batch */
    int threads;
    timing training, inference, latency;
    kelp_graph_memory training_memory, inference_memory;
    size_t optimizer_bytes;
    size_t peak_rss;
    bool device_memory; /* a device backend reported device_peak and device_reserved */
    size_t device_peak, device_reserved;
    layer_profile layers;
} results;

/* A graph and, for training, its optimizer: one run is a forward, or a whole training step. */
typedef struct runner {
    kelp_backend *be;
    kelp_graph *g;
    kelp_optimizer *opt; /* NULL: inference */
    kelp_train_step *step;
    kelp_loss_scaler scaler; /* fp16: as kelp train scales the loss, skipping the steps that overflow */
    double forward_ms, backward_ms; /* summed over runs; exact while the profile synchronizes every node */
    bool profiling;
} runner;

static void bench_help(void)
{
    puts("Usage: kelp bench MODEL|MODEL.json [--batch N] [--input HxW] [--threads N] [--warmup N] [--iters N]\n"
         "                  [--mode train|infer|all] [--layers] [--json] [--device cpu|cuda[:N]]\n"
         "                  [--tf32] [--nondeterministic] [--autotune] [--no-cuda-graphs]\n"
         "                  [--precision fp32|bf16|fp16]\n"
         "\n"
         "Runs a zoo model or a model file on random data and prints:\n"
         "  training   images/s of a step (forward, zero_grad, backward, SGD momentum step) at --batch\n"
         "  inference  images/s of a forward of the graph built for inference, at --batch\n"
         "  latency    median and p99 of an inference forward at batch 1\n"
         "  memory     the planned bytes of each graph and the process's peak RSS\n"
         "  --layers   each node's forward and backward ms, FLOPs and GFLOP/s (conv2d, conv_transpose2d,\n"
         "             linear), from separate runs with the per-node profile on (the training graph unless\n"
         "             --mode infer), with their sum beside the measured forward+backward and whole step\n"
         "\n"
         "  --batch N    images per run (16)          --input HxW  a zoo model's input size (its default)\n"
         "  --threads N  CPU threads, 0 = all (0)     --warmup N   untimed runs first (2)\n"
         "  --iters N    timed runs (10)              --mode M     train, infer or all (all)\n"
         "  --json       one JSON object instead (keys in tools/cmd_bench.c and docs/benchmarks.md)\n"
         "  --device D   cpu (default) or cuda[:N]\n"
         "  --precision P  fp32 (default), or bf16/fp16 mixed precision (kelp train --precision)\n"
         "  GPU numerics (the CPU ignores them): --tf32 TF32 tensor cores, --nondeterministic faster cuDNN\n"
         "             algorithms allowed, --autotune each convolution's algorithms timed once (cudnn.benchmark),\n"
         "             --no-cuda-graphs inference forwards and training steps queued kernel by kernel instead of\n"
         "             replayed\n"
         "\n"
         "Times are medians over --iters runs after --warmup runs; p99 is the ceil(0.99 n)-th smallest.");
}

/* Failures of the work: "kelp bench: <what>: <the library's message>", exit 1. */
static int bench_fail(const char *what)
{
    fprintf(stderr, "kelp bench: %s%s%s\n", what ? what : "", what ? ": " : "", kelp_last_error());
    return CLI_EXIT_FAILURE;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* A training step is kelp_train_step_run, as kelp train runs it (a GPU replays it as one recording, the optimizer
 * included); with the profile on, the forward, backward and update are called one by one and the first two timed,
 * for the comparison with the sum of the nodes. */
static kelp_status run_once(runner *r)
{
    if (r->opt && !r->profiling) {
        kelp_train_step_result res;
        /* any small learning rate: the values do not change the time */
        KELP_TRY(kelp_train_step_run(r->step, 1e-3f, r->scaler.scale, &res));
        kelp_loss_scaler_update(&r->scaler, res.applied);
        return KELP_OK;
    }
    if (r->opt) /* the separate calls below do not unscale */
        KELP_TRY(kelp_graph_set_loss_scale(r->g, 1.0f));
    double start = now_ms();
    KELP_TRY(kelp_graph_forward(r->g));
    r->forward_ms += now_ms() - start;
    if (!r->opt)
        return KELP_OK;
    KELP_TRY(kelp_graph_zero_grad(r->g));
    start = now_ms();
    KELP_TRY(kelp_graph_backward(r->g));
    r->backward_ms += now_ms() - start;
    kelp_tensor *params = kelp_graph_params(r->g);
    return kelp_optimizer_step(r->opt, 1e-3f, params->data, kelp_graph_grads(r->g)->data, NULL, 0);
}

static kelp_status time_runs(runner *r, int warmup, int iters, double *ms)
{
    for (int i = 0; i < warmup + iters; i++) {
        double start = now_ms();
        KELP_TRY(run_once(r));
        KELP_TRY(r->be->iface->synchronize(r->be));
        if (i >= warmup)
            ms[i - warmup] = now_ms() - start;
    }
    return KELP_OK;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts ms. p99 is the ceil(0.99 n)-th smallest: the largest below 100 runs. */
static timing summarize(double *ms, int n)
{
    qsort(ms, (size_t)n, sizeof *ms, compare_doubles);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += ms[i];
    int p99 = (int)ceil(0.99 * n);
    return (timing){
        .median_ms = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]),
        .p99_ms = ms[p99 - 1],
        .mean_ms = sum / n,
    };
}

static kelp_status measure(runner *r, int warmup, int iters, timing *out)
{
    double *ms = malloc((size_t)iters * sizeof *ms);
    if (!ms)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory");
    kelp_status s = time_runs(r, warmup, iters, ms);
    if (s == KELP_OK)
        *out = summarize(ms, iters);
    free(ms);
    return s;
}

static void free_profile(layer_profile *p)
{
    for (int i = 0; i < p->n_rows; i++)
        free(p->rows[i].name);
    free(p->rows);
}

static kelp_status copy_rows(kelp_graph *g, layer_profile *out)
{
    int n = kelp_graph_node_count(g);
    out->rows = calloc((size_t)n, sizeof *out->rows);
    if (!out->rows)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory");
    for (int i = 0; i < n; i++) {
        kelp_node_profile p;
        KELP_TRY(kelp_graph_node_profile(g, i, &p));
        layer_row *row = &out->rows[out->n_rows++];
        row->name = strdup(p.name);
        if (!row->name)
            return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory");
        row->type = p.type;
        row->forward_ms = p.forward_calls ? 1e3 * p.forward_seconds / (double)p.forward_calls : 0;
        row->backward_ms = p.backward_calls ? 1e3 * p.backward_seconds / (double)p.backward_calls : 0;
        row->forward_flops = p.forward_flops;
        row->backward_flops = p.backward_flops;
        row->folded = p.folded;
    }
    return KELP_OK;
}

/* Runs of their own, after the timed ones (so the graph is warm): the profile synchronizes around every node,
 * which an asynchronous backend would pay for in the throughput. */
static kelp_status profile_layers(runner *r, int iters, const char *graph, layer_profile *out)
{
    KELP_TRY(kelp_graph_set_profiling(r->g, true));
    r->forward_ms = r->backward_ms = 0;
    r->profiling = true;
    timing step;
    kelp_status s = measure(r, 0, iters, &step);
    if (s == KELP_OK)
        s = copy_rows(r->g, out);
    r->profiling = false;
    kelp_graph_set_profiling(r->g, false);
    out->graph = graph;
    out->forward_ms = r->forward_ms / iters;
    out->backward_ms = r->backward_ms / iters;
    out->step_ms = step.mean_ms;
    return s;
}

static kelp_status build(kelp_ctx *ctx, const char *json, const bench_options *o, bool training, kelp_graph **g)
{
    kelp_graph_options go = kelp_graph_defaults();
    go.batch = o->batch;
    go.precision = o->precision;
    go.training = training;
    go.with_loss = training;
    KELP_TRY(kelp_graph_build(ctx, json, &go, g));
    kelp_status s = kelp_graph_fill_random(*g, 1);
    if (s != KELP_OK) {
        kelp_graph_destroy(*g);
        *g = NULL;
    }
    return s;
}

static kelp_status inference(kelp_ctx *ctx, const char *json, const bench_options *o, results *res)
{
    runner r = {.be = kelp_ctx_backend(ctx)};
    KELP_TRY(build(ctx, json, o, false, &r.g));
    res->input = kelp_graph_input(r.g, 0)->shape;
    kelp_graph_memory_usage(r.g, &res->inference_memory);
    kelp_status s = measure(&r, o->warmup, o->iters, &res->inference);
    if (s == KELP_OK && o->layers && !o->train)
        s = profile_layers(&r, o->iters, "inference", &res->layers);
    /* The graph planned for --batch runs batch 1 as well; warm it up again at that size. */
    if (s == KELP_OK)
        s = kelp_graph_set_batch(r.g, 1);
    if (s == KELP_OK)
        s = measure(&r, o->warmup, o->iters, &res->latency);
    kelp_graph_destroy(r.g);
    return s;
}

static size_t optimizer_bytes(kelp_optimizer *opt)
{
    size_t bytes = 0;
    for (int i = 0; i < kelp_optimizer_state_count(opt); i++) {
        const char *name;
        kelp_tensor t;
        if (kelp_optimizer_state(opt, i, &name, &t) == KELP_OK)
            bytes += kelp_tensor_bytes(&t);
    }
    return bytes;
}

static kelp_status training(kelp_ctx *ctx, const char *json, const bench_options *o, results *res)
{
    runner r = {.be = kelp_ctx_backend(ctx)};
    kelp_loss_scaler_init(&r.scaler);
    KELP_TRY(build(ctx, json, o, true, &r.g));
    res->input = kelp_graph_input(r.g, 0)->shape;
    kelp_graph_memory_usage(r.g, &res->training_memory);
    kelp_optimizer_config sgd = kelp_optimizer_defaults(KELP_OPTIM_SGD);
    sgd.momentum = 0.9f;
    kelp_status s = kelp_optimizer_create(r.be, &sgd, kelp_shape_numel(&kelp_graph_params(r.g)->shape), &r.opt);
    /* fp16 scales the loss as kelp train does, which adds the gradients' finite check */
    kelp_train_step_config sc = {.loss_scale = o->precision == KELP_F16};
    if (s == KELP_OK)
        s = kelp_train_step_create(r.g, r.opt, &sc, &r.step);
    if (s == KELP_OK) {
        res->optimizer_bytes = optimizer_bytes(r.opt);
        s = measure(&r, o->warmup, o->iters, &res->training);
    }
    if (s == KELP_OK && o->layers)
        s = profile_layers(&r, o->iters, "training", &res->layers);
    kelp_train_step_destroy(r.step);
    kelp_optimizer_destroy(r.opt);
    kelp_graph_destroy(r.g);
    return s;
}

static size_t peak_rss_bytes(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (size_t)u.ru_maxrss * 1024; /* Linux reports KiB */
}

static size_t memory_total(const kelp_graph_memory *m, size_t optimizer)
{
    return m->params + m->grads + optimizer + m->buffers + m->activations + m->workspace;
}

static double images_per_s(int images, double ms) { return images / (ms * 1e-3); }
static double gflops(int64_t flops, double ms) { return ms > 0 ? (double)flops / (ms * 1e6) : 0; }

/* ---- text ---- */

static void print_memory(const char *graph, const kelp_graph_memory *m, size_t optimizer)
{
    const double mib = 1024.0 * 1024.0;
    printf("  %-9s parameters %.2f, gradients %.2f, optimizer state %.2f, buffers %.2f, activations %.2f, "
           "workspace %.2f; total %.2f MiB\n",
           graph, m->params / mib, m->grads / mib, optimizer / mib, m->buffers / mib, m->activations / mib,
           m->workspace / mib, memory_total(m, optimizer) / mib);
}

/* A table cell, or "-" where the figure does not apply. */
static void cell(int width, int precision, bool applies, double value)
{
    if (applies)
        printf(" %*.*f", width, precision, value);
    else
        printf(" %*s", width, "-");
}

static void print_layers(const layer_profile *p, bool training)
{
    printf("\nper-layer profile: %s graph, means over the runs (FLOP = 2 x multiply-adds)\n", p->graph);
    printf("%-28s %-21s %9s %9s %10s %11s %11s\n", "node", "type", "fwd ms", "bwd ms", "fwd MFLOP", "fwd GFLOP/s",
           "bwd GFLOP/s");
    double forward = 0, backward = 0;
    for (int i = 0; i < p->n_rows; i++) {
        const layer_row *row = &p->rows[i];
        bool counted = row->forward_flops > 0;
        printf("%-28s %-21s", row->name, row->type);
        if (row->folded)
            printf(" %9s", "folded");
        else
            cell(9, 3, true, row->forward_ms);
        cell(9, 3, training, row->backward_ms);
        cell(10, 2, counted, row->forward_flops * 1e-6);
        cell(11, 1, counted, gflops(row->forward_flops, row->forward_ms));
        cell(11, 1, counted && row->backward_flops > 0, gflops(row->backward_flops, row->backward_ms));
        putchar('\n');
        forward += row->forward_ms;
        backward += row->backward_ms;
    }
    double sum = forward + backward;
    if (!training) {
        for (int i = 0; i < p->n_rows; i++)
            if (p->rows[i].folded) {
                printf("folded: runs inside the convolution before it (its time is in the convolution's)\n");
                break;
            }
        printf("\nlayers, summed:       %10.3f ms\n", sum);
        printf("whole forward, timed: %10.3f ms: the layers are %.1f%% of it\n", p->step_ms, 100 * sum / p->step_ms);
        return;
    }
    double measured = p->forward_ms + p->backward_ms;
    printf("\nlayers, summed:            %10.3f ms (forward %.3f + backward %.3f)\n", sum, forward, backward);
    printf("forward + backward, timed: %10.3f ms (forward %.3f + backward %.3f): the layers are %.1f%% of it\n",
           measured, p->forward_ms, p->backward_ms, 100 * sum / measured);
    printf("whole step, timed:         %10.3f ms (with zero_grad and the SGD step): the layers are %.1f%% of it\n",
           p->step_ms, 100 * sum / p->step_ms);
}

static void print_text(const bench_options *o, const results *r)
{
    printf("kelp bench %s: input ", o->model);
    for (int i = 1; i < r->input.ndim; i++)
        printf("%s%lld", i > 1 ? "x" : "", (long long)r->input.dims[i]);
    bool gpu = strcmp(o->device, "cpu") != 0; /* the CPU ignores the GPU numerics: say nothing of them there */
    printf(", batch %d, %s %s%s%s%s, %d threads, %d warmup + %d timed runs\n", o->batch, o->device,
           kelp_precision_name(o->precision), gpu && o->allow_tf32 ? " tf32" : "", gpu && o->nondeterministic ? " nondeterministic" : "",
           gpu && o->autotune ? " autotuned" : "", r->threads, o->warmup, o->iters);
    if (gpu && o->no_cuda_graphs)
        printf("(inference forwards queued kernel by kernel: --no-cuda-graphs)\n");
    if (o->train)
        printf("training:  %10.1f images/s  (%.2f ms per step of %d: forward, zero_grad, backward, SGD step)\n",
               images_per_s(o->batch, r->training.median_ms), r->training.median_ms, o->batch);
    if (o->infer) {
        printf("inference: %10.1f images/s  (%.2f ms per forward of %d)\n",
               images_per_s(o->batch, r->inference.median_ms), r->inference.median_ms, o->batch);
        printf("latency:   %.3f ms median, %.3f ms p99 (batch 1, inference forward)\n", r->latency.median_ms,
               r->latency.p99_ms);
    }
    printf("memory (planned, MiB):\n");
    if (o->train)
        print_memory("training", &r->training_memory, r->optimizer_bytes);
    if (o->infer)
        print_memory("inference", &r->inference_memory, 0);
    printf("peak RSS:  %.1f MiB\n", r->peak_rss / (1024.0 * 1024.0));
    if (r->device_memory)
        printf("device:    %.1f MiB at most in use, %.1f MiB reserved\n", r->device_peak / (1024.0 * 1024.0),
               r->device_reserved / (1024.0 * 1024.0));
    if (o->layers)
        print_layers(&r->layers, o->train);
}

/* ---- JSON ---- */

static cJSON *memory_json(const kelp_graph_memory *m, size_t optimizer)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "params", (double)m->params);
    cJSON_AddNumberToObject(j, "grads", (double)m->grads);
    cJSON_AddNumberToObject(j, "optimizer_state", (double)optimizer);
    cJSON_AddNumberToObject(j, "buffers", (double)m->buffers);
    cJSON_AddNumberToObject(j, "activations", (double)m->activations);
    cJSON_AddNumberToObject(j, "workspace", (double)m->workspace);
    cJSON_AddNumberToObject(j, "total", (double)memory_total(m, optimizer));
    return j;
}

static cJSON *layers_json(const layer_profile *p, int runs)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "graph", p->graph);
    cJSON_AddNumberToObject(j, "runs", runs);
    cJSON *nodes = cJSON_AddArrayToObject(j, "nodes");
    double total = 0;
    for (int i = 0; i < p->n_rows; i++) {
        const layer_row *row = &p->rows[i];
        cJSON *n = cJSON_CreateObject();
        cJSON_AddStringToObject(n, "name", row->name);
        cJSON_AddStringToObject(n, "type", row->type);
        cJSON_AddNumberToObject(n, "forward_ms", row->forward_ms);
        cJSON_AddNumberToObject(n, "backward_ms", row->backward_ms);
        cJSON_AddNumberToObject(n, "forward_flops", (double)row->forward_flops);
        cJSON_AddNumberToObject(n, "backward_flops", (double)row->backward_flops);
        cJSON_AddNumberToObject(n, "forward_gflops", gflops(row->forward_flops, row->forward_ms));
        cJSON_AddNumberToObject(n, "backward_gflops", gflops(row->backward_flops, row->backward_ms));
        cJSON_AddBoolToObject(n, "folded", row->folded);
        cJSON_AddItemToArray(nodes, n);
        total += row->forward_ms + row->backward_ms;
    }
    cJSON_AddNumberToObject(j, "total_ms", total);
    cJSON_AddNumberToObject(j, "forward_ms", p->forward_ms);
    cJSON_AddNumberToObject(j, "backward_ms", p->backward_ms);
    cJSON_AddNumberToObject(j, "step_ms", p->step_ms);
    return j;
}

static int print_json(const bench_options *o, const results *r)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddStringToObject(j, "device", o->device);
    cJSON_AddStringToObject(j, "precision", kelp_precision_name(o->precision));
    cJSON_AddBoolToObject(j, "tf32", o->allow_tf32);
    cJSON_AddBoolToObject(j, "deterministic", !o->nondeterministic);
    cJSON_AddBoolToObject(j, "autotune", o->autotune);
    cJSON_AddBoolToObject(j, "cuda_graphs", !o->no_cuda_graphs);
    cJSON_AddNumberToObject(j, "threads", r->threads);
    cJSON_AddNumberToObject(j, "batch", o->batch);
    cJSON *input = cJSON_AddArrayToObject(j, "input");
    for (int i = 1; i < r->input.ndim; i++)
        cJSON_AddItemToArray(input, cJSON_CreateNumber((double)r->input.dims[i]));
    cJSON_AddNumberToObject(j, "warmup", o->warmup);
    cJSON_AddNumberToObject(j, "iters", o->iters);
    cJSON_AddStringToObject(j, "mode", o->train && o->infer ? "all" : o->train ? "train" : "infer");
    cJSON *memory = cJSON_CreateObject();
    if (o->train) {
        cJSON *t = cJSON_AddObjectToObject(j, "training");
        cJSON_AddNumberToObject(t, "step_ms", r->training.median_ms);
        cJSON_AddNumberToObject(t, "images_per_s", images_per_s(o->batch, r->training.median_ms));
        cJSON_AddItemToObject(memory, "training", memory_json(&r->training_memory, r->optimizer_bytes));
    }
    if (o->infer) {
        cJSON *t = cJSON_AddObjectToObject(j, "inference");
        cJSON_AddNumberToObject(t, "forward_ms", r->inference.median_ms);
        cJSON_AddNumberToObject(t, "images_per_s", images_per_s(o->batch, r->inference.median_ms));
        cJSON *l = cJSON_AddObjectToObject(j, "latency");
        cJSON_AddNumberToObject(l, "batch", 1);
        cJSON_AddNumberToObject(l, "median_ms", r->latency.median_ms);
        cJSON_AddNumberToObject(l, "p99_ms", r->latency.p99_ms);
        cJSON_AddItemToObject(memory, "inference", memory_json(&r->inference_memory, 0));
    }
    cJSON_AddNumberToObject(memory, "peak_rss", (double)r->peak_rss);
    if (r->device_memory) {
        cJSON_AddNumberToObject(memory, "device_peak", (double)r->device_peak);
        cJSON_AddNumberToObject(memory, "device_reserved", (double)r->device_reserved);
    }
    cJSON_AddItemToObject(j, "memory", memory);
    if (o->layers)
        cJSON_AddItemToObject(j, "layers", layers_json(&r->layers, o->iters));
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) {
        fprintf(stderr, "kelp bench: out of memory printing JSON\n");
        return CLI_EXIT_FAILURE;
    }
    puts(text);
    cJSON_free(text);
    return 0;
}

/* ---- arguments ---- */

static int parse_args(int argc, char **argv, bench_options *o)
{
    static const struct option options[] = {
        {"batch", required_argument, 0, 'b'},  {"input", required_argument, 0, 'i'},
        {"threads", required_argument, 0, 't'}, {"warmup", required_argument, 0, 'w'},
        {"iters", required_argument, 0, 'n'},  {"mode", required_argument, 0, 'm'},
        {"layers", no_argument, 0, 'l'},       {"json", no_argument, 0, 'j'},
        {"device", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'},
        {"tf32", no_argument, 0, '3'},         {"nondeterministic", no_argument, 0, 'N'},
        {"autotune", no_argument, 0, 'A'},     {"no-cuda-graphs", no_argument, 0, 'G'},
        {"precision", required_argument, 0, 'P'}, {0, 0, 0, 0}};
    *o = (bench_options){.device = "cpu", .batch = 16, .warmup = 2, .iters = 10, .train = true, .infer = true};
    int opt;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
        case 'b':
            if (cli_parse_int(optarg, 1, 1 << 20, &o->batch) != 0)
                return cli_usage_error("bench", "--batch needs a positive integer, got '%s'", optarg);
            break;
        case 'i':
            if (cli_parse_input_size(optarg, &o->zoo) != 0)
                return cli_usage_error("bench", "--input needs HxW or HxWxC, got '%s'", optarg);
            break;
        case 't':
            if (cli_parse_int(optarg, 0, 4096, &o->threads) != 0)
                return cli_usage_error("bench", "--threads needs an integer >= 0, got '%s'", optarg);
            break;
        case 'w':
            if (cli_parse_int(optarg, 0, 1000000, &o->warmup) != 0)
                return cli_usage_error("bench", "--warmup needs an integer >= 0, got '%s'", optarg);
            break;
        case 'n':
            if (cli_parse_int(optarg, 1, 1000000, &o->iters) != 0)
                return cli_usage_error("bench", "--iters needs a positive integer, got '%s'", optarg);
            break;
        case 'm':
            o->train = strcmp(optarg, "train") == 0 || strcmp(optarg, "all") == 0;
            o->infer = strcmp(optarg, "infer") == 0 || strcmp(optarg, "all") == 0;
            if (!o->train && !o->infer)
                return cli_usage_error("bench", "--mode needs train, infer or all, got '%s'", optarg);
            break;
        case 'l':
            o->layers = true;
            break;
        case 'j':
            o->json = true;
            break;
        case 'd':
            o->device = optarg;
            break;
        case '3':
            o->allow_tf32 = true;
            break;
        case 'N':
            o->nondeterministic = true;
            break;
        case 'A':
            o->autotune = true;
            break;
        case 'G':
            o->no_cuda_graphs = true;
            break;
        case 'P':
            if (kelp_precision_parse(optarg, &o->precision) != KELP_OK)
                return cli_usage_error("bench", "--precision needs fp32, bf16 or fp16, got '%s'", optarg);
            break;
        case 'h':
            bench_help();
            return -1;
        default:
            return cli_usage_error("bench", "bad option");
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("bench", "needs exactly one model name or file");
    o->model = argv[optind];
    return 0;
}

static int run_bench(const bench_options *o, const char *json, results *r)
{
    kelp_ctx_options co = kelp_ctx_defaults();
    co.device = o->device;
    co.threads = o->threads;
    co.seed = 1;
    co.allow_tf32 = o->allow_tf32;
    co.nondeterministic = o->nondeterministic;
    co.autotune = o->autotune;
    co.cuda_graphs = !o->no_cuda_graphs;
    kelp_ctx *ctx;
    kelp_status s = kelp_ctx_create(&co, &ctx);
    if (s == KELP_ERR_INVALID_ARG) /* not a device name at all */
        return cli_usage_error("bench", "--device %s: %s", o->device, kelp_last_error());
    if (s != KELP_OK) {
        fprintf(stderr, "kelp bench: --device %s: %s\n", o->device, kelp_last_error());
        return CLI_EXIT_FAILURE;
    }
    r->threads = kelp_ctx_threads(ctx);
    /* One graph at a time: the peak RSS is the larger graph's, not the sum. */
    s = o->infer ? inference(ctx, json, o, r) : KELP_OK;
    if (s == KELP_OK && o->train)
        s = training(ctx, json, o, r);
    kelp_backend *be = kelp_ctx_backend(ctx);
    if (be->iface->memory_stats) {
        kelp_device_memory m;
        be->iface->memory_stats(be, &m);
        r->device_memory = true;
        r->device_peak = m.peak;
        r->device_reserved = m.reserved;
    }
    kelp_ctx_destroy(ctx);
    r->peak_rss = peak_rss_bytes();
    return s == KELP_OK ? 0 : bench_fail(o->model);
}

int cmd_bench(int argc, char **argv)
{
    bench_options o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    char *json;
    if (cli_load_model_json(o.model, &o.zoo, &json) != KELP_OK)
        return bench_fail(NULL);
    results r = {0};
    rc = run_bench(&o, json, &r);
    kelp_free(json);
    if (rc == 0)
        rc = o.json ? print_json(&o, &r) : (print_text(&o, &r), 0);
    free_profile(&r.layers);
    return rc;
}
