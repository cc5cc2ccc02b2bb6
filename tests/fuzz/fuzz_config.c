/* libFuzzer target for the config.json reader (models/config.c): the input
 * is config.json, optionally followed by a NUL byte and generation_config.json.
 * Parsing must fail cleanly or give a config whose sizes are validated. */
#include "common/error.h"
#include "models/config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    size_t first = strlen(text);
    const char *gen = first < size ? text + first + 1 : NULL;
    nr_model_config_t cfg;
    char err[512];
    (void)nr_model_config_parse(text, gen, "fuzz", &cfg, err, sizeof err);
    free(text);
    return 0;
}
