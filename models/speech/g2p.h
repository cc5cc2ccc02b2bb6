/* Text to Kokoro phonemes (G2P) through espeak-ng.
 *
 * English follows the Kokoro project's own JavaScript port
 * (kokoro.js/src/phonemize.js in hexgrad/kokoro, kokoro-js 1.2.1): the text
 * is normalized (quotes and brackets, CJK punctuation, whitespace, the
 * abbreviations Dr. Mr. Ms. Mrs. etc., years, clock times, money, decimals,
 * number ranges, possessives of capitals, dotted initials), split on
 * punctuation, each piece between punctuation runs is phonemized by
 * espeak-ng (IPA; en-us for 'a', en for 'b') and the punctuation runs are
 * kept as they are (Kokoro reads them as pauses), then the IPA is mapped to
 * Kokoro's symbols (kokoro stress fix, ʲ->j, r->ɹ, x->k, ɬ->l, a space
 * before "hundred", a lone " z" joined, and for en-us "nineti" -> "ninedi").
 *
 * Other languages follow misaki's EspeakG2P (the path hexgrad/kokoro's
 * KPipeline takes for them): espeak-ng IPA with ties, the tied pairs merged
 * into Kokoro's single letters (a^ɪ->I, t^ʃ->ʧ ...), language-switch flags
 * such as "(en)" removed, hyphens dropped, no English normalization.
 *
 * The language is a Kokoro voice's first letter: a en-us, b en-gb, e es,
 * f fr-fr, h hi, i it, p pt-br. Japanese (j) and Mandarin (z) voices were
 * trained on misaki's own phoneme sets, which espeak-ng does not give: they
 * are refused with NR_EUNSUPPORTED.
 *
 * espeak-ng is GPL-3 and optional at build time (CMake NR_ESPEAK). Without
 * it nr_g2p_available() is 0 and nr_g2p_phonemize() fails with
 * NR_EUNSUPPORTED; normalization and chunking still work. espeak-ng keeps
 * global state: every call into it runs under one process-wide lock. */
#ifndef NR_MODELS_SPEECH_G2P_H
#define NR_MODELS_SPEECH_G2P_H

#include <stddef.h>

/* 1 when built with espeak-ng, else 0. */
int nr_g2p_available(void);

/* The espeak-ng voice for a Kokoro language letter ('a', 'b', ...), or NULL
 * for a letter this module does not support. */
const char *nr_g2p_espeak_voice(char lang);

/* Normalizes text (len bytes of UTF-8) the way phonemize.js does before
 * espeak-ng sees it (English only; other languages get the quote,
 * punctuation and whitespace steps). *out is malloc'd and NUL-terminated.
 * Returns 0 or NR_ENOMEM. */
int nr_g2p_normalize(char lang, const char *text, size_t len, char **out);

/* The pieces of normalized text that go to espeak-ng (the text between
 * punctuation runs), in order: *pieces is a malloc'd array of malloc'd
 * strings; free with nr_g2p_free_list(). Returns 0 or NR_ENOMEM. */
int nr_g2p_text_pieces(char lang, const char *text, size_t len, char ***pieces, size_t *n);

/* Phonemizes text (len bytes of valid UTF-8, no NUL) for language lang into
 * a malloc'd NUL-terminated string of Kokoro phonemes. Returns 0,
 * NR_EUNSUPPORTED (built without espeak-ng, or a language it cannot give),
 * NR_EMODEL (espeak-ng or its voice data failed to load), NR_ETEXT
 * (nothing speakable) or NR_ENOMEM, with a message in err. Thread-safe. */
int nr_g2p_phonemize(char lang, const char *text, size_t len, char **phonemes, char *err,
                     size_t errlen);

/* Splits a phoneme string into chunks of at most max_phonemes code points
 * each, breaking after the last sentence end (. ! ? …) that fits, else
 * after the last clause mark (, ; : —), else at the last space, else
 * anywhere; chunks are trimmed and never empty. *chunks: malloc'd array of
 * malloc'd strings (free with nr_g2p_free_list()). Returns 0, NR_EINVAL
 * (max_phonemes 0) or NR_ENOMEM. */
int nr_g2p_split(const char *phonemes, size_t max_phonemes, char ***chunks, size_t *n_chunks);

void nr_g2p_free_list(char **list, size_t n);

#endif
