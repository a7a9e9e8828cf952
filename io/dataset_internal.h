/* kelp io: what the dataset reader, checker and writer share (private to io/dataset*.c). */
#ifndef KELP_IO_DATASET_INTERNAL_H
#define KELP_IO_DATASET_INTERNAL_H

#include <hdf5.h>
#include <stdbool.h>
#include <stddef.h>

#include "io/dataset.h"

#define KELP_DS_FORMAT "kelp-dataset"
#define KELP_DS_FORMAT_VERSION 1
#define KELP_DS_IGNORE_INDEX 255
/* Masks are uint8 and 255 means "ignore", so a segmentation file has at most 255 classes. */
#define KELP_DS_MAX_SEGMENT_CLASSES 255
/* Bytes of the free-text attributes (source, license). */
#define KELP_DS_MAX_TEXT 65536
/* HDF5 allocates a whole chunk to read any part of it: a chunk may hold one record or this much, whichever is
 * larger, so a crafted chunk size cannot make one read allocate gigabytes. */
#define KELP_DS_MAX_CHUNK_BYTES ((uint64_t)64 << 20)

/* Turns off HDF5's printing of errors to stderr. The setting is per thread in a thread-safe HDF5, so every entry
 * point calls it before its first HDF5 call. */
void kelp_ds_h5_quiet(void);

/* The most specific message on this thread's HDF5 error stack ("no detail" when empty). Call it right after the
 * failing HDF5 call: the next HDF5 call clears the stack. */
void kelp_ds_h5_detail(char *buf, size_t size);

/* Closes any HDF5 identifier (file, group, dataset, dataspace, type, property list, attribute); negative ids are
 * ignored, so cleanup paths need not track which ids were created. */
void kelp_ds_h5_close(hid_t id);



#endif
