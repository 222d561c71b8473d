-- wrk script for bench/fleet.py: poll sessions round-robin (one GraphQL POST each), count the
-- error answers (not 200 with "data" and no "errors"), and keep the ages in extensions.cache
-- in 0.1 s buckets. Each thread starts at its own offset in the list.
-- wrk -s bench/fleet.lua URL -- UUID_FILE OFFSET HEADER
local bodies = {}
local count, index = 0, 0
local threads = {}
-- Globals, so that done() can read them from each thread.
error_answers = 0
aged = 0
ages = {}
first_error = ""
thread_id = 0

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    if line ~= "" then
      count = count + 1
      bodies[count] = '{"query":"{ session(uuid: \\"' .. line .. '\\") { status attempts { status } } }"}'
    end
  end
  index = tonumber(args[2] or "0") + thread_id * 7919
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  local name, value = args[3]:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end

function request()
  index = index + 1
  return wrk.format(nil, nil, nil, bodies[(index % count) + 1])
end

function response(status, headers, body)
  body = body or ""
  if status ~= 200 or body:find('"errors"', 1, true) or not body:find('"data"', 1, true) then
    error_answers = error_answers + 1
    if first_error == "" then
      first_error = (status .. " " .. body:sub(1, 400)):gsub("%s+", " ")
    end
  end
  local age = body:match('"age":(%-?[%d%.eE+]+)')
  if age then
    local bucket = math.floor((tonumber(age) or 0) * 10)
    if bucket < 0 then bucket = 0 end
    if bucket > 36000 then bucket = 36000 end
    ages[bucket] = (ages[bucket] or 0) + 1
    aged = aged + 1
  end
end

function done(summary, latency, requests)
  local errors, with_age, merged, first = 0, 0, {}, ""
  for _, thread in ipairs(threads) do
    errors = errors + (thread:get("error_answers") or 0)
    with_age = with_age + (thread:get("aged") or 0)
    for bucket, n in pairs(thread:get("ages") or {}) do
      merged[bucket] = (merged[bucket] or 0) + n
    end
    if first == "" then first = thread:get("first_error") or "" end
  end
  local parts = {}
  for bucket, n in pairs(merged) do
    table.insert(parts, bucket .. ":" .. n)
  end
  local e = summary.errors
  io.write(string.format(
    "FLEET requests=%d seconds=%.3f socket_errors=%d error_answers=%d aged=%d\n",
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout,
    errors, with_age))
  io.write("AGES " .. table.concat(parts, ",") .. "\n")
  io.write("FIRST_ERROR " .. first .. "\n")
end
