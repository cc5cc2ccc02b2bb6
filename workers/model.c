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

int nr_worker_model_run(const char *stage, const nr_worker_settings_t *worker, nr_captioner_t **cap,
                        void *ctx, nr_worker_run_fn run, nr_worker_run_batch_fn run_batch) {
    nr_worker_stage_t st = nr_worker_stage_default();
    st.name = stage;
    /* One handler thread that takes whole batches when batching is on. */
    st.capacity = worker->batch_size > 1 ? (int)worker->batch_size : 1;
    st.ctx = ctx;
    st.run = run;
    st.run_batch = run_batch;
    st.model = nr_captioner_name(*cap);
    int rc = nr_worker_main(&st, worker);
    if (rc == 0) nr_captioner_destroy(cap); /* otherwise a handler may still be using it */
    return rc;
}
