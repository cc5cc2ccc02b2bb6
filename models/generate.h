/* Caption generation over any family's decoder (models/decoder.h): greedy
 * search and beam search
 * with the semantics of Hugging Face transformers' generate()
 * (GreedySearch, BeamSearchScorer / BeamHypotheses). Several captions
 * (one per encoder output) are decoded together as one batch. */
#ifndef NR_MODELS_GENERATE_H
#define NR_MODELS_GENERATE_H

#include <stddef.h>

#include "models/config.h"
#include "models/decoder.h"

/* Decodes n captions from enc [n, enc_len, D] (backend memory).
 * gen: max_length (counts the start token and the prompt), num_beams (1
 * greedy), length_penalty, early_stopping, decoder_start/eos/pad ids, an
 * optional prompt (prompt_ids: every caption starts start token, prompt;
 * the first decoder step reads them together).
 * Writes caption i's ids (start token and prompt first, the eos included
 * when generated, as transformers returns them) to ids + i*gen->max_length
 * and its count to lens[i]. Beam search scores a finished hypothesis as
 * sum(logprobs) / L^length_penalty with L = number of generated tokens
 * after the start token and prompt (decoder_prompt_len; the eos counts
 * when present), and a caption
 * stops by BeamHypotheses.is_done on the best of all 2*num_beams candidates
 * of the step, eos included -- BeamSearchScorer of transformers v4.46
 * (see models/MODELS.md, "Generation").
 * Returns 0, NR_EINVAL (bad settings), NR_ENOMEM or a backend error. */
int nr_generate(const nr_decoder_t *d, const float *enc, int n, int enc_len, const nr_gen_config_t *gen, int *ids,
                int *lens, char *err, size_t errlen);

/* Checks gen against the decoder (ids inside the vocabulary, max_length
 * within its max_positions and above 1 + prompt_len, num_beams 1..64).
 * Returns 0 or NR_EOPTION. */
int nr_generate_check(const nr_decoder_t *d, const nr_gen_config_t *gen, char *err, size_t errlen);

#endif
