# client/eval/: caption metrics (unit: hand cases + pycocoevalcap transcription).
if(TARGET nr_eval)
  nr_add_test(test_eval SOURCES test_eval.c LIBS nr_eval nr_common cjson m LABELS unit TIMEOUT 120)
endif()
# The listener: WAV reader, resampler, pocketsphinx on Flite's voices.
if(TARGET nr_eval AND TARGET nr_speech)
  nr_add_test(test_listen SOURCES test_listen.c LIBS nr_eval nr_speech nr_common m LABELS unit TIMEOUT 300)
endif()
# `narrate eval` on a run narrated by a live cluster (tiny model, Flite),
# its WAVs heard by pocketsphinx.
if(TARGET nr_client AND TARGET nr_eval)
  nr_add_test(test_eval_it SOURCES test_eval_it.c
    LIBS nr_test_harness nr_client nr_proto nr_common cjson m LABELS integration TIMEOUT 600
    PROGRAMS narrator-broker narrator-worker-vision narrator-worker-text narrator-worker-speech narrate)
endif()
