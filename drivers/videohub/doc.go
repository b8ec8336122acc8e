// Package videohub drives a Blackmagic Videohub video router as a
// drivers.Router, over the Videohub Ethernet protocol of the wire package
// (TCP 9990, text blocks, ports from 0 on the wire).
//
// The driver (Kind, New, Videohub) numbers ports from 1, as the device's
// panel and the rest of understudy do. Alive checks a Videohub that is a
// member of the site rather than one of its drivers (probe: {videohub:
// host}). The kind registers its simulator, videohubsim, which plays the
// device with the same wire package. See README.md for its configuration,
// events and behaviour.
package videohub
