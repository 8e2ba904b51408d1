--[[
token_bucket.lua: the global, adaptive write-capacity limiter of one DynamoDB table.

KEYS[1]  the table's hash (built by pipeline/keys.py, never here).
ARGV[1]  op: "acquire" (grant units and say how long to sleep before spending them, or grant
         nothing and say when to ask again), "feedback" (record consumption and throttles,
         adapt the rate) or "state" (read only, nothing written).
ARGV[2]  now in seconds, or "" for Redis TIME. Production always sends "": one clock for every
         machine. The unit tests send a fake time to run this very script deterministically.
ARGV[3]  units (WCU): taken by acquire, consumed for feedback.
ARGV[4]  "1" if the call reported by feedback was throttled or partly refused.
ARGV[5]  feedback: consumed minus granted for that call (WCU), charged to the bucket; for a
         throttled call, what it was granted and did not consume is what it had refused.
         acquire: the longest wait the caller accepts (s), or -1 for any: a grant or a booking
         that would wait longer is not made at all (nothing charged, nothing booked).
ARGV[6..19] ceiling, floor (WCU/s), burst (s), idle ttl (ms), window (s), cut window (s),
         beta, fallback beta, alpha, min span (s), ahead (s), max step, near peak, peak decay.
         Why these values: worker/limiter/bucket.py.
ARGV[20] feedback: the partition a refusal *without a reason* came from (a number > 0; 0: none
         or not known). Such a refusal cuts this (table) bucket only if another partition was
         refused within the last window, and no refusal named a key range within the last two:
         refusals confined to one partition key, or while DynamoDB says partitions are what
         binds, are the partitions' (their own buckets are cut by the caller), not the table's.
         A negative number: a refusal that named its key range came from that partition (-n);
         recorded, nothing cut.
ARGV[21..27] min replies, slower, noise margin, noise z, noise follow, noise min, noise max:
         the evidence a cut needs, and the noise baseline (worker/limiter/bucket.py).
ARGV[28] acquire: the reserve (s) of a single write, 0 for bulk. A single write is granted at
         once, ahead of every booking, while the bucket's debt stays within that many seconds of
         the rate (plus the ahead margin): the bulk callers' waits pay it back.

Hash fields: tokens (WCU, negative = debt that sleeping callers are paying off), ts (last
refill), rate (shared WCU/s), win (start of the measurement window), used (WCU consumed in it),
thr (1 if it saw a throttle), pu/pd (the previous window's WCU and length), cut (time of the
last cut), nw (the next wake-up to book for a refused caller), cu (WCU consumed since the last
cut), st (clean windows in a row: each raises the rate faster, so a rate cut by a storm that has
ended is back within seconds), rp/rpt (the partition of the last refusal without a reason, and
when), kr (when a refusal last named a key range), pk (the highest rate a window without any
refusal has seen lately, fading by the peak decay each window: below near peak x pk a clean
window closes half the gap, before any it doubles the step), rf/nf (WCU refused in the window,
and replies), pr/pn/pq (the previous window's, and its quiet time), cr/cn/cq (WCU refused since
the last cut, replies, and quiet time), qw (quiet time in the window: see below), lr (the last
reply), bs (the noise baseline: the refused share that slowing down did not cure), xa/xs (the
WCU/s taken and sent between the last two cuts, 0 if too few replies: what the last cut is
tested against), nt/nr (1 once a cut cured nothing, and the rate before the first of the cuts
made less than two windows apart: a second cut in a row that cured nothing learns the noise
and gives that rate back). Every number is stored and returned as a string with 17 significant digits,
because Redis truncates Lua numbers to integers. Redis >= 5 replicates a script's effects
rather than the script, so calling TIME and then writing is allowed. The key expires after the
idle ttl; PEXPIRE renews it.

The Python twin of this script is worker/limiter/memory_backend.py. Change both together; the shared
unit test suite checks that they give the same answers.
]]

local key = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])
if now == nil then
    local t = redis.call('TIME')
    now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local units = tonumber(ARGV[3])
local throttled = ARGV[4] == '1'
local charge = tonumber(ARGV[5])
local ceiling, floor = tonumber(ARGV[6]), tonumber(ARGV[7])
local burst, ttl_ms = tonumber(ARGV[8]), tonumber(ARGV[9])
local window, cut_window = tonumber(ARGV[10]), tonumber(ARGV[11])
local beta, fallback_beta = tonumber(ARGV[12]), tonumber(ARGV[13])
local alpha, min_span = tonumber(ARGV[14]), tonumber(ARGV[15])
local ahead = tonumber(ARGV[16])
local max_step, near_peak = tonumber(ARGV[17]), tonumber(ARGV[18])
local peak_decay = tonumber(ARGV[19])
local tag = tonumber(ARGV[20]) or 0
local min_replies, slower = tonumber(ARGV[21]), tonumber(ARGV[22])
local noise_margin, noise_z = tonumber(ARGV[23]), tonumber(ARGV[24])
local noise_follow, noise_min = tonumber(ARGV[25]), tonumber(ARGV[26])
local noise_max = tonumber(ARGV[27])
local reserve = tonumber(ARGV[28]) or 0

local function fmt(x)
    return string.format('%.17g', x)
end

-- The largest refused share of `replies` replies that is still the noise baseline bs's.
local function noise_limit(bs, replies)
    return bs * (1 + noise_margin) + noise_z * math.sqrt(bs * (1 - bs) / math.max(1, replies))
end

-- Whether two refused shares, the smaller measured over `replies` replies, are the same noise.
local function alike(a, b, replies)
    return math.max(a, b) <= noise_limit(math.min(a, b), replies)
end

local f = redis.call('HMGET', key, 'tokens', 'ts', 'rate', 'win', 'used', 'thr', 'pu', 'pd',
    'cut', 'nw', 'cu', 'st', 'rp', 'rpt', 'kr', 'pk', 'rf', 'nf', 'pr', 'pn', 'cr', 'cn', 'bs',
    'xa', 'xs', 'lr', 'qw', 'pq', 'cq', 'nt', 'nr')
local tokens, ts, rate, win, used, thr, pu, pd, cut, nw, cu
local st, rp, rpt = tonumber(f[12]) or 0, tonumber(f[13]) or 0, tonumber(f[14]) or 0
local kr, pk = tonumber(f[15]) or 0, tonumber(f[16]) or 0
local rf, nf, pr, pn = tonumber(f[17]) or 0, tonumber(f[18]) or 0, tonumber(f[19]) or 0,
    tonumber(f[20]) or 0
local cr, cn, bs = tonumber(f[21]) or 0, tonumber(f[22]) or 0, tonumber(f[23]) or 0
local xa, xs, lr = tonumber(f[24]) or 0, tonumber(f[25]) or 0, tonumber(f[26]) or 0
local qw, pq, cq = tonumber(f[27]) or 0, tonumber(f[28]) or 0, tonumber(f[29]) or 0
local nt, nr = tonumber(f[30]) or 0, tonumber(f[31]) or 0
if f[1] then
    tokens, ts, rate, win = tonumber(f[1]), tonumber(f[2]), tonumber(f[3]), tonumber(f[4])
    used, thr, pu, pd, cut = tonumber(f[5]), tonumber(f[6]), tonumber(f[7]), tonumber(f[8]),
        tonumber(f[9])
    nw = tonumber(f[10]) or 0
    cu = tonumber(f[11]) or 0
else
    -- A new (or expired) table starts optimistic: at the ceiling, with a full bucket.
    rate = ceiling
    tokens, ts, win, used, thr, pu, pd, cut, nw = ceiling * burst, now, now, 0, 0, 0, 0, 0, 0
    cu = 0
end

-- The ceiling may have been lowered in the configuration since the rate was stored.
rate = math.min(ceiling, math.max(floor, rate))

-- Refill at the current rate; a clock that went backwards (failover) adds nothing.
tokens = math.min(rate * burst, tokens + math.max(0, now - ts) * rate)
ts = math.max(ts, now)

-- Time without replies is neither taken nor refused: a gap between replies longer than the
-- min span plus the time the rate takes for an average reply (the last window's) is quiet (a
-- stall, the writers' backoffs, a load's end), left out of the rates measured over the window
-- and since the last cut, so that it never makes them read low.
if lr > 0 then
    local lull = min_span
    if pn > 0 then
        lull = lull + (pu + pr) / pn / rate
    end
    local quiet = now - lr - lull
    if quiet > 0 then
        qw = math.min(now - win, qw + quiet)
        cq = math.min(now - cut, cq + quiet)
        lr = now - lull
    end
end

-- Close the measurement window: a clean one (consumption, no throttle) raises the rate by
-- alpha of itself. Below near peak x the peak (what the table was seen to take), the step is
-- half the way back to it if that is more (up to max step); with no peak known the step
-- doubles with each clean window in a row: a small overshoot near the table's capacity, a fast
-- return once a storm of refusals has stopped. A window whose refused share is the noise's
-- (the baseline's, within its limit) counts as clean, but shows no peak: noise refuses at any
-- rate. A window under the baseline moves it toward its share (noise that shrinks or stops).
-- A window stretched by idleness says nothing: forget it.
if now - win >= window then
    pk = pk * peak_decay
    local span = now - win
    local sent = used + rf
    local share = 0
    if sent > 0 then
        share = rf / sent
    end
    local noise = rf > 0 and bs > 0 and share <= noise_limit(bs, nf)
    if sent > 0 and (thr == 0 or noise) and share < bs then
        bs = bs + (share - bs) * noise_follow
        if bs < noise_min then
            bs = 0
        end
    end
    if used > 0 and (thr == 0 or noise) then
        if span <= 2 * window and thr == 0 then
            pk = math.max(pk, used / span)
        end
        local step = alpha
        if pk == 0 then
            step = math.min(max_step, alpha * 2 ^ st)
        elseif rate * (1 - bs) < near_peak * pk then
            local half = (near_peak * pk / (rate * (1 - bs)) - 1) / 2
            step = math.min(max_step, math.max(alpha * 2 ^ st, half))
        end
        rate = math.min(ceiling, rate * (1 + step))
        st = math.min(st + 1, 32) -- past the max step anyway; never an overflow
    elseif thr ~= 0 then
        st = 0
    end
    if span <= 2 * window then
        pu, pd, pr, pn, pq = used, span, rf, nf, qw
    else
        pu, pd, pr, pn, pq = 0, 0, 0, 0, 0
    end
    win, used, thr, rf, nf, qw = now, 0, 0, 0, 0, 0
end

local wait, did_cut, granted = 0, 0, 0
if op == 'acquire' then
    -- limit: the longest wait this caller accepts (-1: any). A grant or a booking that would
    -- make it wait longer is not made: nothing charged, nothing booked, and the answer's wait
    -- says how long it would have been.
    local limit = charge
    if reserve > 0 and tokens - units >= -rate * (reserve + ahead) - 1e-9 then
        -- A single write: lent from the reserve, no wait; the bookings below wait for it.
        tokens = tokens - units
        granted = 1
        if nw > now then
            nw = nw + units / rate
        end
    elseif tokens >= -rate * ahead - 1e-9 then
        local need = (units - tokens) / rate
        if limit >= 0 and need > limit then
            wait = need
        else
            -- Granted, whatever the size: the bucket may go into debt, so a request larger
            -- than the bucket is served in its turn. The caller sleeps until the debt is paid.
            tokens = tokens - units
            granted = 1
            if tokens < 0 then
                wait = -tokens / rate
            end
            -- What a newcomer took, the callers booked below wait for in addition.
            if nw > now then
                nw = nw + units / rate
            end
        end
    else
        -- Too much is promised already: nothing taken. Few promises stand, so a cut takes
        -- effect at once. The caller is booked a wake-up one request after the previous one
        -- (within one window of the debt draining), so N waiting threads ask again one by
        -- one instead of all at every grant. A booking holds no capacity.
        local drained = now + (-tokens / rate - ahead)
        local wake = math.min(math.max(nw, drained), drained + window)
        wait = wake - now
        -- Granted at the wake-up, it would then wait for its own units and the ahead margin.
        local whole = wait + units / rate + ahead
        if limit >= 0 and whole > limit then
            wait = whole
        else
            nw = wake + units / rate
        end
    end
elseif op == 'feedback' then
    -- What a refused call was granted and did not consume, it had refused.
    local refused = 0
    if throttled and charge < 0 then
        refused = -charge
    end
    used = used + units
    cu = cu + units
    rf = rf + refused
    cr = cr + refused
    nf = nf + 1
    cn = cn + 1
    lr = now
    -- Charge what DynamoDB really consumed: a grant is an estimate (indexes cost extra). A
    -- clean call refunds what it did not use; a refused call's leftovers pay again when resent.
    if charge > 0 or not throttled then
        tokens = math.min(rate * burst, tokens - charge)
    end
    local cuts = throttled
    if tag < 0 then
        kr = now
    elseif throttled and tag > 0 then
        -- A refusal without a reason: the table's only if another partition was refused lately
        -- and no refusal has named a key range lately.
        cuts = rp ~= 0 and rp ~= tag and now - rpt <= window and now - kr > 2 * window
        rp, rpt = tag, now
    end
    if throttled then
        thr = 1
    end
    -- No more refused (over this window and the last) than the noise refuses at any rate:
    -- slowing down would not cure it. (With no baseline, any refusal may cut.)
    local calls = pn + nf
    if cuts and bs > 0 then
        cuts = (pr + rf) / (pu + pr + used + rf) > noise_limit(bs, calls)
    end
    -- What the replies since the last cut took and were sent with, per second, once there
    -- are enough of them to say.
    local since = now - cut - cq
    local ready = cut > 0 and since > 0 and cn >= min_replies
    local took, sent = 0, 0
    if ready then
        took, sent = cu / since, (cu + cr) / since
    end
    -- While there are replies enough to measure, a cut waits for as many replies to the last
    -- one: calls in flight when it was made must not make it compound, and they say whether
    -- slowing down helped. Sent much slower since (and soon after it), if the same share (at
    -- most the noise max) was refused and the table took less by about as much (no plateau at
    -- its capacity), the cut cured nothing. The second such cut in a row shows noise: its
    -- share becomes the baseline, the rate before the cascade of cuts comes back (they were
    -- mistakes; a capacity behind the noise is cut for again, measured), nothing is cut. One
    -- is not enough: a measure inflated by the table's burst or by replies to calls sent
    -- before the cut makes one cut to a capacity look like that.
    if cuts and cut > 0 and not ready and calls >= min_replies then
        cuts = false
    end
    local strike = cuts and xs > 0 and ready and since <= 2 * window and cr > 0 and xa < xs
        and sent <= slower * xs
        and took / sent <= xa / xs * (1 + xs / sent) / 2
        and alike(1 - took / sent, 1 - xa / xs, cn)
        and 1 - (took / sent + xa / xs) / 2 <= noise_max
    if strike and nt > 0 then
        bs = math.max(bs, 1 - (took / sent + xa / xs) / 2)
        rate = math.max(rate, math.min(ceiling, nr))
        xs, nt, cuts = 0, 0, false
        cut, cu, cr, cn, cq = now, 0, 0, 0, 0 -- the next cut measures from here
    end
    if cuts then
        local span = pd - pq + (now - win) - qw
        local enough = span >= min_span and calls >= min_replies
        local measured = enough and pu + used > 0
        local target = rate * fallback_beta
        -- What the table took over enough replies (less quiet time), plus what the noise alone
        -- refused of it.
        if measured then
            target = math.min(rate, (pu + used) / span / (1 - bs)) * beta
        end
        -- Soon after a cut the table's burst is spent: what it let through since then is its
        -- capacity, a fresher measure than the windows (which still hold the burst), so a
        -- discovery from 40,000 WCU/s lands in two cuts instead of a dozen.
        if ready and took > 0 and since >= min_span and since <= 2 * window then
            target = math.min(rate, took / (1 - bs)) * beta
            measured = true
        end
        target = math.max(floor, target)
        -- One cut per cut window: many threads reporting one congestion are one event. A cut
        -- anchored on measured consumption does not compound, so fresh evidence that the rate
        -- is still far too high may cut again sooner.
        if now - cut >= cut_window or (measured and target < rate * fallback_beta) then
            -- What the replies to the last cut took and were sent with: this cut's test.
            xa, xs = took, sent
            if strike then
                nt = 1
            else
                nt = 0
                if now - cut > 2 * window then -- the first cut of a cascade
                    nr = rate
                end
            end
            rate = target
            -- The table's burst is spent and promises made before the cut are still going
            -- out: pay for `ahead` seconds of them at the new rate before granting more.
            tokens = math.min(tokens, 0) - rate * ahead
            cut, did_cut, cu, st, cr, cn, cq = now, 1, 0, 0, 0, 0, 0
        end
    end
end

if op ~= 'state' then
    redis.call('HSET', key, 'tokens', fmt(tokens), 'ts', fmt(ts), 'rate', fmt(rate),
        'win', fmt(win), 'used', fmt(used), 'thr', thr, 'pu', fmt(pu), 'pd', fmt(pd),
        'cut', fmt(cut), 'nw', fmt(nw), 'cu', fmt(cu), 'st', st, 'rp', fmt(rp), 'rpt', fmt(rpt),
        'kr', fmt(kr), 'pk', fmt(pk), 'rf', fmt(rf), 'nf', fmt(nf), 'pr', fmt(pr), 'pn', fmt(pn),
        'cr', fmt(cr), 'cn', fmt(cn), 'bs', fmt(bs), 'xa', fmt(xa), 'xs', fmt(xs),
        'lr', fmt(lr), 'qw', fmt(qw), 'pq', fmt(pq), 'cq', fmt(cq), 'nt', nt, 'nr', fmt(nr))
    redis.call('PEXPIRE', key, ttl_ms)
end

return {fmt(wait), fmt(rate), fmt(tokens), tostring(did_cut), fmt(used), fmt(pu), fmt(pd),
    fmt(cut), tostring(granted)}
