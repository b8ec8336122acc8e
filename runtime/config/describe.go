package config

import (
	"errors"
	"fmt"
	"slices"

	"github.com/goccy/go-yaml"

	"understudy/yamlerr"
)

// LoadMember reads a member's description of itself: one member entry, in
// the schema of site.yaml's members, kept on that member's machine
// (understudy run --describe). Errors name file:line:col.
func LoadMember(path string) (Member, error) {
	data, err := yamlerr.ReadFile(path)
	if err != nil {
		if e := (*Error)(nil); errors.As(err, &e) {
			return Member{}, Errors{e}
		}
		return Member{}, fmt.Errorf("read member description: %w", err)
	}
	file, err := yamlerr.Parse(path, data)
	if err != nil {
		return Member{}, Errors{positioned(path, err)}
	}
	if len(file.Docs) == 0 || file.Docs[0].Body == nil {
		return Member{}, Errors{{File: path, Msg: "empty member description"}}
	}
	var m Member
	if err := yaml.NodeToValue(file.Docs[0].Body, &m, yaml.Strict()); err != nil {
		return Member{}, Errors{positioned(path, err)}
	}
	if m.ID == "" {
		return Member{}, Errors{{File: path, Line: 1, Col: 1, Msg: "id: say which member this describes"}}
	}
	return m, nil
}

// Describe takes a member's description of itself: it replaces the member's
// entry in the site (keeping the site's heartbeat timing and API address when
// the description leaves them out), or adds the member when the site file
// does not list it. The whole site is checked again; on error nothing
// changes. added says the member is new to the site.
func (s *Site) Describe(m Member) (added bool, err error) {
	if !idRe.MatchString(m.ID) {
		return false, fmt.Errorf("member id %q: use letters, digits, '.', '-' and '_' (at most 64)", m.ID)
	}
	prev, known := s.Member(m.ID)
	if known {
		if m.Heartbeat == 0 {
			m.Heartbeat = prev.Heartbeat
		}
		if m.LostAfter == 0 {
			m.LostAfter = prev.LostAfter
		}
		if m.API == "" {
			m.API = prev.API
		}
	}
	s.memberDefaults(&m)
	old := s.Members
	next := slices.Clone(old)
	if i := slices.IndexFunc(next, func(x Member) bool { return x.ID == m.ID }); i >= 0 {
		next[i] = m
	} else {
		next = append(next, m)
	}
	s.Members = next
	if errs := s.validate(); len(errs) > 0 {
		s.Members = old
		var msgs Errors
		for _, e := range errs {
			msgs = append(msgs, &Error{File: "description of " + m.ID, Msg: e.Msg})
		}
		return false, msgs
	}
	return !known, nil
}

// Clone returns a copy of the site whose member list can change (Describe)
// without touching the original's.
func (s *Site) Clone() *Site {
	c := *s
	c.Members = slices.Clone(s.Members)
	return &c
}
