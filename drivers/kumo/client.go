package kumo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"understudy/drivers/kumo/wire"
)

// Errors a Client's requests wrap.
var (
	// ErrTimeout: no complete answer within the client's timeout.
	ErrTimeout = errors.New("no reply")
	// ErrNoSession: a login answered without setting a cookie.
	ErrNoSession = errors.New("the device set no session cookie")
)

// Client makes requests to one KUMO over HTTP. Each request opens its own
// TCP connection (no keep-alive, as AJA's own examples do), so a request
// that fails leaves nothing stale behind and is never retried by the HTTP
// stack. Its methods are safe for concurrent use.
//
// Errors tell what happened: a *StatusError when the device answered with
// an HTTP error, ErrMalformed when it answered something unreadable, the
// caller's context error when that ended, and otherwise the device did not
// answer (refused, reset, ErrTimeout).
type Client struct {
	base    string // http://host:port
	timeout time.Duration
	hc      *http.Client

	mu     sync.Mutex
	cookie string // sent with every request once logged in
}

// NewClient returns a client for the KUMO at address (host:port) whose
// every request must be answered within timeout.
func NewClient(address string, timeout time.Duration) *Client {
	tr := &http.Transport{
		Proxy:                  nil,                         // a device on the LAN: never through a proxy from the environment
		DialContext:            (&net.Dialer{}).DialContext, // bounded by the request's context,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 16 << 10,
	}
	return &Client{
		base:    "http://" + address,
		timeout: timeout,
		hc: &http.Client{
			Transport: tr,
			// A redirect (to a login page, say) is an answer to report, not
			// to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Close releases the client's idle resources.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Logout forgets the session cookie.
func (c *Client) Logout() {
	c.mu.Lock()
	c.cookie = ""
	c.mu.Unlock()
}

// Login posts password to the login form and keeps the session cookie the
// device sets, to send with every later request. A reply without a cookie
// is ErrNoSession: a wrong password, or a device whose authentication is
// off.
func (c *Client) Login(ctx context.Context, password string) error {
	body := url.Values{wire.PasswordField: {password}}.Encode()
	resp, b, err := c.do(ctx, "log in", http.MethodPost, wire.LoginPath, strings.NewReader(body))
	if err != nil {
		return err
	}
	var parts []string
	for _, ck := range resp.Cookies() {
		if ck.Value != "" {
			parts = append(parts, ck.Name+"="+ck.Value)
		}
	}
	if len(parts) == 0 {
		if t := wire.PlainText(b, 200); t != "" {
			return fmt.Errorf("log in: %w (wrong password?): %s", ErrNoSession, t)
		}
		return fmt.Errorf("log in: %w (wrong password?)", ErrNoSession)
	}
	c.mu.Lock()
	c.cookie = strings.Join(parts, "; ")
	c.mu.Unlock()
	return nil
}

// Get reads a parameter.
func (c *Client) Get(ctx context.Context, paramID string) (wire.Reply, error) {
	return c.config(ctx, wire.Request{Action: wire.ActionGet, ParamID: paramID})
}

// Set sets a parameter and returns the device's reply. A 200 OK whose body
// cannot be read returns an error wrapping ErrMalformed.
func (c *Client) Set(ctx context.Context, paramID, value string) (wire.Reply, error) {
	return c.config(ctx, wire.Request{Action: wire.ActionSet, ParamID: paramID, Value: value})
}

func (c *Client) config(ctx context.Context, r wire.Request) (wire.Reply, error) {
	op := r.Action + " " + r.ParamID
	_, b, err := c.do(ctx, op, http.MethodGet, wire.ConfigPath+"?"+r.Query(), nil)
	if err != nil {
		return wire.Reply{}, err
	}
	reply, err := wire.ParseReply(b)
	if err != nil {
		return wire.Reply{}, fmt.Errorf("%s: %w", op, err)
	}
	return reply, nil
}

// RoutingList reads every destination's source in one request (see
// ParseRoutingList).
func (c *Client) RoutingList(ctx context.Context) ([]int, error) {
	op := "get " + wire.ParamDestinationAll
	q := url.Values{"action": {wire.ActionGet}, "configid": {"0"}, "paramid": {wire.ParamDestinationAll}, "alt": {"text-plain"}}
	_, b, err := c.do(ctx, op, http.MethodGet, wire.OptionsPath+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	list, err := wire.ParseRoutingList(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return list, nil
}

// do makes one request and returns the response (body closed) and its body.
func (c *Client) do(ctx context.Context, op, method, target string, body io.Reader) (*http.Response, []byte, error) {
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, c.base+target, body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", op, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "application/json, text/plain, */*")
	c.mu.Lock()
	if c.cookie != "" {
		req.Header.Set("Cookie", c.cookie)
	}
	c.mu.Unlock()
	fail := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", op, ctx.Err())
		}
		var ne net.Error
		if rctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
			return fmt.Errorf("%s: %w within %s", op, ErrTimeout, c.timeout)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in op already, in short
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%s: the device closed the connection without a complete answer (%w)", op, err)
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, fail(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxBody+1))
	if err != nil {
		return nil, nil, fail(err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, nil, fmt.Errorf("%s: %w", op, &wire.StatusError{Code: resp.StatusCode, Status: resp.Status, Text: wire.PlainText(b, 200)})
	}
	if len(b) > wire.MaxBody {
		return nil, nil, fmt.Errorf("%s: reply larger than %d bytes: %w", op, wire.MaxBody, wire.ErrMalformed)
	}
	return resp, b, nil
}
