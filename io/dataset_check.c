/* kelp_dataset_check: opens a dataset (which validates its metadata) and then reads every image, mask and box
 * record through the same hardened reader that training uses, reporting each failure and carrying on. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "io/dataset.h"

/* A file broken everywhere would otherwise flood the caller; the count stays exact. */
#define MAX_REPORTS 1000

typedef struct checker {
    kelp_dataset *ds;
    kelp_dataset_report_fn report;
    void *user;
    int64_t problems;
    uint8_t *buf; /* one image (masks are smaller) */
    size_t buf_size;
    float boxes[4 * KELP_DATASET_MAX_BOXES_PER_IMAGE];
    int32_t box_labels[KELP_DATASET_MAX_BOXES_PER_IMAGE];
} checker;

static void note(checker *c, kelp_status s)
{
    if (s == KELP_OK)
        return;
    if (c->problems < MAX_REPORTS && c->report)
        c->report(c->user, kelp_last_error());
    c->problems++;
}

static kelp_status reserve(checker *c, size_t bytes)
{
    if (bytes <= c->buf_size)
        return KELP_OK;
    uint8_t *buf = realloc(c->buf, bytes);
    if (!buf)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory for a %zu-byte image",
                              kelp_dataset_path(c->ds), bytes);
    c->buf = buf;
    c->buf_size = bytes;
    return KELP_OK;
}

static kelp_status check_record(checker *c, kelp_split split, int64_t index)
{
    kelp_image_shape shape;
    KELP_TRY(kelp_dataset_image_shape(c->ds, split, index, &shape));
    size_t bytes = (size_t)shape.h * shape.w * shape.c;
    KELP_TRY(reserve(c, bytes));
    note(c, kelp_dataset_read_image(c->ds, split, index, c->buf, bytes));
    kelp_task task = kelp_dataset_task(c->ds);
    if (task == KELP_TASK_SEGMENT)
        note(c, kelp_dataset_read_mask(c->ds, split, index, c->buf, bytes));
    if (task == KELP_TASK_DETECT) {
        int count;
        note(c, kelp_dataset_read_boxes(c->ds, split, index, c->boxes, c->box_labels,
                                        KELP_DATASET_MAX_BOXES_PER_IMAGE, &count));
    }
    return KELP_OK;
}

static kelp_status check_all(checker *c)
{
    for (int split = 0; split < KELP_SPLIT_COUNT; split++) {
        int64_t count = kelp_dataset_count(c->ds, (kelp_split)split);
        for (int64_t i = 0; i < count; i++)
            KELP_TRY(check_record(c, (kelp_split)split, i));
    }
    return KELP_OK;
}

int64_t kelp_dataset_check(const char *path, kelp_dataset_report_fn report, void *user)
{
    checker *c = calloc(1, sizeof *c);
    if (!c) {
        kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory for the checker", path ? path : "(null)");
        return -1;
    }
    c->report = report;
    c->user = user;
    int64_t result = -1;
    if (kelp_dataset_open(path, &c->ds) == KELP_OK && check_all(c) == KELP_OK)
        result = c->problems;
    if (result > MAX_REPORTS && report) {
        char line[64];
        snprintf(line, sizeof line, "and %" PRId64 " more problems", result - MAX_REPORTS);
        report(user, line);
    }
    kelp_dataset_close(c->ds);
    free(c->buf);
    free(c);
    return result;
}
