# client/eval/: caption metrics (unit: hand cases + pycocoevalcap transcription).
if(TARGET nr_eval)
  nr_add_test(test_eval SOURCES test_eval.c LIBS nr_eval nr_common cjson m LABELS unit TIMEOUT 120)
endif()
