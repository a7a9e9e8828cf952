/* kelp io: what the dataset reader, checker and writer share (private to io/dataset*.c). */
#ifndef KELP_IO_DATASET_INTERNAL_H
#define KELP_IO_DATASET_INTERNAL_H

#include <hdf5.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* ---- a u8 record's chunks read raw under the dataset's lock and inflated after it (dataset_chunks.c) ---- */
#define KELP_DS_CHUNK_RANK 4

typedef struct kelp_ds_chunking {
    bool raw;             /* the chunks can be read raw: u8, chunked, no filter or deflate alone */
    bool deflate;
    int rank;
    hsize_t chunk[KELP_DS_CHUNK_RANK];
    uint64_t chunk_bytes;
} kelp_ds_chunking;

typedef struct kelp_ds_chunk {
    hsize_t first;        /* 1-D: the chunk's first element */
    uint64_t stored, at;  /* its stored bytes, at this offset of the data */
    uint32_t filter_mask; /* bit 0: deflate was skipped for this chunk */
} kelp_ds_chunk;

typedef struct kelp_ds_chunks {
    uint8_t *data;
    kelp_ds_chunk *chunks;
    size_t count;
} kelp_ds_chunks;

/* How a dataset of `rank` dims stores its chunks (raw false: read it through H5Dread). */
void kelp_ds_chunking_inspect(hid_t dset, int rank, kelp_ds_chunking *out);
/* Holding the lock: the stored bytes of the chunks under [start, start + count). In 2-D and up the range must be
 * exactly one chunk. out->count is 0 (and the status KELP_OK) when the record must be read through H5Dread
 * instead: a range that is not a whole chunk, a chunk never written. Errors start with `what`. */
kelp_status kelp_ds_chunks_fetch(hid_t dset, const kelp_ds_chunking *k, const hsize_t *start, const hsize_t *count,
                                 kelp_ds_chunks *out, const char *what);
/* Without the lock: inflates the fetched chunks and copies [start, start + count) into dst. */
kelp_status kelp_ds_chunks_unpack(const kelp_ds_chunking *k, const kelp_ds_chunks *all, const hsize_t *start,
                                  const hsize_t *count, uint8_t *dst, const char *what);
void kelp_ds_chunks_free(kelp_ds_chunks *c);

#endif
