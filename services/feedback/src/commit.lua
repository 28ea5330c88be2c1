-- Writes one projected batch of a partition's commits (folded in Rust,
-- src/projection/) if the partition's checkpoint is still the one read with the
-- streams: every change to the read model goes through this script and moves the
-- checkpoint, so an unchanged checkpoint means nothing changed since the read. Every
-- key carries the partition's hash tag: one atomic step on a single Redis or a cluster.
--
-- KEYS[1]  the partition's checkpoint
-- KEYS[2]  the partition's deadline index (sorted set: complaint -> epoch second of its
--          next SLA alarm)
-- KEYS[3]  the partition's complaint list index (hash: complaint -> list entry)
-- KEYS[4]  the partition's outreach list index (hash: case -> list entry)
-- then ARGV[4] complaint hashes, ARGV[5] case hashes, ARGV[6] reasons hashes (one per
-- UTC day), and the rest: customer-complaints hashes
-- ARGV[1]  the checkpoint read; ARGV[2] the offset after the batch; ARGV[3] 1 when the
--          deadline index is kept (an SLA policy is configured), else 0
-- then per complaint: n, n HSET arguments (field, value, ...), the complaint's id, its
-- next alarm ('' for none: it leaves the deadline index) and its list entry;
-- per case: n, n HSET arguments, the case's id and its list entry;
-- per reasons hash: m, then m pairs (field, increment);
-- per customer-complaints hash: m, then m pairs (field, value).
-- Returns {1, checkpoint after} when written, {0, checkpoint now} when it had moved.
local call, tonumber, unpack = redis.call, tonumber, unpack
local checkpoint = tonumber(call('GET', KEYS[1]) or '0')
if checkpoint ~= tonumber(ARGV[1]) then
  return {0, checkpoint}
end
local index = ARGV[3] == '1'
local complaints, cases, days = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local a = 7
for i = 5, 4 + complaints do
  local n = tonumber(ARGV[a])
  call('HSET', KEYS[i], unpack(ARGV, a + 1, a + n))
  a = a + n + 1
  local member, due, entry = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  a = a + 3
  call('HSET', KEYS[3], member, entry)
  if index then
    if due == '' then
      call('ZREM', KEYS[2], member)
    else
      call('ZADD', KEYS[2], due, member)
    end
  end
end
for i = 5 + complaints, 4 + complaints + cases do
  local n = tonumber(ARGV[a])
  call('HSET', KEYS[i], unpack(ARGV, a + 1, a + n))
  a = a + n + 1
  call('HSET', KEYS[4], ARGV[a], ARGV[a + 1])
  a = a + 2
end
local first_set = 5 + complaints + cases + days
for i = 5 + complaints + cases, first_set - 1 do
  local m = tonumber(ARGV[a])
  for j = 1, m do
    call('HINCRBY', KEYS[i], ARGV[a + 2 * j - 1], ARGV[a + 2 * j])
  end
  a = a + 2 * m + 1
end
for i = first_set, #KEYS do
  local m = tonumber(ARGV[a])
  call('HSET', KEYS[i], unpack(ARGV, a + 1, a + 2 * m))
  a = a + 2 * m + 1
end
call('SET', KEYS[1], ARGV[2])
return {1, tonumber(ARGV[2])}
