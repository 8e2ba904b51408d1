-- The job ledger's atomic steps. One script, three operations (ARGV[1]):
--   plan   : register a segment id once; HINCRBY items only the first time.
--   finish : record a finished segment exactly once (counters, dead letters, child segment,
--            per-partition order), then finalize the job if it is sealed and complete.
--   seal   : the producer/planner has planned every segment; finalize if already complete.
--   deliver: count one delivery of a segment, mark the job running; returns the count.
-- KEYS: 1 job hash, 2 done set, 3 planned set, 4 dead-letter list, 5 order hash,
--       6 deliveries hash
-- Every key gets the job's TTL refreshed so a finished job's results expire together.

local job, done, planned, dead, order = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local op = ARGV[1]

local function touch(ttl)
  for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], ttl) end
end

local function finalize(now)
  if redis.call('HGET', job, 'sealed') ~= '1' then return end
  local state = redis.call('HGET', job, 'state')
  if state == 'succeeded' or state == 'partial' or state == 'failed' then return end
  if redis.call('SCARD', done) ~= redis.call('SCARD', planned) then return end
  local function n(f) return tonumber(redis.call('HGET', job, f) or '0') or 0 end
  local bad = n('dead_lettered') + n('rejected')
  local good = n('written') + n('deleted') + n('superseded')
  local final = 'succeeded'
  if bad > 0 then
    if good > 0 then final = 'partial' else final = 'failed' end
  end
  redis.call('HSET', job, 'state', final, 'finished_at', now)
end

if op == 'deliver' then
  -- ARGV: 2 segment id, 3 now, 4 ttl
  local n = redis.call('HINCRBY', KEYS[6], ARGV[2], 1)
  redis.call('HSETNX', job, 'started_at', ARGV[3])
  if redis.call('HGET', job, 'state') == 'queued' then redis.call('HSET', job, 'state', 'running') end
  touch(tonumber(ARGV[4]))
  return n
elseif op == 'plan' then
  -- ARGV: 2 segment id, 3 items, 4 ttl
  if redis.call('SADD', planned, ARGV[2]) == 1 then
    redis.call('HINCRBY', job, 'items', tonumber(ARGV[3]))
  end
  touch(tonumber(ARGV[4]))
  return 1
elseif op == 'seal' then
  -- ARGV: 2 rejected lines, 3 now, 4 ttl
  if redis.call('HGET', job, 'sealed') ~= '1' then
    redis.call('HSET', job, 'sealed', '1')
    redis.call('HINCRBY', job, 'rejected', tonumber(ARGV[2]))
  end
  finalize(ARGV[3])
  touch(tonumber(ARGV[4]))
  return 1
elseif op == 'finish' then
  -- ARGV: 2 segment, 3 written, 4 deleted, 5 superseded, 6 child id or '',
  --       7 partition or '', 8 next index, 9 now, 10 ttl, 11.. dead letters (JSON)
  if redis.call('SISMEMBER', done, ARGV[2]) == 1 then return 0 end
  redis.call('SADD', done, ARGV[2])
  redis.call('HINCRBY', job, 'written', tonumber(ARGV[3]))
  redis.call('HINCRBY', job, 'deleted', tonumber(ARGV[4]))
  redis.call('HINCRBY', job, 'superseded', tonumber(ARGV[5]))
  local ndead = #ARGV - 10
  if ndead > 0 then
    redis.call('HINCRBY', job, 'dead_lettered', ndead)
    for i = 11, #ARGV do redis.call('RPUSH', dead, ARGV[i]) end
  end
  if ARGV[6] ~= '' then
    redis.call('SADD', planned, ARGV[6])
    redis.call('HINCRBY', job, 'requeues', 1)
  elseif ARGV[7] ~= '' then
    redis.call('HSET', order, ARGV[7], ARGV[8])
  end
  finalize(ARGV[9])
  touch(tonumber(ARGV[10]))
  return 1
end
return redis.error_reply('unknown ledger op ' .. tostring(op))
