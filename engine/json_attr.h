/* Reading layer fields from a model file's JSON node. Each reader leaves `out` at its default when the field is
 * absent and fails with a message naming the field when it is present but malformed. */
#ifndef KELP_ENGINE_JSON_ATTR_H
#define KELP_ENGINE_JSON_ATTR_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "kelp/status.h"

/* An integer in [lo, hi]. */
kelp_status kelp_json_int(const cJSON *obj, const char *field, int lo, int hi, int *out);
/* An integer or a [a, b] pair, each in [lo, hi]: kernel_size, stride, padding, dilation. */
kelp_status kelp_json_pair(const cJSON *obj, const char *field, int lo, int hi, int out[2]);
kelp_status kelp_json_float(const cJSON *obj, const char *field, double lo, double hi, float *out);
kelp_status kelp_json_bool(const cJSON *obj, const char *field, bool *out);
/* A string, borrowed from the JSON tree. */
kelp_status kelp_json_string(const cJSON *obj, const char *field, const char **out);
/* Rejects a field given twice, and any field of `obj` that is in neither list (NULL-terminated; `more` may be NULL): a typo ("strides")
 * must not silently fall back to a default. The message is "<where>: unknown field 'x' (known: a, b, ...)", without
 * the prefix when `where` is NULL. */
kelp_status kelp_json_check_fields(const cJSON *obj, const char *const *known, const char *const *more,
                                   const char *where);

/* A required field: fails with "missing field" when absent. */
kelp_status kelp_json_require(const cJSON *obj, const char *field);

#endif
