/* narrator-worker-speech: the speech stage; UTF-8 text in, WAV out (Flite). */
#include "common/log.h"
#include "workers/speech/speech.h"
#include "workers/worker.h"

#include <stddef.h>
#include <stdio.h>

typedef struct {
    nr_worker_settings_t worker;
    long max_text_bytes;
    char voice[32];
} s_settings_t;

static const nr_config_option_t s_options[] = {
    NR_WORKER_CONFIG_OPTIONS(s_settings_t, worker),
    {"max-text-bytes", NR_CONFIG_INT, 1, 30000, "4000", offsetof(s_settings_t, max_text_bytes), 0,
     "longest text accepted, in bytes (30000 keeps the WAV under the 64 MiB payload limit)"},
    {"voice", NR_CONFIG_STRING, 0, 0, "slt", offsetof(s_settings_t, voice),
     sizeof(((s_settings_t *)0)->voice), "default voice: slt, kal, kal16, awb or rms"},
    NR_CONFIG_END};

static const char s_usage[] =
    "Speech stage worker: synthesizes each job's UTF-8 text (input frame 0) with Flite\n"
    "into a 16-bit PCM mono WAV (output frame 0). Job option \"voice\" picks the voice\n"
    "(slt, kal, kal16, awb, rms). Flite is not thread-safe: synthesis is serialized,\n"
    "so keep capacity 1 (the default) and run more processes to scale.";

int main(int argc, char **argv) {
    s_settings_t settings;
    int rc = nr_worker_config_load(s_options, &settings, argc, argv, "narrator-worker-speech", s_usage);
    if (rc == 1) return 0;
    if (rc) return 2;
    nr_log_set_component("worker-speech");
    nr_speech_params_t params = nr_speech_default_params();
    params.max_text_bytes = (size_t)settings.max_text_bytes;
    snprintf(params.default_voice, sizeof params.default_voice, "%s", settings.voice);
    char err[512] = "";
    nr_speech_t *speech = nr_speech_new(&params, err, sizeof err);
    if (!speech) {
        fprintf(stderr, "narrator-worker-speech: %s\n", err);
        return 2;
    }
    if (settings.worker.capacity > 1)
        nr_log(NR_LOG_WARN, "capacity %ld: Flite synthesis is serialized, so jobs beyond one only wait",
               settings.worker.capacity);
    nr_worker_stage_t stage = nr_worker_stage_default();
    stage.name = "speech";
    stage.capacity = 1;
    stage.ctx = speech;
    stage.run = nr_speech_run_job;
    stage.model = "flite";
    rc = nr_worker_main(&stage, &settings.worker);
    if (rc == 0) nr_speech_destroy(&speech); /* otherwise a handler may still be using it */
    return rc;
}
