local us = require "understudy"
local r = us.driver("router")
local function route(m, from) for i, out in ipairs(m.duties.outputs) do r:route(out, from.duties.inputs[i]) end end
us.on("member_lost", function(ev) if ev.member.id == "main" then us.takeover(ev.member, "backup") end end)
us.on("takeover_started", function(ev)
  local standby = us.member(ev.standby)
  r:route(ev.member.duties.outputs[1], standby.duties.inputs[1])
  if not ev.redelivered then
    us.log.info("first route asked; busy")
    local t0 = us.now()
    while us.now() - t0 < 0.8 do end
  end
  r:route(ev.member.duties.outputs[2], standby.duties.inputs[2])
end)
us.on("member_restored", function(ev) if us.covered(ev.member) then us.after("2s", "failback", {member = ev.member.id}) end end)
us.on("member_seen", function(ev) local c = us.covered(ev.member) if c and c.phase == "covering" and #us.timers("failback") == 0 then us.after("2s", "failback", {member = ev.member.id}) end end)
us.on("timer:failback", function(t) local c = us.covered(t.member) if c and c.phase == "covering" then us.failback(t.member) end end)
us.on("failback_done", function(ev) route(ev.member, ev.member) end)
