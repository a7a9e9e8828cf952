/* kelp io: IDX files (the MNIST / Fashion-MNIST format), plain or gzip'd.
 *
 * An IDX file is a 4-byte magic (0, 0, dtype, rank), rank big-endian uint32 dims, then the elements in row-major
 * order and nothing else. kelp reads unsigned-byte files (dtype 0x08) of rank 1 to 3: labels [N] and images
 * [N,H,W]. The header is validated against the caps before anything is allocated, and the length must be exact:
 * a truncated file and one with bytes after the last element are both errors.
 *
 *   kelp_idx images;
 *   KELP_TRY(kelp_idx_read("train-images-idx3-ubyte.gz", &images));
 *   // images.rank == 3, images.dims = {60000, 28, 28}, images.data holds 60000*28*28 bytes
 *   kelp_idx_free(&images);
 */
#ifndef KELP_IO_IDX_H
#define KELP_IO_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "kelp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KELP_IDX_MAX_RANK 3
#define KELP_IDX_MAX_ITEMS 100000000      /* dims[0] */
#define KELP_IDX_MAX_SIDE 16384           /* every later dim */
#define KELP_IDX_MAX_BYTES ((size_t)1 << 32)

typedef struct kelp_idx {
    uint8_t *data; /* count bytes, owned (kelp_idx_free) */
    size_t count;  /* product of the dims */
    int rank;
    uint32_t dims[KELP_IDX_MAX_RANK];
} kelp_idx;

/* Reads a whole IDX file, gzip'd or not (zlib tells them apart). Errors name the path and the problem. */
kelp_status kelp_idx_read(const char *path, kelp_idx *out);
/* Frees the data and zeroes the struct; safe on a zeroed struct. */
void kelp_idx_free(kelp_idx *idx);

#ifdef __cplusplus
}
#endif
#endif
