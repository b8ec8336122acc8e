// Package line drives a device that speaks a line protocol — a projector, a
// display, a media player, a DSP — over TCP, UDP or a serial port, as a
// drivers.Controller.
//
// The site names the device's commands in its settings: what to send (with
// escapes and a Go text/template over the policy's args) and which reply
// means success or a refusal (regexps). A policy sends them by name:
//
//	us.driver("projector"):send("power_on")
//	us.driver("projector"):send{command = "input", args = {n = 3}}
//
// The package has two layers: framing (SplitLines, a bufio.SplitFunc that
// yields one reply line per terminator; Unescape and Escape for the escapes
// written in site.yaml), and the driver (Kind, New, Line), in which one
// goroutine owns the connection: it connects lazily at the first command,
// discards stale bytes before each command, and after an error drops the
// connection and connects again with backoff. See README.md for the
// configuration and behaviour; linesim is a device to test against.
package line
