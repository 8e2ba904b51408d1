-- Erasures of one user, and the writes of that user in flight (pipeline/erasure.py).
-- KEYS: 1 erased (string: the highest sequence of an erase of the user)
--       2 erasing (zset: erase job -> its sequence, until the job is seen finished)
--       3 writing (zset: "seq|job|segment|token" -> lease deadline in ms, while a delivery
--         writes; the token keeps a stale delivery's leaving from unlisting the live one)
-- ARGV[1] is the operation; sequences are below 2^53, exact in Lua's numbers.
local op = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if op == 'mark' then -- job, seq, ttl seconds: an erase exists from now on
  local seq = tonumber(ARGV[3])
  local last = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
  if seq > last then
    redis.call('SET', KEYS[1], ARGV[3])
  end
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  return 'ok'
end

if op == 'admit' then -- seq, member, term ms: may a write of sequence seq start now?
  local erased = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
  if tonumber(ARGV[2]) < erased then
    return {'superseded', ''}
  end
  local first = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #first > 0 then
    return {'wait', first[1]}
  end
  local term = tonumber(ARGV[4])
  -- Entries of deliveries long dead (an hour past their lease: past any grace) are dropped.
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 3600000)
  redis.call('ZADD', KEYS[3], now + term, ARGV[3])
  redis.call('PEXPIRE', KEYS[3], term + 3600000)
  return {'admitted', ''}
end

if op == 'renew' then -- member, term ms
  local term = tonumber(ARGV[3])
  if redis.call('ZADD', KEYS[3], 'XX', 'CH', now + term, ARGV[2]) == 1 then
    redis.call('PEXPIRE', KEYS[3], term + 3600000)
  end
  return 'ok'
end

if op == 'leave' then -- member
  redis.call('ZREM', KEYS[3], ARGV[2])
  return 'ok'
end

if op == 'pending' then -- grace ms: deliveries still writing, or whose last call may still land
  -- Once an erase is marked no delivery of the user is admitted (older ones are superseded,
  -- newer ones wait): every one listed was admitted before, and the erase must wait for it.
  -- A listed one counts until its lease deadline plus the grace, the longest a DynamoDB call
  -- it already sent may go on retrying (its worker may have lost Redis, not DynamoDB).
  return redis.call('ZCOUNT', KEYS[3], now - tonumber(ARGV[2]), '+inf')
end

if op == 'release' then -- job: this erase is over
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 'ok'
end

return redis.error_reply('erasure.lua: unknown operation ' .. tostring(op))
