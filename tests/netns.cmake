# Several hosts (tests/netns/): redis, broker and worker in their own network
# namespaces on veth links; a link cut mid-job. Needs root (ip netns); exits
# 77 (skipped) where namespaces are not permitted. LABELS netns.
add_test(NAME netns_link_cut COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/netns/link_cut.sh ${CMAKE_BINARY_DIR})
set_tests_properties(netns_link_cut PROPERTIES LABELS netns TIMEOUT 120 SKIP_RETURN_CODE 77)
