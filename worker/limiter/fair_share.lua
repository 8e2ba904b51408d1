--[[
fair_share.lua: max-min fair shares of one table's rate between the users writing to it.

KEYS[1]  the table's shares hash (built by pipeline/keys.py, never here).
ARGV[1]  op: "admit" (take units from the user's share, or say how long until it has them),
         "refund" (give back units admitted and never sent) or "state" (read only).
ARGV[2]  now in seconds, or "" for Redis TIME (the unit tests send a fake time).
ARGV[3]  the user: a partition key's tag (a number, never the id itself).
ARGV[4]  units (WCU).
ARGV[5]  the table's shared rate now (WCU/s), as its bucket last answered.
ARGV[6..10] burst (s), active (s), tau (s), margin, idle ttl (ms). Why these values:
         worker/limiter/shares.py.
ARGV[11] "1" if the user's last batch waited in the table's bucket: it wants more than it gets.

One field per user: "tokens ts c seen pressed" (%.17g each). c is the user's admitted rate, an
exponential average with time constant tau. A user is counted while it asked within the last
`active` seconds. The level is the water-filling of the rate over the users counted: a user
whose rate is below margin x an equal split of what is left is satisfied and keeps what it
takes — unless it was pressed (waited in the table's bucket) within the last `active` seconds:
its low rate is then what the others left it, not what it wants; the others split the rest
equally, and that is the level. Every user's share is a token
bucket refilled at the level with `burst` seconds of it: the users that want more than the level
each get the level, one that wants less is never held, and what it leaves goes to the others.
When everyone is satisfied the level is the whole rate: nothing is held. A request larger than
the burst is admitted once the share is full, into debt (paid off before the next).

The Python twin is MemoryBucketBackend.share in worker/limiter/memory_backend.py: change both.
]]

local key = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])
if now == nil then
    local t = redis.call('TIME')
    now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local me = ARGV[3]
local units, rate = tonumber(ARGV[4]), tonumber(ARGV[5])
local burst, active, tau = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local margin, ttl_ms = tonumber(ARGV[9]), tonumber(ARGV[10])
local pressed_now = ARGV[11] == '1'

local function fmt(x)
    return string.format('%.17g', x)
end

local raw = redis.call('HGETALL', key)
local rates, stale = {}, {}
local tokens, ts, c, pressed, known = 0, now, 0, 0, false
for i = 1, #raw, 2 do
    local who = raw[i]
    local a, b, r, s, p = string.match(raw[i + 1], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')
    a, b, r, s, p = tonumber(a), tonumber(b), tonumber(r), tonumber(s), tonumber(p)
    if now - s > active then
        if who ~= me then
            table.insert(stale, who)
        end
    else
        r = r * math.exp(-math.max(0, now - b) / tau)
        if who == me then
            tokens, ts, c, pressed, known = a, b, r, p, true
        elseif p > now then
            table.insert(rates, math.huge)
        else
            table.insert(rates, r)
        end
    end
end
if pressed_now then
    pressed = now + active
end
if pressed > now then
    table.insert(rates, math.huge)
else
    table.insert(rates, c)
end
table.sort(rates)

local left, n = rate, #rates
local level = rate
for i = 1, #rates do
    local k = n - i + 1
    if rates[i] < margin * left / k then
        left = left - rates[i]
    else
        level = left / k
        break
    end
end

local full = level * burst
if known then
    tokens = math.min(full, tokens + math.max(0, now - ts) * level)
else
    tokens = full
end
ts = math.max(ts, now)

local granted, wait = 0, 0
if op == 'admit' then
    local need = math.min(units, full)
    if tokens >= need - 1e-9 then
        tokens = tokens - units
        c = c + units / tau
        granted = 1
    else
        wait = (need - tokens) / level
    end
elseif op == 'refund' then
    tokens = math.min(full, tokens + units)
    c = math.max(0, c - units / tau)
end

if op ~= 'state' then
    local v = {fmt(tokens), fmt(ts), fmt(c), fmt(now), fmt(pressed)}
    redis.call('HSET', key, me, table.concat(v, ' '))
    if #stale > 0 then
        redis.call('HDEL', key, unpack(stale))
    end
    redis.call('PEXPIRE', key, ttl_ms)
end

return {tostring(granted), fmt(wait), fmt(level), tostring(n)}
