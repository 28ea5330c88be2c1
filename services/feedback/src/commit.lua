-- Writes one projected batch of a partition's complaint commits (folded in Rust,
-- src/projection.rs) if the partition's checkpoint is still the one read with the
-- complaints: every change to the read model goes through this script and moves the
-- checkpoint, so an unchanged checkpoint means nothing changed since the read. Every
-- key carries the partition's hash tag: one atomic step on a single Redis or a cluster.
--
-- KEYS[1]      the partition's checkpoint
-- KEYS[1 + i]  the hash of changed complaint i
-- ARGV[1]      the checkpoint read; ARGV[2] the offset after the batch
-- then per complaint: n, and n HSET arguments (field, value, ...)
-- Returns {1, checkpoint after} when written, {0, checkpoint now} when it had moved.
local call, tonumber, unpack = redis.call, tonumber, unpack
local checkpoint = tonumber(call('GET', KEYS[1]) or '0')
if checkpoint ~= tonumber(ARGV[1]) then
  return {0, checkpoint}
end
local a = 3
for i = 2, #KEYS do
  local n = tonumber(ARGV[a])
  call('HSET', KEYS[i], unpack(ARGV, a + 1, a + n))
  a = a + n + 1
end
call('SET', KEYS[1], ARGV[2])
return {1, tonumber(ARGV[2])}
