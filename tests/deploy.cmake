# deploy/: the systemd units, compose file, Kubernetes manifests, Dockerfile
# and example settings checked against the programs of this build
# (deploy/check.sh says what it checks and what it skips).
add_test(NAME deploy_check COMMAND ${CMAKE_SOURCE_DIR}/deploy/check.sh --build-dir ${CMAKE_BINARY_DIR})
set_tests_properties(deploy_check PROPERTIES LABELS deploy TIMEOUT 300)
