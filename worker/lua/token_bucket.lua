--[[
token_bucket.lua: the global, adaptive write-capacity limiter of one DynamoDB table.

KEYS[1]  the table's hash (built by worker/keys.py, never here).
ARGV[1]  op: "acquire" (grant units and say how long to sleep before spending them, or grant
         nothing and say when to ask again), "feedback" (record consumption and throttles,
         adapt the rate) or "state" (read only, nothing written).
ARGV[2]  now in seconds, or "" for Redis TIME. Production always sends "": one clock for every
         machine. The unit tests send a fake time to run this very script deterministically.
ARGV[3]  units (WCU): taken by acquire, consumed for feedback.
ARGV[4]  "1" if the call reported by feedback was throttled or partly refused.
ARGV[5..15] ceiling, floor (WCU/s), burst (s), idle ttl (ms), window (s), cut window (s),
         beta, fallback beta, alpha, min span (s), ahead (s). Why these values:
         worker/limiter.py.

Hash fields: tokens (WCU, negative = debt that sleeping callers are paying off), ts (last
refill), rate (shared WCU/s), win (start of the measurement window), used (WCU consumed in it),
thr (1 if it saw a throttle), pu/pd (the previous window's WCU and length), cut (time of the
last cut). Every number is stored and returned as a string with 17 significant digits, because
Redis truncates Lua numbers to integers. Redis >= 5 replicates a script's effects rather than
the script, so calling TIME and then writing is allowed.

The Python twin of this script is worker/limiter_memory.py. Change both together; the shared
unit test suite checks that they give the same answers.
]]

local key = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])
if now == nil then
    local t = redis.call('TIME')
    now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local units = tonumber(ARGV[3])
local throttled = ARGV[4] == '1'
local ceiling, floor = tonumber(ARGV[5]), tonumber(ARGV[6])
local burst, ttl_ms = tonumber(ARGV[7]), tonumber(ARGV[8])
local window, cut_window = tonumber(ARGV[9]), tonumber(ARGV[10])
local beta, fallback_beta = tonumber(ARGV[11]), tonumber(ARGV[12])
local alpha, min_span = tonumber(ARGV[13]), tonumber(ARGV[14])
local ahead = tonumber(ARGV[15])

local function fmt(x)
    return string.format('%.17g', x)
end

local f = redis.call('HMGET', key, 'tokens', 'ts', 'rate', 'win', 'used', 'thr', 'pu', 'pd',
    'cut')
local tokens, ts, rate, win, used, thr, pu, pd, cut
if f[1] then
    tokens, ts, rate, win = tonumber(f[1]), tonumber(f[2]), tonumber(f[3]), tonumber(f[4])
    used, thr, pu, pd, cut = tonumber(f[5]), tonumber(f[6]), tonumber(f[7]), tonumber(f[8]),
        tonumber(f[9])
else
    -- A new (or expired) table starts optimistic: at the ceiling, with a full bucket.
    rate = ceiling
    tokens, ts, win, used, thr, pu, pd, cut = ceiling * burst, now, now, 0, 0, 0, 0, 0
end

-- The ceiling may have been lowered in the configuration since the rate was stored.
rate = math.min(ceiling, math.max(floor, rate))

-- Refill at the current rate; a clock that went backwards (failover) adds nothing.
tokens = math.min(rate * burst, tokens + math.max(0, now - ts) * rate)
ts = math.max(ts, now)

-- Close the measurement window: a clean one (consumption, no throttle) raises the rate by
-- alpha of itself. A window stretched by idleness says nothing about the table: forget it.
if now - win >= window then
    if used > 0 and thr == 0 then
        rate = math.min(ceiling, rate * (1 + alpha))
    end
    if now - win <= 2 * window then
        pu, pd = used, now - win
    else
        pu, pd = 0, 0
    end
    win, used, thr = now, 0, 0
end

local wait, did_cut, granted = 0, 0, 0
if op == 'acquire' then
    if tokens >= -rate * ahead - 1e-9 then
        -- Granted, whatever the size: the bucket may go into debt, so a request larger than
        -- the bucket is served in its turn. The caller sleeps until the debt is paid.
        tokens = tokens - units
        granted = 1
        if tokens < 0 then
            wait = -tokens / rate
        end
    else
        -- Too much is promised already: nothing taken, ask again when the debt is back
        -- within `ahead` seconds. Few promises stand, so a cut takes effect at once.
        wait = -tokens / rate - ahead
    end
elseif op == 'feedback' then
    used = used + units
    if throttled then
        thr = 1
        -- One cut per cut window: many threads reporting one congestion are one event.
        if now - cut >= cut_window then
            local span = pd + (now - win)
            local target = rate * fallback_beta
            if span >= min_span and pu + used > 0 then
                target = math.min(rate, (pu + used) / span) * beta
            end
            rate = math.max(floor, target)
            tokens = math.min(tokens, 0)
            cut, did_cut = now, 1
        end
    end
end

if op ~= 'state' then
    redis.call('HSET', key, 'tokens', fmt(tokens), 'ts', fmt(ts), 'rate', fmt(rate),
        'win', fmt(win), 'used', fmt(used), 'thr', thr, 'pu', fmt(pu), 'pd', fmt(pd),
        'cut', fmt(cut))
    redis.call('PEXPIRE', key, ttl_ms)
end

return {fmt(wait), fmt(rate), fmt(tokens), tostring(did_cut), fmt(used), fmt(pu), fmt(pd),
    fmt(cut), tostring(granted)}
