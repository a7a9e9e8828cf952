/* kelp io: safetensors files, as records of (name, dtype, shape, bytes).
 *
 * Format: an 8-byte little-endian header length N, N bytes of UTF-8 JSON mapping each tensor name to
 * {"dtype","shape","data_offsets":[begin,end]} (plus an optional "__metadata__" object of strings), then the data
 * section, where each tensor's row-major bytes lie at [begin,end) and the tensors tile the section exactly.
 *
 * Reading: kelp_st_open validates the whole header before it returns (the rules of the reference implementation,
 * listed in safetensors.c), so every later call can trust the offsets. Tensor bytes stay on disk until asked for.
 *
 *     kelp_st_file *f;
 *     KELP_TRY(kelp_st_open("model.safetensors", &f));
 *     const kelp_st_info *w;
 *     kelp_status s = kelp_st_find(f, "conv1.weight", &w);          // KELP_ERR_NOT_FOUND when absent
 *     if (s == KELP_OK && w->dtype == KELP_ST_F32)
 *         s = kelp_st_read(f, w, buf, (size_t)w->nbytes);             // buf holds w->nbytes bytes
 *     kelp_st_close(f);
 *
 *   kelp_st_count/kelp_st_info_at list the tensors in header order; kelp_st_metadata lists "__metadata__".
 *
 * Writing: kelp_st_write(path, records, n, metadata, n_metadata) writes the header (keys in the given order,
 * data_offsets tiling from 0, padded with spaces to a multiple of 8 bytes like the reference writer) and then the
 * data, through io/atomic_file: the target is replaced whole or not at all.
 *
 * Every failure names the file path first; format violations are KELP_ERR_FORMAT and name the broken rule. */
#ifndef KELP_IO_SAFETENSORS_H
#define KELP_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kelp/status.h"
#include "kelp/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every dtype of the safetensors format; the names are the format's spellings without the prefix. */
typedef enum kelp_st_dtype {
    KELP_ST_BOOL = 0,
    KELP_ST_U8,
    KELP_ST_I8,
    KELP_ST_I16,
    KELP_ST_U16,
    KELP_ST_F16,
    KELP_ST_BF16,
    KELP_ST_I32,
    KELP_ST_U32,
    KELP_ST_F32,
    KELP_ST_F64,
    KELP_ST_I64,
    KELP_ST_U64,
    KELP_ST_F8_E5M2,
    KELP_ST_F8_E4M3,
} kelp_st_dtype;

#define KELP_ST_DTYPE_COUNT 15

/* Bytes per element; 0 for a value outside the enum. */
size_t kelp_st_dtype_size(kelp_st_dtype dtype);
/* "F32", "BF16", "F8_E4M3"...; "?" for a value outside the enum. */
const char *kelp_st_dtype_name(kelp_st_dtype dtype);
/* Parses the format's spelling (case-sensitive); KELP_ERR_NOT_FOUND for anything else. */
kelp_status kelp_st_dtype_parse(const char *name, kelp_st_dtype *out);

/* The reference implementation's cap. */
#define KELP_ST_MAX_HEADER_BYTES 100000000u
/* Caps beyond the format's rules, so that a hostile header cannot make the reader allocate absurdly. A file over
 * a cap fails with KELP_ERR_NO_MEMORY; a tensor with more dims than a kelp_shape holds, KELP_ERR_UNSUPPORTED.
 * Integers in the header must also stay below 2^53 (the JSON parser reads numbers as doubles). */
#define KELP_ST_MAX_TENSORS 100000
#define KELP_ST_MAX_METADATA 100000

/* One "__metadata__" entry. */
typedef struct kelp_st_meta {
    const char *key;
    const char *value;
} kelp_st_meta;

/* ---- reading ---- */

typedef struct kelp_st_file kelp_st_file;

/* A tensor of an open file; owned by the file, valid until kelp_st_close. */
typedef struct kelp_st_info {
    const char *name;
    kelp_st_dtype dtype;
    kelp_shape shape;   /* ndim 0 is a scalar */
    uint64_t offset;    /* begin of its bytes within the data section */
    uint64_t nbytes;    /* numel * dtype size, possibly 0 */
} kelp_st_info;

/* Opens and validates `path`; on failure *out is NULL. */
kelp_status kelp_st_open(const char *path, kelp_st_file **out);
/* NULL is a no-op. */
void kelp_st_close(kelp_st_file *file);

size_t kelp_st_count(const kelp_st_file *file);
/* The index-th tensor in header order; NULL when index >= kelp_st_count. */
const kelp_st_info *kelp_st_info_at(const kelp_st_file *file, size_t index);
/* KELP_ERR_NOT_FOUND (naming file and tensor) when no tensor is called `name`. */
kelp_status kelp_st_find(const kelp_st_file *file, const char *name, const kelp_st_info **out);
/* Reads the tensor's bytes into dst, which must hold exactly info->nbytes bytes (dst_bytes says how many).
 * Positioned reads: several threads may read from one open file at once. */
kelp_status kelp_st_read(const kelp_st_file *file, const kelp_st_info *info, void *dst, size_t dst_bytes);

/* The "__metadata__" entries in header order (count 0 when the file has none). */
const kelp_st_meta *kelp_st_metadata(const kelp_st_file *file, size_t *count);
/* The value for `key`, or NULL. */
const char *kelp_st_metadata_get(const kelp_st_file *file, const char *key);

/* ---- writing ---- */

/* One tensor to write: `data` holds numel(shape) * dtype size bytes (may be NULL when that is 0). */
typedef struct kelp_st_record {
    const char *name;
    kelp_st_dtype dtype;
    kelp_shape shape;
    const void *data;
} kelp_st_record;

/* Writes the records (in this order) and the optional metadata to `path`, atomically. Rejects with
 * KELP_ERR_INVALID_ARG, before touching the disk: empty, duplicate or "__metadata__" names, duplicate metadata
 * keys, strings that are not UTF-8, negative dims, and sizes beyond the reader's caps. */
kelp_status kelp_st_write(const char *path, const kelp_st_record *records, size_t count,
                          const kelp_st_meta *metadata, size_t metadata_count);

#ifdef __cplusplus
}
#endif
#endif
