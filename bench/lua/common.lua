-- Shared part of every bench.run wrk script; bench/wrk.py puts it before the phase's
-- own part (issue.lua, call.lua, get.lua), which defines:
--   prepare()                 per connection, once, after setup() handed it its values
--   next_request()            the next request (a string made with wrk.format)
--   on_response(status, body) what the answer means for the phase (optional)
--
-- Run with -t N -c N: each wrk thread owns one connection, so the thread's globals are
-- that connection's state.
--
-- Settings (environment):
--   BENCH_EACH         names of per-connection values, e.g. "TOKEN COUNTER"; connection i
--                      gets line i (cycling) of BENCH_<NAME> as the global <name> (lower case)
--   BENCH_INTERVAL_MS  > 0: each connection sends one request per interval (a fixed rate
--                      of connections * 1000 / interval per second; a late answer delays the
--                      next request, there is no catching up); 0: as fast as answers come
--   BENCH_IDS          "1": keep the "id" each 2xx answer starts with, for the checks

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local now_buffer = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, now_buffer)
  return tonumber(now_buffer.tv_sec) * 1000 + tonumber(now_buffer.tv_nsec) / 1e6
end

local function lines(text)
  local out = {}
  for line in string.gmatch(text or "", "[^\n]+") do
    out[#out + 1] = line
  end
  return out
end

local MAX_SAMPLES = 3
local KEEP_IDS = os.getenv("BENCH_IDS") == "1"
local INTERVAL_MS = tonumber(os.getenv("BENCH_INTERVAL_MS") or "0") or 0

-- Per-connection state (each thread's own globals), read back by done().
thread_index = 0
threads_total = 0
status_2xx, status_3xx, status_4xx, status_5xx = 0, 0, 0, 0
samples = {}
ids = {}
counts = {}

function count(name, n)
  counts[name] = (counts[name] or 0) + (n or 1)
end

-- setup() and done() run in their own environment; it keeps the threads to read them back.
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
  local index = #threads
  thread:set("thread_index", index)
  for name in string.gmatch(os.getenv("BENCH_EACH") or "", "%S+") do
    local values = lines(os.getenv("BENCH_" .. name))
    if #values == 0 then
      error("BENCH_" .. name .. " is empty")
    end
    thread:set(string.lower(name), values[(index - 1) % #values + 1])
  end
end

function init(args)
  threads_total = tonumber(os.getenv("BENCH_CONNECTIONS") or "1") or 1
  prepare()
end

if INTERVAL_MS > 0 then
  local next_due = nil
  function delay()
    local now = now_ms()
    if next_due == nil then
      -- Spread the connections' first requests over one interval.
      next_due = now + INTERVAL_MS * (thread_index - 1) / threads_total
    end
    if next_due < now then
      next_due = now
    end
    local wait = next_due - now
    next_due = next_due + INTERVAL_MS
    return math.floor(wait)
  end
end

function request()
  return next_request()
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    status_2xx = status_2xx + 1
    if KEEP_IDS then
      local id = string.match(body, '^{"id":(%d+)')
      if id then
        ids[#ids + 1] = tonumber(id)
      end
    end
  else
    if status >= 500 then
      status_5xx = status_5xx + 1
    elseif status >= 400 then
      status_4xx = status_4xx + 1
    else
      status_3xx = status_3xx + 1
    end
    if #samples < MAX_SAMPLES then
      samples[#samples + 1] = status .. " " .. string.sub(body or "", 1, 200)
    end
  end
  if on_response then
    on_response(status, body or "")
  end
end

local function json_string(text)
  text = string.gsub(text, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. text .. '"'
end

local function json_numbers(list)
  local parts = {}
  for i, value in ipairs(list) do
    parts[i] = string.format("%d", value)
  end
  return "[" .. table.concat(parts, ",") .. "]"
end

local function latencies(summary, latency)
  if summary.requests == 0 then
    return "null"
  end
  local function us(value)
    return string.format("%d", value)
  end
  return '{"p50":' .. us(latency:percentile(50.0)) .. ',"p90":' .. us(latency:percentile(90.0))
    .. ',"p99":' .. us(latency:percentile(99.0)) .. ',"max":' .. us(latency.max)
    .. ',"mean":' .. us(latency.mean) .. "}"
end

function done(summary, latency, requests)
  local status = { 0, 0, 0, 0 }
  local all_samples, all_ids, all_counts = {}, {}, {}
  for _, thread in ipairs(threads) do
    status[1] = status[1] + thread:get("status_2xx")
    status[2] = status[2] + thread:get("status_3xx")
    status[3] = status[3] + thread:get("status_4xx")
    status[4] = status[4] + thread:get("status_5xx")
    for _, sample in ipairs(thread:get("samples")) do
      if #all_samples < MAX_SAMPLES then
        all_samples[#all_samples + 1] = json_string(sample)
      end
    end
    for _, id in ipairs(thread:get("ids")) do
      all_ids[#all_ids + 1] = id
    end
    for name, n in pairs(thread:get("counts")) do
      all_counts[name] = (all_counts[name] or 0) + n
    end
  end
  local counted = {}
  for name, n in pairs(all_counts) do
    counted[#counted + 1] = json_string(name) .. ":" .. string.format("%d", n)
  end
  local e = summary.errors
  local out = {
    '"duration_us":' .. string.format("%d", summary.duration),
    '"requests":' .. string.format("%d", summary.requests),
    '"socket_errors":{"connect":' .. e.connect .. ',"read":' .. e.read .. ',"write":'
      .. e.write .. ',"timeout":' .. e.timeout .. "}",
    '"status":{"2xx":' .. status[1] .. ',"3xx":' .. status[2] .. ',"4xx":' .. status[3]
      .. ',"5xx":' .. status[4] .. "}",
    '"latency_us":' .. latencies(summary, latency),
    '"samples":[' .. table.concat(all_samples, ",") .. "]",
    '"ids":' .. json_numbers(all_ids),
    '"counts":{' .. table.concat(counted, ",") .. "}",
  }
  io.write("BENCH_RESULT {" .. table.concat(out, ",") .. "}\n")
end
