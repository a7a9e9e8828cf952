/* kelp_finetune (include/kelp/predictor.h): a bundle's or checkpoint's training recipe rerun from its weights on a
 * new dataset, the best epoch scored and its weights written where the bundle reads them. It is what the bundle's
 * DEEPaaS `train` endpoint calls, so a module retrains itself with the engine it predicts with. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/checkpoint.h"
#include "engine/classifier.h"
#include "engine/trainer.h"
#include "io/atomic_file.h"
#include "io/dataset.h"
#include "io/path.h"
#include "kelp/predictor.h"

/* One fine-tuning of `out` at a time: the bundle's REST server runs several worker processes, and a second `train`
 * would otherwise delete the first one's run directory and race it for `out`. The lock is flock() on `out`.lock:
 * it belongs to the open file description, so it also shuts out a second call from this process, and the kernel
 * drops it when its holder dies, so a killed run never leaves `out` locked. The file itself stays: removed, a run
 * that had just opened it would lock the deleted file while the next one locks a new file, and both would run.
 * Refused at once, never waited for: a request should learn that the model is busy, not hang for a training. */
static kelp_status lock_output(const char *out, int *fd)
{
    char path[PATH_MAX];
    *fd = -1;
    if (snprintf(path, sizeof path, "%s.lock", out) >= (int)sizeof path)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s.lock: path too long", out);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (f < 0)
        return kelp_set_error(KELP_ERR_IO, "%s: cannot open the fine-tuning lock: %s", path, strerror(errno));
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(f);
        if (e == EWOULDBLOCK)
            return kelp_set_error(KELP_ERR_IO, "%s: another fine-tuning writing it is running (%s is locked); try "
                                               "again when it has finished", out, path);
        return kelp_set_error(KELP_ERR_IO, "%s: cannot lock: %s", path, strerror(e));
    }
    *fd = f;
    return KELP_OK;
}

/* Unlocked explicitly, not only closed: a child the caller forked meanwhile shares the lock and would keep it. */
static void unlock_output(int fd)
{
    if (fd < 0)
        return;
    flock(fd, LOCK_UN);
    close(fd);
}

/* Run directories of `out` that a killed fine-tuning left behind (checkpoints with optimizer state). Called only
 * under the lock, when any run directory there belongs to a process that is gone. */
static void remove_stale_runs(const char *out)
{
    char pattern[PATH_MAX];
    if (snprintf(pattern, sizeof pattern, "%s.train-??????", out) >= (int)sizeof pattern)
        return;
    glob_t found;
    if (glob(pattern, GLOB_ONLYDIR | GLOB_NOSORT, NULL, &found) == 0)
        for (size_t i = 0; i < found.gl_pathc; i++)
            kelp_remove_tree(found.gl_pathv[i]);
    globfree(&found);
}

/* A model file that is not in the zoo is rebuilt from the copy the checkpoint carries, written into the run. */
static kelp_status model_source(const char *checkpoint, const char *run_dir, const char *configured, char *path,
                                size_t size)
{
    if (configured && kelp_model_zoo_description(configured)) { /* a zoo name */
        snprintf(path, size, "%s", configured);
        return KELP_OK;
    }
    char *model = NULL;
    KELP_TRY(kelp_checkpoint_model(checkpoint, &model, NULL));
    kelp_status s = kelp_path_join(path, size, run_dir, "model.json");
    if (s == KELP_OK)
        s = kelp_atomic_write(path, model, strlen(model));
    free(model);
    return s;
}

static kelp_status run_finetune(const char *checkpoint, const kelp_finetune_options *f, const char *run_dir,
                                cJSON *result)
{
    char *model = NULL, *config = NULL;
    KELP_TRY(kelp_checkpoint_model(checkpoint, &model, &config));
    free(model);
    kelp_train_options base, o;
    kelp_train_options_defaults(&base);
    void *keep = NULL;
    kelp_status s = kelp_train_options_from_config(config, checkpoint, &base, &o, &keep);
    free(config);
    char model_path[PATH_MAX];
    if (s == KELP_OK)
        s = model_source(checkpoint, run_dir, o.model, model_path, sizeof model_path);
    if (s == KELP_OK) {
        o.model = model_path;
        o.data = f->data;
        o.out = run_dir;
        o.init_from = checkpoint;
        o.resume = false;
        o.stop_after_steps = 0;
        o.epochs = f->epochs > 0 ? f->epochs : 1;
        if (f->batch > 0)
            o.batch = f->batch;
        if (f->lr > 0)
            o.lr = f->lr;
        o.threads = f->threads;
        o.device = f->device;
        o.seed = f->seed;
        s = kelp_train(&o, NULL, NULL);
    }
    kelp_train_config_free(keep);
    KELP_TRY(s);

    /* the best validation epoch when the dataset has a validation split, else the last */
    char best[PATH_MAX];
    KELP_TRY(kelp_path_join(best, sizeof best, run_dir, "best.ckpt"));
    if (access(best, R_OK) != 0)
        KELP_TRY(kelp_path_join(best, sizeof best, run_dir, "last.ckpt"));
    kelp_ctx_options co = kelp_ctx_defaults();
    co.threads = f->threads;
    co.device = f->device; /* NULL: the CPU */
    kelp_ctx *ctx;
    KELP_TRY(kelp_ctx_create(&co, &ctx));
    kelp_dataset *ds = NULL;
    s = kelp_dataset_open(f->data, &ds);
    kelp_split scored = KELP_SPLIT_TEST;
    if (s == KELP_OK && kelp_dataset_count(ds, KELP_SPLIT_TEST) == 0)
        scored = kelp_dataset_count(ds, KELP_SPLIT_VAL) > 0 ? KELP_SPLIT_VAL : KELP_SPLIT_TRAIN;
    kelp_dataset_close(ds);
    cJSON *metrics = NULL;
    if (s == KELP_OK)
        s = kelp_classifier_evaluate_file(ctx, best, f->data, scored, 64, &metrics);
    if (s == KELP_OK)
        s = kelp_checkpoint_strip(ctx, best, f->out);
    kelp_ctx_destroy(ctx);
    if (s == KELP_OK) {
        cJSON_AddNumberToObject(result, "epochs", o.epochs);
        cJSON_AddStringToObject(result, "scored_split", kelp_split_name(scored));
        cJSON_AddNumberToObject(result, "top1", cJSON_GetNumberValue(cJSON_GetObjectItem(metrics, "top1")));
        cJSON_AddNumberToObject(result, "top5", cJSON_GetNumberValue(cJSON_GetObjectItem(metrics, "top5")));
        cJSON_AddNumberToObject(result, "images", cJSON_GetNumberValue(cJSON_GetObjectItem(metrics, "samples")));
        cJSON_AddStringToObject(result, "weights", f->out);
    }
    cJSON_Delete(metrics);
    return s;
}

kelp_finetune_options kelp_finetune_defaults(void)
{
    kelp_finetune_options o = {.epochs = 1, .device = "cpu"};
    return o;
}

kelp_status kelp_finetune(const char *path, const kelp_finetune_options *options, char **result_json)
{
    if (result_json)
        *result_json = NULL;
    if (!path || !options || !options->data || !options->out)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_finetune: a model, a dataset and an output file are needed");
    char *checkpoint = NULL;
    KELP_TRY(kelp_checkpoint_resolve(path, &checkpoint));
    /* the run lives next to the output, on the same file system, and goes away whatever happens */
    size_t n = strlen(options->out) + sizeof ".train-XXXXXX";
    char *run_dir = malloc(n);
    cJSON *result = cJSON_CreateObject();
    kelp_status s = KELP_OK;
    if (!run_dir || !result)
        s = kelp_set_error(KELP_ERR_NO_MEMORY, "kelp_finetune: out of memory");
    int lock = -1;
    if (s == KELP_OK)
        s = lock_output(options->out, &lock);
    if (s == KELP_OK) {
        remove_stale_runs(options->out);
        snprintf(run_dir, n, "%s.train-XXXXXX", options->out);
        if (!mkdtemp(run_dir))
            s = kelp_set_error(KELP_ERR_IO, "%s: cannot create a training directory: %s", run_dir, strerror(errno));
        else {
            s = run_finetune(checkpoint, options, run_dir, result);
            kelp_remove_tree(run_dir);
        }
        /* messages about files of the run directory, which no longer exists, need the user's names around them */
        if (s != KELP_OK)
            s = kelp_wrap_error(s, "fine-tuning %s on %s: ", path, options->data);
    }
    if (s == KELP_OK && result_json && !(*result_json = cJSON_PrintUnformatted(result)))
        s = kelp_set_error(KELP_ERR_NO_MEMORY, "kelp_finetune: out of memory");
    unlock_output(lock);
    cJSON_Delete(result);
    free(run_dir);
    free(checkpoint);
    return s;
}
