/* Model configuration from a Hugging Face checkpoint folder: config.json
 * (its model_type picks the family, models/family.h: vision-encoder-decoder
 * with a ViT encoder and a GPT-2 decoder), generation_config.json. Every
 * size comes from these files. */
#ifndef NR_MODELS_CONFIG_H
#define NR_MODELS_CONFIG_H

#include <stddef.h>

/* Activations; the values are the backend gelu op's `form`. */
typedef enum { NR_ACT_GELU = 0, NR_ACT_GELU_TANH = 1, NR_ACT_QUICK_GELU = 2 } nr_act_t;

typedef struct {
    int hidden_size;          /* D */
    int num_hidden_layers;
    int num_attention_heads;
    int intermediate_size;
    int image_size;
    int patch_size;
    int num_channels;
    float layer_norm_eps;
    nr_act_t hidden_act;      /* "gelu" exact; gelu_new / gelu_pytorch_tanh tanh form; quick_gelu (CLIP) */
    int qkv_bias;
} nr_vit_config_t;

typedef struct {
    int n_embd;
    int n_layer;
    int n_head;
    int n_inner;              /* 4 * n_embd when null */
    int n_positions;
    int vocab_size;
    float layer_norm_epsilon;
    nr_act_t activation_function;
    int add_cross_attention;
    int scale_attn_weights;   /* divide by sqrt(head_dim) (default 1) */
    int tie_word_embeddings;  /* lm_head is wte (default 1), as transformers ties them */
} nr_gpt2_config_t;

/* GIT (GitForCausalLM): a CLIP vision tower (vision_config: no qkv_bias
 * field, it always has biases), the visual projection, and a BERT-style
 * decoder over [image tokens; text]. */
typedef struct {
    nr_vit_config_t vision;   /* hidden_act quick_gelu, layer_norm_eps 1e-5 by default */
    int hidden_size;
    int num_hidden_layers;
    int num_attention_heads;
    int intermediate_size;
    int max_position_embeddings;
    int vocab_size;
    float layer_norm_eps;     /* 1e-12 by default */
    nr_act_t hidden_act;      /* gelu by default */
    int tie_word_embeddings;  /* output.weight is the word embeddings (default 0, GitConfig's) */
} nr_git_config_t;

/* BLIP (BlipForConditionalGeneration): BLIP's ViT (vision_config) and the
 * BERT language model with cross-attention in every layer (text_config);
 * keys and defaults of transformers' BlipVisionConfig / BlipTextConfig. */
typedef struct {
    nr_vit_config_t vision;   /* 384 px, patch 16, gelu, layer_norm_eps 1e-5 by default */
    int hidden_size;          /* text_config.* from here */
    int num_hidden_layers;
    int num_attention_heads;  /* 8 by default (the published checkpoints say 12) */
    int intermediate_size;
    int max_position_embeddings;
    int vocab_size;           /* 30524: bert-base-uncased's 30522 + [DEC] + [ENC] */
    float layer_norm_eps;     /* 1e-12 by default */
    nr_act_t hidden_act;      /* gelu by default (layers and the prediction head's transform) */
    int tie_word_embeddings;  /* cls.predictions.decoder.weight may be absent: use the word embeddings (default 1) */
    int bos_token_id;         /* [DEC] 30522: replaces the processor's [CLS] */
    int sep_token_id;         /* [SEP] 102: generation's eos */
    int pad_token_id;         /* 0 */
} nr_blip_config_t;

/* PaliGemma (PaliGemmaForConditionalGeneration, transformers v4.46
 * configuration_paligemma.py): a SiglipVisionConfig under vision_config, a
 * GemmaConfig under text_config, each key defaulting as there. */
typedef struct {
    nr_vit_config_t vision;   /* SigLIP: 224 px, patch 16, gelu_pytorch_tanh, layer_norm_eps 1e-6 by default */
    int hidden_size;          /* text_config.* from here (GemmaConfig's defaults) */
    int num_hidden_layers;
    int num_attention_heads;
    int num_key_value_heads;  /* divides num_attention_heads (1: multi-query) */
    int head_dim;             /* 256 by default, independent of hidden_size */
    int intermediate_size;
    int max_position_embeddings; /* 8192: image tokens + text */
    int vocab_size;
    float rms_norm_eps;       /* 1e-6 */
    float rope_theta;         /* 10000 */
    nr_act_t hidden_act;      /* hidden_activation, gelu_pytorch_tanh when null (GemmaMLP) */
    int image_token_index;    /* the <image> placeholder id (its positions get the image features) */
    int image_seq_length;     /* image tokens: (image_size / patch_size)^2 */
} nr_paligemma_config_t;

/* Generation settings: transformers' names and meanings. max_length counts
 * the decoder start token (and the prompt, when there is one). */
typedef struct {
    int max_length;           /* default 20 (transformers) */
    int num_beams;            /* 1 = greedy */
    float length_penalty;     /* default 1.0 */
    int early_stopping;       /* 1 = true, 0 = false (heuristic), -1 = "never" */
    int decoder_start_token_id;
    int bos_token_id;
    int eos_token_id;         /* -1: none */
    int pad_token_id;
    /* Optional text prompt (BLIP's conditional captioning): ids that follow
     * the start token in every caption, as transformers' generate() gets
     * them in input_ids (decoder_prompt_len = 1 + prompt_len); borrowed, the
     * caller keeps them alive for the call. NULL / 0: none. */
    const int *prompt_ids;
    int prompt_len;
} nr_gen_config_t;

typedef struct {
    /* Family-neutral: what the captioner and the workers need, whatever the
     * family (set by the family's parser). */
    char family[16];          /* registry name (models/family.h): "vit-gpt2" */
    int num_channels;         /* encoder input: channels, image_size x image_size */
    int image_size;
    int states_seq;           /* vision stage output per image: [states_seq, states_hidden] */
    int states_hidden;
    int dec_hidden;           /* what the decoder reads per position (nr_captioner_project's width) */
    int max_positions;        /* the decoder's limit on max_length */
    int vocab_size;
    /* Per family. */
    int wordpiece;            /* 1: BERT WordPiece tokenizer (vocab.txt), else GPT-2 byte-level BPE */
    nr_vit_config_t vit;
    nr_gpt2_config_t gpt2;
    nr_git_config_t git;
    nr_blip_config_t blip;
    nr_paligemma_config_t paligemma;
    int gemma_tokenizer;      /* 1: the Gemma tokenizer (tokenizer.json, PaliGemma) */
    nr_gen_config_t gen;
    /* 1: VisionEncoderDecoderModel's enc_to_dec_proj, a Linear from the
     * encoder's hidden_size to the decoder's n_embd, applied to the encoder
     * states before the decoder sees them (the two sizes differ and the
     * decoder config has no cross_attention_hidden_size). */
    int enc_to_dec_proj;
} nr_model_config_t;

nr_gen_config_t nr_gen_config_default(void);

/* Reads a checkpoint file of at most max bytes into a new NUL-terminated
 * buffer (the caller's; its length in *len when len is not NULL). Returns
 * NULL with errno set: ENOENT when missing (as fopen sets it), EFBIG when
 * larger than max, ENOMEM, EIO. */
char *nr_model_read_file(const char *path, size_t max, size_t *len);

/* Reads dir/config.json (model_type vision-encoder-decoder with encoder vit
 * and decoder gpt2: family "vit-gpt2"; model_type git: family "git";
 * model_type blip: family "blip") then dir/generation_config.json when
 * present (its keys override config.json's; not for blip, whose
 * generation settings are text_config's, as transformers'
 * text_decoder.generate() takes them). Validates every size (positive, heads divide
 * hidden, image divisible by patch, known activation) and sets
 * enc_to_dec_proj as transformers decides it; a decoder
 * cross_attention_hidden_size other than the encoder's hidden_size (refused
 * by transformers) or than n_embd (GPT-2's cross-attention reads only
 * n_embd-wide states) is NR_EMODEL. Returns 0,
 * NR_EMODEL (file and key named in err), NR_ENOMEM. */
int nr_model_config_load(const char *dir, nr_model_config_t *cfg, char *err, size_t errlen);

/* The same from JSON text already in memory (gen_json may be NULL);
 * `what` names the source in messages. */
int nr_model_config_parse(const char *config_json, const char *gen_json, const char *what, nr_model_config_t *cfg,
                          char *err, size_t errlen);

#endif
