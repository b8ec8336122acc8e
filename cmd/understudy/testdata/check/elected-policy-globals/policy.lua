local us = require "understudy"
us.on("member_lost", function(ev)
  last_lost = ev.member.id
end)
