-- kv_load.lua -- wrk bulk loader for bench/kv_bench.py's memory (RSS) measurement.
--
-- Writes keys "rss" .. 9 decimal digits (12 bytes) with a fixed value through
-- POST /v3/kv/put, the same etcd JSON-gateway request for Conclave and etcd: key numbers
-- BENCH_LOAD_FIRST (default 0) up to BENCH_LOAD_KEYS (exclusive). Every wrk thread owns
-- an equal share of that range, counts through it and sends BENCH_PIPELINE requests per
-- write (HTTP pipelining on each keep-alive connection). Puts, no transactions: each key
-- is one Raft entry and one revision on both systems. A thread that has sent its whole
-- range sends the same number of cheap ranges of its first key instead (wrk needs a
-- fixed pipeline depth), so the revision stops at exactly (KEYS - FIRST) more than
-- before; kv_bench.py watches the revision and ends wrk (SIGINT) when it is reached or
-- when its time bound passes.
--
-- Env: BENCH_LOAD_KEYS (end of the range), BENCH_LOAD_FIRST (its start, default 0),
--      BENCH_THREADS (wrk -t, to split the range),
--      BENCH_PIPELINE (requests per write), BENCH_VALUE_B64 (the base64 value).
-- done() prints WRKJSON {...} like kv.lua.
--
-- wrk calls request() once on thread 0 before the run, to count the pipeline depth
-- (script_verify_request); that batch is never sent, so thread 0's first call does not
-- advance the counter.

local threads = {}
local per, lo, hi, next_key, pipeline = 0, 0, 0, 0, 1
local value_b64
local first_call = true
local headers = { ["Content-Type"] = "application/json" }
local b64_3 = {} -- "000".."999" -> base64 of those 3 bytes

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64_of_3(s)
    local a, b, c = s:byte(1, 3)
    local n = a * 65536 + b * 256 + c
    local out = {}
    for k = 3, 0, -1 do
        local v = math.floor(n / (64 ^ k)) % 64
        out[#out + 1] = alphabet:sub(v + 1, v + 1)
    end
    return table.concat(out)
end

function setup(thread)
    thread:set("tid", #threads)
    table.insert(threads, thread)
end

function init(args)
    local total = tonumber(os.getenv("BENCH_LOAD_KEYS"))
    local nthreads = tonumber(os.getenv("BENCH_THREADS"))
    pipeline = tonumber(os.getenv("BENCH_PIPELINE")) or 1
    value_b64 = os.getenv("BENCH_VALUE_B64")
    assert(total and nthreads and value_b64, "BENCH_LOAD_KEYS, BENCH_THREADS, BENCH_VALUE_B64")
    assert(total < 1e9, "keys have 9 digits")
    for k = 0, 999 do
        b64_3[k] = b64_of_3(string.format("%03d", k))
    end
    local first = tonumber(os.getenv("BENCH_LOAD_FIRST") or "0")
    assert(first >= 0 and first <= total, "BENCH_LOAD_FIRST <= BENCH_LOAD_KEYS")
    per = math.ceil((total - first) / nthreads)
    lo = math.min(first + (tid or 0) * per, total)
    hi = math.min(lo + per, total)
    next_key = lo
end

local function key_b64(k)
    -- "rss" is 3 bytes (one base64 quantum), then three groups of 3 digits
    return "cnNz" .. b64_3[math.floor(k / 1e6) % 1000] .. b64_3[math.floor(k / 1e3) % 1000]
        .. b64_3[k % 1000]
end

function request()
    local batch = {}
    local k = next_key
    for j = 1, pipeline do
        if k < hi then
            batch[j] = wrk.format("POST", "/v3/kv/put", headers,
                '{"key":"' .. key_b64(k) .. '","value":"' .. value_b64 .. '"}')
            k = k + 1
        else
            batch[j] = wrk.format("POST", "/v3/kv/range", headers,
                '{"key":"' .. key_b64(lo) .. '","serializable":true}')
        end
    end
    if first_call and (tid or 0) == 0 then
        first_call = false -- the pipeline-depth probe: not sent
    else
        first_call = false
        next_key = k
    end
    return table.concat(batch)
end

-- Non-2xx answers: counted, and the first one's status and body kept (per thread;
-- done() reads them through thread:get).
err_first = ""

function response(status, headers, body)
    if status >= 300 and err_first == "" then
        err_first = tostring(status) .. " " .. (body or ""):sub(1, 200)
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    local first = ""
    for _, t in ipairs(threads) do
        local f = t:get("err_first")
        if first == "" and f and f ~= "" then first = f end
    end
    first = first:gsub('[%c"\\]', " ")
    io.write(string.format(
        'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"err_connect":%d,' ..
        '"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,"err_first":"%s"}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        e.connect, e.read, e.write, e.status, e.timeout, first))
end
