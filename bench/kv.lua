-- kv.lua -- wrk driver for bench/kv_bench.py: replays a list of prepared requests.
--
-- BENCH_REQS names a file written by kv_bench.py: one request per line,
-- "METHOD<TAB>PATH<TAB>BODY" (BODY may be empty; no tabs or newlines inside). The same
-- file drives Conclave and etcd: POST /v3/kv/put and /v3/kv/range with etcd's JSON
-- (base64 keys and values), Content-Type from BENCH_CTYPE. Each wrk
-- thread pre-formats them all once, starts at its own offset, and cycles through them,
-- so the timed loop does no string building. done() prints one line
--   WRKJSON {"requests":..,"duration_us":..,"p50_us":..,"p99_us":..,...}
-- that kv_bench.py parses; latency percentiles come from wrk's own histogram.

local reqs = {}
local n, i = 0, 0
local threads = {}

function setup(thread)
    thread:set("tid", #threads)
    table.insert(threads, thread)
end

function init(args)
    local path = os.getenv("BENCH_REQS")
    local ctype = os.getenv("BENCH_CTYPE")
    local headers = {}
    if ctype and ctype ~= "" then headers["Content-Type"] = ctype end
    for line in io.lines(path) do
        local method, p, body = line:match("^([^\t]*)\t([^\t]*)\t?(.*)$")
        if method then
            if body == "" then body = nil end
            n = n + 1
            reqs[n] = wrk.format(method, p, headers, body)
        end
    end
    i = ((tid or 0) * 7919) % n
end

function request()
    i = i + 1
    if i > n then i = 1 end
    return reqs[i]
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
        '"max_us":%d,"mean_us":%.1f,"err_connect":%d,"err_read":%d,"err_write":%d,' ..
        '"err_status":%d,"err_timeout":%d}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write,
        e.status, e.timeout))
end
