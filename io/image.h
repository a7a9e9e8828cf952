/* kelp io: image codecs (PNG via libpng, JPEG via libjpeg-turbo) and a resize for uint8 HWC pixels.
 *
 * The format is chosen by the first bytes, never by the file name. Every decoded image is 8-bit, HWC, with 1 (gray)
 * or 3 (RGB) channels: palette, low-bit-depth and 16-bit PNGs are expanded or reduced to 8 bits, and alpha is
 * dropped (the colour values are kept as they are, like PIL's convert("RGB")). RGB becomes gray with the ITU-R
 * BT.601 luma weights (0.299 R + 0.587 G + 0.114 B), gray becomes RGB by copying.
 *
 * The size declared in the header is checked against the caps before any pixel buffer exists, so a tiny file that
 * claims to be 100000 x 100000 pixels (a "decompression bomb") is an error, not an out-of-memory kill. Codec errors
 * and warnings are recorded into the kelp error message, never printed; every message names the file.
 *
 *   kelp_image img;
 *   KELP_TRY(kelp_image_decode_file("cell.jpg", 3, &img));   // 0 keeps the image's own gray/colour
 *   ... img.pixels[(y * img.w + x) * img.c + ch] ...
 *   kelp_image_free(&img);
 */
#ifndef KELP_IO_IMAGE_H
#define KELP_IO_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/dataset.h"
#include "kelp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KELP_IMAGE_MAX_SIDE KELP_DATASET_MAX_SIDE
#define KELP_IMAGE_MAX_PIXELS ((uint64_t)1 << 28)
/* An image file larger than this is refused before it is read (compressed data beyond the pixel cap's worth). */
#define KELP_IMAGE_MAX_FILE_BYTES ((size_t)1 << 30)

typedef enum kelp_image_format { KELP_IMAGE_UNKNOWN = 0, KELP_IMAGE_PNG, KELP_IMAGE_JPEG } kelp_image_format;

typedef struct kelp_image {
    uint8_t *pixels; /* h*w*c bytes, HWC, owned (kelp_image_free) */
    uint32_t h, w, c;
} kelp_image;

/* What the header says, without decoding pixels. */
typedef struct kelp_image_header {
    kelp_image_format format;
    uint32_t h, w;
    bool color; /* decodes to 3 channels by default (RGB, palette, YCbCr...); false for gray */
} kelp_image_header;

/* The format the first bytes announce; KELP_IMAGE_UNKNOWN for anything else (including fewer than 8 bytes). */
kelp_image_format kelp_image_sniff(const void *data, size_t size);

/* The format a file's first 8 bytes announce (a large file that is not an image is never read whole). */
kelp_status kelp_image_sniff_file(const char *path, kelp_image_format *format);
/* True when the name ends in .png, .jpg or .jpeg, in any case: a file meant to be an image. A folder's files count
 * as images when their first bytes or their name say so (import and predict share this rule). */
bool kelp_image_has_extension(const char *name);

/* Reads a whole file (at most KELP_IMAGE_MAX_FILE_BYTES) into *data (free with free()). */
kelp_status kelp_image_read_file(const char *path, uint8_t **data, size_t *size);

/* Parses the header of an encoded image and checks its size against the caps. `name` is used in messages. */
kelp_status kelp_image_probe_memory(const void *data, size_t size, const char *name, kelp_image_header *out);

/* Decodes to `channels` channels (1 or 3), or to the image's own (1 for gray, 3 for colour) when 0. */
kelp_status kelp_image_decode_memory(const void *data, size_t size, const char *name, int channels, kelp_image *out);
kelp_status kelp_image_decode_file(const char *path, int channels, kelp_image *out);
/* Frees the pixels and zeroes the struct; safe on a zeroed struct. */
void kelp_image_free(kelp_image *img);

/* Encodes h*w*c pixels (c = 1, 2, 3 or 4: gray, gray+alpha, RGB, RGBA) as an 8-bit PNG; *out is freed with free(). */
kelp_status kelp_image_encode_png(const uint8_t *pixels, uint32_t h, uint32_t w, uint32_t c, uint8_t **out,
                                  size_t *size);
/* Encodes and replaces `path` atomically (io/atomic_file.h). */
kelp_status kelp_image_write_png(const char *path, const uint8_t *pixels, uint32_t h, uint32_t w, uint32_t c);

/* Resizes uint8 HWC pixels (src_h x src_w x c) to dst_h x dst_w x c with a bilinear (triangle) filter on pixel
 * centres. When shrinking, the filter is widened by the scale factor so that every source pixel contributes
 * (antialiasing, like PIL's BILINEAR resize) instead of aliasing stripes and noise into the result. */
kelp_status kelp_image_resize(const uint8_t *src, uint32_t src_h, uint32_t src_w, uint32_t c, uint8_t *dst,
                              uint32_t dst_h, uint32_t dst_w);

#ifdef __cplusplus
}
#endif
#endif
