// Package extron drives an Extron matrix switcher (DXP, CrossPoint, XTP,
// MAV, FOX …) as a drivers.Router, over SIS on Telnet (TCP 23) as the wire
// package speaks it.
//
// The driver (Kind, New, Extron) sets ties with one command each, reads the
// routing back output by output after every connect and every poll interval
// (a Telnet connection gets no change notices by default), and reports
// changes made by others as route_changed. Alive checks an Extron that is a
// member of the site rather than one of its drivers (probe: {extron:
// host}). The kind registers its simulator, extronsim, which plays the
// device with the same wire package. See README.md.
package extron
