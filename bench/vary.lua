-- wrk script: every request gets a realistic User-Agent (about 7,000
-- distinct strings: browser builds vary, as in real traffic), its own
-- X-Forwarded-For address and a sub1, so the click path does real work.
local uas = {
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.%d Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.%d.0 Mobile Safari/537.36",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.%d.0 Safari/537.36 Edg/124.0.0.0",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.%d Safari/605.1.15",
  "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.%d.0 Safari/537.36",
  "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.%d",
  "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.%d Mobile/15E148 Safari/604.1",
}
local builds = { 60, 3000, 3000, 60, 3000, 100, 60 }
-- Each wrk thread runs its own copy of this script: without an offset both
-- would send the same visitors in the same order, and every click would
-- come twice (a duplicate, as the quality layer rightly says).
local threads = 0
setup = function(thread)
  thread:set("offset", threads * 1000003)
  threads = threads + 1
end
local n = 0
-- An optional script argument (`wrk ... -s vary.lua URL -- OFFSET`) moves
-- the sequence further, for several wrk processes at once (bench/nodes.sh).
init = function(args)
  n = (offset or 0) + (tonumber(args[1]) or 0)
end
request = function()
  n = n + 1
  local ip = string.format("%d.%d.%d.%d", 1 + (n * 7) % 223, (n * 13) % 256, (n * 31) % 256, 1 + n % 254)
  local k = (n % #uas) + 1
  local headers = {
    ["User-Agent"] = string.format(uas[k], (n * 17) % builds[k]),
    ["X-Forwarded-For"] = ip,
    ["Accept-Language"] = "en-US,en;q=0.9",
    ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
  }
  return wrk.format("GET", "/s/pool?sub1=src" .. (n % 100), headers)
end
