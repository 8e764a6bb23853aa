-- wrk script for bench/serve.py: POST the JSON Rank request in $FUNNEL_BODY.
wrk.method = "POST"
wrk.body = os.getenv("FUNNEL_BODY") or '{"userId": "196", "pageSize": 10}'
wrk.headers["Content-Type"] = "application/json"
