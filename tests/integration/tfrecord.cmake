# TFRecord / tf.Example interoperability with Python's protobuf (both directions).
add_test(NAME integration.tfrecord_python
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_tfrecord_python.py
                 --funnel ${FUNNEL_BIN} --proto-dir ${PROJECT_SOURCE_DIR}/proto
                 --data ${FUNNEL_DATA_DIR})
set_tests_properties(integration.tfrecord_python PROPERTIES TIMEOUT 300)
