# funnel index build / search on generated vectors with numpy's exact neighbours as the
# truth: Flat, HNSW, IVF and PQ indexes, --ids, --exact, --json, usage errors, damaged
# and truncated index files.
add_test(NAME integration.index_cli
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_index_cli.py
                 --funnel ${FUNNEL_BIN})
set_tests_properties(integration.index_cli PROPERTIES TIMEOUT 300)
