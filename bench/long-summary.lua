-- wrk script: summaries of about ten years, each of a random customer (dec_1..dec_$CUSTOMERS) from a
-- random day of 2015 to a random day of 2024, so that the answer cache cannot serve them and most
-- ranges begin and end inside a month.
local customers = tonumber(os.getenv("CUSTOMERS") or "4")

function init(args)
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1000000))
end

function request()
  local path = string.format(
    "/customers/dec_%d/stats/summary?from=2015-%02d-%02d&to=2024-%02d-%02d",
    math.random(1, customers), math.random(1, 12), math.random(1, 28),
    math.random(1, 12), math.random(1, 28))
  return wrk.format("GET", path)
end
