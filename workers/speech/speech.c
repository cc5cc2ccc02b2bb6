/* Flite synthesis behind one process-wide lock (Flite is not thread-safe),
 * with strict input checks and the WAV encoding from wav.c. */
#include "workers/speech/speech.h"

#include "common/error.h"
#include "common/log.h"
#include "common/utf8.h"
#include "workers/speech/wav.h"

#include <ctype.h>
#include <flite/flite.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Voice registration functions of the voice libraries (no public header). */
cst_voice *register_cmu_us_slt(const char *voxdir);
cst_voice *register_cmu_us_kal(const char *voxdir);
cst_voice *register_cmu_us_kal16(const char *voxdir);
cst_voice *register_cmu_us_awb(const char *voxdir);
cst_voice *register_cmu_us_rms(const char *voxdir);

typedef struct {
    const char *name; /* short name */
    const char *full; /* library name */
    cst_voice *(*reg)(const char *);
    cst_voice *voice; /* registered once, never freed */
} s_voice_t;

static s_voice_t s_voices[] = {
    {"slt", "cmu_us_slt", register_cmu_us_slt, NULL},
    {"kal", "cmu_us_kal", register_cmu_us_kal, NULL},
    {"kal16", "cmu_us_kal16", register_cmu_us_kal16, NULL},
    {"awb", "cmu_us_awb", register_cmu_us_awb, NULL},
    {"rms", "cmu_us_rms", register_cmu_us_rms, NULL},
};
#define S_NVOICES (sizeof s_voices / sizeof s_voices[0])

static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t s_flite_mu = PTHREAD_MUTEX_INITIALIZER;
static int s_init_ok;

struct nr_speech_t {
    nr_speech_params_t params;
};

static void s_init_flite(void) {
    flite_init();
    s_init_ok = 1;
    for (size_t i = 0; i < S_NVOICES; i++) {
        s_voices[i].voice = s_voices[i].reg(NULL);
        if (!s_voices[i].voice) s_init_ok = 0;
    }
}

static s_voice_t *s_find_voice(const char *name) {
    for (size_t i = 0; i < S_NVOICES; i++)
        if (!strcmp(name, s_voices[i].name) || !strcmp(name, s_voices[i].full)) return &s_voices[i];
    return NULL;
}

const char *nr_speech_voice_list(void) { return "slt, kal, kal16, awb, rms"; }

size_t nr_speech_voice_count(void) { return S_NVOICES; }

const char *nr_speech_voice_name(size_t i) { return i < S_NVOICES ? s_voices[i].name : NULL; }

nr_speech_params_t nr_speech_default_params(void) {
    nr_speech_params_t p;
    memset(&p, 0, sizeof p);
    p.max_text_bytes = 4000;
    snprintf(p.default_voice, sizeof p.default_voice, "slt");
    return p;
}

nr_speech_t *nr_speech_new(const nr_speech_params_t *params, char *err, size_t errlen) {
    nr_speech_params_t p = params ? *params : nr_speech_default_params();
    pthread_once(&s_once, s_init_flite);
    if (!s_init_ok) {
        nr_seterr(err, errlen, NR_EMODEL, "flite voice registration failed");
        return NULL;
    }
    if (!*p.default_voice) snprintf(p.default_voice, sizeof p.default_voice, "slt");
    if (!s_find_voice(p.default_voice)) {
        nr_seterr(err, errlen, NR_EVOICE, "unknown default voice '%s' (voices: %s)",
                  p.default_voice, nr_speech_voice_list());
        return NULL;
    }
    if (p.max_text_bytes == 0) p.max_text_bytes = 4000;
    nr_speech_t *self = calloc(1, sizeof *self);
    if (!self) {
        nr_seterr(err, errlen, NR_ENOMEM, "speech");
        return NULL;
    }
    self->params = p;
    return self;
}

void nr_speech_destroy(nr_speech_t **self_p) {
    if (!self_p || !*self_p) return;
    free(*self_p);
    *self_p = NULL;
}

/* ASCII for U+00C0..U+00FF. */
static const char *const s_latin1[64] = {
    "A", "A", "A", "A", "A", "A", "AE", "C", "E", "E", "E", "E", "I", "I", "I", "I",
    "D", "N", "O", "O", "O", "O", "O", " times ", "O", "U", "U", "U", "U", "Y", "Th", "ss",
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
    "d", "n", "o", "o", "o", "o", "o", " divided by ", "o", "u", "u", "u", "u", "y", "th", "y"};

static const char *s_fold_cp(uint32_t cp) {
    if (cp >= 0xC0 && cp <= 0xFF) return s_latin1[cp - 0xC0];
    switch (cp) {
    case 0x2018: case 0x2019: case 0x201A: case 0x201B: case 0x2032: case 0x02BC:
        return "'";
    case 0x201C: case 0x201D: case 0x201E: case 0x201F: case 0x2033: case 0xAB: case 0xBB:
        return "\"";
    case 0x2010: case 0x2011: case 0x2012: case 0x2013: case 0x2014: case 0x2015: case 0x2212:
        return "-";
    case 0x2026:
        return "...";
    case 0xB0:
        return " degrees ";
    case 0x20AC:
        return " euros ";
    case 0xA3:
        return " pounds ";
    default:
        return " ";
    }
}

char *nr_speech_fold_ascii(const uint8_t *text, size_t len) {
    char *out = malloc(len * 6 + 1); /* " divided by " is the longest, from 2 bytes */
    if (!out) return NULL;
    size_t o = 0, i = 0;
    while (i < len) {
        uint8_t c = text[i];
        if (c < 0x80) {
            out[o++] = (c < 0x20 && c != '\n' && c != '\t') || c == 0x7F ? ' ' : (char)c;
            i++;
            continue;
        }
        uint32_t cp;
        size_t n = nr_utf8_decode(text + i, len - i, &cp, NULL);
        if (n == 0) { /* not expected after validation: skip the byte */
            out[o++] = ' ';
            i++;
            continue;
        }
        const char *s = s_fold_cp(cp);
        size_t sl = strlen(s);
        memcpy(out + o, s, sl);
        o += sl;
        i += n;
    }
    out[o] = '\0';
    return out;
}

int nr_speech_check_text(const uint8_t *text, size_t len, size_t max_bytes, char *err, size_t errlen) {
    if (len == 0) return nr_seterr(err, errlen, NR_ETEXT, "text is empty");
    if (len > max_bytes)
        return nr_seterr(err, errlen, NR_ETEXT, "text is %zu bytes; the limit is %zu", len,
                         max_bytes);
    if (memchr(text, 0, len))
        return nr_seterr(err, errlen, NR_ETEXT, "text contains a NUL byte at offset %zu",
                         (size_t)((const uint8_t *)memchr(text, 0, len) - text));
    size_t bad;
    if (nr_utf8_validate(text, len, &bad))
        return nr_seterr(err, errlen, NR_ETEXT, "text is not valid UTF-8 (byte %zu)", bad);
    return 0;
}

int nr_speech_synthesize(nr_speech_t *self, const uint8_t *text, size_t len, const char *voice,
                         float speed, uint8_t **wav, size_t *wav_size, nr_speech_info_t *info, char *err,
                         size_t errlen) {
    if (!self || !wav || !wav_size || (len && !text))
        return nr_seterr(err, errlen, NR_EINVAL, "speech: missing argument");
    if (!voice || !*voice) voice = self->params.default_voice;
    s_voice_t *v = s_find_voice(voice);
    if (!v)
        return nr_seterr(err, errlen, NR_EVOICE, "unknown voice '%.64s' (voices: %s)", voice,
                         nr_speech_voice_list());
    if (speed == 0.0f) speed = 1.0f;
    if (!(speed >= NR_SPEECH_SPEED_MIN && speed <= NR_SPEECH_SPEED_MAX))
        return nr_seterr(err, errlen, NR_EOPTION, "speed must be %.1f..%.1f", NR_SPEECH_SPEED_MIN,
                         NR_SPEECH_SPEED_MAX);
    int rc = nr_speech_check_text(text, len, self->params.max_text_bytes, err, errlen);
    if (rc) return rc;
    char *ascii = nr_speech_fold_ascii(text, len);
    if (!ascii) return nr_seterr(err, errlen, NR_ENOMEM, "speech: folding text");
    int speakable = 0;
    for (const char *p = ascii; *p && !speakable; p++) speakable = isalnum((unsigned char)*p);
    if (!speakable) {
        free(ascii);
        return nr_seterr(err, errlen, NR_ETEXT, "text has nothing Flite can speak (no letters or digits)");
    }

    /* Flite reports internal errors by longjmp through cst_errjmp (else exit). */
    pthread_mutex_lock(&s_flite_mu);
    jmp_buf jb;
    cst_wave *volatile w = NULL;
    int failed = 0;
    /* Speed as Flite's duration_stretch, on the shared voice for this call only. */
    float stretch = get_param_float(v->voice->features, "duration_stretch", 1.0f);
    feat_set_float(v->voice->features, "duration_stretch", stretch / speed);
    cst_errjmp = &jb;
    if (setjmp(jb) == 0) w = flite_text_to_wave(ascii, v->voice);
    else failed = 1;
    cst_errjmp = NULL;
    feat_set_float(v->voice->features, "duration_stretch", stretch);
    if (failed || !w || !w->samples || w->num_samples < 0 || w->sample_rate <= 0 ||
        w->num_channels != 1) {
        rc = nr_seterr(err, errlen, NR_EINTERNAL, "flite synthesis failed for voice %s", v->name);
    } else if (w->num_samples == 0) {
        rc = nr_seterr(err, errlen, NR_ETEXT, "flite produced no audio for this text");
    } else {
        rc = nr_wav_encode(w->samples, (size_t)w->num_samples, (uint32_t)w->sample_rate, wav,
                           wav_size);
        if (rc) nr_seterr(err, errlen, rc, "wav encoding failed");
        else if (info) {
            memset(info, 0, sizeof *info);
            snprintf(info->voice, sizeof info->voice, "%s", v->name);
            info->sample_rate = (uint32_t)w->sample_rate;
            info->num_samples = (size_t)w->num_samples;
            info->duration_ms = (uint64_t)w->num_samples * 1000u / (uint64_t)w->sample_rate;
        }
    }
    if (w) delete_wave(w);
    pthread_mutex_unlock(&s_flite_mu);
    free(ascii);
    return rc;
}
