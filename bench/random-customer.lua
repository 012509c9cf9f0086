-- wrk script: every request asks for a random customer (cust_1..cust_$CUSTOMERS) from a random
-- start day of the generated range (2024-09-03 .. 2024-09-30) to the end: no two requests in a row
-- are likely to be the same, so the answer cache cannot serve them.
-- ROUTE=stats (the days) or ROUTE=summary.
local customers = tonumber(os.getenv("CUSTOMERS") or "10000")
local suffix = os.getenv("ROUTE") == "summary" and "/summary" or ""

function init(args)
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1000000))
end

function request()
  local customer = math.random(1, customers)
  local day = math.random(3, 30)
  local path = string.format("/customers/cust_%d/stats%s?from=2024-09-%02d", customer, suffix, day)
  return wrk.format("GET", path)
end
