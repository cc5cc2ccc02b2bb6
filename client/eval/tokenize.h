/* Caption tokenisation as the COCO caption evaluation does it (Stanford
 * PTBTokenizer with -lowerCase, then pycocoevalcap's punctuation list
 * removed), approximated in C: client/EVAL.md lists the rules. Words are
 * interned to ids so the metrics compare integers. */
#ifndef NR_CLIENT_EVAL_TOKENIZE_H
#define NR_CLIENT_EVAL_TOKENIZE_H

#include <stddef.h>
#include <stdint.h>

#define NR_EVTOK_MAX_BYTES 65536 /* longest caption accepted */
#define NR_EVTOK_MAX_WORDS 4096  /* most words kept from one caption */

/* A tokenised caption: word ids. Zero-initialise; free with nr_evsent_clear. */
typedef struct {
    uint32_t *w;
    size_t n;
} nr_evsent_t;

void nr_evsent_clear(nr_evsent_t *self);

/* Tokenises `text` into *out: lower-cased words joined by one space,
 * punctuation removed (malloc'd; "" when nothing is left). NR_ETEXT when
 * text is longer than NR_EVTOK_MAX_BYTES; NR_ENOMEM. Words past
 * NR_EVTOK_MAX_WORDS are dropped. */
int nr_evtok_text(const char *text, char **out);

/* A vocabulary: word <-> id. */
typedef struct nr_evtok nr_evtok_t;

nr_evtok_t *nr_evtok_new(void);
void nr_evtok_destroy(nr_evtok_t **self);
/* Tokenises text (as nr_evtok_text) and interns its words into *out
 * (cleared first). Same errors. */
int nr_evtok_sentence(nr_evtok_t *self, const char *text, nr_evsent_t *out);
/* The word of an id (NULL when unknown). */
const char *nr_evtok_word(const nr_evtok_t *self, uint32_t id);

#endif
