/* BERT WordPiece tokenizer, as transformers' (slow) BertTokenizer does it:
 * the checkpoint's vocab.txt + tokenizer_config.json (+ special_tokens_map.json,
 * added_tokens.json), or tokenizer.json alone when there is no vocab.txt.
 * Used by GIT (bert-base-uncased's vocabulary, [CLS] starts and [SEP] ends a
 * caption) and BLIP (the same vocabulary plus the added tokens [DEC], the
 * first token of a caption, and [ENC]).
 *
 * Encoding follows transformers 4.46 (PreTrainedTokenizer.tokenize +
 * BasicTokenizer + WordpieceTokenizer): with do_lower_case the text is
 * lower-cased except special tokens; added and special tokens are split off
 * first and never split; then clean-up (control characters, U+0000 and
 * U+FFFD dropped, whitespace made spaces), CJK ideographs made words of
 * their own, NFC, whitespace split, lower case and accent stripping (NFD,
 * drop Mn), punctuation split, greedy longest-match-first WordPiece with
 * "##" continuations and [UNK] for a word of more than 100 characters or
 * one the vocabulary cannot spell. Decoding is decode(): tokens joined with
 * spaces, " ##" removed, optionally special tokens skipped and
 * clean_up_tokenization_spaces applied. Unicode tables: Unicode 14.0
 * (models/text/wordpiece_unicode.h, from models/gen_wordpiece_unicode.py).
 * A loaded tokenizer is read-only: share it between threads freely. */
#ifndef NR_MODELS_TEXT_WORDPIECE_H
#define NR_MODELS_TEXT_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

typedef struct nr_wordpiece nr_wordpiece_t;

/* Encode flag. */
#define NR_WORDPIECE_ADD_SPECIAL 0x1u  /* [CLS] ids [SEP] (add_special_tokens=True) */
/* Decode flags. */
#define NR_WORDPIECE_SKIP_SPECIAL 0x1u /* drop special tokens ([CLS] [SEP] [PAD] [DEC] ...) */
#define NR_WORDPIECE_CLEANUP      0x2u /* clean_up_tokenization_spaces: " ." -> "." " ," " !"
                                          " ?" " ' " " n't" " 'm" " 's" " 've" " 're" */

/* The special tokens a checkpoint names (tokenizer_config.json,
 * special_tokens_map.json). */
typedef enum {
    NR_WORDPIECE_UNK,
    NR_WORDPIECE_SEP,
    NR_WORDPIECE_PAD,
    NR_WORDPIECE_CLS,
    NR_WORDPIECE_MASK,
    NR_WORDPIECE_BOS, /* BLIP: [DEC] */
    NR_WORDPIECE_EOS,
    NR_WORDPIECE_N_SPECIAL
} nr_wordpiece_special_t;

/* Loads from a checkpoint folder: vocab.txt when it exists (with
 * tokenizer_config.json, special_tokens_map.json, added_tokens.json and
 * tokenizer.json's added_tokens when present), else tokenizer.json (a
 * WordPiece model; options from its BertNormalizer unless
 * tokenizer_config.json gives them). Returns 0 and *out, or NR_EMODEL
 * (missing, oversized or corrupt file, named in err), NR_ENOMEM, NR_EINVAL. */
int nr_wordpiece_load(const char *dir, nr_wordpiece_t **out, char *err, size_t errlen);

/* Frees; sets *tok to NULL; safe on NULL and twice. */
void nr_wordpiece_destroy(nr_wordpiece_t **tok);

/* Number of ids (largest id + 1, added tokens included). */
int nr_wordpiece_vocab_size(const nr_wordpiece_t *tok);
/* Id of a token spelled as in vocab.txt ("the", "##ing", "[DEC]"), or -1. */
int nr_wordpiece_token_id(const nr_wordpiece_t *tok, const char *token);
/* Spelling of an id (borrowed), or NULL when out of range. */
const char *nr_wordpiece_token(const nr_wordpiece_t *tok, int id);
/* 1 when id is one of the special tokens (what decode skips). */
int nr_wordpiece_is_special(const nr_wordpiece_t *tok, int id);
/* Id of a named special token, or -1 when the checkpoint has none. */
int nr_wordpiece_special_id(const nr_wordpiece_t *tok, nr_wordpiece_special_t which);
/* tokenizer_config.json's model_max_length (clamped to INT32_MAX; 512 for
 * bert-base-uncased). Encode does not truncate: the caller decides. */
int nr_wordpiece_max_length(const nr_wordpiece_t *tok);
/* tokenizer_config.json's clean_up_tokenization_spaces (default 1): the
 * flag a caller passes to decode to do what transformers' decode() does. */
int nr_wordpiece_cleanup_default(const nr_wordpiece_t *tok);

/* Encodes UTF-8 text (len bytes). flags: NR_WORDPIECE_ADD_SPECIAL. *ids is
 * a new array the caller frees with free(). Returns 0, NR_ETEXT (invalid
 * UTF-8), NR_EINVAL (ADD_SPECIAL without [CLS]/[SEP]), NR_ENOMEM. */
int nr_wordpiece_encode(const nr_wordpiece_t *tok, const char *text, size_t len, unsigned flags, int **ids,
                        size_t *n_ids, char *err, size_t errlen);

/* Decodes ids to a new NUL-terminated UTF-8 string (*text, caller frees;
 * *len its length, may be NULL). Returns 0, NR_EINVAL (id out of range,
 * named in err), NR_ENOMEM. */
int nr_wordpiece_decode(const nr_wordpiece_t *tok, const int *ids, size_t n_ids, unsigned flags, char **text,
                        size_t *len, char *err, size_t errlen);

#endif
