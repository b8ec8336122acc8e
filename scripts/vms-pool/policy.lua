-- VMS failover pool (Mirasys-style): recording servers under failover
-- protection and a pool of failover servers with the same disk layout.
--
-- A protected server is a member with role recorder or server that is not a
-- standby, belongs to a pool (pool: vms) and has failover.enabled. It is
-- taken over by any free failover server of its pool (the runtime picks the
-- highest priority one that is alive, has room and matches what the pool
-- requires: the same disk_layout) when
--   * it is unreachable (lost; or closed, when failover.closed_is_lost) for
--     longer than failover.delay. The delay is a persisted timer: a restart
--     of the coordinator neither forgets it nor starts it again. A server
--     back within the delay is never taken over: the delay is there so that a
--     short network outage does not move its recording (and split its
--     material) for nothing;
--   * all its material disks are broken (failover.broken_is_lost, default
--     true): AT ONCE, whatever failover.delay says. A server with no working
--     material disk cannot record anything, so waiting would only lose
--     material; it is moved to "broken" and covered immediately.
-- The failover server receives the server's duty bundle: its cameras/streams
-- (each on its own multicast address, which it now serves), material folders
-- and configuration, and records in its place. When no failover server of the
-- pool is free (or failover.limit is reached), the server waits in the queue
-- (by priority, then time) and is taken over as soon as one frees.
--
-- When the server is back (or its disks work again), its duties go back after
-- failover.failback_delay when failover.auto_failback; otherwise it stays
-- covered until an operator sends the command failback {member = id}. A
-- failback has no moment where nobody records: the server resumes and
-- reports ready, the failover server lets go, and the material it recorded
-- meanwhile is copied back when failover.copy_material (the server fetches
-- from the failover server's material_server only the files of that period
-- it lacks or has incomplete, verified, resuming an interrupted copy; its
-- copy hook, if any, runs afterwards, e.g. to reindex); only then does the
-- coverage end and the failover server become free for the queue. A copy
-- that fails keeps the coverage (the alarm copy_incomplete says why) and is
-- tried again, or at once by the failback command: the copy goes on where it
-- stopped.
--
-- site.yaml:
--   failover:                 # defaults; each server may override them under its own failover:
--     delay: 2h               # unreachable this long before the takeover (broken disks: at once)
--     auto_failback: true     # false: an operator sends failback
--     failback_delay: 5m      # watch a returned server this long before giving its duties back
--     copy_material: true     # after the release, copy back the material recorded meanwhile
--     broken_is_lost: true    # all material disks failed: take over at once
--     closed_is_lost: false   # a graceful shutdown is not a failure unless true
--     limit: 0                # site-wide: failovers at once (0: no limit); mode: auto|manual; confirm_after
--   pools:
--     vms: {match: [disk_layout]}   # a failover server must have the server's disk layout
--   members:
--     - id: vms-1
--       roles: [recorder]           # or [server]
--       pool: vms                   # the pool that protects it
--       priority: 10                # queue order when failover servers are short
--       disk_layout: 12x8TB
--       disks: [/mnt/d1, /mnt/d2]   # material disks: all failed = broken
--       duties:
--         streams: [{name: cam-1, address: "239.10.0.1:5004"}]
--         material: [/mnt/d1, /mnt/d2]
--         config: {file: /etc/vms/server.xml}
--       failover: {delay: 10m, auto_failback: false}   # per-server options (enabled: false: unprotected)
--       hooks: {resume: [...], copy: [...]}
--     - id: fo-1
--       roles: [recorder]
--       standby: true
--       pool: vms
--       disk_layout: 12x8TB
--       material_server: 10.0.0.31:7902   # the servers fetch what it recorded for them here
--       duties: {material: [/mnt/fo]}      # it records for vms-1 in /mnt/fo/vms-1
--       hooks: {takeover: [...], release: [...]}
--
-- Operator commands (MQTT, CLI, web): takeover {member, standby?},
-- failback {member}, takeover_all {standby}; confirm, reject and mode are
-- answered by the runtime.
local us = require "understudy"

-- Whether m is running: alive, or suspect (its heartbeats are late — a loaded
-- machine, a network blip). Suspect is informational, never a failure: a
-- failback of a suspect member waits for it, it does not fail.
local function here(m) return m.state == "alive" or m.state == "suspect" end

local function protected(m)
  return m ~= nil and not m.standby and m.pool ~= "" and m.failover.enabled
    and (m:has_role("recorder") or m:has_role("server"))
end

-- Whether a named timer for member is pending.
local function pending(name, member)
  for _, t in ipairs(us.timers(name)) do
    if t.args.member == member then return true end
  end
  return false
end

local function take_over(m, why)
  us.cancel("failover", { member = m.id })
  if us.covered(m) then return end
  local outcome, who = us.takeover(m, nil, { reason = why })
  us.log.warn("server " .. why, { member = m.id, outcome = outcome, standby = who })
end

-- Unreachable: take over after failover.delay.
local function unreachable(m, why)
  if not protected(m) or us.covered(m) then return end
  us.cancel("failback", { member = m.id })
  if m.failover.delay <= 0 then return take_over(m, why) end
  -- Already counting (lost again after a restart of the coordinator, or
  -- closed and then lost): the server has been away since the first time.
  if pending("failover", m.id) then return end
  us.after(m.failover.delay, "failover", { member = m.id, why = why })
  us.log.info("failover delayed", { member = m.id, delay_s = m.failover.delay, why = why })
end

-- Broken disks: no delay, nothing can be recorded.
local function broken(m)
  if not protected(m) or not m.failover.broken_is_lost then return end
  us.cancel("failback", { member = m.id })
  take_over(m, "broken: all material disks failed")
end

us.on("member_lost", function(ev) unreachable(ev.member, "lost") end)

us.on("member_closed", function(ev)
  -- A graceful log-off is not a failure unless the site says so.
  if ev.member.failover.closed_is_lost then unreachable(ev.member, "closed") end
end)

us.on("member_broken", function(ev) broken(ev.member) end)

us.on("timer:failover", function(t)
  local m = us.member(t.member)
  -- Still away (a suspect server, late with its heartbeats, is not).
  if protected(m) and (m.state == "lost" or (m.state == "closed" and m.failover.closed_is_lost)) then
    take_over(m, t.why .. " for longer than the failover delay")
  end
end)

-- Give the duties back after the failback delay (automatic failback only).
local function schedule_failback(m)
  local c = us.covered(m)
  if not protected(m) or c == nil or not m.failover.auto_failback then return end
  if c.phase ~= "starting" and c.phase ~= "covering" then return end -- failing back already
  us.cancel("failback", { member = m.id })
  us.after(m.failover.failback_delay, "failback", { member = m.id })
  us.log.info("failback scheduled", { member = m.id, standby = c.standby, after_s = m.failover.failback_delay })
end

us.on("member_restored", function(ev)
  local m = ev.member
  us.cancel("failover", { member = m.id })
  if m.state == "broken" then return broken(m) end -- back, but its disks are still gone
  if here(m) then schedule_failback(m) end
end)

-- After a restart of the coordinator a covered server may already be back.
us.on("member_seen", function(ev)
  local m = ev.member
  if m.state == "broken" then return broken(m) end
  if here(m) and not pending("failback", m.id) then schedule_failback(m) end
end)

-- The takeover finished while the server was already back.
us.on("takeover_done", function(ev)
  if here(ev.member) and not pending("failback", ev.member.id) then schedule_failback(ev.member) end
end)

us.on("timer:failback", function(t)
  local m = us.member(t.member)
  local c = us.covered(t.member)
  if m == nil or c == nil or not here(m) then return end
  if c.phase == "starting" then return end -- takeover_done schedules it again
  if c.phase == "covering" then us.failback(m, { reason = "automatic failback" }) end
end)

us.on("takeover_queued", function(ev)
  us.log.warn("no failover server free; the server waits", { member = ev.member and ev.member.id, position = ev.position, why = ev.why })
end)

us.on("takeover_failed", function(ev)
  us.log.error("the failover server could not take over", { member = ev.member.id, standby = ev.standby, error = ev.error })
end)

us.on("copy_done", function(ev)
  us.log.info("material copied back", { member = ev.member.id, from = ev.from, summary = ev.summary })
  if ev.conflicts and #ev.conflicts > 0 then
    us.log.warn("files differ on the server and were left alone", { member = ev.member.id, count = #ev.conflicts })
  end
end)

-- Away again while the failover server was letting go (the bookkeeping ends
-- that failback anyway): the server needs a failover server again.
us.on("failback_done", function(ev)
  local m = ev.member
  if m.state == "broken" then return broken(m) end
  if m.state == "lost" then return unreachable(m, "lost") end
  if m.state == "closed" and m.failover.closed_is_lost then unreachable(m, "closed") end
end)

us.on("failback_failed", function(ev)
  us.log.error("failback did not finish; the failover server keeps recording", { member = ev.member.id, step = ev.step, error = ev.error })
  -- Unattended: try again after the failback delay.
  schedule_failback(ev.member)
end)

us.on("grace_expired", function(ev)
  us.log.error("grace period of the license-bound duties on the failover server has expired", { member = ev.member.id, standby = ev.standby })
end)

-- Operator commands (MQTT, CLI, web).
us.on("command:takeover", function(c)
  local m = us.member(c.member or "")
  if m == nil then return us.log.error("takeover: no such member", { member = c.member }) end
  us.takeover(m, c.standby, { reason = "operator", confirmed = true })
end)

us.on("command:failback", function(c)
  local m = us.member(c.member or "")
  local cov = m and us.covered(m)
  if cov == nil then return us.log.error("failback: the member is not covered", { member = c.member }) end
  if not here(m) then return us.log.error("failback: the member is not back", { member = m.id, state = m.state }) end
  if cov.phase == "starting" then return us.log.error("failback: the takeover has not finished yet", { member = m.id }) end
  us.cancel("failback", { member = m.id })
  us.failback(m, { reason = "operator" })
end)

us.on("command:takeover_all", function(c)
  if c.standby then us.takeover_all(c.standby) end
end)
