/* Optimizers and gradient clipping over the flat parameter and gradient buffers. The math is in the backend's
 * sgd_step/adamw_step kernels; this file owns the state buffers, the step count and the segment bookkeeping. */
#include "engine/optimizer.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/json_attr.h"
#include "kernels/ops/optim.h"

#define MAX_STATE 2

struct kelp_optimizer {
    kelp_backend *be;
    kelp_optimizer_config config;
    int64_t n;
    int64_t steps;
    int n_state;
    const char *state_name[MAX_STATE];
    float *state[MAX_STATE];
    kelp_step_ctl *ctl; /* backend memory: the scalars of kelp_optimizer_step's steps */
};

/* ---- configuration ---- */

kelp_optimizer_config kelp_optimizer_defaults(kelp_optimizer_kind kind)
{
    kelp_optimizer_config c = {.kind = kind, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    if (kind == KELP_OPTIM_ADAMW)
        c.weight_decay = 0.01f;
    return c;
}

const char *kelp_optimizer_kind_name(kelp_optimizer_kind kind)
{
    switch (kind) {
    case KELP_OPTIM_SGD:
        return "sgd";
    case KELP_OPTIM_ADAMW:
        return "adamw";
    }
    return "unknown";
}

static kelp_status check_range(const char *what, float value, double lo, double hi, bool hi_open)
{
    if (!isfinite(value) || value < lo || value > hi || (hi_open && value == hi))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "'%s' is %g; it must be in [%g, %g%c", what, value, lo, hi,
                              hi_open ? ')' : ']');
    return KELP_OK;
}

static kelp_status check_sgd(const kelp_optimizer_config *c)
{
    KELP_TRY(check_range("momentum", c->momentum, 0.0, 1.0, false));
    KELP_TRY(check_range("dampening", c->dampening, 0.0, 1.0, false));
    if (c->nesterov && (c->momentum <= 0.0f || c->dampening != 0.0f))
        return kelp_set_error(KELP_ERR_INVALID_ARG,
                              "'nesterov' needs a momentum > 0 and zero dampening (momentum %g, dampening %g)",
                              c->momentum, c->dampening);
    return KELP_OK;
}

static kelp_status check_adamw(const kelp_optimizer_config *c)
{
    KELP_TRY(check_range("beta1", c->beta1, 0.0, 1.0, true));
    KELP_TRY(check_range("beta2", c->beta2, 0.0, 1.0, true));
    return check_range("eps", c->eps, 0.0, INFINITY, false);
}

kelp_status kelp_optimizer_config_check(const kelp_optimizer_config *config)
{
    kelp_status s;
    switch (config->kind) {
    case KELP_OPTIM_SGD:
        s = check_sgd(config);
        break;
    case KELP_OPTIM_ADAMW:
        s = check_adamw(config);
        break;
    default:
        return kelp_set_error(KELP_ERR_INVALID_ARG, "optimizer: unknown kind %d", (int)config->kind);
    }
    if (s == KELP_OK)
        s = check_range("weight_decay", config->weight_decay, 0.0, INFINITY, false);
    if (s != KELP_OK)
        return kelp_wrap_error(s, "optimizer %s: ", kelp_optimizer_kind_name(config->kind));
    return KELP_OK;
}

static const char *const sgd_fields[] = {"type", "momentum", "dampening", "nesterov", "weight_decay", NULL};
static const char *const adamw_fields[] = {"type", "beta1", "beta2", "eps", "weight_decay", NULL};

static kelp_status reject_unknown_fields(const cJSON *json, const char *const *fields, const char *type)
{
    char where[64];
    snprintf(where, sizeof where, "optimizer '%s'", type);
    return kelp_json_check_fields(json, fields, NULL, where);
}

static kelp_status parse_kind(const cJSON *json, kelp_optimizer_kind *kind, const char **type)
{
    KELP_TRY(kelp_json_require(json, "type"));
    KELP_TRY(kelp_json_string(json, "type", type));
    if (strcmp(*type, "sgd") == 0)
        *kind = KELP_OPTIM_SGD;
    else if (strcmp(*type, "adamw") == 0)
        *kind = KELP_OPTIM_ADAMW;
    else
        return kelp_set_error(KELP_ERR_FORMAT, "field 'type' is '%s'; known types: sgd, adamw", *type);
    return KELP_OK;
}

static kelp_status parse_fields(const cJSON *json, kelp_optimizer_config *c)
{
    if (c->kind == KELP_OPTIM_SGD) {
        KELP_TRY(kelp_json_float(json, "momentum", 0.0, 1.0, &c->momentum));
        KELP_TRY(kelp_json_float(json, "dampening", 0.0, 1.0, &c->dampening));
        KELP_TRY(kelp_json_bool(json, "nesterov", &c->nesterov));
    } else {
        KELP_TRY(kelp_json_float(json, "beta1", 0.0, 1.0, &c->beta1));
        KELP_TRY(kelp_json_float(json, "beta2", 0.0, 1.0, &c->beta2));
        KELP_TRY(kelp_json_float(json, "eps", 0.0, INFINITY, &c->eps));
    }
    return kelp_json_float(json, "weight_decay", 0.0, INFINITY, &c->weight_decay);
}

static kelp_status parse_config(const cJSON *json, kelp_optimizer_config *out)
{
    if (!cJSON_IsObject(json))
        return kelp_set_error(KELP_ERR_FORMAT, "expected a JSON object such as {\"type\": \"sgd\"}");
    kelp_optimizer_kind kind = KELP_OPTIM_SGD;
    const char *type;
    KELP_TRY(parse_kind(json, &kind, &type));
    KELP_TRY(reject_unknown_fields(json, kind == KELP_OPTIM_SGD ? sgd_fields : adamw_fields, type));
    kelp_optimizer_config c = kelp_optimizer_defaults(kind);
    KELP_TRY(parse_fields(json, &c));
    *out = c;
    return KELP_OK;
}

kelp_status kelp_optimizer_config_parse(const cJSON *json, kelp_optimizer_config *out)
{
    kelp_optimizer_config c;
    kelp_status s = parse_config(json, &c);
    if (s != KELP_OK)
        return kelp_wrap_error(s, "optimizer: ");
    KELP_TRY(kelp_optimizer_config_check(&c));
    *out = c;
    return KELP_OK;
}

/* ---- segments ---- */

kelp_status kelp_param_segments_check(const char *what, const kelp_param_segment *segments, int n_segments,
                                      int64_t n)
{
    if (!segments)
        return n_segments == 0 ? KELP_OK
                               : kelp_set_error(KELP_ERR_INVALID_ARG, "%s: %d segments given as NULL", what, n_segments);
    if (n_segments < 0)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: segment count %d is negative", what, n_segments);
    int64_t end = 0;
    for (int i = 0; i < n_segments; i++) {
        const kelp_param_segment *g = &segments[i];
        if (g->offset < 0 || g->count < 0 || g->offset > n || g->count > n - g->offset)
            return kelp_set_error(KELP_ERR_INVALID_ARG,
                                  "%s: segment %d (offset %" PRId64 ", count %" PRId64 ") is outside the %" PRId64
                                  " parameters",
                                  what, i, g->offset, g->count, n);
        if (g->offset < end)
            return kelp_set_error(KELP_ERR_INVALID_ARG,
                                  "%s: segment %d (offset %" PRId64 ") starts before the end %" PRId64
                                  " of the previous one; segments must be increasing and must not overlap",
                                  what, i, g->offset, end);
        end = g->offset + g->count;
    }
    return KELP_OK;
}

/* Points *segs at the caller's list, or at `whole` when the list is NULL, after checking it against n. */
static kelp_status resolve_segments(const char *what, const kelp_param_segment *segments, int n_segments, int64_t n,
                                    kelp_param_segment *whole, const kelp_param_segment **segs, int *count)
{
    KELP_TRY(kelp_param_segments_check(what, segments, n_segments, n));
    *whole = (kelp_param_segment){0, n};
    *segs = segments ? segments : whole;
    *count = segments ? n_segments : 1;
    return KELP_OK;
}

/* ---- the optimizer ---- */

static kelp_op optimizer_op(kelp_optimizer_kind kind) { return kind == KELP_OPTIM_SGD ? KELP_OP_SGD : KELP_OP_ADAMW; }

static kelp_status add_state(kelp_optimizer *opt, const char *name)
{
    size_t bytes = (size_t)opt->n * sizeof(float);
    float *buf;
    KELP_TRY(opt->be->iface->alloc(opt->be, bytes, (void **)&buf));
    opt->state[opt->n_state] = buf;
    opt->state_name[opt->n_state] = name;
    opt->n_state++;
    return opt->be->iface->memset(opt->be, buf, 0, bytes);
}

static kelp_status add_states(kelp_optimizer *opt)
{
    if (opt->config.kind == KELP_OPTIM_ADAMW) {
        KELP_TRY(add_state(opt, "exp_avg"));
        return add_state(opt, "exp_avg_sq");
    }
    return opt->config.momentum != 0.0f ? add_state(opt, "momentum_buffer") : KELP_OK;
}

kelp_status kelp_optimizer_create(kelp_backend *be, const kelp_optimizer_config *config, int64_t n,
                                  kelp_optimizer **out)
{
    KELP_TRY(kelp_optimizer_config_check(config));
    const char *kind = kelp_optimizer_kind_name(config->kind);
    if (n <= 0 || (uint64_t)n > SIZE_MAX / sizeof(float))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "optimizer %s: %" PRId64 " parameters is not a valid count",
                              kind, n);
    if (!be->iface->supports(be, optimizer_op(config->kind), KELP_F32))
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "optimizer %s: backend '%s' does not support it", kind,
                              be->iface->name);
    kelp_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "optimizer %s: out of memory", kind);
    *opt = (kelp_optimizer){.be = be, .config = *config, .n = n};
    kelp_status s = add_states(opt);
    if (s == KELP_OK)
        s = be->iface->alloc(be, sizeof *opt->ctl, (void **)&opt->ctl);
    if (s != KELP_OK) {
        kelp_optimizer_destroy(opt);
        return kelp_wrap_error(s, "optimizer %s: state for %" PRId64 " parameters: ", kind, n);
    }
    *out = opt;
    return KELP_OK;
}

void kelp_optimizer_destroy(kelp_optimizer *opt)
{
    if (!opt)
        return;
    for (int i = 0; i < opt->n_state; i++)
        opt->be->iface->free(opt->be, opt->state[i]);
    if (opt->ctl)
        opt->be->iface->free(opt->be, opt->ctl);
    free(opt);
}

const kelp_optimizer_config *kelp_optimizer_get_config(const kelp_optimizer *opt) { return &opt->config; }

int64_t kelp_optimizer_param_count(const kelp_optimizer *opt) { return opt->n; }

static kelp_status check_lr(const kelp_optimizer *opt, float lr)
{
    if (!isfinite(lr) || lr < 0.0f)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "optimizer %s step: learning rate %g is not a finite number >= 0",
                              kelp_optimizer_kind_name(opt->config.kind), lr);
    return KELP_OK;
}

kelp_status kelp_optimizer_step_scalars(const kelp_optimizer *opt, float lr, kelp_step_ctl *ctl)
{
    KELP_TRY(check_lr(opt, lr));
    const kelp_optimizer_config *c = &opt->config;
    *ctl = (kelp_step_ctl){.lr = lr, .bc1 = 1.0f, .bc2_sqrt = 1.0f, .inv_scale = 1.0f,
                           .first_step = opt->steps == 0, .clip_coef = 1.0f};
    if (c->kind == KELP_OPTIM_ADAMW) {
        kelp_adamw_params p = {.beta1 = c->beta1, .beta2 = c->beta2};
        kelp_adamw_bias_corrections(&p, opt->steps + 1, &ctl->bc1, &ctl->bc2_sqrt);
    }
    return KELP_OK;
}

static kelp_status step_segment(kelp_optimizer *opt, const kelp_step_ctl *ctl, float *params, const float *grads,
                                const kelp_param_segment *g)
{
    kelp_backend *be = opt->be;
    const kelp_optimizer_config *c = &opt->config;
    float *param = params + g->offset;
    const float *grad = grads + g->offset;
    if (c->kind == KELP_OPTIM_ADAMW) {
        kelp_adamw_params p = {.beta1 = c->beta1, .beta2 = c->beta2, .eps = c->eps, .weight_decay = c->weight_decay};
        return be->iface->adamw_step(be, g->count, &p, ctl, param, grad, opt->state[0] + g->offset,
                                     opt->state[1] + g->offset);
    }
    kelp_sgd_params p = {.momentum = c->momentum, .dampening = c->dampening, .weight_decay = c->weight_decay,
                         .nesterov = c->nesterov};
    float *momentum_buf = opt->n_state ? opt->state[0] + g->offset : NULL;
    return be->iface->sgd_step(be, g->count, &p, ctl, param, grad, momentum_buf);
}

kelp_status kelp_optimizer_queue(kelp_optimizer *opt, const kelp_step_ctl *ctl, float *params, const float *grads,
                                 const kelp_param_segment *segments, int n_segments)
{
    kelp_param_segment whole;
    const kelp_param_segment *segs;
    int count;
    KELP_TRY(resolve_segments("optimizer step", segments, n_segments, opt->n, &whole, &segs, &count));
    for (int i = 0; i < count; i++) {
        if (segs[i].count == 0)
            continue;
        kelp_status s = step_segment(opt, ctl, params, grads, &segs[i]);
        if (s != KELP_OK)
            return kelp_wrap_error(s, "optimizer %s step %" PRId64 ", segment %d: ",
                                   kelp_optimizer_kind_name(opt->config.kind), opt->steps + 1, i);
    }
    return KELP_OK;
}

kelp_status kelp_optimizer_step(kelp_optimizer *opt, float lr, float *params, const float *grads,
                                const kelp_param_segment *segments, int n_segments)
{
    kelp_step_ctl ctl;
    KELP_TRY(kelp_optimizer_step_scalars(opt, lr, &ctl));
    /* from pageable memory: a device backend stages the bytes before returning */
    KELP_TRY(opt->be->iface->upload(opt->be, opt->ctl, &ctl, sizeof ctl));
    KELP_TRY(kelp_optimizer_queue(opt, opt->ctl, params, grads, segments, n_segments));
    opt->steps++;
    return KELP_OK;
}

int kelp_optimizer_state_count(const kelp_optimizer *opt) { return opt->n_state; }

kelp_status kelp_optimizer_state(kelp_optimizer *opt, int index, const char **name, kelp_tensor *out)
{
    if (index < 0 || index >= opt->n_state)
        return kelp_set_error(KELP_ERR_NOT_FOUND, "optimizer %s: state index %d; it has %d state tensors",
                              kelp_optimizer_kind_name(opt->config.kind), index, opt->n_state);
    *name = opt->state_name[index];
    *out = (kelp_tensor){.shape = kelp_shape_make(1, &opt->n), .dtype = KELP_F32, .data = opt->state[index],
                         .backend = opt->be};
    return KELP_OK;
}

int64_t kelp_optimizer_step_count(const kelp_optimizer *opt) { return opt->steps; }

kelp_status kelp_optimizer_set_step_count(kelp_optimizer *opt, int64_t steps)
{
    if (steps < 0)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "optimizer %s: step count %" PRId64 " is negative",
                              kelp_optimizer_kind_name(opt->config.kind), steps);
    opt->steps = steps;
    return KELP_OK;
}

/* ---- gradient clipping ---- */

kelp_status kelp_grads_sum_squares(kelp_backend *be, const float *grads, int64_t n, const kelp_param_segment *segments,
                                   int n_segments, double *acc)
{
    kelp_param_segment whole;
    const kelp_param_segment *segs;
    int count;
    KELP_TRY(resolve_segments("sum of squares", segments, n_segments, n, &whole, &segs, &count));
    for (int i = 0; i < count; i++)
        if (segs[i].count)
            KELP_TRY(be->iface->sum_squares(be, segs[i].count, grads + segs[i].offset, acc));
    return KELP_OK;
}

/* Over the segments, in double, brought back to the host (one wait). */
static kelp_status sum_squares(kelp_backend *be, const float *grads, int64_t n, const kelp_param_segment *segs,
                               int count, double *out)
{
    double *acc;
    KELP_TRY(be->iface->alloc(be, sizeof *acc, (void **)&acc));
    kelp_status s = be->iface->memset(be, acc, 0, sizeof *acc);
    if (s == KELP_OK)
        s = kelp_grads_sum_squares(be, grads, n, segs, count, acc);
    if (s == KELP_OK)
        s = be->iface->download(be, out, acc, sizeof *out);
    be->iface->free(be, acc);
    return s;
}

static kelp_status scale(kelp_backend *be, float *grads, const kelp_param_segment *segs, int count, float coef)
{
    for (int i = 0; i < count; i++)
        if (segs[i].count)
            KELP_TRY(be->iface->scale(be, segs[i].count, coef, grads + segs[i].offset));
    return KELP_OK;
}

/* The sum of squares and the scaling both run on the backend's elementwise kernels. */
static kelp_status need_elementwise(kelp_backend *be, const char *what)
{
    if (!be->iface->supports(be, KELP_OP_ELEMENTWISE, KELP_F32))
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "%s: backend '%s' has no elementwise kernels", what,
                              be->iface->name);
    return KELP_OK;
}

kelp_status kelp_clip_grad_norm(kelp_backend *be, float *grads, int64_t n, const kelp_param_segment *segments,
                                int n_segments, double max_norm, double *total_norm)
{
    if (!isfinite(max_norm) || max_norm <= 0.0)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "clip_grad_norm: max_norm %g is not a finite number > 0",
                              max_norm);
    KELP_TRY(need_elementwise(be, "clip_grad_norm"));
    kelp_param_segment whole;
    const kelp_param_segment *segs;
    int count;
    KELP_TRY(resolve_segments("clip_grad_norm", segments, n_segments, n, &whole, &segs, &count));
    double sum;
    kelp_status s = sum_squares(be, grads, n, segs, count, &sum);
    if (s != KELP_OK)
        return kelp_wrap_error(s, "clip_grad_norm: ");
    double total = sqrt(sum);
    *total_norm = total;
    if (!isfinite(total))
        return kelp_set_error(KELP_ERR_NUMERIC, "clip_grad_norm: the total gradient norm is %g", total);
    double coef = max_norm / (total + 1e-6);
    if (coef >= 1.0)
        return KELP_OK;
    s = scale(be, grads, segs, count, (float)coef);
    return s == KELP_OK ? KELP_OK : kelp_wrap_error(s, "clip_grad_norm: ");
}

kelp_status kelp_unscale_grads(kelp_backend *be, float *grads, int64_t n, const kelp_param_segment *segments,
                               int n_segments, float inv_scale, bool *finite)
{
    *finite = false;
    if (!(inv_scale > 0.0f) || !isfinite(inv_scale))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "unscale: inverse scale %g is not a finite number > 0",
                              (double)inv_scale);
    KELP_TRY(need_elementwise(be, "unscale"));
    kelp_param_segment whole;
    const kelp_param_segment *segs;
    int count;
    KELP_TRY(resolve_segments("unscale", segments, n_segments, n, &whole, &segs, &count));
    /* the squares of float values cannot overflow a double sum: it is finite exactly when every gradient is */
    double sum;
    kelp_status s = sum_squares(be, grads, n, segs, count, &sum);
    if (s != KELP_OK)
        return kelp_wrap_error(s, "unscale: ");
    *finite = isfinite(sum);
    if (!*finite || inv_scale == 1.0f)
        return KELP_OK;
    s = scale(be, grads, segs, count, inv_scale);
    return s == KELP_OK ? KELP_OK : kelp_wrap_error(s, "unscale: ");
}
