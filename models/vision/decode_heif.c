/* HEIC and AVIF (libheif) from memory to 8-bit RGB: the primary image,
 * decoded by libheif's HEVC or AV1 plugin with the HEIF transformations
 * (clean aperture, rotation, mirror) applied by libheif. An EXIF
 * orientation inside the file is not applied again: HEIF says irot/imir
 * are the truth and the EXIF tag only repeats them, and libheif, Apple
 * and pillow-heif all follow that. HDR (10/12-bit) is reduced to 8 bits by
 * libheif; alpha is dropped. The size check uses the image's ispe box,
 * before anything is decoded. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include <libheif/heif.h>

#include "common/error.h"
#include "models/vision/decode.h"

static pthread_once_t s_once = PTHREAD_ONCE_INIT;

/* Loads libheif's decoder plugins once (heif_init is not safe to race). */
static void s_init(void) { (void)heif_init(NULL); }

int nr_image_decode_heif(const unsigned char *data, size_t size, nr_image_format_t format,
                         const nr_image_params_t *p, nr_image_t **out, char *err, size_t errlen) {
    const char *fmt = format == NR_IMAGE_AVIF ? "AVIF" : "HEIC";
    pthread_once(&s_once, s_init);
    struct heif_context *ctx = heif_context_alloc();
    if (!ctx) return nr_seterr(err, errlen, NR_ENOMEM, "cannot create a %s reader", fmt);
    struct heif_image_handle *handle = NULL;
    struct heif_image *himg = NULL;
    struct heif_decoding_options *opt = NULL;
    nr_image_t *img = NULL;
    int rc = 0;
    struct heif_error he = heif_context_read_from_memory_without_copy(ctx, data, size, NULL);
    if (he.code == heif_error_Ok) he = heif_context_get_primary_image_handle(ctx, &handle);
    if (he.code != heif_error_Ok) {
        /* libheif refuses sizes over its own limit (32768x32768) while it
         * parses: that is a bomb, not corruption. */
        if (he.subcode == heif_suberror_Security_limit_exceeded)
            rc = nr_seterr(err, errlen, NR_EIMAGEBOMB, "%s image is over the size limit: %s", fmt, he.message);
        else
            rc = nr_seterr(err, errlen, NR_EIMAGE, "corrupt or truncated %s: %s", fmt, he.message);
        goto done;
    }
    /* Both the coded size and the size after rotation. */
    int iw = heif_image_handle_get_ispe_width(handle), ih = heif_image_handle_get_ispe_height(handle);
    int w = heif_image_handle_get_width(handle), h = heif_image_handle_get_height(handle);
    if ((rc = nr_image_check_size(fmt, (uint64_t)(iw > 0 ? iw : 0), (uint64_t)(ih > 0 ? ih : 0), p, err, errlen)) < 0 ||
        (rc = nr_image_check_size(fmt, (uint64_t)(w > 0 ? w : 0), (uint64_t)(h > 0 ? h : 0), p, err, errlen)) < 0)
        goto done;
    /* libheif 1.15 sizes a grid image by the grid's own descriptor, not by
     * ispe (fuzz_heif: 1.4 kB files whose ispe says 47x35 or 32303x35 made
     * it allocate 323 MB for a 12032x8960 grid). Its only guard is one
     * limit on either side, so: the longer side may be at most twice the
     * side of a square at the pixel limit (14142 at 50 Mpx: a 12000x3000
     * panorama passes), and libheif gets that side, plus 256 for coding
     * blocks (64 for HEVC, 128 for AV1), as its limit. A hostile file can
     * then make it allocate at most that side squared (about 4x the pixel
     * limit), never more. */
    int side = iw > ih ? iw : ih;
    if (w > side) side = w;
    if (h > side) side = h;
    double cap = 2.0 * sqrt((double)p->max_pixels);
    if (side > cap) {
        rc = nr_seterr(err, errlen, NR_EIMAGEBOMB,
                       "%s image is %dx%d: its longer side is over %.0f pixels, the most taken (twice the side "
                       "of a square at the pixel limit)",
                       fmt, w, h, cap);
        goto done;
    }
    heif_context_set_maximum_image_size_limit(ctx, (int)cap + 256);
    opt = heif_decoding_options_alloc();
    if (!opt) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "cannot allocate %s decoding options", fmt);
        goto done;
    }
    opt->convert_hdr_to_8bit = 1;
    /* AV1 through libaom: Debian 12's libheif + dav1d leaks a buffer on
     * every AVIF whose image item is empty (found by fuzz_heif). */
    if (format == NR_IMAGE_AVIF && opt->version >= 4) opt->decoder_id = "aom";
    he = heif_decode_image(handle, &himg, heif_colorspace_RGB, heif_chroma_interleaved_RGB, opt);
    if (he.code != heif_error_Ok) {
        rc = nr_seterr(err, errlen,
                       he.subcode == heif_suberror_Security_limit_exceeded ? NR_EIMAGEBOMB
                       : he.code == heif_error_Memory_allocation_error     ? NR_ENOMEM
                                                                           : NR_EIMAGE,
                       "cannot decode %s: %s", fmt, he.message);
        goto done;
    }
    int stride = 0;
    const uint8_t *plane = heif_image_get_plane_readonly(himg, heif_channel_interleaved, &stride);
    w = heif_image_get_width(himg, heif_channel_interleaved);
    h = heif_image_get_height(himg, heif_channel_interleaved);
    if (!plane || w <= 0 || h <= 0 || heif_image_get_bits_per_pixel_range(himg, heif_channel_interleaved) != 8 ||
        stride < w * 3) {
        rc = nr_seterr(err, errlen, NR_EIMAGE, "%s decoder gave no 8-bit RGB image", fmt);
        goto done;
    }
    if ((rc = nr_image_check_size(fmt, (uint64_t)w, (uint64_t)h, p, err, errlen)) < 0) goto done;
    if (!(img = nr_image_new(w, h))) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "no memory for a %dx%d %s", w, h, fmt);
        goto done;
    }
    for (int y = 0; y < h; y++) memcpy(img->data + (size_t)y * w * 3, plane + (size_t)y * stride, (size_t)w * 3);
    if ((rc = nr_image_finish(img, 1, format, err, errlen)) < 0) goto done;
    *out = img;
    img = NULL;
done:
    nr_image_destroy(&img);
    if (himg) heif_image_release(himg);
    if (opt) heif_decoding_options_free(opt);
    if (handle) heif_image_handle_release(handle);
    heif_context_free(ctx);
    return rc;
}
