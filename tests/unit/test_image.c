/* io/image: PNG and JPEG decoding to 1 or 3 channels, hostile files turned into errors that name the file, the
 * decompression-bomb cap, PNG encoding and the antialiased resize. Fixtures are made here: PNGs with kelp's encoder
 * or, for the variants it does not write (palette, 16-bit, 1-bit, interlaced), with libpng directly; JPEGs with
 * libjpeg. */
#include <fcntl.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <jpeglib.h>

#include "io/image.h"
#include "ref/test_util.h"

/* ---- fixture helpers ---- */

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *read_bytes(const char *path, size_t *n)
{
    uint8_t *data;
    TEST_OK(kelp_image_read_file(path, &data, n));
    return data;
}

typedef struct raw_png {
    uint32_t w, h;
    int bit_depth, color_type, interlace;
    const png_color *palette;
    int palette_len;
    const png_byte *trans; /* palette alpha */
    int trans_len;
    const uint8_t *rows; /* packed rows of png_get_rowbytes size */
    size_t row_bytes;
} raw_png;

/* libpng with its default handlers: a failure here is a broken test, and aborting is fine. */
static void write_raw_png(const char *path, const raw_png *r)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_non_null(info);
    png_init_io(png, f);
    png_set_IHDR(png, info, r->w, r->h, r->bit_depth, r->color_type, r->interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (r->palette)
        png_set_PLTE(png, info, r->palette, r->palette_len);
    if (r->trans)
        png_set_tRNS(png, info, r->trans, r->trans_len, NULL);
    png_write_info(png, info);
    png_bytep *rows = malloc(r->h * sizeof *rows);
    for (uint32_t y = 0; y < r->h; y++)
        rows[y] = (png_bytep)(r->rows + y * r->row_bytes);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *make_jpeg(const uint8_t *pixels, uint32_t h, uint32_t w, int c, int quality, size_t *size)
{
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr err;
    cinfo.err = jpeg_std_error(&err);
    jpeg_create_compress(&cinfo);
    unsigned char *out = NULL;
    unsigned long out_size = 0;
    jpeg_mem_dest(&cinfo, &out, &out_size);
    cinfo.image_width = w;
    cinfo.image_height = h;
    cinfo.input_components = c;
    cinfo.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < h) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * w * c);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *size = out_size;
    return out;
}

/* Smooth content, so that a high-quality JPEG stays close to it. */
static uint8_t *gradient(uint32_t h, uint32_t w, int c)
{
    uint8_t *p = malloc((size_t)h * w * c);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++)
                p[((size_t)y * w + x) * c + ch] = (uint8_t)(40 + 3 * x + 2 * y + 50 * ch);
    return p;
}

static uint8_t *random_pixels(size_t n, uint64_t seed)
{
    uint8_t *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)test_rand_u64(&seed);
    return p;
}

static uint8_t luma(const uint8_t *rgb)
{
    return (uint8_t)((299 * rgb[0] + 587 * rgb[1] + 114 * rgb[2] + 500) / 1000);
}

static void assert_max_diff(const uint8_t *got, const uint8_t *want, size_t n, int tolerance)
{
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)got[i] - (int)want[i]);
        if (d > tolerance)
            fail_msg("pixel byte %zu: got %d, want %d (tolerance %d)", i, got[i], want[i], tolerance);
    }
}

/* ---- PNG ---- */

static void test_png_round_trip_gray_and_rgb(void **state)
{
    (void)state;
    for (uint32_t c = 1; c <= 3; c += 2) {
        uint8_t *pixels = random_pixels(7 * 5 * c, 11 + c);
        uint8_t *png;
        size_t size;
        TEST_OK(kelp_image_encode_png(pixels, 7, 5, c, &png, &size));
        assert_int_equal(kelp_image_sniff(png, size), KELP_IMAGE_PNG);

        kelp_image_header hdr;
        TEST_OK(kelp_image_probe_memory(png, size, "mem.png", &hdr));
        assert_int_equal(hdr.h, 7);
        assert_int_equal(hdr.w, 5);
        assert_int_equal(hdr.color, c == 3);

        kelp_image img;
        TEST_OK(kelp_image_decode_memory(png, size, "mem.png", 0, &img));
        assert_int_equal(img.h, 7);
        assert_int_equal(img.w, 5);
        assert_int_equal(img.c, c);
        assert_memory_equal(img.pixels, pixels, 7 * 5 * c);
        kelp_image_free(&img);
        free(png);
        free(pixels);
    }
}

static void test_channel_conversion(void **state)
{
    (void)state;
    uint8_t *gray = random_pixels(4 * 6, 3), *rgb = random_pixels(4 * 6 * 3, 4);
    uint8_t *png;
    size_t size;
    kelp_image img;

    TEST_OK(kelp_image_encode_png(gray, 4, 6, 1, &png, &size));
    TEST_OK(kelp_image_decode_memory(png, size, "gray.png", 3, &img));
    assert_int_equal(img.c, 3);
    for (int i = 0; i < 24; i++)
        for (int ch = 0; ch < 3; ch++)
            assert_int_equal(img.pixels[3 * i + ch], gray[i]);
    kelp_image_free(&img);
    free(png);

    TEST_OK(kelp_image_encode_png(rgb, 4, 6, 3, &png, &size));
    TEST_OK(kelp_image_decode_memory(png, size, "rgb.png", 1, &img));
    assert_int_equal(img.c, 1);
    for (int i = 0; i < 24; i++)
        assert_int_equal(img.pixels[i], luma(rgb + 3 * i));
    kelp_image_free(&img);
    TEST_FAILS_WITH(kelp_image_decode_memory(png, size, "rgb.png", 2, &img), KELP_ERR_INVALID_ARG, "rgb.png");
    assert_null(img.pixels);
    free(png);
    free(gray);
    free(rgb);
}

static void test_alpha_is_dropped(void **state)
{
    (void)state;
    uint8_t ga[3 * 2 * 2], rgba[3 * 2 * 4];
    for (int i = 0; i < 6; i++) {
        ga[2 * i] = (uint8_t)(10 * i);
        ga[2 * i + 1] = (uint8_t)(i * 40); /* alpha 0 on the first pixel: its value is kept anyway */
        for (int ch = 0; ch < 4; ch++)
            rgba[4 * i + ch] = (uint8_t)(20 * i + ch);
    }
    uint8_t *png;
    size_t size;
    kelp_image img;
    TEST_OK(kelp_image_encode_png(ga, 3, 2, 2, &png, &size));
    TEST_OK(kelp_image_decode_memory(png, size, "ga.png", 0, &img));
    assert_int_equal(img.c, 1);
    for (int i = 0; i < 6; i++)
        assert_int_equal(img.pixels[i], ga[2 * i]);
    kelp_image_free(&img);
    free(png);

    TEST_OK(kelp_image_encode_png(rgba, 3, 2, 4, &png, &size));
    TEST_OK(kelp_image_decode_memory(png, size, "rgba.png", 0, &img));
    assert_int_equal(img.c, 3);
    for (int i = 0; i < 6; i++)
        for (int ch = 0; ch < 3; ch++)
            assert_int_equal(img.pixels[3 * i + ch], rgba[4 * i + ch]);
    kelp_image_free(&img);
    free(png);
}

static void test_palette_png_with_transparency(void **state)
{
    (void)state;
    const png_color palette[3] = {{255, 0, 0}, {0, 128, 0}, {10, 20, 30}};
    const png_byte trans[1] = {0};
    const uint8_t indices[2 * 3] = {0, 1, 2, 2, 1, 0};
    raw_png r = {.w = 3, .h = 2, .bit_depth = 8, .color_type = PNG_COLOR_TYPE_PALETTE, .palette = palette,
                 .palette_len = 3, .trans = trans, .trans_len = 1, .rows = indices, .row_bytes = 3};
    const char *path = test_temp_path(".png");
    write_raw_png(path, &r);

    kelp_image img;
    TEST_OK(kelp_image_decode_file(path, 0, &img));
    assert_int_equal(img.c, 3);
    for (int i = 0; i < 6; i++) {
        const png_color *want = &palette[indices[i]];
        assert_int_equal(img.pixels[3 * i], want->red);
        assert_int_equal(img.pixels[3 * i + 1], want->green);
        assert_int_equal(img.pixels[3 * i + 2], want->blue);
    }
    kelp_image_free(&img);
    TEST_OK(kelp_image_decode_file(path, 1, &img));
    assert_int_equal(img.c, 1);
    assert_int_equal(img.pixels[0], (299 * 255 + 500) / 1000);
    kelp_image_free(&img);
    remove(path);
}

static void test_16_bit_png_scales_to_8_bits(void **state)
{
    (void)state;
    enum { W = 4, H = 3 };
    uint8_t rows[H * W * 3 * 2];
    uint8_t want[H * W * 3];
    for (int i = 0; i < H * W * 3; i++) {
        int k = (i * 23) % 256;
        int v = k * 257 + (k % 3 - 1) * 50; /* within 128 of k * 257: rounds to k */
        v = v < 0 ? 0 : v > 65535 ? 65535 : v;
        rows[2 * i] = (uint8_t)(v >> 8); /* PNG samples are big-endian */
        rows[2 * i + 1] = (uint8_t)v;
        want[i] = (uint8_t)k;
    }
    raw_png r = {.w = W, .h = H, .bit_depth = 16, .color_type = PNG_COLOR_TYPE_RGB, .rows = rows,
                 .row_bytes = W * 3 * 2};
    const char *path = test_temp_path(".png");
    write_raw_png(path, &r);
    kelp_image img;
    TEST_OK(kelp_image_decode_file(path, 0, &img));
    assert_int_equal(img.c, 3);
    assert_memory_equal(img.pixels, want, sizeof want);
    kelp_image_free(&img);
    remove(path);
}

static void test_1_bit_gray_and_interlaced_png(void **state)
{
    (void)state;
    /* 10 pixels per row at 1 bit: 2 bytes, the last 6 bits padding. */
    const uint8_t bits[2 * 2] = {0xA5, 0xC0, 0x0F, 0x00};
    raw_png r = {.w = 10, .h = 2, .bit_depth = 1, .color_type = PNG_COLOR_TYPE_GRAY, .rows = bits, .row_bytes = 2};
    const char *path = test_temp_path(".png");
    write_raw_png(path, &r);
    kelp_image img;
    TEST_OK(kelp_image_decode_file(path, 0, &img));
    assert_int_equal(img.c, 1);
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 10; x++) {
            int bit = (bits[2 * y + x / 8] >> (7 - x % 8)) & 1;
            assert_int_equal(img.pixels[y * 10 + x], bit ? 255 : 0);
        }
    kelp_image_free(&img);

    enum { W = 13, H = 11 };
    uint8_t *rgb = random_pixels(W * H * 3, 9);
    raw_png adam7 = {.w = W, .h = H, .bit_depth = 8, .color_type = PNG_COLOR_TYPE_RGB,
                     .interlace = PNG_INTERLACE_ADAM7, .rows = rgb, .row_bytes = W * 3};
    write_raw_png(path, &adam7);
    TEST_OK(kelp_image_decode_file(path, 0, &img));
    assert_memory_equal(img.pixels, rgb, W * H * 3);
    kelp_image_free(&img);
    free(rgb);
    remove(path);
}

/* ---- JPEG ---- */

static void test_jpeg_rgb_and_gray(void **state)
{
    (void)state;
    enum { W = 24, H = 16 };
    uint8_t *rgb = gradient(H, W, 3), *gray = gradient(H, W, 1);
    size_t size;
    uint8_t *jpg = make_jpeg(rgb, H, W, 3, 100, &size);
    assert_int_equal(kelp_image_sniff(jpg, size), KELP_IMAGE_JPEG);
    kelp_image_header hdr;
    TEST_OK(kelp_image_probe_memory(jpg, size, "rgb.jpg", &hdr));
    assert_int_equal(hdr.format, KELP_IMAGE_JPEG);
    assert_int_equal(hdr.h, H);
    assert_int_equal(hdr.w, W);
    assert_true(hdr.color);
    kelp_image img;
    TEST_OK(kelp_image_decode_memory(jpg, size, "rgb.jpg", 0, &img));
    assert_int_equal(img.h, H);
    assert_int_equal(img.w, W);
    assert_int_equal(img.c, 3);
    assert_max_diff(img.pixels, rgb, W * H * 3, 6);
    kelp_image_free(&img);
    free(jpg);

    jpg = make_jpeg(gray, H, W, 1, 100, &size);
    TEST_OK(kelp_image_probe_memory(jpg, size, "gray.jpg", &hdr));
    assert_false(hdr.color);
    TEST_OK(kelp_image_decode_memory(jpg, size, "gray.jpg", 0, &img));
    assert_int_equal(img.c, 1);
    assert_max_diff(img.pixels, gray, W * H, 3);
    kelp_image_free(&img);
    TEST_OK(kelp_image_decode_memory(jpg, size, "gray.jpg", 3, &img));
    assert_int_equal(img.c, 3);
    for (int i = 0; i < W * H; i++) {
        assert_int_equal(img.pixels[3 * i], img.pixels[3 * i + 1]);
        assert_int_equal(img.pixels[3 * i], img.pixels[3 * i + 2]);
        assert_in_range(img.pixels[3 * i], gray[i] - 3, gray[i] + 3);
    }
    kelp_image_free(&img);
    free(jpg);
    free(rgb);
    free(gray);
}

static void test_format_comes_from_the_bytes_not_the_name(void **state)
{
    (void)state;
    uint8_t *pixels = random_pixels(3 * 3, 5);
    const char *path = test_temp_path(".jpg");
    TEST_OK(kelp_image_write_png(path, pixels, 3, 3, 1));
    kelp_image img;
    TEST_OK(kelp_image_decode_file(path, 0, &img));
    assert_memory_equal(img.pixels, pixels, 9);
    kelp_image_free(&img);

    size_t size;
    uint8_t *jpg = make_jpeg(pixels, 3, 3, 1, 90, &size);
    const char *png_named = test_temp_path(".png");
    write_bytes(png_named, jpg, size);
    TEST_OK(kelp_image_decode_file(png_named, 0, &img));
    assert_int_equal(img.h, 3);
    kelp_image_free(&img);

    /* what a folder import or a predict over a directory reads before deciding whether a file is an image */
    kelp_image_format format;
    TEST_OK(kelp_image_sniff_file(path, &format));
    assert_int_equal(format, KELP_IMAGE_PNG);
    TEST_OK(kelp_image_sniff_file(png_named, &format));
    assert_int_equal(format, KELP_IMAGE_JPEG);
    write_bytes(path, "text", 4);
    TEST_OK(kelp_image_sniff_file(path, &format));
    assert_int_equal(format, KELP_IMAGE_UNKNOWN);
    TEST_FAILS_WITH(kelp_image_sniff_file("/nonexistent/x.png", &format), KELP_ERR_IO, "/nonexistent/x.png");
    assert_true(kelp_image_has_extension("a.png") && kelp_image_has_extension("my photo 7.JPG") &&
                kelp_image_has_extension("b.Jpeg"));
    assert_false(kelp_image_has_extension("README.txt") || kelp_image_has_extension(".png") ||
                 kelp_image_has_extension("png") || kelp_image_has_extension("a.png.txt"));
    free(jpg);
    free(pixels);
    remove(path);
    remove(png_named);
}

/* ---- hostile and broken files ---- */

static void test_empty_and_non_image_files(void **state)
{
    (void)state;
    const char *path = test_temp_path(".png");
    kelp_image img;
    write_bytes(path, "", 0);
    TEST_FAILS_WITH(kelp_image_decode_file(path, 0, &img), KELP_ERR_FORMAT, "empty file");
    assert_null(img.pixels);
    assert_non_null(strstr(kelp_last_error(), path));

    write_bytes(path, "<!doctype html><p>not found", 27);
    TEST_FAILS_WITH(kelp_image_decode_file(path, 0, &img), KELP_ERR_FORMAT, "not a PNG or JPEG image");
    assert_non_null(strstr(kelp_last_error(), "3c 21 64 6f"));
    assert_int_equal(kelp_image_sniff("\x89PN", 3), KELP_IMAGE_UNKNOWN);

    TEST_FAILS_WITH(kelp_image_decode_file("/nonexistent/x.png", 0, &img), KELP_ERR_IO, "/nonexistent/x.png");
    TEST_FAILS_WITH(kelp_image_decode_file("/tmp", 0, &img), KELP_ERR_IO, "not a regular file");
    remove(path);
}

static void test_truncated_png_and_jpeg(void **state)
{
    (void)state;
    enum { W = 32, H = 32 };
    uint8_t *pixels = random_pixels(W * H * 3, 21);
    uint8_t *png;
    size_t png_size, jpg_size;
    TEST_OK(kelp_image_encode_png(pixels, H, W, 3, &png, &png_size));
    uint8_t *jpg = make_jpeg(pixels, H, W, 3, 90, &jpg_size);
    kelp_image img;
    /* Cut inside the header, inside the pixel data, and just before the end. */
    const double cuts[] = {0.02, 0.5, 0.97};
    for (int i = 0; i < 3; i++) {
        size_t n = (size_t)(png_size * cuts[i]);
        TEST_FAILS_WITH(kelp_image_decode_memory(png, n, "cut.png", 0, &img), KELP_ERR_FORMAT, "cut.png");
        assert_null(img.pixels);
        n = (size_t)(jpg_size * cuts[i]);
        TEST_FAILS_WITH(kelp_image_decode_memory(jpg, n, "cut.jpg", 0, &img), KELP_ERR_FORMAT, "cut.jpg");
        assert_null(img.pixels);
    }
    /* Flipped bits in the compressed pixels: the IDAT CRC no longer matches. */
    png[png_size / 2] ^= 0x55;
    TEST_FAILS_WITH(kelp_image_decode_memory(png, png_size, "flipped.png", 0, &img), KELP_ERR_FORMAT,
                    "corrupt PNG");
    free(png);
    free(jpg);
    free(pixels);
}

/* A valid PNG signature and IHDR (with a correct CRC) that declares w x h, followed by nothing. */
static size_t png_header_only(uint8_t out[33], uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(out, sig, 8);
    uint8_t *chunk = out + 8;
    const uint8_t ihdr[8 + 13] = {0, 0, 0, 13, 'I', 'H', 'D', 'R', (uint8_t)(w >> 24), (uint8_t)(w >> 16),
                                  (uint8_t)(w >> 8), (uint8_t)w, (uint8_t)(h >> 24), (uint8_t)(h >> 16),
                                  (uint8_t)(h >> 8), (uint8_t)h, 8, 2, 0, 0, 0};
    memcpy(chunk, ihdr, sizeof ihdr);
    uint32_t crc = (uint32_t)crc32(0, chunk + 4, 4 + 13);
    uint8_t *c = chunk + sizeof ihdr;
    c[0] = (uint8_t)(crc >> 24);
    c[1] = (uint8_t)(crc >> 16);
    c[2] = (uint8_t)(crc >> 8);
    c[3] = (uint8_t)crc;
    return 33;
}

static void test_decompression_bomb_is_refused_from_the_header(void **state)
{
    (void)state;
    uint8_t bomb[33];
    size_t n = png_header_only(bomb, 100000, 100000);
    const char *path = test_temp_path("-bomb.png");
    write_bytes(path, bomb, n);
    kelp_image img;
    kelp_image_header hdr;
    TEST_FAILS_WITH(kelp_image_decode_file(path, 0, &img), KELP_ERR_NO_MEMORY, "declares 100000 x 100000 pixels");
    assert_non_null(strstr(kelp_last_error(), path));
    assert_null(img.pixels);
    TEST_FAILS_WITH(kelp_image_probe_memory(bomb, n, "bomb.png", &hdr), KELP_ERR_NO_MEMORY, "before decoding");
    n = png_header_only(bomb, 16385, 1);
    TEST_FAILS_WITH(kelp_image_probe_memory(bomb, n, "wide.png", &hdr), KELP_ERR_NO_MEMORY, "1 x 16385");
    n = png_header_only(bomb, 0, 5);
    TEST_FAILS_WITH(kelp_image_probe_memory(bomb, n, "empty.png", &hdr), KELP_ERR_FORMAT, "empty image");
    /* Within the caps, the same header only fails when the missing pixel data is reached. */
    n = png_header_only(bomb, 64, 64);
    TEST_OK(kelp_image_probe_memory(bomb, n, "ok.png", &hdr));
    TEST_FAILS_WITH(kelp_image_decode_memory(bomb, n, "ok.png", 0, &img), KELP_ERR_FORMAT, "truncated");

    /* JPEG: the size lives in the SOF marker (FF C0, length, precision, height, width). */
    uint8_t *pixels = gradient(8, 8, 3);
    size_t size;
    uint8_t *jpg = make_jpeg(pixels, 8, 8, 3, 90, &size);
    size_t sof = 2;
    while (sof + 9 < size && !(jpg[sof] == 0xFF && jpg[sof + 1] == 0xC0))
        sof++;
    assert_true(sof + 9 < size);
    jpg[sof + 5] = jpg[sof + 7] = 0xEA; /* 0xEA60 = 60000 */
    jpg[sof + 6] = jpg[sof + 8] = 0x60;
    TEST_FAILS_WITH(kelp_image_decode_memory(jpg, size, "bomb.jpg", 0, &img), KELP_ERR_NO_MEMORY,
                    "declares 60000 x 60000 pixels");
    assert_non_null(strstr(kelp_last_error(), "bomb.jpg"));
    free(jpg);
    free(pixels);
    remove(path);
}

/* The codecs' own message printers are replaced: a corrupt file must say nothing on stderr. */
static void test_codec_messages_are_never_printed(void **state)
{
    (void)state;
    uint8_t *pixels = gradient(16, 16, 3);
    size_t size;
    uint8_t *jpg = make_jpeg(pixels, 16, 16, 3, 90, &size);
    uint8_t *png;
    size_t png_size;
    TEST_OK(kelp_image_encode_png(pixels, 16, 16, 3, &png, &png_size));
    png[png_size / 2] ^= 0x55;

    const char *capture = test_temp_path(".stderr");
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int fd = open(capture, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, STDERR_FILENO);
    close(fd);
    kelp_image img;
    kelp_status s_jpg = kelp_image_decode_memory(jpg, size - 10, "cut.jpg", 0, &img);
    kelp_status s_png = kelp_image_decode_memory(png, png_size, "flipped.png", 0, &img);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);

    assert_int_equal(s_jpg, KELP_ERR_FORMAT);
    assert_int_equal(s_png, KELP_ERR_FORMAT);
    struct stat st;
    assert_int_equal(stat(capture, &st), 0);
    assert_int_equal(st.st_size, 0);
    remove(capture);
    free(png);
    free(jpg);
    free(pixels);
}

/* ---- encoding ---- */

static void test_write_png_replaces_the_file(void **state)
{
    (void)state;
    const char *path = test_temp_path(".png");
    write_bytes(path, "old", 3);
    uint8_t *pixels = random_pixels(5 * 4 * 3, 8);
    TEST_OK(kelp_image_write_png(path, pixels, 5, 4, 3));
    size_t n;
    uint8_t *data = read_bytes(path, &n);
    kelp_image img;
    TEST_OK(kelp_image_decode_memory(data, n, path, 0, &img));
    assert_memory_equal(img.pixels, pixels, 60);
    kelp_image_free(&img);
    free(data);

    uint8_t *png;
    size_t size;
    TEST_FAILS_WITH(kelp_image_encode_png(pixels, 5, 4, 5, &png, &size), KELP_ERR_INVALID_ARG, "channels");
    assert_null(png);
    TEST_FAILS_WITH(kelp_image_write_png("/nonexistent-dir/x.png", pixels, 5, 4, 3), KELP_ERR_IO,
                    "/nonexistent-dir/x.png");
    free(pixels);
    remove(path);
}

/* ---- resize ---- */

static void test_resize_upscale_is_bilinear_on_pixel_centres(void **state)
{
    (void)state;
    const uint8_t src[2] = {0, 255};
    uint8_t dst[4];
    TEST_OK(kelp_image_resize(src, 1, 2, 1, dst, 1, 4));
    /* Output centres 0.25, 0.75, 1.25, 1.75 in input pixels; the outer two clamp to the edge pixels. */
    const uint8_t want[4] = {0, 64, 191, 255};
    assert_memory_equal(dst, want, 4);

    const uint8_t square[2 * 2] = {0, 100, 200, 40};
    uint8_t big[4 * 4];
    TEST_OK(kelp_image_resize(square, 2, 2, 1, big, 4, 4));
    assert_int_equal(big[0], 0);
    assert_int_equal(big[3], 100);
    assert_int_equal(big[12], 200);
    assert_int_equal(big[15], 40);
    /* (1,1): 0.75 * 0.75 of pixel (0,0), 0.75 * 0.25 of (0,1) and (1,0), 0.25 * 0.25 of (1,1). */
    assert_int_equal(big[5], (int)(0.5625 * 0 + 0.1875 * 100 + 0.1875 * 200 + 0.0625 * 40 + 0.5));
}

static void test_resize_keeps_constants_and_identity(void **state)
{
    (void)state;
    uint8_t src[9 * 7 * 3], dst[20 * 3 * 3];
    memset(src, 77, sizeof src);
    TEST_OK(kelp_image_resize(src, 9, 7, 3, dst, 20, 3));
    for (size_t i = 0; i < sizeof dst; i++)
        assert_int_equal(dst[i], 77);

    uint8_t *noise = random_pixels(9 * 7 * 3, 2), same[9 * 7 * 3];
    TEST_OK(kelp_image_resize(noise, 9, 7, 3, same, 9, 7));
    assert_memory_equal(same, noise, sizeof same);
    free(noise);
}

static void test_resize_downscale_is_antialiased(void **state)
{
    (void)state;
    enum { N = 16, M = 4 };
    /* A one-pixel checkerboard: point sampling would return pure 0 or 255; a filter as wide as the scale averages. */
    uint8_t checker[N * N], small[M * M];
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++)
            checker[y * N + x] = (uint8_t)(((x + y) & 1) * 255);
    TEST_OK(kelp_image_resize(checker, N, N, 1, small, M, M));
    for (int y = 1; y < M - 1; y++)
        for (int x = 1; x < M - 1; x++)
            assert_in_range(small[y * M + x], 126, 129);

    /* A linear ramp (pixel i holds 16 (i + 0.5)) keeps its value at each output centre where no tap is clipped. */
    uint8_t ramp[N], ramp_small[M];
    for (int i = 0; i < N; i++)
        ramp[i] = (uint8_t)(16 * i + 8);
    TEST_OK(kelp_image_resize(ramp, 1, N, 1, ramp_small, 1, M));
    assert_int_equal(ramp_small[1], 96);
    assert_int_equal(ramp_small[2], 160);
}

static void test_resize_rejects_bad_arguments(void **state)
{
    (void)state;
    uint8_t px[4] = {0};
    TEST_FAILS_WITH(kelp_image_resize(px, 0, 2, 1, px, 1, 1), KELP_ERR_INVALID_ARG, "resize");
    TEST_FAILS_WITH(kelp_image_resize(px, 1, 1, 5, px, 1, 1), KELP_ERR_INVALID_ARG, "resize");
    TEST_FAILS_WITH(kelp_image_resize(px, 1, 1, 1, px, 16385, 1), KELP_ERR_INVALID_ARG, "resize");
    TEST_FAILS_WITH(kelp_image_resize(NULL, 1, 1, 1, px, 1, 1), KELP_ERR_INVALID_ARG, "resize");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_round_trip_gray_and_rgb),
        cmocka_unit_test(test_channel_conversion),
        cmocka_unit_test(test_alpha_is_dropped),
        cmocka_unit_test(test_palette_png_with_transparency),
        cmocka_unit_test(test_16_bit_png_scales_to_8_bits),
        cmocka_unit_test(test_1_bit_gray_and_interlaced_png),
        cmocka_unit_test(test_jpeg_rgb_and_gray),
        cmocka_unit_test(test_format_comes_from_the_bytes_not_the_name),
        cmocka_unit_test(test_empty_and_non_image_files),
        cmocka_unit_test(test_truncated_png_and_jpeg),
        cmocka_unit_test(test_decompression_bomb_is_refused_from_the_header),
        cmocka_unit_test(test_codec_messages_are_never_printed),
        cmocka_unit_test(test_write_png_replaces_the_file),
        cmocka_unit_test(test_resize_upscale_is_bilinear_on_pixel_centres),
        cmocka_unit_test(test_resize_keeps_constants_and_identity),
        cmocka_unit_test(test_resize_downscale_is_antialiased),
        cmocka_unit_test(test_resize_rejects_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
