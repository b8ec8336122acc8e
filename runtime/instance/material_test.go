package instance

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"understudy/runtime/config"
)

const materialSite = `site: hall
coordinator: c
members:
  - id: c
  - id: rec
    duties: {material: [/srv/rec/a, /srv/rec/b]}
    material_mounts: [/mnt/sb, /mnt/other/]
  - id: sb
    standby: true
    material_server: 198.18.0.3:7902
    duties: {material: [/srv/sb/1, /srv/sb/2, /srv/sb/3]}
  - id: plain
    duties: {material: [/srv/plain]}
  - id: nothing
copy: {subfolder: "recorded/{member}"}
`

func parseSite(t *testing.T, yaml string) *config.Site {
	t.Helper()
	site, err := config.Parse("site.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return site
}

// A copy's folders come from site.yaml: the peer's material folders over its
// material server (root i+1 for its i-th folder) into the member's own
// (its first when it has fewer), or mounted folders inside its
// material_mounts. What the command may name is the peer, or the paths.
func TestCopyRootsComeFromSiteYAML(t *testing.T) {
	site := parseSite(t, materialSite)
	roots, err := copyRoots(site, "rec", copyArgs{From: "sb"})
	if err != nil {
		t.Fatal(err)
	}
	wantDest := []string{"/srv/rec/a", "/srv/rec/b", "/srv/rec/a"}
	if len(roots) != 3 {
		t.Fatalf("roots %+v, want one per folder of sb", roots)
	}
	for i, r := range roots {
		u, err := url.Parse(r.URL)
		if err != nil || u.Host != "198.18.0.3:7902" || u.Path != "/material" || u.Query().Get("root") != string(rune('1'+i)) || r.Dest != wantDest[i] || r.Mount != "" {
			t.Errorf("root %d: %+v", i+1, r)
		}
	}

	roots, err = copyRoots(site, "rec", copyArgs{Paths: []string{"/mnt/sb/rec", "/mnt/other", "/mnt/sb/x/../y"}})
	if err == nil || !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "material_mounts") {
		t.Errorf("a path with ..: %+v, %v", roots, err)
	}
	roots, err = copyRoots(site, "rec", copyArgs{Paths: []string{"/mnt/sb/rec", "/mnt/other"}})
	if err != nil || len(roots) != 2 ||
		roots[0] != (copyRoot{Mount: "/mnt/sb", Sub: "rec", Dest: "/srv/rec/a"}) ||
		roots[1] != (copyRoot{Mount: "/mnt/other", Sub: "", Dest: "/srv/rec/b"}) {
		t.Errorf("mounted: %+v, %v", roots, err)
	}

	// A peer without a material server: the member's copy hook does it.
	if _, err := copyRoots(site, "rec", copyArgs{From: "plain"}); !errors.Is(err, errNoBuiltinCopy) {
		t.Errorf("from plain: %v, want no built-in copy", err)
	}

	for name, c := range map[string]struct {
		self string
		args copyArgs
		want string
	}{
		"no source":               {"rec", copyArgs{}, "names no member to copy from"},
		"from itself":             {"sb", copyArgs{From: "sb"}, "does not copy from itself"},
		"from a stranger":         {"rec", copyArgs{From: "backup"}, `"backup" is not a member of site hall`},
		"from a folder":           {"rec", copyArgs{From: "/var/lib/understudy"}, "is not a member"},
		"path outside the mounts": {"rec", copyArgs{Paths: []string{"/var/lib/understudy"}}, "not inside rec's material_mounts"},
		"a mount's sibling":       {"rec", copyArgs{Paths: []string{"/mnt/sbx"}}, "not inside"},
		"relative path":           {"rec", copyArgs{Paths: []string{"mnt/sb/rec"}}, "not inside"},
		"no mounts at all":        {"plain", copyArgs{Paths: []string{"/mnt/sb/rec"}}, "not inside plain's material_mounts"},
		"nowhere to copy to":      {"nothing", copyArgs{From: "sb"}, "no duties.material"},
		"not a member":            {"ghost", copyArgs{From: "sb"}, "not a member"},
	} {
		roots, err := copyRoots(site, c.self, c.args)
		if !errors.Is(err, errRefused) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %+v, %v; want refused, %q", name, roots, err, c.want)
		}
	}
}

// A grant opens copy.subfolder for another member of the site, nothing for
// a stranger or the server itself.
func TestGrantSubfolderIsTheMembersOwn(t *testing.T) {
	site := parseSite(t, materialSite)
	if sub, err := grantSub(site, "sb", "rec"); err != nil || sub != "recorded/rec" {
		t.Errorf("grant for rec: %q, %v", sub, err)
	}
	for _, member := range []string{"", "sb", "ghost", "../c", "/etc"} {
		if sub, err := grantSub(site, "sb", member); err == nil {
			t.Errorf("grant for %q accepted: %q", member, sub)
		}
	}
	if got := servedFolders(mustMember(t, site, "sb")); len(got) != 3 || got["1"] != "/srv/sb/1" || got["3"] != "/srv/sb/3" {
		t.Errorf("served folders %v", got)
	}
}

// A command that names folders is refused, whatever else it says.
func TestMaterialCommandsNamingFoldersAreRefused(t *testing.T) {
	for _, args := range []map[string]any{
		{"roots": []any{map[string]any{"path": "/var/lib/understudy", "dest": "/srv/sb"}}},
		{"from": "sb", "roots": []any{}},
		{"from": "sb", "dest": "/srv/rec/a"},
	} {
		if err := forbidArgs("copy", args, "roots", "dest", "url"); !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "never from a command") {
			t.Errorf("copy %v: %v", args, err)
		}
	}
	if err := forbidArgs("copy", map[string]any{"from": "sb", "token": "t", "material": []any{"/srv/rec/a"}}, "roots", "dest", "url"); err != nil {
		t.Errorf("a copy as the coordinator sends it: %v", err)
	}
}

func mustMember(t *testing.T, site *config.Site, id string) *config.Member {
	t.Helper()
	m, ok := site.Member(id)
	if !ok {
		t.Fatalf("no member %s", id)
	}
	return m
}
