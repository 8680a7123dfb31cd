-- The requests of one bench run, and the report line of report.lua.
--
--   wrk -s requests.lua URL -- METHOD [BODY_FILE|-] [IDS_FILE]
--
-- METHOD with the JSON body read from BODY_FILE ("-" or none: no body).
-- With IDS_FILE (one entry id a line), the requests go to
-- /addresses/{id} for each id in turn; without it, to URL's path.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local requests = {}
local sent = 0

local function read_file(name)
  local file = assert(io.open(name, "rb"))
  local data = file:read("*a")
  file:close()
  return data
end

function init(args)
  local method = args[1] or "GET"
  local body = nil
  if args[2] and args[2] ~= "-" then
    body = read_file(args[2])
    wrk.headers["Content-Type"] = "application/json"
  end
  if args[3] then
    for id in io.lines(args[3]) do
      requests[#requests + 1] = wrk.format(method, "/addresses/" .. id, nil, body)
    end
  else
    requests[1] = wrk.format(method, nil, nil, body)
  end
end

function request()
  sent = sent % #requests + 1
  return requests[sent]
end
