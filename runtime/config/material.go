package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"
)

// Copy says how material recorded by a standby is copied back to the member
// it covered.
type Copy struct {
	// Subfolder is the folder, inside each of the source's material folders,
	// that holds what the source recorded for the member; {member} stands
	// for the member's id. Default "{member}"; "" copies the material
	// folders themselves (a standby that covers one member at a time).
	Subfolder *string `yaml:"subfolder"`
	// Settle: a file modified more recently than this is still being
	// written and is left for a later copy (default 30s).
	Settle Duration `yaml:"settle"`
	// LimitMbit caps each copy's transfer, in megabits per second (0: no cap).
	LimitMbit float64 `yaml:"limit_mbit"`
}

// Copy defaults.
const (
	DefaultCopySubfolder = "{member}"
	DefaultCopySettle    = 30 * time.Second
)

// CopySubfolder is the subfolder of a source's material folders that holds
// what it recorded for member ("" for the folders themselves).
func (s *Site) CopySubfolder(member string) string {
	sub := DefaultCopySubfolder
	if s.Copy.Subfolder != nil {
		sub = *s.Copy.Subfolder
	}
	return strings.ReplaceAll(sub, "{member}", member)
}

// CopySettle is how long a file must have been left alone to be copied.
func (s *Site) CopySettle() time.Duration {
	if s.Copy.Settle == 0 {
		return DefaultCopySettle
	}
	return s.Copy.Settle.D()
}

// CopyLimit is the bandwidth cap of a copy in bytes per second (0: none).
func (s *Site) CopyLimit() int64 { return int64(s.Copy.LimitMbit * 1e6 / 8) }

func (s *Site) validateMaterial(add func(path, format string, args ...any)) {
	if sub := s.Copy.Subfolder; sub != nil {
		clean := filepath.Clean(strings.ReplaceAll(*sub, "{member}", "m"))
		if *sub != "" && (filepath.IsAbs(*sub) || clean == ".." || strings.HasPrefix(clean, "../")) {
			add("$.copy.subfolder", "copy.subfolder %q: give a folder inside the material folders, like {member}", *sub)
		}
	}
	if s.Copy.Settle < 0 {
		add("$.copy.settle", "copy.settle %v: 0 (default 30s) or more", s.Copy.Settle)
	}
	if s.Copy.LimitMbit < 0 {
		add("$.copy.limit_mbit", "copy.limit_mbit %v: 0 (no cap) or more megabits per second", s.Copy.LimitMbit)
	}
	for i, m := range s.Members {
		p := fmt.Sprintf("$.members[%d]", i)
		for j, d := range m.Duties.Material {
			if !filepath.IsAbs(d) {
				add(fmt.Sprintf("%s.duties.material[%d]", p, j), "duties.material: give the absolute path of a material folder, not %q", d)
			}
		}
		for j, d := range m.MaterialMounts {
			if !filepath.IsAbs(d) {
				add(fmt.Sprintf("%s.material_mounts[%d]", p, j), "material_mounts: give the absolute path of a mounted folder, not %q", d)
			}
		}
		if m.MaterialServer == "" {
			continue
		}
		ap, err := netip.ParseAddrPort(m.MaterialServer)
		switch {
		case err != nil && !hostPort(m.MaterialServer):
			add(p+".material_server", "material_server %q: give the host:port peers reach this instance at, like 198.18.0.2:7902", m.MaterialServer)
		case err == nil && (ap.Addr().IsUnspecified() || ap.Port() == 0):
			add(p+".material_server", "material_server %s: give the address peers reach this instance at, not %s, and a port", m.MaterialServer, ap.Addr())
		case len(m.Duties.Material) == 0 && !m.Witness: // a witness: validateWitness says
			add(p+".material_server", "material_server: member %s has no duties.material folders to serve", m.ID)
		}
	}
}

// hostPort reports whether s is a host name and a port.
func hostPort(s string) bool {
	host, port, ok := strings.Cut(s, ":")
	return ok && host != "" && port != "" && port != "0" && !strings.ContainsAny(host, "/ ") && strings.Trim(port, "0123456789") == ""
}
