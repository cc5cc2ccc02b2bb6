/* Text clean-up shared by the tokenizers' decoders: transformers'
 * clean_up_tokenization (spaces before punctuation and English
 * contractions), in place. Pure functions, thread-safe. */
#ifndef NR_MODELS_TEXT_CLEANUP_H
#define NR_MODELS_TEXT_CLEANUP_H

#include <stddef.h>

/* Replaces every `from` with `to` (not longer than `from`) in s[0..n), in
 * place, NUL-terminating; returns the new length. */
size_t nr_text_replace_all(char *s, size_t n, const char *from, const char *to);

/* transformers' clean_up_tokenization on s[0..n): " ." -> "." and the like
 * (" ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"), in
 * place; returns the new length. */
size_t nr_text_clean_up_tokenization(char *s, size_t n);

#endif
