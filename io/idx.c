/* IDX reader (http://yann.lecun.com/exdb/mnist/ describes the format). */
#include "io/idx.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_DTYPE_U8 0x08
/* gzread takes an unsigned int length. */
#define GZ_CHUNK ((size_t)1 << 30)

void kelp_idx_free(kelp_idx *idx)
{
    if (!idx)
        return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}

static const char *dtype_name(uint8_t dtype)
{
    switch (dtype) {
    case 0x09:
        return "signed byte";
    case 0x0B:
        return "int16";
    case 0x0C:
        return "int32";
    case 0x0D:
        return "float32";
    case 0x0E:
        return "float64";
    default:
        return NULL;
    }
}

/* Reads up to n bytes; *got receives how many. Fewer than n without an error means the data ended. */
static kelp_status gz_read(gzFile f, const char *path, uint8_t *dst, size_t n, size_t *got)
{
    *got = 0;
    while (*got < n) {
        size_t want = n - *got < GZ_CHUNK ? n - *got : GZ_CHUNK;
        int r = gzread(f, dst + *got, (unsigned)want);
        int err = Z_OK;
        const char *message = gzerror(f, &err);
        if (r < 0 || (err != Z_OK && err != Z_BUF_ERROR))
            return kelp_set_error(KELP_ERR_FORMAT, "%s: read failed: %s", path,
                                  err == Z_ERRNO ? strerror(errno) : message);
        *got += (size_t)r;
        if ((size_t)r < want)
            break;
    }
    return KELP_OK;
}

static kelp_status read_exact(gzFile f, const char *path, uint8_t *dst, size_t n, const char *what)
{
    size_t got;
    KELP_TRY(gz_read(f, path, dst, n, &got));
    if (got < n)
        return kelp_set_error(KELP_ERR_FORMAT, "%s: truncated: %s ends before its %zu bytes", path, what, n);
    return KELP_OK;
}

static kelp_status check_magic(const char *path, const uint8_t magic[4])
{
    if (magic[0] != 0 || magic[1] != 0)
        return kelp_set_error(KELP_ERR_FORMAT, "%s: not an IDX file (magic %02x %02x %02x %02x; expected 00 00 "
                                               "then dtype and rank)",
                              path, magic[0], magic[1], magic[2], magic[3]);
    if (magic[2] != IDX_DTYPE_U8) {
        const char *name = dtype_name(magic[2]);
        if (name)
            return kelp_set_error(KELP_ERR_UNSUPPORTED, "%s: IDX dtype 0x%02x (%s); kelp reads unsigned bytes "
                                                        "(0x08) only",
                                  path, magic[2], name);
        return kelp_set_error(KELP_ERR_FORMAT, "%s: unknown IDX dtype byte 0x%02x", path, magic[2]);
    }
    if (magic[3] < 1 || magic[3] > KELP_IDX_MAX_RANK)
        return kelp_set_error(KELP_ERR_FORMAT, "%s: IDX rank %d; kelp reads ranks 1 to %d", path, magic[3],
                              KELP_IDX_MAX_RANK);
    return KELP_OK;
}

static kelp_status read_dims(gzFile f, const char *path, kelp_idx *idx)
{
    uint8_t raw[4 * KELP_IDX_MAX_RANK];
    KELP_TRY(read_exact(f, path, raw, 4 * (size_t)idx->rank, "the header"));
    uint64_t count = 1;
    for (int d = 0; d < idx->rank; d++) {
        const uint8_t *p = raw + 4 * d;
        uint32_t dim = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        uint32_t cap = d == 0 ? KELP_IDX_MAX_ITEMS : KELP_IDX_MAX_SIDE;
        if (dim == 0 || dim > cap)
            return kelp_set_error(dim ? KELP_ERR_NO_MEMORY : KELP_ERR_FORMAT,
                                  "%s: IDX dimension %d is %" PRIu32 " (must be 1 to %" PRIu32 ")", path, d, dim, cap);
        idx->dims[d] = dim;
        count *= dim;
    }
    if (count > KELP_IDX_MAX_BYTES)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: IDX data of %" PRIu64 " bytes exceeds the cap of %zu", path,
                              count, KELP_IDX_MAX_BYTES);
    idx->count = (size_t)count;
    return KELP_OK;
}

static kelp_status read_body(gzFile f, const char *path, kelp_idx *idx)
{
    uint8_t magic[4];
    KELP_TRY(read_exact(f, path, magic, sizeof magic, "the magic number"));
    KELP_TRY(check_magic(path, magic));
    idx->rank = magic[3];
    KELP_TRY(read_dims(f, path, idx));
    idx->data = malloc(idx->count);
    if (!idx->data)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory for %zu bytes", path, idx->count);
    KELP_TRY(read_exact(f, path, idx->data, idx->count, "the data"));
    uint8_t extra;
    size_t got;
    KELP_TRY(gz_read(f, path, &extra, 1, &got));
    if (got)
        return kelp_set_error(KELP_ERR_FORMAT, "%s: trailing bytes after the %zu data bytes the header declares",
                              path, idx->count);
    return KELP_OK;
}

kelp_status kelp_idx_read(const char *path, kelp_idx *out)
{
    memset(out, 0, sizeof *out);
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return kelp_set_error(errno == ENOMEM ? KELP_ERR_NO_MEMORY : KELP_ERR_IO, "%s: cannot open: %s", path,
                              errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1 << 17);
    kelp_status s = read_body(f, path, out);
    gzclose(f);
    if (s != KELP_OK)
        kelp_idx_free(out);
    return s;
}
