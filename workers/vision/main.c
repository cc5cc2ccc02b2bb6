/* narrator-worker-vision: the vision stage; image bytes (JPEG/PNG/WebP/TIFF/GIF/BMP/HEIC/AVIF) in,
 * the image encoder's states out as one states frame naming the family
 * (models/states.h). Serves any captioner family (models/family.h).
 *
 * The checkpoint folder (--model) is loaded once at start, encoder only.
 * A job whose input is not a usable image fails alone and for good
 * (not_an_image, bad_image, image_too_large, too_large); the worker keeps
 * serving. With --batch-size B > 1 the runtime hands over up to B jobs at
 * once and their images go through the encoder in one call.
 *
 * Each RESULT also carries, as frame 1, a small JPEG thumbnail of the
 * decoded, upright image (models/vision/thumbnail.h) for the review
 * gallery; the broker keeps it as the job's thumbnail. One that cannot be
 * made is left out (logged): the job does not fail for it. */
#include "common/error.h"
#include "common/log.h"
#include "models/captioner.h"
#include "models/image.h"
#include "models/vision/thumbnail.h"
#include "workers/model.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    nr_worker_settings_t worker;
    char model[1024];
    long threads;
    long max_input_bytes;
    long max_pixels;
    long thumbnail_side;
} s_settings_t;

static const nr_config_option_t s_options[] = {
    NR_WORKER_CONFIG_OPTIONS(s_settings_t, worker),
    {"model", NR_CONFIG_STRING, 0, 0, "", offsetof(s_settings_t, model), sizeof(((s_settings_t *)0)->model),
     "checkpoint folder (Hugging Face layout of a supported family; required)"},
    {"threads", NR_CONFIG_INT, 0, 1024, "0", offsetof(s_settings_t, threads), 0,
     "CPU threads for the encoder (0 = all cores)"},
    {"max-input-bytes", NR_CONFIG_INT, 1, 64L << 20, "67108864", offsetof(s_settings_t, max_input_bytes), 0,
     "largest image file accepted, in bytes (larger: too_large)"},
    {"max-pixels", NR_CONFIG_INT, 1, 1000000000L, "50000000", offsetof(s_settings_t, max_pixels), 0,
     "largest width*height accepted, checked before decoding (larger: image_too_large)"},
    {"thumbnail-side", NR_CONFIG_INT, 0, 1024, "256", offsetof(s_settings_t, thumbnail_side), 0,
     "longer side of the JPEG thumbnail sent with each result (frame 1); 0 = none"},
    NR_CONFIG_END};

static const char s_usage[] =
    "Vision stage worker: decodes each job's image (input frame 0: JPEG, PNG, WebP, TIFF,\n"
    "GIF, BMP, HEIC or AVIF),\n"
    "preprocesses it as the checkpoint's image processor does and runs the image encoder\n"
    "of the checkpoint's family; the output (frame 0) is the encoder states\n"
    "as a states frame naming the family, for the text stage.\n"
    "Job option page=N (0..999): that page of a multi-page TIFF (narrate submit --all-pages).\n"
    "Frame 1: a JPEG thumbnail (longer side thumbnail-side, at most 64 KiB) for the review page.\n"
    "Results: model, family, image_bytes, thumbnail (its bytes, when sent), ms.\n"
    "A bad image fails its job (not_an_image, bad_image, image_too_large, too_large; final)\n"
    "and the worker keeps serving.\n"
    "--model DIR is required (or NARRATOR_WORKER_MODEL). With --batch-size B > 1 up to\n"
    "B images are encoded in one call (capacity defaults to B).";

typedef struct {
    nr_captioner_t *cap;
    size_t states_floats; /* seq * hidden per image */
    int thumbnail_side;   /* 0: no thumbnails */
} s_vision_t;

/* The thumbnails of one encode call, by image (seen callback). */
typedef struct {
    const s_vision_t *v;
    unsigned char **jpeg;
    size_t *len;
} s_thumbs_t;

static void s_thumb_seen(void *arg, int i, const nr_image_t *img) {
    s_thumbs_t *t = arg;
    char err[256] = "";
    if (!t->v->thumbnail_side) return;
    if (nr_thumbnail_jpeg(img, t->v->thumbnail_side, NR_THUMBNAIL_BYTES, &t->jpeg[i], &t->len[i], err, sizeof err))
        nr_log(NR_LOG_WARN, "no thumbnail for a %dx%d image: %s", img->width, img->height, err);
}

/* The input check every job gets before decoding: a frame that is there. */
static int s_input(const nr_msg_t *job, char *err, size_t errlen) {
    if (job->frames_len < 1) return nr_seterr(err, errlen, NR_ENOTIMAGE, "no input frame (expected image bytes)");
    if (job->frames[0].size == 0) return nr_seterr(err, errlen, NR_ENOTIMAGE, "empty input (expected image bytes)");
    return 0;
}

/* The job option page (a multi-page TIFF's page, 0-based; absent: 0).
 * NR_EOPTION for anything but a decimal 0..NR_IMAGE_MAX_PAGES-1. */
static int s_page(const nr_msg_t *job, int *page, char *err, size_t errlen) {
    const char *v = nr_proto_kv_get(job, "page");
    *page = 0;
    if (!v) return 0;
    long x = 0;
    size_t i = 0;
    for (; v[i] >= '0' && v[i] <= '9' && i < 4; i++) x = x * 10 + (v[i] - '0');
    if (i == 0 || v[i] || x >= NR_IMAGE_MAX_PAGES)
        return nr_seterr(err, errlen, NR_EOPTION, "option page=\"%.16s\" is not a page number 0..%d", v,
                         NR_IMAGE_MAX_PAGES - 1);
    *page = (int)x;
    return 0;
}

/* Fills a job's result from its encoder states: frame 0, the kv, and the
 * thumbnail as frame 1 when there is one (taken: *thumb set to NULL). */
static int s_result(const s_vision_t *v, const nr_msg_t *job, const float *states, unsigned char **thumb,
                    size_t thumb_len, nr_msg_t *result, char *err, size_t errlen) {
    unsigned char *frame = NULL;
    size_t len = 0;
    int rc = nr_captioner_states_to_frame(v->cap, states, &frame, &len);
    if (rc) return nr_seterr(err, errlen, rc, "cannot make the states frame");
    char bytes[32];
    snprintf(bytes, sizeof bytes, "%zu", job->frames[0].size);
    rc = nr_proto_kv_add(result, "model", nr_captioner_name(v->cap));
    if (rc == 0) rc = nr_proto_kv_add(result, "family", nr_captioner_family(v->cap));
    if (rc == 0) rc = nr_proto_kv_add(result, "image_bytes", bytes);
    if (rc == 0) rc = nr_proto_frame_take(result, &frame, len);
    if (rc == 0 && *thumb) {
        char size[32];
        snprintf(size, sizeof size, "%zu", thumb_len);
        rc = nr_proto_kv_add(result, "thumbnail", size); /* the record says there is one */
        if (rc == 0) rc = nr_proto_frame_take(result, thumb, thumb_len);
    }
    free(frame); /* NULL when taken */
    if (rc) return nr_seterr(err, errlen, rc, "cannot build the result");
    return 0;
}

/* One image's decode error with its detail: encode_images on that image
 * alone (decoding fails before the encoder runs, so this is cheap). */
static int s_image_error(const s_vision_t *v, const nr_msg_t *job, float *scratch, int code, char *err,
                         size_t errlen) {
    const void *bytes[1] = {job->frames[0].data};
    size_t sizes[1] = {job->frames[0].size};
    int status[1] = {0}, pages[1] = {0};
    char detail[512] = "";
    if (s_page(job, &pages[0], err, errlen)) return NR_EOPTION;
    int rc = nr_captioner_encode_pages(v->cap, bytes, sizes, pages, 1, scratch, status, detail, sizeof detail);
    if (rc == 0 && status[0] != 0 && detail[0]) return nr_seterr(err, errlen, status[0], "%s", detail);
    return nr_seterr(err, errlen, code, "%s", nr_strerror(code));
}

static int s_run(void *ctx, const nr_msg_t *job, nr_msg_t *result, char *err, size_t errlen) {
    const s_vision_t *v = ctx;
    int pages[1] = {0};
    int rc = s_input(job, err, errlen);
    if (rc == 0) rc = s_page(job, &pages[0], err, errlen);
    if (rc) return rc;
    float *states = malloc(v->states_floats * sizeof(float));
    if (!states) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    const void *bytes[1] = {job->frames[0].data};
    size_t sizes[1] = {job->frames[0].size};
    int status[1] = {0};
    char detail[512] = "";
    unsigned char *thumb[1] = {NULL};
    size_t thumb_len[1] = {0};
    s_thumbs_t t = {v, thumb, thumb_len};
    rc = nr_captioner_encode_seen(v->cap, bytes, sizes, pages, 1, s_thumb_seen, &t, states, status, detail,
                                  sizeof detail);
    if (rc) {
        rc = nr_seterr(err, errlen, rc, "%s", detail);
    } else if (status[0]) {
        rc = nr_seterr(err, errlen, status[0], "%s", detail[0] ? detail : nr_strerror(status[0]));
    } else {
        rc = s_result(v, job, states, &thumb[0], thumb_len[0], result, err, errlen);
    }
    free(thumb[0]);
    free(states);
    return rc;
}

static void s_run_batch(void *ctx, const nr_msg_t *const *jobs, size_t n, nr_msg_t *const *results, int *codes,
                        char *const *errs, size_t errlen) {
    const s_vision_t *v = ctx;
    const void **bytes = calloc(n, sizeof(*bytes));
    size_t *sizes = calloc(n, sizeof(*sizes));
    size_t *which = calloc(n, sizeof(*which)); /* batch slot -> job index */
    int *status = calloc(n, sizeof(*status));
    int *pages = calloc(n, sizeof(*pages));
    unsigned char **thumb = calloc(n, sizeof(*thumb));
    size_t *thumb_len = calloc(n, sizeof(*thumb_len));
    float *states = malloc((n + 1) * v->states_floats * sizeof(float)); /* + 1: scratch */
    if (!bytes || !sizes || !which || !status || !pages || !thumb || !thumb_len || !states) {
        for (size_t i = 0; i < n; i++) codes[i] = nr_seterr(errs[i], errlen, NR_ENOMEM, "out of memory");
        goto out;
    }
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        codes[i] = s_input(jobs[i], errs[i], errlen);
        if (codes[i] == 0) codes[i] = s_page(jobs[i], &pages[k], errs[i], errlen);
        if (codes[i]) continue;
        bytes[k] = jobs[i]->frames[0].data;
        sizes[k] = jobs[i]->frames[0].size;
        which[k++] = i;
    }
    if (k > 0) {
        char detail[512] = "";
        s_thumbs_t t = {v, thumb, thumb_len}; /* by batch slot */
        int rc = nr_captioner_encode_seen(v->cap, bytes, sizes, pages, k, s_thumb_seen, &t, states, status, detail,
                                          sizeof detail);
        float *scratch = states + (size_t)n * v->states_floats;
        for (int j = 0; j < k; j++) {
            size_t i = which[j];
            if (rc)
                codes[i] = nr_seterr(errs[i], errlen, rc, "%s", detail);
            else if (status[j])
                codes[i] = s_image_error(v, jobs[i], scratch, status[j], errs[i], errlen);
            else
                codes[i] = s_result(v, jobs[i], states + (size_t)j * v->states_floats, &thumb[j], thumb_len[j],
                                    results[i], errs[i], errlen);
        }
        nr_log(NR_LOG_DEBUG, "batch of %zu: %d encoded together", n, k);
    }
out:
    free(bytes);
    free(sizes);
    free(which);
    free(status);
    free(pages);
    for (size_t i = 0; thumb && i < n; i++) free(thumb[i]);
    free(thumb);
    free(thumb_len);
    free(states);
}

int main(int argc, char **argv) {
    s_settings_t settings;
    int rc = nr_worker_config_load(s_options, &settings, argc, argv, "narrator-worker-vision", s_usage);
    if (rc == 1) return 0;
    if (rc) return 2;
    nr_log_set_component("worker-vision");
    nr_captioner_params_t params = nr_captioner_default_params();
    params.load_encoder = 1;
    params.load_decoder = 0;
    params.max_image_bytes = (size_t)settings.max_input_bytes;
    params.max_image_pixels = (uint64_t)settings.max_pixels;
    s_vision_t vision = {.thumbnail_side = (int)settings.thumbnail_side};
    if (nr_worker_model_load("vision", &settings.worker, settings.model, settings.threads, &params, &vision.cap))
        return 2;
    int seq = 0, hidden = 0;
    nr_captioner_states_shape(vision.cap, &seq, &hidden);
    vision.states_floats = (size_t)seq * (size_t)hidden;
    nr_log(NR_LOG_INFO, "model %s (%s): states [%d, %d] per image, device %s", nr_captioner_name(vision.cap),
           nr_captioner_family(vision.cap), seq, hidden, settings.worker.device);
    return nr_worker_model_run("vision", &settings.worker, &vision.cap, &vision, s_run, s_run_batch);
}
