/* Image codecs and resize.
 *
 * libpng and libjpeg report errors by calling a handler that must not return, so each decode runs under setjmp and
 * the handlers longjmp back. Everything a longjmp may skip past (the codec state, the pixel buffer) lives in a
 * struct owned by the *caller* of the function that calls setjmp: C11 7.13.2.1 only makes non-volatile locals of
 * the setjmp caller itself indeterminate, so no volatile is needed and the buffers are always freed.
 *
 * EXIF orientation is ignored: pixels come out in stored order, the same for training and prediction. */
#include "io/image.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
/* after jpeglib.h: which warning codes exist depends on jconfig.h */
#include <jerror.h>

#include "io/atomic_file.h"

/* Progressive JPEGs may hold any number of scans, each a full pass over the coefficients; a few hundred tiny scans
 * turn a small file into minutes of CPU (libjpeg-turbo's own advice is to cap them). Real encoders write ~10. */
#define JPEG_MAX_SCANS 500
#define PNG_MESSAGE_MAX 200

static const uint8_t PNG_SIGNATURE[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

kelp_image_format kelp_image_sniff(const void *data, size_t size)
{
    const uint8_t *b = data;
    if (!b || size < 8)
        return KELP_IMAGE_UNKNOWN;
    if (memcmp(b, PNG_SIGNATURE, sizeof PNG_SIGNATURE) == 0)
        return KELP_IMAGE_PNG;
    if (b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
        return KELP_IMAGE_JPEG;
    return KELP_IMAGE_UNKNOWN;
}

kelp_status kelp_image_sniff_file(const char *path, kelp_image_format *format)
{
    *format = KELP_IMAGE_UNKNOWN;
    FILE *f = fopen(path, "rb");
    if (!f)
        return kelp_set_error(KELP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t head[8];
    size_t n = fread(head, 1, sizeof head, f);
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed)
        return kelp_set_error(KELP_ERR_IO, "%s: read failed", path);
    *format = kelp_image_sniff(head, n);
    return KELP_OK;
}

bool kelp_image_has_extension(const char *name)
{
    static const char *const extensions[] = {".png", ".jpg", ".jpeg"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof extensions / sizeof extensions[0]; i++) {
        size_t k = strlen(extensions[i]);
        if (n > k && strcasecmp(name + n - k, extensions[i]) == 0)
            return true;
    }
    return false;
}

void kelp_image_free(kelp_image *img)
{
    if (!img)
        return;
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

/* ---- shared pieces ---- */

static kelp_status check_size(const char *name, const char *format, uint32_t h, uint32_t w)
{
    if (h == 0 || w == 0)
        return kelp_set_error(KELP_ERR_FORMAT, "%s: %s header declares an empty image (%" PRIu32 " x %" PRIu32 ")",
                              name, format, h, w);
    if (h > KELP_IMAGE_MAX_SIDE || w > KELP_IMAGE_MAX_SIDE || (uint64_t)h * w > KELP_IMAGE_MAX_PIXELS)
        return kelp_set_error(KELP_ERR_NO_MEMORY,
                              "%s: %s header declares %" PRIu32 " x %" PRIu32 " pixels, more than kelp decodes "
                              "(at most %d per side and %" PRIu64 " in all): refused before decoding",
                              name, format, h, w, KELP_IMAGE_MAX_SIDE, KELP_IMAGE_MAX_PIXELS);
    return KELP_OK;
}

static int channels_of(bool color)
{
    return color ? 3 : 1;
}

/* A buffer for h*w pixels of the larger of the two channel counts, so that the conversion runs in place. */
static kelp_status alloc_pixels(const char *name, uint32_t h, uint32_t w, int c_native, int c_out, uint8_t **out)
{
    int c = c_native > c_out ? c_native : c_out;
    *out = malloc((size_t)h * w * (size_t)c);
    if (!*out)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory for %" PRIu32 " x %" PRIu32 " x %d pixels",
                              name, h, w, c);
    return KELP_OK;
}

/* In place: gray to RGB walks backwards (each write lands at or after the pixel it reads), RGB to gray forwards. */
static void convert_channels(uint8_t *p, size_t n, int from, int to)
{
    if (from == 1 && to == 3) {
        for (size_t i = n; i-- > 0;)
            p[3 * i] = p[3 * i + 1] = p[3 * i + 2] = p[i];
    } else if (from == 3 && to == 1) {
        for (size_t i = 0; i < n; i++)
            p[i] = (uint8_t)((299u * p[3 * i] + 587u * p[3 * i + 1] + 114u * p[3 * i + 2] + 500u) / 1000u);
    }
}

static void finish_image(uint8_t *pixels, uint32_t h, uint32_t w, int c_native, int c_out, kelp_image *out)
{
    convert_channels(pixels, (size_t)h * w, c_native, c_out);
    out->pixels = pixels;
    out->h = h;
    out->w = w;
    out->c = (uint32_t)c_out;
}

/* ---- PNG ---- */

typedef struct png_job {
    const char *name;
    const uint8_t *in; /* decoding: the encoded bytes */
    size_t in_size, in_pos;
    uint8_t *out; /* encoding: the growing output */
    size_t out_len, out_cap;
    uint8_t *pixels;
    png_bytep *rows;
    char message[PNG_MESSAGE_MAX];
} png_job;

static void png_on_error(png_structp png, png_const_charp message)
{
    png_job *job = png_get_error_ptr(png);
    snprintf(job->message, sizeof job->message, "%s", message);
    png_longjmp(png, 1);
}

/* Warnings are about ancillary data (colour profiles, text chunks, CRCs of optional chunks) that kelp does not
 * use; the pixels are intact, so they are dropped rather than printed. */
static void png_on_warning(png_structp png, png_const_charp message)
{
    (void)png;
    (void)message;
}

static void png_read_memory(png_structp png, png_bytep dst, size_t n)
{
    png_job *job = png_get_io_ptr(png);
    if (n > job->in_size - job->in_pos)
        png_error(png, "the file is truncated");
    memcpy(dst, job->in + job->in_pos, n);
    job->in_pos += n;
}

static uint32_t read_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The IHDR chunk must come first (PNG spec 5.6), so the size is read from fixed offsets without libpng. */
static kelp_status probe_png(const uint8_t *data, size_t size, const char *name, kelp_image_header *out)
{
    enum { IHDR_END = 8 + 8 + 13 };
    if (size < IHDR_END || read_be32(data + 8) != 13 || memcmp(data + 12, "IHDR", 4) != 0)
        return kelp_set_error(KELP_ERR_FORMAT, "%s: corrupt PNG: no IHDR chunk after the signature", name);
    uint32_t w = read_be32(data + 16), h = read_be32(data + 20);
    KELP_TRY(check_size(name, "PNG", h, w));
    uint8_t color_type = data[25];
    out->format = KELP_IMAGE_PNG;
    out->h = h;
    out->w = w;
    out->color = (color_type & PNG_COLOR_MASK_COLOR) != 0;
    return KELP_OK;
}

/* Runs under the setjmp of decode_png. */
static kelp_status png_read_pixels(png_structp png, png_infop info, png_job *job, const kelp_image_header *hdr,
                                   int c_out, kelp_image *out)
{
    png_set_read_fn(png, job, png_read_memory);
    png_read_info(png, info);
    uint32_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (h != hdr->h || w != hdr->w)
        return kelp_set_error(KELP_ERR_FORMAT, "%s: corrupt PNG: inconsistent image size", job->name);
    /* libpng 1.6's palette expansion also turns tRNS into an alpha channel, which the strip then drops. */
    png_set_scale_16(png);
    png_set_palette_to_rgb(png);
    png_set_expand_gray_1_2_4_to_8(png);
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int c_native = png_get_channels(png, info);
    if ((c_native != 1 && c_native != 3) || png_get_rowbytes(png, info) != (size_t)w * (size_t)c_native)
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "%s: PNG decodes to %d channels; kelp expects 1 or 3", job->name,
                              c_native);
    KELP_TRY(alloc_pixels(job->name, h, w, c_native, c_out, &job->pixels));
    job->rows = malloc(h * sizeof *job->rows);
    if (!job->rows)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory for %" PRIu32 " row pointers", job->name, h);
    for (uint32_t y = 0; y < h; y++)
        job->rows[y] = job->pixels + (size_t)y * w * (size_t)c_native;
    png_read_image(png, job->rows);
    finish_image(job->pixels, h, w, c_native, c_out, out);
    job->pixels = NULL;
    return KELP_OK;
}

static kelp_status png_decode_with(png_structp png, png_infop info, png_job *job, const kelp_image_header *hdr,
                                   int c_out, kelp_image *out)
{
    if (setjmp(png_jmpbuf(png)))
        return kelp_set_error(KELP_ERR_FORMAT, "%s: corrupt PNG: %s", job->name, job->message);
    return png_read_pixels(png, info, job, hdr, c_out, out);
}

static kelp_status decode_png(const uint8_t *data, size_t size, const char *name, const kelp_image_header *hdr,
                              int c_out, kelp_image *out)
{
    png_job job = {.name = name, .in = data, .in_size = size};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &job, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    kelp_status s = info ? png_decode_with(png, info, &job, hdr, c_out, out)
                         : kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory starting libpng", name);
    png_destroy_read_struct(&png, &info, NULL);
    free(job.rows);
    free(job.pixels);
    return s;
}

static void png_write_memory(png_structp png, png_bytep src, size_t n)
{
    png_job *job = png_get_io_ptr(png);
    if (n > job->out_cap - job->out_len) {
        size_t cap = job->out_cap ? job->out_cap : 4096;
        while (cap - job->out_len < n) {
            if (cap > SIZE_MAX / 2)
                png_error(png, "output too large");
            cap *= 2;
        }
        uint8_t *grown = realloc(job->out, cap);
        if (!grown)
            png_error(png, "out of memory for the encoded image");
        job->out = grown;
        job->out_cap = cap;
    }
    memcpy(job->out + job->out_len, src, n);
    job->out_len += n;
}

static void png_flush_nothing(png_structp png)
{
    (void)png;
}

static kelp_status png_encode_with(png_structp png, png_infop info, png_job *job, const uint8_t *pixels,
                                   uint32_t h, uint32_t w, uint32_t c)
{
    static const int color_types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                       PNG_COLOR_TYPE_RGB_ALPHA};
    if (setjmp(png_jmpbuf(png)))
        return kelp_set_error(KELP_ERR_IO, "PNG encoder: %s", job->message);
    png_set_write_fn(png, job, png_write_memory, png_flush_nothing);
    png_set_IHDR(png, info, w, h, 8, color_types[c], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (uint32_t y = 0; y < h; y++)
        png_write_row(png, pixels + (size_t)y * w * c);
    png_write_end(png, NULL);
    return KELP_OK;
}

kelp_status kelp_image_encode_png(const uint8_t *pixels, uint32_t h, uint32_t w, uint32_t c, uint8_t **out,
                                  size_t *size)
{
    *out = NULL;
    *size = 0;
    if (!pixels || c < 1 || c > 4)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "PNG encoder: %s", pixels ? "channels must be 1 to 4"
                                                                              : "no pixels");
    KELP_TRY(check_size("PNG encoder", "requested", h, w));
    png_job job = {.name = "PNG encoder"};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &job, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    kelp_status s = info ? png_encode_with(png, info, &job, pixels, h, w, c)
                         : kelp_set_error(KELP_ERR_NO_MEMORY, "PNG encoder: out of memory starting libpng");
    png_destroy_write_struct(&png, &info);
    if (s != KELP_OK) {
        free(job.out);
        return s;
    }
    *out = job.out;
    *size = job.out_len;
    return KELP_OK;
}

kelp_status kelp_image_write_png(const char *path, const uint8_t *pixels, uint32_t h, uint32_t w, uint32_t c)
{
    uint8_t *png;
    size_t size;
    kelp_status s = kelp_image_encode_png(pixels, h, w, c, &png, &size);
    if (s != KELP_OK)
        return kelp_wrap_error(s, "%s: ", path);
    s = kelp_atomic_write(path, png, size);
    free(png);
    return s;
}

/* ---- JPEG ---- */

typedef struct jpeg_job {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr err;
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    uint8_t *pixels;
} jpeg_job;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_job *job = cinfo->client_data;
    cinfo->err->format_message(cinfo, job->message);
    longjmp(job->jump, 1);
}

/* libjpeg calls these "warnings" and goes on, filling what it could not decode with gray: a truncated or damaged
 * file would become a silently wrong training image, so they are errors. Warnings about metadata are ignored. */
static bool jpeg_warning_is_corrupt_data(int code)
{
    switch (code) {
    case JWRN_JPEG_EOF:
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_ARITH_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
    case JWRN_BOGUS_PROGRESSION:
        return true;
    default:
        return false;
    }
}

/* level < 0 is a warning, >= 0 a trace message; the default handler would print. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level < 0 && jpeg_warning_is_corrupt_data(cinfo->err->msg_code))
        jpeg_on_error(cinfo);
}

static void jpeg_output_nothing(j_common_ptr cinfo)
{
    (void)cinfo;
}

static void jpeg_on_progress(j_common_ptr cinfo)
{
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_job *job = cinfo->client_data;
        snprintf(job->message, sizeof job->message, "more than %d progressive scans", JPEG_MAX_SCANS);
        longjmp(job->jump, 1);
    }
}

static kelp_status jpeg_color(const char *name, J_COLOR_SPACE space, bool *color)
{
    switch (space) {
    case JCS_GRAYSCALE:
        *color = false;
        return KELP_OK;
    case JCS_YCbCr:
    case JCS_RGB:
        *color = true;
        return KELP_OK;
    default:
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "%s: JPEG colour space %d (CMYK or YCCK?) is not supported; "
                                                    "convert the image to RGB",
                              name, (int)space);
    }
}

/* Runs under the setjmp of jpeg_run. out == NULL reads the header only. */
static kelp_status jpeg_read(jpeg_job *job, const uint8_t *data, size_t size, const char *name, int c_out,
                             kelp_image_header *hdr, kelp_image *out)
{
    j_decompress_ptr cinfo = &job->cinfo;
    jpeg_mem_src(cinfo, data, (unsigned long)size);
    jpeg_read_header(cinfo, TRUE);
    KELP_TRY(check_size(name, "JPEG", cinfo->image_height, cinfo->image_width));
    bool color = false;
    KELP_TRY(jpeg_color(name, cinfo->jpeg_color_space, &color));
    *hdr = (kelp_image_header){KELP_IMAGE_JPEG, cinfo->image_height, cinfo->image_width, color};
    if (!out)
        return KELP_OK;
    int c_native = channels_of(color);
    cinfo->out_color_space = color ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_start_decompress(cinfo);
    if (cinfo->output_components != c_native || cinfo->output_height != hdr->h || cinfo->output_width != hdr->w)
        return kelp_set_error(KELP_ERR_FORMAT, "%s: corrupt JPEG: output differs from the header", name);
    KELP_TRY(alloc_pixels(name, hdr->h, hdr->w, c_native, c_out, &job->pixels));
    size_t stride = (size_t)hdr->w * (size_t)c_native;
    while (cinfo->output_scanline < cinfo->output_height) {
        JSAMPROW row = job->pixels + (size_t)cinfo->output_scanline * stride;
        jpeg_read_scanlines(cinfo, &row, 1);
    }
    jpeg_finish_decompress(cinfo);
    finish_image(job->pixels, hdr->h, hdr->w, c_native, c_out, out);
    job->pixels = NULL;
    return KELP_OK;
}

static kelp_status jpeg_run_with(jpeg_job *job, const uint8_t *data, size_t size, const char *name, int c_out,
                                 kelp_image_header *hdr, kelp_image *out)
{
    if (setjmp(job->jump))
        return kelp_set_error(KELP_ERR_FORMAT, "%s: corrupt JPEG: %s", name, job->message);
    jpeg_create_decompress(&job->cinfo);
    job->cinfo.progress = &job->progress;
    return jpeg_read(job, data, size, name, c_out, hdr, out);
}

static kelp_status jpeg_run(const uint8_t *data, size_t size, const char *name, int c_out, kelp_image_header *hdr,
                            kelp_image *out)
{
    jpeg_job *job = calloc(1, sizeof *job);
    if (!job)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory starting libjpeg", name);
    job->cinfo.err = jpeg_std_error(&job->err);
    job->err.error_exit = jpeg_on_error;
    job->err.emit_message = jpeg_on_message;
    job->err.output_message = jpeg_output_nothing;
    job->progress.progress_monitor = jpeg_on_progress;
    /* Set before jpeg_create_decompress, whose own failures reach the handlers; it keeps `err` and client_data. */
    job->cinfo.client_data = job;
    kelp_status s = jpeg_run_with(job, data, size, name, c_out, hdr, out);
    jpeg_destroy_decompress(&job->cinfo);
    free(job->pixels);
    free(job);
    return s;
}

/* ---- entry points ---- */

static kelp_status unknown_format(const uint8_t *data, size_t size, const char *name)
{
    if (size == 0)
        return kelp_set_error(KELP_ERR_FORMAT, "%s: empty file, not an image", name);
    char start[3 * 8] = "";
    size_t len = 0;
    for (size_t i = 0; i < size && i < 8; i++)
        len += (size_t)snprintf(start + len, sizeof start - len, i ? " %02x" : "%02x", data[i]);
    return kelp_set_error(KELP_ERR_FORMAT, "%s: not a PNG or JPEG image (it starts with bytes %s)", name, start);
}

kelp_status kelp_image_probe_memory(const void *data, size_t size, const char *name, kelp_image_header *out)
{
    memset(out, 0, sizeof *out);
    name = name ? name : "image";
    switch (kelp_image_sniff(data, size)) {
    case KELP_IMAGE_PNG:
        return probe_png(data, size, name, out);
    case KELP_IMAGE_JPEG:
        return jpeg_run(data, size, name, 0, out, NULL);
    default:
        return unknown_format(data, size, name);
    }
}

kelp_status kelp_image_decode_memory(const void *data, size_t size, const char *name, int channels, kelp_image *out)
{
    memset(out, 0, sizeof *out);
    name = name ? name : "image";
    if (channels != 0 && channels != 1 && channels != 3)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: cannot decode to %d channels (0, 1 or 3)", name, channels);
    kelp_image_header hdr;
    KELP_TRY(kelp_image_probe_memory(data, size, name, &hdr));
    int c_out = channels ? channels : channels_of(hdr.color);
    if (hdr.format == KELP_IMAGE_PNG)
        return decode_png(data, size, name, &hdr, c_out, out);
    return jpeg_run(data, size, name, c_out, &hdr, out);
}

static kelp_status read_all(int fd, const char *path, uint8_t *buf, size_t size)
{
    size_t done = 0;
    while (done < size) {
        ssize_t n = read(fd, buf + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return kelp_set_error(KELP_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        if (n == 0)
            return kelp_set_error(KELP_ERR_IO, "%s: the file shrank while it was read", path);
        done += (size_t)n;
    }
    return KELP_OK;
}

kelp_status kelp_image_read_file(const char *path, uint8_t **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kelp_set_error(KELP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    kelp_status s = KELP_OK;
    if (fstat(fd, &st) != 0)
        s = kelp_set_error(KELP_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        s = kelp_set_error(KELP_ERR_IO, "%s: not a regular file", path);
    else if ((uint64_t)st.st_size > KELP_IMAGE_MAX_FILE_BYTES)
        s = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: %lld bytes, larger than any image kelp decodes (%zu)", path,
                           (long long)st.st_size, KELP_IMAGE_MAX_FILE_BYTES);
    uint8_t *buf = NULL;
    if (s == KELP_OK && !(buf = malloc((size_t)st.st_size + 1)))
        s = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory for %lld bytes", path, (long long)st.st_size);
    if (s == KELP_OK)
        s = read_all(fd, path, buf, (size_t)st.st_size);
    close(fd);
    if (s != KELP_OK) {
        free(buf);
        return s;
    }
    *data = buf;
    *size = (size_t)st.st_size;
    return KELP_OK;
}

kelp_status kelp_image_decode_file(const char *path, int channels, kelp_image *out)
{
    memset(out, 0, sizeof *out);
    uint8_t *data;
    size_t size;
    KELP_TRY(kelp_image_read_file(path, &data, &size));
    kelp_status s = kelp_image_decode_memory(data, size, path, channels, out);
    free(data);
    return s;
}

/* ---- resize ---- */

/* For each output coordinate, the first input index and the normalized weights of its taps. */
typedef struct resize_taps {
    int *first;
    int *count;
    float *weights; /* out_size rows of `stride` weights */
    int stride;
} resize_taps;

static void taps_free(resize_taps *t)
{
    free(t->first);
    free(t->count);
    free(t->weights);
}

static double triangle(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Pixel i covers [i, i+1) so its centre is i + 0.5; output pixel o maps to input position (o + 0.5) * scale.
 * Taps past the border are dropped and the rest renormalized, which replicates the edge. */
static kelp_status taps_make(uint32_t in, uint32_t out, resize_taps *t)
{
    double scale = (double)in / out;
    double filter_scale = scale > 1.0 ? scale : 1.0;
    double support = filter_scale;
    t->stride = (int)ceil(support) * 2 + 1;
    t->first = malloc(out * sizeof *t->first);
    t->count = malloc(out * sizeof *t->count);
    t->weights = calloc((size_t)out * (size_t)t->stride, sizeof *t->weights);
    if (!t->first || !t->count || !t->weights)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "resize: out of memory for the filter taps");
    for (uint32_t o = 0; o < out; o++) {
        double centre = (o + 0.5) * scale;
        int lo = (int)floor(centre - support + 0.5), hi = (int)floor(centre + support + 0.5);
        lo = lo < 0 ? 0 : lo;
        hi = hi > (int)in ? (int)in : hi;
        float *w = t->weights + (size_t)o * t->stride;
        double sum = 0.0;
        for (int i = lo; i < hi; i++)
            sum += triangle((i + 0.5 - centre) / filter_scale);
        for (int i = lo; i < hi; i++)
            w[i - lo] = sum > 0.0 ? (float)(triangle((i + 0.5 - centre) / filter_scale) / sum) : 0.0f;
        t->first[o] = lo;
        t->count[o] = hi - lo;
    }
    return KELP_OK;
}

static uint8_t to_u8(float v)
{
    v = floorf(v + 0.5f);
    return (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
}

// src (src_h, src_w, c) u8 -> tmp (src_h, dst_w, c) f32
static void resize_rows(const uint8_t *src, uint32_t src_h, uint32_t src_w, uint32_t c, const resize_taps *tx,
                        uint32_t dst_w, float *tmp)
{
    for (uint32_t y = 0; y < src_h; y++) {
        const uint8_t *row = src + (size_t)y * src_w * c;
        for (uint32_t x = 0; x < dst_w; x++) {
            const float *w = tx->weights + (size_t)x * tx->stride;
            const uint8_t *p = row + (size_t)tx->first[x] * c;
            float *o = tmp + ((size_t)y * dst_w + x) * c;
            for (uint32_t ch = 0; ch < c; ch++) {
                float acc = 0.0f;
                for (int k = 0; k < tx->count[x]; k++)
                    acc += w[k] * p[(size_t)k * c + ch];
                o[ch] = acc;
            }
        }
    }
}

// tmp (src_h, dst_w, c) f32 -> dst (dst_h, dst_w, c) u8
static void resize_columns(const float *tmp, uint32_t dst_w, uint32_t c, const resize_taps *ty, uint32_t dst_h,
                           uint8_t *dst)
{
    size_t row_len = (size_t)dst_w * c;
    for (uint32_t y = 0; y < dst_h; y++) {
        const float *w = ty->weights + (size_t)y * ty->stride;
        const float *base = tmp + (size_t)ty->first[y] * row_len;
        uint8_t *o = dst + (size_t)y * row_len;
        for (size_t i = 0; i < row_len; i++) {
            float acc = 0.0f;
            for (int k = 0; k < ty->count[y]; k++)
                acc += w[k] * base[(size_t)k * row_len + i];
            o[i] = to_u8(acc);
        }
    }
}

static bool side_ok(uint32_t side)
{
    return side >= 1 && side <= KELP_IMAGE_MAX_SIDE;
}

kelp_status kelp_image_resize(const uint8_t *src, uint32_t src_h, uint32_t src_w, uint32_t c, uint8_t *dst,
                              uint32_t dst_h, uint32_t dst_w)
{
    if (!src || !dst || c < 1 || c > KELP_DATASET_MAX_CHANNELS || !side_ok(src_h) || !side_ok(src_w) ||
        !side_ok(dst_h) || !side_ok(dst_w))
        return kelp_set_error(KELP_ERR_INVALID_ARG,
                              "resize: bad arguments (%" PRIu32 " x %" PRIu32 " x %" PRIu32 " to %" PRIu32
                              " x %" PRIu32 "; sides 1 to %d, 1 to %d channels)",
                              src_h, src_w, c, dst_h, dst_w, KELP_IMAGE_MAX_SIDE, KELP_DATASET_MAX_CHANNELS);
    resize_taps tx = {0}, ty = {0};
    float *tmp = NULL;
    kelp_status s = taps_make(src_w, dst_w, &tx);
    if (s == KELP_OK)
        s = taps_make(src_h, dst_h, &ty);
    if (s == KELP_OK && !(tmp = malloc((size_t)src_h * dst_w * c * sizeof *tmp)))
        s = kelp_set_error(KELP_ERR_NO_MEMORY, "resize: out of memory for %" PRIu32 " x %" PRIu32 " x %" PRIu32
                                               " intermediate values",
                           src_h, dst_w, c);
    if (s == KELP_OK) {
        resize_rows(src, src_h, src_w, c, &tx, dst_w, tmp);
        resize_columns(tmp, dst_w, c, &ty, dst_h, dst);
    }
    free(tmp);
    taps_free(&tx);
    taps_free(&ty);
    return s;
}
