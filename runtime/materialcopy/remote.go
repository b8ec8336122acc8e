package materialcopy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client is the HTTP client to give Remote: no overall timeout (files are
// large; the copy's context ends it), but bounded dialing and waiting for
// answers (a hash of a large file takes a while), and a connection kept for
// each file copied at once.
func Client() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		ResponseHeaderTimeout: 5 * time.Minute,
		IdleConnTimeout:       time.Minute,
		MaxIdleConnsPerHost:   DefaultParallel,
	}}
}

// Remote is a Source reading one root served by another instance's
// NewServer.
//
// baseURL is where the server is mounted, with the root chosen by a "root"
// query parameter, for example "http://10.0.0.5:7700/material?root=video".
// The root may be left out when the server serves a single root. token is
// sent as a bearer token. client may be nil for http.DefaultClient; it should
// have no overall timeout (files can be large): cancel the context instead.
func Remote(baseURL, token string, client *http.Client) Source {
	if client == nil {
		client = http.DefaultClient
	}
	r := &remote{token: token, client: client}
	u, err := url.Parse(baseURL)
	if err != nil {
		r.err = fmt.Errorf("materialcopy: remote %q: %w", baseURL, err)
		return r
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		r.err = fmt.Errorf("materialcopy: remote %q: want an http or https URL", baseURL)
		return r
	}
	r.root = u.Query().Get("root")
	u.RawQuery, u.Fragment = "", ""
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	r.base = u
	return r
}

type remote struct {
	base   *url.URL
	root   string
	token  string
	client *http.Client
	err    error
}

func (r *remote) String() string {
	if r.base == nil {
		return "remote (invalid)"
	}
	return r.base.String() + "?root=" + r.root
}

// HTTPError is a refusal or failure answered by a material server.
type HTTPError struct {
	StatusCode int
	Message    string // the server's explanation
	URL        string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("material server %s: %d %s: %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// Is lets errors.Is match 404 with fs.ErrNotExist, 409 and 416 with
// ErrChanged and 403 refusing a path with ErrOutsideRoot.
func (e *HTTPError) Is(target error) bool {
	switch target {
	case fs.ErrNotExist:
		return e.StatusCode == http.StatusNotFound
	case ErrChanged:
		return e.StatusCode == http.StatusConflict || e.StatusCode == http.StatusRequestedRangeNotSatisfiable
	case ErrOutsideRoot:
		return e.StatusCode == http.StatusForbidden && strings.Contains(e.Message, ErrOutsideRoot.Error())
	}
	return false
}

func (r *remote) get(ctx context.Context, method, endpoint string, q url.Values, hdr http.Header) (*http.Response, error) {
	if r.err != nil {
		return nil, r.err
	}
	u := *r.base
	u.Path += "/" + endpoint
	if r.root != "" {
		q.Set("root", r.root)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, &HTTPError{StatusCode: resp.StatusCode, Message: strings.TrimSpace(string(msg)), URL: r.String()}
	}
	return resp, nil
}

func (r *remote) getJSON(ctx context.Context, endpoint string, q url.Values, v any) error {
	resp, err := r.get(ctx, http.MethodGet, endpoint, q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("material server %s: bad %s answer: %w", r, endpoint, err)
	}
	return nil
}

func (r *remote) List(ctx context.Context, since, until time.Time) ([]FileInfo, error) {
	files, _, err := r.listAll(ctx, since, until)
	return files, err
}

func (r *remote) listAll(ctx context.Context, since, until time.Time) ([]FileInfo, []DirInfo, error) {
	q := url.Values{}
	if !since.IsZero() {
		q.Set("since", since.Format(time.RFC3339Nano))
	}
	if !until.IsZero() {
		q.Set("until", until.Format(time.RFC3339Nano))
	}
	var l listAnswer
	if err := r.getJSON(ctx, "list", q, &l); err != nil {
		return nil, nil, err
	}
	return l.Files, l.Dirs, nil
}

func (r *remote) Stat(ctx context.Context, path string) (FileInfo, error) {
	var fi FileInfo
	err := r.getJSON(ctx, "stat", url.Values{"path": {path}}, &fi)
	return fi, err
}

func (r *remote) Open(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	hdr := http.Header{}
	if offset > 0 {
		hdr.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := r.get(ctx, http.MethodGet, "file", url.Values{"path": {path}}, hdr)
	if err != nil {
		return nil, err
	}
	if offset > 0 {
		// The server must answer the range, from the offset asked for.
		want := "bytes " + strconv.FormatInt(offset, 10) + "-"
		if resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Content-Range"), want) {
			resp.Body.Close()
			return nil, fmt.Errorf("material server %s: %s: asked for bytes from %d, got %s %q",
				r, path, offset, resp.Status, resp.Header.Get("Content-Range"))
		}
	}
	return resp.Body, nil
}

func (r *remote) Hash(ctx context.Context, path string, length int64) (string, error) {
	q := url.Values{"path": {path}}
	if length >= 0 {
		q.Set("length", strconv.FormatInt(length, 10))
	}
	var h hashAnswer
	if err := r.getJSON(ctx, "hash", q, &h); err != nil {
		return "", err
	}
	if len(h.XXH3) != 16 {
		return "", fmt.Errorf("material server %s: bad hash answer %q", r, h.XXH3)
	}
	return h.XXH3, nil
}

type listAnswer struct {
	Root  string     `json:"root"`
	Files []FileInfo `json:"files"`
	Dirs  []DirInfo  `json:"dirs,omitempty"` // the folders under the root, for their permissions
}

type hashAnswer struct {
	Path   string `json:"path"`
	Length int64  `json:"length"` // -1: the whole file
	XXH3   string `json:"xxh3"`
}
