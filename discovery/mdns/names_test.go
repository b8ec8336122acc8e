package mdns

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestEscapeLabelMatchesMiekgPresentation(t *testing.T) {
	for _, instance := range []string{
		"plain",
		"with space",
		"dots.in.name",
		`back\slash`,
		`all . ' @ ; ( ) " \ specials`,
		"ünïcödé",
		"tab\there",
	} {
		escaped := escapeLabel(instance)
		name := escaped + "._understudy._tcp.local."
		// What a querier asks for after a round trip through the wire format
		// must equal what the advertisement compares against.
		buf := make([]byte, 512)
		off, err := dns.PackDomainName(name, buf, 0, nil, false)
		if err != nil {
			t.Fatalf("%q: pack %q: %v", instance, name, err)
		}
		unpacked, _, err := dns.UnpackDomainName(buf[:off], 0)
		if err != nil {
			t.Fatalf("%q: unpack: %v", instance, err)
		}
		if unpacked != name {
			t.Errorf("%q: escaped %q, after the wire %q", instance, name, unpacked)
		}
		if labels := dns.CountLabel(name); labels != 4 {
			t.Errorf("%q: %q has %d labels, want 4", instance, name, labels)
		}
		back, err := unescapeLabel(escaped)
		if err != nil || back != instance {
			t.Errorf("unescape(%q) = %q, %v; want %q", escaped, back, err, instance)
		}
	}
}

func TestUnescapeLabelRejectsMalformed(t *testing.T) {
	for _, s := range []string{`two.labels`, `trailing\`, `\999`} {
		if got, err := unescapeLabel(s); err == nil {
			t.Errorf("unescapeLabel(%q) = %q, want an error", s, got)
		}
	}
}

func TestNormalizeService(t *testing.T) {
	good := map[string]string{
		"_understudy._tcp":         "_understudy._tcp",
		"_mqtt._tcp.":              "_mqtt._tcp",
		"_mqtt._tcp.local.":        "_mqtt._tcp",
		"_Understudy._TCP.LOCAL":   "_Understudy._tcp",
		"_osc._udp":                "_osc._udp",
		"_fifteen-chars12._tcp":    "_fifteen-chars12._tcp",
		"_a._tcp":                  "_a._tcp",
		"_understudy._tcp.local":   "_understudy._tcp",
		"_understudy._tcp.local..": "",
	}
	for in, want := range good {
		got, err := normalizeService(in)
		if want == "" {
			if err == nil {
				t.Errorf("normalizeService(%q) = %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("normalizeService(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "understudy._tcp", "_understudy", "_understudy._sctp", "_x._tcp.example.", "_sixteen-chars123._tcp", "_bad_char._tcp", "_._tcp"} {
		if got, err := normalizeService(in); err == nil {
			t.Errorf("normalizeService(%q) = %q, want an error", in, got)
		}
	}
}

func TestTXTEncodeDecode(t *testing.T) {
	m := map[string]string{"site": "north", "member": "m 1", "version": "1.2.3", "flag": ""}
	txt, err := encodeTXT(m)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"flag=", "member=m 1", "site=north", "version=1.2.3"}; !slices.Equal(txt, want) {
		t.Fatalf("encodeTXT = %q, want %q", txt, want)
	}
	if got := decodeTXT(txt); !maps.Equal(got, m) {
		t.Fatalf("decodeTXT(encodeTXT(m)) = %v, want %v", got, m)
	}
	if txt, err := encodeTXT(nil); err != nil || !slices.Equal(txt, []string{""}) {
		t.Fatalf("encodeTXT(nil) = %q, %v; want one empty string", txt, err)
	}
	// Keys ignore case, a bare key is a boolean attribute, the first of a
	// repeated key counts, empty strings are nothing.
	got := decodeTXT([]string{"", "Site=north", "site=south", "bare", "=novalue", "eq=a=b"})
	if want := map[string]string{"site": "north", "bare": "", "eq": "a=b"}; !maps.Equal(got, want) {
		t.Fatalf("decodeTXT = %v, want %v", got, want)
	}
	for _, bad := range []map[string]string{
		{"": "x"},
		{"a=b": "x"},
		{"ctl\x01": "x"},
		{"Site": "a", "site": "b"},
		{"long": strings.Repeat("x", 251)},
	} {
		if txt, err := encodeTXT(bad); err == nil {
			t.Errorf("encodeTXT(%q) = %q, want an error", bad, txt)
		}
	}
}

func TestHostName(t *testing.T) {
	for in, want := range map[string]string{
		"vm":            "vm.local.",
		"vm.local":      "vm.local.",
		"vm.local.":     "vm.local.",
		"A-Host.LOCAL":  "A-Host.local.",
		"a-host.local.": "a-host.local.",
	} {
		if got, err := hostName(in); err != nil || got != want {
			t.Errorf("hostName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	// Never a bare "host." nor a name of several labels.
	for _, in := range []string{"vm.", "vm.example.com.", "a.b.local.", "x_y.local.", "sp ace", ".local.", strings.Repeat("a", 64)} {
		if got, err := hostName(in); err == nil {
			t.Errorf("hostName(%q) = %q, want an error", in, got)
		}
	}
	// The machine's name: one label, ending in .local.
	got, err := hostName("")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got, ".local.") || strings.Count(got, ".") != 2 {
		t.Errorf("hostName(\"\") = %q, want <label>.local.", got)
	}
}

func TestHostLabel(t *testing.T) {
	for in, want := range map[string]string{
		"vm":                    "vm",
		"studio-01.example.com": "studio-01",
		"Büro PC":               "B-ro-PC",
		"-edge-":                "edge",
		"___":                   "understudy",
		"":                      "understudy",
		strings.Repeat("x", 70): strings.Repeat("x", 63),
	} {
		if got := hostLabel(in); got != want {
			t.Errorf("hostLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidateInstance(t *testing.T) {
	for _, s := range []string{"", strings.Repeat("x", 64), "ctl\x7f", "bad\xffutf8"} {
		if err := validateInstance(s); err == nil {
			t.Errorf("validateInstance(%q) accepted", s)
		}
	}
	if err := validateInstance("member one.a"); err != nil {
		t.Errorf("validateInstance: %v", err)
	}
}
