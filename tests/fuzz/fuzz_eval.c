/* libFuzzer target for `narrate eval`'s parsers of outside bytes
 * (client/eval/): the first byte picks what the rest is.
 *   even: a WAV file for the listener: parsing fails with NR_EINVAL or
 *         NR_ETOOBIG, or gives samples within [-1, 1] at a supported rate,
 *         which resample to 16 kHz (rates that are multiples of 50 Hz, so
 *         the polyphase table stays small here) to the expected count;
 *   odd:  captions: "candidate\nreference\nreference...": tokenising never
 *         fails below the size limit, and every metric lies in its range
 *         (BLEU and ROUGE-L in [0, 1], CIDEr-D in [0, 10], WER >= 0;
 *         identical captions give ROUGE-L 1). */
#include "client/eval/audio.h"
#include "client/eval/bleu.h"
#include "client/eval/cider.h"
#include "client/eval/rouge.h"
#include "client/eval/tokenize.h"
#include "client/eval/wer.h"
#include "common/error.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define S_CHECK(c) \
    do {           \
        if (!(c)) abort(); \
    } while (0)

static void s_wav(const uint8_t *data, size_t size) {
    nr_audio_t a, r;
    char err[256];
    int rc = nr_audio_parse_wav(data, size, &a, err, sizeof err);
    S_CHECK(rc == 0 || rc == NR_EINVAL || rc == NR_ETOOBIG);
    if (rc) return;
    S_CHECK(a.rate >= NR_AUDIO_MIN_RATE && a.rate <= NR_AUDIO_MAX_RATE);
    for (size_t i = 0; i < a.n; i++) S_CHECK(a.x[i] >= -1.0f && a.x[i] <= 1.0f);
    if (a.rate % 50 == 0) {
        S_CHECK(nr_audio_resample(&a, 16000, &r) == 0);
        S_CHECK(r.n == (size_t)((uint64_t)a.n * 16000 / a.rate));
        for (size_t i = 0; i < r.n; i++) S_CHECK(isfinite(r.x[i]));
        nr_audio_clear(&r);
    }
    nr_audio_clear(&a);
}

static void s_captions(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    nr_evtok_t *vocab = nr_evtok_new();
    nr_evsent_t s[9] = {{0}};
    size_t n = 0;
    for (char *p = text; n < 9;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        S_CHECK(nr_evtok_sentence(vocab, p, &s[n++]) == 0);
        if (!nl) break;
        p = nl + 1;
    }
    if (n >= 2) {
        nr_bleu_stats_t st;
        double b[NR_BLEU_N], rouge, cider[2];
        S_CHECK(nr_bleu_stats(&s[0], &s[1], n - 1, &st) == 0);
        nr_bleu_score(&st, b);
        for (int k = 0; k < NR_BLEU_N; k++) S_CHECK(b[k] >= 0 && b[k] <= 1 + 1e-9);
        S_CHECK(nr_rouge_l(&s[0], &s[1], n - 1, &rouge) == 0);
        S_CHECK(rouge >= 0 && rouge <= 1 + 1e-12);
        S_CHECK(nr_rouge_l(&s[1], &s[1], 1, &rouge) == 0 && fabs(rouge - 1) < 1e-12);
        nr_cider_image_t im[2] = {{&s[0], &s[1], n - 1}, {&s[1], &s[0], 1}};
        S_CHECK(nr_cider_score(im, 2, cider, NULL) == 0);
        for (int i = 0; i < 2; i++) S_CHECK(cider[i] >= -1e-9 && cider[i] <= 10 + 1e-6);
        long edits = nr_wer_edits(s[0].w, s[0].n, s[1].w, s[1].n);
        S_CHECK(edits >= 0 && (size_t)edits <= (s[0].n > s[1].n ? s[0].n : s[1].n));
    }
    for (size_t i = 0; i < n; i++) nr_evsent_clear(&s[i]);
    nr_evtok_destroy(&vocab);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] % 2 == 0) s_wav(data + 1, size - 1);
    else s_captions(data + 1, size - 1);
    return 0;
}
