local us = require "understudy"
us.on("member_lost", function(ev)
  if ev.member.id == "rec" and not us.covered(ev.member) then us.takeover(ev.member, "sb") end
end)
us.on("member_restored", function(ev)
  local c = us.covered(ev.member)
  if c and c.phase == "covering" then us.failback(ev.member) end
end)
us.on("copy_done", function(ev)
  us.log.info("copy report", {action = ev.action, copied = ev.copied, bytes = ev.bytes,
    resumed = ev.resumed_bytes, conflicts = #ev.conflicts, summary = ev.summary})
end)
