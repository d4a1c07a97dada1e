-- tollgate: one all-or-nothing rate-limit decision (or refund) on Redis.
--
-- The arithmetic is that of tollgate-core (gcra::decide, FixedRule::decide,
-- SlidingRule::decide) on the state each key holds; the client rebuilds the
-- full Decision (remaining, retry_after, reset_after) from the state this
-- script saw, with the core's own functions. A refusal writes nothing; an
-- admission writes every member with PX = the time until its state is fresh.
--
-- KEYS[i]   the state of member i (one hash tag for all keys: Redis Cluster)
-- ARGV[1]   'check' or 'refund'
-- ARGV[2]   now in ns (decimal), or '' to read the server's TIME
-- ARGV[3]   'refund': when the units were charged, in ns on the clock of
--           ARGV[2] (decimal), or '' for now; 'check': ''
-- ARGV[4 + 5 (i - 1) ...] five fields per member:
--   'g' cost burst increment capacity   GCRA; increment = cost x T and
--                                       capacity = burst x T, in ns
--   'f' cost limit window offset        fixed window; window in whole
--                                       seconds, offset in ns (< window)
--   's' cost limit window 0             sliding window; window in seconds
--
-- Reply: { now (ns, decimal), 1 if admitted else 0, the state member 1 saw,
--          ..., the state member n saw } ('' for a missing key, '?' for one
--          this script cannot read: a check refuses it, a refund leaves it).
--
-- A refund gives back only what the charge still weighs (as the in-process
-- KeyedAlgorithm::refunded_since): GCRA cost x T less the time since the
-- charge (nothing once that is <= 0; a charge 'after' now counts as made
-- now); a window the units only while now is in the window of the charge
-- (fixed: (t + offset) / W, sliding: t / W), else nothing. So a late 304
-- never takes a unit off a later window or a refilled bucket.
--
-- States: GCRA 'tat' (ns, decimal); fixed 'index:count'; sliding
-- 'index:previous:current' (window indexes in full, not modulo 2^k).
--
-- Numbers: Lua 5.1 has only doubles, exact below 2^53; times in ns reach
-- 2^64. A time is therefore a pair {s, n} = s x 10^9 + n with 0 <= n < 10^9
-- (s < 2^35), and window arithmetic is done in whole seconds plus ns.

if redis.replicate_commands then
    -- Redis < 5: replicate effects, so TIME may come before writes.
    redis.replicate_commands()
end

local E9 = 1000000000
-- The core's clock-back tolerance (`window::FIXED_MAX_BACK`,
-- `SLIDING_MAX_BACK`; a unit test keeps them equal): a stored window at
-- most this many windows later than now's is a clock that stepped back
-- (count against it, stricter); further ahead, the core reads it as over,
-- and so does the script, so that both make the same decision.
local FIXED_MAX_BACK = 1048576
local SLIDING_MAX_BACK = 4096
local U64_MAX = {18446744073, 709551615}

-- A decimal u64 as {s, n}.
local function num(str)
    local len = #str
    if len <= 9 then
        return {0, tonumber(str)}
    end
    return {tonumber(string.sub(str, 1, len - 9)), tonumber(string.sub(str, len - 8))}
end

-- {s, n} as a decimal u64.
local function text(a)
    if a[1] == 0 then
        return string.format('%d', a[2])
    end
    return string.format('%.0f%09d', a[1], a[2])
end

local function int(x)
    return string.format('%.0f', x)
end

local function add(a, b)
    local s, n = a[1] + b[1], a[2] + b[2]
    if n >= E9 then
        return {s + 1, n - E9}
    end
    return {s, n}
end

-- a - b, for a >= b.
local function sub(a, b)
    local s, n = a[1] - b[1], a[2] - b[2]
    if n < 0 then
        return {s - 1, n + E9}
    end
    return {s, n}
end

local function less(a, b)
    return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2])
end

local function is_zero(a)
    return a[1] == 0 and a[2] == 0
end

-- ns as whole ms, rounded up (PX of a key that must outlive its state).
local function ms_ceil(a)
    return a[1] * 1000 + math.floor((a[2] + 999999) / 1000000)
end

local function fields(state)
    local out = {}
    for part in string.gmatch(state, '[^:]+') do
        out[#out + 1] = tonumber(part)
    end
    return out
end

-- With a caller's time the server cannot tell when that time passes (a
-- test's clock may stand still): keys then live a minute longer than their
-- state needs, so none expires while it still counts.
local now, slack = nil, 0
if ARGV[2] ~= '' then
    now = num(ARGV[2])
    slack = 60000
else
    local t = redis.call('TIME')
    now = {tonumber(t[1]), tonumber(t[2]) * 1000}
end
-- When a refund's units were charged (on the clock of `now`).
local charged = now
if ARGV[3] ~= '' then
    charged = num(ARGV[3])
end

-- GCRA ------------------------------------------------------------------------

-- Admitted?, the state to store (nil: none), time until it is fresh.
local function gcra_check(state, cost, burst, inc, cap)
    if cost > burst then
        return false
    end
    local tat = state and num(state) or {0, 0}
    local base = less(now, tat) and tat or now
    local new = add(base, inc)
    if less(U64_MAX, new) then
        -- Only for now beyond 2^63 ns: refuse rather than lose state.
        return false
    end
    if cost == 0 then
        return true
    end
    local after = sub(new, now)
    if less(cap, after) then
        return false
    end
    return true, text(new), after
end

-- The state after giving back what a charge of `back` ns (cost x T) made at
-- `charged` still weighs -- `back` less the time since -- and the time until
-- it is fresh; nil when there is nothing to give back. A `now` older than a
-- check the TAT has seen (a client clock read before another client's later
-- check) counts from TAT - cap, a time the limiter has reached (as the core's
-- `gcra::refunded_since`): it gives back nothing a refill restored.
local function gcra_refund(state, cost, back, cap)
    if not state or cost == 0 then
        return nil
    end
    local tat = num(state)
    local at = now
    if less(cap, tat) and less(at, sub(tat, cap)) then
        at = sub(tat, cap)
    end
    if less(charged, at) then
        local since = sub(at, charged)
        if not less(since, back) then
            -- The bucket has regenerated the whole charge by itself.
            return nil
        end
        back = sub(back, since)
    end
    if not less(at, tat) then
        return nil
    end
    local new = at
    if less(back, tat) then
        new = sub(tat, back)
        if less(new, at) then
            new = at
        end
    end
    return text(new), sub(new, now)
end

-- Fixed window ----------------------------------------------------------------

-- The index of the fixed window holding time `t`: (t + offset) / W, in
-- whole seconds (W is whole seconds, so the ns part never changes it).
local function fixed_index(t, ws, offset)
    return math.floor(add(t, offset)[1] / ws)
end

-- The window a call at `now` counts against: index, count, time to its end.
local function fixed_at(state, ws, offset)
    local t = add(now, offset)
    local index = fixed_index(now, ws, offset)
    local to_end = sub({ws, 0}, {t[1] % ws, t[2]})
    if not state then
        return index, 0, to_end, false
    end
    local f = fields(state)
    if f[1] == index then
        return index, f[2], to_end, false
    elseif f[1] < index or f[1] - index > FIXED_MAX_BACK then
        return index, 0, to_end, false
    end
    -- A later window: the clock stepped back. Count against it (stricter).
    return f[1], f[2], add(to_end, {(f[1] - index) * ws, 0}), true
end

local function fixed_check(state, cost, limit, ws, offset)
    if cost > limit then
        return false
    end
    local index, count, to_end = fixed_at(state, ws, offset)
    if count + cost > limit then
        return false
    end
    if cost == 0 then
        return true
    end
    return true, int(index) .. ':' .. int(count + cost), to_end
end

local function fixed_refund(state, cost, ws, offset)
    if not state or cost == 0 then
        return nil
    end
    if fixed_index(charged, ws, offset) ~= fixed_index(now, ws, offset) then
        -- The charge counted in a window that is over: nothing is owed.
        return nil
    end
    local index, count, to_end, later = fixed_at(state, ws, offset)
    if count == 0 or later then
        -- A stored window later than now's is not the charge's: nothing
        -- (stricter; as the core's `FixedRule::refunded_since`).
        return nil
    end
    -- Kept even at 0 (as the core keeps the window index): a check with an
    -- older time (a caller's clock behind) then counts against this window
    -- instead of starting an earlier one that fresher callers ignore.
    local left = count - math.min(cost, count)
    return int(index) .. ':' .. int(left), to_end
end

-- Sliding window --------------------------------------------------------------

-- The index of the sliding window holding time `t`: t / W, in whole seconds.
local function sliding_index(t, ws)
    return math.floor(t[1] / ws)
end

-- index, previous count, current count, elapsed (ns, < W, a double) and
-- lead ({s, n}: from now to the evaluation point; non-zero only when the
-- clock stepped back into an earlier window than the stored one).
local function sliding_at(state, ws)
    local index = sliding_index(now, ws)
    local elapsed = (now[1] % ws) * E9 + now[2]
    if not state then
        return index, 0, 0, elapsed, {0, 0}
    end
    local f = fields(state)
    local d = index - f[1]
    if d == 0 then
        return index, f[2], f[3], elapsed, {0, 0}
    elseif d == 1 then
        return index, f[3], 0, elapsed, {0, 0}
    elseif d > 1 or d < -SLIDING_MAX_BACK then
        return index, 0, 0, elapsed, {0, 0}
    end
    -- The stored window is later: evaluate at its start.
    local lead = sub({(f[1] - index) * ws, 0}, {now[1] % ws, now[2]})
    return f[1], f[2], f[3], 0, lead
end

-- ceil(prev x (W - elapsed) / W) with W = ws x 10^9, exactly: the product
-- is split into seconds and ns so that no intermediate passes 2^53.
local function weighted(prev, elapsed, ws)
    local r = ws * E9 - elapsed
    local rs, rn = math.floor(r / E9), r % E9
    local lo = prev * rn
    local hi = prev * rs + math.floor(lo / E9)
    lo = lo % E9
    local q = math.floor(hi / ws)
    if hi % ws > 0 or lo > 0 then
        q = q + 1
    end
    return q
end

-- Time from now until the estimate is 0 (nothing counted).
local function sliding_reset(prev, curr, elapsed, lead, ws)
    local rest = ws * E9 - elapsed
    if curr > 0 then
        return add(lead, {ws + math.floor(rest / E9), rest % E9})
    elseif prev > 0 then
        return add(lead, {math.floor(rest / E9), rest % E9})
    end
    return lead
end

local function sliding_check(state, cost, limit, ws)
    if cost > limit then
        return false
    end
    if cost == 0 then
        -- A read-out: answered even over the limit (as the core's rule).
        return true
    end
    local index, prev, curr, elapsed, lead = sliding_at(state, ws)
    if weighted(prev, elapsed, ws) + curr + cost > limit then
        return false
    end
    local ttl = sliding_reset(prev, curr + cost, elapsed, lead, ws)
    return true, int(index) .. ':' .. int(prev) .. ':' .. int(curr + cost), ttl
end

local function sliding_refund(state, cost, ws)
    if not state or cost == 0 then
        return nil
    end
    if sliding_index(charged, ws) ~= sliding_index(now, ws) then
        -- Not the window of the charge: nothing (it may still weigh as the
        -- previous window's count; giving it back there is left out, as in
        -- process: stricter, never looser).
        return nil
    end
    local index, prev, curr, elapsed, lead = sliding_at(state, ws)
    if curr == 0 or not is_zero(lead) then
        -- Nothing from a stored window later than now's (as the core's
        -- `SlidingRule::refunded_since`).
        return nil
    end
    local left = curr - math.min(cost, curr)
    local ttl = sliding_reset(prev, left, elapsed, lead, ws)
    if is_zero(ttl) then
        -- Nothing weighs any more; keep the window index to its end anyway
        -- (as the core does), for checks with an older time (see
        -- `fixed_refund`).
        local rest = ws * E9 - elapsed
        ttl = {math.floor(rest / E9), rest % E9}
    end
    return int(index) .. ':' .. int(prev) .. ':' .. int(left), ttl
end

-- The decision ----------------------------------------------------------------

-- The text forms of a state this script can read, by kind. A key that holds
-- anything else (a value of another type, of another script version, or
-- not ours) is unreadable: a check refuses and a refund leaves it, both
-- without raising a script error (which the client would take for Redis
-- being down, and answer every key by the fail mode), and the reply carries
-- '?' for it (the client refuses it for a second).
local FORMS = {g = '^%d+$', f = '^%d+:%d+$', s = '^%d+:%d+:%d+$'}
local function readable(kind, state)
    return not state or string.find(state, FORMS[kind]) ~= nil
end

local refund = ARGV[1] == 'refund'
local reply = {text(now), 1}
-- States as this call leaves them (a key listed twice sees its own update).
local current = {}
local writes = {}
for i = 1, #KEYS do
    local key = KEYS[i]
    local state = current[key]
    if state == nil then
        -- pcall: a key of another type is an error reply, not a raise.
        state = redis.pcall('GET', key)
        if type(state) == 'table' then
            state = '?'
        end
    end
    if state == '' then
        state = false
    end
    local at = 4 + (i - 1) * 5
    local kind, cost = ARGV[at], tonumber(ARGV[at + 1])
    local a, b, c = ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
    if not readable(kind, state) then
        state = '?'
    end
    reply[i + 2] = state or ''
    local ok, new, ttl
    if state == '?' then
        ok = refund
    elseif refund then
        if kind == 'g' then
            new, ttl = gcra_refund(state, cost, num(b), num(c))
        elseif kind == 'f' then
            new, ttl = fixed_refund(state, cost, tonumber(b), num(c))
        else
            new, ttl = sliding_refund(state, cost, tonumber(b))
        end
        ok = true
    elseif kind == 'g' then
        ok, new, ttl = gcra_check(state, cost, tonumber(a), num(b), num(c))
    elseif kind == 'f' then
        ok, new, ttl = fixed_check(state, cost, tonumber(a), tonumber(b), num(c))
    else
        ok, new, ttl = sliding_check(state, cost, tonumber(a), tonumber(b))
    end
    if not ok then
        reply[2] = 0
    elseif new then
        current[key] = new
        writes[#writes + 1] = {key, new, ttl}
    end
end

if reply[2] == 1 then
    for _, w in ipairs(writes) do
        -- A state fresh now is deleted only at the server's own clock: with
        -- callers' clocks (`slack`), one behind may still be restricted by
        -- it (a GCRA refunded back to `now`), so it is kept `slack` longer.
        if w[2] == '' or (is_zero(w[3]) and slack == 0) then
            redis.call('DEL', w[1])
        else
            -- One ms more than the state needs: Redis may time `PX` from
            -- when the script started (7.2 takes the command's start for
            -- expiries), a little before the `TIME` read here, and a key
            -- gone before its state is fresh would admit early.
            redis.call('SET', w[1], w[2], 'PX', int(ms_ceil(w[3]) + 1 + slack))
        end
    end
end
return reply
