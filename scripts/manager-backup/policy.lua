-- Manager backup (media servers): when a main manager is lost, the switcher
-- outputs it feeds are routed to a standby's inputs; when it is restored, they
-- are routed back after a delay (failback).
--
-- site.yaml, per member:
--   duties: { switcher: router, outputs: [1, 2], inputs: [1, 2] }
--     outputs: the switcher outputs the member normally feeds
--     inputs:  the switcher inputs its signals arrive on, in the same order;
--              a standby's inputs replace a lost member's, position by position
-- policy.settings:
--   failback_delay: 30s       wait this long after the main is restored
--   auto_failback: true       false: stay on the standby after a restore
--   closed_is_lost: false     true: a graceful shutdown is a failover too
--
-- Whether a member is covered is read from the switcher itself, so the answer
-- survives a restart of the coordinator or a reload of this policy.
local us = require "understudy"

local failback_delay = us.settings.failback_delay or "30s"
local auto_failback = us.settings.auto_failback ~= false
local closed_is_lost = us.settings.closed_is_lost == true

local function protected(m)
  return m:has_role("manager") and not m.standby and m.duties.switcher ~= nil and #m.duties.outputs > 0
end

-- The first alive standby manager on the same switcher, by priority then id.
local function pick_standby(lost)
  local best
  for _, m in ipairs(us.members()) do
    if m.standby and m.state == "alive" and m:has_role("manager") and m.duties.switcher == lost.duties.switcher then
      if best == nil or m.priority > best.priority then best = m end
    end
  end
  return best
end

-- The standby whose inputs the member's outputs show now, if any.
local function covering(member)
  local routing = us.driver(member.duties.switcher):routing()
  for _, m in ipairs(us.members()) do
    if m.standby and m.duties.switcher == member.duties.switcher then
      for i, output in ipairs(member.duties.outputs) do
        if m.duties.inputs[i] ~= nil and routing[output] == m.duties.inputs[i] then return m end
      end
    end
  end
  return nil
end

-- Route each of member's outputs from the matching input of source.
local function route_outputs(member, source)
  local router = us.driver(member.duties.switcher)
  for i, output in ipairs(member.duties.outputs) do
    local input = source.duties.inputs[i]
    if input == nil then
      us.log.error("no input to route", { member = member.id, source = source.id, output = output })
    else
      router:route(output, input)
    end
  end
end

local function take_over(m)
  if not protected(m) then return end
  us.cancel("failback", { member = m.id })
  local standby = pick_standby(m)
  if standby == nil then
    us.log.error("no standby is alive to take over", { member = m.id })
    return
  end
  us.log.warn("taking over", { member = m.id, standby = standby.id, reason = m.reason })
  route_outputs(m, standby)
end

us.on("member_lost", function(ev) take_over(ev.member) end)

us.on("member_closed", function(ev)
  if closed_is_lost then take_over(ev.member) end
end)

us.on("member_restored", function(ev)
  local m = ev.member
  if not protected(m) or not auto_failback then return end
  local standby = covering(m)
  if standby == nil then return end
  us.log.info("failback scheduled", { member = m.id, standby = standby.id, after = failback_delay })
  us.after(failback_delay, "failback", { member = m.id })
end)

us.on("timer:failback", function(t)
  local m = us.member(t.member)
  if m == nil or m.state ~= "alive" then return end -- lost again meanwhile
  us.log.info("failing back", { member = m.id })
  route_outputs(m, m)
end)
