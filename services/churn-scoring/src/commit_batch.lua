-- Commits one batch of a partition's swipes, folded in Rust (src/batch.rs) from fields
-- read after the checkpoint, if the checkpoint is still the one read: every change to a
-- customer's swipe fields goes through this script and moves the checkpoint, so an
-- unchanged checkpoint means nothing changed them since they were read. Every key shares
-- the partition's hash tag, so this is one atomic step on a single Redis or a cluster.
--
-- KEYS[1]      the partition's checkpoint (next offset to apply)
-- KEYS[2]      the partition's deadline index (sorted set: customer key -> day due)
-- KEYS[3]      the partition's stream-time watermark (latest event day applied)
-- KEYS[3 + i]  the hash of changed customer i
-- ARGV[1]      the checkpoint the fields were read at; ARGV[2] the offset after the batch
-- ARGV[3]      the latest day counted ('' for none)
-- then per customer: n, n HSET arguments (field, value, ...), m, m fields to HDEL, and
-- the day the customer is due for assessment.
-- Returns {1, checkpoint after} when committed, {0, checkpoint now} when it had moved.
local call, tonumber, unpack = redis.call, tonumber, unpack
local checkpoint = tonumber(call('GET', KEYS[1]) or '0')
if checkpoint ~= tonumber(ARGV[1]) then
  return {0, checkpoint}
end
-- Deadlines are armed with one ZADD per 500 customers; 'LT' keeps an earlier deadline
-- (a timer's, or this customer's from an earlier batch). unpack has a stack limit.
local due = {}
local a = 4
for i = 4, #KEYS do
  local key = KEYS[i]
  local n = tonumber(ARGV[a])
  call('HSET', key, unpack(ARGV, a + 1, a + n))
  a = a + n + 1
  local m = tonumber(ARGV[a])
  if m > 0 then
    call('HDEL', key, unpack(ARGV, a + 1, a + m))
  end
  a = a + m + 1
  due[#due + 1] = ARGV[a]
  due[#due + 1] = key
  a = a + 1
  if #due >= 1000 then
    call('ZADD', KEYS[2], 'LT', unpack(due))
    due = {}
  end
end
if #due > 0 then
  call('ZADD', KEYS[2], 'LT', unpack(due))
end
if ARGV[3] ~= '' then
  local watermark = call('GET', KEYS[3])
  if not watermark or tonumber(ARGV[3]) > tonumber(watermark) then
    call('SET', KEYS[3], ARGV[3])
  end
end
call('SET', KEYS[1], ARGV[2])
return {1, tonumber(ARGV[2])}
