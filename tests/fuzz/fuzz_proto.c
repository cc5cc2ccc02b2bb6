/* libFuzzer target for the body decoder. Whatever the input, decoding must
 * either fail cleanly or give a message that encodes without error and
 * decodes back to the same bytes (encode and decode share one validator).
 * Build: CC=clang cmake -S . -B build-fuzz -DNR_FUZZ=ON &&
 *        cmake --build build-fuzz --target fuzz_proto
 * Run:   mkdir -p /tmp/corpus && build-fuzz/fuzz/fuzz_proto -max_total_time=60 \
 *        /tmp/corpus tests/fuzz/corpus
 * (tests/fuzz/corpus holds one valid body per command as seeds; new inputs
 * go to the first folder.) */
#include "proto/proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nr_msg_t msg, again;
    char err[256];
    nr_proto_msg_init(&msg);
    nr_proto_msg_init(&again);
    if (nr_proto_decode(data, size, &msg, err, sizeof err) != 0) return 0;

    uint8_t *body = NULL, *body2 = NULL;
    size_t n = 0, n2 = 0;
    if (nr_proto_encode(&msg, &body, &n, err, sizeof err) != 0) abort(); /* decoded but not encodable */
    if (nr_proto_decode(body, n, &again, err, sizeof err) != 0) abort();
    if (nr_proto_encode(&again, &body2, &n2, err, sizeof err) != 0) abort();
    if (n != n2 || memcmp(body, body2, n) != 0) abort(); /* not a fixed point */
    free(body);
    free(body2);
    nr_proto_msg_clear(&msg);
    nr_proto_msg_clear(&again);
    return 0;
}
