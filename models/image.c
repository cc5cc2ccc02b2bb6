/* Image decoding: the entry point that sniffs the format, and JPEG
 * (libjpeg-turbo), PNG (libpng) and WebP (libwebp) from memory to 8-bit
 * RGB, with the EXIF orientation (libexif) applied. TIFF, GIF, BMP, HEIC
 * and AVIF live in models/vision/decode_*.c.
 * Conversions follow PIL's Image.convert("RGB"): alpha is dropped, palette
 * entries looked up, CMYK/YCCK JPEG read as Adobe-inverted CMYK. Every
 * library error unwinds through setjmp/longjmp; nothing here exits. */
#include "models/image.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <libexif/exif-data.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/demux.h>

#include "common/error.h"
#include "models/vision/decode.h"

#define NR_IMAGE_DEFAULT_MAX_BYTES ((size_t)64 << 20)
#define NR_IMAGE_DEFAULT_MAX_PIXELS ((uint64_t)50000000)

nr_image_params_t nr_image_default_params(void) {
    nr_image_params_t p;
    p.max_bytes = NR_IMAGE_DEFAULT_MAX_BYTES;
    p.max_pixels = NR_IMAGE_DEFAULT_MAX_PIXELS;
    p.apply_exif = 1;
    p.page = 0;
    return p;
}

/* HEIC or AVIF from an ISO BMFF "ftyp" box: the major brand, else the
 * compatible brands of a generic HEIF (mif1) file. Anything else (MP4,
 * QuickTime) is not an image. */
static nr_image_format_t s_heif_brand(const unsigned char *b) {
    static const char *const heic[] = {"heic", "heix", "heim", "heis", "hevc", "hevx", "hevm", "hevs"};
    if (memcmp(b, "avif", 4) == 0 || memcmp(b, "avis", 4) == 0) return NR_IMAGE_AVIF;
    for (size_t i = 0; i < sizeof heic / sizeof heic[0]; i++)
        if (memcmp(b, heic[i], 4) == 0) return NR_IMAGE_HEIC;
    return NR_IMAGE_UNKNOWN;
}

static nr_image_format_t s_detect_heif(const unsigned char *d, size_t size) {
    nr_image_format_t f = s_heif_brand(d + 8);
    if (f != NR_IMAGE_UNKNOWN) return f;
    if (memcmp(d + 8, "mif1", 4) && memcmp(d + 8, "msf1", 4) && memcmp(d + 8, "mif2", 4)) return NR_IMAGE_UNKNOWN;
    size_t box = (size_t)d[0] << 24 | (size_t)d[1] << 16 | (size_t)d[2] << 8 | d[3];
    if (box > size) box = size;
    for (size_t off = 16; off + 4 <= box; off += 4)
        if ((f = s_heif_brand(d + off)) != NR_IMAGE_UNKNOWN) return f;
    return NR_IMAGE_UNKNOWN;
}

nr_image_format_t nr_image_detect(const void *data, size_t size) {
    const unsigned char *d = data;
    if (!d) return NR_IMAGE_UNKNOWN;
    if (size >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return NR_IMAGE_JPEG;
    if (size >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) return NR_IMAGE_PNG;
    if (size >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0) return NR_IMAGE_WEBP;
    /* Classic and Big TIFF, either byte order. */
    if (size >= 4 && (memcmp(d, "II*\0", 4) == 0 || memcmp(d, "MM\0*", 4) == 0 || memcmp(d, "II+\0", 4) == 0 ||
                      memcmp(d, "MM\0+", 4) == 0))
        return NR_IMAGE_TIFF;
    if (size >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0)) return NR_IMAGE_GIF;
    /* "BM" alone is too weak (text can start so): the DIB header size too. */
    if (size >= 18 && d[0] == 'B' && d[1] == 'M') {
        uint32_t hs = (uint32_t)d[14] | (uint32_t)d[15] << 8 | (uint32_t)d[16] << 16 | (uint32_t)d[17] << 24;
        if (hs == 12 || hs == 40 || hs == 52 || hs == 56 || hs == 64 || hs == 108 || hs == 124) return NR_IMAGE_BMP;
    }
    if (size >= 16 && memcmp(d + 4, "ftyp", 4) == 0) return s_detect_heif(d, size);
    return NR_IMAGE_UNKNOWN;
}

const char *nr_image_format_name(nr_image_format_t format) {
    switch (format) {
    case NR_IMAGE_JPEG: return "jpeg";
    case NR_IMAGE_PNG: return "png";
    case NR_IMAGE_WEBP: return "webp";
    case NR_IMAGE_TIFF: return "tiff";
    case NR_IMAGE_GIF: return "gif";
    case NR_IMAGE_BMP: return "bmp";
    case NR_IMAGE_HEIC: return "heic";
    case NR_IMAGE_AVIF: return "avif";
    default: return "unknown";
    }
}

nr_image_t *nr_image_new(int width, int height) {
    if (width <= 0 || height <= 0) return NULL;
    size_t n = (size_t)width * (size_t)height;
    if (n > SIZE_MAX / 3) return NULL;
    nr_image_t *img = calloc(1, sizeof(*img));
    if (!img) return NULL;
    img->data = calloc(n, 3);
    if (!img->data) {
        free(img);
        return NULL;
    }
    img->width = width;
    img->height = height;
    img->orientation = 1;
    return img;
}

void nr_image_destroy(nr_image_t **img) {
    if (!img || !*img) return;
    free((*img)->data);
    free(*img);
    *img = NULL;
}

/* Rejects zero sizes and anything over the pixel limit; called with the
 * header's dimensions before any pixel buffer exists. */
int nr_image_check_size(const char *fmt, uint64_t w, uint64_t h, const nr_image_params_t *p, char *err,
                        size_t errlen) {
    if (w == 0 || h == 0)
        return nr_seterr(err, errlen, NR_EIMAGE, "%s image has zero size (%llux%llu)", fmt,
                         (unsigned long long)w, (unsigned long long)h);
    if (w > INT32_MAX || h > INT32_MAX || w * h > p->max_pixels)
        return nr_seterr(err, errlen, NR_EIMAGEBOMB,
                         "%s image is %llux%llu = %llu pixels, over the limit of %llu pixels", fmt,
                         (unsigned long long)w, (unsigned long long)h, (unsigned long long)(w * h),
                         (unsigned long long)p->max_pixels);
    return 0;
}

/* ---- EXIF orientation ---------------------------------------------------- */

/* Orientation (1..8) from IFD0 of an EXIF block that starts with "Exif\0\0"
 * (as in a JPEG APP1 segment). Anything unreadable gives 1. */
static int s_exif_orientation(const unsigned char *data, size_t size) {
    if (!data || size < 14 || size > 0xFFFFFF || memcmp(data, "Exif\0\0", 6) != 0) return 1;
    ExifData *ed = exif_data_new();
    if (!ed) return 1;
    /* Read as is: no "fixing" of the data to the specification. */
    exif_data_unset_option(ed, EXIF_DATA_OPTION_FOLLOW_SPECIFICATION);
    exif_data_load_data(ed, data, (unsigned int)size);
    int orientation = 1;
    ExifEntry *e = ed->ifd[EXIF_IFD_0] ? exif_content_get_entry(ed->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION) : NULL;
    if (e && e->format == EXIF_FORMAT_SHORT && e->components >= 1 && e->data && e->size >= 2) {
        int v = exif_get_short(e->data, exif_data_get_byte_order(ed));
        if (v >= 1 && v <= 8) orientation = v;
    }
    exif_data_unref(ed);
    return orientation;
}

/* Same for a raw TIFF-format block (PNG eXIf, WebP EXIF chunks), which some
 * writers still prefix with "Exif\0\0". */
static int s_exif_orientation_raw(const unsigned char *data, size_t size) {
    if (!data || size < 8 || size > 0xFFFFFF - 6) return 1;
    if (size >= 6 && memcmp(data, "Exif\0\0", 6) == 0) return s_exif_orientation(data, size);
    unsigned char *buf = malloc(size + 6);
    if (!buf) return 1;
    memcpy(buf, "Exif\0\0", 6);
    memcpy(buf + 6, data, size);
    int o = s_exif_orientation(buf, size + 6);
    free(buf);
    return o;
}

int nr_image_orient(nr_image_t *img, int orientation) {
    if (!img || !img->data || orientation < 1 || orientation > 8) return NR_EINVAL;
    if (orientation == 1) return 0;
    const int w = img->width, h = img->height;
    const int swap = orientation >= 5; /* transpose-like: output is h x w */
    const int ow = swap ? h : w, oh = swap ? w : h;
    unsigned char *out = malloc((size_t)w * (size_t)h * 3);
    if (!out) return NR_ENOMEM;
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            int sx, sy;
            switch (orientation) {
            case 2: sx = w - 1 - x; sy = y; break;          /* mirror left-right */
            case 3: sx = w - 1 - x; sy = h - 1 - y; break;  /* rotate 180 */
            case 4: sx = x; sy = h - 1 - y; break;          /* mirror top-bottom */
            case 5: sx = y; sy = x; break;                  /* transpose */
            case 6: sx = y; sy = h - 1 - x; break;          /* rotate 90 clockwise */
            case 7: sx = w - 1 - y; sy = h - 1 - x; break;  /* transverse */
            default: sx = w - 1 - y; sy = x; break;         /* 8: rotate 90 counter-clockwise */
            }
            memcpy(out + ((size_t)y * ow + x) * 3, img->data + ((size_t)sy * w + sx) * 3, 3);
        }
    }
    free(img->data);
    img->data = out;
    img->width = ow;
    img->height = oh;
    return 0;
}

/* The end every decoder shares: turns img upright by its EXIF orientation
 * (1 = as stored) and records the orientation and the format. Returns 0 or
 * a negative code with a message; img stays the caller's either way. */
int nr_image_finish(nr_image_t *img, int orientation, nr_image_format_t format, char *err, size_t errlen) {
    if (orientation != 1) {
        int c = nr_image_orient(img, orientation);
        if (c < 0) return nr_seterr(err, errlen, c, "cannot apply EXIF orientation %d", orientation);
    }
    img->orientation = orientation;
    img->format = format;
    return 0;
}

/* ---- JPEG ------------------------------------------------------------------ */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jmp;
    char msg[JMSG_LENGTH_MAX];
} s_jpeg_err_t;

static void s_jpeg_error_exit(j_common_ptr cinfo) {
    s_jpeg_err_t *e = (s_jpeg_err_t *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jmp, 1);
}

/* Warnings are silent, except a premature end of data, which PIL reports
 * as a truncated file: it becomes an error here too. */
static void s_jpeg_emit_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) s_jpeg_error_exit(cinfo);
}

/* A progressive JPEG can hold thousands of tiny scans that each re-walk
 * the whole image (a CPU bomb); libjpeg-turbo's advice is to cap them. */
#define S_JPEG_MAX_SCANS 1000

static void s_jpeg_progress(j_common_ptr cinfo) {
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > S_JPEG_MAX_SCANS) {
        s_jpeg_err_t *e = (s_jpeg_err_t *)cinfo->err;
        snprintf(e->msg, sizeof(e->msg), "more than %d progressive scans", S_JPEG_MAX_SCANS);
        longjmp(e->jmp, 1);
    }
}

static int s_decode_jpeg(const unsigned char *data, size_t size, const nr_image_params_t *p, nr_image_t **out,
                         char *err, size_t errlen) {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress_mgr progress;
    s_jpeg_err_t jerr;
    /* volatile: modified between setjmp and a possible longjmp. */
    nr_image_t *volatile img = NULL;
    unsigned char *volatile row = NULL;
    volatile int rc = NR_EIMAGE;

    memset(&cinfo, 0, sizeof(cinfo));
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = s_jpeg_error_exit;
    jerr.pub.emit_message = s_jpeg_emit_message;
    jerr.msg[0] = '\0';
    if (setjmp(jerr.jmp)) {
        if (rc == NR_EIMAGE) nr_seterr(err, errlen, NR_EIMAGE, "corrupt or truncated JPEG: %s", jerr.msg);
        goto done;
    }
    jpeg_create_decompress(&cinfo);
    memset(&progress, 0, sizeof(progress));
    progress.progress_monitor = s_jpeg_progress;
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&cinfo, TRUE);
    {
        int c = nr_image_check_size("JPEG", cinfo.image_width, cinfo.image_height, p, err, errlen);
        if (c < 0) {
            rc = c;
            goto done;
        }
    }
    int cmyk = 0;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: cinfo.out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK:
    case JCS_YCCK: cinfo.out_color_space = JCS_CMYK; cmyk = 1; break;
    default: cinfo.out_color_space = JCS_RGB; break;
    }
    int orientation = 1;
    if (p->apply_exif) {
        for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next) {
            if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
                orientation = s_exif_orientation(m->data, m->data_length);
                break;
            }
        }
    }
    jpeg_start_decompress(&cinfo);
    const int nc = cinfo.output_components;
    if (!((nc == 1 && !cmyk) || (nc == 3 && !cmyk) || (nc == 4 && cmyk))) {
        rc = nr_seterr(err, errlen, NR_EIMAGE, "JPEG with %d components is not supported", nc);
        goto done;
    }
    img = nr_image_new((int)cinfo.output_width, (int)cinfo.output_height);
    row = malloc((size_t)cinfo.output_width * (size_t)nc);
    if (!img || !row) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "no memory for a %ux%u JPEG", cinfo.output_width,
                       cinfo.output_height);
        goto done;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW r = row;
        unsigned char *dst = img->data + (size_t)cinfo.output_scanline * img->width * 3;
        if (jpeg_read_scanlines(&cinfo, &r, 1) != 1) {
            rc = nr_seterr(err, errlen, NR_EIMAGE, "truncated JPEG");
            goto done;
        }
        for (int x = 0; x < img->width; x++) {
            if (nc == 1) {
                dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
            } else if (nc == 3) {
                memcpy(dst + 3 * x, row + 3 * x, 3);
            } else {
                /* Adobe writes inverted CMYK; PIL reads every 4-channel
                 * JPEG as "CMYK;I", then cmyk2rgb: nk - c*nk/255 rounded. */
                for (int c = 0; c < 3; c++)
                    dst[3 * x + c] = nr_image_cmyk_channel(255 - row[4 * x + c], 255 - row[4 * x + 3]);
            }
        }
    }
    jpeg_finish_decompress(&cinfo);
    rc = nr_image_finish(img, orientation, NR_IMAGE_JPEG, err, errlen);
    if (rc) goto done;
    *out = img;
    img = NULL;
done:
    jpeg_destroy_decompress(&cinfo);
    free(row);
    {
        nr_image_t *tmp = img;
        nr_image_destroy(&tmp);
    }
    return rc;
}

/* ---- PNG ------------------------------------------------------------------- */

typedef struct {
    const unsigned char *data;
    size_t size, pos;
    char msg[256];
} s_png_src_t;

static void s_png_error(png_structp png, png_const_charp msg) {
    s_png_src_t *src = png_get_error_ptr(png);
    snprintf(src->msg, sizeof(src->msg), "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

static void s_png_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static void s_png_read(png_structp png, png_bytep out, png_size_t n) {
    s_png_src_t *src = png_get_io_ptr(png);
    if (n > src->size - src->pos) png_error(png, "unexpected end of data (truncated PNG)");
    memcpy(out, src->data + src->pos, n);
    src->pos += n;
}

static int s_decode_png(const unsigned char *data, size_t size, const nr_image_params_t *p, nr_image_t **out,
                        char *err, size_t errlen) {
    s_png_src_t src = {data, size, 0, {0}};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, s_png_error, s_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    nr_image_t *volatile img = NULL;
    png_bytep *volatile rows = NULL;
    unsigned char *volatile pix = NULL;
    volatile int rc = NR_EIMAGE;
    if (!png || !info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        return nr_seterr(err, errlen, NR_ENOMEM, "cannot create a PNG reader");
    }
    if (setjmp(png_jmpbuf(png))) {
        if (rc == NR_EIMAGE) nr_seterr(err, errlen, NR_EIMAGE, "corrupt or truncated PNG: %s", src.msg);
        goto done;
    }
    png_set_read_fn(png, &src, s_png_read);
    /* Our own pixel limit applies; lift libpng's narrower default. */
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    {
        int c = nr_image_check_size("PNG", w, h, p, err, errlen);
        if (c < 0) {
            rc = c;
            goto done;
        }
    }
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png); /* keeps the high byte, as PIL's ";16B" unpackers */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    const int nc = png_get_channels(png, info);
    const size_t rowbytes = png_get_rowbytes(png, info);
    if (nc < 1 || nc > 4 || png_get_bit_depth(png, info) != 8 || rowbytes < (size_t)w * nc) {
        rc = nr_seterr(err, errlen, NR_EIMAGE, "unsupported PNG layout (%d channels, depth %d)", nc,
                       png_get_bit_depth(png, info));
        goto done;
    }
    img = nr_image_new((int)w, (int)h);
    pix = malloc(rowbytes * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!img || !pix || !rows) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "no memory for a %ux%u PNG", (unsigned)w, (unsigned)h);
        goto done;
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pix + rowbytes * y;
    png_read_image(png, rows);
    /* The end chunk and any EXIF after the image data. */
    png_read_end(png, info);
    for (png_uint_32 y = 0; y < h; y++) {
        const unsigned char *s = rows[y];
        unsigned char *d = img->data + (size_t)y * w * 3;
        for (png_uint_32 x = 0; x < w; x++) {
            if (nc <= 2) { /* grey, grey+alpha: alpha dropped */
                d[3 * x] = d[3 * x + 1] = d[3 * x + 2] = s[nc * x];
            } else { /* RGB, RGBA: alpha dropped, not blended */
                memcpy(d + 3 * x, s + nc * x, 3);
            }
        }
    }
    int orientation = 1;
#ifdef PNG_eXIf_SUPPORTED
    if (p->apply_exif) {
        png_uint_32 exif_len = 0;
        png_bytep exif = NULL;
        if (png_get_eXIf_1(png, info, &exif_len, &exif) && exif && exif_len > 0)
            orientation = s_exif_orientation_raw(exif, exif_len);
    }
#endif
    rc = nr_image_finish(img, orientation, NR_IMAGE_PNG, err, errlen);
    if (rc) goto done;
    *out = img;
    img = NULL;
done:
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    free(pix);
    {
        nr_image_t *tmp = img;
        nr_image_destroy(&tmp);
    }
    return rc;
}

/* ---- WebP ------------------------------------------------------------------ */

static const char *s_webp_status(VP8StatusCode st) {
    switch (st) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated data";
    default: return "decoder error";
    }
}

static int s_decode_webp(const unsigned char *data, size_t size, const nr_image_params_t *p, nr_image_t **out,
                         char *err, size_t errlen) {
    WebPBitstreamFeatures f;
    VP8StatusCode st = WebPGetFeatures(data, size, &f);
    if (st != VP8_STATUS_OK)
        return nr_seterr(err, errlen, NR_EIMAGE, "corrupt or truncated WebP: %s", s_webp_status(st));
    int c = nr_image_check_size("WebP", (uint64_t)(f.width > 0 ? f.width : 0), (uint64_t)(f.height > 0 ? f.height : 0), p,
                         err, errlen);
    if (c < 0) return c;
    if (f.has_animation) return nr_seterr(err, errlen, NR_EIMAGE, "animated WebP is not supported");
    nr_image_t *img = nr_image_new(f.width, f.height);
    if (!img) return nr_seterr(err, errlen, NR_ENOMEM, "no memory for a %dx%d WebP", f.width, f.height);
    size_t n = (size_t)f.width * f.height;
    /* With alpha: straight (not premultiplied) RGBA, then alpha dropped, as PIL. */
    const int ch = f.has_alpha ? 4 : 3;
    unsigned char *buf = ch == 3 ? img->data : malloc(n * 4);
    if (!buf) {
        nr_image_destroy(&img);
        return nr_seterr(err, errlen, NR_ENOMEM, "no memory for a %dx%d WebP", f.width, f.height);
    }
    WebPDecoderConfig cfg;
    if (!WebPInitDecoderConfig(&cfg)) {
        if (buf != img->data) free(buf);
        nr_image_destroy(&img);
        return nr_seterr(err, errlen, NR_EINTERNAL, "libwebp version mismatch");
    }
    cfg.output.colorspace = ch == 4 ? MODE_RGBA : MODE_RGB;
    cfg.output.is_external_memory = 1;
    cfg.output.u.RGBA.rgba = buf;
    cfg.output.u.RGBA.stride = f.width * ch;
    cfg.output.u.RGBA.size = n * (size_t)ch;
    st = WebPDecode(data, size, &cfg);
    WebPFreeDecBuffer(&cfg.output);
    if (st == VP8_STATUS_OK && ch == 4)
        for (size_t i = 0; i < n; i++) memcpy(img->data + 3 * i, buf + 4 * i, 3);
    if (buf != img->data) free(buf);
    if (st != VP8_STATUS_OK) {
        nr_image_destroy(&img);
        return nr_seterr(err, errlen, NR_EIMAGE, "corrupt or truncated WebP: %s", s_webp_status(st));
    }
    int orientation = 1;
    if (p->apply_exif) {
        WebPData wd = {data, size};
        WebPDemuxer *dmx = WebPDemux(&wd);
        if (dmx) {
            WebPChunkIterator it;
            if (WebPDemuxGetChunk(dmx, "EXIF", 1, &it)) {
                orientation = s_exif_orientation_raw(it.chunk.bytes, it.chunk.size);
                WebPDemuxReleaseChunkIterator(&it);
            }
            WebPDemuxDelete(dmx);
        }
    }
    if ((c = nr_image_finish(img, orientation, NR_IMAGE_WEBP, err, errlen)) < 0) {
        nr_image_destroy(&img);
        return c;
    }
    *out = img;
    return 0;
}

/* The checks every entry point starts with; 1 to go on, else a code. */
static int s_precheck(const void *data, size_t size, const nr_image_params_t *p, char *err, size_t errlen) {
    if (!data || size == 0) return nr_seterr(err, errlen, NR_ENOTIMAGE, "empty input (0 bytes) is not an image");
    if (p->max_bytes && size > p->max_bytes)
        return nr_seterr(err, errlen, NR_ETOOBIG, "image is %zu bytes, over the limit of %zu bytes", size,
                         p->max_bytes);
    if (p->page < 0 || p->page >= NR_IMAGE_MAX_PAGES)
        return nr_seterr(err, errlen, NR_EINVAL, "page %d is out of range (0 to %d)", p->page,
                         NR_IMAGE_MAX_PAGES - 1);
    if (nr_image_detect(data, size) == NR_IMAGE_UNKNOWN) {
        const unsigned char *d = data;
        return nr_seterr(err, errlen, NR_ENOTIMAGE,
                         "not a JPEG, PNG, WebP, TIFF, GIF, BMP, HEIC or AVIF image (first bytes %02x %02x %02x "
                         "%02x, %zu bytes)",
                         d[0], size > 1 ? d[1] : 0, size > 2 ? d[2] : 0, size > 3 ? d[3] : 0, size);
    }
    return 1;
}

int nr_image_page_count(const void *data, size_t size, const nr_image_params_t *params, int *count, char *err,
                        size_t errlen) {
    if (!count) return nr_seterr(err, errlen, NR_EINVAL, "nr_image_page_count: no output pointer");
    *count = 0;
    nr_image_params_t p = params ? *params : nr_image_default_params();
    p.page = 0;
    int c = s_precheck(data, size, &p, err, errlen);
    if (c <= 0) return c;
    if (nr_image_detect(data, size) == NR_IMAGE_TIFF) return nr_image_tiff_pages(data, size, &p, count, err, errlen);
    *count = 1;
    return 0;
}

int nr_image_decode(const void *data, size_t size, const nr_image_params_t *params, nr_image_t **out,
                    char *err, size_t errlen) {
    if (!out) return nr_seterr(err, errlen, NR_EINVAL, "nr_image_decode: no output pointer");
    *out = NULL;
    nr_image_params_t p = params ? *params : nr_image_default_params();
    int c = s_precheck(data, size, &p, err, errlen);
    if (c <= 0) return c;
    nr_image_format_t f = nr_image_detect(data, size);
    if (p.page > 0 && f != NR_IMAGE_TIFF)
        return nr_seterr(err, errlen, NR_EIMAGE, "%s images have one page; page %d does not exist",
                         nr_image_format_name(f), p.page);
    switch (f) {
    case NR_IMAGE_JPEG: return s_decode_jpeg(data, size, &p, out, err, errlen);
    case NR_IMAGE_PNG: return s_decode_png(data, size, &p, out, err, errlen);
    case NR_IMAGE_WEBP: return s_decode_webp(data, size, &p, out, err, errlen);
    case NR_IMAGE_TIFF: return nr_image_decode_tiff(data, size, &p, out, err, errlen);
    case NR_IMAGE_GIF: return nr_image_decode_gif(data, size, &p, out, err, errlen);
    case NR_IMAGE_BMP: return nr_image_decode_bmp(data, size, &p, out, err, errlen);
    default:
#ifdef NR_HAVE_HEIF
        return nr_image_decode_heif(data, size, f, &p, out, err, errlen);
#else
        return nr_seterr(err, errlen, NR_ENOTIMAGE, "%s images are not supported by this build (built with NR_HEIF=OFF)",
                         f == NR_IMAGE_AVIF ? "AVIF" : "HEIC");
#endif
    }
}
