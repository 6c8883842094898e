-- One counter per connection (BENCH_COUNTER, signed in by its clerk: BENCH_COOKIE and
-- BENCH_CSRF): call-next, then no-show for the ticket called, and so on; a counter left with
-- a called ticket by the phase before (BENCH_START "no-show") starts with its no-show. "nobody waiting"
-- answers are counted apart and followed by another call-next; a refused step is followed
-- by the other one (a refused call-next may mean the counter still has a ticket).
local call_next, no_show
local calling = true

function prepare()
  calling = start ~= "no-show"
  local headers = { ["Cookie"] = cookie, ["X-CSRF-Token"] = csrf }
  local base = "/api/counters/" .. counter
  call_next = wrk.format("POST", base .. "/call-next", headers)
  no_show = wrk.format("POST", base .. "/no-show", headers)
end

function next_request()
  if calling then
    return call_next
  end
  return no_show
end

function on_response(status, body)
  local ok = status >= 200 and status < 300
  if calling then
    if ok and string.find(body, '"ticket":null', 1, true) then
      count("nobody_waiting")
    elseif ok then
      count("called")
      calling = false
    else
      calling = false
    end
  else
    if ok then
      count("resolved")
    end
    calling = true
  end
end
