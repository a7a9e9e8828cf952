#include "engine/json_attr.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

kelp_status kelp_json_require(const cJSON *obj, const char *field)
{
    if (!cJSON_GetObjectItemCaseSensitive(obj, field))
        return kelp_set_error(KELP_ERR_FORMAT, "missing field '%s'", field);
    return KELP_OK;
}

static kelp_status number_to_int(const cJSON *item, const char *field, int lo, int hi, int *out)
{
    if (!cJSON_IsNumber(item) || item->valuedouble != floor(item->valuedouble))
        return kelp_set_error(KELP_ERR_FORMAT, "field '%s' must be an integer", field);
    if (item->valuedouble < lo || item->valuedouble > hi)
        return kelp_set_error(KELP_ERR_FORMAT, "field '%s' is %g, outside [%d, %d]", field, item->valuedouble, lo,
                              hi);
    *out = (int)item->valuedouble;
    return KELP_OK;
}

kelp_status kelp_json_int(const cJSON *obj, const char *field, int lo, int hi, int *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, field);
    return item ? number_to_int(item, field, lo, hi, out) : KELP_OK;
}

kelp_status kelp_json_pair(const cJSON *obj, const char *field, int lo, int hi, int out[2])
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (!item)
        return KELP_OK;
    if (cJSON_IsNumber(item)) {
        KELP_TRY(number_to_int(item, field, lo, hi, &out[0]));
        out[1] = out[0];
        return KELP_OK;
    }
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2)
        return kelp_set_error(KELP_ERR_FORMAT, "field '%s' must be an integer or a pair [h, w]", field);
    KELP_TRY(number_to_int(cJSON_GetArrayItem(item, 0), field, lo, hi, &out[0]));
    return number_to_int(cJSON_GetArrayItem(item, 1), field, lo, hi, &out[1]);
}

kelp_status kelp_json_float(const cJSON *obj, const char *field, double lo, double hi, float *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (!item)
        return KELP_OK;
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
        return kelp_set_error(KELP_ERR_FORMAT, "field '%s' must be a finite number", field);
    if (item->valuedouble < lo || item->valuedouble > hi)
        return kelp_set_error(KELP_ERR_FORMAT, "field '%s' is %g, outside [%g, %g]", field, item->valuedouble, lo,
                              hi);
    *out = (float)item->valuedouble;
    return KELP_OK;
}

kelp_status kelp_json_bool(const cJSON *obj, const char *field, bool *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (!item)
        return KELP_OK;
    if (!cJSON_IsBool(item))
        return kelp_set_error(KELP_ERR_FORMAT, "field '%s' must be true or false", field);
    *out = cJSON_IsTrue(item);
    return KELP_OK;
}

kelp_status kelp_json_string(const cJSON *obj, const char *field, const char **out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (!item)
        return KELP_OK;
    if (!cJSON_IsString(item))
        return kelp_set_error(KELP_ERR_FORMAT, "field '%s' must be a string", field);
    *out = item->valuestring;
    return KELP_OK;
}

static bool listed(const char *const *list, const char *name)
{
    for (; list && *list; list++)
        if (strcmp(*list, name) == 0)
            return true;
    return false;
}

static void append_list(const char *const *list, char *buf, size_t len, size_t *used)
{
    for (; list && *list && *used < len; list++)
        *used += (size_t)snprintf(buf + *used, len - *used, "%s%s", *used ? ", " : "", *list);
}

kelp_status kelp_json_check_fields(const cJSON *obj, const char *const *known, const char *const *more,
                                   const char *where)
{
    for (const cJSON *it = obj->child; it; it = it->next) {
        /* cJSON keeps duplicate keys and lookups see the first: the second would be silently ignored */
        for (const cJSON *before = obj->child; before != it; before = before->next)
            if (strcmp(before->string, it->string) == 0)
                return kelp_set_error(KELP_ERR_FORMAT, "%s%sfield '%s' appears twice", where ? where : "",
                                      where ? ": " : "", it->string);
        if (listed(known, it->string) || listed(more, it->string))
            continue;
        char names[512] = "";
        size_t used = 0;
        append_list(known, names, sizeof names, &used);
        append_list(more, names, sizeof names, &used);
        return kelp_set_error(KELP_ERR_FORMAT, "%s%sunknown field '%s' (known: %s)", where ? where : "",
                              where ? ": " : "", it->string, names);
    }
    return KELP_OK;
}
