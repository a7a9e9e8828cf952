/* Parameter initialization on the host, then one upload per parameter. The stream of each parameter depends only
 * on the context seed and the parameter's name, so adding a layer elsewhere does not change the others' values. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/graph_internal.h"
#include "kernels/ops/rng.h"

static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xCBF29CE484222325ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return h;
}

static void fill(float *x, int64_t n, const kelp_param_spec *spec, uint64_t seed)
{
    switch (spec->init) {
    case KELP_INIT_ZEROS:
        memset(x, 0, (size_t)n * sizeof *x);
        return;
    case KELP_INIT_ONES:
        for (int64_t i = 0; i < n; i++)
            x[i] = 1.0f;
        return;
    case KELP_INIT_UNIFORM_FAN_IN: {
        float bound = spec->fan_in > 0 ? 1.0f / sqrtf((float)spec->fan_in) : 0.0f;
        for (int64_t i = 0; i < n; i++)
            x[i] = bound * (2.0f * kelp_rng_uniform(seed, (uint64_t)i) - 1.0f);
        return;
    }
    case KELP_INIT_KAIMING_NORMAL_FAN_OUT: {
        float std = spec->fan_out > 0 ? sqrtf(2.0f / (float)spec->fan_out) : 0.0f;
        for (int64_t i = 0; i < n; i++) {
            /* Box-Muller; the half-step offset keeps the logarithm's argument above 0 */
            float u1 = kelp_rng_uniform(seed, 2 * (uint64_t)i) + 0.5f / 16777216.0f;
            float u2 = kelp_rng_uniform(seed, 2 * (uint64_t)i + 1);
            x[i] = std * sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958648f * u2);
        }
        return;
    }
    }
}

kelp_status kelp_graph_init_params(kelp_graph *g)
{
    size_t largest = 0;
    for (int i = 0; i < g->n_params; i++) {
        size_t bytes = kelp_tensor_bytes(&g->params[i].value);
        if (bytes > largest)
            largest = bytes;
    }
    void *host = calloc(1, largest ? largest : 1);
    if (!host)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "graph: out of memory initializing parameters");
    kelp_status s = KELP_OK;
    for (int i = 0; i < g->n_params && s == KELP_OK; i++) {
        kelp_graph_param *p = &g->params[i];
        size_t bytes = kelp_tensor_bytes(&p->value);
        if (p->spec.dtype == KELP_F32)
            fill(host, kelp_shape_numel(&p->value.shape), &p->spec, kelp_ctx_seed(g->ctx) ^ name_hash(p->name));
        else if (p->spec.init == KELP_INIT_ZEROS)
            memset(host, 0, bytes);
        else
            s = kelp_set_error(KELP_ERR_UNSUPPORTED, "parameter '%s': only zero init for dtype %s", p->name,
                               kelp_dtype_name(p->spec.dtype));
        if (s == KELP_OK)
            s = g->be->iface->upload(g->be, p->value.data, host, bytes);
    }
    free(host);
    kelp_graph_mark_params_changed(g);
    return s;
}
