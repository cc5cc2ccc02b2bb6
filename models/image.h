/* Image decoding: JPEG, PNG, WebP, TIFF, GIF, BMP, HEIC and AVIF bytes
 * (detected by magic bytes) to 8-bit RGB, with EXIF orientation applied,
 * the way PIL's
 * ImageOps.exif_transpose(Image.open(...)).convert("RGB") sees them
 * (bit-identical to Debian's python3-pil 9.4 on every fixture in
 * tests/fixtures/images, which shares libjpeg-turbo/libpng/libwebp with it).
 *
 * Details: EXIF orientation is read from IFD0 of a JPEG APP1 "Exif" segment,
 * a PNG eXIf chunk or a WebP EXIF chunk. Every 4-channel JPEG (CMYK, YCCK)
 * is read as Adobe-inverted CMYK and converted with PIL's cmyk2rgb. One
 * deliberate difference: a 16-bit greyscale PNG keeps the high byte (PIL
 * 9.4 clips its mode "I" values to 0..255, which turns most of the image
 * white). Animated WebP is refused.
 *
 * The other formats (one file each under models/vision/):
 * - TIFF (libtiff): strips or tiles, contiguous or planar, 1/2/4/8/16-bit
 *   grey, palette, RGB(A), CMYK (PIL's cmyk2rgb, a plain inversion), JPEG-
 *   compressed YCbCr read as RGB; rarer layouts (subsampled YCbCr, CIE Lab,
 *   LogLuv) through libtiff's RGBA reader. 16-bit samples keep the high
 *   byte (PIL's ";16" unpackers; 16-bit grey differs from PIL as for PNG).
 *   The Orientation tag is applied like EXIF orientation (PIL's
 *   exif_transpose reads it too). Page params->page (0 = the first);
 *   nr_image_page_count says how many there are.
 * - GIF (giflib): the first frame on the logical screen, as PIL: pixels
 *   outside it are palette index 0 (or the transparent index when the
 *   frame has one), looked up in the palette.
 * - BMP (own decoder): 1/4/8-bit palette, 16/24/32-bit, BITFIELDS, bottom-
 *   up or top-down, OS/2 and V4/V5 headers; RLE and embedded JPEG/PNG are
 *   refused. 5- and 6-bit fields scale as PIL: v * 255 / max, rounded down.
 * - HEIC and AVIF (libheif): the primary image, 8-bit RGB (HDR reduced to
 *   8 bits by libheif), with the HEIF transformations (irot, imir, clap)
 *   that libheif applies; an EXIF orientation inside a HEIF file is
 *   ignored, as the HEIF standard asks (it repeats irot/imir). The
 *   longer side may be at most twice the side of a square at max_pixels
 *   (libheif 1.15 sizes a grid by its own descriptor; this bounds it).
 *   AV1 goes through libaom. Built with NR_HEIF=OFF, both are refused.
 * Alpha is dropped everywhere, as PIL's convert("RGB") does.
 * No global state: safe to call from several threads at once. */
#ifndef NR_MODELS_IMAGE_H
#define NR_MODELS_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    NR_IMAGE_UNKNOWN = 0,
    NR_IMAGE_JPEG,
    NR_IMAGE_PNG,
    NR_IMAGE_WEBP,
    NR_IMAGE_TIFF,
    NR_IMAGE_GIF,
    NR_IMAGE_BMP,
    NR_IMAGE_HEIC,
    NR_IMAGE_AVIF
} nr_image_format_t;

/* Most pages nr_image_page_count reports or params->page may name. */
#define NR_IMAGE_MAX_PAGES 1000

/* A decoded image: width*height*3 bytes, RGB, row-major, no padding. */
typedef struct {
    int width;
    int height;
    unsigned char *data;       /* (height, width, 3); owned by the image */
    nr_image_format_t format;  /* the format it was decoded from */
    int orientation;           /* EXIF orientation found (1..8; 1 when none); already applied */
} nr_image_t;

typedef struct {
    size_t max_bytes;     /* largest input accepted, in bytes (default 64 MiB) */
    uint64_t max_pixels;  /* decompression-bomb limit on width*height, checked from the
                             header before any pixel buffer is allocated (default 50e6) */
    int apply_exif;       /* apply the EXIF orientation tag (default 1) */
    int page;             /* page of a multi-page TIFF, 0-based (default 0); must be 0
                             for the other formats */
} nr_image_params_t;

nr_image_params_t nr_image_default_params(void);

/* Format from the first bytes (never from a file name); NR_IMAGE_UNKNOWN if none. */
nr_image_format_t nr_image_detect(const void *data, size_t size);
/* "jpeg", "png", "webp", "tiff", "gif", "bmp", "heic", "avif" or "unknown". */
const char *nr_image_format_name(nr_image_format_t format);

/* Allocates a zeroed width x height RGB image; NULL on bad size or no memory. */
nr_image_t *nr_image_new(int width, int height);

/* Decodes `size` bytes at `data` into a new RGB image stored in *out.
 * params may be NULL (defaults). Returns 0, or on error leaves *out NULL,
 * writes the detail into err and returns:
 *   NR_ENOTIMAGE  none of the formats above (unknown magic bytes, empty input)
 *   NR_EIMAGE     truncated or corrupt data, zero-sized image, a layout the
 *                 decoder does not handle (named in the message), no such page
 *   NR_EIMAGEBOMB more than params->max_pixels pixels
 *   NR_ETOOBIG    more than params->max_bytes bytes of input
 *   NR_ENOMEM, NR_EINVAL.
 * Grey, grey+alpha, RGBA (alpha dropped, not blended), palette, 16-bit
 * (high byte kept), CMYK/YCCK JPEG (Adobe inverted CMYK, as PIL) all give RGB.
 * A corrupt or missing EXIF block is ignored (orientation 1). */
int nr_image_decode(const void *data, size_t size, const nr_image_params_t *params, nr_image_t **out,
                    char *err, size_t errlen);

/* Number of pages in *count: a TIFF's directories, 1 for every other
 * format. Same checks and codes as nr_image_decode (the pages themselves
 * are not decoded); more than NR_IMAGE_MAX_PAGES is NR_EIMAGE. */
int nr_image_page_count(const void *data, size_t size, const nr_image_params_t *params, int *count, char *err,
                        size_t errlen);

/* Frees the image and sets *img to NULL; safe on NULL and twice. */
void nr_image_destroy(nr_image_t **img);

/* Applies EXIF orientation 1..8 to `img` in place (used by nr_image_decode;
 * exposed for tests). Returns 0 or NR_EINVAL / NR_ENOMEM. */
int nr_image_orient(nr_image_t *img, int orientation);

#endif
