# Tests for models/text/gemma_tokenizer (Gemma / PaliGemma BPE from
# tokenizer.json) against tests/fixtures/gemma-tokenizer/cases.json. Label: unit.
if(TARGET nr_models)
  nr_add_test(test_gemma_tokenizer SOURCES test_gemma_tokenizer.c LIBS nr_models nr_test_harness nr_common cjson LABELS unit TIMEOUT 120)
endif()
