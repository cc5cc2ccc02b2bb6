/* The `narrate` command line: parses argv into one nr_cli_t, with no side
 * effects beyond reading the environment (NARRATOR_BROKER, NARRATOR_TIMEOUT,
 * NARRATOR_JSON, NARRATOR_QUIET, NARRATOR_CONFIG), so it is unit-testable.
 *
 * Exit codes of `narrate` (a script can rely on them):
 *   0  NR_EXIT_OK        everything asked for is done
 *   1  NR_EXIT_FAILED    some job failed, was cancelled, its outputs could
 *                        not be written, or (submit, speak) it sat at a stage
 *                        no worker serves for longer than --timeout; (submit)
 *                        a subfolder could not be read and was skipped; or
 *                        writing to stdout failed (a full disk, /dev/full)
 *   2  NR_EXIT_USAGE     bad command line or unreadable input files
 *   3  NR_EXIT_CONNECT   cannot reach the broker
 *   4  NR_EXIT_TIMEOUT   timed out: no answer from the broker, or `wait` gave
 *                        up (its --timeout, or no worker serves the stage)
 *   5  NR_EXIT_NOTFOUND  no such job */
#ifndef NR_CLIENT_CLI_H
#define NR_CLIENT_CLI_H

#include "client/altjob.h"
#include "client/client.h"
#include "client/manifest.h"

#include <stddef.h>
#include <stdio.h>

enum {
    NR_EXIT_OK = 0,
    NR_EXIT_FAILED = 1,
    NR_EXIT_USAGE = 2,
    NR_EXIT_CONNECT = 3,
    NR_EXIT_TIMEOUT = 4,
    NR_EXIT_NOTFOUND = 5,
};

typedef enum {
    NR_CLI_NONE = 0,
    NR_CLI_HELP,   /* --help / help: print usage, exit 0 */
    NR_CLI_SPEAK,
    NR_CLI_SUBMIT,
    NR_CLI_STATUS,
    NR_CLI_WAIT,
    NR_CLI_GET,
    NR_CLI_CANCEL,
    NR_CLI_STATS,
} nr_cli_command_t;

#define NR_CLI_DEFAULT_BROKER "tcp://127.0.0.1:5555"
#define NR_CLI_DEFAULT_TIMEOUT 10L /* seconds */
#define NR_CLI_DEFAULT_WINDOW 8L
#define NR_CLI_DEFAULT_ROUTE "vision,text,speech"
#define NR_CLI_SPEECH_ROUTE "speech"

#define NR_CLI_TIMEOUT_MAX 86400L
#define NR_CLI_WAIT_MAX 604800L
#define NR_CLI_WINDOW_MAX 1024L
#define NR_CLI_BEAMS_MAX NR_CLIENT_BEAMS_MAX
#define NR_CLI_LENGTH_MAX NR_CLIENT_LENGTH_MAX
#define NR_CLI_VOICE_MAX NR_CLIENT_VOICE_MAX
#define NR_CLI_ROUTE_MAX 263 /* 8 names of 32 bytes and their commas */

typedef struct {
    /* Global settings (config table: file < environment < flags). */
    char broker[256];
    long timeout;  /* seconds: per-request answer time, and how long a job
                      may sit at a stage no worker serves */
    int json;      /* one JSON object per result on stdout */
    int quiet;     /* no progress, no per-item lines; errors only */
    char curve_server_key[512];      /* CURVE: broker's public key (Z85 or .pub path) */
    char curve_secret_key_file[512]; /* CURVE: this client's NAME.key */

    nr_cli_command_t command;
    /* speak */
    const char *text;
    /* speak (file), submit and get (folder) */
    const char *output;
    /* speak and submit: job options; 0 / "" means "the worker's default" */
    char voice[NR_CLI_VOICE_MAX + 1];
    char speed[24]; /* "" or as given, checked by nr_proto_speed_check */
    long beams;
    long max_length;
    const char *prompt; /* submit: caption prompt (BLIP), borrowed from argv; NULL: none */
    const char *language; /* submit: caption language (PaliGemma), borrowed from argv; NULL: none */
    /* submit */
    char route[NR_CLI_ROUTE_MAX + 1];
    long window;
    int no_wait;
    int id_random; /* --id-from random; content hash otherwise */
    const char *run; /* submit: the run to join (NULL: a new one); status: the run to sum up */
    int all_pages; /* --all-pages: each page of a multi-page TIFF is a job */
    const char **paths; /* owned array of pointers into argv */
    size_t n_paths;
    const char *files_from; /* --files-from LIST: more paths, one a line */
    nr_altjob_params_t alt; /* --alt-text sidecar|embed, --in-place, --overwrite */
    int skip_described;     /* no job for an image that has alt text */
    const char *manifests[NR_MANIFEST_FILES_MAX]; /* --manifest FILE (.jsonl, .csv) */
    size_t n_manifests;
    /* status, wait, get, cancel */
    const char *id;
    long wait_timeout; /* wait: seconds, 0 = no limit */
} nr_cli_t;

/* Parses argv (argv[0] is the program). Returns 0, or NR_EINVAL with a
 * message in err (exit NR_EXIT_USAGE), or NR_ENOMEM. `--help` anywhere, or
 * `help`, gives command NR_CLI_HELP. Call nr_cli_clear afterwards either way. */
int nr_cli_parse(nr_cli_t *self, int argc, char **argv, char *err, size_t errlen);
/* Frees what the parse allocated; safe to call twice. */
void nr_cli_clear(nr_cli_t *self);

/* Writes the usage text (commands, options, exit codes). */
void nr_cli_usage(FILE *out);

#endif
