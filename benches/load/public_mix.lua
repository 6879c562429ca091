-- wrk script for quorumgate's public endpoints: classifies every answer and prints one JSON
-- line at the end, which tests/integration/load.rs and benches/load/public_load.py parse.
--
--   wrk -c150 -t1 -d30s -s benches/load/public_mix.lua http://127.0.0.1:PORT -- health app
--   wrk -c50  -t1 -d30s -s benches/load/public_mix.lua http://127.0.0.1:PORT -- mix
--
-- `health CHECK`: GET /v1/health/CHECK only; an answer is `healthy` (200 "HEALTHY …"),
-- `unhealthy` (503 "UNHEALTHY …") or `bad` (anything else).
-- `mix`: GET /v1/status and GET /metrics in turn; `status` or `metrics`: that one only.
-- For these, 200 is `ok`, anything else `bad`.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1] or "health"
  check = args[2] or "app"
  healthy, unhealthy, ok, bad = 0, 0, 0, 0
  n = 0
  if mode == "health" then
    health_req = wrk.format("GET", "/v1/health/" .. check)
  else
    status_req = wrk.format("GET", "/v1/status")
    metrics_req = wrk.format("GET", "/metrics")
  end
end

function request()
  if mode == "health" then
    return health_req
  end
  n = n + 1
  if mode == "metrics" or (mode == "mix" and n % 2 == 0) then
    return metrics_req
  end
  return status_req
end

function response(status, headers, body)
  if mode == "health" then
    if status == 200 and string.sub(body, 1, 8) == "HEALTHY " then
      healthy = healthy + 1
    elseif status == 503 and string.sub(body, 1, 10) == "UNHEALTHY " then
      unhealthy = unhealthy + 1
    else
      bad = bad + 1
    end
  elseif status == 200 then
    ok = ok + 1
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local t = { healthy = 0, unhealthy = 0, ok = 0, bad = 0 }
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do
      t[k] = t[k] + (thread:get(k) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"healthy":%d,"unhealthy":%d,"ok":%d,"bad":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, t.healthy, t.unhealthy, t.ok, t.bad,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
