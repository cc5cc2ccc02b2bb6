# Fuzzers (libFuzzer, clang, -DNR_FUZZ=ON; see tests/fuzz/README.md): the
# safetensors and torch zip readers, config.json reader, image decode path, tokenizers,
# encoder-states frame parser and the Kokoro G2P's text rules. The code under test is compiled into each
# target again so that it carries the fuzzer's coverage instrumentation
# (as tests/proto.cmake does for proto.c). With NR_FUZZ on, ctest runs each
# for NR_FUZZ_SECONDS (default 15) from its seeds (LABELS fuzz).
if(NOT NR_FUZZ OR NOT TARGET nr_models)
  return()
endif()
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(WARNING "NR_FUZZ needs clang (libFuzzer); model fuzz targets skipped")
  return()
endif()
if(NR_CUDA)
  # nr_models would then link through the CUDA toolchain, which has no libFuzzer.
  message(WARNING "NR_FUZZ: configure the fuzz build with -DNR_CUDA=OFF; model fuzz targets skipped")
  return()
endif()
set(NR_M ${CMAKE_SOURCE_DIR}/models)
set(NR_FUZZ_safetensors_SOURCES ${NR_M}/io/safetensors.c ${NR_M}/tensor.c)
set(NR_FUZZ_torchzip_SOURCES ${NR_M}/io/torchzip.c ${NR_M}/io/pickle.c ${NR_M}/tensor.c)
set(NR_FUZZ_config_SOURCES ${NR_M}/config.c)
# One target per newer format: each feeds its own seeds, and all compile
# the whole decode path (image.c dispatches by magic bytes).
set(NR_FUZZ_IMAGE_ALL ${NR_M}/image.c ${NR_M}/vision/decode_tiff.c ${NR_M}/vision/decode_gif.c
  ${NR_M}/vision/decode_bmp.c)
if(NR_HEIF)
  list(APPEND NR_FUZZ_IMAGE_ALL ${NR_M}/vision/decode_heif.c)
endif()
set(NR_FUZZ_image_SOURCES ${NR_FUZZ_IMAGE_ALL} ${NR_M}/preprocess.c)
foreach(f tiff gif bmp heif)
  set(NR_FUZZ_${f}_SOURCES ${NR_FUZZ_IMAGE_ALL})
endforeach()
set(NR_FUZZ_tokenizer_SOURCES ${NR_M}/tokenizer.c ${NR_M}/text/cleanup.c)
set(NR_FUZZ_states_SOURCES ${NR_M}/states.c ${NR_M}/tensor.c)
set(NR_FUZZ_wordpiece_SOURCES ${NR_M}/text/wordpiece.c ${NR_M}/text/cleanup.c)
set(NR_FUZZ_gemma_tokenizer_SOURCES ${NR_M}/text/gemma_tokenizer.c)
foreach(t safetensors torchzip config image tokenizer states wordpiece gemma_tokenizer tiff gif bmp heif)
  add_executable(fuzz_${t} ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_${t}.c ${NR_FUZZ_${t}_SOURCES})
  target_link_libraries(fuzz_${t} PRIVATE nr_models)
  target_include_directories(fuzz_${t} PRIVATE ${CMAKE_SOURCE_DIR})
  target_compile_definitions(fuzz_${t} PRIVATE
    NR_FUZZ_TOKENIZER_DIR="${CMAKE_SOURCE_DIR}/tests/fixtures/vit-gpt2-tiny"
    NR_FUZZ_WORDPIECE_DIR="${CMAKE_SOURCE_DIR}/tests/fixtures/blip-tokenizer"
    NR_FUZZ_GEMMA_TOKENIZER="${CMAKE_SOURCE_DIR}/tests/fixtures/gemma-tokenizer/tokenizer.json")
  target_compile_options(fuzz_${t} PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
  target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer,address,undefined)
  set_target_properties(fuzz_${t} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
  nr_add_fuzz_short(${t} ${CMAKE_CURRENT_LIST_DIR}/fuzz/seeds/${t})
endforeach()

# narrate eval: the WAV reader and resampler, the caption tokeniser and the
# metrics (client/eval/), compiled in again for coverage.
set(NR_E ${CMAKE_SOURCE_DIR}/client/eval)
add_executable(fuzz_eval ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_eval.c ${NR_E}/audio.c ${NR_E}/file.c ${NR_E}/tokenize.c
  ${NR_E}/ngram.c ${NR_E}/bleu.c ${NR_E}/rouge.c ${NR_E}/cider.c ${NR_E}/wer.c)
target_link_libraries(fuzz_eval PRIVATE nr_common m)
target_include_directories(fuzz_eval PRIVATE ${CMAKE_SOURCE_DIR})
target_compile_options(fuzz_eval PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
target_link_options(fuzz_eval PRIVATE -fsanitize=fuzzer,address,undefined)
set_target_properties(fuzz_eval PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
nr_add_fuzz_short(eval ${CMAKE_CURRENT_LIST_DIR}/fuzz/seeds/eval)
# The Kokoro G2P's normalization, punctuation split and chunker, built
# without espeak-ng (not ours to fuzz; it would also make each run slow).
add_executable(fuzz_g2p ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_g2p.c ${NR_M}/speech/g2p.c)
target_link_libraries(fuzz_g2p PRIVATE nr_common Threads::Threads)
target_include_directories(fuzz_g2p PRIVATE ${CMAKE_SOURCE_DIR})
target_compile_options(fuzz_g2p PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
target_link_options(fuzz_g2p PRIVATE -fsanitize=fuzzer,address,undefined)
set_target_properties(fuzz_g2p PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
nr_add_fuzz_short(g2p ${CMAKE_CURRENT_LIST_DIR}/fuzz/seeds/g2p)
# A leak inside libdav1d that libheif 1.15 reaches on an AVIF's alpha item
# (see the file): suppressed for fuzz_heif only.
set_property(TEST fuzz_heif_short APPEND PROPERTY ENVIRONMENT
  "LSAN_OPTIONS=suppressions=${CMAKE_CURRENT_LIST_DIR}/fuzz/lsan_heif.supp")
