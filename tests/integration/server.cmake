# funneld over real HTTP: health endpoints, 404/405, clean shutdown on
# SIGTERM/SIGINT; and scripts/run-demo (what `make run` does) end to end.
add_test(NAME integration.server_health
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_server_health.sh $<TARGET_FILE:funneld>)
add_test(NAME integration.server_run_demo
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_server_run_demo.sh ${PROJECT_SOURCE_DIR}
                 ${PROJECT_BINARY_DIR} ${FUNNEL_DATA_DIR}/ml-100k)
set_tests_properties(integration.server_health integration.server_run_demo PROPERTIES TIMEOUT 300)
