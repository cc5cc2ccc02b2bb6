/* Integration test of job thumbnails (issue 20's review gallery), against
 * a real redis-server, narrator-broker and narrator-worker-vision on the
 * tiny vit-gpt2 fixture: the vision worker's RESULT frame 1 is kept as
 * the job's thumbnail, FETCH of stage "thumbnail" returns it (a JPEG, its
 * longer side at most 256 px, the source's aspect, its pixels close to an
 * area average of the upright source: a made-up 900x600 TIFF with
 * orientation 6, a HEIC and a JPEG photo), stored with the outputs'
 * retention; FETCH of the last stage still gives its output.
 * A hostile worker's frame 1 (too big, not a JPEG, 8 MiB) is dropped
 * with a log line and its job still succeeds. Nothing asserts a time. */
#include "client/client.h"
#include "common/error.h"
#include "models/image.h"
#include "models/vision/thumbnail.h"
#include "tests/area_diff.h"
#include "tests/harness.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define S_WAIT_MS 60000

static struct {
    nr_harness_cluster_t cl;
    char *broker_bin;
    nr_client_t *client;
} C;

static void s_dump(void) {
    static const char *const names[] = {"broker.log", "worker-0.log", NULL};
    if (C.cl.dir) nr_harness_dump_logs(C.cl.dir, names, 6000);
}

#define s_require(cond, ...) NR_HARNESS_REQUIRE(s_dump, cond, __VA_ARGS__)

static void s_setup(void) {
    memset(&C, 0, sizeof C);
    C.broker_bin = nr_harness_program("narrator-broker");
    if (!C.broker_bin) cr_skip_test("narrator-broker is not built: %s", nr_harness_error());
    cr_assert_eq(nr_harness_cluster_start(&C.cl, "thumb", NULL), 0, "%s", nr_harness_error());
    static const char *const worker_args[] = {"--heartbeat-ms", "250", "--log-level", "debug", NULL};
    C.cl.worker_args = worker_args;
    const char *extra[] = {"--heartbeat-ms", "250", "--log-level", "debug", NULL};
    s_require(nr_harness_cluster_spawn_broker(&C.cl, C.broker_bin, "broker.log", extra) == 0, "%s",
              nr_harness_error());
    C.client = nr_client_new(C.cl.client_ep, 5000);
    cr_assert_not_null(C.client);
}

static void s_teardown(void) {
    nr_client_destroy(&C.client);
    nr_harness_cluster_stop(&C.cl);
    free(C.broker_bin);
    memset(&C, 0, sizeof C);
}

TestSuite(thumbnail_it, .init = s_setup, .fini = s_teardown, .timeout = 300);

/* Stops the broker with SIGTERM and requires a clean exit (it kept
 * running through whatever the test sent). */
static void s_end(void) {
    for (int i = 0; i < C.cl.n_workers; i++)
        if (C.cl.workers[i]) nr_harness_proc_stop(C.cl.workers[i], SIGTERM, 10000, NULL);
    int status = 0;
    s_require(nr_harness_proc_running(C.cl.broker), "the broker died");
    nr_harness_proc_stop(C.cl.broker, SIGTERM, 20000, &status);
    nr_harness_proc_destroy(&C.cl.broker);
    s_require(nr_harness_exit_code(status) == 0, "the broker exited %d (signal %d)", nr_harness_exit_code(status),
              nr_harness_exit_signal(status));
}

static void s_submit(const void *input, size_t size, char id[NR_PROTO_ID_MAX + 1]) {
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_submit(C.client, NULL, "vision", NULL, 0, input, size, &reply);
    s_require(rc == 0, "submit: %s (%s)", nr_strerror(rc), nr_client_error(C.client));
    snprintf(id, NR_PROTO_ID_MAX + 1, "%s", nr_harness_kv(&reply, "id"));
    nr_proto_msg_clear(&reply);
}

static void s_wait_done(const char *id) {
    nr_msg_t rec;
    nr_proto_msg_init(&rec);
    long long end = nr_harness_now_ms() + S_WAIT_MS;
    const char *state = "";
    while (nr_harness_now_ms() < end) {
        int rc = nr_client_status(C.client, id, &rec);
        s_require(rc == 0, "status %s: %s", id, nr_strerror(rc));
        state = nr_harness_kv(&rec, "state");
        if (nr_harness_job_final(state)) break;
        nr_harness_sleep_ms(50);
    }
    s_require(!strcmp(state, "done"), "job %s is %s: %s: %s", id, state, nr_harness_kv(&rec, "error"),
              nr_harness_kv(&rec, "error_message"));
    nr_proto_msg_clear(&rec);
}

/* FETCH of a stage; the frame (malloc'd) in *data when rc is 0. */
static int s_fetch(const char *id, const char *stage, uint8_t **data, size_t *size) {
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_fetch(C.client, id, stage, &reply);
    *data = NULL;
    *size = 0;
    if (rc == 0 && reply.frames_len > 0) {
        *data = reply.frames[0].data;
        *size = reply.frames[0].size;
        reply.frames[0].data = NULL;
    }
    nr_proto_msg_clear(&reply);
    return rc;
}

static char *s_redis(const char *a, const char *b) {
    static char out[256];
    const char *argv[] = {a, b};
    out[0] = '\0';
    nr_harness_redis_command(nr_harness_redis_port(C.cl.redis), 2, argv, out, sizeof out);
    return out;
}

/* ---- images ---- */

/* An uncompressed 8-bit RGB TIFF of w x h pixels with the Orientation tag. */
static uint8_t *s_tiff(const uint8_t *rgb, int w, int h, int orientation, size_t *size) {
    enum { NTAGS = 10 };
    const size_t ifd = 8, bps = ifd + 2 + NTAGS * 12 + 4, pixels = bps + 6, n = (size_t)w * h * 3;
    uint8_t *t = calloc(1, pixels + n);
    cr_assert_not_null(t);
    memcpy(t, "II*\0", 4);
    t[4] = (uint8_t)ifd;
    uint8_t *p = t + ifd;
    *p++ = NTAGS, *p++ = 0;
    const uint32_t tags[NTAGS][3] = {/* tag, type (3 short, 4 long), value */
                                     {256, 4, (uint32_t)w},     {257, 4, (uint32_t)h},
                                     {258, 3, (uint32_t)bps},   {259, 3, 1},
                                     {262, 3, 2},               {273, 4, (uint32_t)pixels},
                                     {274, 3, (uint32_t)orientation}, {277, 3, 3},
                                     {278, 4, (uint32_t)h},     {279, 4, (uint32_t)n}};
    for (int i = 0; i < NTAGS; i++, p += 12) {
        p[0] = (uint8_t)tags[i][0], p[1] = (uint8_t)(tags[i][0] >> 8);
        p[2] = (uint8_t)tags[i][1];
        p[4] = tags[i][0] == 258 ? 3 : 1; /* count */
        for (int b = 0; b < 4; b++) p[8 + b] = (uint8_t)(tags[i][2] >> (8 * b));
    }
    for (int i = 0; i < 3; i++) t[bps + 2 * i] = 8; /* BitsPerSample 8,8,8 */
    memcpy(t + pixels, rgb, n);
    *size = pixels + n;
    return t;
}

static nr_image_t *s_decode(const void *data, size_t size) {
    nr_image_t *img = NULL;
    char err[256] = "";
    s_require(nr_image_decode(data, size, NULL, &img, err, sizeof err) == 0, "%s", err);
    return img;
}

static nr_image_t *s_fixture(const char *rel) {
    char *path = nr_harness_source_path(rel);
    size_t n = 0;
    char *d = nr_harness_read_file(path, &n);
    cr_assert_not_null(d, "%s", path);
    nr_image_t *img = s_decode(d, n);
    free(d);
    free(path);
    return img;
}

/* Job id's thumbnail: a JPEG of the upright image's aspect, longer side
 * min(256, the image's), pixels near the area average of `upright`. */
static void s_check_thumbnail(const char *id, const nr_image_t *upright, const char *what) {
    uint8_t *jpeg = NULL;
    size_t n = 0;
    int rc = s_fetch(id, "thumbnail", &jpeg, &n);
    s_require(rc == 0 && jpeg, "%s: FETCH thumbnail: %s (%s)", what, nr_strerror(rc), nr_client_error(C.client));
    s_require(n >= 4 && n <= NR_THUMBNAIL_BYTES && jpeg[0] == 0xFF && jpeg[1] == 0xD8 && jpeg[2] == 0xFF,
              "%s: %zu bytes, not a JPEG", what, n);
    nr_msg_t rec;
    nr_proto_msg_init(&rec);
    s_require(nr_client_status(C.client, id, &rec) == 0, "status");
    s_require(nr_harness_kv_long(&rec, "vision.thumbnail") == (long)n, "%s: record says vision.thumbnail=%s, sent %zu",
              what, nr_harness_kv(&rec, "vision.thumbnail"), n);
    nr_proto_msg_clear(&rec);
    nr_image_t *t = s_decode(jpeg, n);
    s_require(t->format == NR_IMAGE_JPEG, "%s: decoded as %s", what, nr_image_format_name(t->format));
    int w, h;
    nr_thumbnail_size(upright->width, upright->height, 256, &w, &h);
    s_require(t->width == w && t->height == h, "%s: thumbnail %dx%d, want %dx%d (of %dx%d)", what, t->width,
              t->height, w, h, upright->width, upright->height);
    double d = nr_test_area_diff(upright, t);
    cr_log_info("%s: %dx%d thumbnail, %zu bytes, %.2f levels from the area average", what, t->width, t->height, n,
                d);
    s_require(d < 8.0, "%s: %.2f levels from the area average of the source", what, d);
    nr_image_destroy(&t);
    free(jpeg);
}

static void s_vision_worker(void) {
    char *bin = nr_harness_program("narrator-worker-vision");
    if (!bin) {
        s_teardown();
        cr_skip_test("narrator-worker-vision is not built");
    }
    char *model = nr_harness_source_path("tests/fixtures/vit-gpt2-tiny");
    const char *extra[] = {"--model", model, "--threads", "1", NULL};
    s_require(nr_harness_cluster_spawn_worker(&C.cl, bin, "vision-a", extra) >= 0, "%s", nr_harness_error());
    long have = nr_harness_wait_workers(C.client, "vision", 1, S_WAIT_MS);
    s_require(have >= 1, "no vision worker");
    free(model);
    free(bin);
}

Test(thumbnail_it, vision_jobs_get_thumbnails) {
    s_vision_worker();
    /* A 900x600 card stored turned (orientation 6): upright it is 600x900. */
    enum { W = 900, H = 600 };
    uint8_t *rgb = malloc((size_t)W * H * 3);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = rgb + ((size_t)y * W + x) * 3;
            p[0] = (uint8_t)(x * 255 / (W - 1));
            p[1] = (uint8_t)(y * 255 / (H - 1));
            p[2] = ((x / 50 + y / 50) & 1) ? 200 : 40;
        }
    size_t tiff_n = 0;
    uint8_t *tiff = s_tiff(rgb, W, H, 6, &tiff_n);
    /* Orientation 6 turns the stored image 90 degrees clockwise:
     * upright (x', y') is stored (y', H-1-x'). */
    nr_image_t *upright = nr_image_new(H, W);
    for (int y = 0; y < W; y++)
        for (int x = 0; x < H; x++)
            memcpy(upright->data + ((size_t)y * H + x) * 3, rgb + ((size_t)(H - 1 - x) * W + y) * 3, 3);

    char tiff_id[NR_PROTO_ID_MAX + 1], jpeg_id[NR_PROTO_ID_MAX + 1], heic_id[NR_PROTO_ID_MAX + 1] = "";
    s_submit(tiff, tiff_n, tiff_id);
    char *path = nr_harness_source_path("tests/fixtures/images/chelsea_317x211.jpg");
    size_t jpeg_n = 0;
    char *jpeg = nr_harness_read_file(path, &jpeg_n);
    free(path);
    cr_assert_not_null(jpeg);
    s_submit(jpeg, jpeg_n, jpeg_id);
#ifndef NR_TEST_NO_HEIF
    path = nr_harness_source_path("tests/fixtures/image_formats/heic_photo.heic");
    size_t heic_n = 0;
    char *heic = nr_harness_read_file(path, &heic_n);
    free(path);
    cr_assert_not_null(heic);
    s_submit(heic, heic_n, heic_id);
    free(heic);
#endif
    s_wait_done(tiff_id);
    s_wait_done(jpeg_id);
    s_check_thumbnail(tiff_id, upright, "TIFF 900x600, orientation 6");
    /* The photos against PIL's decode of them (the fixtures' .dec.png). */
    nr_image_t *ref = s_fixture("tests/fixtures/images/chelsea_317x211.dec.png");
    s_check_thumbnail(jpeg_id, ref, "JPEG 317x211");
    nr_image_destroy(&ref);
    if (heic_id[0]) {
        s_wait_done(heic_id);
        ref = s_fixture("tests/fixtures/image_formats/heic_photo.dec.png");
        s_check_thumbnail(heic_id, ref, "HEIC 64x48");
        nr_image_destroy(&ref);
    }

    /* FETCH of the route's last stage is still its output (the encoder
     * states), and stage input the submitted bytes. */
    uint8_t *data = NULL;
    size_t n = 0;
    s_require(s_fetch(jpeg_id, "vision", &data, &n) == 0 && n > 4 && !memcmp(data, "NRS", 3),
              "FETCH vision: %zu bytes, not the states frame", n);
    free(data);
    s_require(s_fetch(jpeg_id, "input", &data, &n) == 0 && n == jpeg_n && !memcmp(data, jpeg, n),
              "FETCH input: not the submitted bytes");
    free(data);

    /* Stored with the outputs' retention (the broker's default, one day). */
    char key[160];
    snprintf(key, sizeof key, "narrator:out:thumbnail:%s", tiff_id);
    long ttl = strtol(s_redis("TTL", key), NULL, 10);
    s_require(ttl > 3600 && ttl <= 86400, "TTL of %s: %ld", key, ttl);

    /* A job that never reached a worker that makes thumbnails has none. */
    char id[NR_PROTO_ID_MAX + 1];
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    s_require(nr_client_submit(C.client, NULL, "text", NULL, 0, "x", 1, &reply) == 0, "%s",
              nr_client_error(C.client));
    snprintf(id, sizeof id, "%s", nr_harness_kv(&reply, "id"));
    nr_proto_msg_clear(&reply);
    int rc = s_fetch(id, "thumbnail", &data, &n);
    s_require(rc == NR_ENOTFOUND, "FETCH thumbnail of a job without one: %s", nr_strerror(rc));
    s_require(strstr(nr_client_error(C.client), "no thumbnail"), "%s", nr_client_error(C.client));
    free(jpeg);
    free(tiff);
    free(rgb);
    nr_image_destroy(&upright);
    s_end();
}

/* A fake vision worker (tests/harness.h). */
static void *s_fake_worker(void *zctx) {
    void *s = nr_harness_fake_worker(zctx, C.cl.worker_ep, "vision", "hostile", 8);
    cr_assert_not_null(s, "%s", nr_harness_error());
    return s;
}

Test(thumbnail_it, hostile_thumbnails_are_dropped_and_jobs_succeed) {
    void *zctx = zmq_ctx_new();
    void *w = s_fake_worker(zctx);
    s_require(nr_harness_wait_workers(C.client, "vision", 1, S_WAIT_MS) >= 1, "the fake worker is not live");
    /* Frame 1 of each RESULT, by job: a JPEG-looking frame over 64 KiB,
     * text, 8 MiB of zeros, and last a real small JPEG (kept). */
    enum { N = 4 };
    size_t sizes[N] = {NR_THUMBNAIL_BYTES + 1, 2000, 8u << 20, 0};
    uint8_t *frames[N];
    for (int i = 0; i < 3; i++) frames[i] = calloc(1, sizes[i]);
    memset(frames[1], 'x', sizes[1]);
    memcpy(frames[0], "\xFF\xD8\xFF\xE0", 4);
    frames[0][sizes[0] - 2] = 0xFF, frames[0][sizes[0] - 1] = 0xD9;
    nr_image_t *card = nr_image_new(40, 30);
    memset(card->data, 120, 40 * 30 * 3);
    char err[256] = "";
    cr_assert_eq(nr_thumbnail_jpeg(card, 256, NR_THUMBNAIL_BYTES, &frames[3], &sizes[3], err, sizeof err), 0);
    nr_image_destroy(&card);

    char ids[N][NR_PROTO_ID_MAX + 1];
    for (int i = 0; i < N; i++) {
        char input[32];
        snprintf(input, sizeof input, "image %d", i);
        s_submit(input, strlen(input), ids[i]);
    }
    int answered = 0;
    long long end = nr_harness_now_ms() + S_WAIT_MS, next_beat = 0;
    while (answered < N && nr_harness_now_ms() < end) {
        zmq_pollitem_t it = {w, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 100);
        nr_msg_t m, r;
        nr_proto_msg_init(&m);
        nr_proto_msg_init(&r);
        if ((it.revents & ZMQ_POLLIN) && nr_proto_recv(w, NULL, NULL, &m, err, sizeof err) == 0 &&
            m.cmd == NR_CMD_JOB) {
            int k = -1;
            for (int i = 0; i < N; i++)
                if (!strcmp(m.id, ids[i])) k = i;
            s_require(k >= 0, "a JOB for an unknown id %s", m.id);
            r.cmd = NR_CMD_RESULT;
            snprintf(r.id, sizeof r.id, "%s", m.id);
            snprintf(r.stage, sizeof r.stage, "vision");
            r.attempt = m.attempt;
            cr_assert_eq(nr_proto_frame_add(&r, "states", 6), 0);
            cr_assert_eq(nr_proto_frame_add(&r, frames[k], sizes[k]), 0);
            s_require(nr_proto_send(w, NULL, 0, &r, err, sizeof err) == 0, "%s", err);
            answered++;
        }
        long long now = nr_harness_now_ms();
        if (now >= next_beat) {
            nr_proto_msg_clear(&r);
            r.cmd = NR_CMD_HEARTBEAT;
            nr_proto_send(w, NULL, 0, &r, err, sizeof err);
            next_beat = now + 250;
        }
        nr_proto_msg_clear(&m);
        nr_proto_msg_clear(&r);
    }
    s_require(answered == N, "the fake worker got %d of %d jobs", answered, N);
    for (int i = 0; i < N; i++) s_wait_done(ids[i]);
    for (int i = 0; i < 3; i++) {
        uint8_t *data = NULL;
        size_t n = 0;
        int rc = s_fetch(ids[i], "thumbnail", &data, &n);
        s_require(rc == NR_ENOTFOUND, "hostile thumbnail %d (%zu bytes): FETCH gave %s, %zu bytes", i, sizes[i],
                  nr_strerror(rc), n);
        free(data);
        char key[160];
        snprintf(key, sizeof key, "narrator:out:thumbnail:%s", ids[i]);
        s_require(!strcmp(s_redis("EXISTS", key), "0"), "%s is stored", key);
        /* The job's real output is there. */
        s_require(s_fetch(ids[i], "vision", &data, &n) == 0 && n == 6 && !memcmp(data, "states", 6),
                  "job %d lost its output", i);
        free(data);
    }
    uint8_t *data = NULL;
    size_t n = 0;
    s_require(s_fetch(ids[3], "thumbnail", &data, &n) == 0 && n == sizes[3] && !memcmp(data, frames[3], n),
              "the valid thumbnail was not kept as sent");
    free(data);
    char *log = nr_harness_path(C.cl.dir, "broker.log");
    char *text = nr_harness_read_file(log, NULL);
    s_require(text && strstr(text, "thumbnail from hostile/") && strstr(text, "dropped (8388608 bytes"),
              "no log line for the dropped thumbnails");
    free(text);
    free(log);
    for (int i = 0; i < N; i++) free(frames[i]);
    zmq_close(w);
    zmq_ctx_term(zctx);
    s_end();
}
