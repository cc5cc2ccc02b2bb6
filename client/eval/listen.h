/* The listener: offline speech recognition of a spoken caption with
 * CMU pocketsphinx (Debian libpocketsphinx-dev 0.8+5prealpha and its US
 * English model, pocketsphinx-en-us), after resampling to 16 kHz mono. */
#ifndef NR_CLIENT_EVAL_LISTEN_H
#define NR_CLIENT_EVAL_LISTEN_H

#include "client/eval/audio.h"

#include <stddef.h>

#define NR_LISTEN_RATE 16000

typedef struct nr_listen nr_listen_t;

/* 1 when this build has pocketsphinx. */
int nr_listen_available(void);
/* The model folder used when none is given (holds en-us/,
 * en-us.lm.bin, cmudict-en-us.dict). */
const char *nr_listen_default_model(void);

/* Loads the recogniser from model_dir (NULL: the default). NULL on failure
 * with a message in err. */
nr_listen_t *nr_listen_new(const char *model_dir, char *err, size_t errlen);
void nr_listen_destroy(nr_listen_t **self);

/* Transcribes audio (any rate; resampled to 16 kHz) into *text (malloc'd,
 * lower-case words; "" when nothing was recognised). 0, NR_EINVAL,
 * NR_ENOMEM or NR_EINTERNAL (decoder failure) with a message in err. */
int nr_listen_audio(nr_listen_t *self, const nr_audio_t *audio, char **text, char *err, size_t errlen);

#endif
