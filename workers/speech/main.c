/* narrator-worker-speech: the speech stage; UTF-8 text in, WAV out, with
 * Flite (built in) or Kokoro (a model folder). */
#include "common/log.h"
#include "workers/speech/engine.h"
#include "workers/worker.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    nr_worker_settings_t worker;
    long max_text_bytes;
    char engine[16];
    char model[1024];
    char voice[64];
    long threads;
} s_settings_t;

static const nr_config_option_t s_options[] = {
    NR_WORKER_CONFIG_OPTIONS(s_settings_t, worker),
    {"max-text-bytes", NR_CONFIG_INT, 1, 30000, "4000", offsetof(s_settings_t, max_text_bytes), 0,
     "longest text accepted, in bytes (30000 keeps the WAV under the 64 MiB payload limit)"},
    {"engine", NR_CONFIG_STRING, 0, 0, "flite", offsetof(s_settings_t, engine), sizeof(((s_settings_t *)0)->engine),
     "speech engine: flite (built in) or kokoro (needs --model)"},
    {"model", NR_CONFIG_STRING, 0, 0, "", offsetof(s_settings_t, model), sizeof(((s_settings_t *)0)->model),
     "kokoro: the model folder (config.json, kokoro-v1_0.pth, voices/*.pt)"},
    {"voice", NR_CONFIG_STRING, 0, 0, "", offsetof(s_settings_t, voice), sizeof(((s_settings_t *)0)->voice),
     "default voice; \"\" = slt (flite) or af_heart (kokoro)"},
    {"threads", NR_CONFIG_INT, 0, 1024, "0", offsetof(s_settings_t, threads), 0,
     "kokoro: compute threads; 0 = all cores"},
    NR_CONFIG_END};

static const char s_usage[] =
    "Speech stage worker: synthesizes each job's UTF-8 text (input frame 0) into a\n"
    "16-bit PCM mono WAV (output frame 0) with Flite (--engine flite, the default:\n"
    "voices slt, kal, kal16, awb, rms; 8 or 16 kHz) or Kokoro-82M (--engine kokoro\n"
    "--model DIR: the voice packs in DIR/voices; 24 kHz; text to phonemes with\n"
    "espeak-ng). Job option \"voice\" picks the voice (an unknown one fails the job\n"
    "with the list), \"speed\" 0.5..2.0 the pace (both engines). Results: engine,\n"
    "voice, sample_rate, duration_ms, speed. READY advertises the voices. Flite is\n"
    "not thread-safe: keep capacity 1 for it and run more processes to scale.";

/* "v1,v2,...": the engine's voices, for READY (at most 64, 2048 bytes). */
static void s_voices(const nr_speech_engine_t *e, char *out, size_t cap) {
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < nr_speech_engine_voice_count(e) && i < NR_PROTO_VOICES_MAX; i++) {
        const char *v = nr_speech_engine_voice_name(e, i);
        size_t l = strlen(v);
        if (!nr_proto_voice_name_valid(v) || o + l + 2 > cap) continue;
        o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? "," : "", v);
    }
}

int main(int argc, char **argv) {
    s_settings_t settings;
    int rc = nr_worker_config_load(s_options, &settings, argc, argv, "narrator-worker-speech", s_usage);
    if (rc == 1) return 0;
    if (rc) return 2;
    nr_log_set_component("worker-speech");
    nr_speech_engine_params_t params = nr_speech_engine_default_params();
    snprintf(params.engine, sizeof params.engine, "%s", settings.engine);
    params.model_dir = settings.model;
    params.default_voice = settings.voice;
    params.max_text_bytes = (size_t)settings.max_text_bytes;
    params.num_threads = (int)settings.threads;
    char err[512] = "";
    nr_speech_engine_t *engine = nr_speech_engine_new(&params, err, sizeof err);
    if (!engine) {
        fprintf(stderr, "narrator-worker-speech: %s\n", err);
        return 2;
    }
    int kokoro = !strcmp(nr_speech_engine_name(engine), "kokoro");
    if (!kokoro && settings.worker.capacity > 1)
        nr_log(NR_LOG_WARN, "capacity %ld: Flite synthesis is serialized, so jobs beyond one only wait",
               settings.worker.capacity);
    static char voices[NR_PROTO_VOICES_BYTES + 1];
    s_voices(engine, voices, sizeof voices);
    nr_log(NR_LOG_INFO, "engine %s, %zu voices", nr_speech_engine_name(engine), nr_speech_engine_voice_count(engine));
    nr_worker_stage_t stage = nr_worker_stage_default();
    stage.name = "speech";
    stage.capacity = 1;
    stage.ctx = engine;
    stage.run = nr_speech_engine_run_job;
    stage.model = kokoro ? "kokoro" : "flite";
    stage.voices = voices;
    rc = nr_worker_main(&stage, &settings.worker);
    if (rc == 0) nr_speech_engine_destroy(&engine); /* otherwise a handler may still be using it */
    return rc;
}
