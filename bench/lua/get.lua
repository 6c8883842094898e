-- GET BENCH_PATH with the connection's device token (BENCH_TOKEN).
local prepared

function prepare()
  prepared = wrk.format("GET", os.getenv("BENCH_PATH"), { ["Authorization"] = "Bearer " .. token })
end

function next_request()
  return prepared
end
