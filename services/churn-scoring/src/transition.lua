-- Commits one timer decision for one customer, exactly once across scorer instances.
-- KEYS[1] the partition's deadline index, KEYS[2] the customer hash, KEYS[3] the outbox.
-- ARGV[1] the deadline the decision was made for, ARGV[2] the customer's swipe count
-- when it was read, ARGV[3] the new churn state ('' to just drop a stale deadline), ARGV[4] the next deadline ('' for none),
-- ARGV[5] the signal to publish ('' when the state did not change), ARGV[6] the customer.
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
if tonumber(redis.call('HGET', KEYS[2], 'n') or '0') ~= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[2], 'st', ARGV[3])
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[1], KEYS[2])
else
  redis.call('ZADD', KEYS[1], ARGV[4], KEYS[2])
end
if ARGV[5] ~= '' then
  redis.call('XADD', KEYS[3], '*', 'customer', ARGV[6], 'signal', ARGV[5])
end
return 1
