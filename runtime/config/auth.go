package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Auth says how the site's instances authenticate their messages to each
// other with the site key (package sitekey).
type Auth struct {
	// Mode is off, permissive (messages without a code are still taken,
	// counted and warned about: for an upgrade, one machine after another)
	// or required. Default: required when the key file exists, else off.
	Mode string `yaml:"mode"`
	// Key is the key file (default: site.key beside site.yaml).
	Key string `yaml:"key"`
}

// The authentication modes.
const (
	AuthOff        = "off"
	AuthPermissive = "permissive"
	AuthRequired   = "required"
)

// DefaultKeyFile is the site key's file name beside site.yaml.
const DefaultKeyFile = "site.key"

// KeyPath is the site key's file.
func (s *Site) KeyPath() string {
	k := s.Auth.Key
	if k == "" {
		k = DefaultKeyFile
	}
	if filepath.IsAbs(k) {
		return k
	}
	return filepath.Join(s.Dir, k)
}

// AuthMode is the mode in force: as configured, or by default required when
// the key file exists and off when it does not (looked at once, when the
// site is loaded).
func (s *Site) AuthMode() string {
	if s.authMode == "" { // a Site not made by Load
		return s.resolveAuthMode()
	}
	return s.authMode
}

func (s *Site) resolveAuthMode() string {
	if s.Auth.Mode != "" {
		return s.Auth.Mode
	}
	if _, err := os.Stat(s.KeyPath()); errors.Is(err, fs.ErrNotExist) {
		return AuthOff
	}
	return AuthRequired
}

func (s *Site) validateAuth(add func(path, format string, args ...any)) {
	switch s.Auth.Mode {
	case "", AuthOff, AuthPermissive, AuthRequired:
	default:
		add("$.auth.mode", "auth.mode %q: want off, permissive or required", s.Auth.Mode)
	}
	if s.Auth.Key != "" && s.Auth.Mode == AuthOff {
		add("$.auth.key", "auth.key is set but auth.mode is off: the key would not be used")
	}
}
