/* GPT-2 byte-level BPE tokenizer: vocab.json + merges.txt (or tokenizer.json)
 * from a Hugging Face checkpoint. Decoding: ids -> token bytes through the
 * byte<->unicode map -> UTF-8 (invalid sequences become U+FFFD as Python's
 * errors="replace"). Encoding: GPT-2's pre-tokenization regex (implemented
 * by hand with Unicode letter/number tables), then BPE merges by rank. */
#ifndef NR_MODELS_TOKENIZER_H
#define NR_MODELS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct nr_tokenizer nr_tokenizer_t;

/* Decode flags. */
#define NR_TOKENIZER_SKIP_SPECIAL 0x1u /* drop special tokens (<|endoftext|> ...) */
#define NR_TOKENIZER_CLEANUP      0x2u /* transformers' clean_up_tokenization_spaces:
                                          " ." -> "." , " ," " !" " ?" " n't" " 's" ... */

/* Loads from a checkpoint folder: vocab.json + merges.txt when both exist,
 * else tokenizer.json. Returns 0 and *out, or NR_EMODEL (missing or
 * corrupt file, named in err), NR_ENOMEM, NR_EINVAL. */
int nr_tokenizer_load(const char *dir, nr_tokenizer_t **out, char *err, size_t errlen);
/* Loads from explicit vocab.json and merges.txt paths. Same errors. */
int nr_tokenizer_load_files(const char *vocab_path, const char *merges_path, nr_tokenizer_t **out, char *err,
                            size_t errlen);
/* Loads from a tokenizer.json (model.vocab, model.merges, added_tokens). */
int nr_tokenizer_load_json(const char *path, nr_tokenizer_t **out, char *err, size_t errlen);

/* Frees; sets *tok to NULL; safe on NULL and twice. */
void nr_tokenizer_destroy(nr_tokenizer_t **tok);

/* Number of ids (largest id + 1). */
int nr_tokenizer_vocab_size(const nr_tokenizer_t *tok);
/* Id of a token given in its vocab.json spelling ("Ġthe", "<|endoftext|>"), or -1. */
int nr_tokenizer_token_id(const nr_tokenizer_t *tok, const char *token);
/* 1 when id is a special token (<|endoftext|>, special added tokens). */
int nr_tokenizer_is_special(const nr_tokenizer_t *tok, int id);

/* Encodes UTF-8 text (len bytes; special-token text is treated as plain
 * text, like tiktoken's encode_ordinary). *ids is a new array the caller
 * frees with free(). Returns 0, NR_ETEXT (invalid UTF-8), NR_ENOMEM. */
int nr_tokenizer_encode(const nr_tokenizer_t *tok, const char *text, size_t len, int **ids, size_t *n_ids,
                        char *err, size_t errlen);

/* Decodes ids to a new NUL-terminated UTF-8 string (*text, caller frees;
 * *len its length, may be NULL). Returns 0, NR_EINVAL (id out of range,
 * named in err), NR_ENOMEM. */
int nr_tokenizer_decode(const nr_tokenizer_t *tok, const int *ids, size_t n_ids, unsigned flags, char **text,
                        size_t *len, char *err, size_t errlen);

#endif
