-- wrk script for benches/load.sh: GET /jwt/v1/accounts/<key> for a random key from a file.
--   wrk ... -s benches/random_get.lua http://127.0.0.1:PORT -- /path/to/keys.txt
-- Requests are formatted once in init(), so wrk spends no time building them.
-- done() prints one machine-readable line: RESULT rps=... p50_us=... p99_us=... ...

local reqs = {}

function init(args)
  local path = args[1] or error("usage: -- <keys file>")
  for key in io.lines(path) do
    if #key > 0 then
      reqs[#reqs + 1] = wrk.format("GET", "/jwt/v1/accounts/" .. key)
    end
  end
  if #reqs == 0 then error("no keys in " .. path) end
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0))
end

function request()
  return reqs[math.random(#reqs)]
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d rps=%.0f p50_us=%d p90_us=%d p99_us=%d max_us=%d non2xx=%d sock_errors=%d\n",
    summary.requests, summary.requests / secs,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(90)),
    math.floor(latency:percentile(99)), math.floor(latency.max),
    e.status, e.connect + e.read + e.write + e.timeout))
end
