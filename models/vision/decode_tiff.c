/* TIFF (libtiff) from memory to 8-bit RGB, converted as PIL 9.4's
 * TiffImagePlugin + convert("RGB") does: grey and palette looked up, the
 * high byte of 16-bit samples, CMYK through cmyk2rgb (a plain inversion, no
 * colour management), extra samples (alpha) dropped. Strips and tiles are
 * converted one at a time, so no buffer larger than one strip or tile of
 * raw samples exists besides the image. libtiff's messages go to a
 * per-handle handler (nothing is printed, nothing global is touched). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tiffio.h>

#include "common/error.h"
#include "models/vision/decode.h"

typedef struct {
    const unsigned char *data;
    size_t size;
    size_t pos;
    char msg[256]; /* libtiff's first error */
} s_src_t;

static tmsize_t s_read(thandle_t h, void *buf, tmsize_t n) {
    s_src_t *s = h;
    if (n <= 0 || s->pos >= s->size) return 0;
    size_t k = s->size - s->pos;
    if ((size_t)n < k) k = (size_t)n;
    memcpy(buf, s->data + s->pos, k);
    s->pos += k;
    return (tmsize_t)k;
}

static tmsize_t s_write(thandle_t h, void *buf, tmsize_t n) {
    (void)h;
    (void)buf;
    (void)n;
    return -1;
}

static toff_t s_seek(thandle_t h, toff_t off, int whence) {
    s_src_t *s = h;
    uint64_t base = whence == SEEK_CUR ? s->pos : whence == SEEK_END ? s->size : 0;
    if (off > UINT64_MAX - base || base + off > SIZE_MAX) return (toff_t)-1;
    s->pos = (size_t)(base + off);
    return (toff_t)s->pos;
}

static int s_close(thandle_t h) {
    (void)h;
    return 0;
}

static toff_t s_size(thandle_t h) { return (toff_t)((s_src_t *)h)->size; }

static int s_map(thandle_t h, void **base, toff_t *size) {
    (void)h;
    (void)base;
    (void)size;
    return 0;
}

static void s_unmap(thandle_t h, void *base, toff_t size) {
    (void)h;
    (void)base;
    (void)size;
}

static int s_on_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
    (void)tif;
    (void)module;
    s_src_t *s = user;
    if (!s->msg[0]) vsnprintf(s->msg, sizeof s->msg, fmt, ap);
    return 1; /* handled: libtiff's global handler (stderr) is not called */
}

static int s_on_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
    (void)tif;
    (void)user;
    (void)module;
    (void)fmt;
    (void)ap;
    return 1;
}

/* The largest single buffer a TIFF may need, here or inside libtiff: 8
 * bytes a pixel of the largest image allowed (one strip of 16-bit RGBA),
 * at most 1 GiB, so a header that lies about a strip cannot ask for more. */
static uint64_t s_alloc_cap(const nr_image_params_t *p) {
    uint64_t cap = p->max_pixels * 8 + ((uint64_t)1 << 20);
    return cap > ((uint64_t)1 << 30) ? (uint64_t)1 << 30 : cap;
}

/* Opens the first directory; NULL with a message on failure. */
static TIFF *s_open(s_src_t *src, const nr_image_params_t *p, char *err, size_t errlen) {
    TIFFOpenOptions *o = TIFFOpenOptionsAlloc();
    if (!o) {
        nr_seterr(err, errlen, NR_ENOMEM, "cannot create a TIFF reader");
        return NULL;
    }
    TIFFOpenOptionsSetMaxSingleMemAlloc(o, (tmsize_t)s_alloc_cap(p));
    TIFFOpenOptionsSetErrorHandlerExtR(o, s_on_error, src);
    TIFFOpenOptionsSetWarningHandlerExtR(o, s_on_warning, src);
    /* "m": read through s_read, never a mapping of the caller's buffer. */
    TIFF *tif = TIFFClientOpenExt("tiff", "rm", src, s_read, s_write, s_seek, s_close, s_size, s_map, s_unmap, o);
    TIFFOpenOptionsFree(o);
    if (!tif) nr_seterr(err, errlen, NR_EIMAGE, "corrupt or truncated TIFF: %s", src->msg[0] ? src->msg : "unreadable header");
    return tif;
}

int nr_image_tiff_pages(const unsigned char *data, size_t size, const nr_image_params_t *p, int *count, char *err,
                        size_t errlen) {
    s_src_t src = {data, size, 0, {0}};
    TIFF *tif = s_open(&src, p, err, errlen);
    if (!tif) return NR_EIMAGE;
    int n = 1;
    while (n <= NR_IMAGE_MAX_PAGES && TIFFReadDirectory(tif)) n++;
    TIFFClose(tif);
    if (n > NR_IMAGE_MAX_PAGES)
        return nr_seterr(err, errlen, NR_EIMAGE, "TIFF has more than %d pages", NR_IMAGE_MAX_PAGES);
    *count = n;
    return 0;
}

/* ---- the layouts converted here ------------------------------------------ */

typedef struct {
    uint16_t photometric, bps, spp, planar;
    int channels;          /* samples used per pixel: 1 (grey, palette), 3 (RGB), 4 (CMYK) */
    const uint16_t *cmap[3]; /* palette: 16-bit colour map, 1 << bps entries */
    uint32_t width, height;
} s_layout_t;

/* Sample c of pixel x in a row of raw samples: contiguous or one plane. */
static inline unsigned s_sample(const s_layout_t *L, const unsigned char *const *rows, int c, uint32_t x) {
    if (L->bps < 8) {
        const unsigned char *r = rows[0];
        unsigned bit = x * L->bps;
        return (r[bit >> 3] >> (8 - L->bps - (bit & 7))) & ((1u << L->bps) - 1);
    }
    size_t i = L->planar == PLANARCONFIG_CONTIG ? (size_t)x * L->spp + c : x;
    const unsigned char *r = rows[L->planar == PLANARCONFIG_CONTIG ? 0 : c];
    if (L->bps == 16) return ((const uint16_t *)(const void *)r)[i] >> 8; /* high byte, as PIL */
    return r[i];
}

/* One row of `n` pixels into RGB. */
static void s_convert_row(const s_layout_t *L, const unsigned char *const *rows, uint32_t n, unsigned char *dst) {
    const unsigned maxv = L->bps < 8 ? (1u << L->bps) - 1 : 255;
    for (uint32_t x = 0; x < n; x++, dst += 3) {
        switch (L->photometric) {
        case PHOTOMETRIC_MINISBLACK:
        case PHOTOMETRIC_MINISWHITE: {
            unsigned v = s_sample(L, rows, 0, x) * 255 / maxv; /* 1/2/4 bits scaled as PIL's L;1..L;4 */
            if (L->photometric == PHOTOMETRIC_MINISWHITE) v = 255 - v;
            dst[0] = dst[1] = dst[2] = (unsigned char)v;
            break;
        }
        case PHOTOMETRIC_PALETTE: {
            unsigned i = s_sample(L, rows, 0, x);
            for (int c = 0; c < 3; c++) dst[c] = (unsigned char)(L->cmap[c][i] >> 8); /* PIL: entry // 256 */
            break;
        }
        case PHOTOMETRIC_SEPARATED: {
            int k = (int)s_sample(L, rows, 3, x);
            for (int c = 0; c < 3; c++) dst[c] = nr_image_cmyk_channel((int)s_sample(L, rows, c, x), k);
            break;
        }
        default: /* RGB, and YCbCr that libjpeg turned into RGB */
            for (int c = 0; c < 3; c++) dst[c] = (unsigned char)s_sample(L, rows, c, x);
            break;
        }
    }
}

/* Reads every strip or tile and converts it into img. */
static int s_read_native(TIFF *tif, const s_layout_t *L, nr_image_t *img, s_src_t *src, const nr_image_params_t *p,
                         char *err, size_t errlen) {
    const int tiled = TIFFIsTiled(tif);
    const int planes = L->planar == PLANARCONFIG_CONTIG ? 1 : L->channels;
    uint32_t bw = L->width, bh; /* block (strip or tile) size in pixels */
    if (tiled) {
        TIFFGetField(tif, TIFFTAG_TILEWIDTH, &bw);
        TIFFGetField(tif, TIFFTAG_TILELENGTH, &bh);
        /* A tile may overhang the image, but not absurdly: at most the
         * image plus a 4 Mpx allowance (a 2048x2048 tile on a tiny image). */
        uint64_t lim = (uint64_t)L->width * L->height;
        if (lim < ((uint64_t)1 << 22)) lim = (uint64_t)1 << 22;
        if (bw == 0 || bh == 0 || (uint64_t)bw * bh > lim)
            return nr_seterr(err, errlen, NR_EIMAGE, "TIFF tile of %ux%u pixels does not fit a %ux%u image", bw, bh,
                             L->width, L->height);
    } else {
        bh = 0;
        TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &bh);
        if (bh == 0 || bh > L->height) bh = L->height;
    }
    const uint64_t spp_block = L->planar == PLANARCONFIG_CONTIG ? L->spp : 1;
    const uint64_t row_bytes = (bw * spp_block * L->bps + 7) / 8;
    const uint64_t block_bytes = row_bytes * bh;
    const tmsize_t lib_size = tiled ? TIFFTileSize(tif) : TIFFStripSize(tif);
    if (lib_size <= 0 || (uint64_t)lib_size < (tiled ? block_bytes : row_bytes))
        return nr_seterr(err, errlen, NR_EIMAGE, "corrupt TIFF: %s", src->msg[0] ? src->msg : "bad strip or tile size");
    if (block_bytes > s_alloc_cap(p))
        return nr_seterr(err, errlen, NR_EIMAGEBOMB, "TIFF %s of %llu bytes is over the limit of %llu bytes",
                         tiled ? "tile" : "strip", (unsigned long long)block_bytes,
                         (unsigned long long)s_alloc_cap(p));
    unsigned char *buf[4] = {0};
    int rc = 0;
    for (int c = 0; c < planes; c++)
        if (!(buf[c] = malloc(block_bytes))) {
            rc = nr_seterr(err, errlen, NR_ENOMEM, "no memory for a TIFF %s of %llu bytes", tiled ? "tile" : "strip",
                           (unsigned long long)block_bytes);
            goto done;
        }
    for (uint32_t y0 = 0; y0 < L->height; y0 += bh) {
        for (uint32_t x0 = 0; x0 < L->width; x0 += bw) {
            for (int c = 0; c < planes; c++) {
                tmsize_t got;
                if (tiled) {
                    got = TIFFReadEncodedTile(tif, TIFFComputeTile(tif, x0, y0, 0, (uint16_t)c), buf[c],
                                              (tmsize_t)block_bytes);
                } else {
                    got = TIFFReadEncodedStrip(tif, TIFFComputeStrip(tif, y0, (uint16_t)c), buf[c],
                                               (tmsize_t)block_bytes);
                }
                if (got < 0) {
                    rc = nr_seterr(err, errlen, NR_EIMAGE, "corrupt or truncated TIFF: %s",
                                   src->msg[0] ? src->msg : "cannot read a strip or tile");
                    goto done;
                }
                /* A short last strip is padded with zeros, never read past. */
                if ((uint64_t)got < block_bytes) memset(buf[c] + got, 0, block_bytes - (uint64_t)got);
            }
            uint32_t nw = L->width - x0 < bw ? L->width - x0 : bw;
            uint32_t nh = L->height - y0 < bh ? L->height - y0 : bh;
            for (uint32_t r = 0; r < nh; r++) {
                const unsigned char *rows[4];
                for (int c = 0; c < planes; c++) rows[c] = buf[c] + r * row_bytes;
                s_convert_row(L, rows, nw, img->data + (((size_t)(y0 + r) * L->width) + x0) * 3);
            }
        }
    }
done:
    for (int c = 0; c < planes; c++) free(buf[c]);
    return rc;
}

/* Everything else libtiff's RGBA reader knows (subsampled YCbCr, Lab,
 * LogLuv, odd bit depths), in stored row order; alpha dropped. */
static int s_read_rgba(TIFF *tif, nr_image_t *img, s_src_t *src, char *err, size_t errlen) {
    char emsg[1024] = "";
    TIFFRGBAImage ri;
    if (!TIFFRGBAImageOK(tif, emsg) || !TIFFRGBAImageBegin(&ri, tif, 0, emsg))
        return nr_seterr(err, errlen, NR_EIMAGE, "unsupported TIFF layout: %s", emsg);
    ri.req_orientation = ri.orientation; /* no flips: the Orientation tag is applied afterwards */
    const size_t n = (size_t)img->width * img->height;
    uint32_t *raster = malloc(n * sizeof *raster);
    if (!raster) {
        TIFFRGBAImageEnd(&ri);
        return nr_seterr(err, errlen, NR_ENOMEM, "no memory for a %dx%d TIFF", img->width, img->height);
    }
    int ok = TIFFRGBAImageGet(&ri, raster, (uint32_t)img->width, (uint32_t)img->height);
    TIFFRGBAImageEnd(&ri);
    if (ok)
        for (size_t i = 0; i < n; i++) {
            img->data[3 * i] = (unsigned char)TIFFGetR(raster[i]);
            img->data[3 * i + 1] = (unsigned char)TIFFGetG(raster[i]);
            img->data[3 * i + 2] = (unsigned char)TIFFGetB(raster[i]);
        }
    free(raster);
    if (!ok)
        return nr_seterr(err, errlen, NR_EIMAGE, "corrupt or truncated TIFF: %s", src->msg[0] ? src->msg : "read failed");
    return 0;
}

int nr_image_decode_tiff(const unsigned char *data, size_t size, const nr_image_params_t *p, nr_image_t **out,
                         char *err, size_t errlen) {
    s_src_t src = {data, size, 0, {0}};
    TIFF *tif = s_open(&src, p, err, errlen);
    if (!tif) return NR_EIMAGE;
    nr_image_t *img = NULL;
    int rc = 0;
    if (p->page > 0 && !TIFFSetDirectory(tif, (tdir_t)p->page)) {
        rc = nr_seterr(err, errlen, NR_EIMAGE, "TIFF has no page %d (pages count from 0)", p->page);
        goto done;
    }
    s_layout_t L;
    memset(&L, 0, sizeof L);
    uint16_t sf = SAMPLEFORMAT_UINT, orientation = ORIENTATION_TOPLEFT, compression = COMPRESSION_NONE,
             inkset = INKSET_CMYK;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &L.width) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &L.height)) {
        rc = nr_seterr(err, errlen, NR_EIMAGE, "corrupt TIFF: no image size");
        goto done;
    }
    if ((rc = nr_image_check_size("TIFF", L.width, L.height, p, err, errlen)) < 0) goto done;
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &L.bps);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &L.spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &L.planar);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &sf);
    TIFFGetFieldDefaulted(tif, TIFFTAG_ORIENTATION, &orientation);
    TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &compression);
    TIFFGetFieldDefaulted(tif, TIFFTAG_INKSET, &inkset);
    if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &L.photometric)) L.photometric = PHOTOMETRIC_MINISWHITE;
    if (L.photometric == PHOTOMETRIC_YCBCR && compression == COMPRESSION_JPEG) {
        /* libjpeg converts to RGB, as PIL asks libtiff to. */
        TIFFSetField(tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
        L.photometric = PHOTOMETRIC_RGB;
    }
    const int b8 = L.bps == 8 || L.bps == 16;
    const int contig1 = L.spp == 1 || L.planar == PLANARCONFIG_CONTIG;
    switch (L.photometric) {
    case PHOTOMETRIC_MINISBLACK:
    case PHOTOMETRIC_MINISWHITE:
        L.channels = 1;
        if (!(b8 || ((L.bps == 1 || L.bps == 2 || L.bps == 4) && L.spp == 1))) L.channels = 0;
        break;
    case PHOTOMETRIC_PALETTE:
        L.channels = (L.bps == 1 || L.bps == 2 || L.bps == 4 || L.bps == 8) && L.spp == 1 &&
                             TIFFGetField(tif, TIFFTAG_COLORMAP, &L.cmap[0], &L.cmap[1], &L.cmap[2])
                         ? 1
                         : 0;
        break;
    case PHOTOMETRIC_RGB: L.channels = b8 && L.spp >= 3 ? 3 : 0; break;
    case PHOTOMETRIC_SEPARATED: L.channels = b8 && L.spp >= 4 && inkset == INKSET_CMYK ? 4 : 0; break;
    default: L.channels = 0; break;
    }
    if (sf != SAMPLEFORMAT_UINT || !contig1 || L.spp > 16) L.channels = 0;
    img = nr_image_new((int)L.width, (int)L.height);
    if (!img) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "no memory for a %ux%u TIFF", L.width, L.height);
        goto done;
    }
    if (L.channels)
        rc = s_read_native(tif, &L, img, &src, p, err, errlen);
    else if (sf != SAMPLEFORMAT_UINT)
        rc = nr_seterr(err, errlen, NR_EIMAGE, "TIFF with %s samples is not supported (unsigned integers are)",
                       sf == SAMPLEFORMAT_IEEEFP ? "floating-point" : "signed or complex");
    else
        rc = s_read_rgba(tif, img, &src, err, errlen);
    if (rc < 0) goto done;
    if (orientation < 1 || orientation > 8 || !p->apply_exif) orientation = 1;
    if ((rc = nr_image_finish(img, orientation, NR_IMAGE_TIFF, err, errlen)) < 0) goto done;
    *out = img;
    img = NULL;
done:
    TIFFClose(tif);
    nr_image_destroy(&img);
    return rc;
}
