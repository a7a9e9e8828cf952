/* Weights as safetensors in PyTorch's layouts and names: a torchvision state_dict saved with
 * safetensors.torch.save_file loads directly, and kelp's files load in PyTorch. Convolution weights are OHWI in
 * memory and OIHW on disk; everything else is stored as it is. */
#include <stdlib.h>
#include <string.h>

#include "engine/graph_internal.h"
#include "io/safetensors.h"

static kelp_st_dtype st_dtype(kelp_dtype d) { return d == KELP_I64 ? KELP_ST_I64 : KELP_ST_F32; }

/* (O,I,H,W) <-> (O,H,W,I) for 4-byte elements; `to_ohwi` picks the direction. */
static void permute_oihw(const kelp_shape *oihw, const float *src, float *dst, bool to_ohwi)
{
    int64_t o = oihw->dims[0], in = oihw->dims[1], hw = oihw->dims[2] * oihw->dims[3];
    for (int64_t a = 0; a < o; a++)
        for (int64_t i = 0; i < in; i++)
            for (int64_t p = 0; p < hw; p++) {
                int64_t oihw_index = (a * in + i) * hw + p, ohwi_index = (a * hw + p) * in + i;
                if (to_ohwi)
                    dst[ohwi_index] = src[oihw_index];
                else
                    dst[oihw_index] = src[ohwi_index];
            }
}

kelp_status kelp_graph_write_safetensors(kelp_graph *g, const char *path, const kelp_st_record *extra,
                                        size_t n_extra, const kelp_st_meta *meta, size_t n_meta)
{
    size_t total = 0, count = (size_t)g->n_params + n_extra;
    for (int i = 0; i < g->n_params; i++)
        total += kelp_tensor_bytes(&g->params[i].value);
    kelp_st_record *records = calloc(count + 1, sizeof *records);
    char *host = malloc(total ? total : 1);
    kelp_status s = (records && host) ? KELP_OK : kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
    size_t offset = 0;
    for (int i = 0; i < g->n_params && s == KELP_OK; i++) {
        const kelp_graph_param *p = &g->params[i];
        size_t bytes = kelp_tensor_bytes(&p->value);
        s = kelp_graph_read_param(g, i, false, host + offset, bytes);
        records[i] = (kelp_st_record){p->name, st_dtype(p->spec.dtype), p->spec.shape, host + offset};
        offset += bytes;
    }
    if (s == KELP_OK) {
        if (n_extra)
            memcpy(records + g->n_params, extra, n_extra * sizeof *records);
        s = kelp_st_write(path, records, count, meta, n_meta);
    }
    free(records);
    free(host);
    return s;
}

kelp_status kelp_graph_save_weights(kelp_graph *g, const char *path)
{
    const kelp_st_meta meta[] = {{"format", "pt"}, {"producer", "kelp " KELP_VERSION_STRING}};
    return kelp_graph_write_safetensors(g, path, NULL, 0, meta, 2);
}

/* Checks a file tensor against a parameter; *load says whether to take it (a mismatched shape may be skipped). */
static kelp_status match_param(const kelp_graph_param *p, const kelp_st_info *info, int flags, const char *path,
                               bool *load)
{
    char want[96], got[96];
    *load = false;
    if (!kelp_shape_equal(&info->shape, &p->spec.shape)) {
        if (flags & KELP_LOAD_SKIP_MISMATCHED)
            return KELP_OK;
        return kelp_set_error(KELP_ERR_SHAPE, "%s: tensor '%s' has shape %s, the model expects %s", path, p->name,
                              kelp_shape_str(&info->shape, got, sizeof got),
                              kelp_shape_str(&p->spec.shape, want, sizeof want));
    }
    if (info->dtype != st_dtype(p->spec.dtype))
        return kelp_set_error(KELP_ERR_FORMAT, "%s: tensor '%s' has dtype %s, the model expects %s", path, p->name,
                              kelp_st_dtype_name(info->dtype), kelp_dtype_name(p->spec.dtype));
    *load = true;
    return KELP_OK;
}

/* All tensors are validated and read into host memory before any parameter changes, so a bad file leaves the
 * graph exactly as it was. */
kelp_status kelp_graph_load_weights(kelp_graph *g, const char *path, int flags)
{
    kelp_st_file *file;
    KELP_TRY(kelp_st_open(path, &file));
    size_t n_file = kelp_st_count(file);
    const kelp_st_info **chosen = calloc((size_t)g->n_params + 1, sizeof *chosen);
    bool *used = calloc(n_file + 1, sizeof *used);
    kelp_status s = (chosen && used) ? KELP_OK : kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
    size_t total = 0;
    for (int i = 0; i < g->n_params && s == KELP_OK; i++) {
        const kelp_graph_param *p = &g->params[i];
        const kelp_st_info *info;
        if (kelp_st_find(file, p->name, &info) != KELP_OK) {
            if (!(flags & KELP_LOAD_ALLOW_MISSING))
                s = kelp_set_error(KELP_ERR_NOT_FOUND, "%s: the model's parameter '%s' is missing from the file",
                                   path, p->name);
            continue;
        }
        used[info - kelp_st_info_at(file, 0)] = true;
        bool load;
        s = match_param(p, info, flags, path, &load);
        if (load) {
            chosen[i] = info;
            total += (size_t)info->nbytes;
        }
    }
    for (size_t k = 0; k < n_file && s == KELP_OK && !(flags & KELP_LOAD_ALLOW_UNEXPECTED); k++)
        if (!used[k] && strncmp(kelp_st_info_at(file, k)->name, KELP_RESERVED_PREFIX, strlen(KELP_RESERVED_PREFIX)))
            s = kelp_set_error(KELP_ERR_FORMAT, "%s: tensor '%s' matches no parameter of the model", path,
                               kelp_st_info_at(file, k)->name);
    char *host = s == KELP_OK ? malloc(total ? total : 1) : NULL;
    if (s == KELP_OK && !host)
        s = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
    size_t offset = 0;
    for (int i = 0; i < g->n_params && s == KELP_OK; i++) {
        if (!chosen[i])
            continue;
        s = kelp_st_read(file, chosen[i], host + offset, (size_t)chosen[i]->nbytes);
        offset += (size_t)chosen[i]->nbytes;
    }
    float *scratch = NULL;
    offset = 0;
    for (int i = 0; i < g->n_params && s == KELP_OK; i++) {
        if (!chosen[i])
            continue;
        kelp_graph_param *p = &g->params[i];
        size_t bytes = (size_t)chosen[i]->nbytes;
        const void *src = host + offset;
        if (p->spec.ohwi) {
            free(scratch);
            scratch = malloc(bytes);
            if (!scratch) {
                s = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
                break;
            }
            permute_oihw(&p->spec.shape, src, scratch, true);
            src = scratch;
        }
        s = g->be->iface->upload(g->be, p->value.data, src, bytes);
        offset += bytes;
    }
    free(scratch);
    free(host);
    free(chosen);
    free(used);
    kelp_st_close(file);
    kelp_graph_mark_params_changed(g);
    return s;
}

kelp_status kelp_graph_read_param(kelp_graph *g, int index, bool grad, void *host, size_t bytes)
{
    if (index < 0 || index >= g->n_params)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "graph: parameter index %d outside [0, %d)", index, g->n_params);
    const kelp_graph_param *p = &g->params[index];
    if (grad && !p->grad.data)
        return kelp_set_error(KELP_ERR_INVALID_ARG,
                              "graph: parameter '%s' has no gradient (a buffer, or a graph built without training)",
                              p->name);
    const kelp_tensor *t = grad ? &p->grad : &p->value;
    size_t need = kelp_tensor_bytes(t);
    if (bytes != need)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "graph: parameter '%s' holds %zu bytes, not %zu", p->name, need,
                              bytes);
    if (!p->spec.ohwi)
        return g->be->iface->download(g->be, host, t->data, bytes);
    float *scratch = malloc(bytes);
    if (!scratch)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "graph: out of memory reading parameter '%s'", p->name);
    kelp_status s = g->be->iface->download(g->be, scratch, t->data, bytes);
    if (s == KELP_OK)
        permute_oihw(&p->spec.shape, scratch, host, false);
    free(scratch);
    return s;
}
