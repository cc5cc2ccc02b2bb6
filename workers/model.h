/* What the two model stages (vision, text) share at start: checking their
 * settings and loading the checkpoint folder once, with the same messages
 * and exit status in both programs. */
#ifndef NR_WORKERS_MODEL_H
#define NR_WORKERS_MODEL_H

#include "models/captioner.h"
#include "workers/worker.h"

/* Loads the checkpoint folder `dir` (--model) for stage "vision" or "text"
 * with params, on the device of `worker` (--device) with `threads` CPU
 * threads (--threads; 0 = all cores). Checks first that a folder was given
 * and that --log-level is valid (so that a bad setting fails before the
 * slow load). On error it prints "narrator-worker-<stage>: ..." to stderr
 * and returns an NR_E* code: the program exits 2. Returns 0 and *cap. */
int nr_worker_model_load(const char *stage, const nr_worker_settings_t *worker, const char *dir, long threads,
                         nr_captioner_params_t *params, nr_captioner_t **cap);

/* Runs a model stage named `stage` with its handlers (run, run_batch, ctx)
 * through nr_worker_main: capacity batch_size when batching, else 1, and
 * the checkpoint's name as the model. Destroys *cap afterwards, unless the
 * worker left handler threads running (they may still use it). Returns
 * nr_worker_main's code. */
int nr_worker_model_run(const char *stage, const nr_worker_settings_t *worker, nr_captioner_t **cap,
                        void *ctx, nr_worker_run_fn run, nr_worker_run_batch_fn run_batch);

#endif
