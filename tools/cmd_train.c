/* kelp train: flags and/or a JSON run config -> engine/trainer.h. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/trainer.h"
#include "io/text_file.h"
#include "tools/cli.h"

static void train_help(void)
{
    puts("Usage: kelp train --data DATA.h5 --model NAME|MODEL.json --out RUN_DIR [options]\n"
         "       kelp train --resume --out RUN_DIR\n"
         "\n"
         "  --config FILE          a JSON run config: keys as the long options (\"epochs\": 10); flags win\n"
         "  --epochs N (10)  --batch N (64)  --input HxW (zoo models: the input size)\n"
         "  --optimizer sgd|adamw (sgd)  --lr F (0.1)  --momentum F (0.9)  --weight-decay F (5e-4)\n"
         "  --schedule SPEC (cosine)   constant | step:N:G | multistep:A,B:G | cosine | poly:P, with an optional\n"
         "                          warmup:STEPS[:FACTOR]+ prefix\n"
         "  --loss-scale           dynamic loss scaling (PyTorch GradScaler): skips steps with inf/NaN gradients\n"
         "  --precision fp32|bf16|fp16 (fp32)  mixed precision: activations and the matrix products' weights in\n"
         "                          bf16/fp16, float master weights, statistics and loss; fp16 adds --loss-scale\n"
         "  --clip-norm F  --label-smoothing F  --seed N (1)  --threads N  --loader-threads N  --device cpu|cuda[:N]\n"
         "  GPU numerics: --tf32 (TF32 tensor cores)  --nondeterministic (faster cuDNN algorithms allowed)\n"
         "                          --autotune (time each convolution's algorithms once, as cudnn.benchmark)\n"
         "  augmentation (train split): --hflip (on) --no-hflip --vflip --rot90 --random-resized-crop\n"
         "                          --pad-crop N --jitter F --letterbox\n"
         "  fine-tuning: --init-from WEIGHTS|CKPT (a new head keeps its fresh values) --freeze-backbone\n"
         "  --resume                continue RUN_DIR/last.ckpt exactly\n"
         "  --stop-after-steps N    stop with a checkpoint after N steps in total\n"
         "  --log-every N (50)      steps between lines of RUN_DIR/metrics.jsonl and of plain progress output\n"
         "\n"
         "Writes RUN_DIR/metrics.jsonl, RUN_DIR/last.ckpt (each epoch) and RUN_DIR/best.ckpt (best validation top-1).");
}

typedef struct progress {
    bool tty;
    int log_every;
} progress;

static void on_event(void *user, const kelp_train_event *e)
{
    const progress *p = user;
    switch (e->kind) {
    case KELP_TRAIN_MESSAGE:
        fprintf(stderr, "%s%s\n", p->tty ? "\r\033[K" : "", e->message);
        break;
    case KELP_TRAIN_STEP:
        if (p->tty) {
            int width = 24, done = (int)(width * e->batch / (e->batches ? e->batches : 1));
            char bar[32];
            for (int i = 0; i < width; i++)
                bar[i] = i < done ? '#' : '.';
            bar[width] = '\0';
            fprintf(stderr, "\r\033[Kepoch %lld/%lld [%s] %lld/%lld loss %.4f acc %5.1f%% lr %.4g %.0f img/s",
                    (long long)e->epoch + 1, (long long)e->epochs, bar, (long long)e->batch, (long long)e->batches,
                    e->loss, 100 * e->accuracy, e->lr, e->images_per_second);
        } else if (e->step % p->log_every == 0) {
            fprintf(stderr, "epoch %lld/%lld step %lld/%lld loss %.4f acc %.1f%% lr %.4g %.0f img/s\n",
                    (long long)e->epoch + 1, (long long)e->epochs, (long long)e->step, (long long)e->steps, e->loss,
                    100 * e->accuracy, e->lr, e->images_per_second);
        }
        break;
    case KELP_TRAIN_EPOCH:
        fprintf(stderr, "%sepoch %lld/%lld: train loss %.4f acc %.2f%%", p->tty ? "\r\033[K" : "",
                (long long)e->epoch + 1, (long long)e->epochs, e->loss, 100 * e->accuracy);
        if (e->val_accuracy >= 0)
            fprintf(stderr, ", val loss %.4f acc %.2f%%", e->val_loss, 100 * e->val_accuracy);
        fprintf(stderr, ", %.0f img/s%s\n", e->images_per_second, e->best ? " (best)" : "");
        break;
    }
}

/* Config keys are the long option names with '-' or '_'. */
static const struct option options[] = {
    {"data", required_argument, 0, 'd'},          {"model", required_argument, 0, 'm'},
    {"out", required_argument, 0, 'o'},           {"config", required_argument, 0, 'C'},
    {"epochs", required_argument, 0, 'e'},        {"batch", required_argument, 0, 'b'},
    {"input", required_argument, 0, 'I'},         {"optimizer", required_argument, 0, 'O'},
    {"lr", required_argument, 0, 'l'},            {"momentum", required_argument, 0, 'M'},
    {"weight-decay", required_argument, 0, 'w'},  {"schedule", required_argument, 0, 's'},
    {"clip-norm", required_argument, 0, 'c'},     {"label-smoothing", required_argument, 0, 'L'},
    {"seed", required_argument, 0, 'S'},          {"threads", required_argument, 0, 't'},
    {"device", required_argument, 0, 'D'},         {"tf32", no_argument, 0, '3'},
    {"nondeterministic", no_argument, 0, 'N'},    {"autotune", no_argument, 0, 'A'},
    {"loader-threads", required_argument, 0, 'T'}, {"hflip", no_argument, 0, 'h' + 256},
    {"no-hflip", no_argument, 0, 'H'},            {"vflip", no_argument, 0, 'v'},
    {"rot90", no_argument, 0, 'r'},               {"random-resized-crop", no_argument, 0, 'R'},
    {"pad-crop", required_argument, 0, 'p'},      {"jitter", required_argument, 0, 'j'},
    {"letterbox", no_argument, 0, 'x'},           {"init-from", required_argument, 0, 'i'},
    {"loss-scale", no_argument, 0, 'K'},          {"precision", required_argument, 0, 'P'},
    {"freeze-backbone", no_argument, 0, 'f'},     {"resume", no_argument, 0, 'z'},
    {"stop-after-steps", required_argument, 0, 'a'}, {"log-every", required_argument, 0, 'g'},
    {"help", no_argument, 0, '?' + 256},          {0, 0, 0, 0}};

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

/* Applies one option; returns 0, or CLI_EXIT_USAGE after printing the problem. */
static int apply(kelp_train_options *o, int code, const char *name, const char *value)
{
    int n = 0;
    double f = 0;
    bool bad = false;
    kelp_zoo_options size = {0};
    switch (code) {
    case 'd': o->data = value; break;
    case 'm': o->model = value; break;
    case 'o': o->out = value; break;
    case 'e': bad = cli_parse_int(value, 1, 100000, &o->epochs) != 0; break;
    case 'b': bad = cli_parse_int(value, 1, 65536, &o->batch) != 0; break;
    case 'I':
        bad = cli_parse_input_size(value, &size) != 0;
        o->input_h = size.height;
        o->input_w = size.width;
        break;
    case 'O': o->optimizer = value; break;
    case 'l': bad = parse_double(value, 1e-12, 1e3, &o->lr) != 0; break;
    case 'M': bad = parse_double(value, 0, 1, &o->momentum) != 0; break;
    case 'w': bad = parse_double(value, 0, 1, &o->weight_decay) != 0; break;
    case 's': o->schedule = value; break;
    case 'c': bad = parse_double(value, 0, 1e9, &o->clip_norm) != 0; break;
    case 'L': bad = parse_double(value, 0, 1, &o->label_smoothing) != 0; break;
    case 'S': bad = parse_double(value, 0, 9007199254740992.0, &f) != 0, o->seed = (uint64_t)f; break;
    case 't': bad = cli_parse_int(value, 0, 1024, &o->threads) != 0; break;
    case 'D': o->device = value; break;
    case '3': o->allow_tf32 = true; break;
    case 'N': o->nondeterministic = true; break;
    case 'A': o->autotune = true; break;
    case 'T': bad = cli_parse_int(value, 0, 256, &o->loader_threads) != 0; break;
    case 'h' + 256: o->hflip = true; break;
    case 'H': o->hflip = false; break;
    case 'v': o->vflip = true; break;
    case 'r': o->rot90 = true; break;
    case 'R': o->random_resized_crop = true; break;
    case 'p': bad = cli_parse_int(value, 0, 1024, &o->pad_crop) != 0; break;
    case 'j': bad = parse_double(value, 0, 1, &o->jitter) != 0; break;
    case 'x': o->letterbox = true; break;
    case 'i': o->init_from = value; break;
    case 'f': o->freeze_backbone = true; break;
    case 'K': o->loss_scale = true; break;
    case 'P': {
        kelp_dtype dt;
        bad = kelp_precision_parse(value, &dt) != KELP_OK;
        o->precision = value;
        break;
    }
    case 'z': o->resume = true; break;
    case 'a': bad = cli_parse_int(value, 1, 1 << 30, &n) != 0, o->stop_after_steps = n; break;
    case 'g': bad = cli_parse_int(value, 1, 1 << 30, &o->log_every) != 0; break;
    default: return cli_usage_error("train", "unknown option '%s'", name);
    }
    if (bad)
        return cli_usage_error("train", "--%s: bad value '%s'", name, value ? value : "");
    return 0;
}

/* The config file's values as option strings (kept alive in `config` for the run). */
static int apply_config(kelp_train_options *o, const cJSON *config, const char *path)
{
    for (const cJSON *item = config->child; item; item = item->next) {
        char name[64];
        snprintf(name, sizeof name, "%s", item->string);
        for (char *c = name; *c; c++)
            if (*c == '_')
                *c = '-';
        const struct option *opt = options;
        while (opt->name && strcmp(opt->name, name) != 0)
            opt++;
        if (!opt->name || strcmp(name, "config") == 0 || strcmp(name, "help") == 0)
            return cli_usage_error("train", "%s: unknown key '%s'", path, item->string);
        if (opt->has_arg == no_argument) {
            if (!cJSON_IsBool(item))
                return cli_usage_error("train", "%s: '%s' must be true or false", path, item->string);
            if (cJSON_IsTrue(item)) {
                int rc = apply(o, opt->val, name, NULL);
                if (rc)
                    return rc;
            } else if (strcmp(name, "hflip") == 0) {
                o->hflip = false;
            }
            continue;
        }
        if (cJSON_IsNumber(item)) {
            /* options parse text: the number's text replaces it, kept alive in the config tree */
            char *text = cJSON_PrintUnformatted(item);
            cJSON *str = cJSON_CreateString(text ? text : "");
            free(text);
            cJSON_ReplaceItemViaPointer((cJSON *)config, (cJSON *)item, str);
            item = str;
        }
        if (!cJSON_IsString(item))
            return cli_usage_error("train", "%s: '%s' must be a string or a number", path, item->string);
        int rc = apply(o, opt->val, name, item->valuestring);
        if (rc)
            return rc;
    }
    return 0;
}

int cmd_train(int argc, char **argv)
{
    kelp_train_options o;
    kelp_train_options_defaults(&o);
    /* a first pass finds --config, so that flags given anywhere override it */
    cJSON *config = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--config") == 0) {
            char *text;
            kelp_status s = kelp_read_text_file(argv[i + 1], 1 << 20, &text);
            if (s != KELP_OK)
                return cli_fail(s, NULL);
            config = cJSON_Parse(text);
            free(text);
            if (!cJSON_IsObject(config)) {
                cJSON_Delete(config);
                return cli_usage_error("train", "%s: not a JSON object", argv[i + 1]);
            }
            int rc = apply_config(&o, config, argv[i + 1]);
            if (rc) {
                cJSON_Delete(config);
                return rc;
            }
        }
    int code, index = 0, rc = 0;
    optind = 1;
    while (rc == 0 && (code = getopt_long(argc, argv, "", options, &index)) != -1) {
        if (code == '?' + 256) {
            train_help();
            cJSON_Delete(config);
            return 0;
        }
        if (code == '?')
            rc = cli_usage_error("train", "bad option");
        else if (code != 'C')
            rc = apply(&o, code, options[index].name, optarg);
    }
    if (rc == 0 && optind != argc)
        rc = cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
    if (rc == 0 && !o.out)
        rc = cli_usage_error("train", "--out RUN_DIR is required");
    if (rc == 0 && !o.resume && (!o.data || !o.model))
        rc = cli_usage_error("train", "--data and --model are required (or --resume)");
    if (rc == 0) {
        progress p = {.tty = isatty(2), .log_every = o.log_every > 0 ? o.log_every : 50};
        kelp_status s = kelp_train(&o, on_event, &p);
        if (s != KELP_OK)
            rc = cli_fail(s, "train");
    }
    cJSON_Delete(config);
    return rc;
}
