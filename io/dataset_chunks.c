/* Reading a record's chunks raw under the dataset's lock, and inflating them after it is released.
 *
 * HDF5 runs one call at a time (a thread-safe build takes a global lock; kelp's reader holds its own), and H5Dread
 * inflates the chunks inside the call: the loader's reads were serialized with their decompression, so more
 * worker threads read no faster (636 images/s at 300x300 on one core or two). H5Dread_chunk hands over the stored bytes of one chunk without
 * filtering them; zlib then inflates them in the calling thread, in parallel with the other workers.
 *
 * Only the layouts kelp's writer produces take this path: u8 data, chunked, with no filter or the deflate filter
 * alone, and (for the fixed layout) one chunk per record. Anything else (shuffle, szip, other chunk shapes, a
 * chunk never written, edge chunks left unfiltered) is read through H5Dread as before, so files from other writers
 * keep working. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "io/dataset_internal.h"

void kelp_ds_chunking_inspect(hid_t dset, int rank, kelp_ds_chunking *out)
{
    memset(out, 0, sizeof *out);
    if (rank < 1 || rank > KELP_DS_CHUNK_RANK)
        return;
    hid_t dcpl = H5Dget_create_plist(dset), type = H5Dget_type(dset);
    bool ok = dcpl >= 0 && type >= 0 && H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 1 &&
              H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, rank, out->chunk) == rank;
    uint64_t bytes = 1;
    for (int d = 0; ok && d < rank; d++)
        bytes *= out->chunk[d];
    ok = ok && bytes > 0 && bytes <= KELP_DS_MAX_CHUNK_BYTES;
    int filters = ok ? H5Pget_nfilters(dcpl) : -1;
    if (filters == 1) {
        unsigned flags = 0, values[8];
        size_t n_values = 8;
        char name[64];
        out->deflate = H5Pget_filter2(dcpl, 0, &flags, &n_values, values, sizeof name, name, NULL) ==
                       H5Z_FILTER_DEFLATE;
        ok = out->deflate;
    }
    /* with this option a partial edge chunk is stored unfiltered yet with filter mask 0: leave such files to HDF5 */
    unsigned options = 0;
    ok = ok && H5Pget_chunk_opts(dcpl, &options) >= 0 && !(options & H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS);
    out->raw = ok && (filters == 0 || filters == 1);
    out->rank = rank;
    out->chunk_bytes = bytes;
    kelp_ds_h5_close(type);
    kelp_ds_h5_close(dcpl);
}

void kelp_ds_chunks_free(kelp_ds_chunks *c)
{
    free(c->data);
    free(c->chunks);
    memset(c, 0, sizeof *c);
}

/* Deflate's worst case for n bytes stored (zlib's compressBound): a larger stored chunk is damaged. */
static uint64_t stored_bound(uint64_t n) { return n + (n >> 12) + (n >> 14) + (n >> 25) + 13; }

kelp_status kelp_ds_chunks_fetch(hid_t dset, const kelp_ds_chunking *k, const hsize_t *start, const hsize_t *count,
                                 kelp_ds_chunks *out, const char *what)
{
    memset(out, 0, sizeof *out);
    for (int d = 0; d < k->rank; d++)
        if (count[d] == 0)
            return KELP_OK; /* an empty record: the caller's H5Dread path reads nothing */
    /* 1-D: the chunks that the range [start, start + count) touches; higher ranks: the record is one chunk */
    hsize_t first = 0, last = 0;
    if (k->rank == 1) {
        first = start[0] / k->chunk[0];
        last = (start[0] + count[0] - 1) / k->chunk[0];
    } else {
        for (int d = 0; d < k->rank; d++)
            if (start[d] % k->chunk[d] != 0 || count[d] != k->chunk[d])
                return KELP_OK; /* not one whole chunk: the caller reads through H5Dread */
    }
    const size_t n = (size_t)(last - first + 1);
    out->chunks = calloc(n, sizeof *out->chunks);
    if (!out->chunks)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s (out of memory)", what);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        kelp_ds_chunk *c = &out->chunks[i];
        hsize_t offset[KELP_DS_CHUNK_RANK] = {0}, stored = 0;
        if (k->rank == 1)
            offset[0] = (first + i) * k->chunk[0];
        else
            memcpy(offset, start, (size_t)k->rank * sizeof *offset);
        c->first = offset[0];
        if (H5Dget_chunk_storage_size(dset, offset, &stored) < 0 || stored == 0) {
            kelp_ds_chunks_free(out); /* a chunk never written holds the fill value: let H5Dread supply it */
            return KELP_OK;
        }
        if (stored > stored_bound(k->chunk_bytes)) {
            kelp_ds_chunks_free(out);
            return kelp_set_error(KELP_ERR_FORMAT, "%s (a chunk of %" PRIu64 " bytes is stored in %" PRIu64
                                  " bytes, more than deflate ever takes)", what, k->chunk_bytes, (uint64_t)stored);
        }
        c->stored = stored;
        c->at = total;
        total += stored;
    }
    out->data = malloc(total ? total : 1);
    if (!out->data) {
        kelp_ds_chunks_free(out);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s (out of memory for %" PRIu64 " bytes)", what, total);
    }
    for (size_t i = 0; i < n; i++) {
        kelp_ds_chunk *c = &out->chunks[i];
        hsize_t offset[KELP_DS_CHUNK_RANK] = {0};
        if (k->rank == 1)
            offset[0] = c->first;
        else
            memcpy(offset, start, (size_t)k->rank * sizeof *offset);
        if (H5Dread_chunk(dset, H5P_DEFAULT, offset, &c->filter_mask, out->data + c->at) < 0) {
            char detail[256];
            kelp_ds_h5_detail(detail, sizeof detail);
            kelp_ds_chunks_free(out);
            return kelp_set_error(KELP_ERR_FORMAT, "%s (HDF5: %s)", what, detail);
        }
    }
    out->count = n;
    return KELP_OK;
}

/* One chunk's bytes, inflated (or as stored when its filter was skipped), into `chunk` of k->chunk_bytes. */
static kelp_status unpack(const kelp_ds_chunking *k, const kelp_ds_chunks *all, const kelp_ds_chunk *c,
                          uint8_t *chunk, const char *what)
{
    const uint8_t *src = all->data + c->at;
    if (!k->deflate || (c->filter_mask & 1)) {
        if (c->stored != k->chunk_bytes)
            return kelp_set_error(KELP_ERR_FORMAT, "%s (an unfiltered chunk is stored in %" PRIu64 " bytes, not %" PRIu64
                                  ")", what, c->stored, k->chunk_bytes);
        memcpy(chunk, src, k->chunk_bytes);
        return KELP_OK;
    }
    z_stream z = {.next_in = (Bytef *)src, .avail_in = (uInt)c->stored, .next_out = chunk,
                  .avail_out = (uInt)k->chunk_bytes};
    if (inflateInit(&z) != Z_OK)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s (zlib cannot start inflating)", what);
    int r = inflate(&z, Z_FINISH);
    const char *msg = z.msg                ? z.msg
                      : r == Z_MEM_ERROR   ? "out of memory"
                      : r == Z_NEED_DICT   ? "the stream needs a preset dictionary"
                      : z.avail_out == 0   ? "data past the chunk's size"
                                           : "the stream ends early";
    uint64_t produced = z.total_out;
    inflateEnd(&z);
    if (r != Z_STREAM_END)
        return kelp_set_error(r == Z_MEM_ERROR ? KELP_ERR_NO_MEMORY : KELP_ERR_FORMAT, "%s (deflate: %s)", what, msg);
    if (produced != k->chunk_bytes)
        return kelp_set_error(KELP_ERR_FORMAT, "%s (deflate: a chunk of %" PRIu64 " bytes inflates to %" PRIu64 ")",
                              what, k->chunk_bytes, produced);
    return KELP_OK;
}

kelp_status kelp_ds_chunks_unpack(const kelp_ds_chunking *k, const kelp_ds_chunks *all, const hsize_t *start,
                                  const hsize_t *count, uint8_t *dst, const char *what)
{
    const bool whole = k->rank > 1; /* the record is the chunk */
    uint8_t *chunk = whole ? dst : malloc(k->chunk_bytes);
    if (!chunk)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s (out of memory)", what);
    kelp_status s = KELP_OK;
    for (size_t i = 0; i < all->count && s == KELP_OK; i++) {
        const kelp_ds_chunk *c = &all->chunks[i];
        s = unpack(k, all, c, chunk, what);
        if (s != KELP_OK || whole)
            continue;
        /* the part of [start, start + count) in this chunk */
        const uint64_t begin = start[0] > c->first ? start[0] : c->first;
        const uint64_t chunk_end = c->first + k->chunk[0], range_end = start[0] + count[0];
        const uint64_t end = chunk_end < range_end ? chunk_end : range_end;
        memcpy(dst + (begin - start[0]), chunk + (begin - c->first), (size_t)(end - begin));
    }
    if (!whole)
        free(chunk);
    return s;
}
