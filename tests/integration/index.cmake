# funnel index build / search on generated vectors with numpy's exact neighbours as the
# truth: Flat, HNSW, IVF and PQ indexes, --ids, --exact, --json, usage errors, damaged
# and truncated index files.
add_test(NAME integration.index_cli
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_index_cli.py
                 --funnel ${FUNNEL_BIN})
set_tests_properties(integration.index_cli PROPERTIES TIMEOUT 300)
# funnel index build --store and index add: items of a feature store loaded by funnel store
# load under their store numbers, own-vector search, adds of later items, --vector-key,
# dimension/no-vector/no-item errors, and --text-key through the encoder (skipped when
# models/all-MiniLM-L6-v2 is absent).
add_test(NAME integration.index_store
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_index_store.py
                 --funnel ${FUNNEL_BIN} --model ${PROJECT_SOURCE_DIR}/models/all-MiniLM-L6-v2)
set_tests_properties(integration.index_store PROPERTIES TIMEOUT 300)
