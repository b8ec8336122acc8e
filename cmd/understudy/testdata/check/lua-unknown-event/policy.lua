local us = require "understudy"
us.on("member_lsot", function(ev) us.log.info("lost", {member = ev.member.id}) end)
us.on("action_started", function(ev) end)
us.on("timr:failback", function(ev) end)
us.on("timer:failback", function(ev) end)
us.on("command:takeover", function(ev) end)
us.on("*", function(ev) end)
us.on("member_lost", function(ev) end)
