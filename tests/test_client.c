/* Unit tests for client/: `narrate` argument parsing, content-hash job ids,
 * output names that stay inside the output folder, safe writes, JSON
 * records, image collection from folders, and the client library's
 * request/reply (seq matching, timeouts, reconnect, busy retry) and its
 * pipelined SUBMIT batches (per-job codes, answers in any order, busy
 * retry, seq 0, timeout) against an in-process fake ROUTER. No narrator-broker is needed. */
#include "client/cli.h"
#include "client/client.h"
#include "client/files.h"
#include "client/output.h"
#include "common/error.h"
#include "proto/secure.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

static void s_clean_env(void) {
    unsetenv("NARRATOR_BROKER");
    unsetenv("NARRATOR_TIMEOUT");
    unsetenv("NARRATOR_JSON");
    unsetenv("NARRATOR_QUIET");
    unsetenv("NARRATOR_CONFIG");
    unsetenv("NARRATOR_CURVE_SERVER_KEY");
    unsetenv("NARRATOR_CURVE_SECRET_KEY_FILE");
}

/* Parses a NULL-ended argument list (after "narrate"). */
#define PARSE(cli, err, ...)                                                                  \
    ({                                                                                        \
        char *argv_[] = {"narrate", __VA_ARGS__, NULL};                                       \
        nr_cli_parse((cli), (int)(sizeof argv_ / sizeof argv_[0]) - 1, argv_, (err),          \
                     sizeof(err));                                                            \
    })

/* Expects a usage error whose message contains `needle`. */
#define EXPECT_USAGE(needle, ...)                                                             \
    do {                                                                                      \
        nr_cli_t c_;                                                                          \
        char e_[512];                                                                         \
        int rc_ = PARSE(&c_, e_, __VA_ARGS__);                                                \
        cr_expect_eq(rc_, NR_EINVAL, "expected a usage error for: %s", #__VA_ARGS__);         \
        if (rc_ == NR_EINVAL)                                                                 \
            cr_expect(strstr(e_, needle) != NULL, "message '%s' lacks '%s'", e_, needle);     \
        nr_cli_clear(&c_);                                                                    \
    } while (0)

TestSuite(cli, .init = s_clean_env);

Test(cli, help_anywhere) {
    nr_cli_t c;
    char e[512];
    cr_assert_eq(PARSE(&c, e, "--help"), 0);
    cr_expect_eq(c.command, NR_CLI_HELP);
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "help"), 0);
    cr_expect_eq(c.command, NR_CLI_HELP);
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "submit", "--help"), 0);
    cr_expect_eq(c.command, NR_CLI_HELP);
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "-h"), 0);
    cr_expect_eq(c.command, NR_CLI_HELP);
    nr_cli_clear(&c);
}

Test(cli, usage_documents_exit_codes) {
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    nr_cli_usage(f);
    fclose(f);
    cr_assert(text);
    for (int code = 0; code <= 5; code++) {
        char needle[8];
        snprintf(needle, sizeof needle, "  %d  ", code);
        cr_expect(strstr(text, needle), "usage lacks exit code %d", code);
    }
    const char *words[] = {"speak", "submit", "status", "wait", "get", "cancel", "stats",
                           "--broker", "--timeout", "--json", "--quiet", "--window", "--no-wait",
                           "--id-from", "--route", "--voice", "--beams", "--max-length"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        cr_expect(strstr(text, words[i]), "usage lacks %s", words[i]);
    free(text);
}

Test(cli, no_or_unknown_command) {
    nr_cli_t c;
    char e[512];
    char *argv[] = {"narrate", NULL};
    cr_expect_eq(nr_cli_parse(&c, 1, argv, e, sizeof e), NR_EINVAL);
    cr_expect(strstr(e, "no command"));
    nr_cli_clear(&c);
    EXPECT_USAGE("unknown command 'frobnicate'", "frobnicate");
    EXPECT_USAGE("no command", "--json");
    EXPECT_USAGE("unknown option --bogus", "--bogus", "stats");
}

Test(cli, globals_defaults) {
    nr_cli_t c;
    char e[512];
    cr_assert_eq(PARSE(&c, e, "stats"), 0, "%s", e);
    cr_expect_eq(c.command, NR_CLI_STATS);
    cr_expect_str_eq(c.broker, "tcp://127.0.0.1:5555");
    cr_expect_eq(c.timeout, 10);
    cr_expect_eq(c.json, 0);
    cr_expect_eq(c.quiet, 0);
    nr_cli_clear(&c);
}

Test(cli, globals_before_and_after_command) {
    nr_cli_t c;
    char e[512];
    cr_assert_eq(PARSE(&c, e, "--broker", "tcp://10.0.0.1:7000", "--timeout", "3", "--json",
                       "--quiet", "stats"), 0, "%s", e);
    cr_expect_str_eq(c.broker, "tcp://10.0.0.1:7000");
    cr_expect_eq(c.timeout, 3);
    cr_expect_eq(c.json, 1);
    cr_expect_eq(c.quiet, 1);
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "status", "job1", "--json", "--broker=tcp://h:1", "--timeout=7", "-q"),
                 0, "%s", e);
    cr_expect_str_eq(c.broker, "tcp://h:1");
    cr_expect_eq(c.timeout, 7);
    cr_expect_eq(c.json, 1);
    cr_expect_eq(c.quiet, 1);
    cr_expect_str_eq(c.id, "job1");
    nr_cli_clear(&c);
}

Test(cli, broker_from_environment_and_flag_wins) {
    nr_cli_t c;
    char e[512];
    setenv("NARRATOR_BROKER", "tcp://env:5555", 1);
    setenv("NARRATOR_TIMEOUT", "42", 1);
    cr_assert_eq(PARSE(&c, e, "stats"), 0, "%s", e);
    cr_expect_str_eq(c.broker, "tcp://env:5555");
    cr_expect_eq(c.timeout, 42);
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "--broker", "tcp://flag:1", "stats"), 0, "%s", e);
    cr_expect_str_eq(c.broker, "tcp://flag:1");
    nr_cli_clear(&c);
    setenv("NARRATOR_TIMEOUT", "zero", 1);
    EXPECT_USAGE("NARRATOR_TIMEOUT", "stats");
}

Test(cli, timeout_out_of_range) {
    EXPECT_USAGE("timeout", "--timeout", "0", "stats");
    EXPECT_USAGE("timeout", "--timeout", "86401", "stats");
    EXPECT_USAGE("timeout", "--timeout", "ten", "stats");
    EXPECT_USAGE("--timeout must be in", "stats", "--timeout", "-1");
    EXPECT_USAGE("needs a whole number", "stats", "--timeout", "3s");
    EXPECT_USAGE("needs a value", "stats", "--timeout");
    EXPECT_USAGE("needs a value", "--timeout");
    EXPECT_USAGE("needs a value", "stats", "--broker");
}

/* Every global setting works on either side of the command (the CURVE ones
 * once worked only before it); after it, it wins over the same one before. */
Test(cli, curve_and_every_global_after_the_command) {
    nr_cli_t c;
    char e[512];
    cr_assert_eq(PARSE(&c, e, "status", "j1", "--curve-server-key", "broker.pub",
                       "--curve-secret-key-file", "client.key"), 0, "%s", e);
    cr_expect_str_eq(c.curve_server_key, "broker.pub");
    cr_expect_str_eq(c.curve_secret_key_file, "client.key");
    cr_expect_str_eq(c.id, "j1");
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "--curve-server-key", "before.pub", "--curve-secret-key-file=a.key",
                       "stats", "--curve-server-key=after.pub"), 0, "%s", e);
    cr_expect_str_eq(c.curve_server_key, "after.pub");
    cr_expect_str_eq(c.curve_secret_key_file, "a.key");
    nr_cli_clear(&c);
    /* Submit's own options and globals mixed, after the files. */
    cr_assert_eq(PARSE(&c, e, "submit", "a.jpg", "--curve-secret-key-file", "k.key", "--window", "2",
                       "b.jpg", "--curve-server-key", "s.pub", "--broker", "tcp://x:1"), 0, "%s", e);
    cr_expect_eq(c.n_paths, 2);
    cr_expect_eq(c.window, 2);
    cr_expect_str_eq(c.curve_server_key, "s.pub");
    cr_expect_str_eq(c.curve_secret_key_file, "k.key");
    cr_expect_str_eq(c.broker, "tcp://x:1");
    nr_cli_clear(&c);
    /* An empty value turns CURVE off again (as in a config file). */
    cr_assert_eq(PARSE(&c, e, "--curve-server-key", "s.pub", "stats", "--curve-server-key="), 0, "%s", e);
    cr_expect_str_eq(c.curve_server_key, "");
    nr_cli_clear(&c);
    /* Booleans as before the command: --name, --name=V, --no-name. */
    cr_assert_eq(PARSE(&c, e, "--json", "--quiet", "stats", "--json=false", "--no-quiet"), 0, "%s", e);
    cr_expect_eq(c.json, 0);
    cr_expect_eq(c.quiet, 0);
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "stats", "--json=yes", "--quiet"), 0, "%s", e);
    cr_expect_eq(c.json, 1);
    cr_expect_eq(c.quiet, 1);
    nr_cli_clear(&c);
    /* wait keeps its own --timeout; the global one before it still applies. */
    cr_assert_eq(PARSE(&c, e, "--timeout", "4", "wait", "j", "--timeout", "90", "--curve-server-key",
                       "k"), 0, "%s", e);
    cr_expect_eq(c.timeout, 4);
    cr_expect_eq(c.wait_timeout, 90);
    cr_expect_str_eq(c.curve_server_key, "k");
    nr_cli_clear(&c);
    /* From the environment, and a flag after the command wins over it. */
    setenv("NARRATOR_CURVE_SERVER_KEY", "env.pub", 1);
    cr_assert_eq(PARSE(&c, e, "stats"), 0, "%s", e);
    cr_expect_str_eq(c.curve_server_key, "env.pub");
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "stats", "--curve-server-key", "flag.pub"), 0, "%s", e);
    cr_expect_str_eq(c.curve_server_key, "flag.pub");
    nr_cli_clear(&c);
    unsetenv("NARRATOR_CURVE_SERVER_KEY");
    /* "--" ends the options: what follows is the text, not a setting. */
    cr_assert_eq(PARSE(&c, e, "speak", "-o", "x.wav", "--", "--curve-server-key"), 0, "%s", e);
    cr_expect_str_eq(c.text, "--curve-server-key");
    cr_expect_str_eq(c.curve_server_key, "");
    nr_cli_clear(&c);
}

Test(cli, global_errors_after_the_command) {
    EXPECT_USAGE("option --curve-server-key needs a value", "status", "j", "--curve-server-key");
    EXPECT_USAGE("option --curve-secret-key-file needs a value", "stats", "--curve-secret-key-file");
    char long_key[700];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    EXPECT_USAGE("--curve-server-key is too long", "stats", "--curve-server-key", long_key);
    EXPECT_USAGE("--json must be true or false", "stats", "--json=maybe");
    EXPECT_USAGE("unknown option '--no-broker'", "stats", "--no-broker");
    EXPECT_USAGE("option --config needs a value", "stats", "--config");
}

/* --config before or after the command, and after other flags. */
Test(cli, config_file_on_either_side) {
    char dir[] = "/tmp/nr-test-cli-config-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/narrate.conf", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("timeout = 9\ncurve-server-key = /etc/narrator/broker.pub\n"
          "curve-secret-key-file = /etc/narrator/client.key\n", f);
    fclose(f);
    nr_cli_t c;
    char e[512];
    cr_assert_eq(PARSE(&c, e, "--config", path, "stats"), 0, "%s", e);
    cr_expect_eq(c.timeout, 9);
    cr_expect_str_eq(c.curve_server_key, "/etc/narrator/broker.pub");
    cr_expect_str_eq(c.curve_secret_key_file, "/etc/narrator/client.key");
    nr_cli_clear(&c);
    /* After a flag with a value (the file was once skipped there). */
    cr_assert_eq(PARSE(&c, e, "--broker", "tcp://h:2", "--config", path, "stats"), 0, "%s", e);
    cr_expect_eq(c.timeout, 9);
    cr_expect_str_eq(c.broker, "tcp://h:2");
    nr_cli_clear(&c);
    /* After the command: still the lowest layer, under every flag. */
    cr_assert_eq(PARSE(&c, e, "--timeout", "3", "status", "j", "--config", path), 0, "%s", e);
    cr_expect_eq(c.timeout, 3);
    cr_expect_str_eq(c.curve_server_key, "/etc/narrator/broker.pub");
    cr_expect_str_eq(c.id, "j");
    nr_cli_clear(&c);
    char joined[160];
    snprintf(joined, sizeof joined, "--config=%s", path);
    cr_assert_eq(PARSE(&c, e, "stats", joined, "--curve-server-key", "flag.pub"), 0, "%s", e);
    cr_expect_eq(c.timeout, 9);
    cr_expect_str_eq(c.curve_server_key, "flag.pub");
    nr_cli_clear(&c);
    EXPECT_USAGE("cannot open config file /nonexistent.conf", "stats", "--config", "/nonexistent.conf");
    unlink(path);
    rmdir(dir);
}

/* A config file is read only when it is a regular file of at most 1 MiB:
 * /dev/zero once spun forever (an endless line), a FIFO hung in open. */
Test(cli, config_file_only_regular_and_small, .timeout = 30) {
    char dir[] = "/tmp/nr-test-cli-config-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char fifo[128], big[128];
    snprintf(fifo, sizeof fifo, "%s/fifo.conf", dir);
    snprintf(big, sizeof big, "%s/big.conf", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    FILE *f = fopen(big, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 40000; i++) fputs("# a comment line to make it large\n", f);
    fclose(f);
    EXPECT_USAGE("config file /dev/zero is not a regular file", "--config", "/dev/zero", "stats");
    EXPECT_USAGE("is not a regular file", "stats", "--config", fifo);
    EXPECT_USAGE("is not a regular file", "stats", "--config", dir);
    EXPECT_USAGE("is larger than 1048576 bytes", "--config", big, "stats");
    unlink(fifo);
    unlink(big);
    rmdir(dir);
}

Test(cli, speak) {
    nr_cli_t c;
    char e[512];
    cr_assert_eq(PARSE(&c, e, "speak", "Hello there", "-o", "out.wav", "--voice", "kal16"), 0, "%s", e);
    cr_expect_eq(c.command, NR_CLI_SPEAK);
    cr_expect_str_eq(c.text, "Hello there");
    cr_expect_str_eq(c.output, "out.wav");
    cr_expect_str_eq(c.voice, "kal16");
    cr_expect_str_eq(c.route, "speech");
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "speak", "--output=a.wav", "hi"), 0, "%s", e);
    cr_expect_str_eq(c.output, "a.wav");
    cr_expect_str_eq(c.voice, "");
    nr_cli_clear(&c);
    /* "--" lets the text start with a dash. */
    cr_assert_eq(PARSE(&c, e, "speak", "-o", "x.wav", "--", "-dash-"), 0, "%s", e);
    cr_expect_str_eq(c.text, "-dash-");
    nr_cli_clear(&c);
}

Test(cli, speak_errors) {
    EXPECT_USAGE("-o FILE.wav", "speak", "hello");
    EXPECT_USAGE("give the TEXT", "speak", "-o", "x.wav");
    EXPECT_USAGE("TEXT is empty", "speak", "", "-o", "x.wav");
    EXPECT_USAGE("unexpected argument 'two'", "speak", "one", "two", "-o", "x.wav");
    EXPECT_USAGE("needs a value", "speak", "hi", "-o");
    EXPECT_USAGE("--voice", "speak", "hi", "-o", "x.wav", "--voice", "../evil");
    EXPECT_USAGE("--voice", "speak", "hi", "-o", "x.wav", "--voice",
                 "a-voice-name-that-is-far-too-long-to-be-real");
    EXPECT_USAGE("unknown option '--window'", "speak", "hi", "-o", "x.wav", "--window", "3");
}

Test(cli, submit_defaults) {
    nr_cli_t c;
    char e[512];
    cr_assert_eq(PARSE(&c, e, "submit", "photos"), 0, "%s", e);
    cr_expect_eq(c.command, NR_CLI_SUBMIT);
    cr_assert_eq(c.n_paths, 1);
    cr_expect_str_eq(c.paths[0], "photos");
    cr_expect_str_eq(c.output, ".");
    cr_expect_eq(c.window, 8);
    cr_expect_eq(c.no_wait, 0);
    cr_expect_eq(c.id_random, 0);
    cr_expect_str_eq(c.route, "vision,text,speech");
    cr_expect_eq(c.beams, 0);
    cr_expect_eq(c.max_length, 0);
    cr_expect_str_eq(c.voice, "");
    nr_cli_clear(&c);
}

Test(cli, submit_archive_options) {
    nr_cli_t c;
    char e[512];
    cr_assert_eq(PARSE(&c, e, "submit", "tree", "--alt-text", "embed", "--in-place", "--overwrite",
                       "--skip-described", "--manifest", "run.jsonl", "--manifest=run.CSV"),
                 0, "%s", e);
    cr_expect_eq(c.alt.mode, NR_ALTJOB_EMBED);
    cr_expect_eq(c.alt.in_place, 1);
    cr_expect_eq(c.alt.overwrite, 1);
    cr_expect_eq(c.skip_described, 1);
    cr_assert_eq(c.n_manifests, 2);
    cr_expect_str_eq(c.manifests[0], "run.jsonl");
    cr_expect_str_eq(c.manifests[1], "run.CSV");
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "submit", "--files-from", "list.txt"), 0, "%s", e);
    cr_expect_str_eq(c.files_from, "list.txt");
    cr_expect_eq(c.n_paths, 0);
    nr_cli_clear(&c);
    EXPECT_USAGE("--alt-text must be", "submit", "x", "--alt-text", "iptc");
    EXPECT_USAGE("--in-place needs --alt-text", "submit", "x", "--in-place");
    EXPECT_USAGE("--overwrite needs --alt-text", "submit", "x", "--overwrite");
    EXPECT_USAGE("not --no-wait", "submit", "x", "--alt-text", "sidecar", "--no-wait");
    EXPECT_USAGE(".jsonl or .csv", "submit", "x", "--manifest", "run.json");
    EXPECT_USAGE("at most 4", "submit", "x", "--manifest", "1.csv", "--manifest", "2.csv",
                 "--manifest", "3.csv", "--manifest", "4.csv", "--manifest", "5.csv");
    EXPECT_USAGE("unknown option", "speak", "hi", "-o", "x.wav", "--alt-text", "sidecar");
}

Test(cli, submit_all_options) {
    nr_cli_t c;
    char e[512];
    cr_assert_eq(PARSE(&c, e, "submit", "a.jpg", "dir", "-o", "out", "--window", "3", "--no-wait",
                       "--id-from", "random", "--route", "vision,text", "--voice", "slt",
                       "--beams", "4", "--max-length=20", "--", "-b.png"),
                 0, "%s", e);
    cr_assert_eq(c.n_paths, 3);
    cr_expect_str_eq(c.paths[0], "a.jpg");
    cr_expect_str_eq(c.paths[1], "dir");
    cr_expect_str_eq(c.paths[2], "-b.png");
    cr_expect_str_eq(c.output, "out");
    cr_expect_eq(c.window, 3);
    cr_expect_eq(c.no_wait, 1);
    cr_expect_eq(c.id_random, 1);
    cr_expect_str_eq(c.route, "vision,text");
    cr_expect_str_eq(c.voice, "slt");
    cr_expect_eq(c.beams, 4);
    cr_expect_eq(c.max_length, 20);
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "submit", "x", "--id-from", "content"), 0, "%s", e);
    cr_expect_eq(c.id_random, 0);
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "submit", "x", "--route", "speech,speec,spee"), 0, "%s", e);
    cr_expect_str_eq(c.route, "speech,speec,spee");
    nr_cli_clear(&c);
}

/* --prompt TEXT: BLIP's conditional captioning; checked here (1..256 bytes
 * of UTF-8, one line) before anything is submitted. */
Test(cli, submit_prompt) {
    nr_cli_t c;
    char e[512];
    cr_assert_eq(PARSE(&c, e, "submit", "a.jpg", "--prompt", "a picture of"), 0, "%s", e);
    cr_expect_str_eq(c.prompt, "a picture of");
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "submit", "a.jpg", "--prompt=une photo d\xc3\xa9t\xc3\xa9"), 0, "%s", e);
    cr_expect_str_eq(c.prompt, "une photo d\xc3\xa9t\xc3\xa9");
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "submit", "a.jpg"), 0, "%s", e);
    cr_expect_null(c.prompt);
    nr_cli_clear(&c);
    char longest[NR_CLIENT_PROMPT_MAX + 2];
    memset(longest, 'a', NR_CLIENT_PROMPT_MAX);
    longest[NR_CLIENT_PROMPT_MAX] = '\0';
    cr_assert_eq(PARSE(&c, e, "submit", "a.jpg", "--prompt", longest), 0, "%s", e);
    nr_cli_clear(&c);
    longest[NR_CLIENT_PROMPT_MAX] = 'a';
    longest[NR_CLIENT_PROMPT_MAX + 1] = '\0';
    EXPECT_USAGE("prompt is 257 bytes, at most 256", "submit", "x", "--prompt", longest);
    EXPECT_USAGE("not valid UTF-8", "submit", "x", "--prompt", "caf\xe9");
    EXPECT_USAGE("control character", "submit", "x", "--prompt", "two\nlines");
    EXPECT_USAGE("needs a non-empty value", "submit", "x", "--prompt=");
    EXPECT_USAGE("needs a value", "submit", "x", "--prompt");
    EXPECT_USAGE("unknown option '--prompt'", "speak", "hello", "-o", "a.wav", "--prompt", "a");
}

/* --language L: PaliGemma's caption language, checked as a code here. */
Test(cli, submit_language) {
    nr_cli_t c;
    char e[512];
    cr_assert_eq(PARSE(&c, e, "submit", "a.jpg", "--language", "es"), 0, "%s", e);
    cr_expect_str_eq(c.language, "es");
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "submit", "a.jpg", "--language=pt-BR"), 0, "%s", e);
    cr_expect_str_eq(c.language, "pt-BR");
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "submit", "a.jpg"), 0, "%s", e);
    cr_expect_null(c.language);
    nr_cli_clear(&c);
    EXPECT_USAGE("not a language code", "submit", "x", "--language", "Spanish");
    EXPECT_USAGE("not a language code", "submit", "x", "--language", "es_ES");
    EXPECT_USAGE("needs a value", "submit", "x", "--language");
    EXPECT_USAGE("unknown option '--language'", "speak", "hello", "-o", "a.wav", "--language", "es");
}

Test(cli, submit_errors) {
    EXPECT_USAGE("at least one FILE", "submit");
    EXPECT_USAGE("at least one FILE", "submit", "-o", "out");
    EXPECT_USAGE("--window must be in 1..1024", "submit", "x", "--window", "0");
    EXPECT_USAGE("--window must be in 1..1024", "submit", "x", "--window", "1025");
    EXPECT_USAGE("--window needs a whole number", "submit", "x", "--window", "eight");
    EXPECT_USAGE("--window needs a whole number", "submit", "x", "--window", "99999999999999999999");
    EXPECT_USAGE("needs a value", "submit", "x", "--window");
    EXPECT_USAGE("needs a non-empty value", "submit", "x", "--window=");
    EXPECT_USAGE("--beams must be in 1..16", "submit", "x", "--beams", "0");
    EXPECT_USAGE("--beams must be in 1..16", "submit", "x", "--beams", "17");
    EXPECT_USAGE("--max-length must be in 1..1024", "submit", "x", "--max-length", "2000");
    EXPECT_USAGE("--id-from must be", "submit", "x", "--id-from", "name");
    EXPECT_USAGE("--route", "submit", "x", "--route", "Vision");
    EXPECT_USAGE("--route", "submit", "x", "--route", "vision,,text");
    EXPECT_USAGE("--route", "submit", "x", "--route", "vision,");
    EXPECT_USAGE("--route", "submit", "x", "--route", "a,b,c,d,e,f,g,h,i");
    EXPECT_USAGE("--route", "submit", "x", "--route", "vision;rm");
    EXPECT_USAGE("names a stage twice", "submit", "x", "--route", "vision,text,vision");
    EXPECT_USAGE("names a stage twice", "submit", "x", "--route", "text,text");
    EXPECT_USAGE("unknown option '--frob'", "submit", "x", "--frob");
    EXPECT_USAGE("unknown option '-x'", "submit", "x", "-x");
}

Test(cli, id_commands) {
    nr_cli_t c;
    char e[512];
    cr_assert_eq(PARSE(&c, e, "status", "abc:1.2_x-y"), 0, "%s", e);
    cr_expect_eq(c.command, NR_CLI_STATUS);
    cr_expect_str_eq(c.id, "abc:1.2_x-y");
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "wait", "j1"), 0, "%s", e);
    cr_expect_eq(c.command, NR_CLI_WAIT);
    cr_expect_eq(c.wait_timeout, 0);
    cr_expect_eq(c.timeout, 10);
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "--timeout", "5", "wait", "j1", "--timeout", "600"), 0, "%s", e);
    cr_expect_eq(c.wait_timeout, 600);
    cr_expect_eq(c.timeout, 5);
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "get", "j1", "-o", "outdir"), 0, "%s", e);
    cr_expect_eq(c.command, NR_CLI_GET);
    cr_expect_str_eq(c.output, "outdir");
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "get", "j1"), 0, "%s", e);
    cr_expect_str_eq(c.output, ".");
    nr_cli_clear(&c);
    cr_assert_eq(PARSE(&c, e, "cancel", "j1"), 0, "%s", e);
    cr_expect_eq(c.command, NR_CLI_CANCEL);
    nr_cli_clear(&c);
}

Test(cli, id_command_errors) {
    EXPECT_USAGE("give the job ID", "status");
    EXPECT_USAGE("give the job ID", "wait");
    EXPECT_USAGE("give the job ID", "get", "-o", "x");
    EXPECT_USAGE("give the job ID", "cancel");
    EXPECT_USAGE("bad job id", "status", "../../etc");
    EXPECT_USAGE("bad job id", "cancel", "a b");
    EXPECT_USAGE("bad job id", "get",
                 "x123456789012345678901234567890123456789012345678901234567890123456");
    EXPECT_USAGE("unexpected argument 'two'", "status", "one", "two");
    EXPECT_USAGE("unexpected argument 'x'", "stats", "x");
    EXPECT_USAGE("--timeout must be in 1..604800", "wait", "j", "--timeout", "0");
    EXPECT_USAGE("--timeout must be in 1..604800", "wait", "j", "--timeout", "604801");
    EXPECT_USAGE("unknown option '--output'", "status", "j", "--output", "x");
    EXPECT_USAGE("unknown option '--window'", "cancel", "j", "--window", "2");
}

/* ---- job ids ------------------------------------------------------------ */

Test(jobid, content_hash_golden_and_stable) {
    char a[NR_CLIENT_ID_HEX + 1], b[NR_CLIENT_ID_HEX + 1];
    nr_kv_t opts[] = {{"voice", "kal"}, {"num_beams", "4"}};
    cr_assert_eq(nr_client_content_id("abc", 3, "vision,text,speech", opts, 2, a), 0);
    /* Same as Python: blake2b(digest_size=16) over the documented bytes. */
    cr_expect_str_eq(a, "af1e99e2f5951021a6e7be65a524d144");
    cr_assert_eq(nr_client_content_id("abc", 3, "vision,text,speech", opts, 2, b), 0);
    cr_expect_str_eq(a, b);
    cr_expect_eq(strlen(a), 32);
    cr_expect(nr_client_id_valid(a));
    cr_assert_eq(nr_client_content_id("", 0, "speech", NULL, 0, a), 0);
    cr_expect_str_eq(a, "ab84aafcd424d873ebbc6311d8cb1828");
}

Test(jobid, option_order_does_not_matter) {
    char a[NR_CLIENT_ID_HEX + 1], b[NR_CLIENT_ID_HEX + 1];
    nr_kv_t x[] = {{"voice", "kal"}, {"num_beams", "4"}, {"max_length", "20"}};
    nr_kv_t y[] = {{"max_length", "20"}, {"voice", "kal"}, {"num_beams", "4"}};
    cr_assert_eq(nr_client_content_id("img", 3, "vision,text,speech", x, 3, a), 0);
    cr_assert_eq(nr_client_content_id("img", 3, "vision,text,speech", y, 3, b), 0);
    cr_expect_str_eq(a, b);
}

Test(jobid, differs_when_anything_differs) {
    char base[NR_CLIENT_ID_HEX + 1], other[NR_CLIENT_ID_HEX + 1];
    nr_kv_t opts[] = {{"num_beams", "4"}};
    nr_kv_t beams5[] = {{"num_beams", "5"}};
    nr_kv_t voice[] = {{"num_beams", "4"}, {"voice", "slt"}};
    nr_kv_t renamed[] = {{"num_beam", "s4"}};
    cr_assert_eq(nr_client_content_id("img", 3, "vision,text,speech", opts, 1, base), 0);
    nr_client_content_id("imh", 3, "vision,text,speech", opts, 1, other);
    cr_expect_str_neq(base, other, "input bytes");
    nr_client_content_id("img", 3, "vision,text", opts, 1, other);
    cr_expect_str_neq(base, other, "route");
    nr_client_content_id("img", 3, "vision,text,speech", beams5, 1, other);
    cr_expect_str_neq(base, other, "option value");
    nr_client_content_id("img", 3, "vision,text,speech", voice, 2, other);
    cr_expect_str_neq(base, other, "extra option");
    nr_client_content_id("img", 3, "vision,text,speech", renamed, 1, other);
    cr_expect_str_neq(base, other, "key/value boundary");
    nr_client_content_id("img", 3, "vision,text,speech", NULL, 0, other);
    cr_expect_str_neq(base, other, "no options");
    /* Input and route cannot trade bytes: the input size is hashed. */
    char p[NR_CLIENT_ID_HEX + 1], q[NR_CLIENT_ID_HEX + 1];
    nr_client_content_id("ab", 2, "c", NULL, 0, p);
    nr_client_content_id("a", 1, "bc", NULL, 0, q);
    cr_expect_str_neq(p, q);
}

/* narrate and the gateway both encode options through nr_client_options:
 * the names, the decimal form and the order are fixed, and absent options
 * (0, "", NULL) are left out, so the same options give the same id. */
/* The prompt option: encoded last, as given; refused by the one encoder
 * when too long, not UTF-8 or holding a control character; and part of the
 * content-hash id, so another prompt is another job. */
Test(jobid, prompt_option) {
    nr_client_options_t o;
    char e[256] = "";
    cr_assert_eq(nr_client_options(&o, 3, 20, "kal", "a picture of", e, sizeof e), 0, "%s", e);
    cr_assert_eq(o.n, 4);
    cr_assert_str_eq(o.kv[3].key, "prompt");
    cr_assert_str_eq(o.kv[3].value, "a picture of");
    char id_a[NR_CLIENT_ID_HEX + 1], id_b[NR_CLIENT_ID_HEX + 1], id_none[NR_CLIENT_ID_HEX + 1];
    cr_assert_eq(nr_client_content_id("img", 3, "vision,text", o.kv, o.n, id_a), 0);
    cr_assert_eq(nr_client_options(&o, 3, 20, "kal", "a photo of", e, sizeof e), 0, "%s", e);
    cr_assert_eq(nr_client_content_id("img", 3, "vision,text", o.kv, o.n, id_b), 0);
    cr_assert_eq(nr_client_options(&o, 3, 20, "kal", NULL, e, sizeof e), 0, "%s", e);
    cr_assert_eq(o.n, 3);
    cr_assert_eq(nr_client_content_id("img", 3, "vision,text", o.kv, o.n, id_none), 0);
    cr_expect_str_neq(id_a, id_b, "another prompt, another job");
    cr_expect_str_neq(id_a, id_none, "a prompt or none, another job");

    char text[NR_CLIENT_PROMPT_MAX + 2];
    memset(text, 'x', sizeof text);
    text[NR_CLIENT_PROMPT_MAX] = '\0';
    cr_expect_eq(nr_client_options(&o, 0, 0, NULL, text, e, sizeof e), 0, "256 bytes: %s", e);
    text[NR_CLIENT_PROMPT_MAX] = 'x';
    text[NR_CLIENT_PROMPT_MAX + 1] = '\0';
    e[0] = '\0';
    cr_expect_eq(nr_client_options(&o, 4, 0, NULL, text, e, sizeof e), NR_EOPTION);
    cr_expect(strstr(e, "257 bytes, at most 256"), "%s", e);
    cr_expect_eq(o.n, 0, "nothing encoded from refused options");
    const char *bad[] = {"caf\xe9", "\xc0\xaf", "\xed\xa0\x80", "tab\there", "del\x7f", "c1\xc2\x85", NULL};
    for (int i = 0; bad[i]; i++)
        cr_expect_eq(nr_client_options(&o, 0, 0, NULL, bad[i], e, sizeof e), NR_EOPTION, "prompt %d accepted", i);
    cr_expect_eq(nr_client_options(&o, 0, 0, "a b", NULL, e, sizeof e), NR_EOPTION, "a bad voice");
    cr_expect_eq(nr_client_prompt_check("\xe2\x80\x9cpicture\xe2\x80\x9d of a", e, sizeof e), 0, "%s", e);
}

/* The language option: appended after the others, checked as a code, and
 * part of the content-hash id. */
Test(jobid, language_option) {
    nr_client_options_t o;
    char e[256] = "";
    cr_assert_eq(nr_client_options(&o, 3, 0, "kal", "caption", e, sizeof e), 0, "%s", e);
    cr_assert_eq(nr_client_options_language(&o, "es", e, sizeof e), 0, "%s", e);
    cr_assert_eq(o.n, 4);
    cr_assert_str_eq(o.kv[3].key, "language");
    cr_assert_str_eq(o.kv[3].value, "es");
    char id_es[NR_CLIENT_ID_HEX + 1], id_de[NR_CLIENT_ID_HEX + 1];
    cr_assert_eq(nr_client_content_id("img", 3, "vision,text", o.kv, o.n, id_es), 0);
    cr_assert_eq(nr_client_options(&o, 3, 0, "kal", "caption", e, sizeof e), 0, "%s", e);
    cr_assert_eq(nr_client_options_language(&o, "de", e, sizeof e), 0, "%s", e);
    cr_assert_eq(nr_client_content_id("img", 3, "vision,text", o.kv, o.n, id_de), 0);
    cr_expect_str_neq(id_es, id_de, "another language, another job");
    cr_assert_eq(nr_client_options(&o, 0, 0, NULL, NULL, e, sizeof e), 0, "%s", e);
    cr_assert_eq(nr_client_options_language(&o, "", e, sizeof e), 0);
    cr_assert_eq(nr_client_options_language(&o, NULL, e, sizeof e), 0);
    cr_assert_eq(o.n, 0);
    const char *bad[] = {"e", "EN", "english", "en_US", "en-", "en-x", "es-abcdefghi", "zh;rm", "abcdefghijklmnopq"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_expect_not(nr_client_language_valid(bad[i]), "%s", bad[i]);
        cr_expect_eq(nr_client_options_language(&o, bad[i], e, sizeof e), NR_EOPTION, "%s", bad[i]);
    }
    cr_assert_eq(o.n, 0);
    const char *good[] = {"en", "yue", "pt-BR", "zh-TW", "sr-Latn-RS"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) cr_expect(nr_client_language_valid(good[i]), "%s", good[i]);
}

Test(jobid, options_encoding_and_record) {
    nr_client_options_t o;
    char e[256] = "";
    cr_assert_eq(nr_client_options(&o, 4, 0, "kal", NULL, e, sizeof e), 0, "%s", e);
    cr_assert_eq(o.n, 2);
    cr_assert_str_eq(o.kv[0].key, "num_beams");
    cr_assert_str_eq(o.kv[0].value, "4");
    cr_assert_str_eq(o.kv[1].key, "voice");
    cr_assert_str_eq(o.kv[1].value, "kal");
    cr_assert_eq(nr_client_options(&o, 0, 30, NULL, "", e, sizeof e), 0, "%s", e);
    cr_assert_eq(o.n, 1);
    cr_assert_str_eq(o.kv[0].key, "max_length");
    cr_assert_str_eq(o.kv[0].value, "30");
    cr_assert_eq(nr_client_options(&o, 0, 0, "", NULL, e, sizeof e), 0, "%s", e);
    cr_assert_eq(o.n, 0);
    cr_assert(nr_client_voice_valid("kal_16k.v2"));
    cr_assert(!nr_client_voice_valid(""));
    cr_assert(!nr_client_voice_valid("a b"));
    cr_assert(!nr_client_voice_valid("012345678901234567890123456789012"), "33 characters");

    nr_msg_t m;
    nr_proto_msg_init(&m);
    nr_client_record_t r;
    nr_client_record(NULL, &r);
    cr_assert(!r.state && r.created_ms == -1 && !r.final);
    cr_assert_eq(nr_proto_kv_add(&m, "state", "cancelled"), 0);
    cr_assert_eq(nr_proto_kv_add(&m, "existing", "1"), 0);
    cr_assert_eq(nr_proto_kv_add(&m, "created_ms", "1000"), 0);
    cr_assert_eq(nr_proto_kv_add(&m, "text.caption", "a cat"), 0);
    nr_client_record(&m, &r);
    cr_assert_str_eq(r.state, "cancelled");
    cr_assert_str_eq(r.caption, "a cat");
    cr_assert(r.final && r.existing && r.created_ms == 1000 && r.updated_ms == -1 && !r.route);
    nr_proto_msg_clear(&m);
}

Test(jobid, random_ids_and_validation) {
    char a[NR_CLIENT_ID_HEX + 1], b[NR_CLIENT_ID_HEX + 1];
    cr_assert_eq(nr_client_random_id(a), 0);
    cr_assert_eq(nr_client_random_id(b), 0);
    cr_expect_str_neq(a, b);
    cr_expect(nr_client_id_valid(a));
    cr_expect_eq(nr_client_content_id(NULL, 3, "x", NULL, 0, a), NR_EINVAL);
    cr_expect(nr_client_id_valid("A-z_0.9:x"));
    cr_expect(!nr_client_id_valid(""));
    cr_expect(!nr_client_id_valid(NULL));
    cr_expect(!nr_client_id_valid("a/b"));
    cr_expect(!nr_client_id_valid("a b"));
    char longid[NR_PROTO_ID_MAX + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    cr_expect(!nr_client_id_valid(longid));
    longid[NR_PROTO_ID_MAX] = '\0';
    cr_expect(nr_client_id_valid(longid));
}

Test(jobid, client_new_rejects_bad_arguments) {
    cr_expect_null(nr_client_new(NULL, 1000));
    cr_expect_null(nr_client_new("", 1000));
    cr_expect_null(nr_client_new("tcp://127.0.0.1:5555", 0));
    cr_expect_null(nr_client_new("not an endpoint", 1000));
    nr_client_t *c = nr_client_new("tcp://127.0.0.1:5555", 1000);
    cr_assert_not_null(c);
    cr_expect_str_eq(nr_client_endpoint(c), "tcp://127.0.0.1:5555");
    nr_client_destroy(&c);
    cr_expect_null(c);
    nr_client_destroy(&c);
}

/* ---- output names and writes ------------------------------------------- */

static void s_stem(const char *path, const char *expected) {
    char out[NR_OUTPUT_STEM_MAX + 1];
    cr_assert_eq(nr_output_stem(path, out, sizeof out), 0);
    cr_expect_str_eq(out, expected, "stem of '%s'", path);
}

Test(output, stems) {
    s_stem("photos/cat.jpg", "cat");
    s_stem("cat.tar.gz", "cat.tar");
    s_stem("/abs/path/x.png", "x");
    s_stem("../../etc/passwd", "passwd");
    s_stem("..", "_");
    s_stem(".", "_");
    s_stem("...", "_.");
    s_stem("", "image");
    s_stem("dir/", "dir");
    s_stem(".hidden.jpg", "_hidden");
    s_stem("a b;rm -rf ~.jpg", "a_b_rm_-rf__");
    s_stem("x\ny\tz.jpg", "x_y_z");
    s_stem("..\\..\\win.jpg", "_._.._win");
    s_stem("caf\xc3\xa9.jpg", "caf\xc3\xa9");                /* UTF-8 kept */
    s_stem("\xff\xfe\xc3.jpg", "___");                         /* invalid UTF-8 */
    s_stem("\xe2\x80\xae" "gpj.exe", "_gpj");        /* U+202E, right-to-left override */
    s_stem("a\xe2\x80\x8b" "b.png", "a_b");           /* U+200B, zero width space */
    s_stem("\xe6\x97\xa5\xe6\x9c\xac.jpg", "\xe6\x97\xa5\xe6\x9c\xac"); /* CJK kept */
}

Test(output, stems_are_always_safe) {
    const char *evil[] = {"..", "../..", "/", "//", "./.", "a/../../b", "/etc/passwd",
                          "..%2f..%2fx.jpg", "-rf.jpg", "~/.ssh/id_rsa", "\x01\x02.png",
                          "a\300\257b.png", "nul\\..\\x", ".jpg", "..jpg", " .png"};
    for (size_t i = 0; i < sizeof evil / sizeof evil[0]; i++) {
        char out[NR_OUTPUT_STEM_MAX + 1];
        cr_assert_eq(nr_output_stem(evil[i], out, sizeof out), 0);
        cr_expect(nr_output_name_safe(out), "'%s' gave unsafe stem '%s'", evil[i], out);
        cr_expect(strcmp(out, ".") && strcmp(out, ".."));
    }
    char longname[600];
    memset(longname, 'x', sizeof longname);
    memcpy(longname + 400, "\xc3\xa9\xc3\xa9\xc3\xa9", 6);
    strcpy(longname + 590, ".jpg");
    char out[NR_OUTPUT_STEM_MAX + 1];
    nr_output_stem(longname, out, sizeof out);
    cr_expect_leq(strlen(out), NR_OUTPUT_STEM_MAX);
    /* A cut never splits a UTF-8 character. */
    char at[NR_OUTPUT_STEM_MAX + 1];
    memset(longname, 'y', 99);
    memcpy(longname + 99, "\xc3\xa9z.png", 8);
    nr_output_stem(longname, at, sizeof at);
    cr_expect_eq(strlen(at), 99);
}

Test(output, name_safe) {
    cr_expect(nr_output_name_safe("cat.txt"));
    cr_expect(!nr_output_name_safe(""));
    cr_expect(!nr_output_name_safe(NULL));
    cr_expect(!nr_output_name_safe("."));
    cr_expect(!nr_output_name_safe(".."));
    cr_expect(!nr_output_name_safe("../x"));
    cr_expect(!nr_output_name_safe("a/b"));
    cr_expect(!nr_output_name_safe("/etc/passwd"));
    cr_expect(!nr_output_name_safe(".bashrc"));
}

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static char s_tmp[256];

static void s_make_tmp(void) {
    snprintf(s_tmp, sizeof s_tmp, "/tmp/nr-test-client-XXXXXX");
    cr_assert_not_null(mkdtemp(s_tmp));
}

static void s_remove_tmp(void) {
    if (s_tmp[0]) nftw(s_tmp, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static void s_put(const char *rel, const char *content) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", s_tmp, rel);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    fputs(content, f);
    fclose(f);
}

static char *s_slurp(const char *path) {
    uint8_t *data;
    size_t size;
    char err[256];
    if (nr_files_read(path, 1 << 20, &data, &size, err, sizeof err)) return NULL;
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    free(data);
    return s;
}

TestSuite(write, .init = s_make_tmp, .fini = s_remove_tmp);

Test(write, atomic_write_and_refusals) {
    char err[512], dir[300], path[400];
    snprintf(dir, sizeof dir, "%s/out/deep/er", s_tmp);
    cr_assert_eq(nr_output_mkdir(dir, err, sizeof err), 0, "%s", err);
    cr_assert_eq(nr_output_mkdir(dir, err, sizeof err), 0, "mkdir twice: %s", err);
    cr_assert_eq(nr_output_write(dir, "cat.txt", "a cat\n", 6, err, sizeof err), 0, "%s", err);
    snprintf(path, sizeof path, "%s/cat.txt", dir);
    char *got = s_slurp(path);
    cr_assert_not_null(got);
    cr_expect_str_eq(got, "a cat\n");
    free(got);
    cr_expect_eq(nr_output_write(dir, "../escape.txt", "x", 1, err, sizeof err), NR_EINVAL);
    cr_expect_eq(nr_output_write(dir, "a/b.txt", "x", 1, err, sizeof err), NR_EINVAL);
    cr_expect_eq(nr_output_write(dir, "/etc/x", "x", 1, err, sizeof err), NR_EINVAL);
    cr_expect_eq(nr_output_write(dir, ".hidden", "x", 1, err, sizeof err), NR_EINVAL);
    snprintf(path, sizeof path, "%s/out/deep/escape.txt", s_tmp);
    cr_expect_neq(access(path, F_OK), 0);
    /* Nothing temporary is left behind. */
    cr_assert_eq(nr_output_write(dir, "empty.wav", NULL, 0, err, sizeof err), 0, "%s", err);
    nr_files_t files;
    nr_files_init(&files);
    char all[300];
    snprintf(all, sizeof all, "%s/out", s_tmp);
    /* Count every entry, including hidden temporaries. */
    int count = 0;
    FILE *p;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls -A %s", dir);
    p = popen(cmd, "r");
    char line[256];
    while (p && fgets(line, sizeof line, p)) count++;
    if (p) pclose(p);
    cr_expect_eq(count, 2);
    nr_files_clear(&files);
}

Test(write, replaces_a_link_instead_of_writing_through_it) {
    char err[512], link[300], target[300];
    snprintf(target, sizeof target, "%s/target", s_tmp);
    snprintf(link, sizeof link, "%s/evil.txt", s_tmp);
    s_put("target", "precious");
    cr_assert_eq(symlink(target, link), 0);
    cr_assert_eq(nr_output_write(s_tmp, "evil.txt", "caption", 7, err, sizeof err), 0, "%s", err);
    char *t = s_slurp(target), *l = s_slurp(link);
    cr_expect_str_eq(t, "precious");
    cr_expect_str_eq(l, "caption");
    struct stat st;
    cr_assert_eq(lstat(link, &st), 0);
    cr_expect(S_ISREG(st.st_mode));
    free(t);
    free(l);
}

Test(write, write_path_and_mkdir_over_file) {
    char err[512], path[300];
    snprintf(path, sizeof path, "%s/speech.wav", s_tmp);
    cr_assert_eq(nr_output_write_path(path, "RIFF", 4, err, sizeof err), 0, "%s", err);
    char *got = s_slurp(path);
    cr_expect_str_eq(got, "RIFF");
    free(got);
    cr_expect_eq(nr_output_mkdir(path, err, sizeof err), NR_EIO);
    snprintf(path, sizeof path, "%s/no/such/dir/x.wav", s_tmp);
    cr_expect_eq(nr_output_write_path(path, "x", 1, err, sizeof err), NR_EIO);
}

/* What `speak -o PATH` may do to PATH: a FIFO is written into (and stays a
 * FIFO); a link, a device and a folder are refused and left as they were.
 * All three were once replaced by a regular file. In an output folder, a
 * FIFO or device at an output name is refused too. */
Test(write, chosen_path_streams_fifos_and_refuses_links_and_devices) {
    char err[512], fifo[300], link[300], target[300], dev[300], sub[300];
    struct stat st;
    snprintf(fifo, sizeof fifo, "%s/speech.wav", s_tmp);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    int rd = open(fifo, O_RDWR | O_NONBLOCK); /* a reader, so the writer does not wait */
    cr_assert_geq(rd, 0);
    cr_assert_eq(nr_output_write_path(fifo, "RIFF", 4, err, sizeof err), 0, "%s", err);
    char got[8] = "";
    cr_expect_eq(read(rd, got, sizeof got), 4);
    cr_expect_eq(memcmp(got, "RIFF", 4), 0);
    close(rd);
    cr_assert_eq(lstat(fifo, &st), 0);
    cr_expect(S_ISFIFO(st.st_mode), "the FIFO was replaced (mode %o)", st.st_mode);

    snprintf(target, sizeof target, "%s/target", s_tmp);
    snprintf(link, sizeof link, "%s/link.wav", s_tmp);
    s_put("target", "precious");
    cr_assert_eq(symlink(target, link), 0);
    cr_expect_eq(nr_output_write_path(link, "RIFF", 4, err, sizeof err), NR_EIO);
    cr_expect(strstr(err, "refusing to replace") && strstr(err, "symbolic link"), "%s", err);
    cr_assert_eq(lstat(link, &st), 0);
    cr_expect(S_ISLNK(st.st_mode), "the link was replaced");
    char *t = s_slurp(target);
    cr_expect_str_eq(t, "precious");
    free(t);

    /* A character device: our own null device node when we may make one
     * (root), else /dev/null itself (which a non-root rename cannot touch). */
    snprintf(dev, sizeof dev, "%s/null", s_tmp);
    if (mknod(dev, S_IFCHR | 0666, makedev(1, 3)) != 0) {
        cr_assert_neq(geteuid(), 0, "root but mknod failed");
        snprintf(dev, sizeof dev, "/dev/null");
    }
    cr_expect_eq(nr_output_write_path(dev, "RIFF", 4, err, sizeof err), NR_EIO);
    cr_expect(strstr(err, "character device"), "%s", err);
    cr_assert_eq(lstat(dev, &st), 0);
    cr_expect(S_ISCHR(st.st_mode), "the device node was replaced");

    snprintf(sub, sizeof sub, "%s/folder.wav", s_tmp);
    cr_assert_eq(mkdir(sub, 0700), 0);
    cr_expect_eq(nr_output_write_path(sub, "RIFF", 4, err, sizeof err), NR_EIO);
    cr_expect_eq(nr_output_write_path("/", "RIFF", 4, err, sizeof err), NR_EIO);

    /* In an output folder: a FIFO at an output name is refused, not
     * replaced (a link there is replaced: replaces_a_link_... above). */
    snprintf(fifo, sizeof fifo, "%s/cat.json", s_tmp);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_expect_eq(nr_output_write(s_tmp, "cat.json", "{}", 2, err, sizeof err), NR_EIO);
    cr_expect(strstr(err, "FIFO"), "%s", err);
    cr_assert_eq(lstat(fifo, &st), 0);
    cr_expect(S_ISFIFO(st.st_mode));
    /* The output folder must be a folder. */
    cr_expect_eq(nr_output_write(target, "cat.txt", "x", 1, err, sizeof err), NR_EIO);
    cr_expect(strstr(err, "not a folder"), "%s", err);
}

/* ---- JSON ---------------------------------------------------------------- */

/* Plain output escapes what a terminal would act on; JSON escapes C0. */
Test(output, plain_text_escapes_control_characters) {
    nr_buf_t b = {0};
    nr_output_plain(&b, "a\x1b[31mb\n\\\xc2\x9b\xff\xe2\x80\xae.png \xc3\xa9\x7f");
    cr_expect_str_eq(b.data, "a\\x1b[31mb\\x0a\\\\\\xc2\\x9b\\xff\\u202e.png \xc3\xa9\\x7f");
    nr_buf_clear(&b);
    nr_output_plain(&b, NULL);
    cr_expect_str_eq(b.data ? b.data : "", "");
    nr_buf_clear(&b);
    nr_output_json_string(&b, "\x1b[2J\x07");
    cr_expect_str_eq(b.data, "\"\\u001b[2J\\u0007\"");
    nr_buf_clear(&b);
}

Test(output, json_string_escaping) {
    nr_buf_t b = {0};
    nr_output_json_string(&b, "a\"b\\c\nd\te\x01 caf\xc3\xa9 \xff!");
    cr_assert_not_null(b.data);
    cr_expect_str_eq(b.data, "\"a\\\"b\\\\c\\nd\\te\\u0001 caf\xc3\xa9 \xef\xbf\xbd!\"");
    nr_buf_clear(&b);
    nr_output_json_string(&b, NULL);
    cr_expect_str_eq(b.data, "null");
    nr_buf_clear(&b);
}

Test(output, record_json) {
    nr_kv_t kv[] = {
        {"id", "abc"},           {"state", "done"},         {"stage", "speech"},
        {"route", "vision,text,speech"},                    {"text.caption", "a \"cat\""},
        {"vision.model", "vit"}, {"text.model", "gpt2"},    {"vision.ms", "12"},
        {"vision.family", "vit-gpt2"}, {"text.family", "vit-gpt2"},
        {"text.ms", "30"},       {"speech.ms", "7"},        {"vision.attempts", "1"},
        {"text.attempts", "2"},  {"speech.attempts", "1"},  {"speech.voice", "kal"},
        {"speech.duration_ms", "1500"},                      {"opt.num_beams", "4"},
        {"error", ""},           {"created_ms", "1700000000000"},
    };
    nr_msg_t m;
    memset(&m, 0, sizeof m);
    m.kv = kv;
    m.kv_len = sizeof kv / sizeof kv[0];
    const char *files[] = {"abc.txt", "abc.wav", NULL};
    nr_output_extra_t extra = {"in/cat.jpg", files, NULL, NULL, NULL, NULL};
    nr_buf_t b = {0};
    nr_output_record_json(&b, "abc", &m, &extra);
    cr_assert_not_null(b.data);
    const char *want[] = {
        "{\"id\":\"abc\"", "\"source\":\"in/cat.jpg\"", "\"state\":\"done\"",
        "\"caption\":\"a \\\"cat\\\"\"", "\"model\":{\"vision\":\"vit\",\"text\":\"gpt2\"}",
        "\"family\":{\"vision\":\"vit-gpt2\",\"text\":\"vit-gpt2\"}",
        "\"timings_ms\":{\"vision\":12,\"text\":30,\"speech\":7}",
        "\"attempts\":{\"vision\":1,\"text\":2,\"speech\":1}", "\"error\":null",
        "\"duration_ms\":1500", "\"created_ms\":1700000000000", "\"options\":{\"num_beams\":\"4\"}",
        "\"files\":[\"abc.txt\",\"abc.wav\"]", "\"voice\":\"kal\""};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_expect(strstr(b.data, want[i]), "record lacks %s: %s", want[i], b.data);
    nr_buf_clear(&b);

    nr_output_extra_t local = {"in/cat.jpg", NULL, "no_worker", "no worker serves stage vision", NULL,
                               NULL};
    kv[1].value = "queued";
    nr_output_record_json(&b, "abc", &m, &local);
    cr_expect(strstr(b.data, "\"state\":\"failed\""), "%s", b.data);
    cr_expect(strstr(b.data, "\"error\":\"no_worker\""), "%s", b.data);
    cr_expect(strstr(b.data, "\"files\":[]"), "%s", b.data);
    nr_buf_clear(&b);
    nr_output_record_json(&b, "only-id", NULL, NULL);
    cr_expect(strstr(b.data, "{\"id\":\"only-id\",\"source\":null"), "%s", b.data);
    nr_buf_clear(&b);
}

/* ---- input files ---------------------------------------------------------- */

TestSuite(files, .init = s_make_tmp, .fini = s_remove_tmp);

Test(files, image_names) {
    cr_expect(nr_files_is_image_name("a.jpg"));
    cr_expect(nr_files_is_image_name("dir.png/a.JPEG"));
    cr_expect(nr_files_is_image_name("x.WebP"));
    cr_expect(nr_files_is_image_name("x.png"));
    cr_expect(nr_files_is_image_name("x.gif"));
    cr_expect(nr_files_is_image_name("scan.TIF") && nr_files_is_image_name("a/b.tiff"));
    cr_expect(nr_files_is_image_name("x.Bmp") && nr_files_is_image_name("IMG_1.HEIC"));
    cr_expect(nr_files_is_image_name("x.heif") && nr_files_is_image_name("x.avif"));
    cr_expect(!nr_files_is_image_name("x.pdf") && !nr_files_is_image_name("x.tif.txt"));
    cr_expect(!nr_files_is_image_name(".jpg"));
    cr_expect(!nr_files_is_image_name("x.jpg.bak"));
    cr_expect(!nr_files_is_image_name("jpg"));
    cr_expect(!nr_files_is_image_name(NULL));
}

/* --all-pages counts a TIFF's pages by walking its directory chain:
 * classic and BigTIFF, both byte orders; anything else is one page; a
 * loop, a cut chain or any prefix of a real file never over-counts. */
Test(files, tiff_pages) {
    char path[4096];
    const char *src = getenv("NR_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/tests/fixtures/image_formats/tiff_multipage.tif", src ? src : ".");
    uint8_t *d = NULL;
    size_t n = 0;
    char err[256];
    cr_assert_eq(nr_files_read(path, 1 << 20, &d, &n, err, sizeof err), 0, "%s (NR_SOURCE_DIR set?)", err);
    cr_expect_eq(nr_files_tiff_pages(d, n, 1000), 3);
    cr_expect_eq(nr_files_tiff_pages(d, n, 2), 2);
    for (size_t len = 0; len < n; len++) {
        int p = nr_files_tiff_pages(d, len, 1000);
        cr_assert(p >= 1 && p <= 3, "cut to %zu: %d pages", len, p);
    }
    free(d);
    /* Two empty directories, big-endian, the second pointing back to the first. */
    const uint8_t loop[] = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 0, 0, 0, 0, 14, 0, 0, 0, 0, 0, 8};
    cr_expect_eq(nr_files_tiff_pages(loop, sizeof loop, 1000), 2);
    /* BigTIFF, little-endian: one directory, then the end. */
    uint8_t big[40] = {'I', 'I', 43, 0, 8, 0, 0, 0, 16};
    cr_expect_eq(nr_files_tiff_pages(big, sizeof big, 1000), 1);
    big[24] = 16; /* next = itself: a loop */
    cr_expect_eq(nr_files_tiff_pages(big, sizeof big, 1000), 1);
    cr_expect_eq(nr_files_tiff_pages((const uint8_t *)"\xff\xd8\xff\xe0 a JPEG", 12, 1000), 1);
    cr_expect_eq(nr_files_tiff_pages(NULL, 0, 1000), 1);
}

Test(files, folders_recursed_sorted_filtered) {
    char path[400], err[512];
    snprintf(path, sizeof path, "%s/sub", s_tmp);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/sub/deeper", s_tmp);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/.git", s_tmp);
    mkdir(path, 0777);
    s_put("b.jpg", "b");
    s_put("a.PNG", "a");
    s_put("notes.txt", "n");
    s_put(".hidden.jpg", "h");
    s_put(".git/x.jpg", "g");
    s_put("z.jpeg.bak", "z");
    s_put("sub/c.webp", "c");
    s_put("sub/deeper/d.jpeg", "d");
    s_put("sub/deeper/0.jpg", "0");
    char target[400];
    snprintf(target, sizeof target, "%s/sub", s_tmp);
    snprintf(path, sizeof path, "%s/loop", s_tmp);
    cr_assert_eq(symlink(target, path), 0); /* a link to a folder: not followed */
    snprintf(target, sizeof target, "%s/a.PNG", s_tmp);
    snprintf(path, sizeof path, "%s/lnk.jpg", s_tmp);
    cr_assert_eq(symlink(target, path), 0); /* a link to a file: taken */

    nr_files_t f;
    nr_files_init(&f);
    cr_assert_eq(nr_files_collect(&f, s_tmp, err, sizeof err), 0, "%s", err);
    const char *want[] = {"a.PNG", "b.jpg", "lnk.jpg", "sub/c.webp", "sub/deeper/0.jpg",
                          "sub/deeper/d.jpeg"};
    cr_assert_eq(f.len, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < f.len; i++) {
        snprintf(path, sizeof path, "%s/%s", s_tmp, want[i]);
        cr_expect_str_eq(f.paths[i], path);
    }
    /* A file named directly is taken whatever its name; lists append. */
    snprintf(path, sizeof path, "%s/notes.txt", s_tmp);
    cr_assert_eq(nr_files_collect(&f, path, err, sizeof err), 0, "%s", err);
    cr_expect_eq(f.len, 7);
    cr_expect_str_eq(f.paths[6], path);
    nr_files_clear(&f);
    nr_files_clear(&f);
}

/* A subfolder that cannot be opened is left out with its reason; the rest
 * is collected (it once failed the whole walk). Root opens any folder, so
 * the walk runs in a child as nobody. */
Test(files, unreadable_subfolder_is_skipped) {
    char dir[300];
    cr_assert_eq(chmod(s_tmp, 0755), 0);
    const char *subs[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        snprintf(dir, sizeof dir, "%s/%s", s_tmp, subs[i]);
        cr_assert_eq(mkdir(dir, 0755), 0);
    }
    s_put("a/1.png", "x");
    s_put("b/2.png", "x");
    s_put("c/3.png", "x");
    snprintf(dir, sizeof dir, "%s/b", s_tmp);
    cr_assert_eq(chmod(dir, 0), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0))
            _exit(10);
        nr_files_t files;
        nr_files_init(&files);
        char err[512];
        int code = 0;
        if (nr_files_collect(&files, s_tmp, err, sizeof err) != 0) code = 1;
        else if (files.len != 2) code = 2;
        else if (!strstr(files.paths[0], "a/1.png") || !strstr(files.paths[1], "c/3.png")) code = 3;
        else if (files.n_skipped != 1 || !strstr(files.skipped[0], "/b: Permission denied")) code = 4;
        nr_files_clear(&files);
        _exit(code);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    chmod(dir, 0755);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child: 1 walk failed, 2 wrong count, 3 wrong files, 4 skip not noted, 10 setuid (got %d)",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

Test(files, trailing_slash_and_missing_path) {
    char path[400], err[512];
    s_put("x.jpg", "x");
    snprintf(path, sizeof path, "%s/", s_tmp);
    nr_files_t f;
    nr_files_init(&f);
    cr_assert_eq(nr_files_collect(&f, path, err, sizeof err), 0, "%s", err);
    cr_assert_eq(f.len, 1);
    snprintf(path, sizeof path, "%s/x.jpg", s_tmp);
    cr_expect_str_eq(f.paths[0], path);
    snprintf(path, sizeof path, "%s/missing", s_tmp);
    cr_expect_eq(nr_files_collect(&f, path, err, sizeof err), NR_EIO);
    cr_expect(strstr(err, "missing"), "%s", err);
    cr_expect(strstr(err, "No such file"), "%s", err);
    cr_expect_eq(f.len, 1);
    nr_files_clear(&f);
}

Test(files, read_whole_and_limits) {
    char path[400], err[512];
    s_put("data.bin", "0123456789");
    s_put("empty.jpg", "");
    snprintf(path, sizeof path, "%s/data.bin", s_tmp);
    uint8_t *data;
    size_t size;
    cr_assert_eq(nr_files_read(path, 10, &data, &size, err, sizeof err), 0, "%s", err);
    cr_expect_eq(size, 10);
    cr_expect_eq(memcmp(data, "0123456789", 10), 0);
    free(data);
    cr_expect_eq(nr_files_read(path, 9, &data, &size, err, sizeof err), NR_ETOOBIG);
    cr_expect_null(data);
    snprintf(path, sizeof path, "%s/empty.jpg", s_tmp);
    cr_assert_eq(nr_files_read(path, 10, &data, &size, err, sizeof err), 0, "%s", err);
    cr_expect_eq(size, 0);
    free(data);
    snprintf(path, sizeof path, "%s/nope", s_tmp);
    cr_expect_eq(nr_files_read(path, 10, &data, &size, err, sizeof err), NR_EIO);
}

/* ---- the client library against an in-process fake broker ---------------- */

/* A ROUTER on a free loopback port, run by a thread that answers `count`
 * requests by a script: drop the first `drop`, answer SUBMIT with NR_EBUSY
 * `busy` times, send a stale reply before each real one when `stale`, answer
 * everything with seq 0 and NR_EPROTO when `seq0`, and with `hold` > 1 read
 * that many requests before answering them, last first. A real answer
 * echoes what arrived: kv cmd, id, stage, route, every option as
 * opt.<key>, frame size; with `done`, state done, and with `caption`,
 * text.caption (so `narrate speak` and `submit` run to the end). */
typedef struct {
    void *ctx, *sock;
    char endpoint[64];
    int count, drop, busy, stale, seq0, hold;
    int done;            /* records say state done */
    const char *caption; /* and text.caption this, when not NULL */
    int seen;
    pthread_t thread;
} s_fake_t;

static void s_fake_answer(s_fake_t *f, int n, const uint8_t *ident, size_t idn, const nr_msg_t *m) {
    nr_msg_t r;
    char err[256];
    nr_proto_msg_init(&r);
    if (n < f->drop) return;
    r.cmd = NR_CMD_REPLY;
    r.seq = m->seq;
    if (f->stale) {
        r.seq = m->seq - 1;
        r.code = NR_ENOTFOUND;
        nr_proto_send(f->sock, ident, idn, &r, err, sizeof err);
        r.seq = m->seq;
        r.code = 0;
    }
    if (f->seq0) {
        r.seq = 0;
        r.code = NR_EPROTO;
        snprintf(r.message, sizeof r.message, "cannot decode");
    } else if (m->cmd == NR_CMD_SUBMIT && f->busy > 0) {
        f->busy--;
        r.code = NR_EBUSY;
        snprintf(r.message, sizeof r.message, "queue full");
    } else if (!strcmp(m->id, "missing")) {
        r.code = NR_ENOTFOUND;
        snprintf(r.message, sizeof r.message, "no job missing");
    } else {
        char route[300] = "", size[32];
        for (uint32_t i = 0; i < m->route_len; i++) {
            if (i) strcat(route, ",");
            strcat(route, m->route[i]);
        }
        nr_proto_kv_add(&r, "cmd", nr_proto_cmd_name(m->cmd));
        nr_proto_kv_add(&r, "id", m->id);
        nr_proto_kv_add(&r, "stage", m->stage);
        nr_proto_kv_add(&r, "route", route);
        for (uint32_t i = 0; i < m->kv_len; i++) {
            char key[80];
            snprintf(key, sizeof key, "opt.%s", m->kv[i].key);
            nr_proto_kv_add(&r, key, m->kv[i].value);
        }
        snprintf(size, sizeof size, "%zu", m->frames_len ? m->frames[0].size : (size_t)0);
        nr_proto_kv_add(&r, "input_size", size);
        if (f->done) nr_proto_kv_add(&r, "state", "done");
        if (f->caption) nr_proto_kv_add(&r, "text.caption", f->caption);
        if (m->cmd == NR_CMD_FETCH) nr_proto_frame_add(&r, "RIFF", 4);
    }
    nr_proto_send(f->sock, ident, idn, &r, err, sizeof err);
    nr_proto_msg_clear(&r);
}

static void *s_fake_run(void *arg) {
    s_fake_t *f = arg;
    int hold = f->hold > 1 ? f->hold : 1;
    nr_msg_t *m = calloc((size_t)hold, sizeof *m);
    uint8_t (*ident)[256] = calloc((size_t)hold, sizeof *ident);
    size_t *idn = calloc((size_t)hold, sizeof *idn);
    if (!m || !ident || !idn) goto done;
    for (int n = 0; n < f->count;) {
        int got = 0;
        char err[256];
        while (got < hold && n + got < f->count) {
            nr_proto_msg_init(&m[got]);
            if (nr_proto_recv(f->sock, ident[got], &idn[got], &m[got], err, sizeof err)) break;
            f->seen++;
            got++;
        }
        for (int k = got - 1; k >= 0; k--) {
            s_fake_answer(f, n + k, ident[k], idn[k], &m[k]);
            nr_proto_msg_clear(&m[k]);
        }
        if (got < hold && n + got < f->count) break; /* a receive failed */
        n += got;
    }
done:
    free(m);
    free(ident);
    free(idn);
    return NULL;
}

static void s_fake_start(s_fake_t *f) {
    f->ctx = zmq_ctx_new();
    f->sock = zmq_socket(f->ctx, ZMQ_ROUTER);
    int zero = 0, wait_ms = 20000;
    zmq_setsockopt(f->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(f->sock, ZMQ_RCVTIMEO, &wait_ms, sizeof wait_ms);
    cr_assert_eq(zmq_bind(f->sock, "tcp://127.0.0.1:*"), 0);
    size_t n = sizeof f->endpoint;
    cr_assert_eq(zmq_getsockopt(f->sock, ZMQ_LAST_ENDPOINT, f->endpoint, &n), 0);
    cr_assert_eq(pthread_create(&f->thread, NULL, s_fake_run, f), 0);
}

static void s_fake_stop(s_fake_t *f) {
    pthread_join(f->thread, NULL);
    zmq_close(f->sock);
    zmq_ctx_term(f->ctx);
}

Test(transport, requests_carry_their_fields) {
    s_fake_t f = {.count = 5};
    s_fake_start(&f);
    nr_client_t *c = nr_client_new(f.endpoint, 5000);
    cr_assert_not_null(c);
    nr_msg_t r;
    nr_proto_msg_init(&r);
    nr_kv_t opts[] = {{"num_beams", "4"}, {"voice", "kal"}};
    cr_assert_eq(nr_client_submit(c, "job-1", "vision,text,speech", opts, 2, "IMAGE", 5, &r), 0,
                 "%s", nr_client_error(c));
    cr_expect_str_eq(nr_proto_kv_get(&r, "cmd"), "SUBMIT");
    cr_expect_str_eq(nr_proto_kv_get(&r, "id"), "job-1");
    cr_expect_str_eq(nr_proto_kv_get(&r, "route"), "vision,text,speech");
    cr_expect_str_eq(nr_proto_kv_get(&r, "opt.num_beams"), "4");
    cr_expect_str_eq(nr_proto_kv_get(&r, "opt.voice"), "kal");
    cr_expect_str_eq(nr_proto_kv_get(&r, "input_size"), "5");
    cr_assert_eq(nr_client_status(c, "job-1", &r), 0);
    cr_expect_str_eq(nr_proto_kv_get(&r, "cmd"), "STATUS");
    cr_assert_eq(nr_client_fetch(c, "job-1", "speech", &r), 0);
    cr_expect_str_eq(nr_proto_kv_get(&r, "cmd"), "FETCH");
    cr_expect_str_eq(nr_proto_kv_get(&r, "stage"), "speech");
    cr_assert_eq(r.frames_len, 1);
    cr_expect_eq(memcmp(r.frames[0].data, "RIFF", 4), 0);
    cr_assert_eq(nr_client_cancel(c, "job-1", &r), 0);
    cr_expect_str_eq(nr_proto_kv_get(&r, "cmd"), "CANCEL");
    cr_assert_eq(nr_client_stats(c, &r), 0);
    cr_expect_str_eq(nr_proto_kv_get(&r, "cmd"), "STATS");
    /* Bad arguments never reach the wire. */
    cr_expect_eq(nr_client_status(c, "../x", &r), NR_EINVAL);
    cr_expect_eq(nr_client_submit(c, "ok", "vision,,text", NULL, 0, "x", 1, &r), NR_EINVAL);
    cr_expect_eq(nr_client_submit(c, "ok", "text,text", NULL, 0, "x", 1, &r), NR_EINVAL);
    nr_proto_msg_clear(&r);
    nr_client_destroy(&c);
    s_fake_stop(&f);
    cr_expect_eq(f.seen, 5);
}

Test(transport, broker_errors_and_stale_replies) {
    s_fake_t f = {.count = 2, .stale = 1};
    s_fake_start(&f);
    nr_client_t *c = nr_client_new(f.endpoint, 5000);
    nr_msg_t r;
    nr_proto_msg_init(&r);
    /* The stale NR_ENOTFOUND sent first is dropped; the real answer wins. */
    cr_assert_eq(nr_client_status(c, "job-2", &r), 0, "%s", nr_client_error(c));
    cr_expect_str_eq(nr_proto_kv_get(&r, "id"), "job-2");
    cr_expect_eq(nr_client_status(c, "missing", &r), NR_ENOTFOUND);
    cr_expect_str_eq(nr_client_error(c), "no job missing");
    nr_proto_msg_clear(&r);
    nr_client_destroy(&c);
    s_fake_stop(&f);
}

Test(transport, lost_reply_times_out_and_reconnects) {
    s_fake_t f = {.count = 3, .drop = 1};
    s_fake_start(&f);
    nr_client_t *c = nr_client_new(f.endpoint, 300);
    nr_msg_t r;
    nr_proto_msg_init(&r);
    cr_expect_eq(nr_client_stats(c, &r), NR_ETIMEDOUT);
    cr_expect(strstr(nr_client_error(c), f.endpoint), "%s", nr_client_error(c));
    cr_expect(strstr(nr_client_error(c), "is narrator-broker running?"), "%s", nr_client_error(c));
    nr_client_set_timeout(c, 5000);
    cr_expect_eq(nr_client_stats(c, &r), 0, "%s", nr_client_error(c));
    cr_expect_eq(nr_client_status(c, "job-3", &r), 0, "%s", nr_client_error(c));
    cr_expect_str_eq(nr_proto_kv_get(&r, "id"), "job-3");
    nr_proto_msg_clear(&r);
    nr_client_destroy(&c);
    s_fake_stop(&f);
}

Test(transport, busy_is_retried_when_asked) {
    s_fake_t f = {.count = 4, .busy = 3};
    s_fake_start(&f);
    nr_client_t *c = nr_client_new(f.endpoint, 5000);
    nr_msg_t r;
    nr_proto_msg_init(&r);
    cr_expect_eq(nr_client_submit(c, "b", "speech", NULL, 0, "hi", 2, &r), NR_EBUSY);
    cr_expect_str_eq(nr_client_error(c), "queue full");
    nr_client_set_busy_wait(c, 20000);
    cr_expect_eq(nr_client_submit(c, "b", "speech", NULL, 0, "hi", 2, &r), 0, "%s",
                 nr_client_error(c));
    cr_expect_str_eq(nr_proto_kv_get(&r, "cmd"), "SUBMIT");
    nr_proto_msg_clear(&r);
    nr_client_destroy(&c);
    s_fake_stop(&f);
    cr_expect_eq(f.seen, 4);
}

Test(transport, undecodable_request_answer_with_seq_zero) {
    s_fake_t f = {.count = 1, .seq0 = 1};
    s_fake_start(&f);
    nr_client_t *c = nr_client_new(f.endpoint, 5000);
    nr_msg_t r;
    nr_proto_msg_init(&r);
    cr_expect_eq(nr_client_stats(c, &r), NR_EPROTO);
    cr_expect_str_eq(nr_client_error(c), "cannot decode");
    nr_proto_msg_clear(&r);
    nr_client_destroy(&c);
    s_fake_stop(&f);
}

/* A batch for the fake broker: jobs "job-<i>" with input "in <i>". */
typedef struct {
    char ids[128][16], inputs[128][16];
    nr_client_job_t jobs[128];
    nr_msg_t replies[128];
    int codes[128];
} s_batch_t;

static s_batch_t *s_batch_new(int n) {
    s_batch_t *b = calloc(1, sizeof *b);
    cr_assert_not_null(b);
    cr_assert_leq(n, 128);
    for (int i = 0; i < n; i++) {
        snprintf(b->ids[i], sizeof b->ids[i], "job-%d", i);
        snprintf(b->inputs[i], sizeof b->inputs[i], "in %d", i);
        b->jobs[i] = (nr_client_job_t){b->ids[i], "speech", NULL, 0, b->inputs[i], strlen(b->inputs[i]), NULL};
        nr_proto_msg_init(&b->replies[i]);
    }
    return b;
}

static void s_batch_free(s_batch_t *b) {
    for (int i = 0; i < 128; i++) nr_proto_msg_clear(&b->replies[i]);
    free(b);
}

Test(transport, batch_of_100_answered_last_first) {
    s_fake_t f = {.count = 100, .hold = 100};
    s_fake_start(&f);
    nr_client_t *c = nr_client_new(f.endpoint, 5000);
    s_batch_t *b = s_batch_new(100);
    nr_kv_t opt = {"voice", "kal"};
    b->jobs[7].options = &opt;
    b->jobs[7].n_options = 1;
    cr_assert_eq(nr_client_submit_batch(c, b->jobs, 100, b->replies, b->codes), 0, "%s",
                 nr_client_error(c));
    for (int i = 0; i < 100; i++) {
        cr_expect_eq(b->codes[i], 0, "job %d: %s", i, b->replies[i].message);
        cr_expect_eq(b->replies[i].cmd, NR_CMD_REPLY);
        cr_expect_str_eq(nr_proto_kv_get(&b->replies[i], "cmd"), "SUBMIT");
        cr_expect_str_eq(nr_proto_kv_get(&b->replies[i], "id"), b->ids[i]);
        char size[16];
        snprintf(size, sizeof size, "%zu", strlen(b->inputs[i]));
        cr_expect_str_eq(nr_proto_kv_get(&b->replies[i], "input_size"), size);
    }
    cr_expect_str_eq(nr_proto_kv_get(&b->replies[7], "opt.voice"), "kal");
    cr_expect_null(nr_proto_kv_get(&b->replies[8], "opt.voice"));
    cr_expect_eq(nr_client_submit_batch(c, b->jobs, 0, b->replies, b->codes), 0, "n = 0 does nothing");
    cr_expect_eq(nr_client_submit_batch(c, NULL, 1, b->replies, b->codes), NR_EINVAL);
    s_batch_free(b);
    nr_client_destroy(&c);
    s_fake_stop(&f);
    cr_expect_eq(f.seen, 100);
}

Test(transport, batch_codes_per_job) {
    s_fake_t f = {.count = 3, .hold = 3};
    s_fake_start(&f);
    nr_client_t *c = nr_client_new(f.endpoint, 5000);
    s_batch_t *b = s_batch_new(5);
    b->jobs[0].id = "../x";           /* never sent */
    b->jobs[2].id = "missing";        /* the broker says NR_ENOTFOUND */
    b->jobs[3].route = "speech,,text"; /* never sent */
    cr_expect_eq(nr_client_submit_batch(c, b->jobs, 5, b->replies, b->codes), NR_EINVAL,
                 "the first job's error");
    cr_expect(strstr(nr_client_error(c), "bad job id"), "%s", nr_client_error(c));
    const int want[5] = {NR_EINVAL, 0, NR_ENOTFOUND, NR_EINVAL, 0};
    for (int i = 0; i < 5; i++)
        cr_expect_eq(b->codes[i], want[i], "job %d: %d (%s)", i, b->codes[i], b->replies[i].message);
    cr_expect_eq(b->replies[0].cmd, NR_CMD_NONE);
    cr_expect_eq(b->replies[0].code, NR_EINVAL);
    cr_expect(strstr(b->replies[0].message, "bad job id"), "%s", b->replies[0].message);
    cr_expect(strstr(b->replies[3].message, "bad route"), "%s", b->replies[3].message);
    cr_expect_eq(b->replies[2].cmd, NR_CMD_REPLY);
    cr_expect_str_eq(b->replies[2].message, "no job missing");
    cr_expect_str_eq(nr_proto_kv_get(&b->replies[1], "id"), "job-1");
    cr_expect_str_eq(nr_proto_kv_get(&b->replies[4], "id"), "job-4");
    s_batch_free(b);
    nr_client_destroy(&c);
    s_fake_stop(&f);
    cr_expect_eq(f.seen, 3);
}

Test(transport, batch_busy_jobs_are_retried_when_asked) {
    /* No busy wait: the busy answers (to the first two sent) stand. */
    s_fake_t f = {.count = 6, .busy = 2};
    s_fake_start(&f);
    nr_client_t *c = nr_client_new(f.endpoint, 5000);
    s_batch_t *b = s_batch_new(6);
    cr_expect_eq(nr_client_submit_batch(c, b->jobs, 6, b->replies, b->codes), NR_EBUSY);
    cr_expect_str_eq(nr_client_error(c), "queue full");
    for (int i = 0; i < 6; i++)
        cr_expect_eq(b->codes[i], i < 2 ? NR_EBUSY : 0, "job %d: %d", i, b->codes[i]);
    cr_expect_str_eq(b->replies[0].message, "queue full");
    nr_client_destroy(&c);
    s_fake_stop(&f);
    cr_expect_eq(f.seen, 6);
    /* With a busy wait: those two are sent again and all six get in. */
    s_fake_t g = {.count = 6 + 2, .busy = 2};
    s_fake_start(&g);
    c = nr_client_new(g.endpoint, 5000);
    nr_client_set_busy_wait(c, 20000);
    cr_expect_eq(nr_client_submit_batch(c, b->jobs, 6, b->replies, b->codes), 0, "%s",
                 nr_client_error(c));
    for (int i = 0; i < 6; i++) {
        cr_expect_eq(b->codes[i], 0, "job %d: %d", i, b->codes[i]);
        cr_expect_str_eq(nr_proto_kv_get(&b->replies[i], "id"), b->ids[i]);
    }
    s_batch_free(b);
    nr_client_destroy(&c);
    s_fake_stop(&g);
    cr_expect_eq(g.seen, 6 + 2);
}

Test(transport, batch_with_an_undecodable_answer_fails_whole) {
    s_fake_t f = {.count = 3, .hold = 3, .seq0 = 1};
    s_fake_start(&f);
    nr_client_t *c = nr_client_new(f.endpoint, 5000);
    s_batch_t *b = s_batch_new(3);
    cr_expect_eq(nr_client_submit_batch(c, b->jobs, 3, b->replies, b->codes), NR_EPROTO);
    cr_expect(strstr(nr_client_error(c), "could not decode one of 3"), "%s", nr_client_error(c));
    cr_expect(strstr(nr_client_error(c), "cannot decode"), "%s", nr_client_error(c));
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(b->codes[i], NR_EPROTO, "job %d: %d", i, b->codes[i]);
        cr_expect_eq(b->replies[i].cmd, NR_CMD_NONE);
    }
    s_batch_free(b);
    nr_client_destroy(&c);
    s_fake_stop(&f);
}

Test(transport, batch_times_out_as_a_whole) {
    s_fake_t f = {.count = 3, .drop = 3};
    s_fake_start(&f);
    nr_client_t *c = nr_client_new(f.endpoint, 300);
    s_batch_t *b = s_batch_new(3);
    cr_expect_eq(nr_client_submit_batch(c, b->jobs, 3, b->replies, b->codes), NR_ETIMEDOUT);
    for (int i = 0; i < 3; i++) cr_expect_eq(b->codes[i], NR_ETIMEDOUT, "job %d", i);
    cr_expect(strstr(nr_client_error(c), "no answer from the broker"), "%s", nr_client_error(c));
    s_batch_free(b);
    nr_client_destroy(&c);
    s_fake_stop(&f);
    cr_expect_eq(f.seen, 3);
}

Test(transport, nobody_listening_is_unreachable) {
    /* Take a free port, then free it again: nothing listens there. */
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_ROUTER);
    char ep[64];
    size_t n = sizeof ep;
    cr_assert_eq(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &n);
    zmq_close(s);
    zmq_ctx_term(ctx);
    nr_client_t *c = nr_client_new(ep, 300);
    cr_assert_not_null(c);
    nr_msg_t r;
    nr_proto_msg_init(&r);
    cr_expect_eq(nr_client_stats(c, &r), NR_ECONNECT);
    char want[200];
    snprintf(want, sizeof want, "cannot reach the broker at %s: is narrator-broker running?", ep);
    cr_expect_str_eq(nr_client_error(c), want);
    cr_expect_eq(nr_client_status(c, "x", &r), NR_ECONNECT, "a second try fails the same way");
    nr_proto_msg_clear(&r);
    nr_client_destroy(&c);
}

/* ---- the narrate program's exit codes ------------------------------------ */

/* Runs narrate with `args` (a shell-quoted string), stdout+stderr into a
 * buffer, then the shell redirections `redir` ("" for none: ">/dev/full"
 * sends stdout there, stderr still to the buffer); returns the exit status. */
static int s_narrate_redir(const char *args, const char *redir, char *out, size_t outlen) {
    const char *build = getenv("NR_BUILD_DIR");
    if (!build) cr_skip_test("NR_BUILD_DIR is not set (run through ctest)");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "env -u NARRATOR_BROKER -u NARRATOR_CONFIG %s/bin/narrate %s 2>&1 %s",
             build, args, redir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int s_narrate(const char *args, char *out, size_t outlen) {
    return s_narrate_redir(args, "", out, outlen);
}

Test(program, help_and_usage_errors) {
    char out[16384];
    cr_expect_eq(s_narrate("--help", out, sizeof out), 0);
    cr_expect(strstr(out, "Exit codes"), "%s", out);
    cr_expect_eq(s_narrate("", out, sizeof out), 2);
    cr_expect(strstr(out, "narrate: no command given"), "%s", out);
    cr_expect_eq(s_narrate("submit", out, sizeof out), 2);
    cr_expect_eq(s_narrate("submit x --window 0", out, sizeof out), 2);
    cr_expect(strstr(out, "--window must be in 1..1024"), "%s", out);
    cr_expect_eq(s_narrate("--broker not-an-endpoint stats", out, sizeof out), 2);
    cr_expect_eq(s_narrate("--timeout 1 submit /nonexistent/dir", out, sizeof out), 2);
    cr_expect(strstr(out, "cannot read /nonexistent/dir"), "%s", out);
}

/* The CURVE flags after the command reach the client: a key file that
 * cannot be read is a usage error naming it (not "unknown option"). */
Test(program, curve_flags_after_the_command) {
    char out[4096];
    cr_expect_eq(s_narrate("stats --curve-server-key /nonexistent/broker.pub "
                           "--curve-secret-key-file /nonexistent/client.key",
                           out, sizeof out),
                 2);
    cr_expect(strstr(out, "/nonexistent/client.key"), "%s", out);
    cr_expect(!strstr(out, "unknown option"), "%s", out);
    cr_expect_eq(s_narrate("status j1 --curve-server-key /nonexistent/broker.pub", out, sizeof out), 2);
    cr_expect(strstr(out, "curve-secret-key-file"), "%s", out);
}

/* With CURVE keys given after the command and no broker, exit 3 says
 * that a refused key looks the same as an absent broker. */
Test(program, curve_unreachable_exit_3_has_the_hint) {
    if (!nr_secure_available()) cr_skip_test("this libzmq has no CURVE");
    char dir[] = "/tmp/nr-test-cli-curve-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char pub[NR_SECURE_KEY_Z85 + 1], sec[NR_SECURE_KEY_Z85 + 1], base[128], err[256];
    const char *names[] = {"broker", "client"};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(nr_secure_keypair(pub, sec), 0);
        snprintf(base, sizeof base, "%s/%s", dir, names[i]);
        cr_assert_eq(nr_secure_write_keypair(base, pub, sec, err, sizeof err), 0, "%s", err);
    }
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_ROUTER);
    char ep[64], args[512], out[4096];
    size_t n = sizeof ep;
    cr_assert_eq(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &n);
    zmq_close(s);
    zmq_ctx_term(ctx);
    snprintf(args, sizeof args,
             "--broker %s --timeout 1 stats --curve-server-key %s/broker.pub --curve-secret-key-file "
             "%s/client.key",
             ep, dir, dir);
    cr_expect_eq(s_narrate(args, out, sizeof out), 3);
    cr_expect(strstr(out, "cannot reach the broker"), "%s", out);
    cr_expect(strstr(out, "refuses this client's key looks unreachable"), "%s", out);
    for (int i = 0; i < 2; i++) {
        snprintf(base, sizeof base, "%s/%s.key", dir, names[i]);
        unlink(base);
        snprintf(base, sizeof base, "%s/%s.pub", dir, names[i]);
        unlink(base);
    }
    rmdir(dir);
}

Test(program, unreachable_broker_exits_3) {
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_ROUTER);
    char ep[64], args[256], out[4096];
    size_t n = sizeof ep;
    cr_assert_eq(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &n);
    zmq_close(s);
    zmq_ctx_term(ctx);
    snprintf(args, sizeof args, "--broker %s --timeout 1 stats", ep);
    cr_expect_eq(s_narrate(args, out, sizeof out), 3);
    cr_expect(strstr(out, "cannot reach the broker at tcp://127.0.0.1:"), "%s", out);
    cr_expect(strstr(out, "is narrator-broker running?"), "%s", out);
}

Test(program, unknown_job_exits_5) {
    s_fake_t f = {.count = 3};
    s_fake_start(&f);
    char args[256], out[4096];
    snprintf(args, sizeof args, "--broker %s status missing", f.endpoint);
    cr_expect_eq(s_narrate(args, out, sizeof out), 5);
    cr_expect(strstr(out, "job missing: no job missing"), "%s", out);
    snprintf(args, sizeof args, "--broker %s cancel missing", f.endpoint);
    cr_expect_eq(s_narrate(args, out, sizeof out), 5);
    snprintf(args, sizeof args, "--broker %s --json stats", f.endpoint);
    cr_expect_eq(s_narrate(args, out, sizeof out), 0);
    cr_expect(strstr(out, "\"cmd\":\"STATS\""), "%s", out);
    s_fake_stop(&f);
}

/* Output that could not be written is a failure: `narrate stats >
 * /dev/full` once exited 0. */
Test(program, stdout_write_error_exits_1) {
    s_fake_t f = {.count = 2};
    s_fake_start(&f);
    char args[256], out[4096];
    snprintf(args, sizeof args, "--broker %s stats", f.endpoint);
    cr_expect_eq(s_narrate_redir(args, ">/dev/full", out, sizeof out), 1, "%s", out);
    cr_expect(strstr(out, "narrate: cannot write to standard output: No space left on device"), "%s",
              out);
    snprintf(args, sizeof args, "--broker %s --json stats", f.endpoint);
    cr_expect_eq(s_narrate_redir(args, ">/dev/full", out, sizeof out), 1, "%s", out);
    s_fake_stop(&f);
}

/* `speak -o`: "-" streams the WAV to stdout (the summary goes to stderr);
 * a FIFO is written into and stays a FIFO; a link is refused, exit 1, and
 * left alone. The FIFO and the link were once replaced by regular files. */
Test(program, speak_output_streams_or_refuses) {
    char dir[] = "/tmp/nr-test-cli-speak-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    s_fake_t f = {.count = 9, .done = 1};
    s_fake_start(&f);
    char args[512], out[4096], fifo[128], link[128], target[128];
    snprintf(args, sizeof args, "--broker %s speak hello -o -", f.endpoint);
    cr_expect_eq(s_narrate(args, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "RIFF"), "%s", out);

    snprintf(fifo, sizeof fifo, "%s/out.wav", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    int rd = open(fifo, O_RDWR | O_NONBLOCK);
    cr_assert_geq(rd, 0);
    snprintf(args, sizeof args, "--broker %s speak hello -o %s", f.endpoint, fifo);
    cr_expect_eq(s_narrate(args, out, sizeof out), 0, "%s", out);
    char got[8] = "";
    cr_expect_eq(read(rd, got, sizeof got), 4, "nothing came through the FIFO: %s", out);
    close(rd);
    struct stat st;
    cr_assert_eq(lstat(fifo, &st), 0);
    cr_expect(S_ISFIFO(st.st_mode), "the FIFO was replaced");
    unlink(fifo);

    snprintf(target, sizeof target, "%s/target", dir);
    snprintf(link, sizeof link, "%s/link.wav", dir);
    FILE *t = fopen(target, "w");
    cr_assert_not_null(t);
    fputs("precious", t);
    fclose(t);
    cr_assert_eq(symlink(target, link), 0);
    snprintf(args, sizeof args, "--broker %s speak hello -o %s", f.endpoint, link);
    cr_expect_eq(s_narrate(args, out, sizeof out), 1, "%s", out);
    cr_expect(strstr(out, "refusing to replace") && strstr(out, "symbolic link"), "%s", out);
    cr_assert_eq(lstat(link, &st), 0);
    cr_expect(S_ISLNK(st.st_mode), "the link was replaced");
    unlink(link);
    unlink(target);
    s_fake_stop(&f);
    rmdir(dir);
}

/* Plain output escapes control characters of file names and captions
 * (an ESC in a name or caption once reached the terminal raw). */
Test(program, plain_output_escapes_control_characters) {
    char dir[] = "/tmp/nr-test-cli-escape-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char in[128], name[160], outdir[128];
    snprintf(in, sizeof in, "%s/in", dir);
    snprintf(outdir, sizeof outdir, "%s/out", dir);
    cr_assert_eq(mkdir(in, 0700), 0);
    snprintf(name, sizeof name, "%s/evil\x1b[2J.png", in);
    FILE *img = fopen(name, "w");
    cr_assert_not_null(img);
    fputs("png", img);
    fclose(img);
    s_fake_t f = {.count = 1, .done = 1, .caption = "a \x1b]0;owned\x07 cat"};
    s_fake_start(&f);
    char args[512], out[8192];
    snprintf(args, sizeof args, "--broker %s submit %s --route test -o %s", f.endpoint, in, outdir);
    cr_expect_eq(s_narrate(args, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "evil\\x1b[2J.png"), "%s", out);
    cr_expect(strstr(out, "a \\x1b]0;owned\\x07 cat"), "%s", out);
    cr_expect(!strchr(out, '\x1b'), "a raw ESC reached the output: %s", out);
    s_fake_stop(&f);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

/* The speech option speed: checked by proto's one rule (0.5..2.0),
 * written in one form ("1.50" -> "1.5") after the other options, and part
 * of the content-hash id; narrate refuses a bad --speed before sending. */
Test(jobid, speed_option) {
    nr_client_options_t o;
    char e[256] = "";
    char id_a[NR_CLIENT_ID_HEX + 1], id_b[NR_CLIENT_ID_HEX + 1], id_none[NR_CLIENT_ID_HEX + 1];
    cr_assert_eq(nr_client_options(&o, 0, 0, "af_heart", NULL, e, sizeof e), 0, "%s", e);
    cr_assert_eq(nr_client_content_id("hi", 2, "speech", o.kv, o.n, id_none), 0);
    cr_assert_eq(nr_client_options_speed(&o, "1.50", e, sizeof e), 0, "%s", e);
    cr_assert_eq(o.n, 2);
    cr_assert_str_eq(o.kv[1].key, "speed");
    cr_assert_str_eq(o.kv[1].value, "1.5");
    cr_assert_eq(nr_client_content_id("hi", 2, "speech", o.kv, o.n, id_a), 0);
    cr_assert_eq(nr_client_options(&o, 0, 0, "af_heart", NULL, e, sizeof e), 0, "%s", e);
    cr_assert_eq(nr_client_options_speed(&o, "1.5", e, sizeof e), 0, "%s", e);
    cr_assert_eq(nr_client_content_id("hi", 2, "speech", o.kv, o.n, id_b), 0);
    cr_expect_str_eq(id_a, id_b, "the same speed written two ways is one job");
    cr_expect_str_neq(id_a, id_none, "a speed or none, another job");
    cr_assert_eq(nr_client_options_speed(&o, "", e, sizeof e), 0);
    cr_assert_eq(nr_client_options_speed(&o, NULL, e, sizeof e), 0);
    const char *bad[] = {"0.49", "2.001", "-1", "+1", ".5", "1e1", "nan", "inf", "1.0x", " 1", "00000000000000001", NULL};
    for (int i = 0; bad[i]; i++) {
        cr_assert_eq(nr_client_options(&o, 0, 0, NULL, NULL, e, sizeof e), 0);
        cr_expect_eq(nr_client_options_speed(&o, bad[i], e, sizeof e), NR_EOPTION, "speed '%s' accepted", bad[i]);
        cr_expect_eq(o.n, 0, "speed '%s' encoded", bad[i]);
    }
    EXPECT_USAGE("2.0", "speak", "hello", "-o", "x.wav", "--speed", "3");
    EXPECT_USAGE("0.5", "submit", "a.jpg", "--speed", "fast");
    nr_cli_t c;
    char pe[512];
    cr_assert_eq(PARSE(&c, pe, "submit", "a.jpg", "--speed", "0.75"), 0, "%s", pe);
    cr_expect_str_eq(c.speed, "0.75");
    nr_cli_clear(&c);
}
