# Tests of the CPU backend's weight precisions (cpu:bf16, cpu:int8): kernels
# against exact and F32 products, device strings, caption agreement with
# F32 on the tiny checkpoint and the test photos. Label: model.
if(TARGET nr_models)
  nr_add_test(test_precision SOURCES test_precision.c LIBS nr_models nr_test_harness nr_common m LABELS model TIMEOUT 600)
endif()
