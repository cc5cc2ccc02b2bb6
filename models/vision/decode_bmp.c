/* BMP (Windows and OS/2 bitmaps) to 8-bit RGB, written here: the format
 * is a header and rows of raw pixels, and reading it needs only bounds
 * checks. Follows PIL 9.4's BmpImagePlugin: the palette is read right after
 * the headers, the pixels at the file header's offset; 16-bit without
 * BITFIELDS is 5-5-5; a field of n bits scales as v * 255 / (2^n - 1)
 * rounded down (exact for 8-bit fields); alpha is dropped. Rows are padded
 * to 4 bytes and stored bottom-up unless the height is negative. RLE4,
 * RLE8 and embedded JPEG/PNG are refused with a message that says so
 * (PIL reads RLE; nothing common writes it today). */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/vision/decode.h"

static uint32_t s_u32(const unsigned char *d) {
    return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

static uint16_t s_u16(const unsigned char *d) { return (uint16_t)(d[0] | d[1] << 8); }

/* A colour mask: where its bits start, how many, and the largest value. */
typedef struct {
    uint32_t mask;
    int shift;
    uint32_t max;
} s_field_t;

static int s_field(uint32_t mask, s_field_t *f) {
    f->mask = mask;
    f->shift = 0;
    f->max = 0;
    if (!mask) return 0;
    while (!((mask >> f->shift) & 1)) f->shift++;
    f->max = mask >> f->shift;
    return (f->max & (f->max + 1)) == 0 ? 0 : -1; /* contiguous bits only */
}

static unsigned char s_scale(uint32_t px, const s_field_t *f) {
    if (!f->max) return 0;
    uint64_t v = (px & f->mask) >> f->shift;
    return (unsigned char)(v * 255 / f->max);
}

enum { S_RGB = 0, S_RLE8 = 1, S_RLE4 = 2, S_BITFIELDS = 3, S_JPEG = 4, S_PNG = 5, S_ALPHABITFIELDS = 6 };

int nr_image_decode_bmp(const unsigned char *data, size_t size, const nr_image_params_t *p, nr_image_t **out,
                        char *err, size_t errlen) {
    if (size < 26) return nr_seterr(err, errlen, NR_EIMAGE, "truncated BMP: %zu bytes", size);
    const uint32_t offset = s_u32(data + 10), hs = s_u32(data + 14);
    if (size < 14 + (size_t)hs) return nr_seterr(err, errlen, NR_EIMAGE, "truncated BMP: header cut short");
    const unsigned char *h = data + 14;
    int64_t width, height;
    unsigned bits, compression = S_RGB;
    uint32_t colors = 0;
    int pal_entry = 4;
    if (hs == 12) { /* OS/2 1.x core header: 16-bit sizes, 3-byte palette entries */
        width = s_u16(h + 4);
        height = s_u16(h + 6);
        bits = s_u16(h + 10);
        pal_entry = 3;
    } else {
        width = (int32_t)s_u32(h + 4);
        height = (int32_t)s_u32(h + 8);
        bits = s_u16(h + 14);
        compression = s_u32(h + 16);
        colors = s_u32(h + 32);
    }
    const int top_down = height < 0;
    if (top_down) height = -height;
    if (width < 0) return nr_seterr(err, errlen, NR_EIMAGE, "corrupt BMP: negative width %lld", (long long)width);
    int rc = nr_image_check_size("BMP", (uint64_t)width, (uint64_t)height, p, err, errlen);
    if (rc < 0) return rc;
    if (compression == S_RLE8 || compression == S_RLE4)
        return nr_seterr(err, errlen, NR_EIMAGE, "RLE-compressed BMP (RLE%d) is not supported",
                         compression == S_RLE8 ? 8 : 4);
    if (compression == S_JPEG || compression == S_PNG)
        return nr_seterr(err, errlen, NR_EIMAGE, "BMP holding a %s is not supported (send the %s itself)",
                         compression == S_JPEG ? "JPEG" : "PNG", compression == S_JPEG ? "JPEG" : "PNG");
    if (compression != S_RGB && compression != S_BITFIELDS && compression != S_ALPHABITFIELDS)
        return nr_seterr(err, errlen, NR_EIMAGE, "BMP compression %u is not supported", compression);
    if (bits != 1 && bits != 4 && bits != 8 && bits != 16 && bits != 24 && bits != 32)
        return nr_seterr(err, errlen, NR_EIMAGE, "BMP with %u bits per pixel is not supported", bits);
    const int fields = compression != S_RGB;
    if (fields && bits != 16 && bits != 32)
        return nr_seterr(err, errlen, NR_EIMAGE, "BMP BITFIELDS with %u bits per pixel is not supported", bits);

    /* Colour masks: in the header (52 bytes and up), else just after a
     * 40-byte header; defaults 5-5-5 and 8-8-8. */
    s_field_t f[3];
    uint32_t m[3] = {0x7C00, 0x3E0, 0x1F};
    if (bits == 32) m[0] = 0xFF0000, m[1] = 0xFF00, m[2] = 0xFF;
    size_t after = 14 + (size_t)hs; /* where the palette (or masks) start */
    if (fields) {
        const unsigned char *mp = h + 40;
        if (hs < 52) {
            if (size < after + 12) return nr_seterr(err, errlen, NR_EIMAGE, "truncated BMP: colour masks cut short");
            mp = data + after;
            after += 12;
        }
        uint32_t mm[3] = {s_u32(mp), s_u32(mp + 4), s_u32(mp + 8)};
        if (mm[0] | mm[1] | mm[2]) memcpy(m, mm, sizeof m); /* all zero: the defaults, as PIL */
    }
    for (int c = 0; c < 3; c++)
        if (s_field(m[c], &f[c]) < 0)
            return nr_seterr(err, errlen, NR_EIMAGE, "BMP colour mask %08x is not contiguous", (unsigned)m[c]);

    /* Palette. */
    unsigned char pal[256][3];
    memset(pal, 0, sizeof pal);
    if (bits <= 8) {
        uint32_t n = colors ? colors : 1u << bits;
        if (n > (1u << bits)) n = 1u << bits; /* entries past 2^bits are never used */
        if (size < after || (size - after) / (size_t)pal_entry < n)
            return nr_seterr(err, errlen, NR_EIMAGE, "truncated BMP: palette of %u colours cut short", n);
        for (uint32_t i = 0; i < n; i++) {
            const unsigned char *e = data + after + (size_t)i * pal_entry; /* B, G, R */
            pal[i][0] = e[2];
            pal[i][1] = e[1];
            pal[i][2] = e[0];
        }
    }

    const uint64_t stride = (((uint64_t)width * bits + 31) / 32) * 4;
    if (offset > size || (size - offset) / stride < (uint64_t)height)
        return nr_seterr(err, errlen, NR_EIMAGE, "truncated BMP: %llu rows of %llu bytes do not fit in %zu bytes",
                         (unsigned long long)height, (unsigned long long)stride, size);
    nr_image_t *img = nr_image_new((int)width, (int)height);
    if (!img)
        return nr_seterr(err, errlen, NR_ENOMEM, "no memory for a %lldx%lld BMP", (long long)width, (long long)height);
    for (int64_t y = 0; y < height; y++) {
        const unsigned char *s = data + offset + (size_t)stride * (size_t)(top_down ? y : height - 1 - y);
        unsigned char *d = img->data + (size_t)y * (size_t)width * 3;
        for (int64_t x = 0; x < width; x++, d += 3) {
            if (bits <= 8) {
                unsigned i = bits == 8 ? s[x] : (s[x * bits / 8] >> (8 - bits - (x * bits) % 8)) & ((1u << bits) - 1);
                memcpy(d, pal[i], 3);
            } else if (bits == 24) {
                d[0] = s[3 * x + 2];
                d[1] = s[3 * x + 1];
                d[2] = s[3 * x];
            } else {
                uint32_t px = bits == 16 ? s_u16(s + 2 * x) : s_u32(s + 4 * x);
                for (int c = 0; c < 3; c++) d[c] = s_scale(px, &f[c]);
            }
        }
    }
    if ((rc = nr_image_finish(img, 1, NR_IMAGE_BMP, err, errlen)) < 0) {
        nr_image_destroy(&img);
        return rc;
    }
    *out = img;
    return 0;
}
