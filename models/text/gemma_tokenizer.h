/* The Gemma / PaliGemma tokenizer from a Hugging Face tokenizer.json, as the
 * fast tokenizer (the Rust `tokenizers` library, 0.2x) runs it: a BPE model
 * with byte fallback (a character missing from the vocabulary becomes its
 * UTF-8 bytes as <0xNN> tokens), the normalizer replacing " " with "▁", no
 * pre-tokenizer (or Gemma 3's Split on " " merged with the previous piece),
 * and added tokens (<bos>, <image>, <loc0000>, "\n", ...) matched in the text
 * first, longest match leftmost. Decoding follows the decoder sequence
 * (Replace "▁" -> " ", ByteFallback, Fuse, and Strip where a file has it).
 *
 * Supported tokenizer.json parts (anything else is refused at load with
 * NR_EMODEL naming the field): model BPE (vocab, merges as "a b" strings or
 * [a, b] pairs, unk_token, fuse_unk, byte_fallback, ignore_merges; no
 * dropout, prefix or suffix); normalizer null, Replace (String pattern),
 * Prepend or a Sequence of those; pre_tokenizer null or Split (String
 * pattern, MergedWithPrevious, not inverted); decoder null or Replace
 * (String), ByteFallback, Fuse, Strip or a Sequence of those; added tokens
 * of at most 1024 bytes without single_word / lstrip / rstrip; normalizer and decoder steps that
 * can lengthen text at most 64 times. The post-processor is not applied
 * (encode is add_special_tokens=False; the caller places <bos>).
 * A loaded tokenizer is read-only: share it between threads freely. */
#ifndef NR_MODELS_TEXT_GEMMA_TOKENIZER_H
#define NR_MODELS_TEXT_GEMMA_TOKENIZER_H

#include <stddef.h>

typedef struct nr_gemma_tokenizer nr_gemma_tokenizer_t;

/* Decode flag: drop the added tokens marked special (<bos>, <eos>, <pad>,
 * <image>, ...), as skip_special_tokens=True does. */
#define NR_GEMMA_TOKENIZER_SKIP_SPECIAL 0x1u

/* Loads a Hugging Face tokenizer.json of the Gemma / PaliGemma kind (model.type
 * BPE, byte_fallback, normalizer replacing " " with "▁", added_tokens).
 * Returns 0 and *out, or NR_EMODEL (missing, oversized, corrupt or
 * unsupported file; the file or field named in err), NR_ENOMEM, NR_EINVAL. */
int nr_gemma_tokenizer_load(const char *tokenizer_json_path, nr_gemma_tokenizer_t **out, char *err, size_t errlen);

/* The same from tokenizer.json's text in memory (json[0..len)); name
 * stands for the file in error messages (NULL: "tokenizer.json"). */
int nr_gemma_tokenizer_parse(const char *json, size_t len, const char *name, nr_gemma_tokenizer_t **out, char *err,
                             size_t errlen);

/* Frees; sets *tok to NULL; safe on NULL and twice. */
void nr_gemma_tokenizer_destroy(nr_gemma_tokenizer_t **tok);

/* Number of ids: the largest id of the vocabulary or the added tokens + 1. */
int nr_gemma_tokenizer_vocab_size(const nr_gemma_tokenizer_t *tok);

/* Id of a token by its tokenizer.json spelling ("<bos>", "<eos>", "<image>",
 * "\n", "▁the"), added tokens first, or -1. */
int nr_gemma_tokenizer_token_id(const nr_gemma_tokenizer_t *tok, const char *token);

/* Spelling of an id (borrowed), or NULL when no token has it. */
const char *nr_gemma_tokenizer_token(const nr_gemma_tokenizer_t *tok, int id);

/* 1 when id is an added token marked special (what SKIP_SPECIAL drops). */
int nr_gemma_tokenizer_is_special(const nr_gemma_tokenizer_t *tok, int id);

/* Encodes UTF-8 text (len bytes) as the fast tokenizer's
 * encode(text, add_special_tokens=False) does (added tokens in the text
 * matched as transformers does). *ids is new (free()). Returns 0, NR_ETEXT
 * (invalid UTF-8, offset in err), NR_ENOMEM. */
int nr_gemma_tokenizer_encode(const nr_gemma_tokenizer_t *tok, const char *text, size_t len, int **ids,
                              size_t *n_ids, char *err, size_t errlen);

/* Decodes as tokenizer.decode(ids, skip_special_tokens=flag) does (no
 * clean-up of spaces: Gemma's clean_up_tokenization_spaces is false);
 * flags NR_GEMMA_TOKENIZER_SKIP_SPECIAL. *text is new and NUL-terminated
 * (free()); *len its length (len may be NULL). Returns 0, NR_EINVAL (id out
 * of range, named in err), NR_ENOMEM. */
int nr_gemma_tokenizer_decode(const nr_gemma_tokenizer_t *tok, const int *ids, size_t n_ids, unsigned flags,
                              char **text, size_t *len, char *err, size_t errlen);

#endif
