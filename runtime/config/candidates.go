package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"

	"understudy/yamlerr"
)

// MinElected is how many coordinator candidates elect the coordinator among
// them: a raft group of two needs both for every decision, so two
// candidates without a third keep the single coordinator (the first).
const MinElected = 3

// CandidateList is site.yaml's coordinator: either one member's id (the
// member whose instance runs the policy) or a list of them in order of
// preference, the candidates of an elected coordinator.
type CandidateList []string

const candidatesHint = "coordinator: name a member, or list the candidates in order of preference: [backup, main, witness]"

// UnmarshalYAML reads a name or a list of names.
func (c *CandidateList) UnmarshalYAML(node ast.Node) error {
	switch n := node.(type) {
	case *ast.NullNode:
		*c = nil
		return nil
	case *ast.SequenceNode:
		out := make(CandidateList, 0, len(n.Values))
		for _, v := range n.Values {
			id, ok := candidateName(v)
			if !ok {
				return yamlerr.At(v, "%s", candidatesHint)
			}
			out = append(out, id)
		}
		*c = out
		return nil
	}
	id, ok := candidateName(node)
	if !ok {
		return yamlerr.At(node, "%s", candidatesHint)
	}
	*c = CandidateList{id}
	return nil
}

// candidateName is a scalar's text: a member id may look like a number or a
// boolean (id: 7), as a single coordinator: always could.
func candidateName(node ast.Node) (string, bool) {
	switch n := node.(type) {
	case *ast.TagNode:
		return candidateName(n.Value)
	case *ast.StringNode:
		return n.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		return n.GetToken().Value, true
	}
	return "", false
}

// candidates are the coordinator candidates: Candidates, or, for a Site not
// made by Load, Coordinator alone.
func (s *Site) candidates() []string {
	if len(s.Candidates) > 0 {
		return s.Candidates
	}
	if s.Coordinator != "" {
		return []string{s.Coordinator}
	}
	return nil
}

// Elected reports whether the candidates elect the coordinator among them:
// at least MinElected candidates (a witness counts). Otherwise Coordinator
// coordinates alone.
func (s *Site) Elected() bool { return len(s.candidates()) >= MinElected }

// IsCandidate reports whether member id is one of coordinator:'s candidates.
func (s *Site) IsCandidate(id string) bool { return slices.Contains(s.candidates(), id) }

// CandidatesHash identifies the election's group: the candidates in order
// with their raft addresses, hashed (sha256, the first 16 hex digits). The
// same list gives the same hash; another order or address another one.
func (s *Site) CandidatesHash() string {
	h := sha256.New()
	for _, id := range s.candidates() {
		raft := ""
		if m, ok := s.Member(id); ok {
			raft = m.Raft
		}
		fmt.Fprintf(h, "%q %q\n", id, raft)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// validateCandidates checks coordinator:, the witnesses and the raft
// addresses.
func (s *Site) validateCandidates(add func(path, format string, args ...any), ids map[string]bool) {
	list := s.candidates()
	if len(list) == 0 {
		add("$", "coordinator: name the member whose instance runs the policy, or list the candidates that elect it in order of preference")
	}
	elected := s.Elected()
	// Who is not a candidate is said only when every candidate is a member:
	// a misspelt candidate is one mistake, not one per raft: and witness.
	known := !slices.ContainsFunc(list, func(id string) bool { return !ids[id] })
	seen := map[string]bool{}
	for i, id := range list {
		p := fmt.Sprintf("$.coordinator[%d]", i) // a single name: position finds $.coordinator
		m, ok := s.Member(id)
		switch {
		case !ids[id] || !ok:
			add(p, "coordinator %q is not a member (members: %s)", id, strings.Join(s.MemberIDs(), ", "))
		case seen[id]:
			add(p, "coordinator: %s is listed twice", id)
		case m.Probe != nil:
			add(p, "coordinator: %s is checked by a probe and runs no understudy, so it can neither coordinate nor vote", id)
		case i == 0 && !elected && m.Witness && len(list) == 1:
			add(p, "coordinator: %s is a witness, which only votes in an election, and one candidate holds none: name the member whose instance runs the policy", id)
		case i == 0 && !elected && m.Witness:
			add(p, "coordinator: %s is a witness, and two candidates hold no election (the first coordinates alone): put the other candidate first, or add a third candidate to elect the coordinator", id)
		}
		seen[id] = true
	}
	if elected {
		if !slices.ContainsFunc(list, func(id string) bool { m, ok := s.Member(id); return !ok || !m.Witness }) {
			add("$.coordinator", "coordinator: every candidate is a witness: at least one must be a member that can coordinate (without witness: true)")
		}
		if s.Auth.Mode == AuthOff {
			add("$.coordinator", "coordinator: an elected coordinator needs the site key (auth.mode off): nothing without the key may join the election")
		}
	}
	rafts := map[string]string{} // normalised address: candidate
	for i, m := range s.Members {
		p := fmt.Sprintf("$.members[%d]", i)
		candidate := s.IsCandidate(m.ID)
		if m.Witness {
			s.validateWitness(add, p, m, candidate || !known)
		}
		switch {
		case m.Raft == "" && elected && candidate && m.Probe == nil:
			add(p, "raft: %s is a candidate of the elected coordinator: give the host:port where its raft transport listens and the other candidates reach it (raft: 10.0.0.2:7950)", m.ID)
		case m.Raft == "":
		case !candidate && !known:
		case !candidate:
			add(p+".raft", "raft: only coordinator candidates take part in the election; add %s to coordinator: or remove raft:", m.ID)
		default:
			addr, why := raftAddress(m.Raft)
			if why != "" {
				add(p+".raft", "raft %q: %s", m.Raft, why)
				continue
			}
			if other, dup := rafts[addr]; dup {
				add(p+".raft", "raft %s is also %s's: each candidate needs its own raft address", m.Raft, other)
				continue
			}
			rafts[addr] = m.ID
		}
	}
	s.validateBrokers(add, known)
}

// CandidateBrokers are the candidates' embedded brokers (members.X.broker)
// in the order of preference, when every candidate of an elected
// coordinator has one and the site names no broker of its own (bus.url);
// otherwise nil: the site has one broker.
func (s *Site) CandidateBrokers() []CandidateBroker {
	if !s.Elected() || s.Bus.URL != "" {
		return nil
	}
	var out []CandidateBroker
	for _, id := range s.candidates() {
		m, ok := s.Member(id)
		if !ok || m.Broker == "" {
			return nil
		}
		out = append(out, CandidateBroker{Member: id, Address: m.Broker})
	}
	return out
}

// CandidateBroker is a candidate's embedded broker: the member and the
// host:port where it listens.
type CandidateBroker struct{ Member, Address string }

// validateBrokers checks members.X.broker: only on candidates of an
// elected coordinator without bus.url, on all of them or none, each its own.
func (s *Site) validateBrokers(add func(path, format string, args ...any), known bool) {
	elected := s.Elected()
	var with, without []string
	seen := map[string]string{} // normalised address: candidate
	for i, m := range s.Members {
		p := fmt.Sprintf("$.members[%d]", i)
		candidate := s.IsCandidate(m.ID)
		if candidate && elected && m.Probe == nil {
			if m.Broker == "" {
				without = append(without, m.ID)
			} else {
				with = append(with, m.ID)
			}
		}
		switch {
		case m.Broker == "":
		case !candidate && !known:
		case !candidate:
			add(p+".broker", "broker: only the candidates of an elected coordinator embed a broker each; %s is no candidate (the site's broker is bus.url, or the one bus.broker_on embeds): remove broker:", m.ID)
		case !elected:
			add(p+".broker", "broker: %s is a candidate, but fewer than three candidates elect no coordinator (the first coordinates alone, with the site's one broker): remove broker:, or add a witness as the third candidate to elect the coordinator", m.ID)
		case s.Bus.URL != "":
			add(p+".broker", "broker: bus.url names the site's broker, so no member embeds one: remove broker: from the candidates, or bus.url")
		default:
			addr, why := raftAddress(m.Broker)
			if why != "" {
				add(p+".broker", "broker %q: %s", m.Broker, strings.Replace(why, "the other candidates reach it at, like 10.0.0.2:7950", "every instance reaches it at, like 10.0.0.2:1883", 1))
				continue
			}
			if other, dup := seen[addr]; dup {
				add(p+".broker", "broker %s is also %s's: each candidate's broker needs its own address", m.Broker, other)
				continue
			}
			if other, dup := s.raftOwner(addr); dup {
				add(p+".broker", "broker %s is %s's raft address: a broker needs its own port", m.Broker, other)
				continue
			}
			seen[addr] = m.ID
		}
	}
	if len(with) > 0 && len(without) > 0 && s.Bus.URL == "" {
		add("$.coordinator", "broker: every candidate embeds a broker (broker: host:port), for every instance to reach the bus through each, or none does: %s %s broker:, %s %s not", andList(with), hasHave(len(with), "has", "have"), andList(without), hasHave(len(without), "does", "do"))
	}
}

// andList is "a", "a and b", "a, b and c".
func andList(ids []string) string {
	if len(ids) < 2 {
		return strings.Join(ids, "")
	}
	return strings.Join(ids[:len(ids)-1], ", ") + " and " + ids[len(ids)-1]
}

// hasHave is one for a single subject, many for several.
func hasHave(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// raftOwner returns the candidate whose raft address is addr (normalised).
func (s *Site) raftOwner(addr string) (string, bool) {
	for _, m := range s.Members {
		if a, why := raftAddress(m.Raft); why == "" && a == addr && m.Raft != "" {
			return m.ID, true
		}
	}
	return "", false
}

// validateWitness checks that witness m has nothing but its vote.
func (s *Site) validateWitness(add func(path, format string, args ...any), p string, m Member, candidate bool) {
	if !candidate {
		add(p+".witness", "witness: %s is not one of coordinator:'s candidates, so it does not vote, and a witness has no duties: it would do nothing; add it to coordinator: or remove witness: true", m.ID)
	}
	if m.Standby {
		add(p+".standby", "standby: %s is a witness: it only votes in the coordinator's election and covers no one", m.ID)
	}
	if !m.Duties.empty() {
		add(p+".duties", "duties: %s is a witness: it only votes in the coordinator's election and has no duties; give them to another member, or remove witness: true", m.ID)
	}
	if len(m.Disks) > 0 {
		add(p+".disks", "disks: %s is a witness: it has no duties, so no material disks to watch", m.ID)
	}
	if len(m.Hooks) > 0 {
		add(p+".hooks", "hooks: %s is a witness: it has no duties, so no hooks to run", m.ID)
	}
	if m.Pool != "" {
		add(p+".pool", "pool: %s is a witness: it covers no one and has no duties to protect, so it belongs to no pool", m.ID)
	}
	if m.MaterialServer != "" {
		add(p+".material_server", "material_server: %s is a witness: it records nothing, so it has no material to serve", m.ID)
	}
	if !reflect.ValueOf(m.Failover).IsZero() {
		add(p+".failover", "failover: %s is a witness: it has no duties to fail over", m.ID)
	}
}

// empty reports whether d names no duty at all.
func (d Duties) empty() bool {
	return d.Switcher == "" && len(d.Outputs) == 0 && len(d.Inputs) == 0 && len(d.Usage) == 0 &&
		len(d.Clients) == 0 && d.Config == nil && len(d.Streams) == 0 && len(d.Material) == 0
}

// raftAddress normalises a raft: address (a host or IP and a port the other
// candidates dial), or says what is wrong with it.
func raftAddress(a string) (addr, why string) {
	const like = "give the host:port the other candidates reach it at, like 10.0.0.2:7950"
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", like
	}
	n, err := strconv.Atoi(port)
	switch {
	case host == "":
		return "", like + " (a host or address, not only a port: the others dial it)"
	case err != nil || n < 1 || n > 65535:
		return "", "the port is a number from 1 to 65535"
	case strings.ContainsAny(host, "/ "):
		return "", like
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.IsUnspecified() {
			return "", like + " (not " + host + ": the others dial it)"
		}
		host = ip.Unmap().String()
	}
	return net.JoinHostPort(strings.ToLower(host), strconv.Itoa(n)), ""
}
