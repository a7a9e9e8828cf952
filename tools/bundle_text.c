#include "tools/bundle_text.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/atomic_file.h"
#include "io/path.h"
#include "io/utf8.h"

void bundle_info_defaults(bundle_info *info)
{
    memset(info, 0, sizeof *info);
    info->author = "unknown";
    info->license = "MIT";
    info->version = "1.0.0";
    info->max_pixels = 25000000;
}

/* Module names become URL path segments, entry-point names, PEP 508 project names and (with '_') Python package
 * names: a lower-case letter first, a letter or digit last, no "--". */
static bool valid_module_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 48 || !islower((unsigned char)s[0]) || s[n - 1] == '-' || strstr(s, "--"))
        return false;
    for (; *s; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '-')
            return false;
    return true;
}

/* Package names that would shadow what the bundle imports (or be shadowed by it), or take the name of one of the
 * bundle's own directories (model/, lib/, tests/). */
static bool reserved_package(const char *s)
{
    static const char *const names[] = {"aiohttp", "ctypes", "deepaas", "io", "json", "kelp", "lib", "marshmallow",
                                        "model", "os", "pathlib", "sys", "test", "tests", "webargs"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(s, names[i]) == 0)
            return true;
    return false;
}

/* X.Y or X.Y.Z, digits: what VERSION and pyproject.toml (PEP 440) both accept. */
static bool valid_version(const char *s)
{
    int parts = 0;
    while (isdigit((unsigned char)*s)) {
        while (isdigit((unsigned char)*s))
            s++;
        parts++;
        if (*s != '.')
            break;
        s++;
    }
    return *s == 0 && parts >= 2 && parts <= 3;
}

/* A text option copied into its field: refused when it does not fit or is not UTF-8, never cut. */
static kelp_status copy_text(char *dst, size_t size, const char *option, const char *value)
{
    if (strlen(value) >= size || !kelp_utf8_valid(value, strlen(value)))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "--%s: at most %zu bytes of UTF-8 text", option, size - 1);
    memcpy(dst, value, strlen(value) + 1);
    return KELP_OK;
}

kelp_status bundle_info_complete(bundle_info *info, const char *model_json)
{
    cJSON *model = cJSON_Parse(model_json);
    const cJSON *name = cJSON_GetObjectItem(model, "name");
    snprintf(info->model, sizeof info->model, "%s", cJSON_IsString(name) ? name->valuestring : "model");
    cJSON_Delete(model);
    if (info->name) {
        if (!valid_module_name(info->name))
            return kelp_set_error(KELP_ERR_INVALID_ARG, "--name '%s': use lower case letters, digits and single '-', "
                                                        "a letter first, no '-' last, at most 48 characters",
                                  info->name);
        snprintf(info->module, sizeof info->module, "%s", info->name);
    } else {
        size_t n = 0;
        for (const char *c = info->model; *c && n + 1 < 49; c++)
            if ((isalnum((unsigned char)*c) || *c == '-' || *c == '_') && !(n && info->module[n - 1] == '-' &&
                                                                         (*c == '-' || *c == '_')))
                info->module[n++] = *c == '_' ? '-' : (char)tolower((unsigned char)*c);
        while (n && info->module[n - 1] == '-')
            n--;
        info->module[n] = 0;
        if (!valid_module_name(info->module) || reserved_package(info->module)) { /* "3d-net", "model" */
            char base[sizeof info->module];
            memcpy(base, info->module, sizeof base);
            snprintf(info->module, sizeof info->module, "kelp-%.40s", n ? base : "model");
        }
    }
    for (size_t i = 0; i < sizeof info->package && (info->package[i] = info->module[i]); i++)
        if (info->package[i] == '-')
            info->package[i] = '_';
    if (reserved_package(info->package))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "--name '%s': the Python package '%s' would clash with a module "
                                                    "the bundle imports; choose another name",
                              info->module, info->package);
    if (!valid_version(info->version))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "--version '%s': use X.Y or X.Y.Z (digits)", info->version);
    if (!kelp_utf8_valid(info->author, strlen(info->author)) || !kelp_utf8_valid(info->license, strlen(info->license)))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "--author and --license must be UTF-8 text");
    KELP_TRY(copy_text(info->title_text, sizeof info->title_text, "title", info->title ? info->title : info->module));
    if (info->summary)
        KELP_TRY(copy_text(info->summary_text, sizeof info->summary_text, "summary", info->summary));
    else
        snprintf(info->summary_text, sizeof info->summary_text, "Image classification with a %s network trained "
                 "with kelp.", info->model);
    if (info->source_url)
        KELP_TRY(copy_text(info->url_text, sizeof info->url_text, "source-url", info->source_url));
    else
        snprintf(info->url_text, sizeof info->url_text, "https://github.com/ai4os-hub/%s", info->module);
    return KELP_OK;
}

/* ---- writing text ---- */

/* A string as a double-quoted scalar that YAML, TOML and JSON all read back unchanged: quotes and backslashes
 * escaped; C0 controls, DEL, C1 controls and U+2028/2029 (which YAML refuses or takes as line breaks) as \uXXXX;
 * bytes that are not UTF-8 as U+FFFD. With one_line, line breaks and tabs become spaces (TOML descriptions). */
static void quoted_as(FILE *f, const char *text, bool one_line)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text);
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (one_line && (c == '\n' || c == '\r' || c == '\t'))
                fputc(' ', f);
            else if (c == '"' || c == '\\')
                fprintf(f, "\\%c", c);
            else if (c < 0x20 || c == 0x7f)
                fprintf(f, "\\u%04x", c);
            else
                fputc((int)c, f);
            i++;
            continue;
        }
        size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
        if (len > n - i || kelp_utf8_valid_prefix(s + i, len) != len) {
            fputs("\\ufffd", f);
            i++;
            continue;
        }
        if (c == 0xc2 && s[i + 1] < 0xa0)
            fprintf(f, "\\u%04x", s[i + 1]); /* U+0080..U+009F */
        else if (c == 0xe2 && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9))
            fprintf(f, "\\u%04x", 0x2000 + (s[i + 2] - 0x80));
        else
            fwrite(s + i, 1, len, f);
        i += len;
    }
    fputc('"', f);
}

static void quoted(FILE *f, const char *s) { quoted_as(f, s, false); }

/* Text on one line: line breaks and controls become spaces; in a Markdown table cell, '|' is escaped too. */
static void one_line(FILE *f, const char *s, bool cell)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            fputc(' ', f);
        else if (c == '|' && cell)
            fputs("\\|", f);
        else
            fputc(c, f);
    }
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
    for (int i = 0; i < b->class_count && i < 20; i++) {
        fputs(i ? ", " : "", f);
        one_line(f, b->classes[i], false);
    }
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
    quoted_as(f, b->summary_text, true);
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
    fputs("# ", f);
    one_line(f, b->title_text, false);
    fprintf(f, "\n\n%s\n\n", b->summary_text);
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
    fputs("## Model\n\n| | |\n|---|---|\n| architecture | ", f);
    one_line(f, b->model, true);
    fprintf(f, " |\n| input | %d x %d x %d, fitted as in training |\n"
               "| classes | %d |\n| memory (planned tensors) | inference %.1f MiB at batch 1, training %.1f MiB at batch %d |\n"
               "| engine | kelp %s |\n\n",
            b->input_h, b->input_w, b->input_c, b->class_count, b->infer_mib, b->train_mib, b->train_batch,
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
            for (const cJSON *c = per_class->child; c; c = c->next) {
                fputs("| ", f);
                one_line(f, cJSON_GetStringValue(cJSON_GetObjectItem(c, "name")) ?: "?", true);
                fprintf(f, " | %.4f | %.4f | %.4f | %.0f |\n", cJSON_GetNumberValue(cJSON_GetObjectItem(c, "precision")),
                        cJSON_GetNumberValue(cJSON_GetObjectItem(c, "recall")),
                        cJSON_GetNumberValue(cJSON_GetObjectItem(c, "f1")),
                        cJSON_GetNumberValue(cJSON_GetObjectItem(c, "support")));
            }
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
    KELP_TRY(kelp_path_join(path, sizeof path, root, name));
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
