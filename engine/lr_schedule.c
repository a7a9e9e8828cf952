/* Learning-rate schedules: closed forms of PyTorch's schedulers, parsed from JSON or a compact CLI string. */
#include "engine/lr_schedule.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/json_attr.h"

static const char *const kind_names[] = {"constant", "step", "multistep", "cosine", "poly"};
#define KIND_COUNT (int)(sizeof kind_names / sizeof kind_names[0])

const char *kelp_lr_kind_name(kelp_lr_kind kind)
{
    return (int)kind >= 0 && (int)kind < KIND_COUNT ? kind_names[kind] : "unknown";
}

static bool kind_from_name(const char *name, kelp_lr_kind *out)
{
    for (int i = 0; i < KIND_COUNT; i++)
        if (strcmp(kind_names[i], name) == 0) {
            *out = (kelp_lr_kind)i;
            return true;
        }
    return false;
}

kelp_lr_schedule kelp_lr_schedule_defaults(kelp_lr_kind kind, double base_lr, int64_t total_steps)
{
    return (kelp_lr_schedule){.kind = kind, .base_lr = base_lr, .total_steps = total_steps, .gamma = 0.1,
                              .power = 1.0, .warmup_start_factor = 1.0 / 3.0};
}

/* ---- checks ---- */

static kelp_status check_positive(const char *field, double value)
{
    if (!isfinite(value) || value <= 0.0)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "'%s' is %g; it must be a finite number > 0", field, value);
    return KELP_OK;
}

static kelp_status check_milestones(const kelp_lr_schedule *s)
{
    if (s->n_milestones < 1 || s->n_milestones > KELP_LR_MAX_MILESTONES)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "'milestones' has %d entries; it needs 1 to %d",
                              s->n_milestones, KELP_LR_MAX_MILESTONES);
    for (int i = 0; i < s->n_milestones; i++)
        if (s->milestones[i] <= (i ? s->milestones[i - 1] : 0))
            return kelp_set_error(KELP_ERR_INVALID_ARG,
                                  "'milestones' entry %d is %" PRId64 "; milestones must be positive and increasing",
                                  i, s->milestones[i]);
    return KELP_OK;
}

/* cosine and poly decay over the steps left after warmup, so there must be some. */
static kelp_status check_horizon(const kelp_lr_schedule *s)
{
    if (s->total_steps <= s->warmup_steps)
        return kelp_set_error(KELP_ERR_INVALID_ARG,
                              "total steps %" PRId64 " leave no step after %" PRId64 " warmup steps for %s",
                              s->total_steps, s->warmup_steps, kelp_lr_kind_name(s->kind));
    return KELP_OK;
}

static kelp_status check_main(const kelp_lr_schedule *s)
{
    switch (s->kind) {
    case KELP_LR_CONSTANT:
        return KELP_OK;
    case KELP_LR_STEP:
        if (s->step_size < 1)
            return kelp_set_error(KELP_ERR_INVALID_ARG, "'step_size' is %" PRId64 "; it must be >= 1", s->step_size);
        return check_positive("gamma", s->gamma);
    case KELP_LR_MULTISTEP:
        KELP_TRY(check_milestones(s));
        return check_positive("gamma", s->gamma);
    case KELP_LR_COSINE:
        if (!isfinite(s->min_lr) || s->min_lr < 0.0)
            return kelp_set_error(KELP_ERR_INVALID_ARG, "'min_lr' is %g; it must be a finite number >= 0",
                                  s->min_lr);
        return check_horizon(s);
    case KELP_LR_POLY:
        KELP_TRY(check_positive("power", s->power));
        return check_horizon(s);
    }
    return kelp_set_error(KELP_ERR_INVALID_ARG, "unknown kind %d", (int)s->kind);
}

static kelp_status check_schedule(const kelp_lr_schedule *s)
{
    if (!isfinite(s->base_lr) || s->base_lr < 0.0)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "base learning rate %g is not a finite number >= 0", s->base_lr);
    if (s->warmup_steps < 0)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "'warmup_steps' is %" PRId64 "; it must be >= 0",
                              s->warmup_steps);
    if (!isfinite(s->warmup_start_factor) || s->warmup_start_factor <= 0.0 || s->warmup_start_factor > 1.0)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "'warmup_start_factor' is %g; it must be in (0, 1]",
                              s->warmup_start_factor);
    return check_main(s);
}

kelp_status kelp_lr_schedule_check(const kelp_lr_schedule *s)
{
    kelp_status st = check_schedule(s);
    return st == KELP_OK ? KELP_OK : kelp_wrap_error(st, "lr schedule %s: ", kelp_lr_kind_name(s->kind));
}

/* ---- evaluation ---- */

static int milestones_passed(const kelp_lr_schedule *s, int64_t t)
{
    int k = 0;
    while (k < s->n_milestones && s->milestones[k] <= t)
        k++;
    return k;
}

/* Fraction of the decay done, in [0, 1], for the schedules that end with the run. */
static double progress(const kelp_lr_schedule *s, int64_t t)
{
    double horizon = (double)(s->total_steps - s->warmup_steps);
    return fmin((double)t, horizon) / horizon;
}

static double main_lr(const kelp_lr_schedule *s, int64_t t)
{
    switch (s->kind) {
    case KELP_LR_CONSTANT:
        return s->base_lr;
    case KELP_LR_STEP:
        return s->base_lr * pow(s->gamma, (double)(t / s->step_size));
    case KELP_LR_MULTISTEP:
        return s->base_lr * pow(s->gamma, milestones_passed(s, t));
    case KELP_LR_COSINE:
        return s->min_lr + (s->base_lr - s->min_lr) * (1.0 + cos(M_PI * progress(s, t))) / 2.0;
    case KELP_LR_POLY:
        return s->base_lr * pow(1.0 - progress(s, t), s->power);
    }
    return s->base_lr;
}

double kelp_lr_at(const kelp_lr_schedule *s, int64_t step)
{
    if (step < 0)
        step = 0;
    if (step < s->warmup_steps) {
        double f = s->warmup_start_factor;
        return s->base_lr * (f + (1.0 - f) * (double)step / (double)s->warmup_steps);
    }
    return main_lr(s, step - s->warmup_steps);
}

/* ---- the CLI string ---- */

#define MAX_PARTS (KELP_LR_MAX_MILESTONES + 1)

/* Splits s in place at every `sep`, keeping empty pieces so that "step::0.1" is an error rather than "step:0.1".
 * Returns the piece count, or max + 1 when there are more than max. */
static int split(char *s, char sep, char **parts, int max)
{
    int n = 0;
    for (;;) {
        if (n == max)
            return max + 1;
        parts[n++] = s;
        char *next = strchr(s, sep);
        if (!next)
            return n;
        *next = '\0';
        s = next + 1;
    }
}

static kelp_status parse_count(const char *text, const char *what, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (!isdigit((unsigned char)*text) || *end || errno)
        return kelp_set_error(KELP_ERR_FORMAT, "%s '%s' is not an integer >= 0", what, text);
    *out = v;
    return KELP_OK;
}

static kelp_status parse_real(const char *text, const char *what, double *out)
{
    char *end;
    double v = strtod(text, &end);
    if (!*text || *end || !isfinite(v))
        return kelp_set_error(KELP_ERR_FORMAT, "%s '%s' is not a finite number", what, text);
    *out = v;
    return KELP_OK;
}

static kelp_status parse_warmup(char *text, kelp_lr_schedule *s)
{
    char *parts[4];
    int n = split(text, ':', parts, 3);
    if (strcmp(parts[0], "warmup") != 0 || n < 2 || n > 3)
        return kelp_set_error(KELP_ERR_FORMAT, "warmup part must be warmup:STEPS[:START_FACTOR]");
    KELP_TRY(parse_count(parts[1], "warmup steps", &s->warmup_steps));
    return n == 3 ? parse_real(parts[2], "warmup start factor", &s->warmup_start_factor) : KELP_OK;
}

static kelp_status parse_milestones(char *text, kelp_lr_schedule *s)
{
    char *items[KELP_LR_MAX_MILESTONES];
    int n = split(text, ',', items, KELP_LR_MAX_MILESTONES);
    if (n > KELP_LR_MAX_MILESTONES)
        return kelp_set_error(KELP_ERR_FORMAT, "more than %d milestones", KELP_LR_MAX_MILESTONES);
    for (int i = 0; i < n; i++)
        KELP_TRY(parse_count(items[i], "milestone", &s->milestones[i]));
    s->n_milestones = n;
    return KELP_OK;
}

/* The arguments after the kind name: how many each kind takes, and what they mean. */
static kelp_status parse_main_args(char **args, int n_args, kelp_lr_schedule *s)
{
    static const int min_args[] = {0, 1, 1, 0, 0}, max_args[] = {0, 2, 2, 1, 1};
    static const char *const usage[] = {"constant", "step:STEP_SIZE[:GAMMA]", "multistep:M1,M2,...[:GAMMA]",
                                        "cosine[:MIN_LR]", "poly[:POWER]"};
    if (n_args < min_args[s->kind] || n_args > max_args[s->kind])
        return kelp_set_error(KELP_ERR_FORMAT, "'%s' takes the form %s", kelp_lr_kind_name(s->kind),
                              usage[s->kind]);
    switch (s->kind) {
    case KELP_LR_CONSTANT:
        return KELP_OK;
    case KELP_LR_STEP:
        KELP_TRY(parse_count(args[0], "step size", &s->step_size));
        return n_args == 2 ? parse_real(args[1], "gamma", &s->gamma) : KELP_OK;
    case KELP_LR_MULTISTEP:
        KELP_TRY(parse_milestones(args[0], s));
        return n_args == 2 ? parse_real(args[1], "gamma", &s->gamma) : KELP_OK;
    case KELP_LR_COSINE:
        return n_args == 1 ? parse_real(args[0], "min_lr", &s->min_lr) : KELP_OK;
    case KELP_LR_POLY:
        return n_args == 1 ? parse_real(args[0], "power", &s->power) : KELP_OK;
    }
    return KELP_OK;
}

static kelp_status parse_main(char *text, kelp_lr_schedule *s)
{
    char *parts[4];
    int n = split(text, ':', parts, 3);
    kelp_lr_kind kind;
    if (!kind_from_name(parts[0], &kind))
        return kelp_set_error(KELP_ERR_FORMAT, "unknown schedule '%s'; known: constant, step, multistep, cosine, poly",
                              parts[0]);
    s->kind = kind;
    if (n > 3)
        return kelp_set_error(KELP_ERR_FORMAT, "too many ':' parts after '%s'", parts[0]);
    return parse_main_args(parts + 1, n - 1, s);
}

/* The '+' between warmup and the main schedule is the first one followed by a letter: a '+' in an exponent
 * ("1e+5") is followed by a digit. */
static char *find_plus(char *text)
{
    for (char *p = strchr(text, '+'); p; p = strchr(p + 1, '+'))
        if ((p[1] >= 'a' && p[1] <= 'z') || (p[1] >= 'A' && p[1] <= 'Z'))
            return p;
    return NULL;
}

static kelp_status parse_cli(char *text, kelp_lr_schedule *s)
{
    char *plus = find_plus(text);
    char *main_part = text;
    if (plus) {
        *plus = '\0';
        main_part = plus + 1;
        KELP_TRY(parse_warmup(text, s));
    } else if (strncmp(text, "warmup", 6) == 0) {
        return kelp_set_error(KELP_ERR_FORMAT, "warmup needs a main schedule after it: warmup:STEPS+cosine");
    }
    return parse_main(main_part, s);
}

kelp_status kelp_lr_schedule_parse_cli(const char *spec, double base_lr, int64_t total_steps, kelp_lr_schedule *out)
{
    char *text = strdup(spec);
    if (!text)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "lr schedule: out of memory");
    kelp_lr_schedule s = kelp_lr_schedule_defaults(KELP_LR_CONSTANT, base_lr, total_steps);
    kelp_status st = parse_cli(text, &s);
    free(text);
    if (st == KELP_OK)
        st = check_schedule(&s);
    if (st != KELP_OK)
        return kelp_wrap_error(st, "lr schedule '%s': ", spec);
    *out = s;
    return KELP_OK;
}

/* ---- JSON ---- */

static const char *const common_fields[] = {"type", "warmup_steps", "warmup_start_factor", NULL};
static const char *const kind_fields[][3] = {
    {NULL}, {"step_size", "gamma", NULL}, {"milestones", "gamma", NULL}, {"min_lr", NULL}, {"power", NULL},
};

static kelp_status reject_unknown_fields(const cJSON *json, kelp_lr_kind kind)
{
    char where[64];
    snprintf(where, sizeof where, "schedule '%s'", kelp_lr_kind_name(kind));
    return kelp_json_check_fields(json, common_fields, kind_fields[kind], where);
}

/* A double, not kelp_json_float's float, so that JSON and CLI specs give the same rates. */
static kelp_status json_real(const cJSON *json, const char *field, double *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, field);
    if (!item)
        return KELP_OK;
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
        return kelp_set_error(KELP_ERR_FORMAT, "field '%s' must be a finite number", field);
    *out = item->valuedouble;
    return KELP_OK;
}

static kelp_status json_steps(const cJSON *json, const char *field, int lo, int64_t *out)
{
    int v = (int)*out;
    KELP_TRY(kelp_json_int(json, field, lo, INT_MAX, &v));
    *out = v;
    return KELP_OK;
}

static kelp_status json_milestones(const cJSON *json, kelp_lr_schedule *s)
{
    KELP_TRY(kelp_json_require(json, "milestones"));
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(json, "milestones");
    int n = cJSON_GetArraySize(list);
    if (!cJSON_IsArray(list) || n < 1 || n > KELP_LR_MAX_MILESTONES)
        return kelp_set_error(KELP_ERR_FORMAT, "field 'milestones' must be a list of 1 to %d step numbers",
                              KELP_LR_MAX_MILESTONES);
    for (int i = 0; i < n; i++) {
        const cJSON *item = cJSON_GetArrayItem(list, i);
        if (!cJSON_IsNumber(item) || item->valuedouble != floor(item->valuedouble) || item->valuedouble < 1 ||
            item->valuedouble > INT_MAX)
            return kelp_set_error(KELP_ERR_FORMAT, "field 'milestones' entry %d must be an integer in [1, %d]", i,
                                  INT_MAX);
        s->milestones[i] = (int64_t)item->valuedouble;
    }
    s->n_milestones = n;
    return KELP_OK;
}

static kelp_status json_main_fields(const cJSON *json, kelp_lr_schedule *s)
{
    switch (s->kind) {
    case KELP_LR_CONSTANT:
        return KELP_OK;
    case KELP_LR_STEP:
        KELP_TRY(kelp_json_require(json, "step_size"));
        KELP_TRY(json_steps(json, "step_size", 1, &s->step_size));
        return json_real(json, "gamma", &s->gamma);
    case KELP_LR_MULTISTEP:
        KELP_TRY(json_milestones(json, s));
        return json_real(json, "gamma", &s->gamma);
    case KELP_LR_COSINE:
        return json_real(json, "min_lr", &s->min_lr);
    case KELP_LR_POLY:
        return json_real(json, "power", &s->power);
    }
    return KELP_OK;
}

static kelp_status parse_json(const cJSON *json, kelp_lr_schedule *s)
{
    if (!cJSON_IsObject(json))
        return kelp_set_error(KELP_ERR_FORMAT, "expected a JSON object such as {\"type\": \"cosine\"}");
    const char *type;
    KELP_TRY(kelp_json_require(json, "type"));
    KELP_TRY(kelp_json_string(json, "type", &type));
    if (!kind_from_name(type, &s->kind))
        return kelp_set_error(KELP_ERR_FORMAT,
                              "field 'type' is '%s'; known types: constant, step, multistep, cosine, poly", type);
    KELP_TRY(reject_unknown_fields(json, s->kind));
    KELP_TRY(json_steps(json, "warmup_steps", 0, &s->warmup_steps));
    KELP_TRY(json_real(json, "warmup_start_factor", &s->warmup_start_factor));
    return json_main_fields(json, s);
}

kelp_status kelp_lr_schedule_parse_json(const cJSON *json, double base_lr, int64_t total_steps,
                                        kelp_lr_schedule *out)
{
    kelp_lr_schedule s = kelp_lr_schedule_defaults(KELP_LR_CONSTANT, base_lr, total_steps);
    kelp_status st = parse_json(json, &s);
    if (st == KELP_OK)
        st = check_schedule(&s);
    if (st != KELP_OK)
        return kelp_wrap_error(st, "lr schedule: ");
    *out = s;
    return KELP_OK;
}
