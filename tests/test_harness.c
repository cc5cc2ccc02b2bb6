/* Tests of the test harness itself: ports, processes, logs, redis-server. */
#include "tests/harness.h"

#include "common/error.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

Test(harness, free_ports_differ_and_bind) {
    int a = nr_harness_free_port();
    int b = nr_harness_free_port();
    cr_assert_gt(a, 0, "%s", nr_harness_error());
    cr_assert_gt(b, 0);
    cr_assert_neq(a, b);
    cr_assert_eq(nr_harness_wait_port(a, 100), NR_ETIMEDOUT);
}

Test(harness, spawn_captures_output_env_and_exit_code) {
    char *dir = nr_harness_tempdir("harness");
    cr_assert_not_null(dir, "%s", nr_harness_error());
    char *log = nr_harness_path(dir, "sh.log");
    const char *argv[] = {"sh", "-c", "echo out-$NR_HARNESS_X; echo err >&2; exit 7", NULL};
    const char *env[] = {"NR_HARNESS_X=42", NULL};
    int status = 0;
    cr_assert_eq(nr_harness_run(argv, env, log, 10000, &status), 0, "%s", nr_harness_error());
    cr_assert_eq(nr_harness_exit_code(status), 7);
    size_t size = 0;
    char *text = nr_harness_read_file(log, &size);
    cr_assert_not_null(text);
    cr_assert_not_null(strstr(text, "out-42"), "log: %s", text);
    cr_assert_not_null(strstr(text, "err"), "log: %s", text);
    free(text);
    free(log);
    cr_assert_eq(nr_harness_rmtree(dir), 0);
    cr_assert_neq(access(dir, F_OK), 0);
    free(dir);
}

Test(harness, spawn_of_missing_program_fails) {
    const char *argv[] = {"/nonexistent/nr-no-such-program", NULL};
    cr_assert_null(nr_harness_spawn(argv, NULL, NULL));
    const char *argv2[] = {"nr-no-such-program-in-path", NULL};
    cr_assert_null(nr_harness_spawn(argv2, NULL, NULL));
}

Test(harness, kill_and_stop) {
    const char *argv[] = {"sleep", "30", NULL};
    nr_harness_proc_t *p = nr_harness_spawn(argv, NULL, NULL);
    cr_assert_not_null(p, "%s", nr_harness_error());
    cr_assert(nr_harness_proc_running(p));
    cr_assert_eq(nr_harness_proc_wait(p, 50, NULL), NR_ETIMEDOUT);
    cr_assert_eq(nr_harness_proc_kill(p, SIGKILL), 0);
    int status = 0;
    cr_assert_eq(nr_harness_proc_wait(p, 10000, &status), 0);
    cr_assert_eq(nr_harness_exit_signal(status), SIGKILL);
    cr_assert_eq(nr_harness_proc_kill(p, SIGTERM), NR_ESTATE);
    nr_harness_proc_destroy(&p);
    nr_harness_proc_destroy(&p);

    /* A child that ignores SIGTERM is SIGKILLed after the grace time. */
    const char *stubborn[] = {"sh", "-c", "trap '' TERM; sleep 30", NULL};
    p = nr_harness_spawn(stubborn, NULL, NULL);
    cr_assert_not_null(p);
    nr_harness_sleep_ms(100);
    cr_assert_eq(nr_harness_proc_stop(p, SIGTERM, 200, &status), 0);
    cr_assert_eq(nr_harness_exit_signal(status), SIGKILL);
    nr_harness_proc_destroy(&p);
}

Test(harness, env_removal) {
    setenv("NR_HARNESS_GONE", "1", 1);
    const char *argv[] = {"sh", "-c", "test -z \"$NR_HARNESS_GONE\"", NULL};
    const char *env[] = {"NR_HARNESS_GONE", NULL};
    int status = -1;
    cr_assert_eq(nr_harness_run(argv, env, NULL, 10000, &status), 0);
    cr_assert_eq(nr_harness_exit_code(status), 0);
}

Test(harness, redis_start_command_restart_keeps_aof) {
    nr_harness_redis_params_t params;
    nr_harness_redis_default_params(&params);
    nr_harness_redis_t *r = nr_harness_redis_new(&params);
    cr_assert_not_null(r, "%s", nr_harness_error());
    int port = nr_harness_redis_port(r);
    cr_assert(nr_harness_redis_alive(r));
    cr_assert(strstr(nr_harness_redis_url(r), "redis://127.0.0.1:") != NULL);

    char out[256];
    const char *set[] = {"SET", "nr:harness", "value with spaces"};
    cr_assert_eq(nr_harness_redis_command(port, 3, set, out, sizeof out), 0, "%s", nr_harness_error());
    cr_assert_str_eq(out, "OK");
    const char *rpush[] = {"RPUSH", "nr:list", "a", "b"};
    cr_assert_eq(nr_harness_redis_command(port, 4, rpush, out, sizeof out), 0);
    cr_assert_str_eq(out, "2");
    const char *bad[] = {"NO-SUCH-COMMAND"};
    cr_assert_eq(nr_harness_redis_command(port, 1, bad, out, sizeof out), NR_EREDIS);

    /* A crash (SIGKILL) with appendfsync always loses nothing. */
    cr_assert_eq(nr_harness_redis_stop(r, 1), 0);
    cr_assert(!nr_harness_redis_alive(r));
    cr_assert_eq(nr_harness_redis_start(r), 0, "%s", nr_harness_error());
    cr_assert_eq(nr_harness_redis_port(r), port);
    const char *get[] = {"GET", "nr:harness"};
    cr_assert_eq(nr_harness_redis_command(port, 2, get, out, sizeof out), 0);
    cr_assert_str_eq(out, "value with spaces");
    const char *lrange[] = {"LRANGE", "nr:list", "0", "-1"};
    cr_assert_eq(nr_harness_redis_command(port, 4, lrange, out, sizeof out), 0);
    cr_assert_str_eq(out, "a\nb");
    const char *cfg[] = {"CONFIG", "GET", "maxmemory-policy"};
    cr_assert_eq(nr_harness_redis_command(port, 3, cfg, out, sizeof out), 0);
    cr_assert_str_eq(out, "maxmemory-policy\nnoeviction");

    char *dir = strdup(nr_harness_redis_dir(r));
    nr_harness_redis_destroy(&r);
    nr_harness_redis_destroy(&r);
    cr_assert_neq(access(dir, F_OK), 0, "the harness's own data folder is removed");
    free(dir);
    cr_assert_neq(nr_harness_redis_ping(port), 0);
}

Test(harness, redis_extra_args_and_no_aof) {
    const char *args[] = {"--databases", "4", NULL};
    nr_harness_redis_params_t params;
    nr_harness_redis_default_params(&params);
    params.appendonly = 0;
    params.args = args;
    nr_harness_redis_t *r = nr_harness_redis_new(&params);
    cr_assert_not_null(r, "%s", nr_harness_error());
    char out[128];
    const char *cfg[] = {"CONFIG", "GET", "databases"};
    cr_assert_eq(nr_harness_redis_command(nr_harness_redis_port(r), 3, cfg, out, sizeof out), 0);
    cr_assert_str_eq(out, "databases\n4");
    const char *aof[] = {"CONFIG", "GET", "appendonly"};
    cr_assert_eq(nr_harness_redis_command(nr_harness_redis_port(r), 3, aof, out, sizeof out), 0);
    cr_assert_str_eq(out, "appendonly\nno");
    nr_harness_redis_destroy(&r);
}

Test(harness, program_lookup_uses_build_dir) {
    char *dir = nr_harness_tempdir("bin");
    char *bin = nr_harness_path(dir, "bin");
    cr_assert_eq(mkdir(bin, 0755), 0);
    char *prog = nr_harness_path(bin, "nr-fake");
    cr_assert_eq(nr_harness_write_file(prog, "#!/bin/sh\nexit 3\n", 17), 0);
    chmod(prog, 0755);
    char *old = getenv("NR_BUILD_DIR") ? strdup(getenv("NR_BUILD_DIR")) : NULL;
    setenv("NR_BUILD_DIR", dir, 1);
    char *found = nr_harness_program("nr-fake");
    cr_assert_not_null(found, "%s", nr_harness_error());
    cr_assert_str_eq(found, prog);
    cr_assert_null(nr_harness_program("nr-missing"));
    int status = 0;
    const char *argv[] = {found, NULL};
    cr_assert_eq(nr_harness_run(argv, NULL, NULL, 10000, &status), 0);
    cr_assert_eq(nr_harness_exit_code(status), 3);
    if (old) setenv("NR_BUILD_DIR", old, 1);
    free(old);
    free(found);
    nr_harness_rmtree(dir);
    free(prog);
    free(bin);
    free(dir);
}
