// Package kumo speaks the HTTP interface of AJA KUMO SDI routers (KUMO
// 1604, 1616, 3232, 6464 and their 12G models) and drives one as a
// drivers.Router.
//
// The KUMO's web server answers GET /config?action=get|set&configid=0&
// paramid=eParamID_…[&value=…] with a JSON object {"paramid", "name",
// "value", "value_name"}. The crosspoint of destination n is the parameter
// eParamID_XPT_Destination{n}_Status, whose value is the source number;
// sources and destinations are numbered from 1 on the wire, as on the
// panel. The package has three layers:
//
//   - protocol: parameter ids (ParseParam, Param.String and helpers such as
//     DestinationStatus), requests (Request.Query, ParseRequest), replies
//     (ParseReply, Reply.Marshal), the whole-routing list (ParseRoutingList,
//     FormatRoutingList) and error bodies (PlainText, StatusError), every
//     size bounded (MaxBody, MaxPorts, MaxParamID, MaxValue);
//   - transport: Client makes those requests over HTTP, one TCP connection
//     each, with the login cookie when the KUMO asks for a password;
//   - driver: Kind, New and Kumo, which polls the routing, sets routes and
//     reads them back. The simulator in fixtures/kumosim plays the device
//     with the same protocol types.
//
// See README.md for the driver's configuration, events and behaviour.
package kumo
