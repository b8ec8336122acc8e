// Package wire is the HTTP interface of AJA KUMO SDI routers, for both of
// its ends: the driver (drivers/kumo) and the simulator
// (drivers/kumo/kumosim).
//
// The KUMO's web server answers GET /config?action=get|set&configid=0&
// paramid=eParamID_…[&value=…] with a JSON object {"paramid", "name",
// "value", "value_name"}. The crosspoint of destination n is the parameter
// eParamID_XPT_Destination{n}_Status, whose value is the source number;
// sources and destinations are numbered from 1 on the wire, as on the
// panel. The package holds parameter ids (ParseParam, Param.String and
// helpers such as DestinationStatus), requests (Request.Query,
// ParseRequest), replies (ParseReply, Reply.Marshal), the whole-routing
// list (ParseRoutingList, FormatRoutingList) and error bodies (PlainText,
// StatusError), every size bounded (MaxBody, MaxPorts, MaxParamID,
// MaxValue).
package wire
