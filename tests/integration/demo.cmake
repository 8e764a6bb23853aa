# funnel demo end to end on MovieLens-100k (skipped when the public data sets
# are absent), and the committed spec configs/features/movielens.json checked
# against the one funnel demo writes for that data.
set(FUNNEL_ML100K_DIR ${FUNNEL_DATA_DIR}/ml-100k)
add_test(NAME integration.demo_cli
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_demo_cli.sh ${FUNNEL_BIN} ${FUNNEL_ML100K_DIR})
add_test(NAME integration.demo_spec
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_demo_spec.sh ${FUNNEL_BIN} ${FUNNEL_ML100K_DIR}
                 ${PROJECT_SOURCE_DIR}/configs/features/movielens.json)
set_tests_properties(integration.demo_cli integration.demo_spec
                     PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)

# Semantic features (--semantic): item embeddings and the leakage-free user-item cosine,
# recomputed in Python from the written files.
add_test(NAME integration.demo_semantic
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_demo_semantic.py
                 --funnel ${FUNNEL_BIN} --data ${FUNNEL_DATA_DIR}
                 --model ${PROJECT_SOURCE_DIR}/models/all-MiniLM-L6-v2)
set_tests_properties(integration.demo_semantic PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
