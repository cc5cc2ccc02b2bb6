# Tests for proto/: the codec (unit) and, with -DNR_FUZZ=ON under clang, a
# libFuzzer target for the decoder (ctest runs it briefly, label fuzz).
nr_add_test(test_proto SOURCES test_proto.c LIBS nr_proto LABELS unit)

option(NR_FUZZ "Build libFuzzer targets (clang only)" OFF)
if(NR_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(WARNING "NR_FUZZ needs clang (libFuzzer); fuzz targets skipped")
  else()
    # proto.c is compiled again into the target so that the code under test
    # carries the fuzzer's coverage instrumentation; the linker then takes
    # nr_proto_* from that copy and only the dependencies from nr_proto.
    add_executable(fuzz_proto fuzz/fuzz_proto.c ${CMAKE_SOURCE_DIR}/proto/proto.c)
    target_link_libraries(fuzz_proto PRIVATE nr_proto)
    target_compile_options(fuzz_proto PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(fuzz_proto PRIVATE -fsanitize=fuzzer,address,undefined)
    set_target_properties(fuzz_proto PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
    nr_add_fuzz_short(proto ${CMAKE_CURRENT_LIST_DIR}/fuzz/corpus)
  endif()
endif()
