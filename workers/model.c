/* The start the model stages share (see model.h). */
#include "workers/model.h"

#include <stdio.h>

#include "common/error.h"
#include "common/log.h"

int nr_worker_model_load(const char *stage, const nr_worker_settings_t *worker, const char *dir, long threads,
                         nr_captioner_params_t *params, nr_captioner_t **cap) {
    if (!dir[0]) {
        fprintf(stderr, "narrator-worker-%s: no model: give --model DIR (a checkpoint folder) or set "
                        "NARRATOR_WORKER_MODEL\n", stage);
        return NR_EINVAL;
    }
    if (nr_log_set_level(worker->log_level) != 0) {
        fprintf(stderr, "narrator-worker-%s: bad --log-level \"%s\" (error, warn, info or debug)\n", stage,
                worker->log_level);
        return NR_EINVAL;
    }
    params->device = worker->device;
    params->num_threads = (int)threads;
    char err[1024] = "";
    int rc = nr_captioner_load(dir, params, cap, err, sizeof err);
    if (rc)
        fprintf(stderr, "narrator-worker-%s: cannot load the model from %s: %s (%s)\n", stage, dir, err,
                nr_errname(rc));
    return rc;
}
