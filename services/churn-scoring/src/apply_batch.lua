-- Applies one batch of a partition's swipes to its customers, exactly once.
-- Every key shares the partition's hash tag, so this is one atomic step on a single Redis
-- or a cluster. It mirrors churnguard_domain::customer::CustomerState::apply.
--
-- KEYS[1]      the partition's checkpoint (next offset to apply)
-- KEYS[2]      the partition's deadline index (sorted set: customer key -> day due)
-- KEYS[3]      the partition's stream-time watermark (latest event day seen)
-- KEYS[3 + i]  the customer hash of record i
-- ARGV[1]      horizon in days; ARGV[2] the offset after this batch
-- ARGV[3 + 5(i-1) ..]  per record: offset, day, spend, store, fingerprint
-- Returns {counted, duplicates, too_late, checkpoint after}.
local checkpoint = tonumber(redis.call('GET', KEYS[1]) or '0')
local horizon = tonumber(ARGV[1])
local next_offset = tonumber(ARGV[2])
if next_offset <= checkpoint then
  return {0, 0, 0, checkpoint}
end

local counted, duplicates, too_late = 0, 0, 0
local watermark = tonumber(redis.call('GET', KEYS[3]) or '-1000000000')
for i = 1, #KEYS - 3 do
  local a = 2 + (i - 1) * 5
  local offset = tonumber(ARGV[a + 1])
  if offset >= checkpoint then
    local key = KEYS[i + 3]
    local day = tonumber(ARGV[a + 2])
    local spend = tonumber(ARGV[a + 3])
    local store = ARGV[a + 4]
    local fp = ARGV[a + 5]
    local field = 'd:' .. day
    local mix = 'm:' .. store
    -- One read for everything this record needs, one write for everything it changes.
    local st = redis.call('HMGET', key, 'f', 'fs', 'l', 'rd', 'rs', 'o', field, mix, 'n')
    if not st[1] then
      redis.call('HSET', key, 'f', day, 'fs', spend, 'l', day, 'rd', 0, 'rs', 0, 'o', day,
        field, '1,' .. spend .. ',' .. fp, mix, 1, 'n', 1)
      -- Due for assessment at the purchase's day (stream time); an earlier deadline stays.
      redis.call('ZADD', KEYS[2], 'LT', day, key)
      if day > watermark then watermark = day end
      counted = counted + 1
    else
      local f, fs, l = tonumber(st[1]), tonumber(st[2]), tonumber(st[3])
      local rd, rs, o = tonumber(st[4]), tonumber(st[5]), tonumber(st[6])
      local bucket = st[7]
      local visits, bspend, fps = 0, 0, ''
      if bucket then
        local v, s, rest = string.match(bucket, '^(%d+),(-?%d+),(.*)$')
        visits, bspend, fps = tonumber(v), tonumber(s), rest
      end
      if bucket and string.find(',' .. fps .. ',', ',' .. fp .. ',', 1, true) then
        duplicates = duplicates + 1
      elseif day < l - horizon then
        too_late = too_late + 1
      else
        if day < f then
          rd = rd + 1
          rs = rs + fs
          f = day
          fs = spend
        elseif day == f then
          fs = fs + spend
        else
          if not bucket then
            rd = rd + 1
          end
          rs = rs + spend
        end
        if fps == '' then fps = fp else fps = fps .. ',' .. fp end
        if day < o then o = day end
        if day > l then l = day end
        -- Roll the buckets: drop days older than the horizon before the last purchase.
        local cutoff = l - horizon
        if o < cutoff then
          local oldest = day
          for _, name in ipairs(redis.call('HKEYS', key)) do
            if string.sub(name, 1, 2) == 'd:' then
              local d = tonumber(string.sub(name, 3))
              if d < cutoff then
                redis.call('HDEL', key, name)
              elseif d < oldest then
                oldest = d
              end
            end
          end
          o = oldest
        end
        redis.call('HSET', key, 'f', f, 'fs', fs, 'l', l, 'rd', rd, 'rs', rs, 'o', o,
          field, (visits + 1) .. ',' .. (bspend + spend) .. ',' .. fps,
          mix, (tonumber(st[8]) or 0) + 1, 'n', (tonumber(st[9]) or 0) + 1)
        redis.call('ZADD', KEYS[2], 'LT', day, key)
        if day > watermark then watermark = day end
        counted = counted + 1
      end
    end
  end
end
redis.call('SET', KEYS[3], watermark)
redis.call('SET', KEYS[1], next_offset)
return {counted, duplicates, too_late, next_offset}
