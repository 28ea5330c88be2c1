-- Folds a batch of churn.models.v1 records into Redis, with the projection's checkpoint:
-- the guarded-commit convention of churnguard_redis::guarded.
-- KEYS[1] {models}:checkpoint  KEYS[2] {models}:current  KEYS[3] {models}:versions
-- ARGV[1] the checkpoint the batch was read at, ARGV[2] the offset after the batch,
-- then pairs (version, model JSON) in log order, from the checkpoint on.
-- Writes nothing and replies {0, the stored checkpoint} when it is not ARGV[1] any more
-- (another instance folded the batch, or Redis lost its state): the caller reads again
-- from there. Replies {1, ARGV[2]} when it wrote.
-- A version announced twice (two refits racing) keeps its first model, as every replay does.
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
if stored ~= tonumber(ARGV[1]) then
  return {0, stored}
end
for i = 3, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[i + 1]) == 1 then
    local current = tonumber(redis.call('HGET', KEYS[2], 'version') or '0')
    if tonumber(ARGV[i]) > current then
      redis.call('HSET', KEYS[2], 'version', ARGV[i], 'model', ARGV[i + 1])
    end
  end
end
redis.call('SET', KEYS[1], ARGV[2])
return {1, tonumber(ARGV[2])}
