// Package dashboard serves the operator's web page of an instance: members by
// state, standby pools, coverage, the queue, copies, grace countdowns, drills
// and the event timeline, live over Server-Sent Events, with actions that go
// through the instance's command API. Every asset is embedded: the page works
// on a site network without internet.
//
// The page is one HTML file, one script and one style sheet, written by hand
// (no framework, no build step). It reads the instance's API token from the
// URL fragment (#token=…, which browsers never send to a server) and keeps it
// in the tab's session storage; without it the page is read-only.
package dashboard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"time"
)

// Source is what the page shows. The instance implements it.
type Source interface {
	// Status is the instance's status, as GET /status returns it (any value
	// that marshals to that JSON).
	Status(ctx context.Context) (any, error)
	// Subscribe returns the recent records, oldest first (each marshals to
	// the JSON of an engine.Record), and a channel of the records that
	// follow. The channel is closed when cancel is called or when the
	// subscriber falls too far behind (the page then reconnects).
	Subscribe() (recent []any, updates <-chan any, cancel func())
}

//go:embed assets
var embedded embed.FS

// asset is one embedded file, ready to serve.
type asset struct {
	name        string
	contentType string
	data        []byte
	etag        string
}

// contentType is the type of each of the page's files.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	}
	return "application/octet-stream"
}

// contentSecurity lets the page load only its own files and talk only to its
// own instance.
const contentSecurity = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"

// timing is how often the event stream speaks.
type timing struct {
	status    time.Duration // a fresh status at least this often
	settle    time.Duration // a fresh status this long after a burst of records
	heartbeat time.Duration // a comment line this often, so proxies keep the stream open
	write     time.Duration // a client that does not take an event within this is dropped
	ask       time.Duration // how long the status may take
	retry     time.Duration // how long the browser waits before it reconnects
}

func defaultTiming() timing {
	return timing{
		status:    2 * time.Second,
		settle:    150 * time.Millisecond,
		heartbeat: 15 * time.Second,
		write:     10 * time.Second,
		ask:       2 * time.Second,
		retry:     time.Second,
	}
}

// Dashboard is the page's HTTP handler: GET / and /dashboard/… .
type Dashboard struct {
	src    Source
	assets map[string]asset
	timing timing
}

// New returns the dashboard of src.
func New(src Source) *Dashboard {
	return &Dashboard{src: src, assets: loadAssets(), timing: defaultTiming()}
}

// loadAssets reads the embedded files. They are part of the binary, so a
// missing one is a build mistake: it panics.
func loadAssets() map[string]asset {
	out := map[string]asset{}
	for _, name := range []string{"index.html", "app.js", "style.css"} {
		data, err := fs.ReadFile(embedded, path.Join("assets", name))
		if err != nil {
			panic(fmt.Sprintf("dashboard: embedded asset: %v", err))
		}
		sum := sha256.Sum256(data)
		out[name] = asset{name: name, contentType: contentType(name), data: data, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return out
}

// ServeHTTP serves the page, its script and style sheet, and its event
// stream.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	switch r.URL.Path {
	case "/", "/dashboard/", "/dashboard/index.html":
		d.serveAsset(w, r, "index.html")
	case "/dashboard/app.js":
		d.serveAsset(w, r, "app.js")
	case "/dashboard/style.css":
		d.serveAsset(w, r, "style.css")
	case "/dashboard/events":
		d.serveEvents(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (d *Dashboard) serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	a := d.assets[name]
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Content-Security-Policy", contentSecurity)
	h.Set("Cache-Control", "no-cache") // revalidate: an upgraded daemon serves a new page
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.data))
}
