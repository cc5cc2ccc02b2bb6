/* Bad input that tests/BAD_INPUT.md lists and no other test covered:
 *   - a progressive JPEG with more scans than the decoder allows (a CPU
 *     bomb: each scan re-walks the whole coefficient buffer) is NR_EIMAGE;
 *   - narrator-broker refuses a Redis password given as a flag (other users
 *     can read command lines) and exits 2 with the reason. */
#include "common/error.h"
#include "models/image.h"
#include "tests/harness.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Offset just past the entropy-coded data that starts at `pos`: the next
 * marker that is neither a stuffed 0xFF00 nor a restart marker. */
static size_t s_scan_end(const uint8_t *d, size_t n, size_t pos) {
    for (size_t i = pos; i + 1 < n; i++) {
        if (d[i] != 0xFF) continue;
        uint8_t m = d[i + 1];
        if (m == 0x00 || (m >= 0xD0 && m <= 0xD7) || m == 0xFF) continue;
        return i;
    }
    return n;
}

Test(bad_input, progressive_jpeg_scan_bomb_is_bad_image) {
    char *path = nr_harness_source_path("tests/fixtures/images/rocket_progressive.jpg");
    if (!path) cr_skip_test("rocket_progressive.jpg fixture missing: %s", nr_harness_error());
    size_t n = 0;
    uint8_t *jpg = (uint8_t *)nr_harness_read_file(path, &n);
    free(path);
    cr_assert_not_null(jpg);
    /* Headers up to the first SOS, then that first (DC) scan 1500 times. */
    size_t sos = 0;
    for (size_t i = 2; i + 3 < n; ) {
        cr_assert_eq(jpg[i], 0xFF, "marker expected at %zu", i);
        uint8_t m = jpg[i + 1];
        size_t len = (size_t)jpg[i + 2] << 8 | jpg[i + 3];
        if (m == 0xDA) {
            sos = i;
            break;
        }
        i += 2 + len;
    }
    cr_assert_gt(sos, 0);
    size_t head_len = (size_t)jpg[sos + 2] << 8 | jpg[sos + 3];
    size_t end = s_scan_end(jpg, n, sos + 2 + head_len);
    size_t scan = end - sos, copies = 1500;
    size_t size = sos + scan * copies + 2;
    uint8_t *bomb = malloc(size);
    cr_assert_not_null(bomb);
    memcpy(bomb, jpg, sos);
    for (size_t k = 0; k < copies; k++) memcpy(bomb + sos + k * scan, jpg + sos, scan);
    bomb[size - 2] = 0xFF;
    bomb[size - 1] = 0xD9;
    nr_image_t *img = NULL;
    char err[512] = "";
    int rc = nr_image_decode(bomb, size, NULL, &img, err, sizeof err);
    cr_assert_eq(rc, NR_EIMAGE, "a %zu-scan JPEG gave %d (%s)", copies, rc, err);
    cr_assert_null(img);
    cr_log_info("scan bomb (%zu bytes): %s", size, err);
    free(bomb);
    free(jpg);
}

Test(bad_input, broker_refuses_redis_password_flag) {
    char *broker = nr_harness_program("narrator-broker");
    if (!broker) cr_skip_test("narrator-broker is not built: %s", nr_harness_error());
    char *dir = nr_harness_tempdir("badinput");
    cr_assert_not_null(dir);
    char *log = nr_harness_path(dir, "broker.log");
    const char *argv[] = {broker, "--redis-password", "hunter2", "--redis-port", "1", NULL};
    int status = 0;
    cr_assert_eq(nr_harness_run(argv, NULL, log, 20000, &status), 0, "%s", nr_harness_error());
    char *text = nr_harness_read_file(log, NULL);
    cr_assert_not_null(text);
    cr_assert_eq(nr_harness_exit_code(status), 2, "exit %d: %s", nr_harness_exit_code(status), text);
    cr_assert(strstr(text, "redis-password") != NULL, "no reason given: %s", text);
    cr_assert(strstr(text, "hunter2") == NULL, "the password is echoed: %s", text);
    free(text);
    free(log);
    nr_harness_rmtree(dir);
    free(dir);
    free(broker);
}
