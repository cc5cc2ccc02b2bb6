/* narrator-gateway against a real cluster: a real redis-server,
 * narrator-broker, narrator-worker-speech (and the vision and text workers
 * on the tiny checkpoint when they are built) and the narrator-gateway
 * program, all on free loopback ports, driven with real HTTP requests
 * through libcurl.
 *
 * Assertions are about outcomes (status codes, JSON error names, job
 * states, WAV bytes, Prometheus text); waits have generous limits but no
 * time is asserted. On a failed check every process's log tail is printed. */
#include "client/client.h"
#include "common/error.h"
#include "tests/harness.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#define S_WAIT_MS 120000
#define S_MAX_BODY "65536" /* the gateway's --max-body-bytes in these tests */
#define S_MAX_WORKERS 8

typedef struct {
    nr_harness_cluster_t cl; /* redis, broker, workers, folder */
    nr_harness_proc_t *gateway;
    int http_port;
    char base[64];
    char *broker_bin, *gateway_bin;
} s_cluster_t;

static s_cluster_t C;

/* ---- diagnostics ---- */

static void s_dump_logs(void) {
    if (!C.cl.dir) return;
    static const char *const names[] = {"broker.log", "gateway.log", NULL};
    nr_harness_dump_logs(C.cl.dir, names, 5000);
    for (int i = 0; i < C.cl.n_workers; i++) {
        char *log = nr_harness_path(C.cl.dir, "worker-%d.log", i);
        nr_harness_dump_log(log, 3000);
        free(log);
    }
}

#define s_require(cond, ...) NR_HARNESS_REQUIRE(s_dump_logs, cond, __VA_ARGS__)

/* ---- the cluster ---- */

static void s_start_broker_with(const char *const *extra);
static void s_start_broker(void) { s_start_broker_with(NULL); }

/* Starts the broker with extra flags (NULL-ended, may be NULL). */
static void s_start_broker_with(const char *const *extra) {
    const char *args[32] = {"--heartbeat-ms", "250", "--retry-backoff-ms", "50", "--log-level", "debug"};
    int n = 6;
    for (int i = 0; extra && extra[i] && n < 31; i++) args[n++] = extra[i];
    args[n] = NULL;
    s_require(nr_harness_cluster_spawn_broker(&C.cl, C.broker_bin, "broker.log", args) == 0, "%s",
              nr_harness_error());
}

/* Starts narrator-gateway for `broker_ep` with extra flags (NULL-ended). */
static void s_start_gateway(const char *broker_ep, const char *const *extra) {
    C.http_port = nr_harness_free_port();
    cr_assert_gt(C.http_port, 0);
    snprintf(C.base, sizeof C.base, "http://127.0.0.1:%d", C.http_port);
    char port[16];
    snprintf(port, sizeof port, "%d", C.http_port);
    char *log = nr_harness_path(C.cl.dir, "gateway.log");
    char *page = nr_harness_source_path("client/gateway/static");
    const char *argv[40];
    int n = 0;
    argv[n++] = C.gateway_bin;
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--broker";
    argv[n++] = broker_ep;
    argv[n++] = "--max-body-bytes";
    argv[n++] = S_MAX_BODY;
    argv[n++] = "--log-level";
    argv[n++] = "debug";
    if (page) {
        argv[n++] = "--static-dir";
        argv[n++] = page;
    }
    for (int i = 0; extra && extra[i] && n < 38; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    C.gateway = nr_harness_spawn(argv, NULL, log);
    free(log);
    free(page);
    s_require(C.gateway != NULL, "gateway did not start: %s", nr_harness_error());
    s_require(nr_harness_wait_port(C.http_port, 20000) == 0, "gateway is not listening: %s",
              nr_harness_error());
}

static void s_start_worker(const char *stage) {
    char prog[64];
    snprintf(prog, sizeof prog, "narrator-worker-%s", stage);
    char *bin = nr_harness_program(prog);
    if (!bin) cr_skip_test("%s is not built", prog);
    cr_assert_lt(C.cl.n_workers, S_MAX_WORKERS);
    char *model = nr_harness_source_path("tests/fixtures/vit-gpt2-tiny");
    char name[32];
    snprintf(name, sizeof name, "%s-%d", stage, C.cl.n_workers);
    const char *model_args[] = {"--model", model, "--threads", "1", NULL};
    if (strcmp(stage, "speech")) cr_assert_not_null(model, "%s", nr_harness_error());
    int index = nr_harness_cluster_spawn_worker(&C.cl, bin, name, strcmp(stage, "speech") ? model_args : NULL);
    free(model);
    free(bin);
    s_require(index >= 0, "%s did not start: %s", prog, nr_harness_error());
}

/* redis + broker + gateway; workers are started by each test. */
static void s_setup(void) {
    memset(&C, 0, sizeof C);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    C.broker_bin = nr_harness_program("narrator-broker");
    if (!C.broker_bin) cr_skip_test("narrator-broker is not built: %s", nr_harness_error());
    C.gateway_bin = nr_harness_program("narrator-gateway");
    if (!C.gateway_bin) cr_skip_test("narrator-gateway is not built: %s", nr_harness_error());
    nr_harness_redis_params_t rp;
    nr_harness_redis_default_params(&rp);
    rp.appendonly = 0;
    cr_assert_eq(nr_harness_cluster_start(&C.cl, "gw", &rp), 0, "%s", nr_harness_error());
    static const char *const worker_args[] = {"--heartbeat-ms", "250", "--log-level", "debug", NULL};
    C.cl.worker_args = worker_args;
    s_start_broker();
}

static void s_teardown(void) {
    if (C.gateway) nr_harness_proc_stop(C.gateway, SIGTERM, 10000, NULL);
    nr_harness_proc_destroy(&C.gateway);
    nr_harness_cluster_stop(&C.cl);
    free(C.broker_bin);
    free(C.gateway_bin);
    curl_global_cleanup();
    memset(&C, 0, sizeof C);
}

/* ---- HTTP ---- */

typedef struct {
    long status;
    char *body; /* NUL-terminated */
    size_t size;
    char content_type[128];
    char retry_after[32];
    char allow[64];
    char location[128];
    char content_range[96];
    cJSON *json; /* the body parsed, when it is JSON */
    int curl_error;
} s_resp_t;

typedef struct {
    const char *method; /* NULL: GET */
    const char *path;
    const char *content_type;
    const void *body;
    size_t size;
    int chunked;                     /* send the body with Transfer-Encoding: chunked */
    const char *const *form;         /* multipart: name, value, ... (value "@file:type" uploads) */
    const void *file;                /* multipart: bytes of the "@" part */
    size_t file_size;
    const char *range;               /* a Range header value */
    const char *const *headers;      /* more header lines ("Name: value"), NULL-ended */
} s_req_t;

static size_t s_on_body(char *data, size_t size, size_t nmemb, void *userp) {
    s_resp_t *r = userp;
    size_t n = size * nmemb;
    char *p = realloc(r->body, r->size + n + 1);
    if (!p) return 0;
    memcpy(p + r->size, data, n);
    r->body = p;
    r->size += n;
    r->body[r->size] = '\0';
    return n;
}

static void s_header_value(const char *line, size_t n, const char *name, char *out, size_t outlen) {
    size_t k = strlen(name);
    if (n <= k || strncasecmp(line, name, k) || line[k] != ':') return;
    const char *v = line + k + 1;
    size_t len = n - k - 1;
    while (len && (*v == ' ' || *v == '\t')) v++, len--;
    while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' ')) len--;
    if (len >= outlen) len = outlen - 1;
    memcpy(out, v, len);
    out[len] = '\0';
}

static size_t s_on_header(char *line, size_t size, size_t nmemb, void *userp) {
    s_resp_t *r = userp;
    size_t n = size * nmemb;
    s_header_value(line, n, "Content-Type", r->content_type, sizeof r->content_type);
    s_header_value(line, n, "Retry-After", r->retry_after, sizeof r->retry_after);
    s_header_value(line, n, "Allow", r->allow, sizeof r->allow);
    s_header_value(line, n, "Location", r->location, sizeof r->location);
    s_header_value(line, n, "Content-Range", r->content_range, sizeof r->content_range);
    return n;
}

typedef struct {
    const uint8_t *data;
    size_t size, pos;
} s_upload_t;

static size_t s_on_read(char *buf, size_t size, size_t nmemb, void *userp) {
    s_upload_t *u = userp;
    size_t n = size * nmemb;
    if (n > 1000) n = 1000; /* many small chunks */
    if (n > u->size - u->pos) n = u->size - u->pos;
    memcpy(buf, u->data + u->pos, n);
    u->pos += n;
    return n;
}

static s_resp_t s_http(const s_req_t *q) {
    s_resp_t r;
    memset(&r, 0, sizeof r);
    CURL *curl = curl_easy_init();
    cr_assert_not_null(curl);
    char url[512];
    snprintf(url, sizeof url, "%s%s", C.base, q->path);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r);
    struct curl_slist *headers = curl_slist_append(NULL, "Expect:");
    char ctype[160];
    curl_mime *mime = NULL;
    s_upload_t up = {q->body, q->size, 0};
    if (q->content_type) {
        snprintf(ctype, sizeof ctype, "Content-Type: %s", q->content_type);
        headers = curl_slist_append(headers, ctype);
    }
    char range[128];
    if (q->range) {
        snprintf(range, sizeof range, "Range: %s", q->range);
        headers = curl_slist_append(headers, range);
    }
    for (int i = 0; q->headers && q->headers[i]; i++) headers = curl_slist_append(headers, q->headers[i]);
    if (q->form) {
        mime = curl_mime_init(curl);
        for (int i = 0; q->form[i] && q->form[i + 1]; i += 2) {
            curl_mimepart *part = curl_mime_addpart(mime);
            curl_mime_name(part, q->form[i]);
            const char *v = q->form[i + 1];
            if (v[0] == '@') { /* "@filename:type" */
                char name[128];
                snprintf(name, sizeof name, "%s", v + 1);
                char *colon = strchr(name, ':');
                if (colon) *colon = '\0';
                curl_mime_data(part, q->file, q->file_size);
                curl_mime_filename(part, name);
                if (colon && colon[1]) curl_mime_type(part, colon + 1);
            } else {
                curl_mime_data(part, v, CURL_ZERO_TERMINATED);
            }
        }
        curl_easy_setopt(curl, CURLOPT_MIMEPOST, mime);
    } else if (q->chunked) {
        headers = curl_slist_append(headers, "Transfer-Encoding: chunked");
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_READFUNCTION, s_on_read);
        curl_easy_setopt(curl, CURLOPT_READDATA, &up);
    } else if (q->body || (q->method && !strcmp(q->method, "POST"))) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, q->body ? q->body : "");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->size);
    }
    if (q->method && strcmp(q->method, "POST")) curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, q->method);
    if (q->method && !strcmp(q->method, "HEAD")) curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    CURLcode rc = curl_easy_perform(curl);
    r.curl_error = (int)rc;
    if (rc == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(headers);
    curl_mime_free(mime);
    curl_easy_cleanup(curl);
    if (!r.body) r.body = calloc(1, 1);
    if (!strncmp(r.content_type, "application/json", 16)) r.json = cJSON_Parse(r.body);
    return r;
}

static void s_resp_free(s_resp_t *r) {
    free(r->body);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof *r);
}

static s_resp_t s_get(const char *path) {
    s_req_t q = {.path = path};
    return s_http(&q);
}

static const char *s_jstr(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double s_jnum(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* The response is a JSON error with this status and wire name. */
static void s_expect_error(s_resp_t *r, long status, const char *error, const char *what) {
    s_require(r->curl_error == 0, "%s: curl error %d (%s)", what, r->curl_error,
              curl_easy_strerror((CURLcode)r->curl_error));
    s_require(r->status == status, "%s: HTTP %ld, wanted %ld: %s", what, r->status, status, r->body);
    s_require(r->json != NULL, "%s: body is not JSON (%s): %s", what, r->content_type, r->body);
    const char *e = s_jstr(r->json, "error"), *m = s_jstr(r->json, "message");
    s_require(e && !strcmp(e, error), "%s: error '%s', wanted '%s'", what, e ? e : "(none)", error);
    s_require(m && *m, "%s: the error has no message", what);
}

/* POST /v1/speak; returns the job id (33 bytes). */
static void s_speak(const char *text, const char *query, char id[NR_PROTO_ID_MAX + 1]) {
    char path[128];
    snprintf(path, sizeof path, "/v1/speak%s", query ? query : "");
    s_req_t q = {.method = "POST", .path = path, .content_type = "text/plain; charset=utf-8",
                 .body = text, .size = strlen(text)};
    s_resp_t r = s_http(&q);
    s_require(r.status == 202 && r.json, "speak: HTTP %ld: %s", r.status, r.body);
    const char *v = s_jstr(r.json, "id");
    s_require(v && strlen(v) == NR_CLIENT_ID_HEX, "speak: bad id in %s", r.body);
    snprintf(id, NR_PROTO_ID_MAX + 1, "%s", v);
    s_resp_free(&r);
}

/* Polls GET /v1/jobs/{id} until the job is final; returns its record. */
static cJSON *s_wait_final(const char *id) {
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    long long end = nr_harness_now_ms() + S_WAIT_MS;
    char last[2048] = "";
    while (nr_harness_now_ms() < end) {
        s_resp_t r = s_get(path);
        s_require(r.status == 200 && r.json, "GET %s: HTTP %ld: %s", path, r.status, r.body);
        const char *state = s_jstr(r.json, "state");
        if (state && nr_harness_job_final(state)) {
            cJSON *j = r.json;
            r.json = NULL;
            s_resp_free(&r);
            return j;
        }
        snprintf(last, sizeof last, "%s", r.body);
        s_resp_free(&r);
        nr_harness_sleep_ms(100);
    }
    s_require(0, "job %s did not finish: %s", id, last);
    return NULL;
}

/* Waits until /readyz says `stage` has at least one worker. */
static void s_wait_stage(const char *stage) {
    long long end = nr_harness_now_ms() + S_WAIT_MS;
    while (nr_harness_now_ms() < end) {
        s_resp_t r = s_get("/readyz");
        cJSON *w = r.json ? cJSON_GetObjectItemCaseSensitive(r.json, "workers") : NULL;
        double n = w ? s_jnum(w, stage) : -1;
        s_resp_free(&r);
        if (n >= 1) return;
        nr_harness_sleep_ms(100);
    }
    s_require(0, "no %s worker registered with the broker", stage);
}

/* ---- WAV ---- */

static uint32_t s_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t s_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* NULL when wav is a 16-bit PCM mono WAV with sound in it, else what is wrong. */
static const char *s_check_wav(const uint8_t *wav, size_t size) {
    if (size < 44 || memcmp(wav, "RIFF", 4) || memcmp(wav + 8, "WAVE", 4)) return "not RIFF/WAVE";
    if (s_le32(wav + 4) != size - 8) return "RIFF size does not match the body";
    size_t pos = 12;
    int have_fmt = 0;
    while (pos + 8 <= size) {
        uint32_t len = s_le32(wav + pos + 4);
        const uint8_t *body = wav + pos + 8;
        if (len > size - pos - 8) return "chunk runs past the end";
        if (!memcmp(wav + pos, "fmt ", 4)) {
            if (len < 16 || s_le16(body) != 1 || s_le16(body + 2) != 1 || s_le16(body + 14) != 16)
                return "not 16-bit PCM mono";
            have_fmt = 1;
        } else if (!memcmp(wav + pos, "data", 4)) {
            if (!have_fmt) return "data before fmt";
            if (len < 2 || len % 2) return "empty or odd data chunk";
            int peak = 0;
            for (size_t i = 0; i < len / 2; i++) {
                int v = (int16_t)s_le16(body + 2 * i);
                if (abs(v) > peak) peak = abs(v);
            }
            return peak < 1000 ? "silent" : NULL;
        }
        pos += 8 + len + (len & 1);
    }
    return "no data chunk";
}

static void s_expect_audio(const char *id) {
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s/audio", id);
    s_resp_t r = s_get(path);
    s_require(r.status == 200, "GET %s: HTTP %ld: %s", path, r.status, r.body);
    s_require(!strcmp(r.content_type, "audio/wav"), "audio Content-Type '%s'", r.content_type);
    const char *bad = s_check_wav((const uint8_t *)r.body, r.size);
    s_require(bad == NULL, "audio of %s (%zu bytes): %s", id, r.size, bad);
    s_resp_free(&r);
}

static char *s_fixture(const char *name, size_t *size) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/images/%s", name);
    char *path = nr_harness_source_path(rel);
    cr_assert_not_null(path, "fixture %s: %s", name, nr_harness_error());
    char *data = nr_harness_read_file(path, size);
    free(path);
    cr_assert_not_null(data, "cannot read fixture %s", name);
    return data;
}

/* The end of every test: the gateway stops cleanly on SIGTERM (exit 0) and
 * its log holds no sanitizer report (in a -DNR_SANITIZE=ON build).
 * Assertions in a Criterion .fini do not fail a test, so this runs in the
 * test body. */
static void s_end(void) {
    if (C.gateway) {
        int status = 0;
        nr_harness_proc_stop(C.gateway, SIGTERM, 20000, &status);
        nr_harness_proc_destroy(&C.gateway);
        s_require(nr_harness_exit_code(status) == 0, "the gateway's SIGTERM stop exited %d (signal %d)",
                  nr_harness_exit_code(status), nr_harness_exit_signal(status));
    }
    static const char *const marks[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                        "runtime error:"};
    char *log = nr_harness_path(C.cl.dir, "gateway.log");
    char *text = log ? nr_harness_read_file(log, NULL) : NULL;
    for (size_t m = 0; text && m < sizeof marks / sizeof marks[0]; m++)
        if (strstr(text, marks[m])) {
            nr_harness_dump_log(log, 12000);
            cr_assert_fail("a sanitizer reported an error in %s", log);
        }
    free(text);
    free(log);
}

/* ---- tests ---- */

TestSuite(gateway, .init = s_setup, .fini = s_teardown, .timeout = 280);

Test(gateway, speak_done_audio_is_wav_and_resubmit_is_existing) {
    s_start_worker("speech");
    s_start_gateway(C.cl.client_ep, NULL);
    const char *text = "The gateway speaks through narrator.";
    char id[NR_PROTO_ID_MAX + 1];
    s_speak(text, "?voice=kal", id);

    /* The id is the content hash narrate would use. */
    char want[NR_CLIENT_ID_HEX + 1];
    nr_kv_t opt = {(char *)"voice", (char *)"kal"};
    cr_assert_eq(nr_client_content_id(text, strlen(text), "speech", &opt, 1, want), 0);
    s_require(!strcmp(id, want), "id %s, narrate's would be %s", id, want);

    cJSON *rec = s_wait_final(id);
    s_require(!strcmp(s_jstr(rec, "state"), "done"), "job state %s", s_jstr(rec, "state"));
    cJSON *opts = cJSON_GetObjectItemCaseSensitive(rec, "options");
    s_require(opts && s_jstr(opts, "voice") && !strcmp(s_jstr(opts, "voice"), "kal"),
              "options not in the record");
    cJSON *stages = cJSON_GetObjectItemCaseSensitive(rec, "stages");
    cJSON *speech = stages ? cJSON_GetObjectItemCaseSensitive(stages, "speech") : NULL;
    s_require(speech && s_jnum(speech, "duration_ms") > 0, "no speech.duration_ms in the record");
    cJSON *timings = cJSON_GetObjectItemCaseSensitive(rec, "timings");
    s_require(timings && s_jnum(timings, "speech_ms") >= 0 && s_jnum(timings, "total_ms") >= 0,
              "no timings in the record");
    s_require(!strcmp(s_jstr(speech, "engine"), "flite") && !strcmp(s_jstr(speech, "voice"), "kal"),
              "the record does not name engine flite and voice kal");
    cJSON_Delete(rec);
    s_expect_audio(id);

    /* The voices the live worker offers (READY -> broker STATS -> here). */
    s_resp_t v = s_get("/v1/voices");
    cJSON *vs = v.json ? cJSON_GetObjectItemCaseSensitive(v.json, "stages") : NULL;
    char *list = vs ? cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(vs, "speech")) : NULL;
    s_require(v.status == 200 && list && !strcmp(list, "[\"awb\",\"kal\",\"kal16\",\"rms\",\"slt\"]"),
              "/v1/voices: HTTP %ld: %s", v.status, v.body);
    free(list);
    s_resp_free(&v);

    /* A HEAD of the audio answers like GET, without a body. */
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s/audio", id);
    s_req_t head = {.method = "HEAD", .path = path};
    s_resp_t r = s_http(&head);
    s_require(r.status == 200 && r.size == 0, "HEAD audio: HTTP %ld, %zu bytes", r.status, r.size);
    s_resp_free(&r);

    /* Byte ranges, as media elements ask for them. */
    s_resp_t whole = s_get(path);
    s_require(whole.status == 200 && whole.size > 16, "audio: HTTP %ld", whole.status);
    s_req_t first = {.path = path, .range = "bytes=0-11"};
    r = s_http(&first);
    s_require(r.status == 206 && r.size == 12 && !memcmp(r.body, whole.body, 12),
              "Range bytes=0-11: HTTP %ld, %zu bytes", r.status, r.size);
    char want_range[96];
    snprintf(want_range, sizeof want_range, "bytes 0-11/%zu", whole.size);
    s_require(!strcmp(r.content_range, want_range), "Content-Range '%s'", r.content_range);
    s_resp_free(&r);
    s_req_t tail = {.path = path, .range = "bytes=-4"};
    r = s_http(&tail);
    s_require(r.status == 206 && r.size == 4 && !memcmp(r.body, whole.body + whole.size - 4, 4),
              "Range bytes=-4: HTTP %ld, %zu bytes", r.status, r.size);
    s_resp_free(&r);
    s_req_t past = {.path = path, .range = "bytes=99999999-"};
    r = s_http(&past);
    s_expect_error(&r, 416, "invalid_argument", "range past the end");
    s_resp_free(&r);
    s_req_t several = {.path = path, .range = "bytes=0-1,4-5"};
    r = s_http(&several);
    s_require(r.status == 200 && r.size == whole.size, "several ranges: HTTP %ld", r.status);
    s_resp_free(&r);
    s_resp_free(&whole);

    /* A speech job has no caption. */
    snprintf(path, sizeof path, "/v1/jobs/%s/caption", id);
    r = s_get(path);
    s_expect_error(&r, 404, "not_found", "caption of a speech job");
    s_resp_free(&r);

    /* The same text and voice again: the same job, existing. */
    s_req_t again = {.method = "POST", .path = "/v1/speak?voice=kal", .content_type = "text/plain",
                     .body = text, .size = strlen(text)};
    r = s_http(&again);
    s_require(r.status == 202 && r.json, "resubmit: HTTP %ld: %s", r.status, r.body);
    s_require(!strcmp(s_jstr(r.json, "id"), id), "resubmit gave another id: %s", r.body);
    s_require(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r.json, "existing")),
              "resubmit is not existing: %s", r.body);
    s_require(!strcmp(r.location, path) || strstr(r.location, id), "Location '%s'", r.location);
    s_resp_free(&r);

    /* GET /v1/jobs lists it once. */
    r = s_get("/v1/jobs");
    s_require(r.status == 200 && r.json, "GET /v1/jobs: HTTP %ld: %s", r.status, r.body);
    cJSON *jobs = cJSON_GetObjectItemCaseSensitive(r.json, "jobs");
    s_require(cJSON_GetArraySize(jobs) == 1, "recent jobs: %s", r.body);
    s_require(!strcmp(s_jstr(cJSON_GetArrayItem(jobs, 0), "id"), id), "recent jobs: %s", r.body);
    s_resp_free(&r);

    /* speed: another job (the id covers it), shorter audio. */
    char fast_id[NR_PROTO_ID_MAX + 1];
    s_speak(text, "?voice=kal&speed=2", fast_id);
    s_require(strcmp(fast_id, id), "speed 2 gave the same job id");
    cJSON *fast = s_wait_final(fast_id);
    cJSON *fst = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(fast, "stages"), "speech");
    cJSON *rec2 = s_wait_final(id);
    cJSON *speech2 = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rec2, "stages"), "speech");
    s_require(fst && s_jnum(fst, "duration_ms") < s_jnum(speech2, "duration_ms") * 3 / 4,
              "speed 2 is not shorter: %.0f ms against %.0f ms", fst ? s_jnum(fst, "duration_ms") : -1,
              s_jnum(speech2, "duration_ms"));
    cJSON_Delete(fast);
    cJSON_Delete(rec2);

    s_end();
}

Test(gateway, image_to_caption_and_audio) {
    s_start_worker("vision");
    s_start_worker("text");
    s_start_worker("speech");
    s_start_gateway(C.cl.client_ep, NULL);
    s_wait_stage("vision");
    s_wait_stage("text");
    s_wait_stage("speech");

    size_t size = 0;
    char *jpeg = s_fixture("chelsea_317x211.jpg", &size);
    /* Raw body. */
    s_req_t q = {.method = "POST", .path = "/v1/jobs?max_length=8", .content_type = "image/jpeg",
                 .body = jpeg, .size = size};
    s_resp_t r = s_http(&q);
    s_require(r.status == 202 && r.json, "POST /v1/jobs: HTTP %ld: %s", r.status, r.body);
    char id[NR_PROTO_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", s_jstr(r.json, "id"));
    s_resp_free(&r);
    /* Multipart, as the web page sends it, with other options: another job. */
    const char *form[] = {"image", "@chelsea.jpg:image/jpeg", "beams", "2", "max_length", "8",
                          "voice", "slt", NULL};
    s_req_t m = {.method = "POST", .path = "/v1/jobs", .form = form, .file = jpeg, .file_size = size};
    r = s_http(&m);
    s_require(r.status == 202 && r.json, "multipart POST: HTTP %ld: %s", r.status, r.body);
    char id2[NR_PROTO_ID_MAX + 1];
    snprintf(id2, sizeof id2, "%s", s_jstr(r.json, "id"));
    s_require(strcmp(id, id2), "different options gave the same id");
    s_resp_free(&r);
    free(jpeg);

    const char *ids[] = {id, id2};
    for (int i = 0; i < 2; i++) {
        cJSON *rec = s_wait_final(ids[i]);
        const char *state = s_jstr(rec, "state");
        s_require(!strcmp(state, "done"), "job %s: %s (%s)", ids[i], state,
                  s_jstr(rec, "error_message") ? s_jstr(rec, "error_message") : "");
        const char *caption = s_jstr(rec, "caption");
        s_require(caption && *caption, "job %s has no caption", ids[i]);
        cJSON *timings = cJSON_GetObjectItemCaseSensitive(rec, "timings");
        s_require(s_jnum(timings, "vision_ms") >= 0 && s_jnum(timings, "text_ms") >= 0,
                  "timings missing");
        char path[128];
        snprintf(path, sizeof path, "/v1/jobs/%s/caption", ids[i]);
        r = s_get(path);
        s_require(r.status == 200 && !strncmp(r.content_type, "text/plain", 10),
                  "GET caption: HTTP %ld (%s)", r.status, r.content_type);
        s_require(!strncmp(r.body, caption, strlen(caption)), "caption '%s' vs record '%s'", r.body,
                  caption);
        s_resp_free(&r);
        cJSON_Delete(rec);
        s_expect_audio(ids[i]);
    }
    cJSON *rec = s_wait_final(id2);
    cJSON *opts = cJSON_GetObjectItemCaseSensitive(rec, "options");
    s_require(s_jstr(opts, "num_beams") && !strcmp(s_jstr(opts, "num_beams"), "2"),
              "form option beams did not reach the job");
    /* The record names the model and its family, per stage. */
    cJSON *stages = cJSON_GetObjectItemCaseSensitive(rec, "stages");
    cJSON *text = stages ? cJSON_GetObjectItemCaseSensitive(stages, "text") : NULL;
    cJSON *vision = stages ? cJSON_GetObjectItemCaseSensitive(stages, "vision") : NULL;
    s_require(text && s_jstr(text, "model") && !strcmp(s_jstr(text, "model"), "vit-gpt2-tiny"),
              "stages.text.model missing or wrong");
    s_require(text && s_jstr(text, "family") && !strcmp(s_jstr(text, "family"), "vit-gpt2"),
              "stages.text.family missing or wrong");
    s_require(vision && s_jstr(vision, "family") && !strcmp(s_jstr(vision, "family"), "vit-gpt2"),
              "stages.vision.family missing or wrong");
    cJSON_Delete(rec);

    /* A corrupt image fails its job with the vision worker's reason. */
    char *bad = s_fixture("bad_truncated_header.jpg", &size);
    s_req_t b = {.method = "POST", .path = "/v1/jobs", .content_type = "image/jpeg", .body = bad,
                 .size = size};
    r = s_http(&b);
    free(bad);
    s_require(r.status == 202 && r.json, "POST bad image: HTTP %ld: %s", r.status, r.body);
    snprintf(id, sizeof id, "%s", s_jstr(r.json, "id"));
    s_resp_free(&r);
    rec = s_wait_final(id);
    s_require(!strcmp(s_jstr(rec, "state"), "failed") && s_jstr(rec, "error"),
              "bad image job: %s", s_jstr(rec, "state"));
    cJSON_Delete(rec);
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s/audio", id);
    r = s_get(path);
    s_expect_error(&r, 409, "bad_state", "audio of a failed job");
    s_resp_free(&r);
    s_end();
}

/* The form field prompt (BLIP's conditional captioning) reaches the job as
 * the option narrate sends (the same content-hash id), up to 256 bytes (more
 * than other fields take); a ViT-GPT2 text worker fails that job with
 * bad_option naming its family. Too long, or on /v1/speak: 400. */
Test(gateway, form_prompt_reaches_the_text_worker) {
    s_start_worker("vision");
    s_start_worker("text");
    s_start_gateway(C.cl.client_ep, NULL);
    s_wait_stage("vision");
    s_wait_stage("text");
    size_t size = 0;
    char *jpeg = s_fixture("chelsea_317x211.jpg", &size);
    char prompt[NR_CLIENT_PROMPT_MAX + 2];
    snprintf(prompt, sizeof prompt, "%s", "a picture of");
    const char *form[] = {"image", "@chelsea.jpg:image/jpeg", "prompt", prompt, NULL};
    s_req_t m = {.method = "POST", .path = "/v1/jobs", .form = form, .file = jpeg, .file_size = size};
    s_resp_t r = s_http(&m);
    s_require(r.status == 202 && r.json, "multipart POST with prompt: HTTP %ld: %s", r.status, r.body);
    char id[NR_PROTO_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", s_jstr(r.json, "id"));
    s_resp_free(&r);
    nr_client_options_t o;
    char e[256] = "";
    cr_assert_eq(nr_client_options(&o, 0, 0, NULL, prompt, e, sizeof e), 0, "%s", e);
    char want[NR_CLIENT_ID_HEX + 1];
    cr_assert_eq(nr_client_content_id(jpeg, size, "vision,text,speech", o.kv, o.n, want), 0);
    s_require(!strcmp(id, want), "id %s, narrate's with the prompt would be %s", id, want);
    cJSON *rec = s_wait_final(id);
    cJSON *opts = cJSON_GetObjectItemCaseSensitive(rec, "options");
    s_require(s_jstr(opts, "prompt") && !strcmp(s_jstr(opts, "prompt"), "a picture of"),
              "the prompt is not in the record's options");
    const char *message = s_jstr(rec, "error_message");
    s_require(!strcmp(s_jstr(rec, "state"), "failed") && !strcmp(s_jstr(rec, "stage"), "text") &&
                  !strcmp(s_jstr(rec, "error"), "bad_option") && message &&
                  strstr(message, "the vit-gpt2 captioner takes no prompt"),
              "prompt job at a vit-gpt2 worker: %s at %s, %s (%s)", s_jstr(rec, "state"), s_jstr(rec, "stage"),
              s_jstr(rec, "error"), message ? message : "");
    cJSON_Delete(rec);

    /* 256 bytes is accepted as a form field; 257 is refused before a job is made */
    memset(prompt, 'a', NR_CLIENT_PROMPT_MAX);
    prompt[NR_CLIENT_PROMPT_MAX] = '\0';
    r = s_http(&m);
    s_require(r.status == 202, "a 256-byte prompt: HTTP %ld: %s", r.status, r.body);
    s_resp_free(&r);
    prompt[NR_CLIENT_PROMPT_MAX] = 'a';
    prompt[NR_CLIENT_PROMPT_MAX + 1] = '\0';
    r = s_http(&m);
    s_expect_error(&r, 400, "bad_option", "a 257-byte prompt");
    s_resp_free(&r);
    s_req_t q = {.method = "POST", .path = "/v1/jobs?prompt=caf%E9", .content_type = "image/jpeg", .body = jpeg,
                 .size = size};
    r = s_http(&q);
    s_expect_error(&r, 400, "bad_option", "a prompt that is not UTF-8");
    s_require(strstr(s_jstr(r.json, "message"), "UTF-8"), "message: %s", r.body);
    s_resp_free(&r);
    s_req_t sp = {.method = "POST", .path = "/v1/speak?prompt=a", .content_type = "text/plain", .body = "hi",
                  .size = 2};
    r = s_http(&sp);
    s_expect_error(&r, 400, "bad_option", "a prompt to /v1/speak");
    s_resp_free(&r);
    free(jpeg);
    s_end();
}

/* The field language (PaliGemma's caption language) reaches the job as
 * narrate sends it; a ViT-GPT2 text worker fails it with bad_option naming
 * its family; a value that is no language code is refused with 400. */
Test(gateway, form_language_reaches_the_text_worker) {
    s_start_worker("vision");
    s_start_worker("text");
    s_start_gateway(C.cl.client_ep, NULL);
    s_wait_stage("vision");
    s_wait_stage("text");
    size_t size = 0;
    char *jpeg = s_fixture("chelsea_317x211.jpg", &size);
    const char *form[] = {"image", "@chelsea.jpg:image/jpeg", "language", "pt-BR", NULL};
    s_req_t m = {.method = "POST", .path = "/v1/jobs", .form = form, .file = jpeg, .file_size = size};
    s_resp_t r = s_http(&m);
    s_require(r.status == 202 && r.json, "multipart POST with language: HTTP %ld: %s", r.status, r.body);
    char id[NR_PROTO_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", s_jstr(r.json, "id"));
    s_resp_free(&r);
    nr_client_options_t o;
    char e[256] = "";
    cr_assert_eq(nr_client_options(&o, 0, 0, NULL, NULL, e, sizeof e), 0, "%s", e);
    cr_assert_eq(nr_client_options_language(&o, "pt-BR", e, sizeof e), 0, "%s", e);
    char want[NR_CLIENT_ID_HEX + 1];
    cr_assert_eq(nr_client_content_id(jpeg, size, "vision,text,speech", o.kv, o.n, want), 0);
    s_require(!strcmp(id, want), "id %s, narrate's with the language would be %s", id, want);
    cJSON *rec = s_wait_final(id);
    const char *message = s_jstr(rec, "error_message");
    s_require(!strcmp(s_jstr(rec, "state"), "failed") && !strcmp(s_jstr(rec, "error"), "bad_option") && message &&
                  strstr(message, "the vit-gpt2 captioner takes no language"),
              "language job at a vit-gpt2 worker: %s, %s (%s)", s_jstr(rec, "state"), s_jstr(rec, "error"),
              message ? message : "");
    cJSON_Delete(rec);
    s_req_t q = {.method = "POST", .path = "/v1/jobs?language=Spanish", .content_type = "image/jpeg", .body = jpeg,
                 .size = size};
    r = s_http(&q);
    s_expect_error(&r, 400, "bad_option", "a language that is no code");
    s_require(strstr(s_jstr(r.json, "message"), "language code"), "message: %s", r.body);
    s_resp_free(&r);
    /* speed and language together are two options, not one given twice. */
    q.path = "/v1/jobs?speed=1.5&language=es";
    r = s_http(&q);
    s_require(r.status == 202, "speed with language: HTTP %ld: %s", r.status, r.body);
    s_resp_free(&r);
    free(jpeg);
    s_end();
}

Test(gateway, audio_409_until_done_and_cancel) {
    s_start_gateway(C.cl.client_ep, NULL); /* no speech worker: the job stays queued */
    char id[NR_PROTO_ID_MAX + 1];
    s_speak("nobody will say this", NULL, id);
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s/audio", id);
    s_resp_t r = s_get(path);
    s_expect_error(&r, 409, "bad_state", "audio of a queued job");
    s_require(r.retry_after[0], "409 for a job not done yet has no Retry-After");
    s_resp_free(&r);

    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    r = s_get(path);
    s_require(r.status == 200 && r.json, "GET job: HTTP %ld", r.status);
    s_require(!strcmp(s_jstr(r.json, "state"), "queued"), "state %s", s_jstr(r.json, "state"));
    s_require(s_jnum(r.json, "stage_workers") == 0, "stage_workers %g", s_jnum(r.json, "stage_workers"));
    s_resp_free(&r);

    s_req_t del = {.method = "DELETE", .path = path};
    r = s_http(&del);
    s_require(r.status == 200 && r.json && !strcmp(s_jstr(r.json, "state"), "cancelled"),
              "DELETE: HTTP %ld: %s", r.status, r.body);
    s_resp_free(&r);
    r = s_http(&del);
    s_expect_error(&r, 409, "bad_state", "second DELETE");
    s_resp_free(&r);
    snprintf(path, sizeof path, "/v1/jobs/%s/audio", id);
    r = s_get(path);
    s_expect_error(&r, 409, "bad_state", "audio of a cancelled job");
    s_resp_free(&r);
    s_req_t del_unknown = {.method = "DELETE", .path = "/v1/jobs/no-such-job"};
    r = s_http(&del_unknown);
    s_expect_error(&r, 404, "not_found", "DELETE of an unknown job");
    s_resp_free(&r);
    s_end();
}

/* A form part sent untyped (application/octet-stream, as some clients
 * do) is taken when its bytes start like an image the vision worker
 * reads, TIFF, GIF, BMP, HEIC and AVIF included; other bytes are 415. */
Test(gateway, untyped_parts_are_sniffed_for_every_format) {
    s_start_gateway(C.cl.client_ep, NULL);
    const char *files[] = {"../image_formats/tiff_strips.tif", "../image_formats/gif_plain.gif",
                           "../image_formats/bmp_4.bmp", "../image_formats/heic_photo.heic",
                           "../image_formats/avif_photo.avif"};
    const char *form[] = {"image", "@upload.bin:application/octet-stream", NULL};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        size_t size = 0;
        char *data = s_fixture(files[i], &size);
        s_req_t m = {.method = "POST", .path = "/v1/jobs", .form = form, .file = data, .file_size = size};
        s_resp_t r = s_http(&m);
        s_require(r.status == 202, "%s sent untyped: HTTP %ld: %s", files[i], r.status, r.body);
        s_resp_free(&r);
        free(data);
    }
    static const char pdf[] = "%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n";
    s_req_t m = {.method = "POST", .path = "/v1/jobs", .form = form, .file = pdf, .file_size = sizeof pdf - 1};
    s_resp_t r = s_http(&m);
    s_expect_error(&r, 415, "not_an_image", "a PDF sent untyped");
    s_resp_free(&r);
}

Test(gateway, bad_requests_get_status_and_json_error) {
    s_start_gateway(C.cl.client_ep, NULL);
    size_t png_size = 0;
    char *png = s_fixture("astronaut_rgba.png", &png_size);
    size_t big_size = 100000; /* past S_MAX_BODY */
    char *big = calloc(1, big_size);
    cr_assert_not_null(big);
    const char bad_utf8[] = "caf\xc3";
    const char *no_image_form[] = {"voice", "kal", NULL};
    const char *text_part_form[] = {"image", "@notes.txt:text/plain", NULL};
    const char *bad_option_form[] = {"image", "@a.png:image/png", "beams", "zero", NULL};
    const char *unknown_field_form[] = {"image", "@a.png:image/png", "colour", "red", NULL};
    const char *big_form[] = {"image", "@big.png:image/png", NULL};
    const char *two_images_form[] = {"image", "@a.png:image/png", "image", "@a.png:image/png", NULL};
    static const char multipart_no_boundary[] = "--x\r\nContent-Disposition: form-data\r\n\r\nhi\r\n--x--\r\n";
    struct {
        s_req_t q;
        long status;
        const char *error;
        const char *what;
    } cases[] = {
        {{.method = "POST", .path = "/v1/jobs", .content_type = "application/pdf", .body = png, .size = png_size},
         415, "not_an_image", "pdf body"},
        {{.method = "POST", .path = "/v1/jobs", .content_type = "text/plain", .body = "hi", .size = 2},
         415, "not_an_image", "text body"},
        {{.method = "POST", .path = "/v1/jobs?beams=99", .content_type = "image/png", .body = png, .size = png_size},
         400, "bad_option", "beams out of range"},
        {{.method = "POST", .path = "/v1/jobs?max_length=x", .content_type = "image/png", .body = png, .size = png_size},
         400, "bad_option", "max_length not a number"},
        {{.method = "POST", .path = "/v1/jobs?voice=a%20b", .content_type = "image/png", .body = png, .size = png_size},
         400, "bad_option", "voice with a space"},
        {{.method = "POST", .path = "/v1/jobs?nope=1", .content_type = "image/png", .body = png, .size = png_size},
         400, "bad_option", "unknown option"},
        {{.method = "POST", .path = "/v1/jobs?speed=3", .content_type = "image/png", .body = png, .size = png_size},
         400, "bad_option", "speed out of range"},
        {{.method = "POST", .path = "/v1/speak?speed=fast", .content_type = "text/plain", .body = "hi", .size = 2},
         400, "bad_option", "speed not a number"},
        {{.method = "POST", .path = "/v1/speak?speed=1&speed=1", .content_type = "text/plain", .body = "hi", .size = 2},
         400, "bad_option", "speed given twice"},
        {{.method = "POST", .path = "/v1/jobs", .content_type = "image/png", .body = "", .size = 0},
         400, "invalid_argument", "empty image"},
        {{.method = "POST", .path = "/v1/jobs", .content_type = "image/png", .body = big, .size = big_size},
         413, "too_large", "body over max-body-bytes (Content-Length)"},
        {{.method = "POST", .path = "/v1/jobs", .content_type = "image/png", .body = big, .size = big_size, .chunked = 1},
         413, "too_large", "chunked body over max-body-bytes"},
        {{.method = "POST", .path = "/v1/jobs", .form = big_form, .file = big, .file_size = big_size},
         413, "too_large", "multipart over max-body-bytes"},
        {{.method = "POST", .path = "/v1/jobs", .content_type = "multipart/form-data",
          .body = multipart_no_boundary, .size = sizeof multipart_no_boundary - 1},
         400, "invalid_argument", "multipart without a boundary"},
        {{.method = "POST", .path = "/v1/jobs", .content_type = "multipart/form-data; boundary=x",
          .body = "this is not multipart at all", .size = 28},
         400, "invalid_argument", "malformed multipart"},
        {{.method = "POST", .path = "/v1/jobs", .form = no_image_form}, 400, "invalid_argument",
         "multipart without an image field"},
        {{.method = "POST", .path = "/v1/jobs", .form = text_part_form, .file = "hello", .file_size = 5},
         415, "not_an_image", "multipart text part"},
        {{.method = "POST", .path = "/v1/jobs", .form = bad_option_form, .file = png, .file_size = png_size},
         400, "bad_option", "multipart bad option"},
        {{.method = "POST", .path = "/v1/jobs", .form = unknown_field_form, .file = png, .file_size = png_size},
         400, "bad_option", "multipart unknown field"},
        {{.method = "POST", .path = "/v1/jobs", .form = two_images_form, .file = png, .file_size = png_size},
         400, "invalid_argument", "multipart with two images"},
        {{.method = "POST", .path = "/v1/speak", .content_type = "image/png", .body = png, .size = png_size},
         415, "unsupported", "speak with an image"},
        {{.method = "POST", .path = "/v1/speak", .content_type = "text/plain", .body = "", .size = 0},
         400, "bad_text", "speak nothing"},
        {{.method = "POST", .path = "/v1/speak", .content_type = "text/plain", .body = bad_utf8, .size = 4},
         400, "bad_text", "speak bad UTF-8"},
        {{.method = "POST", .path = "/v1/speak?beams=2", .content_type = "text/plain", .body = "hi", .size = 2},
         400, "bad_option", "speak with an image option"},
        {{.method = "POST", .path = "/v1/speak", .content_type = "text/plain", .body = big, .size = big_size},
         413, "too_large", "speak too long"},
        {{.path = "/v1/nothing"}, 404, "not_found", "unknown API route"},
        {{.path = "/v1/jobs/abc/frames"}, 404, "not_found", "unknown job sub-resource"},
        {{.path = "/v1/jobs/no-such-job"}, 404, "not_found", "unknown job"},
        {{.path = "/v1/jobs/no-such-job/audio"}, 404, "not_found", "audio of an unknown job"},
        {{.path = "/v1/jobs/no-such-job/caption"}, 404, "not_found", "caption of an unknown job"},
        {{.path = "/v1/jobs/bad%20id"}, 400, "invalid_argument", "malformed job id"},
        {{.path = "/no-such-page.html"}, 404, "not_found", "unknown page"},
        {{.path = "/../../etc/passwd"}, 404, "not_found", "path traversal"},
        {{.path = "/.hidden"}, 404, "not_found", "dot file"},
        {{.method = "PUT", .path = "/v1/jobs"}, 405, "unsupported", "PUT /v1/jobs"},
        {{.method = "GET", .path = "/v1/speak"}, 405, "unsupported", "GET /v1/speak"},
        {{.method = "POST", .path = "/v1/jobs/abc", .content_type = "image/png", .body = png, .size = png_size},
         405, "unsupported", "POST to a job"},
        {{.method = "DELETE", .path = "/healthz"}, 405, "unsupported", "DELETE /healthz"},
        {{.method = "DELETE", .path = "/v1/jobs/abc/audio"}, 405, "unsupported", "DELETE audio"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_resp_t r = s_http(&cases[i].q);
        s_expect_error(&r, cases[i].status, cases[i].error, cases[i].what);
        if (cases[i].status == 405) s_require(r.allow[0], "%s: 405 without Allow", cases[i].what);
        s_resp_free(&r);
    }
    /* The gateway still serves after all that, and nothing reached the queue. */
    s_resp_t r = s_get("/readyz");
    s_require(r.status == 200 && r.json, "readyz after bad requests: HTTP %ld", r.status);
    cJSON *queues = cJSON_GetObjectItemCaseSensitive(r.json, "queues");
    s_require(s_jnum(queues, "vision") <= 0 && s_jnum(queues, "speech") <= 0,
              "bad requests were queued: %s", r.body);
    s_resp_free(&r);
    free(big);
    free(png);
    s_end();
}

Test(gateway, broker_down_is_503_with_the_endpoint) {
    s_start_worker("speech");
    const char *fast[] = {"--request-timeout-ms", "1000", NULL};
    s_start_gateway(C.cl.client_ep, fast);
    s_wait_stage("speech");
    s_resp_t r = s_get("/readyz");
    s_require(r.status == 200, "readyz with a broker: HTTP %ld", r.status);
    s_resp_free(&r);

    int status = 0;
    cr_assert_eq(nr_harness_proc_stop(C.cl.broker, SIGTERM, 10000, &status), 0);
    nr_harness_proc_destroy(&C.cl.broker);

    char want[160];
    snprintf(want, sizeof want, "cannot reach narrator-broker at %s: is it running?", C.cl.client_ep);
    s_req_t q = {.method = "POST", .path = "/v1/speak", .content_type = "text/plain", .body = "hello",
                 .size = 5};
    r = s_http(&q);
    s_expect_error(&r, 503, "unreachable", "speak with the broker down");
    s_require(strstr(s_jstr(r.json, "message"), want), "message: %s", s_jstr(r.json, "message"));
    s_require(r.retry_after[0], "503 without Retry-After");
    s_resp_free(&r);
    r = s_get("/readyz");
    s_expect_error(&r, 503, "unreachable", "readyz with the broker down");
    s_require(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r.json, "ready")),
              "readyz with the broker down lacks \"ready\": false: %s", r.body);
    s_require(strstr(s_jstr(r.json, "message"), want), "readyz message: %s", s_jstr(r.json, "message"));
    s_resp_free(&r);
    r = s_get("/v1/jobs/some-job");
    s_expect_error(&r, 503, "unreachable", "status with the broker down");
    s_resp_free(&r);
    r = s_get("/healthz");
    s_require(r.status == 200, "healthz with the broker down: HTTP %ld", r.status);
    s_resp_free(&r);

    /* The broker comes back: so does the gateway, without a restart. */
    s_start_broker();
    long long end = nr_harness_now_ms() + S_WAIT_MS;
    long got = 0;
    while (nr_harness_now_ms() < end && got != 200) {
        r = s_get("/readyz");
        got = r.status;
        s_resp_free(&r);
        if (got != 200) nr_harness_sleep_ms(200);
    }
    s_require(got == 200, "readyz after the broker restart: HTTP %ld", got);
    r = s_get("/metrics");
    s_require(strstr(r.body, "narrator_gateway_broker_errors_total{error=\"unreachable\"} "),
              "metrics lack the unreachable counter");
    s_require(!strstr(r.body, "narrator_gateway_broker_errors_total{error=\"unreachable\"} 0\n"),
              "unreachable errors were not counted");
    s_resp_free(&r);
    s_end();
}

Test(gateway, silent_broker_is_504) {
    /* A ROUTER that reads requests and never answers. */
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    int port = nr_harness_free_port();
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    cr_assert_eq(zmq_bind(router, ep), 0);
    const char *fast[] = {"--request-timeout-ms", "500", NULL};
    s_start_gateway(ep, fast);
    s_resp_t r = s_get("/v1/jobs/some-job");
    s_expect_error(&r, 504, "timed_out", "status with a silent broker");
    s_require(strstr(s_jstr(r.json, "message"), ep), "message lacks the endpoint: %s", r.body);
    s_resp_free(&r);
    r = s_get("/readyz");
    s_expect_error(&r, 504, "timed_out", "readyz with a silent broker");
    s_resp_free(&r);
    int linger = 0;
    zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(router);
    zmq_ctx_term(ctx);
    s_end();
}

/* A minimal Prometheus text-format (0.0.4) check: every line is a comment
 * or `name{label="value",...} number`, names and labels well formed, every
 * sample's family has a TYPE, histograms cumulative with +Inf = count. */
static const char *s_check_prometheus(char *text, char *why, size_t whylen) {
    char types[64][96];
    int n_types = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') {
            char kind[16], name[96], type[32];
            if (sscanf(line, "# %15s %95s %31s", kind, name, type) < 2) return "bad comment line";
            if (!strcmp(kind, "TYPE")) {
                if (strcmp(type, "counter") && strcmp(type, "gauge") && strcmp(type, "histogram") &&
                    strcmp(type, "summary") && strcmp(type, "untyped"))
                    return "unknown TYPE";
                if (n_types < 64) snprintf(types[n_types++], sizeof types[0], "%s", name);
            }
            continue;
        }
        const char *p = line;
        char name[96];
        size_t n = 0;
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':'))
            goto bad;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
               *p == '_' || *p == ':') {
            if (n + 1 < sizeof name) name[n++] = *p;
            p++;
        }
        name[n] = '\0';
        if (*p == '{') {
            p++;
            while (*p != '}') {
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_')) goto bad;
                while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_') p++;
                if (*p++ != '=' || *p++ != '"') goto bad;
                while (*p && *p != '"') {
                    if (*p == '\\') p++;
                    if (*p) p++;
                }
                if (*p++ != '"') goto bad;
                if (*p == ',') p++;
                else if (*p != '}') goto bad;
            }
            p++;
        }
        if (*p++ != ' ') goto bad;
        char *end;
        double v = strtod(p, &end);
        if (end == p || (*end && *end != ' ') || isnan(v)) goto bad;
        int typed = 0;
        for (int i = 0; i < n_types && !typed; i++) {
            size_t k = strlen(types[i]);
            if (!strncmp(name, types[i], k) &&
                (!name[k] || !strcmp(name + k, "_bucket") || !strcmp(name + k, "_sum") ||
                 !strcmp(name + k, "_count")))
                typed = 1;
        }
        if (!typed) {
            snprintf(why, whylen, "sample without a TYPE: %s", line);
            return why;
        }
        continue;
    bad:
        snprintf(why, whylen, "not a Prometheus sample line: '%s'", line);
        return why;
    }
    return NULL;
}

/* The value of the first sample line starting with prefix, or -1. */
static double s_sample(const char *text, const char *prefix) {
    const char *p = strstr(text, prefix);
    while (p && p != text && p[-1] != '\n') p = strstr(p + 1, prefix);
    if (!p) return -1;
    p += strlen(prefix);
    while (*p && *p != ' ') p++;
    return strtod(p, NULL);
}

Test(gateway, metrics_are_prometheus_text) {
    s_start_worker("speech");
    s_start_gateway(C.cl.client_ep, NULL);
    for (int i = 0; i < 3; i++) {
        s_resp_t r = s_get("/healthz");
        s_require(r.status == 200, "healthz: HTTP %ld", r.status);
        s_resp_free(&r);
    }
    s_resp_t r = s_get("/v1/nothing");
    s_resp_free(&r);
    char id[NR_PROTO_ID_MAX + 1];
    s_speak("count me", NULL, id);
    cJSON_Delete(s_wait_final(id));

    r = s_get("/metrics");
    s_require(r.status == 200, "metrics: HTTP %ld", r.status);
    s_require(!strncmp(r.content_type, "text/plain", 10) && strstr(r.content_type, "version=0.0.4"),
              "metrics Content-Type '%s'", r.content_type);
    char *copy = strdup(r.body);
    char why[512];
    const char *bad = s_check_prometheus(copy, why, sizeof why);
    free(copy);
    s_require(bad == NULL, "%s\n%s", bad, r.body);
    s_require(s_sample(r.body, "narrator_gateway_requests_total{route=\"/healthz\",method=\"GET\",code=\"200\"}") == 3,
              "healthz count:\n%s", r.body);
    s_require(s_sample(r.body, "narrator_gateway_requests_total{route=\"unknown\",method=\"GET\",code=\"404\"}") == 1,
              "404 count:\n%s", r.body);
    s_require(s_sample(r.body, "narrator_gateway_requests_total{route=\"/v1/speak\",method=\"POST\",code=\"202\"}") == 1,
              "speak count:\n%s", r.body);
    s_require(s_sample(r.body, "narrator_gateway_request_duration_seconds_count{route=\"/healthz\"}") == 3,
              "healthz histogram count:\n%s", r.body);
    s_require(s_sample(r.body, "narrator_gateway_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"}") == 3,
              "healthz +Inf bucket:\n%s", r.body);
    s_require(s_sample(r.body, "narrator_gateway_request_bytes_total") >= 8, "bytes in:\n%s", r.body);
    s_require(s_sample(r.body, "narrator_gateway_response_bytes_total") > 0, "bytes out:\n%s", r.body);
    s_require(s_sample(r.body, "narrator_gateway_broker_errors_total{error=\"unreachable\"}") == 0,
              "broker errors:\n%s", r.body);
    s_resp_free(&r);
    s_end();
}

Test(gateway, page_health_and_readiness) {
    s_start_worker("speech");
    s_start_gateway(C.cl.client_ep, NULL);
    s_wait_stage("speech");
    s_resp_t r = s_get("/");
    s_require(r.status == 200 && !strncmp(r.content_type, "text/html", 9), "GET /: HTTP %ld (%s)",
              r.status, r.content_type);
    s_require(strstr(r.body, "/app.js") && strstr(r.body, "<audio"), "index.html: %.200s", r.body);
    s_resp_free(&r);
    r = s_get("/app.js");
    s_require(r.status == 200 && strstr(r.content_type, "javascript"), "app.js: HTTP %ld (%s)",
              r.status, r.content_type);
    s_resp_free(&r);
    r = s_get("/style.css");
    s_require(r.status == 200 && !strncmp(r.content_type, "text/css", 8), "style.css: HTTP %ld",
              r.status);
    s_resp_free(&r);
    r = s_get("/healthz");
    s_require(r.status == 200 && r.json && !strcmp(s_jstr(r.json, "status"), "ok"), "healthz: %s",
              r.body);
    s_require(s_jnum(r.json, "max_body_bytes") == atof(S_MAX_BODY), "healthz: %s", r.body);
    s_resp_free(&r);
    r = s_get("/readyz");
    s_require(r.status == 200 && r.json && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r.json, "ready")),
              "readyz: HTTP %ld: %s", r.status, r.body);
    cJSON *workers = cJSON_GetObjectItemCaseSensitive(r.json, "workers");
    s_require(s_jnum(workers, "speech") == 1, "readyz workers: %s", r.body);
    cJSON *missing = cJSON_GetObjectItemCaseSensitive(r.json, "stages_without_workers");
    int has_vision = 0, has_speech = 0;
    cJSON *item;
    cJSON_ArrayForEach(item, missing) {
        if (cJSON_IsString(item) && !strcmp(item->valuestring, "vision")) has_vision = 1;
        if (cJSON_IsString(item) && !strcmp(item->valuestring, "speech")) has_speech = 1;
    }
    s_require(has_vision && !has_speech, "stages_without_workers: %s", r.body);
    s_resp_free(&r);
    s_end();
}

Test(gateway, sigterm_exits_zero_and_help) {
    s_start_gateway(C.cl.client_ep, NULL);
    int status = 0;
    cr_assert_eq(nr_harness_proc_stop(C.gateway, SIGTERM, 10000, &status), 0);
    nr_harness_proc_destroy(&C.gateway);
    s_require(nr_harness_exit_code(status) == 0, "gateway exit status %d (signal %d)",
              nr_harness_exit_code(status), nr_harness_exit_signal(status));
    char *log = nr_harness_path(C.cl.dir, "help.log");
    const char *help[] = {C.gateway_bin, "--help", NULL};
    cr_assert_eq(nr_harness_run(help, NULL, log, 10000, &status), 0);
    s_require(nr_harness_exit_code(status) == 0, "--help exited %d", nr_harness_exit_code(status));
    char *text = nr_harness_read_file(log, NULL);
    s_require(text && strstr(text, "--max-body-bytes") && strstr(text, "NARRATOR_GATEWAY_BROKER"),
              "--help: %s", text ? text : "");
    free(text);
    const char *bad[] = {C.gateway_bin, "--port", "99999", NULL};
    cr_assert_eq(nr_harness_run(bad, NULL, log, 10000, &status), 0);
    s_require(nr_harness_exit_code(status) == 2, "--port 99999 exited %d", nr_harness_exit_code(status));
    free(log);
    s_end();
}

Test(gateway, full_queue_is_429_with_retry_after) {
    /* A queue bound of 1 and no speech worker: the second job finds it full. */
    int status = 0;
    cr_assert_eq(nr_harness_proc_stop(C.cl.broker, SIGTERM, 10000, &status), 0);
    nr_harness_proc_destroy(&C.cl.broker);
    const char *bound[] = {"--queue-bound", "1", NULL};
    s_start_broker_with(bound);
    s_start_gateway(C.cl.client_ep, NULL);
    char id[NR_PROTO_ID_MAX + 1];
    s_speak("the first one fits", NULL, id);
    s_req_t q = {.method = "POST", .path = "/v1/speak", .content_type = "text/plain",
                 .body = "the second does not", .size = 19};
    s_resp_t r = s_http(&q);
    s_expect_error(&r, 429, "busy", "speak into a full queue");
    s_require(r.retry_after[0], "429 without Retry-After");
    s_resp_free(&r);
    r = s_get("/metrics");
    s_require(s_sample(r.body, "narrator_gateway_broker_errors_total{error=\"busy\"}") == 1,
              "busy not counted:\n%s", r.body);
    s_resp_free(&r);
    s_end();
}

/* client-rate: one client IP gets its burst, then 429 with Retry-After
 * before its body is read; GETs are not limited; the refusal is counted. */
Test(gateway, client_over_its_rate_is_429_with_retry_after) {
    const char *limit[] = {"--client-rate", "1", "--client-burst", "2", NULL};
    s_start_gateway(C.cl.client_ep, limit);
    char id[NR_PROTO_ID_MAX + 1];
    s_speak("first of the burst", NULL, id);
    s_speak("second of the burst", NULL, id);
    s_req_t q = {.method = "POST", .path = "/v1/speak", .content_type = "text/plain",
                 .body = "one too many", .size = 12};
    s_resp_t r = s_http(&q);
    s_expect_error(&r, 429, "busy", "third speak within a second");
    s_require(strstr(r.body, "127.0.0.1") && strstr(r.body, "client-rate"),
              "the message names neither the client nor the setting: %s", r.body);
    s_require(atoi(r.retry_after) >= 1, "429 without a Retry-After in seconds: '%s'", r.retry_after);
    s_resp_free(&r);
    r = s_get("/healthz");
    s_require(r.status == 200, "GET limited too: HTTP %ld", r.status);
    s_resp_free(&r);
    r = s_get("/metrics");
    s_require(s_sample(r.body, "narrator_gateway_rate_limited_total") == 1, "refusal not counted:\n%s", r.body);
    s_resp_free(&r);
    usleep(1100 * 1000); /* one token back */
    s_speak("after the pause", NULL, id);
    s_end();
}

/* Many requests at once over the thread pool (each pool thread has its own
 * broker client): every submit is answered, every job finishes. */
Test(gateway, concurrent_requests_over_the_thread_pool) {
    s_start_worker("speech");
    const char *threads[] = {"--threads", "3", NULL};
    s_start_gateway(C.cl.client_ep, threads);
    enum { N = 24 };
    CURLM *multi = curl_multi_init();
    cr_assert_not_null(multi);
    CURL *easy[N];
    s_resp_t resp[N];
    char texts[N][64];
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: text/plain");
    char url[128];
    snprintf(url, sizeof url, "%s/v1/speak", C.base);
    for (int i = 0; i < N; i++) {
        memset(&resp[i], 0, sizeof resp[i]);
        snprintf(texts[i], sizeof texts[i], "concurrent request number %d", i);
        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, texts[i]);
        curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, s_on_body);
        curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, &resp[i]);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT, 60L);
        curl_multi_add_handle(multi, easy[i]);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(multi, &running);
        if (running) curl_multi_poll(multi, NULL, 0, 1000, NULL);
    }
    char ids[N][NR_PROTO_ID_MAX + 1];
    for (int i = 0; i < N; i++) {
        long code = 0;
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &code);
        cJSON *j = resp[i].body ? cJSON_Parse(resp[i].body) : NULL;
        s_require(code == 202 && j && s_jstr(j, "id"), "request %d: HTTP %ld: %s", i, code,
                  resp[i].body ? resp[i].body : "");
        snprintf(ids[i], sizeof ids[i], "%s", s_jstr(j, "id"));
        for (int k = 0; k < i; k++) s_require(strcmp(ids[k], ids[i]), "two texts got one id");
        cJSON_Delete(j);
        free(resp[i].body);
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    curl_slist_free_all(headers);
    curl_multi_cleanup(multi);
    for (int i = 0; i < N; i++) {
        cJSON *rec = s_wait_final(ids[i]);
        s_require(!strcmp(s_jstr(rec, "state"), "done"), "job %d: %s", i, s_jstr(rec, "state"));
        cJSON_Delete(rec);
    }
    s_expect_audio(ids[N - 1]);
    s_resp_t r = s_get("/v1/jobs");
    s_require(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "jobs")) == N,
              "recent jobs: %s", r.body);
    s_resp_free(&r);
    s_end();
}

/* ---- hostile clients (issue 16) ---- */

/* A TCP connection to the gateway, or -1. */
static int s_connect(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)C.http_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends raw bytes and reads until the gateway closes (or timeout_ms):
 * everything it answered, NUL-terminated (the caller frees it). */
static char *s_raw(const char *request, size_t size, int timeout_ms) {
    int fd = s_connect();
    s_require(fd >= 0, "cannot connect to the gateway: %s", strerror(errno));
    size_t off = 0;
    while (off < size) {
        ssize_t n = send(fd, request + off, size - off, MSG_NOSIGNAL);
        if (n <= 0) break; /* answered and closed early: read what came */
        off += (size_t)n;
    }
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    cr_assert_not_null(out);
    long long end = nr_harness_now_ms() + timeout_ms;
    for (;;) {
        long long left = end - nr_harness_now_ms();
        struct pollfd p = {fd, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) break;
        if (len + 1024 > cap) {
            cap *= 2;
            out = realloc(out, cap);
            cr_assert_not_null(out);
        }
        ssize_t n = recv(fd, out + len, cap - len - 1, 0);
        if (n <= 0) break;
        len += (size_t)n;
    }
    out[len] = '\0';
    close(fd);
    return out;
}

/* How many HTTP responses (status lines) a raw answer holds. */
static int s_count_responses(const char *text) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, "HTTP/1.1 ")); p++) n++;
    return n;
}

/* A raw answer's first response is this status with a JSON error body. */
static void s_expect_raw_error(const char *answer, int status, const char *error, const char *what) {
    char line[32];
    snprintf(line, sizeof line, "HTTP/1.1 %d ", status);
    s_require(!strncmp(answer, line, strlen(line)), "%s: wanted %d, got: %.300s", what, status, answer);
    s_require(strstr(answer, "application/json"), "%s: not JSON: %.300s", what, answer);
    char want[64];
    snprintf(want, sizeof want, "\"error\":\"%s\"", error);
    s_require(strstr(answer, want), "%s: no %s in %.400s", what, want, answer);
}

/* DNS rebinding and cross-site pages: a Host that is not one of the
 * gateway's names, an Origin that is not its own, and a cross-site POST
 * or DELETE are 403 with a JSON error; its own names and origin, and the
 * configured ones, are served. */
Test(gateway, foreign_host_and_cross_origin_are_403) {
    s_start_gateway(C.cl.client_ep, NULL);
    char host_ok[64], origin_ok[80];
    snprintf(host_ok, sizeof host_ok, "Host: localhost:%d", C.http_port);
    snprintf(origin_ok, sizeof origin_ok, "Origin: http://127.0.0.1:%d", C.http_port);
    const char *rebound[] = {"Host: attacker.example:8080", NULL};
    const char *rebound_port[] = {"Host: 127.0.0.1:1", NULL};
    const char *localhost[] = {host_ok, NULL};
    const char *evil_origin[] = {"Origin: http://attacker.example", NULL};
    const char *null_origin[] = {"Origin: null", NULL};
    const char *own_origin[] = {origin_ok, "Sec-Fetch-Site: same-origin", NULL};
    const char *cross_site[] = {"Sec-Fetch-Site: cross-site", NULL};
    struct {
        s_req_t q;
        long status;
        const char *what;
    } cases[] = {
        {{.path = "/healthz", .headers = rebound}, 403, "GET with a foreign Host"},
        {{.path = "/v1/jobs/abc", .headers = rebound}, 403, "job status with a foreign Host"},
        {{.path = "/", .headers = rebound}, 403, "the page with a foreign Host"},
        {{.path = "/healthz", .headers = rebound_port}, 403, "Host with another port"},
        {{.method = "POST", .path = "/v1/speak", .content_type = "text/plain", .body = "hi", .size = 2,
          .headers = evil_origin}, 403, "POST from another origin"},
        {{.method = "POST", .path = "/v1/speak", .content_type = "text/plain", .body = "hi", .size = 2,
          .headers = null_origin}, 403, "POST from an opaque origin"},
        {{.method = "DELETE", .path = "/v1/jobs/abc", .headers = evil_origin}, 403, "DELETE from another origin"},
        {{.path = "/v1/jobs", .headers = evil_origin}, 403, "cross-origin read of the job list"},
        {{.method = "POST", .path = "/v1/speak", .content_type = "text/plain", .body = "hi", .size = 2,
          .headers = cross_site}, 403, "POST with Sec-Fetch-Site: cross-site"},
        {{.method = "DELETE", .path = "/v1/jobs/abc", .headers = cross_site}, 403, "cross-site DELETE"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_resp_t r = s_http(&cases[i].q);
        s_expect_error(&r, cases[i].status, "invalid_argument", cases[i].what);
        s_resp_free(&r);
    }
    /* Nothing refused reached the queue; its own names and origin work. */
    s_req_t q = {.path = "/healthz", .headers = localhost};
    s_resp_t r = s_http(&q);
    s_require(r.status == 200, "GET with Host localhost:port: HTTP %ld: %s", r.status, r.body);
    s_resp_free(&r);
    s_req_t get_cross = {.path = "/healthz", .headers = cross_site};
    r = s_http(&get_cross);
    s_require(r.status == 200, "a cross-site GET is not a state change: HTTP %ld", r.status);
    s_resp_free(&r);
    s_req_t own = {.method = "POST", .path = "/v1/speak", .content_type = "text/plain",
                   .body = "same origin", .size = 11, .headers = own_origin};
    r = s_http(&own);
    s_require(r.status == 202, "POST from the page's own origin: HTTP %ld: %s", r.status, r.body);
    s_resp_free(&r);
    r = s_get("/readyz");
    cJSON *queues = cJSON_GetObjectItemCaseSensitive(r.json, "queues");
    s_require(s_jnum(queues, "speech") == 1, "refused POSTs were queued: %s", r.body);
    s_resp_free(&r);

    /* Configured names and origins. */
    int status = 0;
    nr_harness_proc_stop(C.gateway, SIGTERM, 10000, &status);
    nr_harness_proc_destroy(&C.gateway);
    const char *conf[] = {"--allowed-hosts", "narrator.example, [::1]:9", "--allowed-origins",
                          "https://app.example", NULL};
    s_start_gateway(C.cl.client_ep, conf);
    const char *named[] = {"Host: NARRATOR.example", "Origin: https://narrator.example", NULL};
    const char *app[] = {"Host: narrator.example:443", "Origin: https://app.example",
                         "Sec-Fetch-Site: cross-site", NULL};
    const char *loopback[] = {"Host: 127.0.0.1", NULL};
    s_req_t a = {.method = "POST", .path = "/v1/speak", .content_type = "text/plain", .body = "named",
                 .size = 5, .headers = named};
    r = s_http(&a);
    s_require(r.status == 202, "configured host, its own origin: HTTP %ld: %s", r.status, r.body);
    s_resp_free(&r);
    s_req_t b = {.method = "POST", .path = "/v1/speak", .content_type = "text/plain", .body = "app",
                 .size = 3, .headers = app};
    r = s_http(&b);
    s_require(r.status == 202, "configured origin: HTTP %ld: %s", r.status, r.body);
    s_resp_free(&r);
    s_req_t c = {.path = "/healthz", .headers = loopback};
    r = s_http(&c);
    s_expect_error(&r, 403, "invalid_argument", "a default name once allowed-hosts is set");
    s_resp_free(&r);
    s_end();
}

/* Framing: two Content-Length headers (or one with Transfer-Encoding) are
 * 400 and nothing after them is read as a second request; %00 in the
 * target is 400; an option given twice (query or form) is 400 naming it. */
Test(gateway, ambiguous_framing_nul_and_repeated_options_are_400) {
    s_start_gateway(C.cl.client_ep, NULL);
    char req[1024];
    /* The second request hides in what the first Content-Length leaves. */
    int n = snprintf(req, sizeof req,
                     "POST /v1/speak HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: text/plain\r\n"
                     "Content-Length: 5\r\nContent-Length: 66\r\n\r\nhello"
                     "DELETE /v1/jobs/x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 0\r\n\r\n",
                     C.http_port, C.http_port);
    char *answer = s_raw(req, (size_t)n, 10000);
    s_expect_raw_error(answer, 400, "invalid_argument", "two Content-Length headers");
    s_require(strstr(answer, "Content-Length"), "the message does not say why: %s", answer);
    s_require(s_count_responses(answer) == 1, "the rest was read as a request: %s", answer);
    free(answer);
    n = snprintf(req, sizeof req,
                 "POST /v1/speak HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: text/plain\r\n"
                 "Content-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                 C.http_port);
    answer = s_raw(req, (size_t)n, 10000);
    s_expect_raw_error(answer, 400, "invalid_argument", "Content-Length with Transfer-Encoding");
    free(answer);
    n = snprintf(req, sizeof req,
                 "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
                 C.http_port);
    answer = s_raw(req, (size_t)n, 10000);
    s_expect_raw_error(answer, 400, "invalid_argument", "a GET with two Content-Length headers");
    free(answer);

    const char *twice_form[] = {"voice", "ka", "voice", "l", "image", "@a.png:image/png", NULL};
    const char *split_form[] = {"voice", "ka", "image", "@a.png:image/png", "voice", "l", NULL};
    const char *query_and_form[] = {"voice", "kal", "image", "@a.png:image/png", NULL};
    const char *prompt_twice[] = {"prompt", "a picture", "image", "@a.png:image/png", "prompt", "of", NULL};
    size_t png_size = 0;
    char *png = s_fixture("astronaut_rgba.png", &png_size);
    struct {
        s_req_t q;
        long status;
        const char *error;
        const char *named; /* in the message */
        const char *what;
    } cases[] = {
        {{.path = "/v1/jobs/abc%00def"}, 400, "invalid_argument", "%00", "%00 in a job id"},
        {{.path = "/index.html%00.png"}, 400, "invalid_argument", "%00", "%00 in a page path"},
        {{.method = "POST", .path = "/v1/speak?voice=kal%00x", .content_type = "text/plain",
          .body = "hi", .size = 2}, 400, "invalid_argument", "%00", "%00 in a query argument"},
        {{.method = "POST", .path = "/v1/speak?voice=ka&voice=l", .content_type = "text/plain",
          .body = "hi", .size = 2}, 400, "bad_option", "'voice'", "voice twice in the query"},
        {{.method = "POST", .path = "/v1/jobs", .form = twice_form, .file = png, .file_size = png_size},
         400, "bad_option", "'voice'", "voice twice in a form"},
        {{.method = "POST", .path = "/v1/jobs", .form = split_form, .file = png, .file_size = png_size},
         400, "bad_option", "'voice'", "voice twice in a form, apart"},
        {{.method = "POST", .path = "/v1/jobs?voice=slt", .form = query_and_form, .file = png,
          .file_size = png_size}, 400, "bad_option", "'voice'", "voice in the query and the form"},
        {{.method = "POST", .path = "/v1/jobs?beams=2&beams=2", .content_type = "image/png", .body = png,
          .size = png_size}, 400, "bad_option", "'beams'", "beams twice, the same value"},
        {{.method = "POST", .path = "/v1/jobs", .form = prompt_twice, .file = png, .file_size = png_size},
         400, "bad_option", "'prompt' is given more than once", "prompt twice in a form"},
        {{.method = "POST", .path = "/v1/jobs?prompt=a&prompt=a", .content_type = "image/png", .body = png,
          .size = png_size}, 400, "bad_option", "'prompt' is given more than once", "prompt twice in the query"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_resp_t r = s_http(&cases[i].q);
        s_expect_error(&r, cases[i].status, cases[i].error, cases[i].what);
        s_require(strstr(s_jstr(r.json, "message"), cases[i].named), "%s: the message does not name %s: %s",
                  cases[i].what, cases[i].named, r.body);
        s_resp_free(&r);
    }
    free(png);
    s_resp_t r = s_get("/readyz");
    cJSON *queues = cJSON_GetObjectItemCaseSensitive(r.json, "queues");
    s_require(s_jnum(queues, "vision") <= 0 && s_jnum(queues, "speech") <= 0,
              "refused requests were queued: %s", r.body);
    s_resp_free(&r);
    s_end();
}

/* Slow clients: 20 connections (every slot) that trickle a request head
 * byte by byte, each byte well inside the idle timeout, are closed at the
 * head deadline, and a normal request is served meanwhile. */
Test(gateway, slow_heads_are_closed_at_the_head_deadline) {
    enum { N = 20 };
    const char *limits[] = {"--threads", "1", "--max-connections", "20", "--head-timeout-s", "2",
                            "--connection-timeout-s", "30", NULL};
    s_start_gateway(C.cl.client_ep, limits);
    int fds[N];
    int open_n = 0;
    for (int i = 0; i < N; i++) {
        fds[i] = s_connect();
        s_require(fds[i] >= 0, "slow client %d cannot connect", i);
        const char *line = "GET /healthz HTTP/1.1\r\n";
        s_require(send(fds[i], line, strlen(line), MSG_NOSIGNAL) > 0, "slow client %d", i);
        open_n++;
    }
    /* Trickle one byte per client every 250 ms until the gateway closes
     * them (or 20 s: the idle timeout alone never would). */
    int closed[N] = {0}, n_closed = 0;
    long long end = nr_harness_now_ms() + 20000;
    while (n_closed < N && nr_harness_now_ms() < end) {
        for (int i = 0; i < N; i++) {
            if (closed[i]) continue;
            char buf[256];
            ssize_t got = recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
                send(fds[i], "X", 1, MSG_NOSIGNAL) < 0) {
                closed[i] = 1;
                n_closed++;
            }
        }
        nr_harness_sleep_ms(250);
    }
    for (int i = 0; i < N; i++) close(fds[i]);
    s_require(n_closed == N, "%d of %d slow clients still held their connection after 20 s", N - n_closed, N);
    s_resp_t r = s_get("/healthz");
    s_require(r.status == 200, "a normal request after the slow ones: HTTP %ld (curl %d)", r.status,
              r.curl_error);
    s_resp_free(&r);
    r = s_get("/metrics");
    s_require(s_sample(r.body, "narrator_gateway_head_timeouts_total") >= N, "head timeouts:\n%s", r.body);
    s_resp_free(&r);
    s_end();
}

/* The gateway's resident memory (kB) from /proc: VmRSS or VmHWM. */
static long s_proc_kb(pid_t pid, const char *field) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *text = nr_harness_read_file(path, NULL);
    if (!text) return -1;
    const char *p = strstr(text, field);
    long kb = p ? strtol(p + strlen(field) + 1, NULL, 10) : -1;
    free(text);
    return kb;
}

/* 50 concurrent uploads of 20 MiB: the bodies held in memory stay within
 * max-buffered-bytes (the gateway's peak RSS is bounded), the uploads that
 * do not fit get 503 busy with Retry-After before their body is read, and
 * a normal request is served afterwards. Before the budget, every upload
 * was buffered at once (about 1 GB). */
Test(gateway, concurrent_large_uploads_stay_within_the_body_budget) {
    enum { N = 50 };
    const size_t body = 20u << 20;
    const char *limits[] = {"--max-body-bytes", "20971520", "--max-buffered-bytes", "67108864",
                            "--log-level", "info", NULL};
    s_start_gateway(C.cl.client_ep, limits);
    pid_t pid = nr_harness_proc_pid(C.gateway);
    long base_kb = s_proc_kb(pid, "VmRSS:");
    s_require(base_kb > 0, "cannot read the gateway's VmRSS");
    char *data = malloc(body);
    cr_assert_not_null(data);
    memcpy(data, "\x89PNG\r\n\x1a\n", 8);
    for (size_t i = 8; i < body; i++) data[i] = (char)(i * 131u >> 7);
    CURLM *multi = curl_multi_init();
    CURL *easy[N];
    s_resp_t resp[N];
    char url[128];
    snprintf(url, sizeof url, "%s/v1/jobs", C.base);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: image/png");
    for (int i = 0; i < N; i++) {
        memset(&resp[i], 0, sizeof resp[i]);
        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, data);
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body);
        curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, s_on_body);
        curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, &resp[i]);
        curl_easy_setopt(easy[i], CURLOPT_HEADERFUNCTION, s_on_header);
        curl_easy_setopt(easy[i], CURLOPT_HEADERDATA, &resp[i]);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT, 120L);
        curl_multi_add_handle(multi, easy[i]);
    }
    long peak_kb = base_kb;
    int running = 1;
    while (running) {
        curl_multi_perform(multi, &running);
        long kb = s_proc_kb(pid, "VmRSS:");
        if (kb > peak_kb) peak_kb = kb;
        if (running) curl_multi_poll(multi, NULL, 0, 50, NULL);
    }
    long hwm_kb = s_proc_kb(pid, "VmHWM:");
    if (hwm_kb > peak_kb) peak_kb = hwm_kb;
    int accepted = 0, busy = 0;
    for (int i = 0; i < N; i++) {
        long code = 0;
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &code);
        cJSON *j = resp[i].body ? cJSON_Parse(resp[i].body) : NULL;
        if (code == 202) {
            accepted++;
        } else {
            s_require(code == 503 && j && s_jstr(j, "error") && !strcmp(s_jstr(j, "error"), "busy"),
                      "upload %d: HTTP %ld: %s", i, code, resp[i].body ? resp[i].body : "");
            s_require(resp[i].retry_after[0], "upload %d: 503 without Retry-After", i);
            busy++;
        }
        cJSON_Delete(j);
        free(resp[i].body);
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    curl_slist_free_all(headers);
    curl_multi_cleanup(multi);
    free(data);
    cr_log_info("50 uploads of 20 MiB: %d accepted, %d busy; gateway RSS %ld kB before, peak %ld kB",
                accepted, busy, base_kb, peak_kb);
    s_require(accepted >= 1 && busy >= 1, "%d accepted, %d refused", accepted, busy);
    /* 64 MiB of bodies plus the broker SUBMITs in flight; 1 GB before. */
    s_require(peak_kb - base_kb < 256 * 1024, "the gateway grew from %ld to %ld kB", base_kb, peak_kb);
    /* Each reservation is given back when its answer is sent. */
    double held = -1;
    for (long long until = nr_harness_now_ms() + 10000; held != 0 && nr_harness_now_ms() < until;) {
        s_resp_t r = s_get("/metrics");
        held = s_sample(r.body, "narrator_gateway_buffered_bytes");
        s_resp_free(&r);
        if (held != 0) nr_harness_sleep_ms(100);
    }
    s_require(held == 0, "%.0f body bytes still held after every answer", held);
    char id[NR_PROTO_ID_MAX + 1];
    s_speak("still serving after the flood", NULL, id);
    s_end();
}

/* The speech text limit is the speech worker's max-text-bytes (4000 by
 * default): the gateway takes a longer text (up to max-body-bytes) and the
 * job fails with bad_text naming the limit. */
Test(gateway, speech_text_over_the_worker_limit_fails_bad_text) {
    s_start_worker("speech");
    s_start_gateway(C.cl.client_ep, NULL);
    char text[4002];
    memset(text, 'a', 4001);
    text[4001] = '\0';
    char id[NR_PROTO_ID_MAX + 1];
    s_speak(text, NULL, id);
    cJSON *rec = s_wait_final(id);
    const char *msg = s_jstr(rec, "error_message");
    s_require(!strcmp(s_jstr(rec, "state"), "failed") && s_jstr(rec, "error") &&
                  !strcmp(s_jstr(rec, "error"), "bad_text") && msg && strstr(msg, "4000"),
              "4001 bytes: state %s, error %s: %s", s_jstr(rec, "state"),
              s_jstr(rec, "error") ? s_jstr(rec, "error") : "-", msg ? msg : "");
    cJSON_Delete(rec);
    s_end();
}

/* The review step: a run's jobs with their records page by page, each
 * job's submitted image, and a review that speaks an edited caption again
 * (a new speech job) and keeps both captions and the approval. */
Test(gateway, run_pages_images_and_reviews) {
    s_start_worker("vision");
    s_start_worker("text");
    s_start_worker("speech");
    s_start_gateway(C.cl.client_ep, NULL);
    s_wait_stage("vision");
    s_wait_stage("text");
    s_wait_stage("speech");

    size_t jpeg_size = 0, png_size = 0;
    char *jpeg = s_fixture("chelsea_317x211.jpg", &jpeg_size);
    char *png = s_fixture("astronaut_interlaced.png", &png_size);
    nr_client_t *client = nr_client_new(C.cl.client_ep, 10000);
    cr_assert_not_null(client);
    nr_client_job_t jobs[] = {{"review-a", "vision,text,speech", NULL, 0, jpeg, jpeg_size, "gw-run"},
                              {"review-b", "vision,text,speech", NULL, 0, png, png_size, "gw-run"}};
    nr_msg_t replies[2];
    int codes[2];
    for (int i = 0; i < 2; i++) nr_proto_msg_init(&replies[i]);
    cr_assert_eq(nr_client_submit_batch(client, jobs, 2, replies, codes), 0);
    s_require(codes[0] == 0 && codes[1] == 0, "submits: %d %d", codes[0], codes[1]);
    for (int i = 0; i < 2; i++) nr_proto_msg_clear(&replies[i]);
    nr_client_destroy(&client);
    cJSON *rec = s_wait_final("review-a");
    s_require(!strcmp(s_jstr(rec, "state"), "done"), "review-a: %s", s_jstr(rec, "state"));
    char original[512];
    snprintf(original, sizeof original, "%s", s_jstr(rec, "caption"));
    cJSON_Delete(rec);
    cJSON_Delete(s_wait_final("review-b"));

    s_resp_t r = s_get("/v1/runs/gw-run");
    s_require(r.status == 200 && r.json, "GET run: HTTP %ld: %s", r.status, r.body);
    s_require(s_jnum(r.json, "total") == 2, "total: %s", r.body);
    cJSON *list = cJSON_GetObjectItemCaseSensitive(r.json, "jobs");
    s_require(cJSON_GetArraySize(list) == 2, "jobs: %s", r.body);
    s_require(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r.json, "next")), "one page: %s", r.body);
    const cJSON *first = cJSON_GetArrayItem(list, 0);
    s_require(!strcmp(s_jstr(first, "id"), "review-a") && !strcmp(s_jstr(first, "run"), "gw-run") &&
                  !strcmp(s_jstr(first, "caption"), original),
              "first job: %s", r.body);
    s_resp_free(&r);

    r = s_get("/v1/jobs/review-a/image");
    s_require(r.status == 200 && !strcmp(r.content_type, "image/jpeg") && r.size == jpeg_size &&
                  !memcmp(r.body, jpeg, jpeg_size),
              "image: HTTP %ld, %s, %zu bytes", r.status, r.content_type, r.size);
    s_resp_free(&r);
    r = s_get("/v1/jobs/review-b/image");
    s_require(r.status == 200 && !strcmp(r.content_type, "image/png"), "png: %s", r.content_type);
    s_resp_free(&r);
    /* The vision worker's thumbnail: a JPEG of the size its record names. */
    rec = s_wait_final("review-b");
    cJSON *stages = cJSON_GetObjectItemCaseSensitive(rec, "stages");
    cJSON *vision = stages ? cJSON_GetObjectItemCaseSensitive(stages, "vision") : NULL;
    const char *thumb_bytes = vision ? s_jstr(vision, "thumbnail") : NULL;
    s_require(thumb_bytes && atol(thumb_bytes) > 0, "stages.vision.thumbnail missing");
    r = s_get("/v1/jobs/review-b/thumbnail");
    s_require(r.status == 200 && !strcmp(r.content_type, "image/jpeg") && r.size == (size_t)atol(thumb_bytes) &&
                  r.size <= 65536 && (unsigned char)r.body[0] == 0xFF && (unsigned char)r.body[1] == 0xD8,
              "thumbnail: HTTP %ld, %s, %zu bytes (record: %s)", r.status, r.content_type, r.size, thumb_bytes);
    s_resp_free(&r);
    cJSON_Delete(rec);

    const char *edit = "{\"caption\": \"a tabby cat on a wall\", \"approved\": true}";
    s_req_t q = {.method = "POST", .path = "/v1/jobs/review-a/review", .content_type = "application/json",
                 .body = edit, .size = strlen(edit)};
    r = s_http(&q);
    s_require(r.status == 200 && r.json, "review: HTTP %ld: %s", r.status, r.body);
    cJSON *review = cJSON_GetObjectItemCaseSensitive(r.json, "review");
    s_require(review && !strcmp(s_jstr(review, "caption"), "a tabby cat on a wall") &&
                  cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(review, "approved")) &&
                  s_jnum(review, "ms") > 0,
              "review in the record: %s", r.body);
    s_require(!strcmp(s_jstr(r.json, "caption"), original), "the worker's caption stays: %s", r.body);
    char speech_job[NR_PROTO_ID_MAX + 1];
    snprintf(speech_job, sizeof speech_job, "%s", s_jstr(review, "speech_job"));
    s_resp_free(&r);
    rec = s_wait_final(speech_job);
    s_require(!strcmp(s_jstr(rec, "state"), "done"), "speech job: %s", s_jstr(rec, "state"));
    cJSON_Delete(rec);
    s_expect_audio(speech_job);

    const char *unapprove = "{\"approved\": false}";
    q.body = unapprove;
    q.size = strlen(unapprove);
    r = s_http(&q);
    review = r.json ? cJSON_GetObjectItemCaseSensitive(r.json, "review") : NULL;
    s_require(r.status == 200 && review && cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(review, "approved")) &&
                  !strcmp(s_jstr(review, "caption"), "a tabby cat on a wall"),
              "approval withdrawn, the edit kept: %s", r.body);
    s_resp_free(&r);

    static const char *const bad[] = {"[1]", "{}", "{\"caption\": 3}", "{\"approved\": \"yes\"}",
                                      "{\"caption\": \"\"}", "{\"approved\": true, \"state\": \"x\"}", "not json"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        q.body = bad[i];
        q.size = strlen(bad[i]);
        r = s_http(&q);
        s_expect_error(&r, 400, "invalid_argument", bad[i]);
        s_resp_free(&r);
    }
    q.content_type = "text/plain";
    q.body = edit;
    q.size = strlen(edit);
    r = s_http(&q);
    s_expect_error(&r, 415, "unsupported", "review as text/plain");
    s_resp_free(&r);
    q.content_type = "application/json";
    q.path = "/v1/jobs/no-such-job/review";
    r = s_http(&q);
    s_expect_error(&r, 404, "not_found", "review of an unknown job");
    s_resp_free(&r);
    /* No thumbnail (a speech job never saw a vision worker): 404 naming
     * the original; a POST: 405. */
    char path[160];
    snprintf(path, sizeof path, "/v1/jobs/%s/thumbnail", speech_job);
    r = s_get(path);
    s_expect_error(&r, 404, "not_found", "thumbnail of a speech job");
    s_require(strstr(s_jstr(r.json, "message"), "no thumbnail") && strstr(s_jstr(r.json, "message"), "/image"),
              "message: %s", r.body);
    s_resp_free(&r);
    s_req_t post = {.method = "POST", .path = "/v1/jobs/review-a/thumbnail", .content_type = "image/jpeg",
                    .body = "x", .size = 1};
    r = s_http(&post);
    s_require(r.status == 405, "POST thumbnail: HTTP %ld", r.status);
    s_resp_free(&r);
    r = s_get("/v1/runs/no-such-run");
    s_expect_error(&r, 404, "not_found", "unknown run");
    s_resp_free(&r);
    r = s_get("/v1/runs/gw-run?offset=-1");
    s_expect_error(&r, 400, "invalid_argument", "negative offset");
    s_resp_free(&r);
    free(jpeg);
    free(png);
    s_end();
}
