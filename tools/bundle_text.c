#include "tools/bundle_text.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/atomic_file.h"

void bundle_info_defaults(bundle_info *info)
{
    memset(info, 0, sizeof *info);
    info->author = "unknown";
    info->license = "MIT";
    info->version = "1.0.0";
    info->max_pixels = 25000000;
}

/* Module names become URL path segments, entry-point names and (with '_') Python package names. */
static bool valid_module_name(const char *s)
{
    if (!islower((unsigned char)s[0]) || strlen(s) > 48)
        return false;
    for (; *s; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '-')
            return false;
    return true;
}

kelp_status bundle_info_complete(bundle_info *info, const char *model_json)
{
    cJSON *model = cJSON_Parse(model_json);
    const cJSON *name = cJSON_GetObjectItem(model, "name");
    snprintf(info->model, sizeof info->model, "%s", cJSON_IsString(name) ? name->valuestring : "model");
    cJSON_Delete(model);
    if (info->name) {
        if (!valid_module_name(info->name))
            return kelp_set_error(KELP_ERR_INVALID_ARG, "--name '%s': use lower case letters, digits and '-', starting "
                                                        "with a letter, at most 48 characters", info->name);
        snprintf(info->module, sizeof info->module, "%s", info->name);
    } else {
        size_t n = 0;
        for (const char *c = info->model; *c && n + 1 < 49; c++)
            if (isalnum((unsigned char)*c) || *c == '-' || *c == '_')
                info->module[n++] = *c == '_' ? '-' : (char)tolower((unsigned char)*c);
        info->module[n] = 0;
        if (!valid_module_name(info->module)) { /* e.g. a model named "3d-net" */
            char base[sizeof info->module];
            memcpy(base, info->module, sizeof base);
            snprintf(info->module, sizeof info->module, "kelp-%.48s", n ? base : "model");
        }
    }
    for (size_t i = 0; i < sizeof info->package && (info->package[i] = info->module[i]); i++)
        if (info->package[i] == '-')
            info->package[i] = '_';
    snprintf(info->title_text, sizeof info->title_text, "%s", info->title ? info->title : info->module);
    if (info->summary)
        snprintf(info->summary_text, sizeof info->summary_text, "%s", info->summary);
    else
        snprintf(info->summary_text, sizeof info->summary_text, "Image classification with a %s network trained "
                 "with kelp.", info->model);
    if (info->source_url)
        snprintf(info->url_text, sizeof info->url_text, "%s", info->source_url);
    else
        snprintf(info->url_text, sizeof info->url_text, "https://github.com/ai4os-hub/%s", info->module);
    return KELP_OK;
}

/* ---- writing text ---- */

/* A string as a double-quoted scalar: JSON's escapes are valid in YAML and TOML basic strings alike. */
static void quoted(FILE *f, const char *s)
{
    cJSON *str = cJSON_CreateString(s);
    char *text = str ? cJSON_PrintUnformatted(str) : NULL;
    fputs(text ? text : "\"\"", f);
    free(text);
    cJSON_Delete(str);
}

static double metric(const bundle_info *b, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(b->metrics, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* One paragraph saying what the model is and how well it did: the catalogue description and the card's intro. */
static void describe(FILE *f, const bundle_info *b)
{
    fprintf(f, "A %s convolutional network trained with kelp %s to classify images (fitted to %dx%d, %s) into %d "
               "classes: ", b->model, KELP_VERSION_STRING, b->input_w, b->input_h, b->input_c == 1 ? "gray" : "RGB",
            b->class_count);
    for (int i = 0; i < b->class_count && i < 20; i++)
        fprintf(f, "%s%s", i ? ", " : "", b->classes[i]);
    fprintf(f, "%s.", b->class_count > 20 ? ", ..." : "");
    if (b->metrics)
        fprintf(f, " Measured by kelp eval: top-1 accuracy %.2f%%, top-5 %.2f%% on %.0f images of the %s split of %s.",
                100 * metric(b, "top1"), 100 * metric(b, "top5"), metric(b, "samples"),
                cJSON_GetStringValue(cJSON_GetObjectItem(b->metrics, "split")) ?: "test", b->metrics_source);
}

static char *description(const bundle_info *b)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (!f)
        return NULL;
    describe(f, b);
    fclose(f);
    return text;
}

static void today(char *out, size_t size)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, size, "%Y-%m-%d", &tm);
}

/* MiB -> whole megabytes (10^6 bytes, rounded up) plus an allowance. */
static long megabytes(double mib, long allowance) { return (long)(mib * 1.048576 + 0.999) + allowance; }

/* The process itself (the Python server, the libraries) takes about 200 MB besides the model's tensors. */
#define PROCESS_MB 200

static void write_metadata(FILE *f, const bundle_info *b)
{
    char date[16];
    today(date, sizeof date);
    char *desc = description(b);
    fputs("# AI4OS / iMagine catalogue metadata, written by kelp export (valid under ai4-metadata 2.x).\n", f);
    fputs("metadata_version: \"2.0.0\"\ntitle: ", f);
    quoted(f, b->title_text);
    fputs("\nsummary: ", f);
    quoted(f, b->summary_text);
    fputs("\ndescription: ", f);
    quoted(f, desc ? desc : b->summary_text);
    free(desc);
    fprintf(f, "\ndates:\n  created: \"%s\"\n  updated: \"%s\"\nlinks:\n  source_code: ", date, date);
    quoted(f, b->url_text);
    fputs("\ntags:\n  - \"deep learning\"\n  - \"image classification\"\n  - \"kelp\"\n  - \"vo.imagine-ai.eu\"\n"
          "libraries:\n  - \"Other\"\ntasks:\n  - \"Computer Vision\"\n  - \"Classification\"\n"
          "categories:\n  - \"AI4 pre trained\"\n  - \"AI4 trainable\"\n  - \"AI4 inference\"\n"
          "data-type:\n  - \"Image\"\n", f);
    fprintf(f, "resources:\n  inference:\n    cpu: 1\n    gpu: 0\n    memory_MB: %ld\n    storage_MB: %ld\n"
               "  training:\n    cpu: 2\n    gpu: 0\n    memory_MB: %ld\n    storage_MB: %ld\n",
            megabytes(b->infer_mib, PROCESS_MB), megabytes(b->storage_mib, 1), megabytes(b->train_mib, PROCESS_MB),
            megabytes(b->storage_mib + 4 * b->weights_mib, 1));
}

static void write_bundle_json(FILE *f, const bundle_info *b)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", b->module);
    cJSON_AddStringToObject(j, "package", b->package);
    cJSON_AddStringToObject(j, "title", b->title_text);
    cJSON_AddStringToObject(j, "summary", b->summary_text);
    cJSON_AddStringToObject(j, "author", b->author);
    cJSON_AddStringToObject(j, "license", b->license);
    cJSON_AddStringToObject(j, "version", b->version);
    cJSON_AddStringToObject(j, "source_url", b->url_text);
    cJSON_AddStringToObject(j, "task", "classification");
    cJSON_AddStringToObject(j, "model", b->model);
    cJSON_AddStringToObject(j, "kelp_version", KELP_VERSION_STRING);
    cJSON_AddItemToObject(j, "classes", cJSON_CreateStringArray(b->classes, b->class_count));
    cJSON *input = cJSON_AddObjectToObject(j, "input");
    cJSON_AddNumberToObject(input, "height", b->input_h);
    cJSON_AddNumberToObject(input, "width", b->input_w);
    cJSON_AddNumberToObject(input, "channels", b->input_c);
    cJSON_AddNumberToObject(j, "max_pixels", b->max_pixels);
    if (b->metrics) {
        cJSON *m = cJSON_AddObjectToObject(j, "metrics");
        cJSON_AddNumberToObject(m, "top1", metric(b, "top1"));
        cJSON_AddNumberToObject(m, "top5", metric(b, "top5"));
        cJSON_AddNumberToObject(m, "images", metric(b, "samples"));
        cJSON_AddStringToObject(m, "split", cJSON_GetStringValue(cJSON_GetObjectItem(b->metrics, "split")) ?: "test");
        cJSON_AddStringToObject(m, "data", b->metrics_source);
    } else {
        cJSON_AddNullToObject(j, "metrics");
    }
    char *text = cJSON_Print(j);
    fprintf(f, "%s\n", text ? text : "{}");
    free(text);
    cJSON_Delete(j);
}

static void write_pyproject(FILE *f, const bundle_info *b)
{
    fputs("# The module's Python package; DEEPaaS finds its API through the entry point below.\n"
          "[build-system]\nrequires = [\"setuptools>=64\"]\nbuild-backend = \"setuptools.build_meta\"\n\n"
          "[project]\n",
          f);
    fprintf(f, "name = \"%s\"\nversion = ", b->module);
    quoted(f, b->version);
    fputs("\ndescription = ", f);
    quoted(f, b->summary_text);
    fputs("\nlicense = {text = ", f);
    quoted(f, b->license);
    fputs("}\nrequires-python = \">=3.9\"\n"
          "# webargs 5 is the one DEEPaaS 2.x reads field locations from\n"
          "dependencies = [\"deepaas>=2.6.0,<3\", \"webargs~=5.5.3\"]\n\n"
          "[project.entry-points.\"deepaas.v2.model\"]\n",
          f);
    fprintf(f, "%s = \"%s.api\"\n\n[tool.setuptools]\npackages = [\"%s\"]\n", b->module, b->package, b->package);
}

static void write_license(FILE *f, const bundle_info *b)
{
    if (strcmp(b->license, "MIT") != 0) {
        fprintf(f, "SPDX-License-Identifier: %s\n\nThis module is distributed under the %s license: "
                   "https://spdx.org/licenses/%s.html\n", b->license, b->license, b->license);
        return;
    }
    char year[8];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(year, sizeof year, "%Y", &tm);
    fprintf(f, "MIT License\n\nCopyright (c) %s %s\n\n", year, b->author);
    fputs("Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated\n"
          "documentation files (the \"Software\"), to deal in the Software without restriction, including without\n"
          "limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the\n"
          "Software, and to permit persons to whom the Software is furnished to do so, subject to the following\n"
          "conditions:\n\nThe above copyright notice and this permission notice shall be included in all copies or\n"
          "substantial portions of the Software.\n\nTHE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, "
          "EXPRESS OR IMPLIED, INCLUDING BUT NOT\nLIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A "
          "PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO\nEVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR "
          "ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER\nIN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, "
          "OUT OF OR IN CONNECTION WITH THE SOFTWARE OR\nTHE USE OR OTHER DEALINGS IN THE SOFTWARE.\n",
          f);
}

static void write_readme(FILE *f, const bundle_info *b)
{
    fprintf(f, "# %s\n\n%s\n\n", b->title_text, b->summary_text);
    describe(f, b);
    fprintf(f, "\n\n## Use\n\n"
               "Serve it with DEEPaaS (the platform's REST layer), from this directory:\n\n"
               "```\npip install -e .\ndeepaas-run --listen-ip 0.0.0.0 --model-name %s --client-max-size 33554432\n"
               "curl -F image=@fish.jpg http://127.0.0.1:5000/v2/models/%s/predict/\n```\n\n"
               "or with Docker (`docker build -t %s . && docker run -p 5000:5000 %s`), or without Python:\n"
               "`kelp predict --bundle . IMAGE...`. C programs link `lib/libkelp.so` (kelp's `kelp/predictor.h`).\n\n"
               "`predict` answers `{\"status\": \"OK\", \"labels\": [...], \"probabilities\": [...]}` (top_k, default 5);\n"
               "an upload that is not a PNG or JPEG image gets 400, one declaring more than %d pixels 413.\n"
               "`train` fine-tunes the model on an HDF5 dataset on the server (`kelp data import`) and replaces\n"
               "`model/weights.safetensors` with the best epoch.\n\n",
            b->module, b->module, b->module, b->module, b->max_pixels);
    fprintf(f, "## Model\n\n| | |\n|---|---|\n| architecture | %s |\n| input | %d x %d x %d, fitted as in training |\n"
               "| classes | %d |\n| memory (planned tensors) | inference %.1f MiB at batch 1, training %.1f MiB at batch %d |\n"
               "| engine | kelp %s |\n\n",
            b->model, b->input_h, b->input_w, b->input_c, b->class_count, b->infer_mib, b->train_mib, b->train_batch,
            KELP_VERSION_STRING);
    fputs("## Evaluation\n\n", f);
    const cJSON *per_class = cJSON_GetObjectItem(b->metrics, "per_class");
    if (!b->metrics) {
        fputs("Not evaluated at export (give `kelp export --data DATA.h5`).\n\n", f);
    } else {
        fprintf(f, "Top-1 %.2f%%, top-5 %.2f%% on %.0f images (%s).\n\n", 100 * metric(b, "top1"),
                100 * metric(b, "top5"), metric(b, "samples"), b->metrics_source);
        if (cJSON_IsArray(per_class)) {
            fputs("| class | precision | recall | F1 | support |\n|---|---|---|---|---|\n", f);
            for (const cJSON *c = per_class->child; c; c = c->next)
                fprintf(f, "| %s | %.4f | %.4f | %.4f | %.0f |\n",
                        cJSON_GetStringValue(cJSON_GetObjectItem(c, "name")) ?: "?",
                        cJSON_GetNumberValue(cJSON_GetObjectItem(c, "precision")),
                        cJSON_GetNumberValue(cJSON_GetObjectItem(c, "recall")),
                        cJSON_GetNumberValue(cJSON_GetObjectItem(c, "f1")),
                        cJSON_GetNumberValue(cJSON_GetObjectItem(c, "support")));
            fputs("\n", f);
        }
    }
    fprintf(f, "## Files\n\n- `ai4-metadata.yml`: the catalogue entry\n- `%s/api.py`: the DEEPaaS API, `%s/_kelp.py`: "
               "the binding to `lib/libkelp.so`\n- `model/`: `model.json` (kelp model file), `weights.safetensors` "
               "(PyTorch names and layouts), `bundle.json`, `model.onnx` when exported with `--onnx`\n"
               "- `tests/test_api.py`: `python3 -m unittest discover -s tests`\n\nLicense: %s. Author: %s.\n",
            b->package, b->package, b->license, b->author);
}

static kelp_status write_one(const char *root, const char *name, void (*fill)(FILE *, const bundle_info *),
                             const bundle_info *b)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", root, name);
    if (n < 0 || n >= (int)sizeof path)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s/%s: path too long", root, name);
    kelp_atomic_file *file;
    KELP_TRY(kelp_atomic_open(path, &file));
    FILE *f = kelp_atomic_stream(file);
    fill(f, b);
    if (ferror(f)) {
        kelp_atomic_abort(file);
        return kelp_set_error(KELP_ERR_IO, "%s: write error", path);
    }
    return kelp_atomic_commit(file);
}

static void write_version(FILE *f, const bundle_info *b) { fprintf(f, "%s\n", b->version); }

kelp_status bundle_write_texts(const bundle_info *b, const char *root)
{
    KELP_TRY(write_one(root, "ai4-metadata.yml", write_metadata, b));
    KELP_TRY(write_one(root, "model/bundle.json", write_bundle_json, b));
    KELP_TRY(write_one(root, "pyproject.toml", write_pyproject, b));
    KELP_TRY(write_one(root, "LICENSE", write_license, b));
    KELP_TRY(write_one(root, "VERSION", write_version, b));
    return write_one(root, "README.md", write_readme, b);
}
