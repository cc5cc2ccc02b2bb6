# client/eval/: caption metrics (unit: hand cases + pycocoevalcap transcription).
if(TARGET nr_eval)
  nr_add_test(test_eval SOURCES test_eval.c LIBS nr_eval nr_common cjson m LABELS unit TIMEOUT 120)
endif()
# The listener: WAV reader, resampler, pocketsphinx on Flite's voices.
if(TARGET nr_eval AND TARGET nr_speech)
  nr_add_test(test_listen SOURCES test_listen.c LIBS nr_eval nr_speech nr_common m LABELS unit TIMEOUT 300)
endif()
