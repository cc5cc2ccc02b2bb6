# models/fetch.sh against a local stand-in for the Hugging Face Hub
# (tests/fixtures/hub_standin.py on loopback; no network needed): listing,
# conversion pull requests, shards, gated repositories, resumed and bad
# downloads, exit codes. Skipped (77) without python3 or curl.
add_test(NAME fetch COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/fetch_test.sh)
set_tests_properties(fetch PROPERTIES LABELS integration TIMEOUT 300 SKIP_RETURN_CODE 77)
