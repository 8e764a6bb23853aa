# funnel features / funnel tfrecord: help, usage, spec and data errors, libffm output.
add_test(NAME integration.features_cli
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_features_cli.sh ${FUNNEL_BIN})
