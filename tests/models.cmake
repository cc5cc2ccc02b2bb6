# Tests for the inference engine (models/: safetensors, config, CPU kernels,
# ViT, GPT-2, generation, states frame, captioner) against the tiny
# checkpoint and PyTorch reference outputs in tests/fixtures/. Label: model.
if(TARGET nr_models)
  nr_add_test(test_models SOURCES test_models.c model_ref.c LIBS nr_models nr_test_harness nr_common cjson m LABELS model TIMEOUT 300)
  nr_add_test(test_git SOURCES test_git.c model_ref.c LIBS nr_models nr_common m LABELS model TIMEOUT 300)
  nr_add_test(test_paligemma SOURCES test_paligemma.c model_ref.c LIBS nr_models nr_common m LABELS model TIMEOUT 300)
  nr_add_test(test_blip SOURCES test_blip.c model_ref.c LIBS nr_models nr_common m LABELS model TIMEOUT 300)
  nr_add_test(test_kernels_mt SOURCES test_kernels_mt.c LIBS nr_models nr_common m LABELS model TIMEOUT 300)
endif()
if(TARGET nr_models)
  nr_add_test(test_checkpoint SOURCES test_checkpoint.c LIBS nr_models nr_test_harness nr_common LABELS model TIMEOUT 300)
endif()
