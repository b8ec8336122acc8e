package materialcopy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// NewServer serves the folders in roots (name → folder) read-only to a peer
// that presents token as a bearer token ("Authorization: Bearer TOKEN").
// With an empty token every request is refused.
//
//	GET /list?root=NAME[&since=RFC3339][&until=RFC3339]  {"root":…, "files":[{"path","size","mtime","mode"}…], "dirs":[{"path","mode"}…]}
//	GET /stat?root=NAME&path=REL                         {"path","size","mtime","mode"}
//	GET /file?root=NAME&path=REL                         the content; Range requests are answered
//	GET /hash?root=NAME&path=REL[&length=N]              {"path","length","xxh3"}: xxh3-64 hex of the first N bytes or the whole file
//
// HEAD is accepted too. root may be left out when there is a single root.
// Paths are relative with forward slashes; absolute paths, ".." elements and
// symlinks resolving outside the root are refused with 403; "mode" is the
// permission bits. Answers: 401
// without a token, 403 with a wrong one, 404 for an unknown root or file,
// 409 for a hash length beyond the file's end.
//
// The handler expects the endpoints at the root of its path; mount it under
// a prefix with http.StripPrefix.
func NewServer(roots map[string]string, token string) http.Handler {
	s := &server{roots: make(map[string]*local, len(roots))}
	for name, dir := range roots {
		s.roots[name] = &local{root: dir}
	}
	if token != "" {
		s.token = sha256.Sum256([]byte(token))
		s.hasToken = true
	}
	return s
}

type server struct {
	roots    map[string]*local
	token    [sha256.Size]byte
	hasToken bool
}

func fail(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, format+"\n", args...)
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		fail(w, http.StatusMethodNotAllowed, "read-only: only GET and HEAD")
		return
	}
	if !s.authorised(w, r) {
		return
	}
	q := r.URL.Query()
	name := q.Get("root")
	if name == "" && len(s.roots) == 1 {
		for n := range s.roots {
			name = n
		}
	}
	root, ok := s.roots[name]
	if !ok {
		fail(w, http.StatusNotFound, "unknown root %q", name)
		return
	}
	switch strings.TrimSuffix(r.URL.Path, "/") {
	case "/list":
		s.list(w, r, name, root)
	case "/stat":
		s.stat(w, r, root)
	case "/file":
		s.file(w, r, root)
	case "/hash":
		s.hash(w, r, root)
	default:
		fail(w, http.StatusNotFound, "no such endpoint %q (want /list, /stat, /file or /hash)", r.URL.Path)
	}
}

func (s *server) authorised(w http.ResponseWriter, r *http.Request) bool {
	if !s.hasToken {
		fail(w, http.StatusForbidden, "material server has no token configured: refusing every request")
		return false
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="understudy material"`)
		fail(w, http.StatusUnauthorized, "missing bearer token")
		return false
	}
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if !ok || subtle.ConstantTimeCompare(got[:], s.token[:]) != 1 {
		fail(w, http.StatusForbidden, "wrong bearer token")
		return false
	}
	return true
}

// fileError answers an error from the local source.
func fileError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrOutsideRoot):
		fail(w, http.StatusForbidden, "refused: %v", err)
	case errors.Is(err, fs.ErrNotExist):
		fail(w, http.StatusNotFound, "not found: %v", err)
	case errors.Is(err, ErrChanged):
		fail(w, http.StatusConflict, "%v", err)
	case errors.Is(err, fs.ErrPermission):
		fail(w, http.StatusForbidden, "permission denied: %v", err)
	default:
		fail(w, http.StatusInternalServerError, "%v", err)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

func (s *server) list(w http.ResponseWriter, r *http.Request, name string, root *local) {
	var window [2]time.Time
	for i, k := range []string{"since", "until"} {
		v := r.URL.Query().Get(k)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			fail(w, http.StatusBadRequest, "bad %s %q: want RFC 3339 time", k, v)
			return
		}
		window[i] = t
	}
	files, dirs, err := root.listAll(r.Context(), window[0], window[1])
	if err != nil {
		fileError(w, err)
		return
	}
	if files == nil {
		files = []FileInfo{}
	}
	writeJSON(w, listAnswer{Root: name, Files: files, Dirs: dirs})
}

func (s *server) stat(w http.ResponseWriter, r *http.Request, root *local) {
	fi, err := root.Stat(r.Context(), r.URL.Query().Get("path"))
	if err != nil {
		fileError(w, err)
		return
	}
	writeJSON(w, fi)
}

func (s *server) file(w http.ResponseWriter, r *http.Request, root *local) {
	rel := r.URL.Query().Get("path")
	f, st, err := root.open(rel)
	if err != nil {
		fileError(w, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "no-store")
	http.ServeContent(w, r, st.Name(), st.ModTime(), f)
}

func (s *server) hash(w http.ResponseWriter, r *http.Request, root *local) {
	q := r.URL.Query()
	rel := q.Get("path")
	length := int64(-1)
	if v := q.Get("length"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			fail(w, http.StatusBadRequest, "bad length %q: want a byte count", v)
			return
		}
		length = n
	}
	sum, err := root.Hash(r.Context(), rel, length)
	if err != nil {
		fileError(w, err)
		return
	}
	writeJSON(w, hashAnswer{Path: rel, Length: length, XXH3: sum})
}
