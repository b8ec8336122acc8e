// Package builtin lists the driver kinds shipped with understudy. Adding a
// kind is one line here and a package of its own under drivers/.
package builtin

import (
	"understudy/drivers"
	"understudy/drivers/execprog"
	"understudy/drivers/extron"
	"understudy/drivers/httpreq"
	"understudy/drivers/kramer"
	"understudy/drivers/kumo"
	"understudy/drivers/line"
	"understudy/drivers/mqttpub"
	"understudy/drivers/osc"
	"understudy/drivers/videohub"
	"understudy/drivers/wol"
)

// Registry returns a registry of every shipped driver kind.
func Registry() *drivers.Registry {
	return drivers.NewRegistry(
		execprog.Kind,
		extron.Kind,
		httpreq.Kind,
		kramer.Kind,
		kumo.Kind,
		line.Kind,
		mqttpub.Kind,
		osc.Kind,
		videohub.Kind,
		wol.Kind,
	)
}
