-- Issue tickets as a kiosk: POST /api/halls/<BENCH_HALL>/tickets with the connection's
-- kiosk token (BENCH_TOKEN), the matters of BENCH_SERVICES in turn. The ceiling app answers
-- the same requests (BENCH_QUERY, e.g. "?statements=4", is added to their path).
local prepared = {}
local turn = 0

function prepare()
  local path = "/api/halls/" .. os.getenv("BENCH_HALL") .. "/tickets" .. (os.getenv("BENCH_QUERY") or "")
  local headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }
  for service in string.gmatch(os.getenv("BENCH_SERVICES") or "", "%d+") do
    prepared[#prepared + 1] = wrk.format("POST", path, headers, '{"service_id":' .. service .. "}")
  end
  turn = thread_index -- connections start on different matters
end

function next_request()
  turn = turn % #prepared + 1
  return prepared[turn]
end
