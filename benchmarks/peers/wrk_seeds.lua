-- wrk's request script for bench_peers.py: POST <path> with a JSON body naming a new seed each time,
-- and the run's figures as one JSON line at the end.
--   wrk -t1 -c32 -d4s -s wrk_seeds.lua http://127.0.0.1:8000 -- /generate '{"seed": %d}' 1000000
-- (args: the path, the body with %d where the seed goes, the first seed; "Accept: image/png").
local path, template, seed

function init(args)
  path, template, seed = args[1], args[2], tonumber(args[3])
end

function request()
  seed = seed + 1
  return wrk.format("POST", path, {["Content-Type"] = "application/json", ["Accept"] = "image/png"},
                    string.format(template, seed))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
