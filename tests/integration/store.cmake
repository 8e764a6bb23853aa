# funnel store load / get / dump from the command line: help, usage and data
# errors, the version rule on reload, and MovieLens-100k users end to end
# (that part is skipped when the public data sets are absent).
add_test(NAME integration.store_cli
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_store_cli.sh ${FUNNEL_BIN}
                 ${FUNNEL_DATA_DIR}/ml-100k)
set_tests_properties(integration.store_cli PROPERTIES TIMEOUT 300)
