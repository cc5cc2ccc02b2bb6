# Tests of the CPU backend's weight precisions (cpu:bf16, cpu:int8): kernels
# against exact and F32 products, device strings, caption agreement with
# F32 on the tiny checkpoint. Label: model.
#
# And the CPU kernel paths (models/cpu/dispatch.h): test_kernels_mt,
# test_precision and test_models again once per path with NR_CPU_PATH set
# (test_models_path_avx2, ...; label paths but for test_kernels_mt). A path this CPU lacks is reported skipped:
# cpu_path_probe exits 77 first, ctest's SKIP_RETURN_CODE.
if(TARGET nr_models)
  nr_add_test(test_precision SOURCES test_precision.c LIBS nr_models nr_test_harness nr_common m LABELS model TIMEOUT 600)
  add_executable(cpu_path_probe cpu_path_probe.c)
  target_link_libraries(cpu_path_probe PRIVATE nr_models)
  set_target_properties(cpu_path_probe PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  set(NR_CPU_TEST_PATHS generic)
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
    list(APPEND NR_CPU_TEST_PATHS avx2 avx512 avx512bf16 amx)
  endif()
  foreach(path ${NR_CPU_TEST_PATHS})
    foreach(t test_kernels_mt test_precision test_models)
      if(TARGET ${t})
        add_test(NAME ${t}_path_${path}
          COMMAND sh -c "'$<TARGET_FILE:cpu_path_probe>' ${path} && exec '$<TARGET_FILE:${t}>' --jobs 1")
        # test_precision and test_models per path take 20 s each (minutes
        # under ASan): label "paths", so the sanitizer run (-L 'unit|model')
        # keeps to the kernel tests on every path.
        if(NOT t STREQUAL "test_kernels_mt")
          set(label paths)
        else()
          set(label model)
        endif()
        set_tests_properties(${t}_path_${path} PROPERTIES LABELS ${label} TIMEOUT 900 SKIP_RETURN_CODE 77
          ENVIRONMENT "NR_CPU_PATH=${path};NR_SOURCE_DIR=${CMAKE_SOURCE_DIR};NR_BUILD_DIR=${CMAKE_BINARY_DIR}")
      endif()
    endforeach()
  endforeach()
endif()
