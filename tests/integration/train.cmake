# funnel train / funnel eval end to end: FFM and FM on the MovieLens-100k demo
# data and the Criteo libffm sample, and the commands' usage errors (skipped
# when the public data sets are absent).
add_test(NAME integration.train_cli
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_train_cli.sh ${FUNNEL_BIN} ${FUNNEL_DATA_DIR})
set_tests_properties(integration.train_cli PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)

# funnel eval's AUC and log loss against scikit-learn's on the same predictions (1e-9).
add_test(NAME integration.metrics_sklearn
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_metrics_sklearn.py
                 --funnel ${FUNNEL_BIN} --data ${FUNNEL_DATA_DIR})
set_tests_properties(integration.metrics_sklearn PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)

# DeepFM against PyTorch: a PyTorch-trained model scores the same in funnel, and funnel's
# training steps are PyTorch's (python3-torch).
add_test(NAME integration.deepfm_torch
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_deepfm_torch.py
                 --funnel ${FUNNEL_BIN} --data ${FUNNEL_DATA_DIR})
set_tests_properties(integration.deepfm_torch PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
