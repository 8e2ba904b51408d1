-- The next write sequence: one more than the last, and never below Redis's clock (TIME, in
-- microseconds). A counter lost with a failover to a lagging replica, an AOF that missed its
-- last second, a FLUSHDB or a new Redis in front of old tables starts again from the clock,
-- above every sequence handed out before (those were at most the clock when they were made).
-- KEYS: 1 the counter. Returns the sequence (under 2^53: exact in Lua's numbers).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local nxt = math.max(last + 1, now)
local text = string.format('%.0f', nxt)
redis.call('SET', KEYS[1], text)
return text
