-- N main recorders + standby (Intellect-style failover manager).
--
-- A recorder that is lost (or broken: all material disks failed; or closed,
-- when failover.closed_is_lost) is taken over by a free standby of its pool:
-- the standby receives the recorder's duty bundle (cameras/streams,
-- configuration) and records in its place. The site-wide failover.limit
-- bounds how many run at once; the rest queue by priority, then time, and
-- start as earlier ones end. When the recorder returns, its duties go back
-- after failover.failback_delay: it resumes recording and reports ready, the
-- standby stops — no moment where nobody records — and the material it
-- recorded meanwhile is copied back, every file complete
-- (failover.copy_material); only then does the coverage end.
--
-- Every option is a site.yaml setting under failover: (site-wide) or a
-- member's own failover: (see the README, "Takeover"):
--   enabled, delay, closed_is_lost, broken_is_lost, auto_failback,
--   failback_delay, wait_ready, copy_material, grace; and site-wide limit,
--   mode (auto|manual) and confirm_after.
local us = require "understudy"

-- Whether m is running: alive, or suspect (its heartbeats are late — a loaded
-- machine, a network blip). Suspect is informational, never a failure: a
-- failback of a suspect member waits for it, it does not fail.
local function here(m) return m.state == "alive" or m.state == "suspect" end

-- Whether m is away for good: lost, closed when that counts as lost, or
-- broken when that does.
local function away(m)
  return m.state == "lost" or (m.state == "closed" and m.failover.closed_is_lost)
    or (m.state == "broken" and m.failover.broken_is_lost)
end

local function protected(m)
  return m ~= nil and not m.standby and m.failover.enabled and m:has_role("recorder")
end

-- Whether a named timer for member is pending.
local function pending(name, member)
  for _, t in ipairs(us.timers(name)) do
    if t.args.member == member then return true end
  end
  return false
end

local function take_over(m, why)
  if us.covered(m) then return end
  local outcome, who = us.takeover(m, nil, { reason = why })
  us.log.warn("recorder " .. why, { member = m.id, outcome = outcome, standby = who })
end

-- A failure starts a takeover now, or after failover.delay (a persisted
-- timer: it survives a restart of the coordinator).
local function failed(m, why)
  if not protected(m) or us.covered(m) then return end
  us.cancel("failback", { member = m.id })
  if m.failover.delay > 0 then
    -- Already counting (e.g. lost again after a restart of the coordinator):
    -- the member has been away since the first loss.
    if pending("failover", m.id) then return end
    us.after(m.failover.delay, "failover", { member = m.id, why = why })
    us.log.info("failover delayed", { member = m.id, delay_s = m.failover.delay })
    return
  end
  take_over(m, why)
end

us.on("member_lost", function(ev) failed(ev.member, "lost") end)

us.on("member_closed", function(ev)
  -- A graceful log-off is not a failure unless the site says so.
  if ev.member.failover.closed_is_lost then failed(ev.member, "closed") end
end)

us.on("member_broken", function(ev)
  if ev.member.failover.broken_is_lost then failed(ev.member, "broken") end
end)

us.on("timer:failover", function(t)
  local m = us.member(t.member)
  if protected(m) and away(m) then take_over(m, t.why .. " for longer than the failover delay") end
end)

-- Back: no delayed failover any more; give the duties back after the delay.
local function schedule_failback(m)
  local c = us.covered(m)
  if not protected(m) or c == nil or c.phase ~= "covering" or not m.failover.auto_failback then return end
  us.cancel("failback", { member = m.id })
  us.after(m.failover.failback_delay, "failback", { member = m.id })
  us.log.info("failback scheduled", { member = m.id, standby = c.standby, after_s = m.failover.failback_delay })
end

us.on("member_restored", function(ev)
  us.cancel("failover", { member = ev.member.id })
  schedule_failback(ev.member)
end)

-- After a restart of the coordinator a covered recorder may already be back.
us.on("member_seen", function(ev)
  if here(ev.member) and not pending("failback", ev.member.id) then schedule_failback(ev.member) end
end)

-- The takeover finished while the recorder was already back.
us.on("takeover_done", function(ev)
  if here(ev.member) then schedule_failback(ev.member) end
end)

us.on("timer:failback", function(t)
  local m = us.member(t.member)
  local c = us.covered(t.member)
  if m == nil or c == nil or not here(m) or c.phase ~= "covering" then return end
  us.failback(m)
end)

us.on("failback_failed", function(ev)
  us.log.error("failback did not finish; the standby keeps the duties", { member = ev.member.id, step = ev.step, error = ev.error })
  -- Unattended: try again after the failback delay.
  schedule_failback(ev.member)
end)

us.on("grace_expired", function(ev)
  us.log.error("grace period of the license-bound duties on the standby has expired", { member = ev.member.id, standby = ev.standby })
end)

-- Operator commands (MQTT, CLI, web).
us.on("command:takeover", function(c)
  local m = us.member(c.member or "")
  if m then us.takeover(m, c.standby, { reason = "operator", confirmed = true }) end
end)

us.on("command:failback", function(c)
  local m = us.member(c.member or "")
  if m and us.covered(m) then us.failback(m, { reason = "operator" }) end
end)

us.on("command:takeover_all", function(c)
  if c.standby then us.takeover_all(c.standby) end
end)
