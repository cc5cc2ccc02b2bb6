# Tests for models/text/wordpiece (BERT WordPiece, GIT and BLIP prompts and
# captions) against tests/fixtures/wordpiece_cases.json. Label: model.
if(TARGET nr_models)
  nr_add_test(test_wordpiece SOURCES test_wordpiece.c LIBS nr_models nr_test_harness nr_common cjson LABELS model TIMEOUT 120)
endif()
