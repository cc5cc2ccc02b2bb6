/* Integration test of `narrate submit` on an archive tree, against a real
 * redis-server, narrator-broker and vision + text workers on the tiny
 * vit-gpt2 fixture (and the speech worker when it is built): a nested
 * tree with two same-stem files in one folder, 001.jpg in two folders, a
 * JPEG with a person's alt text, one with malformed XMP, a WebP and a
 * hostile name goes through with --alt-text sidecar and a JSONL + CSV
 * manifest; the outputs mirror the tree; a rerun does no new work and
 * keeps a person's edit; --skip-described submits nothing for described
 * images; --alt-text embed writes copies with the XMP inside (WebP: a
 * sidecar, said so). Nothing asserts a time. */
#include "client/client.h"
#include "common/error.h"
#include "tests/harness.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_NS "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/"

static struct {
    nr_harness_cluster_t cl;
    nr_client_t *client;
    char *narrate, *in, *out, *route;
} C;

static void s_dump(void) {
    static const char *const names[] = {"broker.log", "worker-0.log", "worker-1.log",
                                        "worker-2.log", "narrate.log", NULL};
    nr_harness_dump_logs(C.cl.dir, names, 4000);
}

#define s_require(cond, ...) NR_HARNESS_REQUIRE(s_dump, cond, __VA_ARGS__)

static void s_worker(const char *prog, const char *name, const char *const *extra) {
    char *bin = nr_harness_program(prog);
    if (!bin) cr_skip_test("%s is not built: %s", prog, nr_harness_error());
    s_require(nr_harness_cluster_spawn_worker(&C.cl, bin, name, extra) >= 0, "%s", nr_harness_error());
    free(bin);
}

static char *s_at(const char *dir, const char *rel) { return nr_harness_path(dir, "%s", rel); }

static void s_copy_fixture(const char *fixture, const char *rel) {
    char src[256];
    snprintf(src, sizeof src, "tests/fixtures/images/%s", fixture);
    char *from = nr_harness_source_path(src);
    size_t n;
    char *data = nr_harness_read_file(from, &n);
    cr_assert_not_null(data, "%s", from);
    char *to = s_at(C.in, rel);
    cr_assert_eq(nr_harness_write_file(to, data, n), 0, "%s", nr_harness_error());
    free(to);
    free(data);
    free(from);
}

/* The fixture JPEG with a hand-made APP1 XMP segment holding packet. */
static void s_jpeg_with_xmp(const char *rel, const char *packet) {
    char *from = nr_harness_source_path("tests/fixtures/images/astronaut_50x40_up.jpg");
    size_t n;
    char *jpg = nr_harness_read_file(from, &n);
    cr_assert_not_null(jpg);
    static const char sig[] = "http://ns.adobe.com/xap/1.0/";
    size_t seg = 2 + sizeof sig + strlen(packet);
    char *out = malloc(n + seg + 2);
    memcpy(out, jpg, 2);
    out[2] = (char)0xff, out[3] = (char)0xe1, out[4] = (char)(seg >> 8), out[5] = (char)seg;
    memcpy(out + 6, sig, sizeof sig);
    memcpy(out + 6 + sizeof sig, packet, strlen(packet));
    memcpy(out + 4 + seg, jpg + 2, n - 2);
    char *to = s_at(C.in, rel);
    cr_assert_eq(nr_harness_write_file(to, out, n + seg + 2), 0);
    free(to);
    free(out);
    free(jpg);
    free(from);
}

static const char *s_packet(const char *text) {
    static char p[1024];
    snprintf(p, sizeof p,
             "<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?><x:xmpmeta xmlns:x='adobe:ns:meta/'>"
             "<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
             "<rdf:Description rdf:about='' xmlns:Iptc4xmpCore='" S_NS "'>"
             "<Iptc4xmpCore:AltTextAccessibility><rdf:Alt><rdf:li xml:lang='x-default'>%s"
             "</rdf:li></rdf:Alt></Iptc4xmpCore:AltTextAccessibility></rdf:Description>"
             "</rdf:RDF></x:xmpmeta><?xpacket end='w'?>",
             text);
    return p;
}

/* The x-default alt text in a file's raw bytes (no exempi), or NULL. */
static char *s_alt(const char *path) {
    size_t n;
    char *b = nr_harness_read_file(path, &n);
    if (!b) return NULL;
    char *text = NULL;
    const char *prop = memmem(b, n, "AltTextAccessibility>", 21);
    const char *li = prop ? memmem(prop, n - (size_t)(prop - b), "x-default", 9) : NULL;
    const char *gt = li ? memchr(li, '>', n - (size_t)(li - b)) : NULL;
    const char *lt = gt ? memchr(gt, '<', n - (size_t)(gt - b)) : NULL;
    if (memmem(b, n, S_NS, strlen(S_NS)) && lt) text = strndup(gt + 1, (size_t)(lt - gt - 1));
    free(b);
    return text;
}

static char *s_file(const char *dir, const char *rel) {
    char *p = s_at(dir, rel);
    char *t = nr_harness_read_file(p, NULL);
    free(p);
    return t;
}

static int s_exists(const char *dir, const char *rel) {
    char *p = s_at(dir, rel);
    int ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

static int s_count(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

/* Runs narrate submit with the extra arguments; returns its exit code and
 * its output in *log_text. */
static int s_submit(const char *out, const char *const *extra, char **log_text) {
    const char *argv[32] = {C.narrate, "--broker", C.cl.client_ep, "--timeout", "60", "submit",
                            C.in, "-o", out, "--route", C.route};
    int n = 11;
    for (int i = 0; extra && extra[i]; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    char *log = nr_harness_path(C.cl.dir, "narrate.log");
    int status = 0;
    cr_assert_eq(nr_harness_run(argv, NULL, log, 300000, &status), 0, "%s", nr_harness_error());
    *log_text = nr_harness_read_file(log, NULL);
    free(log);
    return nr_harness_exit_code(status);
}

static const char *const s_images[] = {"a/b/001.jpg", "a/b/001.png", "c/001.jpg",
                                       "c/broken.jpg", "c/human.jpg", "d/pic.webp",
                                       "d/we ird\x01.png"};
static const char *const s_outputs[] = {"a/b/001.jpg", "a/b/001.png", "c/001.jpg",
                                        "c/broken.jpg", "c/human.jpg", "d/pic.webp",
                                        "d/we_ird_.png"};
#define S_N 7

/* Redis, the broker, vision + text workers on the tiny fixture and the
 * speech worker when built; C.in and C.out named (not made). */
static char *s_model;

static void s_start(void) {
    memset(&C, 0, sizeof C);
    char *broker = nr_harness_program("narrator-broker");
    if (!broker) cr_skip_test("narrator-broker is not built: %s", nr_harness_error());
    C.narrate = nr_harness_program("narrate");
    if (!C.narrate) cr_skip_test("narrate is not built: %s", nr_harness_error());
    cr_assert_eq(nr_harness_cluster_start(&C.cl, "archive-it", NULL), 0, "%s", nr_harness_error());
    int rc = nr_harness_cluster_spawn_broker(&C.cl, broker, "broker.log", NULL);
    free(broker);
    s_require(rc == 0, "%s", nr_harness_error());
    static const char *const wargs[] = {"--heartbeat-ms", "250", NULL};
    C.cl.worker_args = wargs;
    s_model = nr_harness_source_path("tests/fixtures/vit-gpt2-tiny");
    const char *mx[] = {"--model", s_model, "--threads", "1", NULL};
    s_worker("narrator-worker-vision", "vision0", mx);
    s_worker("narrator-worker-text", "text0", mx);
    char *speech = nr_harness_program("narrator-worker-speech");
    C.route = speech ? "vision,text,speech" : "vision,text";
    if (speech) s_worker("narrator-worker-speech", "speech0", NULL);
    free(speech);
    C.client = nr_client_new(C.cl.client_ep, 5000);
    cr_assert_not_null(C.client);
    s_require(nr_harness_wait_workers(C.client, "text", 1, 60000) >= 1, "no text worker");
    C.in = nr_harness_path(C.cl.dir, "in");
    C.out = nr_harness_path(C.cl.dir, "out");
}

static void s_stop(void) {
    nr_client_destroy(&C.client);
    nr_harness_cluster_stop(&C.cl);
    free(C.narrate);
    free(C.in);
    free(C.out);
    free(s_model);
    s_model = NULL;
}

Test(archive_it, tree_alt_text_manifest_rerun) {
    s_start();
    const char *dirs[] = {"", "/a", "/a/b", "/c", "/d"};
    for (int i = 0; i < 5; i++) {
        char *d = nr_harness_path(C.in, "%s", dirs[i]);
        cr_assert_eq(mkdir(d, 0700), 0, "%s", d);
        free(d);
    }
    s_copy_fixture("astronaut_50x40_up.jpg", "a/b/001.jpg");
    s_copy_fixture("astronaut_50x40_up.dec.png", "a/b/001.png");
    s_copy_fixture("rocket_grey.jpg", "c/001.jpg");
    s_copy_fixture("astronaut_1000x20.webp", "d/pic.webp");
    s_copy_fixture("astronaut_interlaced.20x30.png", "d/we ird\x01.png");
    s_jpeg_with_xmp("c/human.jpg", s_packet("A person wrote this"));
    s_jpeg_with_xmp("c/broken.jpg", "<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>"
                                    "<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF><unclosed>"
                                    "</x:xmpmeta><?xpacket end='w'?>");
    char *jsonl = nr_harness_path(C.cl.dir, "run.jsonl"), *csv = nr_harness_path(C.cl.dir, "run.csv");
    const char *side[] = {"--alt-text", "sidecar", "--manifest", jsonl, "--manifest", csv, NULL};

    /* Run 1: everything is captioned; outputs mirror the tree. */
    char *log = NULL;
    int code = s_submit(C.out, side, &log);
    s_require(code == 0, "run 1 exit %d: %s", code, log);
    char *before[S_N];
    for (int i = 0; i < S_N; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "%s.json", s_outputs[i]);
        before[i] = s_file(C.out, rel);
        s_require(before[i] && strstr(before[i], "\"state\":\"done\""), "%s: %s", rel,
                  before[i] ? before[i] : "(missing)");
        snprintf(rel, sizeof rel, "%s.txt", s_outputs[i]);
        s_require(s_exists(C.out, rel), "%s missing: %s", rel, log);
        if (strstr(C.route, "speech")) {
            snprintf(rel, sizeof rel, "%s.wav", s_outputs[i]);
            s_require(s_exists(C.out, rel), "%s missing", rel);
        }
    }
    s_require(!s_exists(C.out, "001.txt") && !s_exists(C.out, "001-2.txt"), "flat outputs written");
    /* The sidecar holds the caption (as cut), read without exempi. */
    char *caption = s_file(C.out, "a/b/001.jpg.txt");
    char *x = nr_harness_path(C.out, "a/b/001.jpg.xmp");
    char *alt = s_alt(x);
    s_require(alt && caption && !strncmp(caption, alt, strlen(alt)) && strlen(alt) <= 250,
              "sidecar alt text '%s' for caption '%s'", alt ? alt : "(none)", caption ? caption : "");
    free(alt);
    free(x);
    free(caption);
    s_require(s_exists(C.out, "d/pic.webp.xmp"), "no sidecar for the WebP");
    s_require(!s_exists(C.out, "c/human.jpg.xmp"), "a sidecar was written over a person's alt text");
    char *rec = s_file(C.out, "c/human.jpg.json");
    s_require(strstr(rec, "\"action\":\"kept-existing\"") && strstr(rec, "A person wrote this") &&
                  strstr(rec, "\"existing_from\":\"image\""),
              "human.jpg record: %s", rec);
    free(rec);
    rec = s_file(C.out, "c/broken.jpg.json");
    s_require(strstr(rec, "\"action\":\"skipped\"") && strstr(rec, "malformed"), "broken.jpg: %s", rec);
    free(rec);
    s_require(!s_exists(C.out, "c/broken.jpg.xmp"), "a sidecar was written for malformed XMP");
    char *m = nr_harness_read_file(jsonl, NULL);
    s_require(m && s_count(m, "\n") == S_N && s_count(m, "\"state\":\"done\"") == S_N, "jsonl: %s", m);
    for (int i = 0; i < S_N; i++) {
        char want[256];
        snprintf(want, sizeof want, "\"source\":\"%s/%s\"", C.in, i == 6 ? "d/we ird\\u0001.png" : s_images[i]);
        s_require(strstr(m, want), "no row %s in %s", want, m);
    }
    s_require(s_count(m, "\"alt_text_action\":\"written\"") == 5, "jsonl: %s", m);
    free(m);
    m = nr_harness_read_file(csv, NULL);
    s_require(m && s_count(m, "\r\n") == S_N + 1 && !strncmp(m, "\"source\",\"job_id\"", 17), "csv: %s", m);
    free(m);
    free(log);

    /* A person edits one sidecar. Run 2: no new work, the edit stays. */
    char *edited = nr_harness_path(C.out, "c/001.jpg.xmp");
    const char *p = s_packet("Edited by a person");
    cr_assert_eq(nr_harness_write_file(edited, p, strlen(p)), 0);
    code = s_submit(C.out, side, &log);
    s_require(code == 0, "run 2 exit %d: %s", code, log);
    for (int i = 0; i < S_N; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "%s.json", s_outputs[i]);
        char *after = s_file(C.out, rel);
        const char *u0 = strstr(before[i], "\"updated_ms\":"), *u1 = after ? strstr(after, "\"updated_ms\":") : NULL;
        s_require(u0 && u1 && !strncmp(u0, u1, 28), "%s was worked on again:\n%s\n%s", rel, before[i], after);
        free(after);
        free(before[i]);
    }
    alt = s_alt(edited);
    s_require(alt && !strcmp(alt, "Edited by a person"), "the edit became '%s'", alt ? alt : "(none)");
    free(alt);
    m = nr_harness_read_file(jsonl, NULL);
    s_require(s_count(m, "\n") == S_N && s_count(m, "\"alt_text_action\":\"kept-existing\"") == 6,
              "rerun jsonl: %s", m);
    free(m);
    free(log);

    /* Run 3: --skip-described submits only the image without alt text. */
    const char *skip[] = {"--skip-described", "--manifest", jsonl, NULL};
    code = s_submit(C.out, skip, &log);
    s_require(code == 0 && strstr(log, "1 done, 0 failed, 6 skipped"), "run 3 exit %d: %s", code, log);
    m = nr_harness_read_file(jsonl, NULL);
    s_require(s_count(m, "\"state\":\"skipped\"") == 6 && s_count(m, "\"job_id\":null") == 6, "jsonl: %s", m);
    free(m);
    rec = s_file(C.out, "c/human.jpg.json"); /* run 2's record stays */
    s_require(strstr(rec, "\"state\":\"done\""), "human.jpg record replaced: %s", rec);
    free(rec);
    free(log);

    /* Run 4: embedded copies in another folder; WebP falls back. */
    char *out2 = nr_harness_path(C.cl.dir, "out2");
    const char *embed[] = {"--alt-text", "embed", NULL};
    code = s_submit(out2, embed, &log);
    s_require(code == 0, "run 4 exit %d: %s", code, log);
    x = nr_harness_path(out2, "a/b/001.png");
    alt = s_alt(x);
    caption = s_file(out2, "a/b/001.png.txt");
    s_require(alt && caption && !strncmp(caption, alt, strlen(alt)), "embedded '%s' for '%s'",
              alt ? alt : "(none)", caption ? caption : "");
    free(alt);
    free(caption);
    free(x);
    rec = s_file(out2, "d/pic.webp.json");
    s_require(rec && strstr(rec, "\"action\":\"sidecar-fallback\""), "pic.webp: %s", rec);
    free(rec);
    s_require(s_exists(out2, "d/pic.webp.xmp") && !s_exists(out2, "d/pic.webp"), "WebP fallback files");
    s_require(!s_exists(out2, "c/human.jpg"), "a copy of human.jpg was written");
    free(log);
    free(out2);
    free(jsonl);
    free(csv);
    free(edited);
    s_stop();
}

/* 1,000 images in 100 nested folders, each folder holding 001..010 in
 * JPEG, PNG and WebP: one submit with sidecars and both manifests, then a
 * rerun that does no new work (the broker's done count stays) and keeps
 * every sidecar. Identical files are one job (content ids), so this runs
 * in seconds on the tiny model. */
Test(archive_it, thousand_images_in_nested_folders) {
    s_start();
    static const char *const fixtures[] = {"astronaut_50x40_up.jpg", "astronaut_50x40_up.dec.png",
                                           "astronaut_1000x20.webp"};
    static const char *const exts[] = {"jpg", "png", "webp"};
    cr_assert_eq(mkdir(C.in, 0700), 0);
    int n = 0;
    for (int a = 0; a < 10; a++) {
        char rel[64];
        snprintf(rel, sizeof rel, "y%d", 2010 + a);
        char *d = s_at(C.in, rel);
        cr_assert_eq(mkdir(d, 0700), 0);
        free(d);
        for (int b = 0; b < 10; b++) {
            snprintf(rel, sizeof rel, "y%d/roll %d", 2010 + a, b);
            d = s_at(C.in, rel);
            cr_assert_eq(mkdir(d, 0700), 0);
            free(d);
            for (int k = 1; k <= 10; k++, n++) {
                char name[96];
                snprintf(name, sizeof name, "%s/%03d.%s", rel, k, exts[n % 3]);
                s_copy_fixture(fixtures[n % 3], name);
            }
        }
    }
    char *jsonl = nr_harness_path(C.cl.dir, "run.jsonl"), *csv = nr_harness_path(C.cl.dir, "run.csv");
    const char *args[] = {"--alt-text", "sidecar", "--window", "64", "--quiet", "--manifest", jsonl,
                          "--manifest", csv, NULL};
    /* A run killed part way leaves a manifest of whole rows. */
    const char *argv[] = {C.narrate, "--broker", C.cl.client_ep, "submit", C.in, "-o", C.out,
                          "--route", C.route, "--window", "4", "--quiet", "--manifest", jsonl, NULL};
    char *klog = nr_harness_path(C.cl.dir, "narrate-killed.log");
    nr_harness_proc_t *p = nr_harness_spawn(argv, NULL, klog);
    cr_assert_not_null(p, "%s", nr_harness_error());
    char *m = NULL;
    for (long long end = nr_harness_now_ms() + 120000; nr_harness_now_ms() < end; nr_harness_sleep_ms(5)) {
        free(m);
        m = nr_harness_read_file(jsonl, NULL);
        if (m && s_count(m, "\n") >= 20) break;
    }
    nr_harness_proc_kill(p, SIGKILL);
    nr_harness_proc_wait(p, 10000, NULL);
    nr_harness_proc_destroy(&p);
    free(m);
    m = nr_harness_read_file(jsonl, NULL);
    size_t len = m ? strlen(m) : 0;
    int rows = s_count(m, "\n");
    s_require(rows >= 20 && m[len - 1] == '\n' && s_count(m, "{\"source\":") == rows &&
                  s_count(m, "\"error_message\":null}\n") == rows,
              "killed run's manifest (%d rows): ...%s", rows, m ? m + (len > 300 ? len - 300 : 0) : "");
    free(m);
    free(klog);

    char *log = NULL;
    int code = s_submit(C.out, args, &log);
    s_require(code == 0, "exit %d: %s", code, log);
    free(log);
    long done = nr_harness_stat(C.client, "jobs.done");
    s_require(done >= 3 && done <= 3, "jobs done: %ld (3 distinct images)", done);
    n = 0;
    for (int a = 0; a < 10; a++)
        for (int b = 0; b < 10; b++)
            for (int k = 1; k <= 10; k++, n++) {
                char rel[96];
                snprintf(rel, sizeof rel, "y%d/roll_%d/%03d.%s.xmp", 2010 + a, b, k, exts[n % 3]);
                s_require(s_exists(C.out, rel), "%s missing", rel);
                snprintf(rel, sizeof rel, "y%d/roll_%d/%03d.%s.json", 2010 + a, b, k, exts[n % 3]);
                s_require(s_exists(C.out, rel), "%s missing", rel);
            }
    m = nr_harness_read_file(jsonl, NULL);
    s_require(m && s_count(m, "\n") == 1000 && s_count(m, "\"alt_text_action\":\"written\"") == 1000,
              "jsonl rows: %d", s_count(m, "\n"));
    free(m);
    m = nr_harness_read_file(csv, NULL);
    s_require(m && s_count(m, "\r\n") == 1001, "csv rows: %d", s_count(m, "\r\n"));
    free(m);
    /* Rerun: nothing new done, every sidecar kept, every row written again. */
    code = s_submit(C.out, args, &log);
    s_require(code == 0, "rerun exit %d: %s", code, log);
    free(log);
    s_require(nr_harness_stat(C.client, "jobs.done") == done, "the rerun did new work");
    m = nr_harness_read_file(jsonl, NULL);
    s_require(m && s_count(m, "\"alt_text_action\":\"kept-existing\"") == 1000, "rerun rows: %d",
              s_count(m, "\n"));
    free(m);
    free(jsonl);
    free(csv);
    s_stop();
}

static int s_strcmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The job of a manifest row has a thumbnail for the review gallery: a
 * JPEG within 64 KiB, whatever the image's format. */
static void s_require_thumbnail(const char *row, const char *rel) {
    const char *at = strstr(row, "\"job_id\":\"");
    s_require(at, "%s: no job_id: %s", rel, row);
    char id[NR_PROTO_ID_MAX + 1];
    snprintf(id, sizeof id, "%.*s", (int)strcspn(at + 10, "\""), at + 10);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_fetch(C.client, id, "thumbnail", &reply);
    s_require(rc == 0 && reply.frames_len == 1 && reply.frames[0].size <= 65536 && reply.frames[0].size > 3 &&
                  !memcmp(reply.frames[0].data, "\xFF\xD8\xFF", 3),
              "%s (job %s): no thumbnail: %s (%s)", rel, id, nr_strerror(rc), nr_client_error(C.client));
    nr_proto_msg_clear(&reply);
}

/* The archive issue's acceptance run: 1,000 files of every format in 100
 * nested folders (each image fixture of tests/fixtures/image_formats, good
 * and hostile, in turn, with JPEG, PNG and WebP), one of them a JPEG whose
 * XMP holds a person's alt text. One submit with sidecars and a manifest:
 * every good file is captioned, every bad one fails alone with a clear
 * code, the person's alt text is kept, every captioned one has a
 * thumbnail; a rerun does no new work for the captioned ones. */
Test(archive_it, thousand_mixed_formats_with_sidecars_and_manifest) {
    s_start();
    char *dir = nr_harness_source_path("tests/fixtures/image_formats");
    cr_assert_not_null(dir);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    char *names[160];
    int n_names = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL && n_names < 157;) {
        const char *dot = strrchr(e->d_name, '.');
        /* Decoded references, the case list, and the MP4 (not an image name: the walk skips it). */
        if (e->d_name[0] == '.' || !dot || strstr(e->d_name, ".dec.") || !strcmp(dot, ".json") || !strcmp(dot, ".mp4"))
            continue;
        names[n_names++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n_names, sizeof *names, s_strcmp);
    /* The existing formats too, from tests/fixtures/images. */
    names[n_names++] = strdup("../images/astronaut_50x40_up.jpg");
    names[n_names++] = strdup("../images/astronaut_rgba.png");
    names[n_names++] = strdup("../images/astronaut_1000x20.webp");
    cr_assert_gt(n_names, 40);
    cr_assert_eq(mkdir(C.in, 0700), 0);
    static char rels[1000][96];
    static int which[1000];
    for (int a = 0, n = 0; a < 10; a++) {
        char folder[64];
        snprintf(folder, sizeof folder, "%d", 1990 + a);
        char *p = s_at(C.in, folder);
        cr_assert_eq(mkdir(p, 0700), 0);
        free(p);
        for (int b = 0; b < 10; b++) {
            snprintf(folder, sizeof folder, "%d/box %02d", 1990 + a, b);
            p = s_at(C.in, folder);
            cr_assert_eq(mkdir(p, 0700), 0);
            free(p);
            for (int k = 0; k < 10; k++, n++) {
                which[n] = n % n_names;
                const char *name = names[which[n]], *ext = strrchr(name, '.');
                snprintf(rels[n], sizeof rels[n], "%s/%03d%s", folder, k, ext);
                char fixture[160];
                snprintf(fixture, sizeof fixture, "../image_formats/%s", name);
                if (n == 0) { /* the one a person described */
                    snprintf(rels[n], sizeof rels[n], "%s/%03d.jpg", folder, k);
                    s_jpeg_with_xmp(rels[n], s_packet("A person wrote this"));
                    which[n] = -1;
                } else {
                    s_copy_fixture(fixture, rels[n]);
                }
            }
        }
    }
    char *jsonl = nr_harness_path(C.cl.dir, "mixed.jsonl");
    const char *args[] = {"--alt-text", "sidecar", "--window", "64", "--quiet", "--manifest", jsonl, NULL};
    char *log = NULL;
    int code = s_submit(C.out, args, &log);
    s_require(code == 1, "exit %d (1: the bad files failed): %s", code, log);
    free(log);
    long done = nr_harness_stat(C.client, "jobs.done");
    char *m = nr_harness_read_file(jsonl, NULL);
    s_require(m && s_count(m, "\n") == 1000, "manifest rows: %d", s_count(m, "\n"));
    int good = 0, bad = 0;
    for (int n = 0; n < 1000; n++) {
        char key[160];
        snprintf(key, sizeof key, "%s/%s\"", C.in, rels[n]);
        char *row = strstr(m, key);
        s_require(row, "no manifest row for %s", rels[n]);
        char *end = strchr(row, '\n');
        *end = '\0';
        const char *name = which[n] < 0 ? "human.jpg" : names[which[n]];
        int hostile = !strncmp(name, "bad_", 4) || !strncmp(name, "bomb_", 5);
        if (hostile) {
            bad++;
            s_require(strstr(row, "\"state\":\"failed\"") &&
                          (strstr(row, "\"error\":\"bad_image\"") || strstr(row, "\"error\":\"not_an_image\"") ||
                           strstr(row, "\"error\":\"image_too_large\"")) &&
                          !strstr(row, "\"error_message\":null"),
                      "%s (%s) did not fail with a clear error: %s", rels[n], name, row);
        } else {
            good++;
            s_require(strstr(row, "\"state\":\"done\"") && !strstr(row, "\"caption\":null"),
                      "%s (%s) was not captioned: %s", rels[n], name, row);
            const char *action = which[n] < 0 ? "\"alt_text_action\":\"kept-existing\""
                                               : "\"alt_text_action\":\"written\"";
            s_require(strstr(row, action), "%s: %s", rels[n], row);
            s_require_thumbnail(row, rels[n]);
            if (which[n] >= 0) {
                char side[128];
                snprintf(side, sizeof side, "%s.xmp", rels[n]);
                for (char *c = side; *c; c++)
                    if (*c == ' ') *c = '_'; /* names are made safe */
                s_require(s_exists(C.out, side), "sidecar %s missing", side);
            }
        }
        *end = '\n';
    }
    s_require(good > 500 && bad > 100, "%d good, %d bad", good, bad);
    free(m);
    /* The person's alt text is where it was, untouched. */
    char *human = nr_harness_path(C.in, "%s", rels[0]);
    char *alt = s_alt(human);
    s_require(alt && !strcmp(alt, "A person wrote this"), "human alt text: %s", alt ? alt : "(none)");
    free(alt);
    free(human);

    /* Rerun: no captioned image is done again, every row is written again. */
    code = s_submit(C.out, args, &log);
    s_require(code == 1, "rerun exit %d: %s", code, log);
    free(log);
    s_require(nr_harness_stat(C.client, "jobs.done") == done, "the rerun captioned again");
    m = nr_harness_read_file(jsonl, NULL);
    s_require(m && s_count(m, "\n") == 1000 && s_count(m, "\"alt_text_action\":\"kept-existing\"") == good,
              "rerun rows: %d, kept: %d of %d", s_count(m, "\n"), s_count(m, "\"alt_text_action\":\"kept-existing\""),
              good);
    free(m);
    free(jsonl);
    for (int i = 0; i < n_names; i++) free(names[i]);
    free(dir);
    s_stop();
}
