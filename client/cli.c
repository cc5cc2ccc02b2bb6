/* The `narrate` command line: global settings from the config table, then a
 * command and its own options. */
#include "client/cli.h"
#include "client/client.h"
#include "common/config.h"
#include "common/error.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define S_ENV_PREFIX "NARRATOR_"

static const nr_config_option_t s_settings[] = {
    {"broker", NR_CONFIG_STRING, 0, 0, NR_CLI_DEFAULT_BROKER, offsetof(nr_cli_t, broker),
     sizeof(((nr_cli_t *)0)->broker), "broker client endpoint"},
    {"timeout", NR_CONFIG_INT, 1, NR_CLI_TIMEOUT_MAX, "10", offsetof(nr_cli_t, timeout), 0,
     "seconds to wait for the broker's answer, and for a job at a stage no worker serves"},
    {"json", NR_CONFIG_BOOL, 0, 0, "false", offsetof(nr_cli_t, json), 0,
     "print one JSON object per result on stdout"},
    {"quiet", NR_CONFIG_BOOL, 0, 0, "false", offsetof(nr_cli_t, quiet), 0,
     "print errors only (no progress, no per-item lines)"},
    {"curve-server-key", NR_CONFIG_STRING, 0, 0, "", offsetof(nr_cli_t, curve_server_key),
     sizeof(((nr_cli_t *)0)->curve_server_key), "CURVE: the broker's public key (Z85 or .pub file)"},
    {"curve-secret-key-file", NR_CONFIG_STRING, 0, 0, "", offsetof(nr_cli_t, curve_secret_key_file),
     sizeof(((nr_cli_t *)0)->curve_secret_key_file), "CURVE: this client's key file (narrator-keygen)"},
    NR_CONFIG_END,
};

static const struct {
    const char *name;
    nr_cli_command_t command;
} s_commands[] = {
    {"speak", NR_CLI_SPEAK}, {"submit", NR_CLI_SUBMIT}, {"status", NR_CLI_STATUS},
    {"wait", NR_CLI_WAIT},   {"get", NR_CLI_GET},       {"cancel", NR_CLI_CANCEL},
    {"stats", NR_CLI_STATS}, {"help", NR_CLI_HELP},
};

void nr_cli_usage(FILE *out) {
    fputs(
        "usage: narrate [global options] COMMAND [options] [arguments]\n"
        "\n"
        "Turns images into spoken captions with a narrator cluster (narrator-broker\n"
        "plus vision, text and speech workers).\n"
        "\n"
        "Commands:\n"
        "  speak TEXT -o FILE.wav [--voice V] [--speed X]\n"
        "        synthesize TEXT (route \"speech\"), wait for it and write the WAV file:\n"
        "        a new name or a regular file (replaced whole); a FIFO, or - for stdout,\n"
        "        is streamed into; a link, device or folder is refused\n"
        "  submit FILE|FOLDER... [-o DIR] [--window N] [--no-wait] [--id-from content|random]\n"
        "         [--route R] [--voice V] [--speed X] [--beams N] [--max-length N] [--prompt TEXT]\n"
        "         [--language L]\n"
        "         [--run ID]\n"
        "         [--alt-text sidecar|embed [--in-place] [--overwrite]] [--skip-described]\n"
        "         [--manifest RUN.jsonl] [--manifest RUN.csv] [--files-from LIST]\n"
        "        caption and narrate images (.jpg .jpeg .png .webp .tif .tiff .gif .bmp\n"
        "        .heic .heif .avif, any case; folders are searched\n"
        "        recursively, in sorted order; files named directly are always taken;\n"
        "        a subfolder that cannot be read is skipped with a warning, exit 1).\n"
        "        The folder tree is mirrored under DIR: ROOT/a/b/001.jpg gives\n"
        "        DIR/a/b/001.jpg.txt (caption), .wav (audio) and .json (record); a file\n"
        "        named directly goes to DIR/<name>.*. Names are made safe; two that\n"
        "        would meet get -2, -3 before the extension. Job ids are a content hash\n"
        "        of image + route + options, so submitting again skips finished work.\n"
        "          -o, --output DIR     output folder (default: .; created if missing)\n"
        "          --window N           jobs in flight at once (1..1024, default 8)\n"
        "          --no-wait            submit, print the job ids and return\n"
        "          --run ID             the run (batch) the jobs join: default a new one,\n"
        "                               printed first (\"run run-20261206T071500Z-1a2b3c4d\");\n"
        "                               give an earlier run's ID to add to it\n"
        "          --id-from content|random   how job ids are made (default content)\n"
        "          --all-pages          every page of a multi-page TIFF is its own job,\n"
        "                               written as <stem>@p1, <stem>@p2 ... (default:\n"
        "                               the first page only, under <stem>)\n"
        "          --route R            stages, comma-separated (default vision,text,speech)\n"
        "          --voice V            speech voice (worker default if not given)\n"
        "          --speed X            speaking pace, 0.5..2.0 (default 1)\n"
        "          --beams N            beam search width (1..16, default: the model's)\n"
        "          --max-length N       caption length limit in tokens (1..1024)\n"
        "          --files-from LIST    also the files and folders listed in LIST, one a\n"
        "                               line; outputs mirror each path as listed (less a\n"
        "                               leading / or ./; .. becomes _.)\n"
        "          --alt-text sidecar   write the caption as IPTC alt text (XMP\n"
        "                               Iptc4xmpCore:AltTextAccessibility, x-default) in\n"
        "                               DIR/a/b/001.jpg.xmp\n"
        "          --alt-text embed     write a copy DIR/a/b/001.jpg with the alt text in\n"
        "                               its XMP (JPEG, PNG, TIFF, GIF; other formats get a\n"
        "                               sidecar and the record says sidecar-fallback)\n"
        "          --in-place           write into the original (embed) or beside it\n"
        "                               (sidecar ROOT/a/b/001.jpg.xmp) instead of DIR\n"
        "          --overwrite          replace alt text already there (default: keep it;\n"
        "                               looked for in DIR's outputs, ROOT/..../X.xmp and\n"
        "                               the image's own XMP). Alt text is cut to 250\n"
        "                               characters at a word boundary\n"
        "          --skip-described     submit no job for an image that has alt text\n"
        "          --manifest FILE      one row per image (source, job id, state, caption,\n"
        "                               model, voice, audio, alt text action, error) as\n"
        "                               JSON Lines (.jsonl) or CSV (.csv); give both if\n"
        "                               wanted. Written as images finish\n"
        "          --prompt TEXT        the caption starts with TEXT (\"a picture of\"): BLIP's\n"
        "                               conditional captioning; 1..256 bytes of UTF-8. A\n"
        "                               captioner without prompts (vit-gpt2, git) fails\n"
        "                               the job with bad_option\n"
        "          --language L         caption language (es, de, pt-BR ...): PaliGemma's\n"
        "                               \"caption L\"; other captioners fail the job\n"
        "                               with bad_option\n"
        "  status ID               print the job record\n"
        "  status --run ID         sum up a run: its jobs by state, and each failed one\n"
        "  wait ID [--timeout S]   wait until the job is done, failed or cancelled\n"
        "                          (S: 1..604800 seconds; default no limit)\n"
        "  get ID [-o DIR]         write a finished job's outputs as DIR/<ID>.txt/.wav/.json\n"
        "  cancel ID               cancel a job that is not finished\n"
        "  stats                   print queue lengths, live workers and job counts\n"
        "  eval --refs REFS RESULTS...   score captions and spoken captions against\n"
        "                          reference captions (BLEU, ROUGE-L, CIDEr-D, WER);\n"
        "                          no broker needed; `narrate eval --help` for more\n"
        "  help                    print this help\n"
        "\n"
        "Global options (before or after the command; after it they win over the same\n"
        "option before it, except `wait --timeout`, which is wait's own):\n"
        "  --broker ENDPOINT   broker client endpoint (default tcp://127.0.0.1:5555;\n"
        "                      env NARRATOR_BROKER)\n"
        "  --timeout S         seconds to wait for the broker's answer, and for a job\n"
        "                      queued at a stage that no worker serves (1..86400,\n"
        "                      default 10; env NARRATOR_TIMEOUT)\n"
        "  --json              one JSON object per result on stdout (env NARRATOR_JSON)\n"
        "  --quiet             errors only (env NARRATOR_QUIET)\n"
        "  --config FILE       read 'name = value' settings from FILE (env NARRATOR_CONFIG)\n"
        "  --curve-server-key KEY        CURVE encryption + authentication: the broker's\n"
        "                      public key, Z85 text or a .pub file\n"
        "                      (env NARRATOR_CURVE_SERVER_KEY); with\n"
        "  --curve-secret-key-file FILE  this client's key file from narrator-keygen\n"
        "                      (env NARRATOR_CURVE_SECRET_KEY_FILE)\n"
        "  --help              print this help\n"
        "\n"
        "Exit codes:\n"
        "  0  everything asked for is done\n"
        "  1  some job failed or was cancelled, its outputs could not be written, or\n"
        "     (submit, speak) it sat at a stage no worker serves for over --timeout;\n"
        "     a subfolder was skipped; or stdout could not be written\n"
        "  2  usage error (bad command line, unreadable input)\n"
        "  3  cannot reach the broker\n"
        "  4  timed out: no answer from the broker, or `wait` gave up (its --timeout\n"
        "     ran out, or no worker serves the job's stage for over --timeout)\n"
        "  5  no such job\n",
        out);
}

/* Parses a whole decimal number in min..max into *out. */
static int s_number(const char *opt, const char *text, long min, long max, long *out, char *err,
                    size_t errlen) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0')
        return nr_seterr(err, errlen, NR_EINVAL, "%s needs a whole number, got '%s'", opt, text);
    if (v < min || v > max)
        return nr_seterr(err, errlen, NR_EINVAL, "%s must be in %ld..%ld, got %ld", opt, min, max, v);
    *out = v;
    return 0;
}

static int s_voice(const char *text, char *out, char *err, size_t errlen) {
    size_t n = strlen(text);
    if (n == 0 || n > NR_CLI_VOICE_MAX)
        return nr_seterr(err, errlen, NR_EINVAL, "--voice must be 1..%d characters", NR_CLI_VOICE_MAX);
    if (!nr_client_voice_valid(text))
        return nr_seterr(err, errlen, NR_EINVAL,
                         "--voice '%s': only letters, digits, '_', '-' and '.' are allowed", text);
    memcpy(out, text, n + 1);
    return 0;
}

static int s_route(const char *text, char *out, char *err, size_t errlen) {
    size_t n = strlen(text), names = 0, len = 0;
    if (n == 0 || n > NR_CLI_ROUTE_MAX) goto bad;
    for (size_t i = 0; i <= n; i++) {
        char c = text[i];
        if (c == ',' || c == '\0') {
            if (len == 0 || len > 32 /* NR_PROTO_NAME_MAX */) goto bad;
            names++;
            len = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-') {
            len++;
        } else {
            goto bad;
        }
    }
    if (names > 8 /* NR_PROTO_ROUTE_MAX */) goto bad;
    /* No stage twice: compare each name with every later one. */
    for (const char *a = text; a; a = strchr(a, ',') ? strchr(a, ',') + 1 : NULL) {
        size_t la = strcspn(a, ",");
        for (const char *b = strchr(a, ','); b; b = strchr(b + 1, ','))
            if (strcspn(b + 1, ",") == la && !strncmp(a, b + 1, la))
                return nr_seterr(err, errlen, NR_EINVAL, "--route '%s' names a stage twice", text);
    }
    memcpy(out, text, n + 1);
    return 0;
bad:
    return nr_seterr(err, errlen, NR_EINVAL,
                     "--route '%s': give 1..8 stage names of [a-z0-9_-], comma-separated", text);
}

/* Matches argv[*i] against option `name` ("--window") or `alt` ("-o"),
 * in the forms "--name value" and "--name=value". On a match stores the
 * value (or NULL when the option takes none) and returns 1; returns
 * NR_EINVAL when the value is missing, 0 when argv[*i] is another option. */
static int s_opt(int argc, char **argv, int *i, const char *name, const char *alt, int has_value,
                 const char **value, char *err, size_t errlen) {
    const char *arg = argv[*i];
    size_t n = strlen(name);
    int exact = !strcmp(arg, name) || (alt && !strcmp(arg, alt));
    int joined = has_value && !strncmp(arg, name, n) && arg[n] == '=';
    if (!exact && !joined) return 0;
    *value = NULL;
    if (!has_value) return 1;
    if (joined) {
        *value = arg + n + 1;
    } else if (*i + 1 < argc) {
        *value = argv[++*i];
    } else {
        return nr_seterr(err, errlen, NR_EINVAL, "option %s needs a value", name);
    }
    if (!**value) return nr_seterr(err, errlen, NR_EINVAL, "option %s needs a non-empty value", name);
    return 1;
}

/* The value of the last "--config FILE" / "--config=FILE" after the command
 * (argv[first]) and before any "--", or NULL; NR_EINVAL in *rc when it has
 * no value. */
static const char *s_config_after(int argc, char **argv, int first, int *rc, char *err, size_t errlen) {
    const char *path = NULL;
    *rc = 0;
    for (int i = first + 1; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strncmp(argv[i], "--config=", 9)) {
            path = argv[i] + 9;
        } else if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) {
                *rc = nr_seterr(err, errlen, NR_EINVAL, "option --config needs a value");
                return NULL;
            }
            path = argv[++i];
        }
    }
    return path;
}

static int s_check_id(const char *id, char *err, size_t errlen) {
    if (!nr_client_id_valid(id))
        return nr_seterr(err, errlen, NR_EINVAL,
                         "bad job id '%s': 1..64 characters of letters, digits, '.', '_', ':', '-'", id);
    return 0;
}

int nr_cli_parse(nr_cli_t *self, int argc, char **argv, char *err, size_t errlen) {
    if (!self || argc < 1 || !argv) return NR_EINVAL;
    memset(self, 0, sizeof *self);
    if (err && errlen) err[0] = '\0';
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            self->command = NR_CLI_HELP;
            return 0;
        }
    }
    int first = argc;
    int rc = nr_config_load(s_settings, self, S_ENV_PREFIX, argc, argv, &first, err, errlen);
    if (rc == 1) {
        self->command = NR_CLI_HELP;
        return 0;
    }
    if (rc) return rc;
    if (first >= argc)
        return nr_seterr(err, errlen, NR_EINVAL, "no command given (see narrate --help)");
    /* A --config after the command is read as if it stood just before it
     * (a file is the lowest layer, under the environment and the flags):
     * load again with it moved there. */
    const char *late_config = s_config_after(argc, argv, first, &rc, err, errlen);
    if (rc) return rc;
    if (late_config) {
        char **moved = calloc((size_t)argc + 3, sizeof *moved);
        if (!moved) return NR_ENOMEM;
        int n = 0;
        for (int i = 0; i < first; i++) moved[n++] = argv[i];
        moved[n++] = (char *)"--config";
        moved[n++] = (char *)late_config;
        for (int i = first; i < argc; i++) moved[n++] = argv[i];
        moved[n] = NULL;
        int moved_first = n;
        rc = nr_config_load(s_settings, self, S_ENV_PREFIX, n, moved, &moved_first, err, errlen);
        free(moved);
        if (rc == 1) { /* cannot happen: --help was looked for above */
            self->command = NR_CLI_HELP;
            return 0;
        }
        if (rc) return rc;
    }
    const char *word = argv[first];
    for (size_t k = 0; k < sizeof s_commands / sizeof s_commands[0]; k++)
        if (!strcmp(word, s_commands[k].name)) self->command = s_commands[k].command;
    if (self->command == NR_CLI_NONE)
        return nr_seterr(err, errlen, NR_EINVAL, "unknown command '%s' (see narrate --help)", word);
    if (self->command == NR_CLI_HELP) return 0;

    snprintf(self->route, sizeof self->route, "%s",
             self->command == NR_CLI_SPEAK ? NR_CLI_SPEECH_ROUTE : NR_CLI_DEFAULT_ROUTE);
    self->window = NR_CLI_DEFAULT_WINDOW;
    self->paths = calloc((size_t)argc, sizeof *self->paths);
    if (!self->paths) return NR_ENOMEM;

    nr_cli_command_t cmd = self->command;
    int only_positional = 0;
    size_t positional = 0;
    const char *id = NULL;
    for (int i = first + 1; i < argc; i++) {
        const char *arg = argv[i], *v;
        if (only_positional || arg[0] != '-' || !strcmp(arg, "-")) {
            if (cmd == NR_CLI_SUBMIT) {
                self->paths[self->n_paths++] = arg;
            } else if (cmd == NR_CLI_SPEAK && positional == 0) {
                self->text = arg;
            } else if ((cmd == NR_CLI_STATUS || cmd == NR_CLI_WAIT || cmd == NR_CLI_GET ||
                        cmd == NR_CLI_CANCEL) && positional == 0) {
                id = arg;
            } else {
                return nr_seterr(err, errlen, NR_EINVAL, "%s: unexpected argument '%s'", word, arg);
            }
            positional++;
            continue;
        }
        if (!strcmp(arg, "--")) {
            only_positional = 1;
            continue;
        }
        /* Every global setting (s_settings) is accepted after the command
         * too; `wait` has its own --timeout, and --config was read above. */
        if (cmd == NR_CLI_WAIT && (rc = s_opt(argc, argv, &i, "--timeout", NULL, 1, &v, err, errlen))) {
            if (rc < 0) return rc;
            if ((rc = s_number("--timeout", v, 1, NR_CLI_WAIT_MAX, &self->wait_timeout, err, errlen)))
                return rc;
        } else if ((rc = s_opt(argc, argv, &i, "--config", NULL, 1, &v, err, errlen))) {
            if (rc < 0) return rc;
        } else if ((rc = nr_config_flag(s_settings, self, argc, argv, &i, err, errlen))) {
            if (rc < 0) return rc;
        } else if ((rc = s_opt(argc, argv, &i, "-q", NULL, 0, &v, err, errlen))) {
            if (rc < 0) return rc;
            self->quiet = 1;
        } else if ((cmd == NR_CLI_SPEAK || cmd == NR_CLI_SUBMIT || cmd == NR_CLI_GET) &&
                   (rc = s_opt(argc, argv, &i, "--output", "-o", 1, &v, err, errlen))) {
            if (rc < 0) return rc;
            self->output = v;
        } else if ((cmd == NR_CLI_SPEAK || cmd == NR_CLI_SUBMIT) &&
                   (rc = s_opt(argc, argv, &i, "--voice", NULL, 1, &v, err, errlen))) {
            if (rc < 0) return rc;
            if ((rc = s_voice(v, self->voice, err, errlen))) return rc;
        } else if ((cmd == NR_CLI_SPEAK || cmd == NR_CLI_SUBMIT) &&
                   (rc = s_opt(argc, argv, &i, "--speed", NULL, 1, &v, err, errlen))) {
            if (rc < 0) return rc;
            float speed;
            if ((rc = nr_proto_speed_check(v, &speed, err, errlen))) return NR_EINVAL;
            snprintf(self->speed, sizeof self->speed, "%s", v);
        } else if (cmd == NR_CLI_SUBMIT &&
                   (rc = s_opt(argc, argv, &i, "--window", NULL, 1, &v, err, errlen))) {
            if (rc < 0) return rc;
            if ((rc = s_number("--window", v, 1, NR_CLI_WINDOW_MAX, &self->window, err, errlen)))
                return rc;
        } else if (cmd == NR_CLI_SUBMIT &&
                   (rc = s_opt(argc, argv, &i, "--no-wait", NULL, 0, &v, err, errlen))) {
            if (rc < 0) return rc;
            self->no_wait = 1;
        } else if (cmd == NR_CLI_SUBMIT &&
                   (rc = s_opt(argc, argv, &i, "--all-pages", NULL, 0, &v, err, errlen))) {
            if (rc < 0) return rc;
            self->all_pages = 1;
        } else if (cmd == NR_CLI_SUBMIT &&
                   (rc = s_opt(argc, argv, &i, "--id-from", NULL, 1, &v, err, errlen))) {
            if (rc < 0) return rc;
            if (!strcmp(v, "content")) self->id_random = 0;
            else if (!strcmp(v, "random")) self->id_random = 1;
            else
                return nr_seterr(err, errlen, NR_EINVAL,
                                 "--id-from must be 'content' or 'random', got '%s'", v);
        } else if ((cmd == NR_CLI_SUBMIT || cmd == NR_CLI_STATUS) &&
                   (rc = s_opt(argc, argv, &i, "--run", NULL, 1, &v, err, errlen))) {
            if (rc < 0) return rc;
            if (!nr_client_id_valid(v))
                return nr_seterr(err, errlen, NR_EINVAL,
                                 "--run: '%s' is not a run id (1..64 of A-Z a-z 0-9 . _ : -)", v);
            self->run = v;
        } else if (cmd == NR_CLI_SUBMIT &&
                   (rc = s_opt(argc, argv, &i, "--route", NULL, 1, &v, err, errlen))) {
            if (rc < 0) return rc;
            if ((rc = s_route(v, self->route, err, errlen))) return rc;
        } else if (cmd == NR_CLI_SUBMIT &&
                   (rc = s_opt(argc, argv, &i, "--beams", NULL, 1, &v, err, errlen))) {
            if (rc < 0) return rc;
            if ((rc = s_number("--beams", v, 1, NR_CLI_BEAMS_MAX, &self->beams, err, errlen)))
                return rc;
        } else if (cmd == NR_CLI_SUBMIT &&
                   (rc = s_opt(argc, argv, &i, "--max-length", NULL, 1, &v, err, errlen))) {
            if (rc < 0) return rc;
            if ((rc = s_number("--max-length", v, 1, NR_CLI_LENGTH_MAX, &self->max_length, err,
                               errlen)))
                return rc;
        } else if (cmd == NR_CLI_SUBMIT &&
                   (rc = s_opt(argc, argv, &i, "--alt-text", NULL, 1, &v, err, errlen))) {
            if (rc < 0) return rc;
            if (!strcmp(v, "sidecar")) self->alt.mode = NR_ALTJOB_SIDECAR;
            else if (!strcmp(v, "embed")) self->alt.mode = NR_ALTJOB_EMBED;
            else if (!strcmp(v, "off")) self->alt.mode = NR_ALTJOB_OFF;
            else
                return nr_seterr(err, errlen, NR_EINVAL,
                                 "--alt-text must be 'sidecar', 'embed' or 'off', got '%s'", v);
        } else if (cmd == NR_CLI_SUBMIT &&
                   (rc = s_opt(argc, argv, &i, "--files-from", NULL, 1, &v, err, errlen))) {
            if (rc < 0) return rc;
            self->files_from = v;
        } else if (cmd == NR_CLI_SUBMIT &&
                   (rc = s_opt(argc, argv, &i, "--in-place", NULL, 0, &v, err, errlen))) {
            if (rc < 0) return rc;
            self->alt.in_place = 1;
        } else if (cmd == NR_CLI_SUBMIT &&
                   (rc = s_opt(argc, argv, &i, "--overwrite", NULL, 0, &v, err, errlen))) {
            if (rc < 0) return rc;
            self->alt.overwrite = 1;
        } else if (cmd == NR_CLI_SUBMIT &&
                   (rc = s_opt(argc, argv, &i, "--skip-described", NULL, 0, &v, err, errlen))) {
            if (rc < 0) return rc;
            self->skip_described = 1;
        } else if (cmd == NR_CLI_SUBMIT &&
                   (rc = s_opt(argc, argv, &i, "--manifest", NULL, 1, &v, err, errlen))) {
            if (rc < 0) return rc;
            if (!nr_manifest_format(v))
                return nr_seterr(err, errlen, NR_EINVAL,
                                 "--manifest %s: the name must end in .jsonl or .csv", v);
            if (self->n_manifests == NR_MANIFEST_FILES_MAX)
                return nr_seterr(err, errlen, NR_EINVAL, "at most %d --manifest files",
                                 NR_MANIFEST_FILES_MAX);
            self->manifests[self->n_manifests++] = v;
        } else if (cmd == NR_CLI_SUBMIT &&
                   (rc = s_opt(argc, argv, &i, "--prompt", NULL, 1, &v, err, errlen))) {
            if (rc < 0) return rc;
            char why[160] = "";
            if (nr_client_prompt_check(v, why, sizeof why))
                return nr_seterr(err, errlen, NR_EINVAL, "--prompt: %s", why);
            self->prompt = v;
        } else if (cmd == NR_CLI_SUBMIT &&
                   (rc = s_opt(argc, argv, &i, "--language", NULL, 1, &v, err, errlen))) {
            if (rc < 0) return rc;
            if (!nr_client_language_valid(v))
                return nr_seterr(err, errlen, NR_EINVAL,
                                 "--language: \"%.32s\" is not a language code such as en, es, pt-BR or zh-TW", v);
            self->language = v;
        } else {
            return nr_seterr(err, errlen, NR_EINVAL, "%s: unknown option '%s' (see narrate --help)",
                             word, arg);
        }
    }

    switch (cmd) {
    case NR_CLI_SPEAK:
        if (!self->text) return nr_seterr(err, errlen, NR_EINVAL, "speak: give the TEXT to say");
        if (!*self->text) return nr_seterr(err, errlen, NR_EINVAL, "speak: the TEXT is empty");
        if (!self->output)
            return nr_seterr(err, errlen, NR_EINVAL, "speak: give the output file with -o FILE.wav");
        break;
    case NR_CLI_SUBMIT:
        if (self->n_paths == 0 && !self->files_from)
            return nr_seterr(err, errlen, NR_EINVAL,
                             "submit: give at least one FILE or FOLDER (or --files-from LIST)");
        if (!self->output) self->output = ".";
        if ((self->alt.in_place || self->alt.overwrite) && self->alt.mode == NR_ALTJOB_OFF)
            return nr_seterr(err, errlen, NR_EINVAL, "submit: %s needs --alt-text sidecar|embed",
                             self->alt.in_place ? "--in-place" : "--overwrite");
        if (self->alt.mode != NR_ALTJOB_OFF && self->no_wait)
            return nr_seterr(err, errlen, NR_EINVAL,
                             "submit: --alt-text needs the captions, so not --no-wait");
        break;
    case NR_CLI_STATUS:
        if (self->run && id)
            return nr_seterr(err, errlen, NR_EINVAL, "status: give a job ID or --run ID, not both");
        if (self->run) break;
        /* fall through */
    case NR_CLI_WAIT:
    case NR_CLI_GET:
    case NR_CLI_CANCEL:
        if (!id) return nr_seterr(err, errlen, NR_EINVAL, "%s: give the job ID", word);
        if ((rc = s_check_id(id, err, errlen))) return rc;
        self->id = id;
        if (cmd == NR_CLI_GET && !self->output) self->output = ".";
        break;
    default:
        break;
    }
    return 0;
}

void nr_cli_clear(nr_cli_t *self) {
    if (!self) return;
    free(self->paths);
    self->paths = NULL;
    self->n_paths = 0;
}
