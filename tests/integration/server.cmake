# funneld over real HTTP: health endpoints, 404/405, clean shutdown on
# SIGTERM/SIGINT; and scripts/run-demo (what `make run` does) end to end.
add_test(NAME integration.server_health
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_server_health.sh $<TARGET_FILE:funneld>)
add_test(NAME integration.server_run_demo
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_server_run_demo.sh ${PROJECT_SOURCE_DIR}
                 ${PROJECT_BINARY_DIR} ${FUNNEL_DATA_DIR}/ml-100k)
set_tests_properties(integration.server_health PROPERTIES TIMEOUT 300)
# run-demo embeds 1,682 item texts with the encoder (minutes under the sanitizers).
set_tests_properties(integration.server_run_demo PROPERTIES TIMEOUT 1800)

# A test of funneld's pipeline on MovieLens-100k (funnel, funneld, the data, the protos);
# without the data it exits 77, a skip.
function(funnel_pipeline_test name)
  add_test(NAME integration.${name}
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_${name}.py
                   --funnel $<TARGET_FILE:funnel> --funneld $<TARGET_FILE:funneld>
                   --data ${FUNNEL_DATA_DIR} --proto ${PROJECT_SOURCE_DIR}/proto)
  set_tests_properties(integration.${name} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
endfunction()

# Rank over HTTP/1.1 end to end on MovieLens-100k (demo data, store, FFM, co-occurrence):
# --check on good and broken configurations, JSON and protobuf requests, every bad input.
funnel_pipeline_test(server_rank)

# funneld's gRPC transport (h2c) against python3-grpcio with stubs generated at test time:
# health checks, unknown methods, size and connection limits, deadlines, concurrency,
# garbage on the socket, clean shutdown.
add_test(NAME integration.server_grpc
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_server_grpc.py
                 --funneld $<TARGET_FILE:funneld> --proto ${PROJECT_SOURCE_DIR}/proto)
set_tests_properties(integration.server_grpc PROPERTIES TIMEOUT 300)

# Hot reload (SIGHUP under load; a broken configuration keeps the running pipeline) and
# deadlines (a short gRPC deadline skips the rank stage, named in degraded).
funnel_pipeline_test(server_reload)

# The worker pool and /metrics under load: 200 concurrent Rank calls over HTTP and over gRPC
# with /healthz answering meanwhile, clients that go away, a full queue answering "server
# busy" (--workers 1 --queue 1), the Prometheus text of /metrics, SIGTERM during load.
funnel_pipeline_test(server_load)

# The listwise reranker in the pipeline: `funnel rerank lists` (rows and grades checked
# against the log), a reranker that beats the rank stage's order on the later test split,
# funneld's reranker scores equal to the lists' (serving parity), the page following them,
# queries not reranked, a tight budget skipping rerank, broken rerank settings named.
funnel_pipeline_test(server_rerank)

# funneld's HTTP/1.1 connections with raw TCP clients (no data needed): a request not received
# whole within --read-timeout-s gets 408 and the close while others are served, an idle
# keep-alive connection is closed silently at --idle-timeout-s, --max-connections answers a
# further connection 503 and counts it in /metrics.
add_test(NAME integration.server_http_limits
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_server_http_limits.py
                 --funneld $<TARGET_FILE:funneld>)
set_tests_properties(integration.server_http_limits PROPERTIES TIMEOUT 300)
