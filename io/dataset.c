/* Dataset names and the HDF5 helpers shared by the reader (dataset_read.c), the checker (dataset_check.c) and the
 * writer (dataset_write.c). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "io/dataset_internal.h"

static const char *const TASK_NAMES[] = {"classify", "segment", "detect"};
static const char *const SPLIT_NAMES[KELP_SPLIT_COUNT] = {"train", "val", "test"};

const char *kelp_task_name(kelp_task task)
{
    return (unsigned)task < sizeof TASK_NAMES / sizeof *TASK_NAMES ? TASK_NAMES[task] : "?";
}

const char *kelp_split_name(kelp_split split)
{
    return (unsigned)split < KELP_SPLIT_COUNT ? SPLIT_NAMES[split] : "?";
}

kelp_status kelp_split_parse(const char *name, kelp_split *out)
{
    if (!out)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_split_parse: out is NULL");
    for (int s = 0; s < KELP_SPLIT_COUNT; s++) {
        if (name && strcmp(name, SPLIT_NAMES[s]) == 0) {
            *out = (kelp_split)s;
            return KELP_OK;
        }
    }
    return kelp_set_error(KELP_ERR_INVALID_ARG, "unknown split '%s' (expected train, val or test)",
                          name ? name : "(null)");
}

void kelp_ds_h5_quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

typedef struct detail_buf {
    char *buf;
    size_t size;
} detail_buf;

/* The walk goes from the innermost frame outwards; frame 0 says what actually went wrong ("truncated file",
 * "inflate() failed"), the outer ones only which API call carried it. */
static herr_t keep_innermost(unsigned n, const H5E_error2_t *err, void *data)
{
    detail_buf *d = data;
    if (n == 0 && err->desc && *err->desc)
        snprintf(d->buf, d->size, "%s", err->desc);
    return 0;
}

void kelp_ds_h5_detail(char *buf, size_t size)
{
    if (size == 0)
        return;
    snprintf(buf, size, "no detail");
    detail_buf d = {buf, size};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_innermost, &d);
}

void kelp_ds_h5_close(hid_t id)
{
    if (id >= 0)
        H5Idec_ref(id);
}

