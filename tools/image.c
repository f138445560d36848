/* kiln command line: image inputs. PNG (libpng) and JPEG (libjpeg-turbo) files are
 * decoded to 8-bit RGB, resized bilinearly to the input's height x width and written as
 * planar float32 with the chosen preprocessing. Decoders fail with a message, never by
 * exiting (libjpeg's default error handler would). */
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifdef KILN_CLI_HAVE_PNG
#include <png.h>
#endif
#ifdef KILN_CLI_HAVE_JPEG
#include <jpeglib.h>
#endif

bool cli_parse_preprocess(const cli *c, const char *s, preprocess *out) {
    if (strcmp(s, "imagenet") == 0) *out = PRE_IMAGENET;
    else if (strcmp(s, "unit") == 0) *out = PRE_UNIT;
    else if (strcmp(s, "none") == 0) *out = PRE_NONE;
    else {
        cli_usage(c, "--preprocess: '%s' is not imagenet, unit or none", s);
        return false;
    }
    return true;
}

typedef enum { IMG_PNG, IMG_JPEG, IMG_OTHER } img_format;

static img_format sniff(const uint8_t *b, size_t n) {
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) return IMG_PNG;
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return IMG_JPEG;
    return IMG_OTHER;
}

#ifdef KILN_CLI_HAVE_JPEG
typedef struct jpeg_err {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_fail(j_common_ptr info) {
    jpeg_err *e = (jpeg_err *)info->err;
    (*info->err->format_message)(info, e->msg);
    longjmp(e->jump, 1);
}

static void jpeg_quiet(j_common_ptr info, int level) { (void)info, (void)level; } /* warnings: ignore */
#endif

/* Decodes to RGB8 (w*h*3, malloc). size_only: only *w and *h. */
static bool decode(const uint8_t *data, size_t size, bool size_only, uint8_t **rgb, int64_t *w, int64_t *h, char *err,
                   size_t errsz) {
    *rgb = NULL;
    switch (sniff(data, size)) {
    case IMG_PNG: {
#ifdef KILN_CLI_HAVE_PNG
        png_image img;
        memset(&img, 0, sizeof img);
        img.version = PNG_IMAGE_VERSION;
        if (!png_image_begin_read_from_memory(&img, data, size)) {
            snprintf(err, errsz, "bad PNG: %s", img.message);
            return false;
        }
        *w = img.width;
        *h = img.height;
        if (size_only) {
            png_image_free(&img);
            return true;
        }
        img.format = PNG_FORMAT_RGB;
        size_t bytes = PNG_IMAGE_SIZE(img);
        uint8_t *buf = malloc(bytes ? bytes : 1);
        if (!buf) {
            png_image_free(&img);
            snprintf(err, errsz, "out of memory (%zu bytes)", bytes);
            return false;
        }
        if (!png_image_finish_read(&img, NULL, buf, 0, NULL)) {
            snprintf(err, errsz, "bad PNG: %s", img.message);
            free(buf);
            png_image_free(&img);
            return false;
        }
        *rgb = buf;
        return true;
#else
        snprintf(err, errsz, "is a PNG, but this kiln was built without libpng");
        return false;
#endif
    }
    case IMG_JPEG: {
#ifdef KILN_CLI_HAVE_JPEG
        struct jpeg_decompress_struct info;
        jpeg_err je;
        uint8_t *volatile buf = NULL;
        memset(&info, 0, sizeof info);
        info.err = jpeg_std_error(&je.mgr);
        je.mgr.error_exit = jpeg_fail;
        je.mgr.emit_message = jpeg_quiet;
        if (setjmp(je.jump)) {
            snprintf(err, errsz, "bad JPEG: %s", je.msg);
            jpeg_destroy_decompress(&info);
            free(buf);
            return false;
        }
        jpeg_create_decompress(&info);
        jpeg_mem_src(&info, data, (unsigned long)size);
        jpeg_read_header(&info, TRUE);
        *w = info.image_width;
        *h = info.image_height;
        if (size_only) {
            jpeg_destroy_decompress(&info);
            return true;
        }
        info.out_color_space = JCS_RGB;
        jpeg_start_decompress(&info);
        size_t stride = (size_t)info.output_width * 3;
        buf = malloc(stride * info.output_height + 1);
        if (!buf) {
            jpeg_destroy_decompress(&info);
            snprintf(err, errsz, "out of memory");
            return false;
        }
        while (info.output_scanline < info.output_height) {
            JSAMPROW row = buf + (size_t)info.output_scanline * stride;
            jpeg_read_scanlines(&info, &row, 1);
        }
        jpeg_finish_decompress(&info);
        jpeg_destroy_decompress(&info);
        *rgb = buf;
        return true;
#else
        snprintf(err, errsz, "is a JPEG, but this kiln was built without libjpeg");
        return false;
#endif
    }
    default: snprintf(err, errsz, "not a PNG or JPEG image"); return false;
    }
}

bool image_support(const char *path, char *err, size_t errsz) {
    (void)path;
#if defined(KILN_CLI_HAVE_PNG) || defined(KILN_CLI_HAVE_JPEG)
    (void)err, (void)errsz;
    return true;
#else
    snprintf(err, errsz, "this kiln was built without libpng and libjpeg: image inputs are not available");
    return false;
#endif
}

bool image_size(const char *path, int64_t *width, int64_t *height, char *err, size_t errsz) {
    uint8_t *data, *rgb;
    size_t size;
    if (!cli_read_file(path, &data, &size, err, errsz)) return false;
    bool ok = decode(data, size, true, &rgb, width, height, err, errsz);
    free(data);
    return ok;
}

bool image_load(const char *path, int channels, int64_t oh, int64_t ow, preprocess pre, float *out, char *err,
                size_t errsz) {
    uint8_t *data, *rgb;
    size_t size;
    int64_t w, h;
    if (!cli_read_file(path, &data, &size, err, errsz)) return false;
    bool ok = decode(data, size, false, &rgb, &w, &h, err, errsz);
    free(data);
    if (!ok) return false;
    if (w <= 0 || h <= 0) {
        free(rgb);
        snprintf(err, errsz, "the image is empty");
        return false;
    }
    static const double mean[3] = {0.485, 0.456, 0.406}, stdv[3] = {0.229, 0.224, 0.225};
    double sy = (double)h / (double)oh, sx = (double)w / (double)ow;
    for (int64_t y = 0; y < oh; y++) {
        /* half-pixel centres, clamped to the edge (OpenCV INTER_LINEAR, ONNX Resize
         * linear half_pixel): equal sizes reproduce the image exactly */
        double fy = ((double)y + 0.5) * sy - 0.5;
        if (fy < 0) fy = 0;
        if (fy > (double)(h - 1)) fy = (double)(h - 1);
        int64_t y0 = (int64_t)fy, y1 = y0 + 1 < h ? y0 + 1 : h - 1;
        double wy = fy - (double)y0;
        for (int64_t x = 0; x < ow; x++) {
            double fx = ((double)x + 0.5) * sx - 0.5;
            if (fx < 0) fx = 0;
            if (fx > (double)(w - 1)) fx = (double)(w - 1);
            int64_t x0 = (int64_t)fx, x1 = x0 + 1 < w ? x0 + 1 : w - 1;
            double wx = fx - (double)x0;
            double px[3];
            for (int ch = 0; ch < 3; ch++) {
                double a = rgb[(y0 * w + x0) * 3 + ch], b = rgb[(y0 * w + x1) * 3 + ch];
                double cc = rgb[(y1 * w + x0) * 3 + ch], d = rgb[(y1 * w + x1) * 3 + ch];
                px[ch] = (a * (1 - wx) + b * wx) * (1 - wy) + (cc * (1 - wx) + d * wx) * wy;
            }
            for (int ch = 0; ch < channels; ch++) {
                /* one channel: ITU-R BT.601 luma; ImageNet statistics averaged */
                double v = channels == 1 ? 0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2] : px[ch];
                double m = channels == 1 ? 0.449 : mean[ch], s = channels == 1 ? 0.226 : stdv[ch];
                if (pre == PRE_UNIT) v /= 255.0;
                else if (pre == PRE_IMAGENET) v = (v / 255.0 - m) / s;
                out[((int64_t)ch * oh + y) * ow + x] = (float)v;
            }
        }
    }
    free(rgb);
    return true;
}
