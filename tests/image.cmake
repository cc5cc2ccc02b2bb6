# Tests for models/image + models/preprocess (decode, EXIF, PIL-exact resize,
# normalize, CLIP/BLIP processors; fixtures from tests/fixtures/make_images.py
# and make_processor_cases.py) and models/tokenizer
# (GPT-2 BPE against tests/fixtures/tokenizer_cases.json). Label: model.
if(TARGET nr_models)
  nr_add_test(test_image SOURCES test_image.c LIBS nr_models nr_test_harness nr_common cjson m LABELS model TIMEOUT 300)
  # TIFF, GIF, BMP, HEIC, AVIF (tests/fixtures/make_image_formats.py).
  nr_add_test(test_image_formats SOURCES test_image_formats.c LIBS nr_models nr_test_harness nr_common cjson LABELS unit TIMEOUT 300)
  nr_add_test(test_tokenizer SOURCES test_tokenizer.c LIBS nr_models nr_test_harness nr_common cjson LABELS model TIMEOUT 120)
endif()
