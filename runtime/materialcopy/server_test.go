package materialcopy

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeebo/xxh3"
)

type answer struct {
	code int
	body string
}

func request(t *testing.T, ts *httptest.Server, method, endpoint string, q url.Values, token string, hdr map[string]string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, ts.URL+endpoint+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b)}
}

func TestServerSecurity(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	content := make([]byte, 1000)
	for i := range content {
		content[i] = byte(i * 7)
	}
	writeFile(t, filepath.Join(root, "a/x.bin"), content, old)
	writeFile(t, filepath.Join(outside, "secret.txt"), []byte("secret"), old)
	for link, target := range map[string]string{
		"evil":      filepath.Join(outside, "secret.txt"),
		"evildir":   outside,
		"a/evilrel": "../../outside/secret.txt",
		"good":      filepath.Join(root, "a/x.bin"),
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	ts := serve(t, root, nil)
	rec := func(kv ...string) url.Values {
		q := url.Values{"root": {"rec"}}
		for i := 0; i+1 < len(kv); i += 2 {
			q.Set(kv[i], kv[i+1])
		}
		return q
	}

	cases := []struct {
		name     string
		method   string
		endpoint string
		q        url.Values
		token    string
		hdr      map[string]string
		code     int
		body     string // a part of the answer
	}{
		{"no token", "GET", "/list", rec(), "", nil, 401, "missing bearer token"},
		{"wrong token", "GET", "/list", rec(), "guess", nil, 403, "wrong bearer token"},
		{"wrong token file", "GET", "/file", rec("path", "a/x.bin"), "s3cret-tokeN", nil, 403, "wrong bearer token"},
		{"list", "GET", "/list", rec(), testToken, nil, 200, `"path":"a/x.bin"`},
		{"dotdot", "GET", "/file", rec("path", "../outside/secret.txt"), testToken, nil, 403, "path outside the root"},
		{"dotdot inside", "GET", "/file", rec("path", "a/../a/x.bin"), testToken, nil, 403, "path outside the root"},
		{"absolute", "GET", "/file", rec("path", filepath.Join(outside, "secret.txt")), testToken, nil, 403, "absolute"},
		{"etc passwd", "GET", "/hash", rec("path", "/etc/passwd"), testToken, nil, 403, "absolute"},
		{"symlink out", "GET", "/file", rec("path", "evil"), testToken, nil, 403, "resolves outside the root"},
		{"symlink rel out", "GET", "/hash", rec("path", "a/evilrel"), testToken, nil, 403, "resolves outside the root"},
		{"symlink dir out", "GET", "/stat", rec("path", "evildir/secret.txt"), testToken, nil, 403, "resolves outside the root"},
		{"symlink inside", "GET", "/file", rec("path", "good"), testToken, nil, 200, string(content)},
		{"directory", "GET", "/file", rec("path", "a"), testToken, nil, 404, "not a regular file"},
		{"missing", "GET", "/file", rec("path", "a/none.bin"), testToken, nil, 404, "not found"},
		{"unknown root", "GET", "/list", url.Values{"root": {"other"}}, testToken, nil, 404, "unknown root"},
		{"unknown endpoint", "GET", "/delete", rec(), testToken, nil, 404, "no such endpoint"},
		{"post", "POST", "/file", rec("path", "a/x.bin"), testToken, nil, 405, "read-only"},
		{"range", "GET", "/file", rec("path", "a/x.bin"), testToken, map[string]string{"Range": "bytes=10-19"}, 206, string(content[10:20])},
		{"range open", "GET", "/file", rec("path", "a/x.bin"), testToken, map[string]string{"Range": "bytes=990-"}, 206, string(content[990:])},
		{"bad since", "GET", "/list", rec("since", "yesterday"), testToken, nil, 400, "RFC 3339"},
		{"hash too long", "GET", "/hash", rec("path", "a/x.bin", "length", "1001"), testToken, nil, 409, "shorter than 1001"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := request(t, ts, c.method, c.endpoint, c.q, c.token, c.hdr)
			if a.code != c.code || !strings.Contains(a.body, c.body) {
				t.Errorf("%s %s %v: %d %q; want %d with %q", c.method, c.endpoint, c.q, a.code, a.body, c.code, c.body)
			}
			if c.code >= 400 && strings.Contains(a.body, "secret") && !strings.Contains(a.body, "secret.txt") {
				t.Errorf("answer leaks the secret: %q", a.body)
			}
		})
	}

	// Exact range bytes, and the list holds no symlink.
	a := request(t, ts, "GET", "/file", rec("path", "a/x.bin"), testToken, map[string]string{"Range": "bytes=10-19"})
	if a.body != string(content[10:20]) {
		t.Errorf("range body %v, want %v", []byte(a.body), content[10:20])
	}
	var l listAnswer
	json.Unmarshal([]byte(request(t, ts, "GET", "/list", rec(), testToken, nil).body), &l)
	if len(l.Files) != 1 || l.Files[0].Path != "a/x.bin" || l.Files[0].Size != 1000 || !l.Files[0].ModTime.Equal(old) {
		t.Errorf("list = %+v, want only a/x.bin", l.Files)
	}

	// The hash is xxh3-64 of the content.
	var h hashAnswer
	json.Unmarshal([]byte(request(t, ts, "GET", "/hash", rec("path", "a/x.bin", "length", "100"), testToken, nil).body), &h)
	if want := hexSum(xxh3.Hash(content[:100])); h.XXH3 != want {
		t.Errorf("hash of 100 bytes %q, want %q", h.XXH3, want)
	}

	// Through Remote.
	src := Remote(ts.URL+"?root=rec", testToken, ts.Client())
	if sum, err := src.Hash(t.Context(), "a/x.bin", -1); err != nil || sum != hexSum(xxh3.Hash(content)) {
		t.Errorf("remote hash %q, %v", sum, err)
	}
	rc, err := src.Open(t.Context(), "a/x.bin", 600)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != string(content[600:]) {
		t.Errorf("remote open from 600: %d bytes", len(got))
	}
	if _, err := src.Open(t.Context(), "evil", 0); !errors.Is(err, ErrOutsideRoot) {
		t.Errorf("remote open of an escaping symlink: %v", err)
	}
	if _, err := src.Stat(t.Context(), "a/none.bin"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("remote stat of a missing file: %v", err)
	}
	var he *HTTPError
	if _, err := Remote(ts.URL+"?root=rec", "wrong", ts.Client()).List(t.Context(), old, old); !errors.As(err, &he) || he.StatusCode != 403 {
		t.Errorf("remote with a wrong token: %v", err)
	}
	if _, err := Copy(t.Context(), Job{Source: Remote(ts.URL+"?root=rec", "", ts.Client()), Dest: t.TempDir()}); err == nil {
		t.Error("copy without a token succeeded")
	}

	// Local refuses the same paths.
	for _, p := range []string{"../outside/secret.txt", "/etc/passwd", "evil", "evildir/secret.txt", "a/evilrel", ""} {
		if _, err := Local(root).Open(t.Context(), p, 0); !errors.Is(err, ErrOutsideRoot) {
			t.Errorf("Local open %q: %v, want refused", p, err)
		}
	}
}

func TestServerWithoutToken(t *testing.T) {
	ts := httptest.NewServer(NewServer(map[string]string{"rec": t.TempDir()}, ""))
	defer ts.Close()
	for _, tok := range []string{"", "anything"} {
		if a := request(t, ts, "GET", "/list", url.Values{"root": {"rec"}}, tok, nil); a.code/100 != 4 || a.code == 404 {
			t.Errorf("server without a token answered %d %q", a.code, a.body)
		}
	}
}

func TestRemoteSingleRootAndPrefix(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "f.ts"), []byte("x"), old)
	mux := http.NewServeMux()
	mux.Handle("/material/", http.StripPrefix("/material", NewServer(map[string]string{"only": dir}, testToken)))
	ts := httptest.NewServer(mux)
	defer ts.Close()
	l, err := Remote(ts.URL+"/material/", testToken, ts.Client()).List(t.Context(), old, old)
	if err != nil || len(l) != 1 || l[0].Path != "f.ts" {
		t.Fatalf("list = %+v, %v", l, err)
	}
}

// A server that lists a path outside the destination must not make Copy
// write there.
func TestCopyRefusesEscapingListing(t *testing.T) {
	for _, p := range []string{"../x", "/etc/x", "a/../../x", ".f" + TempSuffix, ""} {
		if _, err := cleanRel(p); err == nil && p != ".f"+TempSuffix {
			t.Errorf("cleanRel(%q) accepted", p)
		}
	}
	dest := t.TempDir()
	c := &copier{job: Job{Dest: dest}, rep: &Report{}}
	for _, p := range []string{"../x", ".f" + TempSuffix} {
		if _, err := c.classify(t.Context(), FileInfo{Path: p, Size: 1}); !errors.Is(err, ErrOutsideRoot) {
			t.Errorf("classify %q: %v", p, err)
		}
	}
}
