-- KEYS: delayed
-- ARGV: now, run_key, steps_key, lock_key, counts_key, definition_key, tags_key,
--   tag_members_key, delayed_member, contact_events, tag_triggers, account, outbox,
--   webhook_accounts, token,
--   max_steps, *run_ids
-- Advance automation runs through the steps Redis does by itself: a wait that has ended,
-- a wait in seconds (the run parks in the delayed set), a tag added or removed, the end.
-- Each run stops at the first step that needs the worker (a send, a condition, a
-- webhook, a field, a wait until a time of day) and is handed over at that step; the
-- worker executes it and calls this again. One call serves a whole batch of runs whose
-- waits ended together, each run atomic and idempotent: a run already past its wait, or
-- finished, is left alone, so a batch done twice changes nothing the second time.
-- include: automation_lib
-- ARGV[15] the lease token the caller holds on these runs ('' : none)
-- ARGV[16] steps per run at most   ARGV[17..] run ids
-- Returns {steps done: run, index, type, status, …}, {handed over: run, index, …},
--   {to look at again shortly (another job holds the run, or too many steps): run, …},
--   {broken: run, error, …}
local token = ARGV[FIRST_OWN_ARG]
local max_steps = tonumber(ARGV[FIRST_OWN_ARG + 1])
local done, handoff, later, broken = {}, {}, {}, {}
local definitions = {}

local function steps_of(automation, version)
  local id = automation .. ' ' .. version
  local found = definitions[id]
  if found == nil then
    local raw = redis.call('GET', key(T.definition, automation, version))
    found = raw and cjson.decode(raw).steps or false
    definitions[id] = found
  end
  return found
end

local has_tag_triggers
local function tag_triggers()
  if has_tag_triggers == nil then has_tag_triggers = redis.call('SCARD', TAG_TRIGGERS) > 0 end
  return has_tag_triggers
end

local function note(run_id, index, kind, state)
  done[#done + 1] = run_id
  done[#done + 1] = index
  done[#done + 1] = kind
  done[#done + 1] = state
end

local seen = {}

local function advance(run_id)
  -- Twice in one call, a run would be read as it was before its first pass (what a pass
  -- records is written at the end): the second is left out.
  if seen[run_id] then return end
  seen[run_id] = true
  local lock = redis.call('GET', key(T.lock, run_id))
  if lock and lock ~= token then
    later[#later + 1] = run_id
    return
  end
  local r = redis.call('HMGET', key(T.run, run_id),
    'automation', 'version', 'contact', 'step', 'status', 'due_at')
  local automation, contact, status = r[1], r[3], r[5]
  if not automation or status == 'done' or status == 'failed' or status == 'cancelled' then
    return
  end
  local index = tonumber(r[4])
  local steps = steps_of(automation, r[2])
  if not steps then
    local err = 'automation deleted'
    record_step(run_id, automation, index, 'failed',
      cjson.encode({status = 'failed', error = err, at = NOW}), nil, 'failed', nil, err)
    note(run_id, index, 'deleted', 'failed')
    return
  end
  local due = tonumber(r[6] or '')
  for _ = 1, max_steps do
    local n = #steps
    if index >= n then
      record_step(run_id, automation, index, 'done', cjson.encode({status = 'done', at = NOW}),
        nil, 'done')
      return
    end
    local step = steps[index + 1]
    local kind = step['type']
    local next_step, after = index + 1, 'active'
    if index + 1 >= n then next_step, after = nil, 'done' end
    local record  -- the record's fields after its status, as JSON (written by hand: cjson
    -- cost a sixth of a run's time here)
    if kind == 'wait' and status == 'waiting' and due then
      if due > NOW + 0.001 then return end  -- early (a duplicate): the delayed set has the job
      record = string.format('"waited_until":%.6f', due)
    elseif kind == 'wait' and step['seconds'] then
      due = NOW + step['seconds']
      record_step(run_id, automation, index, 'waiting',
        cjson.encode({status = 'waiting', ['until'] = due, at = NOW}), index, 'waiting', due)
      note(run_id, index, kind, 'waiting')
      return
    elseif kind == 'add_tag' then
      local added = redis.call('SADD', key(T.tags, contact), step['tag'])
      redis.call('ZADD', key(T.tag_members, step['tag']), 0, contact)
      if added == 1 and tag_triggers() then
        -- A new tag triggers like one set through the API (see contact_upsert.lua).
        redis.call('XADD', CONTACT_EVENTS, '*', 'account', ACCOUNT, 'contact', contact,
          'created', '0', 'tags', step['tag'])
      end
      record = '"tag":' .. cjson.encode(step['tag'])
    elseif kind == 'remove_tag' then
      redis.call('SREM', key(T.tags, contact), step['tag'])
      redis.call('ZREM', key(T.tag_members, step['tag']), contact)
      record = '"tag":' .. cjson.encode(step['tag'])
    else
      handoff[#handoff + 1] = run_id
      handoff[#handoff + 1] = index
      return
    end
    record = string.format('{"status":"done",%s,"at":%s}', record, NOW_TEXT)
    record_step(run_id, automation, index, 'done', record, next_step, after)
    note(run_id, index, kind, 'done')
    if not next_step then return end
    index, status, due = next_step, 'active', nil
  end
  later[#later + 1] = run_id
end

for i = FIRST_OWN_ARG + 2, #ARGV do
  local ok, problem = pcall(advance, ARGV[i])
  -- Redis full (maxmemory, noeviction) is not the run's fault: the whole call fails, as
  -- any write refused would make it (only a call's first write is refused, so nothing
  -- is written yet), and the worker gives the job back for later.
  -- (pcall gives the server's error as a string in Valkey 8; some servers give a table.)
  local text = type(problem) == 'table' and tostring(problem.err) or tostring(problem)
  local oom = not ok and string.find(text, 'OOM command not allowed', 1, true)
  if oom then return redis.error_reply(string.sub(text, oom)) end
  if not ok then
    forget(ARGV[i])
    broken[#broken + 1] = ARGV[i]
    broken[#broken + 1] = type(problem) == 'table' and tostring(problem.err) or tostring(problem)
  end
end
flush()
return {done, handoff, later, broken}
