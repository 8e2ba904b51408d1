-- The job ledger's atomic steps (ARGV[1] names the op):
--   plan   : register a segment id once; HINCRBY items only the first time. With a budget,
--            only while the queued bytes of every job leave room (backpressure); with a
--            producer token, only by the job's producer; with a checkpoint, record it too.
--   seal   : the producer/planner has planned every segment; finalize if already complete.
--   take   : take a segment's lease (fencing): done? planned? held by another delivery?
--   renew  : extend a lease this delivery holds.
--   release: give a lease back without recording (the segment will run again).
--   unplan : take back a planned segment that was never staged (no payload): its producer died
--            or stopped between planning and staging it; a resumed load cuts it again.
--   finish : record a finished segment exactly once — only by its lease holder when a token is
--            given — with its counters, consumed WCU, dead letters, child segment and partition
--            order, then finalize the job if sealed and complete. Its bytes leave the budget.
-- KEYS: 1 job hash, 2 done set, 3 planned set, 4 dead-letter list, 5 order hash,
--       6 deliveries hash, 7 holders hash (segment -> token of its last lease holder),
--       8 the segment's lease (string: the holder's token, expiring), 9 sizes hash (segment ->
--       "<payload bytes> <items planned with it>", until recorded), 10 queued hash (job id ->
--       bytes; every job), 11 producing sorted set (job id -> producer's deadline; every job),
--       12 the segment's payload (string), 13 the journal of sent messages (hash, every job),
--       14 the job's finished signal (list; see signal below and pipeline/notify.py)
-- Every key of the job gets its TTL refreshed so a finished job's results expire together.
-- The step that makes a job finished (as JobStatus.finished says) also pushes its finished
-- signal, in the same atomic step: its waiters wake at once and none can miss it.
-- The job states spelled here are pipeline/states.py's JobState (a unit test compares them);
-- producer.lua sets 'incomplete' and 'abandoned'.

local job, done, planned, dead, order = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local deliveries, holders, lease = KEYS[6], KEYS[7], KEYS[8]
local sizes, queued, producing, payload = KEYS[9], KEYS[10], KEYS[11], KEYS[12]
local journal, finished = KEYS[13], KEYS[14]
local op = ARGV[1]

local function touch(ttl)
  for i = 1, 7 do redis.call('EXPIRE', KEYS[i], ttl) end
  redis.call('EXPIRE', sizes, ttl)
  redis.call('EXPIRE', finished, ttl)
end

local function job_id() return redis.call('HGET', job, 'id') or '' end

-- Give back ``seg``'s queued bytes (or pass them on to ``child``); returns its planned items.
local function release_size(seg, child)
  local v = redis.call('HGET', sizes, seg)
  if not v then return 0 end
  local bytes, items = string.match(v, '^(%d+) (%d+)$')
  redis.call('HDEL', sizes, seg)
  if child ~= '' then
    redis.call('HSET', sizes, child, bytes .. ' 0')  -- its leftovers are still queued
  elseif redis.call('HINCRBY', queued, job_id(), -tonumber(bytes)) <= 0 then
    redis.call('HDEL', queued, job_id())
  end
  return tonumber(items)
end

local function finalize(now)
  if redis.call('HGET', job, 'sealed') ~= '1' then return end
  local state = redis.call('HGET', job, 'state')
  if state == 'succeeded' or state == 'partial' or state == 'failed' then return end
  if redis.call('SCARD', done) ~= redis.call('SCARD', planned) then return end
  local function n(f) return tonumber(redis.call('HGET', job, f) or '0') or 0 end
  local bad = n('dead_lettered') + n('rejected') + n('failures')
  local good = n('written') + n('deleted') + n('superseded')
  local final = 'succeeded'
  if bad > 0 then
    if good > 0 then final = 'partial' else final = 'failed' end
  end
  redis.call('HSET', job, 'state', final, 'finished_at', now)
  redis.call('HDEL', queued, job_id())
  redis.call('DEL', sizes)
end

-- Push the finished signal once the job is finished: a final state, or a stopped load (its
-- producer.lua pushes it on stopping) whose sent segments are all recorded or taken back.
local function signal()
  if redis.call('EXISTS', finished) == 1 then return end
  local s = redis.call('HGET', job, 'state')
  local final = s == 'succeeded' or s == 'partial' or s == 'failed'
  local stopped = s == 'incomplete' or s == 'abandoned'
  if final or (stopped and redis.call('SCARD', done) >= redis.call('SCARD', planned)) then
    redis.call('RPUSH', finished, '1')
    local ttl = redis.call('PTTL', job)
    if ttl > 0 then redis.call('PEXPIRE', finished, ttl) end
  end
end

local function running(now)
  redis.call('HSETNX', job, 'started_at', now)
  if redis.call('HGET', job, 'state') == 'queued' then redis.call('HSET', job, 'state', 'running') end
end

if op == 'take' then
  -- ARGV: 2 segment, 3 token, 4 lease ms, 5 now, 6 ttl, 7 parent segment or ''.
  -- Returns {status, deliveries or lease ms left}: 0 taken, 1 already recorded, 2 held by
  -- another delivery, 3 not planned yet (its parent is not recorded: it may still plan it),
  -- 4 never to run (its parent was recorded without it, or its job is gone).
  local seg, token, parent = ARGV[2], ARGV[3], ARGV[7]
  if redis.call('SISMEMBER', done, seg) == 1 then return {1, 0} end
  if redis.call('SISMEMBER', planned, seg) == 0 then
    if parent ~= '' and redis.call('SISMEMBER', done, parent) == 0 then return {3, 0} end
    return {4, 0}
  end
  local holder = redis.call('GET', lease)
  if holder and holder ~= token then return {2, redis.call('PTTL', lease)} end
  redis.call('SET', lease, token, 'PX', tonumber(ARGV[4]))
  local n
  local last = redis.call('HGET', holders, seg)
  if holder == token then
    n = tonumber(redis.call('HGET', deliveries, seg) or '1')
  elseif last and last ~= token then
    -- The previous holder neither recorded nor released: it is gone (its lease expired).
    n = redis.call('HINCRBY', deliveries, seg, 1)
  else
    n = tonumber(redis.call('HGET', deliveries, seg) or '0')
    if n == 0 then n = redis.call('HINCRBY', deliveries, seg, 1) end
  end
  redis.call('HSET', holders, seg, token)
  running(ARGV[5])
  touch(tonumber(ARGV[6]))
  return {0, n}
elseif op == 'renew' then
  -- ARGV: 2 segment, 3 token, 4 lease ms. 1 if still held (and extended), else 0.
  if redis.call('GET', lease) ~= ARGV[3] then return 0 end
  redis.call('PEXPIRE', lease, tonumber(ARGV[4]))
  return 1
elseif op == 'release' then
  -- ARGV: 2 segment, 3 token.
  if redis.call('GET', lease) == ARGV[3] then redis.call('DEL', lease) end
  if redis.call('HGET', holders, ARGV[2]) == ARGV[3] then redis.call('HDEL', holders, ARGV[2]) end
  return 1
elseif op == 'plan' then
  -- ARGV: 2 segment id, 3 items, 4 ttl, 5 payload bytes, 6 budget (0: none), 7 producer token
  --       or '', 8 checkpoint or '', 9 input lines enqueued with it.
  -- Returns {1, queued bytes} planned (or planned before), {0, queued bytes} no room in the
  -- budget (nothing done: wait for workers), {-1, 0} the token is not the job's producer.
  local seg, items, size, budget = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local token = ARGV[7]
  if token ~= '' and redis.call('HGET', job, 'producer') ~= token then return {-1, 0} end
  local total = 0
  if redis.call('SISMEMBER', planned, seg) == 0 then
    if budget > 0 then
      for _, v in ipairs(redis.call('HVALS', queued)) do total = total + tonumber(v) end
      -- One segment always fits an empty budget, whatever its size: nothing waits for ever.
      if total > 0 and total + size > budget then return {0, total} end
    end
    redis.call('SADD', planned, seg)
    redis.call('HINCRBY', job, 'items', items)
    if size > 0 then
      redis.call('HSET', sizes, seg, size .. ' ' .. items)
      redis.call('HINCRBY', queued, job_id(), size)
      total = total + size
    end
  end
  if ARGV[8] ~= '' then redis.call('HSET', job, 'checkpoint', ARGV[8], 'lines', ARGV[9]) end
  touch(tonumber(ARGV[4]))
  return {1, total}
elseif op == 'seal' then
  -- ARGV: 2 rejected lines, 3 now, 4 ttl, 5 producer token or ''. -1 if the token is not the
  -- job's producer (it was marked abandoned, or another producer resumed it).
  if ARGV[5] ~= '' and redis.call('HGET', job, 'producer') ~= ARGV[5] then return -1 end
  redis.call('HDEL', job, 'producer')
  redis.call('ZREM', producing, job_id())
  if redis.call('HGET', job, 'sealed') ~= '1' then
    redis.call('HSET', job, 'sealed', '1')
    redis.call('HINCRBY', job, 'rejected', tonumber(ARGV[2]))
  end
  finalize(ARGV[3])
  signal()
  touch(tonumber(ARGV[4]))
  return 1
elseif op == 'unplan' then
  -- ARGV: 2 segment, 3 its journal member. 1 taken back (no longer planned, its items and
  -- bytes uncounted), 0 not (recorded, not planned, or staged: its message runs).
  local seg = ARGV[2]
  if redis.call('SISMEMBER', done, seg) == 1 or redis.call('EXISTS', payload) == 1
    or redis.call('HEXISTS', journal, ARGV[3]) == 1 then
    return 0
  end
  if redis.call('SREM', planned, seg) == 0 then return 0 end
  local items = release_size(seg, '')
  if items > 0 then redis.call('HINCRBY', job, 'items', -items) end
  signal()
  return 1
elseif op == 'finish' then
  -- ARGV: 2 segment, 3 written, 4 deleted, 5 superseded, 6 child id or '',
  --       7 partition or '', 8 next index, 9 now, 10 ttl, 11 lease token or '',
  --       12 items dead-lettered, 13 failure reason or '', 14 write capacity units the
  --       delivery consumed ('' or 0: none), 15.. dead letters (JSON).
  -- Returns 1 recorded, 0 already recorded, -1 fenced (the token no longer holds the lease),
  -- -2 not planned (a child its parent's recording did not plan: it must not count).
  local seg, token = ARGV[2], ARGV[11]
  if redis.call('SISMEMBER', done, seg) == 1 then return 0 end
  if redis.call('SISMEMBER', planned, seg) == 0 then return -2 end
  if token ~= '' then
    if redis.call('GET', lease) ~= token then return -1 end
    redis.call('DEL', lease)
    redis.call('HDEL', holders, seg)
  end
  redis.call('SADD', done, seg)
  release_size(seg, ARGV[6])
  redis.call('HINCRBY', job, 'written', tonumber(ARGV[3]))
  redis.call('HINCRBY', job, 'deleted', tonumber(ARGV[4]))
  redis.call('HINCRBY', job, 'superseded', tonumber(ARGV[5]))
  redis.call('HINCRBY', job, 'dead_lettered', tonumber(ARGV[12]))
  local wcu = tonumber(ARGV[14]) or 0
  if wcu > 0 then redis.call('HINCRBYFLOAT', job, 'wcu', ARGV[14]) end
  for i = 15, #ARGV do redis.call('RPUSH', dead, ARGV[i]) end
  if ARGV[13] ~= '' then
    redis.call('HINCRBY', job, 'failures', 1)
    redis.call('HSET', job, 'error', ARGV[13])
  end
  if ARGV[6] ~= '' then
    redis.call('SADD', planned, ARGV[6])
    redis.call('HINCRBY', job, 'requeues', 1)
  elseif ARGV[7] ~= '' then
    redis.call('HSET', order, ARGV[7], ARGV[8])
  end
  finalize(ARGV[9])
  signal()
  touch(tonumber(ARGV[10]))
  return 1
end
return redis.error_reply('unknown ledger op ' .. tostring(op))
