-- A job's producer, seen from Redis: its heartbeat, how it stops, and who takes it over.
-- ARGV[1] names the op:
--   begin   : a new job's producer holds ``token`` (first heartbeat).
--   beat    : the producer holding ``token`` is alive (heartbeat at Redis TIME).
--   stop    : it stops before the end of its input and says why (state 'incomplete').
--   handoff : its part is done without sealing (a plan job: the planner seals it).
--   abandon : mark the job 'abandoned' if its producer has been silent longer than the timeout.
--   resume  : a new producer takes over an 'incomplete' or 'abandoned' job (resume a load).
-- KEYS: 1 job hash, 2 producing sorted set (job id -> the producer's deadline, ms: its last
-- heartbeat plus its own timeout, so whoever judges it needs no timeout of theirs), 3 the
-- job's done set, 4 its planned set, 5 its finished signal (list, as in ledger.lua: pushed
-- when a stop leaves nothing sent unrecorded, so waiters wake at once; gone on resume).
-- Heartbeats are Redis TIME, never a client's clock: producers and the workers that judge
-- them may run on machines whose clocks disagree.

local job, producing, done, planned, finished = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local op = ARGV[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function id() return redis.call('HGET', job, 'id') end

local function beat(timeout_ms)
  local now = now_ms()
  redis.call('HSET', job, 'beat_ms', now)
  redis.call('ZADD', producing, now + tonumber(timeout_ms), id())
end

local function release(state, reason, now)
  redis.call('HSET', job, 'state', state, 'stopped', reason, 'stopped_at', now)
  redis.call('HDEL', job, 'producer')
  redis.call('ZREM', producing, id())
  if redis.call('SCARD', done) >= redis.call('SCARD', planned)
    and redis.call('EXISTS', finished) == 0 then
    redis.call('RPUSH', finished, '1')
    local ttl = redis.call('PTTL', job)
    if ttl > 0 then redis.call('PEXPIRE', finished, ttl) end
  end
end

if op == 'begin' then
  -- ARGV: 2 token, 3 timeout ms.
  redis.call('HSET', job, 'producer', ARGV[2])
  beat(ARGV[3])
  return 1
elseif op == 'beat' then
  -- ARGV: 2 token, 3 timeout ms. 1 alive and noted, 0 the token is no longer the producer.
  if redis.call('HGET', job, 'producer') ~= ARGV[2] then return 0 end
  beat(ARGV[3])
  return 1
elseif op == 'stop' then
  -- ARGV: 2 token, 3 reason, 4 now (epoch s). 1 stopped, 0 not the job's producer.
  if redis.call('HGET', job, 'producer') ~= ARGV[2] then return 0 end
  release('incomplete', ARGV[3], ARGV[4])
  return 1
elseif op == 'handoff' then
  -- ARGV: 2 token.
  if redis.call('HGET', job, 'producer') ~= ARGV[2] then return 0 end
  redis.call('HDEL', job, 'producer')
  redis.call('ZREM', producing, id())
  return 1
elseif op == 'abandon' then
  -- ARGV: 2 job id, 3 now (epoch s). 1 marked abandoned (past its producer's deadline), else 0.
  local deadline = redis.call('ZSCORE', producing, ARGV[2])
  if not deadline then return 0 end
  if redis.call('EXISTS', job) == 0 then
    redis.call('ZREM', producing, ARGV[2])  -- its results expired
    return 0
  end
  local now = now_ms()
  if now <= tonumber(deadline) then return 0 end
  local silent = now - tonumber(redis.call('HGET', job, 'beat_ms') or deadline)
  local state = redis.call('HGET', job, 'state')
  if state ~= 'queued' and state ~= 'running' then
    redis.call('ZREM', producing, ARGV[2])
    return 0
  end
  release('abandoned', string.format('producer silent for %.0f s', silent / 1000), ARGV[3])
  return 1
elseif op == 'resume' then
  -- ARGV: 2 token, 3 timeout ms. {1, checkpoint} taken over; {0, state} not resumable
  -- (sealed, finished, or still fed by a live producer).
  local state = redis.call('HGET', job, 'state')
  if (state ~= 'incomplete' and state ~= 'abandoned') or redis.call('HGET', job, 'sealed') == '1'
  then
    return {0, state or ''}
  end
  redis.call('HSET', job, 'producer', ARGV[2], 'state', 'running')
  redis.call('HDEL', job, 'stopped', 'stopped_at')
  redis.call('DEL', finished)
  beat(ARGV[3])
  return {1, redis.call('HGET', job, 'checkpoint') or ''}
end
return redis.error_reply('unknown producer op ' .. tostring(op))
