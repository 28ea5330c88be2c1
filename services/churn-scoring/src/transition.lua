-- Commits one timer decision for one customer, exactly once across scorer instances, and
-- keeps the query API's indices in step with it. Every key carries the partition's hash
-- tag, so this is one atomic step on one cluster slot.
-- KEYS[1] the partition's deadline index, KEYS[2] the customer hash, KEYS[3] the outbox;
-- with a decision also: KEYS[4] the partition's home-store customer counts (hc:),
-- KEYS[5] the at-risk set of the home store the customer had (ar:; the new one's when none),
-- KEYS[6] the at-risk set of the customer's home store now, KEYS[7] its day stats (ds:).
-- ARGV[1] the deadline the decision was made for, ARGV[2] the customer's swipe count
-- when it was read, ARGV[3] the new churn state ('' to just drop a stale deadline), ARGV[4]
-- the next deadline ('' for none), ARGV[5] the signal to publish ('' when the state did
-- not change), ARGV[6] the customer, ARGV[7] the home store as read ('' for none),
-- ARGV[8] the home store now, ARGV[9] the value at risk in whole minor units, ARGV[10]
-- the day assessed, ARGV[11] the signal's trace context (a traceparent, '' for none).
-- Returns 1 if committed, 0 if someone else fired it or a swipe arrived meanwhile (the
-- entry stays due and is assessed again with fresh state).
local due = redis.call('ZSCORE', KEYS[1], KEYS[2])
if not due or tonumber(due) ~= tonumber(ARGV[1]) then
  return 0
end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], KEYS[2])
  return 1
end
-- The swipe count is the last value of the summary field s (see apply_batch.lua).
local summary = redis.call('HGET', KEYS[2], 's') or ''
if tonumber(string.match(summary, '(%d+)$') or '0') ~= tonumber(ARGV[2]) then
  return 0
end
local old_home = redis.call('HGET', KEYS[2], 'h') or ''
if old_home ~= ARGV[7] then
  return 0
end
local customer, state, home = ARGV[6], ARGV[3], ARGV[8]
local previous = redis.call('HGET', KEYS[2], 'st') or 'active'
redis.call('HSET', KEYS[2], 'st', state)
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[1], KEYS[2])
else
  redis.call('ZADD', KEYS[1], ARGV[4], KEYS[2])
end
if ARGV[5] ~= '' then
  redis.call('XADD', KEYS[3], '*', 'customer', customer, 'signal', ARGV[5],
    'traceparent', ARGV[11] or '')
end

-- The home store and each store's count of customers at home there.
if old_home ~= home then
  if old_home ~= '' then
    if redis.call('HINCRBY', KEYS[4], old_home, -1) <= 0 then
      redis.call('HDEL', KEYS[4], old_home)
    end
    redis.call('ZREM', KEYS[5], customer)
  end
  redis.call('HINCRBY', KEYS[4], home, 1)
  redis.call('HSET', KEYS[2], 'h', home)
end

-- At-risk customers of the home store by value at risk, current as of this assessment.
-- Defected customers leave the set: they are counted as lost in the day stats instead.
if state == 'at_risk' then
  redis.call('ZADD', KEYS[6], ARGV[9], customer)
else
  redis.call('ZREM', KEYS[6], customer)
end

-- Per-day counters of the home store: defected, won back, value lost.
if previous ~= state then
  local day = ARGV[10]
  if state == 'defected' then
    redis.call('HINCRBY', KEYS[7], day .. ':defected', 1)
    redis.call('HINCRBY', KEYS[7], day .. ':lost', ARGV[9])
  elseif state == 'won_back' then
    redis.call('HINCRBY', KEYS[7], day .. ':won_back', 1)
  end
end
return 1
