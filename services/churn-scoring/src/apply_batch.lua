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
--
-- The summary lives in one field, s = 'first,first_spend,last,repeat_days,repeat_spend,
-- oldest_bucket,swipes': the cost of HMGET/HSET on a listpack hash grows with the number
-- of fields named, so each record names three (s, its day bucket, its store). Numbers are
-- passed as strings made with format('%d'): Lua's own number-to-string and redis.call's
-- both go through floating-point printf.
local checkpoint = tonumber(redis.call('GET', KEYS[1]) or '0')
local horizon = tonumber(ARGV[1])
local next_offset = tonumber(ARGV[2])
if next_offset <= checkpoint then
  return {0, 0, 0, checkpoint}
end

local call, find, sub, match, format = redis.call, string.find, string.sub, string.match, string.format
local tonumber, unpack = tonumber, unpack
local counted, duplicates, too_late = 0, 0, 0
local watermark = tonumber(call('GET', KEYS[3]) or '-1000000000')
-- Deadlines are armed with one ZADD per 500 records ('LT' keeps the earliest of a
-- customer's days, as one ZADD per record would); unpack has a stack limit.
local due, flush_due = {}, function(due)
  if #due > 0 then call('ZADD', KEYS[2], 'LT', unpack(due)) end
end
-- Offsets ascend within a batch: when its first is at or past the checkpoint, all are.
local all_new = #KEYS == 3 or tonumber(ARGV[3]) >= checkpoint
for i = 1, #KEYS - 3 do
  local a = 2 + (i - 1) * 5
  if all_new or tonumber(ARGV[a + 1]) >= checkpoint then
    local key = KEYS[i + 3]
    local day_s, spend_s, fp = ARGV[a + 2], ARGV[a + 3], ARGV[a + 5]
    local day, spend = tonumber(day_s), tonumber(spend_s)
    local field = 'd:' .. day_s
    local mix = 'm:' .. ARGV[a + 4]
    -- One read for everything this record needs, one write for everything it changes.
    local st = call('HMGET', key, 's', field, mix)
    if not st[1] then
      call('HSET', key, 's', day_s .. ',' .. spend_s .. ',' .. day_s .. ',0,0,' .. day_s .. ',1',
        field, '1,' .. spend_s .. ',' .. fp, mix, '1')
      -- Due for assessment at the purchase's day (stream time); an earlier deadline stays.
      due[#due + 1] = day_s
      due[#due + 1] = key
      if day > watermark then watermark = day end
      counted = counted + 1
    else
      local bucket = st[2]
      local visits, bspend, fps
      if bucket then
        local v, s
        v, s, fps = match(bucket, '^(%d+),(-?%d+),(.*)$')
        visits, bspend = tonumber(v), tonumber(s)
      end
      local l
      if bucket and (fps == fp or find(',' .. fps .. ',', ',' .. fp .. ',', 1, true)) then
        duplicates = duplicates + 1
      else
        local f, fs, rd, rs, o, n
        f, fs, l, rd, rs, o, n =
          match(st[1], '^(-?%d+),(-?%d+),(-?%d+),(%d+),(-?%d+),(-?%d+),(%d+)$')
        l = tonumber(l)
        if day < l - horizon then
          too_late = too_late + 1
        else
          f, fs, rd, rs, o = tonumber(f), tonumber(fs), tonumber(rd), tonumber(rs), tonumber(o)
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
          if day < o then o = day end
          if day > l then l = day end
          -- Roll the buckets: drop days older than the horizon before the last purchase.
          local cutoff = l - horizon
          if o < cutoff then
            local oldest = day
            for _, name in ipairs(call('HKEYS', key)) do
              if sub(name, 1, 2) == 'd:' then
                local d = tonumber(sub(name, 3))
                if d < cutoff then
                  call('HDEL', key, name)
                elseif d < oldest then
                  oldest = d
                end
              end
            end
            o = oldest
          end
          local value
          if bucket then
            value = format('%d,%d,', visits + 1, bspend + spend) .. fps .. ',' .. fp
          else
            value = '1,' .. spend_s .. ',' .. fp
          end
          call('HSET', key, 's', format('%d,%d,%d,%d,%d,%d,%d', f, fs, l, rd, rs, o, tonumber(n) + 1),
            field, value, mix, format('%d', (tonumber(st[3]) or 0) + 1))
          due[#due + 1] = day_s
          due[#due + 1] = key
          if day > watermark then watermark = day end
          counted = counted + 1
        end
      end
    end
    if #due >= 1000 then
      flush_due(due)
      due = {}
    end
  end
end
flush_due(due)
call('SET', KEYS[3], watermark)
call('SET', KEYS[1], next_offset)
return {counted, duplicates, too_late, next_offset}
