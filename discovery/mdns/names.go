package mdns

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// domain is the only mDNS domain.
const domain = "local."

// enumName is the DNS-SD service type enumeration name (RFC 6763 §9).
const enumName = "_services._dns-sd._udp." + domain

// normalizeService checks a DNS-SD service type such as "_understudy._tcp"
// (a trailing "." or ".local." is accepted) and returns it without them.
func normalizeService(s string) (string, error) {
	t := strings.TrimSuffix(s, ".")
	if strings.HasSuffix(strings.ToLower(t), ".local") {
		t = t[:len(t)-len(".local")]
	}
	labels := strings.Split(t, ".")
	if len(labels) != 2 {
		return "", fmt.Errorf("mdns: service type %q: want _name._tcp or _name._udp", s)
	}
	name, proto := labels[0], strings.ToLower(labels[1])
	if proto != "_tcp" && proto != "_udp" {
		return "", fmt.Errorf("mdns: service type %q: protocol must be _tcp or _udp", s)
	}
	if len(name) < 2 || len(name) > 16 || name[0] != '_' {
		return "", fmt.Errorf("mdns: service type %q: name must be _ and 1 to 15 characters", s)
	}
	for _, c := range name[1:] {
		if !isLDH(c) {
			return "", fmt.Errorf("mdns: service type %q: name may contain only letters, digits and '-'", s)
		}
	}
	return name + "." + proto, nil
}

func validateInstance(s string) error {
	switch {
	case s == "":
		return errors.New("mdns: empty instance name")
	case len(s) > 63:
		return fmt.Errorf("mdns: instance name %q longer than 63 bytes", s)
	case !utf8.ValidString(s):
		return fmt.Errorf("mdns: instance name %q is not valid UTF-8", s)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("mdns: instance name %q contains a control character", s)
		}
	}
	return nil
}

// hostName returns the fully qualified mDNS host name for Service.Host:
// "<label>.local.". An empty host stands for the machine's host name
// (os.Hostname, see hostLabel). A given host may be written "label",
// "label.local" or "label.local."; the label must be 1 to 63 letters, digits
// and '-'.
func hostName(host string) (string, error) {
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("host name: %w", err)
		}
		return hostLabel(h) + "." + domain, nil
	}
	label := host
	if lower := strings.ToLower(label); strings.HasSuffix(lower, ".local.") || strings.HasSuffix(lower, ".local") {
		label = strings.TrimSuffix(label, ".")
		label = label[:len(label)-len(".local")]
	}
	if label == "" || len(label) > 63 || strings.ContainsRune(label, '.') {
		return "", fmt.Errorf("host name %q: want one label of 1 to 63 characters, optionally followed by \".local.\"", host)
	}
	for _, c := range label {
		if !isLDH(c) {
			return "", fmt.Errorf("host name %q: label %q may contain only letters, digits and '-'", host, label)
		}
	}
	return label + "." + domain, nil
}

// hostLabel turns a system host name into one DNS label: the part before the
// first dot ("vm.example.com" gives "vm"), every character other than a
// letter, digit or '-' replaced by '-', leading and trailing '-' removed, at
// most 63 bytes; "understudy" when nothing is left.
func hostLabel(name string) string {
	name, _, _ = strings.Cut(name, ".")
	var b strings.Builder
	for _, c := range name {
		if isLDH(c) {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	label := b.String()
	if len(label) > 63 {
		label = label[:63]
	}
	label = strings.Trim(label, "-")
	if label == "" {
		return "understudy"
	}
	return label
}

// isLDH reports whether c is an ASCII letter, digit or hyphen.
func isLDH(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

// escapeLabel writes a DNS label in presentation format the way
// github.com/miekg/dns prints names it unpacks, so that names in questions
// compare equal to the advertised ones.
func escapeLabel(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' || c == ' ' || c == '\'' || c == '@' || c == ';' || c == '(' || c == ')' || c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescapeLabel reverses escapeLabel (\X and \DDD). It fails for an unescaped
// dot: the name has more labels than an instance name.
func unescapeLabel(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			return "", fmt.Errorf("mdns: %q is not a single label", s)
		case c != '\\':
			b.WriteByte(c)
		case i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]):
			n, _ := strconv.Atoi(s[i+1 : i+4])
			if n > 255 {
				return "", fmt.Errorf("mdns: bad escape in %q", s)
			}
			b.WriteByte(byte(n))
			i += 3
		case i+1 < len(s):
			b.WriteByte(s[i+1])
			i++
		default:
			return "", fmt.Errorf("mdns: trailing backslash in %q", s)
		}
	}
	return b.String(), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// encodeTXT encodes attributes as sorted key=value strings (RFC 6763 §6). An
// empty map gives the single empty string that an empty TXT record must hold.
func encodeTXT(m map[string]string) ([]string, error) {
	if len(m) == 0 {
		return []string{""}, nil
	}
	keys := make([]string, 0, len(m))
	seen := map[string]bool{}
	for k := range m {
		if k == "" || strings.ContainsRune(k, '=') {
			return nil, fmt.Errorf("TXT key %q: must be non-empty and without '='", k)
		}
		for _, c := range k {
			if c < 0x20 || c > 0x7e {
				return nil, fmt.Errorf("TXT key %q: must be printable ASCII", k)
			}
		}
		lk := strings.ToLower(k)
		if seen[lk] {
			return nil, fmt.Errorf("TXT key %q given twice (keys ignore case)", k)
		}
		seen[lk] = true
		keys = append(keys, k)
	}
	sort.Strings(keys)
	txt := make([]string, 0, len(keys))
	for _, k := range keys {
		s := k + "=" + m[k]
		if len(s) > 255 {
			return nil, fmt.Errorf("TXT attribute %q longer than 255 bytes", k)
		}
		txt = append(txt, s)
	}
	return txt, nil
}

// decodeTXT decodes TXT strings: keys are lower-cased, "key" alone maps to "",
// empty strings are skipped, and of repeated keys the first counts (RFC 6763
// §6.4).
func decodeTXT(txt []string) map[string]string {
	m := map[string]string{}
	for _, s := range txt {
		if s == "" {
			continue
		}
		k, v, _ := strings.Cut(s, "=")
		if k == "" {
			continue
		}
		k = strings.ToLower(k)
		if _, dup := m[k]; !dup {
			m[k] = v
		}
	}
	return m
}
