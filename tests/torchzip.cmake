# Tests for the PyTorch zip checkpoint reader (models/io/torchzip.c, pickle.c)
# on the fixtures tests/fixtures/make_torch_bins.py writes. Label: model.
if(TARGET nr_models)
  nr_add_test(test_torchzip SOURCES test_torchzip.c LIBS nr_models nr_common LABELS model TIMEOUT 120)
endif()
