// Package builtin lists the driver kinds shipped with understudy. Adding a
// kind is one line here and a package of its own under drivers/.
package builtin

import (
	"understudy/drivers"
	"understudy/drivers/kramer"
	"understudy/drivers/kumo"
	"understudy/drivers/videohub"
)

// Registry returns a registry of every shipped driver kind.
func Registry() *drivers.Registry {
	return drivers.NewRegistry(
		kramer.Kind,
		kumo.Kind,
		videohub.Kind,
	)
}
