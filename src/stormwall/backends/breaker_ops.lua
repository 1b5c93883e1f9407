-- One operation of a shared circuit breaker, atomically, in one round trip.
--
-- The same state machine as the local BreakerCore (its TRANSITIONS table
-- and rules); keep the two in step. Time is the Redis server's
-- (TIME, in microseconds), so hosts whose clocks disagree still agree here.
--
-- KEYS[1]  the breaker's hash: st gen oa op cf hs rj wc wf ws wp
--          (state, generation, opened_at us, open_period us, consecutive
--          failures, half-open successes, rejected, window
--          calls/failures/slow, window position: ring slot for a count
--          window, newest bucket index for a time window, -1 when empty)
-- KEYS[2]  the window: a string ring of one byte per call (count window:
--          bit 1 failed, bit 2 slow) or a hash of buckets c<i> f<i> s<i>
--          (time window, i = bucket index mod buckets)
-- KEYS[3]  the probe slots: token -> lease end us (a probe in flight), or
--          token -> -(expiry us) (a tombstone: the token was given up, so
--          an admit carrying it that arrives late takes nothing)
-- ARGV     op permit duration_s token, the batch (generation, successes,
--          slow successes, local rejections), the configuration (see
--          _redis_breaker._config_args), then tokens to give up
--
-- Reply: {state, generation, permit or -1, from_state or "", reason or "",
--         retry_after us or -1 (unknown), opened_at us, open_period us,
--         consecutive failures, half-open in flight, half-open successes,
--         rejected, window calls, window failures, window slow calls}

local H, W, P = KEYS[1], KEYS[2], KEYS[3]
local op = ARGV[1]
local permit = tonumber(ARGV[2])
local duration = tonumber(ARGV[3])
local token = ARGV[4] -- '' for none
local batch_gen = tonumber(ARGV[5])
local batch_ok = tonumber(ARGV[6])
local batch_slow = tonumber(ARGV[7]) -- of batch_ok
local batch_rejected = tonumber(ARGV[8])
local fail_threshold = tonumber(ARGV[9]) -- 0: rule off
local recovery = tonumber(ARGV[10]) -- us
local max_recovery = tonumber(ARGV[11]) -- us, 0: no growth
local probe_max = tonumber(ARGV[12])
local success_threshold = tonumber(ARGV[13])
local failure_rate = tonumber(ARGV[14]) -- -1: rule off
local slow_rate = tonumber(ARGV[15]) -- -1: rule off
local slow_limit = tonumber(ARGV[16]) -- seconds, -1: no call is slow
local window_kind = ARGV[17] -- "none", "count" or "time"
local window_size = tonumber(ARGV[18]) -- ring size, or number of buckets
local width = tonumber(ARGV[19]) -- time bucket width, us
local min_calls = tonumber(ARGV[20])
local ttl = tonumber(ARGV[21]) -- ms
local lease = tonumber(ARGV[22]) -- us a probe slot stays taken at most
local ORPHANS = 23 -- ARGV[23..]: tokens of round trips given up

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local FIELDS = {'st', 'gen', 'oa', 'op', 'cf', 'hs', 'rj',
                'wc', 'wf', 'ws', 'wp'}
local r = {}
local dirty = false
local raw = redis.call('HMGET', H, unpack(FIELDS))
if raw[1] then
  r.st = raw[1]
  for i = 2, #FIELDS do r[FIELDS[i]] = tonumber(raw[i]) or 0 end
else
  -- New, or expired while idle, or Redis restarted empty: a fresh closed
  -- breaker. The generation starts from the clock (ms), so it keeps growing
  -- across a restart: permits and event sequences from before stay older.
  r.st = 'closed'
  for i = 2, #FIELDS do r[FIELDS[i]] = 0 end
  r.gen = math.floor(now / 1000)
  r.wp = (window_kind == 'time') and -1 or 0
  redis.call('DEL', W)
  dirty = true
end

local from_state, reason = '', ''

-- Probe slots ---------------------------------------------------------------

-- Live probes, counted once per run (expired leases and tombstones are
-- dropped on the way: a lease nobody reported on is a process that died).
local probes = nil
local function held()
  if probes == nil then
    probes = 0
    local all = redis.call('HGETALL', P)
    for i = 1, #all, 2 do
      local v = tonumber(all[i + 1])
      if (v > 0 and v <= now) or (v < 0 and -v <= now) then
        redis.call('HDEL', P, all[i])
      elseif v > 0 then
        probes = probes + 1
      end
    end
  end
  return probes
end

-- Give ``tok`` up: free its slot if it holds one, and leave a tombstone so
-- that an admit carrying it, still on its way, takes nothing. Idempotent.
local function give_up(tok)
  if tok == '' then return end
  local v = tonumber(redis.call('HGET', P, tok))
  if v and v > 0 and v > now then probes = held() - 1 end
  if not v or v > 0 then
    redis.call('HSET', P, tok, string.format('%.17g', -(now + lease)))
    dirty = true
  end
end

-- Forget every probe (a transition): tombstones stay.
local function drop_probes()
  local all = redis.call('HGETALL', P)
  for i = 1, #all, 2 do
    if tonumber(all[i + 1]) > 0 then redis.call('HDEL', P, all[i]) end
  end
  probes = 0
end

-- The window --------------------------------------------------------------

-- Drop the time buckets that are too old at `now`; return now's slot.
local function roll()
  local index = math.floor(now / width)
  local head = r.wp
  if head < 0 then
    r.wp = index
    dirty = true
  elseif index > head then
    for i = math.max(head + 1, index - window_size + 1), index do
      local slot = i % window_size
      local c, f, s = 'c' .. slot, 'f' .. slot, 's' .. slot
      local old = redis.call('HMGET', W, c, f, s)
      r.wc = r.wc - (tonumber(old[1]) or 0)
      r.wf = r.wf - (tonumber(old[2]) or 0)
      r.ws = r.ws - (tonumber(old[3]) or 0)
      redis.call('HDEL', W, c, f, s)
    end
    r.wp = index
    dirty = true
  else
    -- A server clock that went backwards: use the newest bucket.
    index = head
  end
  return index % window_size
end

local function record(failed, slow)
  local f = failed and 1 or 0
  local s = slow and 1 or 0
  if window_kind == 'count' then
    local pos = r.wp
    if r.wc >= window_size then
      local old = string.byte(redis.call('GETRANGE', W, pos, pos)) or 0
      r.wf = r.wf - (old % 2)
      r.ws = r.ws - math.floor(old / 2)
    else
      r.wc = r.wc + 1
    end
    redis.call('SETRANGE', W, pos, string.char(f + 2 * s))
    pos = pos + 1
    if pos >= window_size then pos = 0 end
    r.wp = pos
  else
    local slot = roll()
    redis.call('HINCRBY', W, 'c' .. slot, 1)
    if failed then redis.call('HINCRBY', W, 'f' .. slot, 1) end
    if slow then redis.call('HINCRBY', W, 's' .. slot, 1) end
    r.wc = r.wc + 1
  end
  r.wf = r.wf + f
  r.ws = r.ws + s
end

local function clear()
  r.cf = 0
  r.op = 0
  r.wc, r.wf, r.ws = 0, 0, 0
  r.wp = (window_kind == 'time') and -1 or 0
  redis.call('DEL', W)
end

-- Transitions (the TRANSITIONS table's entry actions) ------------------------

local function move(trigger, to)
  from_state, reason = r.st, trigger
  r.st = to
  r.gen = r.gen + 1
  r.hs = 0
  drop_probes()
  if to == 'open' then
    r.oa = now
    if trigger == 'probe_failed' and max_recovery > 0 then
      r.op = math.min(r.op * 2, max_recovery)
    else
      r.op = recovery
    end
  elseif to == 'forced_open' then
    r.oa = now
  elseif to == 'closed' then
    clear()
  end
  dirty = true
end

local function poll()
  if r.st == 'open' and now >= r.oa + r.op then
    move('recovery_timeout', 'half_open')
  end
end

local function check_rates()
  if window_kind == 'time' then roll() end
  local calls = r.wc
  if calls < min_calls or calls <= 0 then return end
  if failure_rate >= 0 and r.wf / calls >= failure_rate then
    move('failure_rate', 'open')
  elseif slow_rate >= 0 and r.ws / calls >= slow_rate then
    move('slow_call_rate', 'open')
  end
end

-- The state a permit still counts in, or nil when it is stale.
local function current()
  if permit ~= r.gen then return nil end
  if r.st == 'closed' or r.st == 'half_open' then return r.st end
  return nil
end

local function retry_after()
  if r.st == 'open' then return math.max(0, r.oa + r.op - now) end
  if r.st == 'forced_open' then return -1 end
  if r.st == 'half_open' and held() >= probe_max then return -1 end
  return 0
end

-- The batch: a closed breaker's outcomes that could trip nothing, counted
-- in a process and sent with its next round trip.
local function apply_batch()
  if batch_rejected > 0 then
    r.rj = r.rj + batch_rejected
    dirty = true
  end
  if batch_ok <= 0 or batch_gen ~= r.gen or r.st ~= 'closed' then return end
  r.cf = 0
  dirty = true
  if window_kind == 'none' then return end
  -- Only the last window_size calls of a count window can matter.
  local n, slow_n = batch_ok, batch_slow
  if window_kind == 'count' and n > window_size then
    local skip = n - window_size
    slow_n = math.max(0, slow_n - skip)
    n = window_size
  end
  if window_kind == 'count' then
    for i = 1, n do record(false, i <= slow_n) end
  else
    local slot = roll()
    redis.call('HINCRBY', W, 'c' .. slot, n)
    if slow_n > 0 then redis.call('HINCRBY', W, 's' .. slot, slow_n) end
    r.wc = r.wc + n
    r.ws = r.ws + slow_n
  end
  check_rates()
end

-- The operation ------------------------------------------------------------

local granted = -1
local slow = slow_limit >= 0 and duration >= slow_limit

for i = ORPHANS, #ARGV do give_up(ARGV[i]) end
apply_batch()

if op == 'admit' then
  if r.st == 'closed' or r.st == 'disabled' then
    granted = r.gen
  else
    poll()
    if r.st == 'half_open' then
      local late = token ~= '' and redis.call('HEXISTS', P, token) == 1
      if late then
        -- Given up before it arrived: nobody waits for this answer.
        granted = -2
      elseif held() < probe_max then
        redis.call('HSET', P, token, string.format('%.17g', now + lease))
        probes = probes + 1
        granted = r.gen
      end
    end
    if granted == -1 then r.rj = r.rj + 1 end
    if granted == -2 then granted = -1 end
    dirty = true
  end
elseif op == 'success' then
  local state = current()
  give_up(token)
  if state == 'closed' then
    r.cf = 0
    if window_kind ~= 'none' then
      record(false, slow)
      check_rates()
    end
  elseif state == 'half_open' then
    if slow and slow_rate >= 0 then
      move('probe_failed', 'open')
    else
      r.hs = r.hs + 1
      if r.hs >= success_threshold then move('probe_succeeded', 'closed') end
    end
  end
  dirty = true
elseif op == 'failure' then
  local state = current()
  give_up(token)
  if state == 'half_open' then
    move('probe_failed', 'open')
  elseif state == 'closed' then
    r.cf = r.cf + 1
    if window_kind ~= 'none' then record(true, slow) end
    if fail_threshold > 0 and r.cf >= fail_threshold then
      move('failure_threshold', 'open')
    elseif window_kind ~= 'none' then
      check_rates()
    end
  end
  dirty = true
elseif op == 'release' then
  give_up(token)
elseif op == 'force_open' then
  if r.st ~= 'forced_open' then move('forced_open', 'forced_open') end
elseif op == 'disable' then
  if r.st ~= 'disabled' then move('disabled', 'disabled') end
elseif op == 'reset' then
  if r.st ~= 'closed' then
    move('reset', 'closed')
  else
    -- No transition, but permits granted before belong to the forgotten
    -- window: make them stale.
    r.gen = r.gen + 1
    clear()
    dirty = true
  end
elseif op == 'poll' then
  poll()
  if window_kind == 'time' and r.wp >= 0 then roll() end
else
  return redis.error_reply('unknown breaker operation ' .. tostring(op))
end

if dirty then
  local args = {}
  for i = 1, #FIELDS do
    local k = FIELDS[i]
    args[#args + 1] = k
    local v = r[k]
    if type(v) == 'number' then v = string.format('%.17g', v) end
    args[#args + 1] = v
  end
  redis.call('HSET', H, unpack(args))
  if r.st == 'forced_open' or r.st == 'disabled' then
    -- An operator's decision does not expire with idleness.
    redis.call('PERSIST', H)
    redis.call('PERSIST', W)
  else
    redis.call('PEXPIRE', H, ttl)
    redis.call('PEXPIRE', W, ttl)
  end
  redis.call('PEXPIRE', P, ttl)
end

local in_flight = 0
if r.st == 'half_open' then in_flight = held() end
return {r.st, r.gen, granted, from_state, reason, retry_after(),
        r.oa, r.op, r.cf, in_flight, r.hs, r.rj, r.wc, r.wf, r.ws}
