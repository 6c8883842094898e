-- GET the connection's PATH (BENCH_EACH "PATH") or BENCH_PATH, with the connection's
-- device token (BENCH_TOKEN) when it has one.
local prepared

function prepare()
  local headers = {}
  if token then
    headers["Authorization"] = "Bearer " .. token
  end
  prepared = wrk.format("GET", path or os.getenv("BENCH_PATH"), headers)
end

function next_request()
  return prepared
end
