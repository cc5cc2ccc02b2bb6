# Fuzzers (libFuzzer, clang, -DNR_FUZZ=ON; see tests/fuzz/README.md): the
# safetensors and torch zip readers, config.json reader, image decode path, tokenizers and
# encoder-states frame parser. The code under test is compiled into each
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
set(NR_FUZZ_image_SOURCES ${NR_M}/image.c ${NR_M}/preprocess.c)
set(NR_FUZZ_tokenizer_SOURCES ${NR_M}/tokenizer.c ${NR_M}/text/cleanup.c)
set(NR_FUZZ_states_SOURCES ${NR_M}/states.c ${NR_M}/tensor.c)
set(NR_FUZZ_wordpiece_SOURCES ${NR_M}/text/wordpiece.c ${NR_M}/text/cleanup.c)
set(NR_FUZZ_gemma_tokenizer_SOURCES ${NR_M}/text/gemma_tokenizer.c)
foreach(t safetensors torchzip config image tokenizer states wordpiece gemma_tokenizer)
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
