# The speech worker's Kokoro engine on tests/fixtures/kokoro-tiny, through
# the engine interface and through real processes (redis-server, broker,
# narrator-worker-speech --engine kokoro). Label: integration.
if(TARGET nr_client AND TARGET nr_speech)
  nr_add_test(test_speech_kokoro SOURCES test_speech_kokoro.c
    LIBS nr_test_harness nr_client nr_speech nr_g2p nr_proto nr_common m
    LABELS integration TIMEOUT 600
    PROGRAMS narrator-broker narrator-worker-speech)
endif()
