# bench_models: ViT-B/16 encoder images/s and GPT-2 decoder ms/token at real
# sizes with random weights made in memory (see bench/bench_models.c).
if(TARGET nr_models)
  add_executable(bench_models ${CMAKE_CURRENT_SOURCE_DIR}/bench_models.c ${CMAKE_CURRENT_SOURCE_DIR}/random_weights.c)
  target_link_libraries(bench_models PRIVATE nr_models nr_common m)
endif()

# bench_git: GIT-base sizes (microsoft/git-base-coco) with random weights:
# encoder images/s, decode ms/token, a whole caption (see bench/bench_git.c).
if(TARGET nr_models)
  add_executable(bench_git ${CMAKE_CURRENT_SOURCE_DIR}/bench_git.c ${CMAKE_CURRENT_SOURCE_DIR}/random_weights.c)
  target_link_libraries(bench_git PRIVATE nr_models nr_common m)
endif()

# bench_blip: the same bench (bench_git.c) with BLIP-base sizes
# (Salesforce/blip-image-captioning-base) as its default family.
if(TARGET nr_models)
  add_executable(bench_blip ${CMAKE_CURRENT_SOURCE_DIR}/bench_git.c ${CMAKE_CURRENT_SOURCE_DIR}/random_weights.c)
  target_compile_definitions(bench_blip PRIVATE NR_BENCH_FAMILY="blip")
  target_link_libraries(bench_blip PRIVATE nr_models nr_common m)
endif()

# bench_kokoro: Kokoro-82M real-time factor on a model folder made by
# bench/bench_kokoro.sh (random weights at the real sizes).
if(TARGET nr_models)
  add_executable(bench_kokoro ${CMAKE_CURRENT_SOURCE_DIR}/bench_kokoro.c)
  target_link_libraries(bench_kokoro PRIVATE nr_models nr_common m)
endif()

# bench_paligemma: PaliGemma-3B-224 shapes (SigLIP-So400m, Gemma-2B layers,
# scaled text depth and vocabulary) with random weights (bench/bench_paligemma.c).
if(TARGET nr_models)
  add_executable(bench_paligemma ${CMAKE_CURRENT_SOURCE_DIR}/bench_paligemma.c ${CMAKE_CURRENT_SOURCE_DIR}/random_weights.c)
  target_link_libraries(bench_paligemma PRIVATE nr_models nr_common m)
endif()
