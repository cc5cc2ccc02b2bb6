# GPU tests for the CUDA backend (models/cuda/): each op against the CPU
# backend, and the tiny checkpoints (ViT-GPT2, GIT, BLIP, PaliGemma) on cuda:0
# against the PyTorch references
# and the CPU. Built only with NR_CUDA; with no GPU every GPU test skips with
# "no CUDA device: <reason>" and the binary exits 0. Label: gpu.
if(NR_CUDA AND TARGET nr_models)
  nr_add_test(test_cuda SOURCES test_cuda.c test_cuda_families.c model_ref.c LIBS nr_models nr_common Threads::Threads m LABELS gpu TIMEOUT 600)
endif()
