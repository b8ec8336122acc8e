local us = require "understudy"
us.on("member_lost", function(ev)
  if ev.member.id == "main" then
end)
