-- wrk script for bench/api.sh: one request mix per run, chosen by API_MODE.
--   fetch   GET Calls/{sid}.json, a random one of the CALLS seeded sids (bench/api-seed.sql names
--           them CA + the row number in 32 hex digits)
--   list    GET the URIs listed in API_URIS (a file, one path per line), in turn
--   create  POST IncomingPhoneNumbers.json, a number never used before in this run
-- Every request carries Basic auth (API_AUTH, already base64). At the end it prints one line:
--   WRK_RESULT requests=.. seconds=.. rps=.. p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. errors=.. non2xx=..

local mode = os.getenv("API_MODE") or "fetch"
local account = os.getenv("API_ACCOUNT")
local auth = "Basic " .. os.getenv("API_AUTH")
local calls = tonumber(os.getenv("API_CALLS") or "100000")
local base = "/2010-04-01/Accounts/" .. account

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
   table.insert(threads, thread)
end

local uris = {}
local next_uri = 0
local seq = 0

function init(args)
   -- `id` is set by setup() in this thread's own Lua state.
   math.randomseed(os.time() * 100 + (id or 0))
   wrk.headers["Authorization"] = auth
   if mode == "list" then
      for line in io.lines(os.getenv("API_URIS")) do
         if #line > 0 then table.insert(uris, line) end
      end
      -- Threads start at different places in the list.
      next_uri = ((id or 1) - 1) % #uris
   elseif mode == "create" then
      wrk.method = "POST"
      wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
   end
end

function request()
   if mode == "fetch" then
      local n = math.random(1, calls)
      return wrk.format(nil, string.format("%s/Calls/CA%032x.json", base, n))
   elseif mode == "list" then
      next_uri = next_uri % #uris + 1
      return wrk.format(nil, uris[next_uri])
   else
      -- +1 (3-digit area from the run and the thread) (7-digit sequence): distinct across threads
      -- and across runs against the same database (API_RUN differs per run).
      seq = seq + 1
      local area = 200 + (tonumber(os.getenv("API_RUN") or "0") * 16 + (id or 0)) % 800
      local body = string.format("PhoneNumber=%%2B1%03d%07d&VoiceUrl=http%%3A%%2F%%2F127.0.0.1%%2Fvoice", area, seq)
      return wrk.format(nil, base .. "/IncomingPhoneNumbers.json", nil, body)
   end
end

function done(summary, latency, requests)
   local seconds = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "WRK_RESULT requests=%d seconds=%.2f rps=%.0f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f errors=%d non2xx=%d\n",
      summary.requests, seconds, summary.requests / seconds,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
      latency.max / 1000, e.connect + e.read + e.write + e.timeout, e.status))
end
