// Package kumo drives an AJA KUMO SDI router (KUMO 1604, 1616, 3232, 6464
// and their 12G models) as a drivers.Router, over its HTTP interface as
// the wire package speaks it.
//
// Client makes the wire package's requests over HTTP, one TCP connection
// each, with the login cookie when the KUMO asks for a password. The driver
// (Kind, New, Kumo) polls the routing, sets routes and reads them back.
// Alive checks a KUMO that is a member of the site rather than one of its
// drivers (probe: {kumo: host}). The kind registers its simulator, kumosim,
// which plays the device with the same wire package. See README.md for the
// driver's configuration, events and behaviour.
package kumo
