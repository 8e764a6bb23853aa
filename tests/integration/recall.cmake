# funnel recall eval on MovieLens-100k through funnel demo: recall@100/500 of the
# popularity and co-occurrence channels and of their merge, recomputed in Python from the
# records; the ann_user channel with the encoder's item embeddings when the model is
# present; usage errors (skipped when the public data sets are absent).
add_test(NAME integration.recall_eval
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_recall_eval.py
                 --funnel ${FUNNEL_BIN} --data ${FUNNEL_DATA_DIR}
                 --model ${PROJECT_SOURCE_DIR}/models/all-MiniLM-L6-v2)
set_tests_properties(integration.recall_eval PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
