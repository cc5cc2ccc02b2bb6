/* GIF (giflib) from memory to 8-bit RGB: the first frame only, placed on
 * the logical screen as PIL 9.4 shows frame 0. The screen grows to hold a
 * frame that overhangs it; pixels the frame does not cover are palette
 * index 0, or the frame's transparent index when it has one; indices are
 * looked up in the local palette, else the global one (no palette: grey
 * = index); an index past the palette's end is black. Only the records
 * before the first image are read, so later frames cost nothing. */
#include <stdlib.h>
#include <string.h>

#include <gif_lib.h>

#include "common/error.h"
#include "models/vision/decode.h"

typedef struct {
    const unsigned char *data;
    size_t size, pos;
} s_src_t;

static int s_read(GifFileType *g, GifByteType *buf, int n) {
    s_src_t *s = g->UserData;
    if (n <= 0 || s->pos >= s->size) return 0;
    size_t k = s->size - s->pos;
    if ((size_t)n < k) k = (size_t)n;
    memcpy(buf, s->data + s->pos, k);
    s->pos += k;
    return (int)k;
}

static const char *s_msg(int code) {
    const char *m = GifErrorString(code);
    return m ? m : "giflib error";
}

int nr_image_decode_gif(const unsigned char *data, size_t size, const nr_image_params_t *p, nr_image_t **out,
                        char *err, size_t errlen) {
    s_src_t src = {data, size, 0};
    int e = 0;
    GifFileType *g = DGifOpen(&src, s_read, &e);
    if (!g) return nr_seterr(err, errlen, NR_EIMAGE, "corrupt or truncated GIF: %s", s_msg(e));
    nr_image_t *img = NULL;
    unsigned char *idx = NULL;
    int rc = 0, transparent = -1;
    if ((rc = nr_image_check_size("GIF", (uint64_t)(g->SWidth > 0 ? g->SWidth : 0),
                                  (uint64_t)(g->SHeight > 0 ? g->SHeight : 0), p, err, errlen)) < 0)
        goto done;
    for (;;) {
        GifRecordType type;
        if (DGifGetRecordType(g, &type) == GIF_ERROR) {
            rc = nr_seterr(err, errlen, NR_EIMAGE, "corrupt or truncated GIF: %s", s_msg(g->Error));
            goto done;
        }
        if (type == TERMINATE_RECORD_TYPE) {
            rc = nr_seterr(err, errlen, NR_EIMAGE, "GIF has no image (only a header)");
            goto done;
        }
        if (type == EXTENSION_RECORD_TYPE) {
            int code;
            GifByteType *ext;
            if (DGifGetExtension(g, &code, &ext) == GIF_ERROR) {
                rc = nr_seterr(err, errlen, NR_EIMAGE, "corrupt or truncated GIF: %s", s_msg(g->Error));
                goto done;
            }
            /* Graphic control: byte 1 bit 0 says byte 4 is the transparent index. */
            if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4) transparent = (ext[1] & 1) ? ext[4] : -1;
            while (ext) {
                if (DGifGetExtensionNext(g, &ext) == GIF_ERROR) {
                    rc = nr_seterr(err, errlen, NR_EIMAGE, "corrupt or truncated GIF: %s", s_msg(g->Error));
                    goto done;
                }
            }
            continue;
        }
        if (type != IMAGE_DESC_RECORD_TYPE) {
            rc = nr_seterr(err, errlen, NR_EIMAGE, "corrupt GIF: unknown record");
            goto done;
        }
        break;
    }
    if (DGifGetImageDesc(g) == GIF_ERROR) {
        rc = nr_seterr(err, errlen, NR_EIMAGE, "corrupt or truncated GIF: %s", s_msg(g->Error));
        goto done;
    }
    const GifImageDesc *d = &g->Image;
    if (d->Left < 0 || d->Top < 0 || d->Width <= 0 || d->Height <= 0) {
        rc = nr_seterr(err, errlen, NR_EIMAGE, "GIF frame has zero size (%dx%d)", d->Width, d->Height);
        goto done;
    }
    uint64_t w = (uint64_t)d->Left + (uint64_t)d->Width, h = (uint64_t)d->Top + (uint64_t)d->Height;
    if (w < (uint64_t)g->SWidth) w = (uint64_t)g->SWidth;
    if (h < (uint64_t)g->SHeight) h = (uint64_t)g->SHeight;
    if ((rc = nr_image_check_size("GIF", w, h, p, err, errlen)) < 0) goto done;
    img = nr_image_new((int)w, (int)h);
    idx = malloc((size_t)w * (size_t)h);
    if (!img || !idx) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "no memory for a %llux%llu GIF", (unsigned long long)w,
                       (unsigned long long)h);
        goto done;
    }
    memset(idx, transparent >= 0 ? transparent : 0, (size_t)w * (size_t)h);
    /* Interlaced frames arrive in four passes: rows 0, 8, 16...; 4, 12...;
     * 2, 6...; 1, 3... */
    static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
    const int passes = d->Interlace ? 4 : 1;
    for (int pass = 0; pass < passes; pass++) {
        for (int y = d->Interlace ? start[pass] : 0; y < d->Height; y += d->Interlace ? step[pass] : 1) {
            GifPixelType *row = idx + ((size_t)(d->Top + y) * w + (size_t)d->Left);
            if (DGifGetLine(g, row, d->Width) == GIF_ERROR) {
                rc = nr_seterr(err, errlen, NR_EIMAGE, "corrupt or truncated GIF: %s", s_msg(g->Error));
                goto done;
            }
        }
    }
    const ColorMapObject *cm = d->ColorMap ? d->ColorMap : g->SColorMap;
    const size_t n = (size_t)w * (size_t)h;
    for (size_t i = 0; i < n; i++) {
        unsigned char *px = img->data + 3 * i;
        unsigned v = idx[i];
        if (!cm) {
            px[0] = px[1] = px[2] = (unsigned char)v;
        } else if ((int)v < cm->ColorCount && cm->Colors) {
            px[0] = cm->Colors[v].Red;
            px[1] = cm->Colors[v].Green;
            px[2] = cm->Colors[v].Blue;
        }
    }
    if ((rc = nr_image_finish(img, 1, NR_IMAGE_GIF, err, errlen)) < 0) goto done;
    *out = img;
    img = NULL;
done:
    DGifCloseFile(g, &e);
    free(idx);
    nr_image_destroy(&img);
    return rc;
}
