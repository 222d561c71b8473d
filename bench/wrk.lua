-- wrk script for bench/run.py: POST a GraphQL body for one session uuid (hot) or a new
-- uuid every request (cold); counts answers that are not 200 with data and no errors.
-- wrk -s bench/wrk.lua URL -- BODY_FILE MODE SEED HOT_UUID [HEADER]
local body_template, mode, seed, hot_uuid
local counter = 0
local threads = {}
bad = 0  -- a global, so that done() can read it from each thread

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "r"))
  body_template = file:read("*a")
  file:close()
  mode = args[2] or "hot"
  seed = tonumber(args[3] or "1")
  hot_uuid = args[4]
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[5] and args[5] ~= "" then
    local name, value = args[5]:match("^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
end

function request()
  local uuid = hot_uuid
  if mode == "cold" then
    counter = counter + 1
    uuid = string.format("%08x-%04x-4%03x-8%03x-%012x", seed, counter % 65536,
      math.floor(counter / 65536) % 4096, math.random(0, 4095), counter)
  end
  return wrk.format(nil, nil, nil, (body_template:gsub("__UUID__", uuid)))
end

function response(status, headers, body)
  if status ~= 200 or body:find('"errors"', 1, true) or not body:find('"data"', 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local bad_total = 0
  for _, thread in ipairs(threads) do
    bad_total = bad_total + (thread:get("bad") or 0)
  end
  io.write(string.format(
    "RESULT %d %.2f %.3f %.3f %d %d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout,
    bad_total))
end
