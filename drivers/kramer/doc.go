// Package kramer drives a Kramer matrix switcher as a drivers.Router, over
// Kramer Protocol 3000 (TCP 5000) as the wire package speaks it.
//
// The driver (Kind, New, Matrix) routes one layer of the matrix (video by
// default). Alive checks a Kramer that is a member of the site rather than
// one of its drivers (probe: {kramer: host}). The kind registers its
// simulator, kramersim, which plays the device with the same wire package.
// See README.md for its configuration, events and behaviour.
package kramer
