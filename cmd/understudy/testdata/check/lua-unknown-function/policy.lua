local us = require "understudy"
us.on("member_lost", function(ev)
  us.takeovr(ev.member)
  us.log.inf("lost", {member = ev.member.id})
end)
