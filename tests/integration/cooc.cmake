# funnel cooc build / neighbours / candidates on MovieLens-100k through funnel demo,
# checked against the same counts made in Python; usage errors, damaged tables (skipped
# when the public data sets are absent).
add_test(NAME integration.cooc_cli
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_cooc_cli.py
                 --funnel ${FUNNEL_BIN} --data ${FUNNEL_DATA_DIR})
set_tests_properties(integration.cooc_cli PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
