/* Integration test of `narrate eval`: a real redis-server, narrator-broker,
 * vision and text workers on the tiny fixture checkpoint and a Flite
 * speech worker narrate a few images with `narrate submit`; `narrate eval`
 * then scores that output folder (its WAVs transcribed by pocketsphinx),
 * prints the table and writes the JSON, which is checked: references equal
 * to the captions give ROUGE-L and BLEU-1 of 1; a sentence the cluster
 * speaks (`narrate speak`) is heard back with a low word error rate; a
 * second run side by side gives the differences; --listener none and bad
 * REFS behave. The tiny random model's captions are gibberish, so only
 * what does not depend on their content is asserted about them. */
#include "tests/harness.h"
#include "common/error.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_WAIT_MS 120000

static struct {
    nr_harness_cluster_t cl;
    nr_client_t *client;
    char *broker_bin, *speech_bin, *narrate_bin;
} C;

static void s_dump_logs(void) {
    static const char *const logs[] = {"broker.log", "worker-0.log", "worker-1.log", "worker-2.log", NULL};
    nr_harness_dump_logs(C.cl.dir, logs, 4000);
}

#define s_require(cond, ...) NR_HARNESS_REQUIRE(s_dump_logs, cond, __VA_ARGS__)

static void s_setup(void) {
    memset(&C, 0, sizeof C);
    C.broker_bin = nr_harness_program("narrator-broker");
    if (!C.broker_bin) cr_skip_test("narrator-broker is not built: %s", nr_harness_error());
    C.speech_bin = nr_harness_program("narrator-worker-speech");
    C.narrate_bin = nr_harness_program("narrate");
    if (!C.speech_bin || !C.narrate_bin) cr_skip_test("narrate or narrator-worker-speech is not built");
    cr_assert_eq(nr_harness_cluster_start(&C.cl, "evalit", NULL), 0, "%s", nr_harness_error());
    s_require(nr_harness_cluster_spawn_broker(&C.cl, C.broker_bin, "broker.log", NULL) == 0, "%s",
              nr_harness_error());
    C.client = nr_client_new(C.cl.client_ep, 3000);
    cr_assert_not_null(C.client);
}

static void s_teardown(void) {
    nr_client_destroy(&C.client);
    nr_harness_cluster_stop(&C.cl);
    free(C.broker_bin), free(C.speech_bin), free(C.narrate_bin);
    memset(&C, 0, sizeof C);
}

static void s_worker(const char *prog, const char *name, const char *stage) {
    char *bin = nr_harness_program(prog);
    s_require(bin != NULL, "%s is not built", prog);
    char *model = nr_harness_source_path("tests/fixtures/vit-gpt2-tiny");
    const char *extra[] = {"--model", model, "--threads", "1", NULL};
    s_require(nr_harness_cluster_spawn_worker(&C.cl, bin, name, strcmp(stage, "speech") ? extra : NULL) >= 0, "%s",
              nr_harness_error());
    long have = nr_harness_wait_workers(C.client, stage, 1, S_WAIT_MS);
    s_require(have >= 1, "no live %s worker", stage);
    free(model);
    free(bin);
}

/* Runs narrate (args after the program name); exit code, output in *text. */
static int s_narrate(const char *const *args, char **text) {
    const char *argv[32];
    int n = 0;
    argv[n++] = C.narrate_bin;
    for (int i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
    argv[n] = NULL;
    static int calls;
    char *log = nr_harness_path(C.cl.dir, "narrate-%d.log", calls++); /* the harness appends */
    int status = 0;
    cr_assert_eq(nr_harness_run(argv, NULL, log, 240000, &status), 0, "%s", nr_harness_error());
    *text = nr_harness_read_file(log, NULL);
    free(log);
    cr_assert_not_null(*text);
    return nr_harness_exit_code(status);
}

static void s_copy_fixture(const char *name, const char *dir) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/images/%s", name);
    char *src = nr_harness_source_path(rel);
    size_t size = 0;
    char *data = src ? nr_harness_read_file(src, &size) : NULL;
    cr_assert_not_null(data, "%s", rel);
    char *dst = nr_harness_path(dir, "%s", name);
    cr_assert_eq(nr_harness_write_file(dst, data, size), 0);
    free(dst), free(data), free(src);
}

static cJSON *s_json(const char *path) {
    char *text = nr_harness_read_file(path, NULL);
    s_require(text != NULL, "%s was not written", path);
    cJSON *j = cJSON_Parse(text);
    s_require(j != NULL, "%s is not JSON: %.2000s", path, text);
    free(text);
    return j;
}

/* A number at a path of object keys / array indexes ("runs", "0", "text", "bleu_1"). */
static const cJSON *s_at(const cJSON *j, const char *const *path) {
    for (; j && *path; path++)
        j = cJSON_IsArray(j) ? cJSON_GetArrayItem(j, atoi(*path)) : cJSON_GetObjectItemCaseSensitive(j, *path);
    return j;
}

static double s_num(const cJSON *j, const char *const *path) {
    const cJSON *v = s_at(j, path);
    s_require(cJSON_IsNumber(v), "no number at %s...", path[0]);
    return v->valuedouble;
}

#define S_PATH(...) ((const char *const[]){__VA_ARGS__, NULL})

TestSuite(eval_it, .init = s_setup, .fini = s_teardown, .timeout = 600);

Test(eval_it, narrated_run_is_scored_and_heard) {
    s_worker("narrator-worker-vision", "vision-a", "vision");
    s_worker("narrator-worker-text", "text-a", "text");
    s_worker("narrator-worker-speech", "speech-a", "speech");
    char *in = nr_harness_path(C.cl.dir, "in"), *out = nr_harness_path(C.cl.dir, "out");
    cr_assert_eq(mkdir(in, 0755), 0);
    const char *images[] = {"chelsea_317x211.jpg", "rocket_palette_trns.png", "astronaut_rgba_webp.webp"};
    const char *const *stems = images; /* outputs keep the whole image name: chelsea_317x211.jpg.txt */
    for (int i = 0; i < 3; i++) s_copy_fixture(images[i], in);
    char *text = NULL;
    const char *submit[] = {"--broker", C.cl.client_ep, "--timeout", "60", "submit", in, "-o", out,
                            "--max-length", "8", NULL};
    int code = s_narrate(submit, &text);
    s_require(code == 0, "narrate submit exited %d: %s", code, text);
    free(text);

    /* References equal to the captions (TSV), plus an image of no run. */
    char *refs = nr_harness_path(C.cl.dir, "refs.tsv");
    FILE *f = fopen(refs, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 3; i++) {
        char *txt = nr_harness_path(out, "%s.txt", stems[i]);
        char *caption = nr_harness_read_file(txt, NULL);
        s_require(caption != NULL, "%s missing", txt);
        caption[strcspn(caption, "\t\r\n")] = '\0';
        fprintf(f, "some/folder/%s\t%s\n", images[i], caption);
        free(caption), free(txt);
    }
    fprintf(f, "unused.jpg\ta picture nobody took\n");
    fclose(f);
    char *json = nr_harness_path(C.cl.dir, "eval.json");
    const char *eval[] = {"eval", "--refs", refs, "--json", json, out, NULL};
    code = s_narrate(eval, &text);
    s_require(code == 0, "narrate eval exited %d: %s", code, text);
    s_require(strstr(text, "images scored: 3") && strstr(text, "BLEU-4") && strstr(text, "CIDEr-D") &&
                  strstr(text, "speech  WER"),
              "the table lacks rows: %s", text);
    free(text);
    cJSON *j = s_json(json);
    s_require(s_num(j, S_PATH("images_scored")) == 3, "images_scored");
    s_require(fabs(s_num(j, S_PATH("runs", "0", "text", "rouge_l")) - 1.0) < 1e-12, "ROUGE-L of a caption against itself");
    const cJSON *imgs = s_at(j, S_PATH("runs", "0", "images"));
    s_require(cJSON_GetArraySize(imgs) == 3, "3 images per run");
    int words = 0;
    for (int i = 0; i < 3; i++) {
        char idx[4];
        snprintf(idx, sizeof idx, "%d", i);
        const cJSON *tok = s_at(imgs, S_PATH(idx, "tokens"));
        s_require(cJSON_IsString(tok), "image %d: no tokens", i);
        words += *tok->valuestring != 0;
        /* Every WAV was transcribed (the words may be anything: the caption is gibberish). */
        s_require(cJSON_IsString(s_at(imgs, S_PATH(idx, "transcript"))), "image %d: no transcript", i);
        s_require(s_num(imgs, S_PATH(idx, "speech", "wer")) >= 0, "image %d: no WER", i);
    }
    if (words == 3) s_require(fabs(s_num(j, S_PATH("runs", "0", "text", "bleu_1")) - 1.0) < 1e-6, "BLEU-1 of captions against themselves");
    s_require(s_num(j, S_PATH("runs", "0", "speech", "images")) == 3, "3 spoken images");
    cJSON_Delete(j);

    /* A known English sentence spoken by the cluster's Flite worker, as a
     * one-image run of its own: pocketsphinx must hear most of it. */
    char *known = nr_harness_path(C.cl.dir, "known");
    cr_assert_eq(mkdir(known, 0755), 0);
    char *wav = nr_harness_path(known, "horse.wav");
    const char *sentence = "a man is riding a horse on the beach";
    const char *speak[] = {"--broker", C.cl.client_ep, "--timeout", "60", "speak", sentence, "-o", wav, NULL};
    code = s_narrate(speak, &text);
    s_require(code == 0, "narrate speak exited %d: %s", code, text);
    free(text);
    char *rec = nr_harness_path(known, "horse.json");
    const char record[] = "{\"id\":\"k\",\"source\":\"pics/horse.jpg\",\"state\":\"done\","
                          "\"caption\":\"A man is riding a horse on the beach.\",\"files\":[\"horse.wav\"]}\n";
    cr_assert_eq(nr_harness_write_file(rec, record, strlen(record)), 0);
    char *refs2 = nr_harness_path(C.cl.dir, "refs2.json");
    const char coco[] = "{\"images\":[{\"id\":7,\"file_name\":\"val/horse.jpg\"}],\"annotations\":["
                        "{\"image_id\":7,\"caption\":\"A man riding a horse on a beach.\"},"
                        "{\"image_id\":7,\"caption\":\"Someone rides a brown horse by the sea\"}]}";
    cr_assert_eq(nr_harness_write_file(refs2, coco, strlen(coco)), 0);
    const char *eval2[] = {"eval", "--refs", refs2, "--json", json, known, NULL};
    code = s_narrate(eval2, &text);
    s_require(code == 0, "narrate eval exited %d: %s", code, text);
    free(text);
    j = s_json(json);
    const cJSON *heard = s_at(j, S_PATH("runs", "0", "images", "0", "transcript"));
    s_require(cJSON_IsString(heard) && *heard->valuestring, "nothing heard");
    double wer = s_num(j, S_PATH("runs", "0", "speech", "wer"));
    s_require(wer < 0.5, "heard '%s' for '%s': WER %.3f", heard->valuestring, sentence, wer);
    s_require(s_num(j, S_PATH("runs", "0", "speech", "bleu_1")) > 0.3, "speech BLEU-1 %g",
              s_num(j, S_PATH("runs", "0", "speech", "bleu_1")));
    cJSON_Delete(j);

    /* Side by side: the run against a CSV manifest of it with one caption
     * changed to words no reference has: text differences fall, and the
     * manifest has no audio (speech null, no speech difference). */
    char *csv = nr_harness_path(C.cl.dir, "run2.csv");
    f = fopen(csv, "w");
    cr_assert_not_null(f);
    fprintf(f, "source path,job id,state,caption,model,voice,audio path,alt text action,error\n");
    for (int i = 0; i < 3; i++) {
        char *txt = nr_harness_path(out, "%s.txt", stems[i]);
        char *caption = nr_harness_read_file(txt, NULL);
        caption[strcspn(caption, "\r\n")] = '\0';
        for (char *q = caption; *q; q++)
            if (*q == '"') *q = '\'';
        fprintf(f, "%s/%s,id%d,done,\"%s\",tiny,slt,,keep,\n", in, images[i], i,
                i == 0 ? "zebra zebra, zebra \xff zebra zebra" : caption);
        free(caption), free(txt);
    }
    fclose(f);
    const char *eval3[] = {"eval", "--refs", refs, "--json", json, out, csv, NULL};
    code = s_narrate(eval3, &text);
    s_require(code == 0, "narrate eval of two runs exited %d: %s", code, text);
    s_require(strstr(text, "2-1"), "no difference column: %s", text);
    free(text);
    j = s_json(json);
    s_require(s_num(j, S_PATH("differences", "0", "text", "rouge_l")) < 0, "ROUGE-L difference");
    s_require(cJSON_IsNull(s_at(j, S_PATH("runs", "1", "speech"))), "the manifest has no audio");
    s_require(cJSON_IsNull(s_at(j, S_PATH("differences", "0", "speech"))), "no speech difference");
    const cJSON *cap = s_at(j, S_PATH("runs", "1", "images", "0", "caption"));
    s_require(cJSON_IsString(cap) && strstr(cap->valuestring, "zebra \xEF\xBF\xBD zebra"),
              "a byte that is not UTF-8 is written as U+FFFD");
    cJSON_Delete(j);

    /* --listener none: no transcripts; bad REFS: exit 2 with the reason. */
    const char *eval4[] = {"eval", "--listener", "none", "--refs", refs, "--json", json, out, NULL};
    code = s_narrate(eval4, &text);
    s_require(code == 0, "narrate eval --listener none exited %d: %s", code, text);
    s_require(!strstr(text, "speech  WER"), "speech rows without a listener: %s", text);
    free(text);
    j = s_json(json);
    s_require(cJSON_IsNull(s_at(j, S_PATH("runs", "0", "speech"))), "speech without a listener");
    cJSON_Delete(j);
    const char *eval5[] = {"eval", "--refs", in, out, NULL};
    code = s_narrate(eval5, &text);
    s_require(code == 2 && strstr(text, "not a regular file"), "narrate eval of a folder as REFS: %d %s", code, text);
    free(text);

    free(csv), free(refs2), free(rec), free(wav), free(known), free(json), free(refs), free(out), free(in);
}
