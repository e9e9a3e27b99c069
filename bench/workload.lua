-- wrk script for the Tasks API benchmark.
--
-- BENCH_DATA names a Lua file (written by bench/run.py) returning
--   { workload = "list"|"get"|"create"|"toggle"|"mixed"|"search"|"filter"|"sort"|"list-one"
--                |"mcp-list"|"mcp-add"|"update"|"create-idem"|"toggle-idem",
--     query = "<query string of search, filter, sort>",
--     tokens = { "<jwt>", ... }, ids = { { <task id>, ... }, ... } }
-- where ids[i] are task ids owned by the user of tokens[i].
-- Consecutive requests of a connection go to different users: each thread walks the user list
-- from its own offset. done() prints one line "BENCH_RESULT {json}" for the runner to parse.

local data
local users
local counter = 0
local threads = {}
local key_prefix
local keys_made = 0

local CREATE_BODY = '{"title": "Benchmark task", "description": "Written by the load generator"}'
-- One MCP tools/call per POST to /mcp: the transport is stateless, so no initialize is needed.
local MCP_LIST_BODY = '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", '
   .. '"params": {"name": "list_tasks", "arguments": {}}}'
local MCP_ADD_BODY = '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", '
   .. '"params": {"name": "add_task", "arguments": ' .. CREATE_BODY .. '}}'

-- Idempotency keys must differ across threads AND across wrk runs (warm-up, measured runs), or
-- a key would be replayed: each thread draws its own prefix from the kernel.
local function random_hex(bytes)
   local source = assert(io.open("/dev/urandom", "rb"))
   local raw = source:read(bytes)
   source:close()
   return (raw:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function fresh_key()
   keys_made = keys_made + 1
   return key_prefix .. "-" .. keys_made
end

function setup(thread)
   thread:set("thread_number", #threads)
   table.insert(threads, thread)
end

function init(args)
   data = dofile(os.getenv("BENCH_DATA"))
   users = #data.tokens
   -- thread_number is set per thread by setup(); unset when wrk runs without it.
   local number = tonumber(thread_number) or 0
   counter = number * 7919
   math.randomseed(12345 + number)
   key_prefix = random_hex(8)
end

local function next_user()
   counter = counter + 1
   return (counter % users) + 1
end

local function headers_for(user, with_body)
   local headers = { ["Authorization"] = "Bearer " .. data.tokens[user] }
   if with_body then
      headers["Content-Type"] = "application/json"
   end
   return headers
end

local function pick_id(user)
   local ids = data.ids[user]
   return ids[math.random(#ids)]
end

local builders = {}

builders.list = function(user)
   return wrk.format("GET", "/api/tasks", headers_for(user, false))
end

builders.get = function(user)
   return wrk.format("GET", "/api/tasks/" .. pick_id(user), headers_for(user, false))
end

builders.create = function(user)
   return wrk.format("POST", "/api/tasks", headers_for(user, true), CREATE_BODY)
end

builders.toggle = function(user)
   return wrk.format("PATCH", "/api/tasks/" .. pick_id(user) .. "/complete", headers_for(user, false))
end

builders.mixed = function(user)
   local roll = math.random(100)
   if roll <= 60 then
      return builders.list(user)
   elseif roll <= 80 then
      return builders.get(user)
   elseif roll <= 90 then
      return builders.create(user)
   end
   return builders.toggle(user)
end

-- What versions, idempotency keys and the change feed cost: a title change, and create and
-- toggle each with a fresh Idempotency-Key (a first request: its response is stored).
builders.update = function(user)
   local body = '{"title": "Renamed task ' .. counter .. '"}'
   return wrk.format("PUT", "/api/tasks/" .. pick_id(user), headers_for(user, true), body)
end

builders["create-idem"] = function(user)
   local headers = headers_for(user, true)
   headers["Idempotency-Key"] = fresh_key()
   return wrk.format("POST", "/api/tasks", headers, CREATE_BODY)
end

builders["toggle-idem"] = function(user)
   local headers = headers_for(user, false)
   headers["Idempotency-Key"] = fresh_key()
   return wrk.format("PATCH", "/api/tasks/" .. pick_id(user) .. "/complete", headers)
end

-- The list with search, filters or sorting (the query string comes with the data).
builders.search = function(user)
   return wrk.format("GET", "/api/tasks?" .. data.query, headers_for(user, false))
end
builders.filter = builders.search
builders.sort = builders.search

-- One user's first page over and over: the list latency of a given user size.
builders["list-one"] = function(_user)
   return builders.list(1)
end

local function mcp_call(user, body)
   local headers = headers_for(user, true)
   headers["Accept"] = "application/json, text/event-stream"
   return wrk.format("POST", "/mcp", headers, body)
end

builders["mcp-list"] = function(user)
   return mcp_call(user, MCP_LIST_BODY)
end

builders["mcp-add"] = function(user)
   return mcp_call(user, MCP_ADD_BODY)
end

function request()
   return builders[data.workload](next_user())
end

function done(summary, latency, _requests)
   local errors = summary.errors
   local parts = {
      string.format('"requests": %d', summary.requests),
      string.format('"duration_us": %d', summary.duration),
      string.format('"bytes": %d', summary.bytes),
      string.format('"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}',
         errors.connect, errors.read, errors.write, errors.status, errors.timeout),
      string.format('"latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}',
         latency.min, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
         latency:percentile(99), latency:percentile(99.9)),
   }
   io.write("BENCH_RESULT {" .. table.concat(parts, ", ") .. "}\n")
end
