# Tests for models/speech/g2p (text to Kokoro phonemes) against
# tests/fixtures/g2p_cases.json (kokoro-js 1.2.1 over the espeak-ng
# program); the espeak-ng comparisons skip without NR_ESPEAK. Label: unit.
if(TARGET nr_g2p)
  nr_add_test(test_g2p SOURCES test_g2p.c LIBS nr_g2p nr_test_harness nr_common cjson LABELS unit TIMEOUT 120)
endif()
