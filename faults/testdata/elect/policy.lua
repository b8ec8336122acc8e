-- Manager backup (media servers, PIXERA-style): when a main manager is lost, a
-- standby manager takes it over and the switcher outputs the main feeds are
-- routed to the standby's inputs; when the main is restored, they are routed
-- back after a delay (failback).
--
-- The takeover goes through the runtime's bookkeeping (us.takeover), so the
-- site's failover limit, queue, mode (auto or manual: an operator confirms a
-- proposal) and the per-member failover: options apply, and the coverage
-- survives a restart of the coordinator.
--
-- When does the switcher change? It follows the bookkeeping:
--   * to the standby on takeover_started: the moment the bookkeeping commits
--     the takeover — at once in auto mode, when the operator confirms in
--     manual mode, when a standby frees for a queued main. Not on
--     takeover_done: a backup manager runs hot, and waiting for its agent's
--     answer (up to the action timeout) would keep a dead main on air.
--   * back to the main when the main has its duties again: on member_ready
--     (failover.wait_ready, the default: the main has resumed and said so),
--     or when the failback starts (wait_ready false). If the failback does not
--     finish (failback_failed), the outputs go back to the standby, which
--     still has the duties, and the failback is tried again after the
--     failback delay.
--
-- site.yaml:
--   failover:                  # defaults; a member may override them under its own failover:
--     mode: auto               # manual: a loss becomes a proposal an operator confirms
--     closed_is_lost: false    # true: a graceful shutdown is a failover too
--     delay: 0                 # act only when the main is away this long (a persisted timer)
--     take_outputs: true       # false: take over without touching the switcher
--     control: reroute         # a hook the standby runs on takeover, with {member, standby}
--     auto_failback: true      # false: stay on the standby until the command failback
--     failback_delay: 30s      # watch a restored main this long before the failback
--     wait_ready: true         # route back only when the main reports ready
--   pools:
--     backup: {match: [usage]} # 1:1 mirrors: a standby only covers a main with its usage name
--   members:
--     - id: main
--       roles: [manager]
--       pool: backup           # optional: which standbys protect it (default: those without a pool)
--       duties: { switcher: router, outputs: [1, 2], inputs: [1, 2] }
--     - id: backup
--       roles: [manager]
--       standby: true
--       pool: backup
--       duties: { switcher: router, inputs: [3, 4] }
--       hooks: { reroute: [...] }
--   outputs: the switcher outputs the member normally feeds
--   inputs:  the switcher inputs its signals arrive on, in the same order; a
--            standby's inputs replace a lost member's, position by position
--
-- Full 1:1 mirrors pair mains and backups by usage name instead:
--     - id: main-left
--       roles: [manager]
--       usage: [left]
--       duties: { switcher: router, usage: { left: { outputs: [1, 2], inputs: [1, 2] } } }
--     - id: backup-left
--       roles: [manager]
--       standby: true
--       usage: [left]
--       duties: { switcher: router, usage: { left: { inputs: [5, 6] } } }
--   The standby picked shares the main's usage names, and each usage name's
--   outputs are routed from the standby's inputs of the same usage name,
--   position by position. Give the pool match: [usage] so that a queued main
--   also waits for its partner. Members without duties.usage use
--   outputs/inputs.
--
-- policy.settings (older sites; each overrides the member's failover option):
--   failback_delay: 30s        overrides failover.failback_delay
--   auto_failback: false       turns automatic failback off
--   closed_is_lost: true       a graceful shutdown is a failover (also when
--                              the member's failover.closed_is_lost is false)
--
-- Whether a member is covered is read from the bookkeeping. What the switcher
-- shows is the runtime's to keep: every route here becomes the desired
-- routing of its output, which the runtime puts back when the switcher
-- restarts or someone changes a main's output at the panel (routing_differs;
-- see the README). At start-up, outputs with no desired route yet (a new
-- state folder) get what the site says: each alive main's own inputs, each
-- covered main's standby's — whatever the switcher showed before.
--
-- Operator commands: takeover {member, standby?}, failback {member},
-- takeover_all {standby} (the standby takes over every main of its pool);
-- confirm, reject and mode are answered by the runtime.
local us = require "understudy"

local function closed_is_lost(m)
  return m.failover.closed_is_lost or us.settings.closed_is_lost == true
end

local function auto_failback(m)
  return m.failover.auto_failback and us.settings.auto_failback ~= false
end

local function failback_delay(m)
  return us.settings.failback_delay or m.failover.failback_delay
end

-- Whether m is away for good: lost, or closed when that counts as lost. A
-- suspect member (late heartbeats, or this instance's own bus silent) is not.
local function away(m)
  return m.state == "lost" or (m.state == "closed" and closed_is_lost(m))
end

-- Whether m is running: alive, or suspect (its heartbeats are late — a loaded
-- machine, a network blip). Suspect is informational, never a failure: a
-- failback of a suspect member waits for it, it does not fail.
local function here(m) return m.state == "alive" or m.state == "suspect" end

local function protected(m)
  return m ~= nil and m:has_role("manager") and not m.standby and m.failover.enabled
end

local function has_usage_duties(m)
  return type(m.duties.usage) == "table" and next(m.duties.usage) ~= nil
end

-- The routes that put source's signals on member's outputs: a list of
-- {output, input, usage}. input is nil when source has no input there.
local function routes_for(member, source)
  local out = {}
  if has_usage_duties(member) then
    local names = {}
    for name in pairs(member.duties.usage) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      local theirs = type(source.duties.usage) == "table" and source.duties.usage[name] or nil
      for i, output in ipairs(member.duties.usage[name].outputs or {}) do
        out[#out + 1] = { output = output, input = theirs and theirs.inputs and theirs.inputs[i], usage = name }
      end
    end
  else
    for i, output in ipairs(member.duties.outputs or {}) do
      out[#out + 1] = { output = output, input = source.duties.inputs and source.duties.inputs[i] }
    end
  end
  return out
end

-- Whether member's outputs are the standby's to take.
local function switched(m)
  return m.duties.switcher ~= nil and m.failover.take_outputs and #routes_for(m, m) > 0
end

-- Route each of member's outputs from the matching input of source.
local function route_outputs(member, source)
  if not switched(member) then return end
  local router = us.driver(member.duties.switcher)
  for _, r in ipairs(routes_for(member, source)) do
    if r.input == nil then
      us.log.error("no input to route", { member = member.id, source = source.id, output = r.output, usage = r.usage })
    else
      router:route(r.output, r.input)
    end
  end
end

-- Standbys that may cover m: managers on its switcher.
local function suits(s, m)
  return s.standby and s.id ~= m.id and s:has_role("manager")
    and (m.duties.switcher == nil or s.duties.switcher == m.duties.switcher)
end

-- The best free standby of m's pool (paired by usage name for 1:1 mirrors), or nil.
local function pick_standby(m)
  local exclude, any = {}, false
  for _, s in ipairs(us.members()) do
    if s.standby and s.pool == m.pool then
      any = true
      if not suits(s, m) then exclude[#exclude + 1] = s.id end
    end
  end
  if not any then return nil end
  local usage = nil
  if has_usage_duties(m) then usage = m.usage end
  return us.pool(m.pool):pick { member = m, usage = usage, exclude = exclude }
end

-- Whether a named timer for member is pending.
local function pending(name, member)
  for _, t in ipairs(us.timers(name)) do
    if t.args.member == member then return true end
  end
  return false
end

local function take_over(m, why, confirmed)
  us.cancel("failover", { member = m.id })
  local c = us.covered(m)
  if c then
    -- Lost again while covered (or during its failback): make sure the
    -- switcher shows the standby (harmless if it already does).
    local s = us.member(c.standby)
    if s then route_outputs(m, s) end
    return
  end
  local standby = pick_standby(m)
  local opts = { reason = why, confirmed = confirmed }
  local outcome, who
  if standby ~= nil or confirmed or us.mode() == "manual" then
    outcome, who = us.takeover(m, standby, opts)
  else
    -- No partner free: wait for one rather than hand the outputs to another.
    outcome = us.queue(m, { reason = why })
  end
  us.log.warn("taking over", { member = m.id, standby = who, outcome = outcome, reason = why })
end

local function failed(m, why)
  if not protected(m) then return end
  us.cancel("failback", { member = m.id })
  if us.covered(m) == nil and m.failover.delay > 0 then
    if not pending("failover", m.id) then
      us.after(m.failover.delay, "failover", { member = m.id, why = why })
      us.log.info("failover delayed", { member = m.id, delay_s = m.failover.delay })
    end
    return
  end
  take_over(m, why)
end

-- Failback: after the delay, when the main is back and automatic failback is on.
local function schedule_failback(m)
  if not protected(m) or not here(m) or not auto_failback(m) then return end
  local c = us.covered(m)
  if c == nil or (c.phase ~= "starting" and c.phase ~= "covering") then return end
  us.cancel("failback", { member = m.id })
  us.after(failback_delay(m), "failback", { member = m.id })
  us.log.info("failback scheduled", { member = m.id, after = failback_delay(m) })
end

-- Gives m its duties back (the bookkeeping's failback).
local function fail_back(m, reason)
  local c = us.covered(m)
  if c == nil then return end
  if c.phase ~= "covering" and c.phase ~= "copying" then return end -- not taken over yet, or failing back (a copy back that waits is tried again)
  us.log.info("failing back", { member = m.id, standby = c.standby })
  us.failback(m, { reason = reason })
  if not m.failover.wait_ready then route_outputs(m, m) end
end

us.on("member_lost", function(ev) failed(ev.member, "lost") end)

us.on("member_closed", function(ev)
  if closed_is_lost(ev.member) then failed(ev.member, "closed") end
end)

-- The main is back: its duties go back after the failback delay.
us.on("member_restored", function(ev)
  us.cancel("failover", { member = ev.member.id })
  schedule_failback(ev.member)
end)

us.on("timer:failback", function(t)
  local m = us.member(t.member)
  if m == nil or not here(m) then return end -- lost again meanwhile
  fail_back(m, "automatic failback")
end)

us.on("timer:failover", function(t)
  local m = us.member(t.member)
  if protected(m) and away(m) then take_over(m, t.why .. " for longer than the failover delay") end
end)

-- The bookkeeping committed a takeover: the switcher and the control action follow.
us.on("takeover_started", function(ev)
  local m, s = ev.member, us.member(ev.standby)
  if m == nil or s == nil then return end
  us.log.warn("standby takes over", { member = m.id, standby = s.id })
  route_outputs(m, s)
  if m.failover.control ~= nil and m.failover.control ~= "" then
    us.run(s, m.failover.control, { member = m.id, standby = s.id })
  end
end)

us.on("takeover_failed", function(ev)
  us.log.error("the standby could not take over", { member = ev.member.id, standby = ev.standby, error = ev.error })
  -- The standby does not have the duties. A member that is still alive (an
  -- operator's takeover) shows on its outputs again; a lost one has nothing
  -- better to show than the standby.
  if ev.member.state == "alive" then route_outputs(ev.member, ev.member) end
end)

-- After a restart of the coordinator a covered main may already be back.
us.on("member_seen", function(ev)
  if not pending("failback", ev.member.id) then schedule_failback(ev.member) end
end)

-- The takeover finished while the main was already back.
us.on("takeover_done", function(ev)
  if not pending("failback", ev.member.id) then schedule_failback(ev.member) end
end)

-- The main has resumed its duties (it said so itself): its outputs show it again.
us.on("member_ready", function(ev)
  if ev.member ~= nil then route_outputs(ev.member, ev.member) end
end)

-- The failback did not finish: the standby keeps the duties, and the outputs.
us.on("failback_failed", function(ev)
  local c = us.covered(ev.member)
  local s = c and us.member(c.standby)
  us.log.error("failback did not finish; the standby keeps the outputs", { member = ev.member.id, step = ev.step, error = ev.error })
  if s then route_outputs(ev.member, s) end
  -- Unattended: try again after the failback delay.
  schedule_failback(ev.member)
end)

-- Lost again while the standby was letting go: take it over again.
us.on("failback_done", function(ev)
  local m = ev.member
  if protected(m) and away(m) then failed(m, "lost during its failback") end
end)

-- Operator commands (MQTT, CLI, web).
us.on("command:takeover", function(c)
  local m = us.member(c.member or "")
  if m == nil then return us.log.error("takeover: no such member", { member = c.member }) end
  if c.standby then
    us.takeover(m, c.standby, { reason = "operator", confirmed = true })
  else
    take_over(m, "operator", true)
  end
end)

us.on("command:failback", function(c)
  local m = us.member(c.member or "")
  if m == nil or not here(m) then return us.log.error("failback: the member is not back", { member = c.member }) end
  us.cancel("failback", { member = m.id })
  fail_back(m, "operator")
end)

-- "Take over all": the standby takes over every main it can cover; the
-- switcher follows each takeover as it starts (takeover_started). A standby
-- in a pool uses us.takeover_all (every member of its pool). A standby
-- without a pool (older sites) takes the main managers without a pool on its
-- switcher: us.takeover_all would take every member without a pool, the
-- control machine included.
us.on("command:takeover_all", function(c)
  local s = us.member(c.standby or "")
  if s == nil or not s.standby then return us.log.error("takeover_all: name a standby", { standby = c.standby }) end
  local results
  if s.pool ~= "" then
    results = us.takeover_all(s)
  else
    results = {}
    for _, m in ipairs(us.members()) do
      if protected(m) and m.pool == "" and suits(s, m) and us.covered(m) == nil then
        local status = us.takeover(m, s, { reason = "take over all", confirmed = true })
        results[#results + 1] = { member = m.id, status = status }
      end
    end
  end
  for _, r in ipairs(results) do
    us.log.warn("take over all", { member = r.member, standby = s.id, status = r.status })
  end
end)
