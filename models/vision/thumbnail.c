/* Gallery thumbnails: area downscale + libjpeg encode within a byte bound
 * (models/vision/thumbnail.h). libjpeg errors unwind through setjmp. */
#include "models/vision/thumbnail.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "common/error.h"
#include "models/preprocess.h"

void nr_thumbnail_size(int sw, int sh, int max_side, int *w, int *h) {
    int side = sw > sh ? sw : sh;
    if (side <= max_side) {
        *w = sw, *h = sh;
        return;
    }
    /* Rounded to nearest: the aspect ratio stays as close as pixels allow. */
    *w = (int)(((long long)sw * max_side * 2 + side) / (2LL * side));
    *h = (int)(((long long)sh * max_side * 2 + side) / (2LL * side));
    if (*w < 1) *w = 1;
    if (*h < 1) *h = 1;
}

/* libjpeg's error manager, and the memory destination's buffer: both
 * written by libjpeg through pointers, read after a longjmp. */
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jmp;
    char text[JMSG_LENGTH_MAX];
    unsigned char *mem;
    unsigned long size;
} s_enc_t;

static void s_error_exit(j_common_ptr cinfo) {
    s_enc_t *e = (s_enc_t *)cinfo->err;
    cinfo->err->format_message(cinfo, e->text);
    longjmp(e->jmp, 1);
}

/* Encodes w x h RGB at quality into *out (malloc'd by libjpeg's memory
 * destination; the caller frees). 0 or NR_EINTERNAL. */
static int s_encode(const unsigned char *rgb, int w, int h, int quality, unsigned char **out, size_t *len,
                    char *err, size_t errlen) {
    struct jpeg_compress_struct cinfo;
    s_enc_t *e = calloc(1, sizeof *e);
    if (!e) return nr_seterr(err, errlen, NR_ENOMEM, "thumbnail: out of memory");
    cinfo.err = jpeg_std_error(&e->pub);
    e->pub.error_exit = s_error_exit;
    if (setjmp(e->jmp)) {
        jpeg_destroy_compress(&cinfo);
        int rc = nr_seterr(err, errlen, NR_EINTERNAL, "thumbnail: libjpeg: %s", e->text);
        free(e->mem);
        free(e);
        return rc;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &e->mem, &e->size);
    cinfo.image_width = (JDIMENSION)w;
    cinfo.image_height = (JDIMENSION)h;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    cinfo.optimize_coding = TRUE; /* smaller files for the same pixels */
    /* Full-resolution colour (4:4:4): at 256 px, halving the chroma blurs
     * coloured edges visibly, and the files stay small. */
    for (int c = 0; c < cinfo.num_components; c++)
        cinfo.comp_info[c].h_samp_factor = cinfo.comp_info[c].v_samp_factor = 1;
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)cinfo.next_scanline * (size_t)w * 3);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *out = e->mem;
    *len = e->size;
    free(e);
    return 0;
}

int nr_thumbnail_jpeg(const nr_image_t *img, int max_side, size_t max_bytes, unsigned char **jpeg, size_t *len,
                      char *err, size_t errlen) {
    if (!img || !img->data || img->width < 1 || img->height < 1 || max_side < 1 || !jpeg || !len)
        return nr_seterr(err, errlen, NR_EINVAL, "thumbnail: bad arguments");
    *jpeg = NULL;
    *len = 0;
    static const int qualities[] = {90, 75, 60, 40};
    int w, h;
    nr_thumbnail_size(img->width, img->height, max_side, &w, &h);
    for (;;) {
        unsigned char *small = malloc((size_t)w * (size_t)h * 3);
        if (!small) return nr_seterr(err, errlen, NR_ENOMEM, "thumbnail: out of memory");
        int rc = nr_preprocess_resize(img->data, img->width, img->height, small, w, h, NR_RESAMPLE_BOX);
        if (rc) {
            free(small);
            return nr_seterr(err, errlen, rc, "thumbnail: cannot resize %dx%d to %dx%d", img->width,
                             img->height, w, h);
        }
        for (size_t q = 0; q < sizeof qualities / sizeof qualities[0]; q++) {
            unsigned char *out = NULL;
            size_t n = 0;
            rc = s_encode(small, w, h, qualities[q], &out, &n, err, errlen);
            if (rc) {
                free(small);
                return rc;
            }
            if (n <= max_bytes) {
                free(small);
                *jpeg = out;
                *len = n;
                return 0;
            }
            free(out);
        }
        free(small);
        if (w <= 8 && h <= 8)
            return nr_seterr(err, errlen, NR_EINVAL, "thumbnail: %zu bytes are too few for any JPEG", max_bytes);
        /* Still too big at the lowest quality: half the size. */
        w = w > 1 ? w / 2 : 1;
        h = h > 1 ? h / 2 : 1;
    }
}
