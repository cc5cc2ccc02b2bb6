/* Preprocessing: PIL-exact resize of 8-bit RGB, then rescale, normalize and
 * CHW float layout as transformers' ViTImageProcessor (slow, PIL path).
 *
 * The resize follows the algorithm of Pillow's libImaging/Resample.c: for
 * each axis, per output pixel, a window of filter taps centred on
 * (i + 0.5) * scale whose support grows with the scale when shrinking
 * (antialiasing); taps normalised to sum 1, then converted to fixed point
 * with 22 fractional bits. Horizontal pass first (only over the source rows
 * the vertical pass needs), rounded and clipped to uint8, then vertical. */
#include "models/preprocess.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/error.h"
#include "models/config.h"

#define S_PRECISION_BITS (32 - 8 - 2)

nr_preprocess_params_t nr_preprocess_default_params(void) {
    nr_preprocess_params_t p;
    p.width = 224;
    p.height = 224;
    p.resample = NR_RESAMPLE_BILINEAR;
    p.do_resize = 1;
    p.do_rescale = 1;
    p.rescale_factor = 1.0 / 255.0;
    p.do_normalize = 1;
    for (int c = 0; c < 3; c++) {
        p.mean[c] = 0.5f;
        p.std[c] = 0.5f;
    }
    return p;
}

/* ---- filters (PIL's definitions) ------------------------------------------ */

static double s_box(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

static double s_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double s_hamming(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * M_PI;
    return sin(x) / x * (0.54f + 0.46f * cos(x));
}

static double s_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double s_sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double s_lanczos(double x) { return (-3.0 <= x && x < 3.0) ? s_sinc(x) * s_sinc(x / 3) : 0.0; }

typedef struct {
    double (*fn)(double);
    double support;
} s_filter_t;

static int s_filter_for(nr_resample_t r, s_filter_t *f) {
    switch (r) {
    case NR_RESAMPLE_BOX: *f = (s_filter_t){s_box, 0.5}; return 0;
    case NR_RESAMPLE_BILINEAR: *f = (s_filter_t){s_bilinear, 1.0}; return 0;
    case NR_RESAMPLE_HAMMING: *f = (s_filter_t){s_hamming, 1.0}; return 0;
    case NR_RESAMPLE_BICUBIC: *f = (s_filter_t){s_bicubic, 2.0}; return 0;
    case NR_RESAMPLE_LANCZOS: *f = (s_filter_t){s_lanczos, 3.0}; return 0;
    default: return NR_EINVAL;
    }
}

/* Taps for one axis: for output i, `first[i]` is the first source index and
 * `count[i]` the number of taps, with fixed-point weights at w[i * ksize].
 * Returns ksize (> 0) or a negative code. */
static int s_taps(int in_size, int out_size, const s_filter_t *f, int **first_out, int **count_out,
                  int32_t **w_out) {
    const double scale = (double)(float)in_size / out_size; /* PIL: (double)(in1 - in0) / outSize, floats */
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = f->support * filterscale;
    const int ksize = (int)ceil(support) * 2 + 1;
    if ((size_t)out_size > SIZE_MAX / sizeof(double) / (size_t)ksize) return NR_ENOMEM;
    double *k = malloc(sizeof(double) * (size_t)ksize);
    int32_t *w = calloc((size_t)out_size * ksize, sizeof(int32_t));
    int *first = malloc(sizeof(int) * (size_t)out_size);
    int *count = malloc(sizeof(int) * (size_t)out_size);
    if (!k || !w || !first || !count) {
        free(k);
        free(w);
        free(first);
        free(count);
        return NR_ENOMEM;
    }
    const double ss = 1.0 / filterscale;
    for (int i = 0; i < out_size; i++) {
        const double center = (i + 0.5) * scale;
        int lo = (int)(center - support + 0.5); /* truncation, as PIL */
        if (lo < 0) lo = 0;
        int hi = (int)(center + support + 0.5);
        if (hi > in_size) hi = in_size;
        const int n = hi - lo;
        double sum = 0.0;
        for (int x = 0; x < n; x++) {
            k[x] = f->fn((x + lo - center + 0.5) * ss);
            sum += k[x];
        }
        for (int x = 0; x < n; x++) {
            double v = sum != 0.0 ? k[x] / sum : k[x];
            /* Round half away from zero into fixed point. */
            w[(size_t)i * ksize + x] = v < 0 ? (int32_t)(-0.5 + v * (1 << S_PRECISION_BITS))
                                             : (int32_t)(0.5 + v * (1 << S_PRECISION_BITS));
        }
        first[i] = lo;
        count[i] = n > 0 ? n : 0;
    }
    free(k);
    *first_out = first;
    *count_out = count;
    *w_out = w;
    return ksize;
}

static inline unsigned char s_clip8(int32_t v) {
    v >>= S_PRECISION_BITS; /* arithmetic shift: floor, as PIL's lookup index */
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

int nr_preprocess_resize(const unsigned char *src, int sw, int sh, unsigned char *dst, int dw, int dh,
                         nr_resample_t resample) {
    s_filter_t f;
    if (!src || !dst || sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0) return NR_EINVAL;
    if (s_filter_for(resample, &f) < 0) return NR_EINVAL;
    if (sw == dw && sh == dh) {
        memcpy(dst, src, (size_t)sw * sh * 3);
        return 0;
    }
    int *hfirst = NULL, *hcount = NULL, *vfirst = NULL, *vcount = NULL;
    int32_t *hw = NULL, *vw = NULL;
    unsigned char *tmp = NULL;
    int rc = 0;
    const int need_h = dw != sw, need_v = dh != sh;
    int hk = s_taps(sw, dw, &f, &hfirst, &hcount, &hw);
    if (hk < 0) return hk;
    int vk = s_taps(sh, dh, &f, &vfirst, &vcount, &vw);
    if (vk < 0) {
        rc = vk;
        goto done;
    }
    /* Horizontal pass over only the rows the vertical pass reads. */
    const unsigned char *vin = src; /* input of the vertical pass */
    int row0 = 0;
    if (need_h) {
        const int ylo = vfirst[0], yhi = vfirst[dh - 1] + vcount[dh - 1];
        const int rows = yhi - ylo;
        tmp = malloc((size_t)dw * (rows > 0 ? rows : 1) * 3);
        if (!tmp) {
            rc = NR_ENOMEM;
            goto done;
        }
        for (int y = 0; y < rows; y++) {
            const unsigned char *s = src + (size_t)(y + ylo) * sw * 3;
            unsigned char *d = tmp + (size_t)y * dw * 3;
            for (int x = 0; x < dw; x++) {
                const int32_t *k = hw + (size_t)x * hk;
                const unsigned char *p = s + (size_t)hfirst[x] * 3;
                int32_t a0 = 1 << (S_PRECISION_BITS - 1), a1 = a0, a2 = a0;
                for (int t = 0; t < hcount[x]; t++) {
                    a0 += p[3 * t] * k[t];
                    a1 += p[3 * t + 1] * k[t];
                    a2 += p[3 * t + 2] * k[t];
                }
                d[3 * x] = s_clip8(a0);
                d[3 * x + 1] = s_clip8(a1);
                d[3 * x + 2] = s_clip8(a2);
            }
        }
        vin = tmp;
        row0 = ylo;
        if (!need_v) {
            memcpy(dst, tmp, (size_t)dw * dh * 3);
            goto done;
        }
    }
    /* Vertical pass; the width here is dw (== sw when no horizontal pass). */
    for (int y = 0; y < dh; y++) {
        const int32_t *k = vw + (size_t)y * vk;
        const int y0 = vfirst[y] - row0;
        unsigned char *d = dst + (size_t)y * dw * 3;
        for (int x = 0; x < dw * 3; x += 3) {
            int32_t a0 = 1 << (S_PRECISION_BITS - 1), a1 = a0, a2 = a0;
            for (int t = 0; t < vcount[y]; t++) {
                const unsigned char *p = vin + ((size_t)(y0 + t) * dw) * 3 + x;
                a0 += p[0] * k[t];
                a1 += p[1] * k[t];
                a2 += p[2] * k[t];
            }
            d[x] = s_clip8(a0);
            d[x + 1] = s_clip8(a1);
            d[x + 2] = s_clip8(a2);
        }
    }
done:
    free(hfirst);
    free(hcount);
    free(hw);
    free(vfirst);
    free(vcount);
    free(vw);
    free(tmp);
    return rc;
}

void nr_preprocess_normalize(const unsigned char *rgb, int w, int h, const nr_preprocess_params_t *params,
                             float *chw) {
    const size_t plane = (size_t)w * h;
    for (int c = 0; c < 3; c++) {
        float *o = chw + c * plane;
        for (size_t i = 0; i < plane; i++) {
            float x = params->do_rescale ? (float)((double)rgb[3 * i + c] * params->rescale_factor)
                                         : (float)rgb[3 * i + c];
            if (params->do_normalize) x = (x - params->mean[c]) / params->std[c];
            o[i] = x;
        }
    }
}

int nr_preprocess_image(const nr_image_t *img, const nr_preprocess_params_t *params, float *out,
                        size_t out_count) {
    if (!img || !img->data || !params || !out) return NR_EINVAL;
    const int w = params->do_resize ? params->width : img->width;
    const int h = params->do_resize ? params->height : img->height;
    if (w <= 0 || h <= 0 || out_count < (size_t)3 * w * h) return NR_EINVAL;
    if (!params->do_resize || (w == img->width && h == img->height)) {
        nr_preprocess_normalize(img->data, w, h, params, out);
        return 0;
    }
    unsigned char *tmp = malloc((size_t)w * h * 3);
    if (!tmp) return NR_ENOMEM;
    int rc = nr_preprocess_resize(img->data, img->width, img->height, tmp, w, h, params->resample);
    if (rc == 0) nr_preprocess_normalize(tmp, w, h, params, out);
    free(tmp);
    return rc;
}

/* ---- preprocessor_config.json ---------------------------------------------- */

static int s_json_triple(const cJSON *a, float v[3]) {
    /* Out-of-range doubles are refused before the cast (undefined behaviour). */
    if (cJSON_IsNumber(a)) {
        if (!(fabs(a->valuedouble) <= FLT_MAX)) return -1;
        v[0] = v[1] = v[2] = (float)a->valuedouble;
        return 0;
    }
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 3) return -1;
    for (int i = 0; i < 3; i++) {
        const cJSON *e = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(e) || !(fabs(e->valuedouble) <= FLT_MAX)) return -1;
        v[i] = (float)e->valuedouble;
    }
    return 0;
}

static int s_json_flag(const cJSON *root, const char *key, int *out) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!e) return 0;
    if (!cJSON_IsBool(e)) return -1;
    *out = cJSON_IsTrue(e);
    return 0;
}

int nr_preprocess_load_config(const char *path, nr_preprocess_params_t *params, char *err, size_t errlen) {
    if (!path || !params) return nr_seterr(err, errlen, NR_EINVAL, "nr_preprocess_load_config: bad arguments");
    size_t len = 0;
    char *text = nr_model_read_file(path, (size_t)1 << 20, &len);
    if (!text) return nr_seterr(err, errlen, NR_EMODEL, "%s: cannot read (missing or over 1 MiB)", path);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return nr_seterr(err, errlen, NR_EMODEL, "%s: not a JSON object", path);
    }
    nr_preprocess_params_t p = *params;
    const char *bad = NULL;
    const cJSON *e;
    if ((e = cJSON_GetObjectItemCaseSensitive(root, "size"))) {
        if (cJSON_IsNumber(e)) {
            p.width = p.height = e->valueint;
        } else if (cJSON_IsObject(e)) {
            const cJSON *hh = cJSON_GetObjectItemCaseSensitive(e, "height");
            const cJSON *ww = cJSON_GetObjectItemCaseSensitive(e, "width");
            if (cJSON_IsNumber(hh) && cJSON_IsNumber(ww)) {
                p.height = hh->valueint;
                p.width = ww->valueint;
            } else {
                bad = "size (only an int or {height, width} is supported)";
            }
        } else {
            bad = "size";
        }
        if (!bad && (p.width <= 0 || p.height <= 0 || p.width > 16384 || p.height > 16384)) bad = "size";
    }
    if (!bad && (e = cJSON_GetObjectItemCaseSensitive(root, "resample"))) {
        s_filter_t f;
        if (!cJSON_IsNumber(e) || s_filter_for((nr_resample_t)e->valueint, &f) < 0)
            bad = "resample (supported: 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)";
        else
            p.resample = (nr_resample_t)e->valueint;
    }
    if (!bad && s_json_flag(root, "do_resize", &p.do_resize) < 0) bad = "do_resize";
    if (!bad && s_json_flag(root, "do_rescale", &p.do_rescale) < 0) bad = "do_rescale";
    if (!bad && s_json_flag(root, "do_normalize", &p.do_normalize) < 0) bad = "do_normalize";
    if (!bad && (e = cJSON_GetObjectItemCaseSensitive(root, "rescale_factor"))) {
        if (!cJSON_IsNumber(e) || !(e->valuedouble > 0))
            bad = "rescale_factor";
        else
            p.rescale_factor = e->valuedouble;
    }
    if (!bad && (e = cJSON_GetObjectItemCaseSensitive(root, "image_mean")) && s_json_triple(e, p.mean) < 0)
        bad = "image_mean";
    if (!bad && (e = cJSON_GetObjectItemCaseSensitive(root, "image_std"))) {
        if (s_json_triple(e, p.std) < 0 || p.std[0] == 0 || p.std[1] == 0 || p.std[2] == 0) bad = "image_std";
    }
    cJSON_Delete(root);
    if (bad) return nr_seterr(err, errlen, NR_EMODEL, "%s: bad value for %s", path, bad);
    *params = p;
    return 0;
}
