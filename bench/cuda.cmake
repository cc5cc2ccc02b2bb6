# bench_cuda: ViT-B/16 images/s and GPT-2 ms/step on a GPU through the CUDA
# backend at batch 1..64 (a build target, not a test; needs a GPU to run).
# Compare with bench/bench_cuda_torch.py. Built only with NR_CUDA.
if(NR_CUDA AND TARGET nr_models)
  add_executable(bench_cuda ${CMAKE_CURRENT_SOURCE_DIR}/bench_cuda.c ${CMAKE_CURRENT_SOURCE_DIR}/random_weights.c)
  target_link_libraries(bench_cuda PRIVATE nr_models nr_common m)
endif()
