/* Speech synthesis with Flite: UTF-8 text in, 16-bit PCM mono WAV out.
 *
 * Voices are the ones Debian 12 ships in flite1-dev: slt (female, US,
 * 16 kHz, the default), kal (male, US, 8 kHz diphone), kal16 (male, US,
 * 16 kHz diphone), awb (male, Scottish English, 16 kHz), rms (male, US,
 * 16 kHz). cmu_time_awb is left out: it is a limited-domain voice that can
 * only say clock times. A voice is named "slt" or "cmu_us_slt".
 *
 * Flite keeps global state and is not thread-safe: every synthesis in the
 * process runs under one lock, so a speech worker gains nothing from
 * capacity > 1; run more processes instead (default capacity 1).
 *
 * Flite speaks English. Text is validated as strict UTF-8, then folded to
 * ASCII before synthesis: typographic quotes, dashes, ellipsis and
 * non-breaking spaces become their ASCII forms, Latin-1 letters lose their
 * accents (e -> e, ss for sharp s), and every other non-ASCII character
 * becomes a space (Flite would skip it or spell its bytes). Text with
 * nothing speakable left (no ASCII letter or digit) is rejected. */
#ifndef NR_SPEECH_SPEECH_H
#define NR_SPEECH_SPEECH_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"


typedef struct {
    size_t max_text_bytes;     /* longest accepted input, in bytes (default 4000) */
    char default_voice[32];    /* voice when a job names none (default "slt") */
} nr_speech_params_t;

typedef struct {
    char voice[64];            /* short name of the voice used */
    uint32_t sample_rate;
    size_t num_samples;
    uint64_t duration_ms;
} nr_speech_info_t;

typedef struct nr_speech_t nr_speech_t;

nr_speech_params_t nr_speech_default_params(void);

/* "slt, kal, kal16, awb, rms": the valid voice names. */
const char *nr_speech_voice_list(void);
/* The same voices one by one (short names); NULL past the end. */
size_t nr_speech_voice_count(void);
const char *nr_speech_voice_name(size_t i);

/* Initialises Flite (once per process) and checks the params (default
 * voice must exist). Returns NULL with a message in err on failure. */
nr_speech_t *nr_speech_new(const nr_speech_params_t *params, char *err, size_t errlen);
void nr_speech_destroy(nr_speech_t **self_p);

/* Folds validated UTF-8 to the ASCII Flite is given (see above) into a
 * malloc'd NUL-terminated string. Returns NULL when out of memory. */
char *nr_speech_fold_ascii(const uint8_t *text, size_t len);

/* The job option "speed" (both engines): 0.5 (slower) .. 2.0 (faster). */
#define NR_SPEECH_SPEED_MIN ((float)NR_PROTO_SPEED_MIN)
#define NR_SPEECH_SPEED_MAX ((float)NR_PROTO_SPEED_MAX)

/* The checks every engine makes on its text: not empty, at most max_bytes,
 * no NUL, valid UTF-8. Returns 0 or NR_ETEXT with a message. */
int nr_speech_check_text(const uint8_t *text, size_t len, size_t max_bytes, char *err, size_t errlen);

/* Synthesizes text (len bytes, not NUL-terminated) with voice (NULL or ""
 * = default) at speed (0 = 1.0; Flite's duration_stretch divided by it) into a malloc'd WAV (*wav, caller frees). Returns 0, NR_ETEXT
 * (empty, too long, not UTF-8, NUL byte, nothing speakable), NR_EVOICE
 * (message lists the valid voices), NR_EOPTION (speed), NR_EINTERNAL (Flite failed) or
 * NR_ENOMEM, with a message in err. Thread-safe (serialized). */
int nr_speech_synthesize(nr_speech_t *self, const uint8_t *text, size_t len, const char *voice,
                         float speed, uint8_t **wav, size_t *wav_size, nr_speech_info_t *info, char *err,
                         size_t errlen);

#endif
