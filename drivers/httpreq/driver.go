// Package httpreq is the `kind: http` driver: named HTTP requests to one
// device or service (a projector's or a media server's web API, a lighting
// desk's REST interface, a webhook), carried out as control actions.
//
// Each request is configured by name with a method, a path below the
// driver's base_url, headers, a body and the status codes that count as
// success. Path, headers and body are text/template templates over the
// send's args. See README.md.
package httpreq

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"understudy/drivers"
	"understudy/drivers/command"
	"understudy/units"
)

// Kind registers the driver as `kind: http`.
var Kind = drivers.Kind{
	Name:    "http",
	Summary: "named HTTP requests to a device or service (method, path, headers, body from templates)",
	New:     New,
}

// Settings is the driver's configuration block in site.yaml.
type Settings struct {
	// BaseURL is the http or https URL every request's path is appended to,
	// like http://192.168.10.20/api. User and password in it are sent as
	// basic authentication.
	BaseURL string `yaml:"base_url"`
	// Headers are sent with every request; a request's own headers override
	// them. Values are templates.
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds each request, from connecting to the end of the
	// response's headers. Default 5s.
	Timeout units.Duration `yaml:"timeout"`
	// TLSSkipVerify accepts any certificate from an https device (many AV
	// devices have self-signed ones). The connection is then encrypted but
	// not authenticated.
	TLSSkipVerify bool `yaml:"tls_skip_verify"`
	// Requests are the commands a policy can send, by name.
	Requests map[string]Request `yaml:"requests"`
}

// Request is one named request.
type Request struct {
	// Method is the HTTP method; default POST.
	Method string `yaml:"method"`
	// Path is appended to base_url (a template): "/cue/{{.cue}}/go",
	// "?input={{.n}}". Empty: base_url itself.
	Path string `yaml:"path"`
	// Headers are added to (and override) the driver's headers; values are
	// templates.
	Headers map[string]string `yaml:"headers"`
	// Body is the request body (a template); empty sends none.
	Body string `yaml:"body"`
	// Expect lists the status codes that mean success; default any 2xx.
	Expect []int `yaml:"expect"`
	// Timeout overrides the driver's timeout for this request.
	Timeout units.Duration `yaml:"timeout"`
}

// Defaults and limits.
const (
	DefaultTimeout = 5 * time.Second
	MaxTimeout     = time.Hour

	// MaxBody is how much of a response body the result keeps.
	MaxBody = 4 << 10
	// maxDrain is how much more of a body is read and discarded, so the
	// connection can be reused.
	maxDrain = 64 << 10

	userAgent = "understudy"
)

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("driver closed")

var _ drivers.Controller = (*Client)(nil)

// New decodes and validates the settings; it does no I/O.
func New(cfg drivers.Config) (drivers.Driver, error) {
	if cfg.Decode == nil {
		return nil, errors.New("http: no settings decoder")
	}
	var s Settings
	if err := cfg.Decode(&s); err != nil {
		return nil, err
	}
	return FromSettings(s)
}

// request is a Request validated, with defaults filled in and templates
// parsed.
type request struct {
	name    string
	method  string
	path    *command.Template
	headers map[string]*command.Template // canonical name → value
	body    *command.Template
	expect  []int
	timeout time.Duration
}

// FromSettings validates s, fills in defaults and returns the driver, not yet
// started. It does no I/O. All problems found are reported together.
func FromSettings(s Settings) (*Client, error) {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	base, err := checkBaseURL(s.BaseURL)
	if err != nil {
		errs = append(errs, err)
	}
	s.BaseURL = strings.TrimSpace(s.BaseURL)
	if s.Timeout < 0 || s.Timeout.D() > MaxTimeout {
		add("timeout: %s is not between 0 and %s", s.Timeout, MaxTimeout)
	}
	if s.Timeout == 0 {
		s.Timeout = units.Duration(DefaultTimeout)
	}
	common, herrs := parseHeaders("headers", s.Headers)
	errs = append(errs, herrs...)
	if len(s.Requests) == 0 {
		add("requests: none configured (name each request a policy may send, with its method and path)")
	}
	c := &Client{set: s, base: base, reqs: map[string]*request{}}
	for _, name := range sortedKeys(s.Requests) {
		r := s.Requests[name]
		field := "requests." + name
		if strings.TrimSpace(name) == "" {
			add("requests: a request has an empty name")
			continue
		}
		rq := &request{name: name, method: strings.ToUpper(strings.TrimSpace(r.Method)), expect: r.Expect, timeout: r.Timeout.D()}
		if rq.method == "" {
			rq.method = http.MethodPost
		}
		if !isToken(rq.method) {
			add("%s.method: %q is not an HTTP method", field, r.Method)
		}
		if r.Timeout < 0 || r.Timeout.D() > MaxTimeout {
			add("%s.timeout: %s is not between 0 and %s", field, r.Timeout, MaxTimeout)
		}
		if rq.timeout <= 0 {
			rq.timeout = s.Timeout.D()
		}
		for _, code := range r.Expect {
			if code < 100 || code > 599 {
				add("%s.expect: %d is not an HTTP status code (100 to 599)", field, code)
			}
		}
		if rq.path, err = command.ParseTemplate(field+".path", r.Path); err != nil {
			errs = append(errs, err)
		} else if rq.path.Literal() && base != nil {
			if _, err := joinURL(base, r.Path); err != nil {
				add("%s.path: %v", field, err)
			}
		}
		if rq.body, err = command.ParseTemplate(field+".body", r.Body); err != nil {
			errs = append(errs, err)
		}
		own, herrs := parseHeaders(field+".headers", r.Headers)
		errs = append(errs, herrs...)
		rq.headers = map[string]*command.Template{}
		for k, v := range common {
			rq.headers[k] = v
		}
		for k, v := range own {
			rq.headers[k] = v
		}
		c.reqs[name] = rq
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // devices on the installation's network: never through a proxy
	// One connection per request: a device that drops idle connections
	// cannot make a request sent on a stale one look "sent, no response".
	tr.DisableKeepAlives = true
	if s.TLSSkipVerify {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	c.transport = tr
	c.client = &http.Client{
		Transport: tr,
		// A redirect is the device's answer, not followed: a control request
		// redirected to a login page has not been carried out.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c.status.Address = base.Redacted()
	return c, nil
}

func checkBaseURL(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, errors.New("base_url is required (like http://192.168.10.20 or https://server.local/api)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("base_url %q is not a URL: %v", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("base_url %q: want an http:// or https:// URL", u.Redacted())
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("base_url %q has no host", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("base_url %q: put a query in the request's path, not in base_url", u.Redacted())
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("base_url %q: port must be a number from 1 to 65535", u.Redacted())
		}
	}
	return u, nil
}

func parseHeaders(field string, h map[string]string) (map[string]*command.Template, []error) {
	var errs []error
	out := map[string]*command.Template{}
	for _, name := range sortedKeys(h) {
		if !isToken(name) {
			errs = append(errs, fmt.Errorf("%s: %q is not a valid header name", field, name))
			continue
		}
		t, err := command.ParseTemplate(field+"."+name, h[name])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[http.CanonicalHeaderKey(name)] = t
	}
	return out, errs
}

// joinURL appends path (expanded) to base: "/cue/go" and "cue/go" both
// become base's path + "/cue/go"; a path starting with "?" adds a query.
func joinURL(base *url.URL, path string) (*url.URL, error) {
	s := strings.TrimRight(base.String(), "/")
	switch {
	case path == "":
		s = base.String()
	case strings.HasPrefix(path, "?"):
		s = base.String() + path
	default:
		s += "/" + strings.TrimLeft(path, "/")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("path %q does not make a valid URL: %v", command.Shorten(path), errors.Unwrap(err))
	}
	if u.Scheme != base.Scheme || u.Host != base.Host {
		return nil, fmt.Errorf("path %q leaves base_url", command.Shorten(path))
	}
	return u, nil
}

// Client is the driver: it sends the configured requests. It implements
// drivers.Controller; its methods are safe for use from any goroutine.
type Client struct {
	set       Settings
	base      *url.URL
	reqs      map[string]*request
	transport *http.Transport
	client    *http.Client

	mu      sync.Mutex
	status  drivers.Status
	emit    drivers.Emitter
	started bool
	closed  bool
}

// Settings returns the settings in use, defaults filled in.
func (c *Client) Settings() Settings { return c.set }

// Start makes the driver ready and returns at once. HTTP has no standing
// connection: the driver counts as connected until a request gets no
// response, and again once one does.
func (c *Client) Start(_ context.Context, emit drivers.Emitter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.closed {
		return
	}
	if emit == nil {
		emit = func(drivers.Event) {}
	}
	c.started, c.emit = true, emit
	c.status.Connected, c.status.Since = true, time.Now()
}

// Close makes Do fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	if c.status.Connected {
		c.status.Connected, c.status.Since = false, time.Now()
	}
	c.mu.Unlock()
	c.transport.CloseIdleConnections()
	return nil
}

// Status reports whether the last request got a response.
func (c *Client) Status() drivers.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// reachable records whether a request got a response and reports a change
// as driver_connected or driver_disconnected.
func (c *Client) reachable(ok bool, why string) {
	c.mu.Lock()
	if !c.started || c.closed {
		c.mu.Unlock()
		return
	}
	changed := c.status.Connected != ok
	if changed {
		c.status.Connected, c.status.Since = ok, time.Now()
	}
	if ok {
		c.status.LastError = ""
	} else {
		c.status.LastError = why
	}
	emit, addr := c.emit, c.status.Address
	c.mu.Unlock()
	switch {
	case changed && ok:
		emit(drivers.Event{Name: drivers.EventConnected, Fields: map[string]any{"address": addr}})
	case changed:
		emit(drivers.Event{Name: drivers.EventDisconnected, Fields: map[string]any{"address": addr, "error": why}})
	}
}

// prepared is a request with its templates expanded.
type prepared struct {
	r       *request
	url     *url.URL
	headers map[string]string
	body    string
}

func (p *prepared) what() string { return "http " + p.r.method + " " + p.url.Redacted() }

// prepare finds the command and expands its templates with the args.
func (c *Client) prepare(args map[string]any) (*prepared, error) {
	name, data, err := command.Parse(args)
	if err != nil {
		return nil, err
	}
	r, ok := c.reqs[name]
	if !ok {
		return nil, command.Unknown("request", name, slices.Collect(maps.Keys(c.reqs)))
	}
	p := &prepared{r: r, headers: map[string]string{}}
	path, err := r.path.Expand(data)
	if err != nil {
		return nil, err
	}
	if p.url, err = joinURL(c.base, path); err != nil {
		return nil, fmt.Errorf("requests.%s.path: %w", name, err)
	}
	if p.body, err = r.body.Expand(data); err != nil {
		return nil, err
	}
	for _, h := range sortedKeys(r.headers) {
		v, err := r.headers[h].Expand(data)
		if err != nil {
			return nil, err
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("%s: the value has a line break or NUL byte", r.headers[h].Field())
		}
		p.headers[h] = v
	}
	return p, nil
}

// Check validates args without sending anything: the request is
// configured and its templates expand with the args to a valid URL.
func (c *Client) Check(args map[string]any) error {
	_, err := c.prepare(args)
	return err
}

// Do sends the request and returns {status = n, body = first 4 KiB}.
//
// A status the request does not expect is a refusal (drivers.ErrRefused)
// with the status and the body's first line; the result comes with it. No response because the device
// could not be reached (refused, unreachable, no connection within the
// timeout) wraps drivers.ErrNotConnected, so the runtime tries again; so
// does no response to a request that is safe to repeat (GET, HEAD, PUT,
// DELETE, OPTIONS). A request that may have been carried out (POST, PATCH,
// sent but no response) fails without being repeated.
func (c *Client) Do(ctx context.Context, args map[string]any) (any, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	p, err := c.prepare(args)
	if err != nil {
		return nil, err
	}
	if closed {
		return nil, fmt.Errorf("%s: %w", p.what(), ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: not sent: %w", p.what(), err)
	}
	rctx, cancel := context.WithTimeout(ctx, p.r.timeout)
	defer cancel()
	var sent atomic.Bool
	rctx = httptrace.WithClientTrace(rctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				sent.Store(true)
			}
		},
	})
	var body io.Reader
	if p.body != "" {
		body = strings.NewReader(p.body)
	}
	req, err := http.NewRequestWithContext(rctx, p.r.method, p.url.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.what(), err)
	}
	req.Header.Set("User-Agent", userAgent)
	for k, v := range p.headers {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}

	resp, err := c.client.Do(req)
	if err != nil {
		return nil, c.failed(ctx, rctx, p, sent.Load(), err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if len(got) > MaxBody {
		got = cutRune(got[:MaxBody])
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	}
	c.reachable(true, "")
	// A body cut short after the status line still leaves the status: the
	// device answered, and the status is what counts.
	result := map[string]any{"status": resp.StatusCode, "body": string(got)}
	if !expected(resp.StatusCode, p.r.expect) {
		msg := fmt.Sprintf("%s: %s (expected %s)", p.what(), resp.Status, expectText(p.r.expect))
		if line := firstLine(string(got)); line != "" {
			msg += ": " + line
		}
		return result, drivers.Refusal(msg)
	}
	return result, nil
}

// failed explains a request that got no response.
func (c *Client) failed(ctx, rctx context.Context, p *prepared, sent bool, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL is in what already
	}
	timedOut := rctx.Err() != nil && ctx.Err() == nil
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		timedOut = true
	}
	if ctx.Err() != nil {
		// The caller gave up (the action's deadline): say so, whatever
		// happened on the wire.
		state := "not sent"
		if sent {
			state = "sent, no response"
		}
		return fmt.Errorf("%s: %s: %w", p.what(), state, ctx.Err())
	}
	var why string
	switch {
	case !sent && timedOut:
		why = fmt.Sprintf("no connection within %s", p.r.timeout)
	case !sent:
		why = "not reachable: " + err.Error()
	case timedOut:
		why = fmt.Sprintf("no response within %s", p.r.timeout)
	default:
		why = "no response: " + err.Error()
	}
	c.reachable(false, why)
	if !sent || idempotent(p.r.method) {
		return fmt.Errorf("%s: %s: %w", p.what(), why, drivers.ErrNotConnected)
	}
	return fmt.Errorf("%s: %s (the request was sent and may have been carried out, so it is not repeated)", p.what(), why)
}

// idempotent reports whether a request with method may be repeated safely
// (RFC 9110 section 9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

func expected(code int, expect []int) bool {
	if len(expect) == 0 {
		return code >= 200 && code <= 299
	}
	return slices.Contains(expect, code)
}

func expectText(expect []int) string {
	if len(expect) == 0 {
		return "2xx"
	}
	parts := make([]string, len(expect))
	for i, c := range expect {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, " or ")
}

// firstLine returns the first non-blank line of s, trimmed and shortened.
func firstLine(s string) string {
	for line := range strings.SplitSeq(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			if r := []rune(line); len(r) > 200 {
				line = string(r[:200]) + "…"
			}
			return line
		}
	}
	return ""
}

// isToken reports whether s is an RFC 9110 token (methods, header names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// cutRune drops a UTF-8 sequence cut short at the end of b.
func cutRune(b []byte) []byte {
	for i := 1; i <= utf8.UTFMax && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			break
		}
	}
	return b
}
