-- Issue tickets as a kiosk: POST /api/halls/<BENCH_HALL>/tickets with the connection's
-- kiosk token (BENCH_TOKEN), the matters of BENCH_SERVICES in turn. As the kiosk page does,
-- each request carries an Idempotency-Key of its own when BENCH_KEYS is set (a prefix new
-- to each phase, then the connection and the request's number). The ceiling app answers
-- the same requests (BENCH_QUERY, e.g. "?statements=4", is added to their path), without
-- keys.
local bodies = {}
local path
local headers
local keys = os.getenv("BENCH_KEYS")
local turn = 0
local sent = 0

function prepare()
  path = "/api/halls/" .. os.getenv("BENCH_HALL") .. "/tickets" .. (os.getenv("BENCH_QUERY") or "")
  headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }
  for service in string.gmatch(os.getenv("BENCH_SERVICES") or "", "%d+") do
    bodies[#bodies + 1] = '{"service_id":' .. service .. "}"
  end
  turn = thread_index -- connections start on different matters
end

function next_request()
  turn = turn % #bodies + 1
  if keys then
    sent = sent + 1
    headers["Idempotency-Key"] = keys .. "-" .. thread_index .. "-" .. sent
  end
  return wrk.format("POST", path, headers, bodies[turn])
end
