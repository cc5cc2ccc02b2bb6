/* narrator-worker-test: a stage program for the broker's integration tests,
 * built on the worker runtime. Job option "behave" picks what it does:
 *   echo (default)  output frame 0 = input frame 0, kv behave=echo
 *   sleep:<ms>      sleep that long, then echo
 *   fail            retryable failure (NR_EINTERNAL, retry=1)
 *   fail-final      final failure (NR_EOPTION, retry=0)
 *   crash           SIGKILL itself mid-job (for requeue tests)
 * Unknown behaviours fail with NR_EOPTION (final). The setting `behave`
 * (flag --behave) is used for jobs that carry no such option, so a script
 * that submits with `narrate` can still ask for a slow job. */
#include "common/error.h"
#include "workers/worker.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    nr_worker_settings_t worker;
    char stage[NR_PROTO_NAME_MAX + 1];
    char behave[64];
} s_settings_t;

static const nr_config_option_t s_options[] = {
    NR_WORKER_CONFIG_OPTIONS(s_settings_t, worker),
    {"stage", NR_CONFIG_STRING, 0, 0, "test", offsetof(s_settings_t, stage),
     sizeof(((s_settings_t *)0)->stage), "stage name to serve"},
    {"behave", NR_CONFIG_STRING, 0, 0, "echo", offsetof(s_settings_t, behave),
     sizeof(((s_settings_t *)0)->behave), "behaviour of jobs without a behave option"},
    NR_CONFIG_END};

static void s_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int s_run(void *ctx, const nr_msg_t *job, nr_msg_t *result, char *err, size_t errlen) {
    const char *behave = nr_proto_kv_get(job, "behave");
    if (!behave || !*behave) behave = ctx ? (const char *)ctx : "echo";
    if (!strncmp(behave, "sleep:", 6)) {
        char *end;
        long ms = strtol(behave + 6, &end, 10);
        if (end == behave + 6 || *end || ms < 0 || ms > 3600000)
            return nr_seterr(err, errlen, NR_EOPTION, "behave sleep:<ms> needs 0..3600000, got '%s'", behave);
        s_sleep_ms(ms);
    } else if (!strcmp(behave, "fail")) {
        return nr_seterr(err, errlen, NR_EINTERNAL, "test failure (retryable)");
    } else if (!strcmp(behave, "fail-final")) {
        return nr_seterr(err, errlen, NR_EOPTION, "test failure (final)");
    } else if (!strcmp(behave, "crash")) {
        s_sleep_ms(50);
        kill(getpid(), SIGKILL);
        s_sleep_ms(10000);
        return nr_seterr(err, errlen, NR_EINTERNAL, "SIGKILL did not kill us");
    } else if (strcmp(behave, "echo") != 0) {
        return nr_seterr(err, errlen, NR_EOPTION, "unknown behave '%s' (echo, sleep:<ms>, fail, fail-final, crash)", behave);
    }
    int rc = nr_proto_kv_add(result, "behave", behave);
    if (!rc) {
        if (job->frames_len > 0) rc = nr_proto_frame_add(result, job->frames[0].data, job->frames[0].size);
        else rc = nr_proto_frame_add(result, "", 0);
    }
    return rc ? nr_seterr(err, errlen, rc, "cannot build the result") : 0;
}

int main(int argc, char **argv) {
    s_settings_t settings;
    int rc = nr_worker_config_load(s_options, &settings, argc, argv, "narrator-worker-test",
                                   "Test stage worker: job option behave = echo | sleep:<ms> | fail | "
                                   "fail-final | crash.");
    if (rc == 1) return 0;
    if (rc) return 2;
    nr_worker_stage_t stage = nr_worker_stage_default();
    stage.name = settings.stage;
    stage.run = s_run;
    stage.ctx = settings.behave;
    stage.model = "test";
    return nr_worker_main(&stage, &settings.worker);
}
