// Package kumosim is an AJA KUMO router simulator that serves the KUMO's
// HTTP interface (drivers/kumo/wire) on a real socket, for tests and for
// `understudy demo`.
//
// It answers GET /config?action=get|set&paramid=… with the KUMO's JSON reply
// ({"paramid","name","value","value_name"}), the whole routing through
// /options?…&paramid=eParamID_XPT_DestinationAll_Status&alt=text-plain, and,
// when a password is set, requires the session cookie from a form POST to
// /authenticator/login (a request without it gets 404 Not Found, as AJA
// documents). A set the device refuses (a locked destination, a source or
// destination it does not have, a read-only parameter) is answered 403
// Forbidden. Changes "from the panel" (SetRoute, LockOutput) are seen by
// clients on their next read, as on the device, which pushes nothing over
// plain requests.
//
// The simulator records every request and every applied route, and can
// inject faults: HTTP 500s, 403s, a JSON error member, sets answered OK but
// not applied, a connection dropped without an answer, slow answers, and
// the whole device going away and coming back.
//
// Ports are numbered from 1, on the wire and in the Go API.
package kumosim

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"understudy/drivers/kumo/wire"
)

// Limits of the simulator.
const (
	// MaxRecords is how many requests and how many routes are kept; past
	// it, the oldest are forgotten.
	MaxRecords = 1 << 16
	// MaxRecordedBody is how much of each reply body a Request record keeps.
	MaxRecordedBody = 512
)

// ErrClosed is returned by Serve, Listen and ComeBack after Close.
var ErrClosed = errors.New("kumosim: closed")

// Options configure a simulator. Zero values take the defaults.
type Options struct {
	Inputs, Outputs int // default 16 each; at most wire.MaxPorts
	// ProductID is eParamID_KumoProductID's value; by default AJA's number
	// for the size (1 16x16, 2 16x04, 3 32x32, 5 64x64), else 0.
	ProductID int
	// Product is its value_name; default "KUMO {Inputs}x{Outputs, 2 digits}
	// Matrix", as "KUMO 16x04 Matrix".
	Product string
	// InputLabels and OutputLabels give the first button names, "line 1"
	// or "line 1\nline 2"; the others are "Source N" and "Dest N".
	InputLabels, OutputLabels []string
	// Password, when set, turns user authentication on.
	Password string
	// NoRoutingList makes eParamID_XPT_DestinationAll_Status answer {}, as
	// firmware without it does.
	NoRoutingList bool
	// NoPortCounts makes eParamID_NumberOfSources and
	// eParamID_NumberOfDestinations unknown (404), leaving the product
	// name to tell the size.
	NoPortCounts bool
}

// Request is one HTTP request the simulator received.
type Request struct {
	Time    time.Time
	Remote  string // the client's address
	Method  string
	Path    string
	Action  string // from the query: get, set, …; "" for a login
	ParamID string
	Value   string // the value of a set
	Status  int    // the HTTP status answered; 0 when dropped without an answer
	Body    string // the reply body, cut to MaxRecordedBody bytes
}

// RouteRecord is one route the simulator applied.
type RouteRecord struct {
	Time          time.Time
	Output, Input int    // from 1
	Remote        string // the client's address, or "panel" for SetRoute
}

// Sim is a simulated KUMO. Its methods are safe for use from any goroutine.
type Sim struct {
	opts Options

	mu        sync.Mutex
	routing   []int // source (from 1) on each destination
	locked    []bool
	inLines   [][2]string
	outLines  [][2]string
	sessions  map[string]bool
	requests  []Request
	routes    []RouteRecord
	subs      map[chan RouteRecord]struct{}
	reqSubs   map[chan Request]struct{}
	failNext  int
	refuse    int
	ignore    int
	errorNext int
	errorText string
	dropNext  int
	delay     time.Duration
	addr      string // where to listen again after GoAway
	srv       *http.Server
	away      chan struct{} // closed by GoAway; replaced by ComeBack
	isAway    bool
	conns     map[net.Conn]struct{}
	closed    bool
	done      chan struct{} // closed by Close
	wg        sync.WaitGroup
}

// New returns a simulator with the given options; it serves nothing until
// Listen or Serve. Port counts outside 1..wire.MaxPorts are clamped.
func New(o Options) *Sim {
	o.Inputs = clampPorts(o.Inputs)
	o.Outputs = clampPorts(o.Outputs)
	if o.ProductID == 0 {
		o.ProductID = map[[2]int]int{{16, 16}: 1, {16, 4}: 2, {32, 32}: 3, {64, 64}: 5}[[2]int{o.Inputs, o.Outputs}]
	}
	if o.Product == "" {
		o.Product = fmt.Sprintf("KUMO %dx%02d Matrix", o.Inputs, o.Outputs)
	}
	s := &Sim{
		opts:     o,
		routing:  make([]int, o.Outputs),
		locked:   make([]bool, o.Outputs),
		inLines:  lines(o.InputLabels, o.Inputs, "Source"),
		outLines: lines(o.OutputLabels, o.Outputs, "Dest"),
		sessions: map[string]bool{},
		subs:     map[chan RouteRecord]struct{}{},
		reqSubs:  map[chan Request]struct{}{},
		away:     make(chan struct{}),
		conns:    map[net.Conn]struct{}{},
		done:     make(chan struct{}),
	}
	s.powerOnLocked()
	return s
}

// powerOnLocked sets the routing and locks a router has after power-on.
func (s *Sim) powerOnLocked() {
	for i := range s.routing {
		s.routing[i] = i%s.opts.Inputs + 1
		s.locked[i] = false
	}
}

func clampPorts(n int) int {
	switch {
	case n <= 0:
		return 16
	case n > wire.MaxPorts:
		return wire.MaxPorts
	}
	return n
}

func lines(given []string, n int, prefix string) [][2]string {
	out := make([][2]string, n)
	for i := range out {
		if i < len(given) {
			l1, l2, _ := strings.Cut(given[i], "\n")
			out[i] = [2]string{cleanLine(l1), cleanLine(l2)}
		} else {
			out[i] = [2]string{prefix + " " + strconv.Itoa(i+1), ""}
		}
	}
	return out
}

// cleanLine replaces control characters with spaces and cuts a name line to
// wire.MaxLabelLine characters, as the KUMO keeps them.
func cleanLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	for utf8.RuneCountInString(s) > wire.MaxLabelLine {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// Listen listens on addr (e.g. "127.0.0.1:0") and serves in the background
// until Close. It returns the address listened on.
func (s *Sim) Listen(addr string) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("kumosim: %w", err)
	}
	if err := s.start(l); err != nil {
		return nil, err
	}
	return l.Addr(), nil
}

// Serve serves from l until Close, then returns nil. It closes l.
func (s *Sim) Serve(l net.Listener) error {
	if err := s.start(l); err != nil {
		return err
	}
	<-s.done
	return nil
}

// Addr returns the address served ("" before Listen or Serve).
func (s *Sim) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *Sim) start(l net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = l.Close()
		return ErrClosed
	}
	if s.srv != nil {
		_ = l.Close()
		return errors.New("kumosim: already serving")
	}
	s.addr = l.Addr().String()
	srv := &http.Server{
		Handler:           s,
		ConnState:         s.connState,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	s.srv = srv
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = srv.Serve(l)
	}()
	return nil
}

func (s *Sim) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case http.StateNew:
		s.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	}
}

// Close stops serving, closes every connection, ends every subscription
// and waits for the simulator's goroutines.
func (s *Sim) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.conns) // all closed; their last state hooks may come later
	for ch := range s.subs {
		delete(s.subs, ch)
		close(ch)
	}
	for ch := range s.reqSubs {
		delete(s.reqSubs, ch)
		close(ch)
	}
	return nil
}

// GoAway makes the device unreachable, as when it is switched off or its
// cable pulled: it stops listening and closes every connection, leaving
// requests in progress unanswered. Its routing and names stay.
func (s *Sim) GoAway() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	if !s.isAway {
		s.isAway = true
		close(s.away)
	}
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	s.mu.Lock()
	clear(s.conns)
	s.mu.Unlock()
}

// ComeBack listens again on the address served before GoAway, as a device
// that restarted: login sessions are forgotten.
func (s *Sim) ComeBack() error {
	s.mu.Lock()
	addr := s.addr
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if addr == "" {
		return errors.New("kumosim: ComeBack before Listen")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("kumosim: listening again on %s: %w", addr, err)
	}
	s.mu.Lock()
	s.sessions = map[string]bool{}
	if s.isAway {
		s.isAway = false
		s.away = make(chan struct{})
	}
	s.mu.Unlock()
	return s.start(l)
}

// Restart restarts the router as a power cycle would, as seen by a client
// that does not happen to ask during the few seconds it takes: every
// connection drops (requests in progress go unanswered), the routing goes
// back to the power-on default (destination n shows source n, counting
// round the sources when there are more destinations), locks, login
// sessions and injected faults are gone, and new connections are served
// at once on the same listener. A KUMO pushes nothing over plain requests:
// clients find the new routing on their next read.
func (s *Sim) Restart() {
	s.mu.Lock()
	s.powerOnLocked()
	s.sessions = map[string]bool{}
	s.failNext, s.refuse, s.ignore, s.errorNext, s.errorText, s.dropNext, s.delay = 0, 0, 0, 0, "", 0, 0
	var gone chan struct{}
	if !s.isAway {
		gone, s.away = s.away, make(chan struct{})
	}
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	if gone != nil {
		close(gone) // answers being delayed are never sent
	}
}

// response is what the simulator answers one request with.
type response struct {
	status int
	ctype  string
	body   []byte
	cookie string // a session to set
	drop   bool   // close the connection without an answer
}

func htmlError(status int, detail string) response {
	t := strconv.Itoa(status) + " " + http.StatusText(status)
	body := "<html><head><title>" + t + "</title></head><body>\n" + detail + "\n</body></html>\n"
	return response{status: status, ctype: "text/html", body: []byte(body)}
}

func forbidden() response {
	return response{status: 403, ctype: "text/plain", body: []byte("Forbidden")}
}

// ServeHTTP answers one request as a KUMO does.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	formErr := r.ParseForm()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	defer s.wg.Done()
	away, delay := s.away, s.delay
	rec := Request{Time: time.Now(), Remote: r.RemoteAddr, Method: r.Method, Path: r.URL.Path}
	var resp response
	if formErr != nil {
		resp = htmlError(400, "Bad request.")
	} else {
		resp = s.handleLocked(r, &rec)
	}
	if !resp.drop {
		rec.Status = resp.status
		rec.Body = string(resp.body)
		if len(rec.Body) > MaxRecordedBody {
			rec.Body = rec.Body[:MaxRecordedBody]
		}
	}
	s.recordLocked(rec)
	s.mu.Unlock()

	if resp.drop {
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				_ = c.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // closes the connection without an answer
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
		case <-away:
		case <-s.done:
		}
		t.Stop()
		select {
		case <-away:
			return // went away meanwhile: no answer
		default:
		}
	}
	if resp.cookie != "" {
		http.SetCookie(w, &http.Cookie{Name: wire.SessionCookie, Value: resp.cookie, Path: "/"})
	}
	w.Header().Set("Content-Type", resp.ctype)
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
}

// handleLocked works out the answer to r, acting on it, and fills in what
// rec records of it.
func (s *Sim) handleLocked(r *http.Request, rec *Request) response {
	if s.dropNext > 0 {
		s.dropNext--
		rec.Action, rec.ParamID = r.Form.Get("action"), r.Form.Get("paramid")
		if rec.Action == wire.ActionSet {
			rec.Value = r.Form.Get("value")
		}
		return response{drop: true}
	}
	if r.URL.Path == wire.LoginPath {
		return s.loginLocked(r)
	}
	if r.URL.Path != wire.ConfigPath && r.URL.Path != wire.OptionsPath {
		return htmlError(404, "The document requested was not found on this server.")
	}
	q := r.URL.Query()
	rec.Action, rec.ParamID = q.Get("action"), q.Get("paramid")
	if rec.Action == wire.ActionSet {
		rec.Value = q.Get("value")
	}
	if s.opts.Password != "" && !s.authorizedLocked(r) {
		return htmlError(404, "The document requested was not found on this server.")
	}
	if s.failNext > 0 {
		s.failNext--
		return htmlError(500, "The server encountered an internal error.")
	}
	if r.Method != http.MethodGet {
		return htmlError(405, "Method not allowed.")
	}
	switch rec.Action {
	case "connect", "wait_for_config_events":
		return htmlError(501, "kumosim does not simulate action="+rec.Action+".")
	}
	req, err := wire.ParseRequest(q)
	if err != nil {
		return htmlError(400, "Bad request.")
	}
	p, _ := wire.ParseParam(req.ParamID) // ParseRequest checked it
	if req.Action == wire.ActionGet {
		if p.Kind == wire.ParamOther && p.Name == wire.ParamDestinationAll && q.Get("alt") == "text-plain" {
			if s.opts.NoRoutingList {
				return response{status: 200, ctype: "text/plain", body: []byte("{}")}
			}
			return response{status: 200, ctype: "text/plain", body: wire.FormatRoutingList(s.routing)}
		}
		v, ok := s.getLocked(p)
		if !ok {
			return htmlError(404, "The document requested was not found on this server.")
		}
		return s.reply(p, v, "")
	}
	return s.setLocked(p, req.Value, rec.Remote)
}

func (s *Sim) loginLocked(r *http.Request) response {
	if r.Method != http.MethodPost {
		return htmlError(405, "Method not allowed.")
	}
	if s.opts.Password != "" && r.PostForm.Get(wire.PasswordField) != s.opts.Password {
		return response{status: 200, ctype: "text/html", body: []byte("Login failed.")}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	s.sessions[id] = true
	return response{status: 200, ctype: "text/html", body: []byte("Login successful."), cookie: id}
}

func (s *Sim) authorizedLocked(r *http.Request) bool {
	c, err := r.Cookie(wire.SessionCookie)
	return err == nil && s.sessions[c.Value]
}

// getLocked returns a parameter's value, or false for one the device does
// not have.
func (s *Sim) getLocked(p wire.Param) (string, bool) {
	switch p.Kind {
	case wire.ParamDestinationStatus:
		if p.Port <= s.opts.Outputs {
			return strconv.Itoa(s.routing[p.Port-1]), true
		}
	case wire.ParamDestinationLocked:
		if p.Port <= s.opts.Outputs {
			return boolText(s.locked[p.Port-1]), true
		}
	case wire.ParamDestinationLine:
		if p.Port <= s.opts.Outputs {
			return s.outLines[p.Port-1][p.Line-1], true
		}
	case wire.ParamSourceLine:
		if p.Port <= s.opts.Inputs {
			return s.inLines[p.Port-1][p.Line-1], true
		}
	default:
		switch p.Name {
		case wire.ParamNumberOfSources:
			return strconv.Itoa(s.opts.Inputs), !s.opts.NoPortCounts
		case wire.ParamNumberOfDestinations:
			return strconv.Itoa(s.opts.Outputs), !s.opts.NoPortCounts
		case wire.ParamProductID:
			return strconv.Itoa(s.opts.ProductID), true
		case wire.ParamDestinationAll:
			if s.opts.NoRoutingList {
				return "{}", true
			}
			return string(wire.FormatRoutingList(s.routing)), true
		}
	}
	return "", false
}

func boolText(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// reply is the JSON answer for parameter p holding v.
func (s *Sim) reply(p wire.Param, v, errText string) response {
	r := wire.Reply{ParamID: strconv.Itoa(numberOf(p)), Name: p.String(), Value: v, HasValue: true, Error: errText}
	switch {
	case p.Kind == wire.ParamOther && p.Name == wire.ParamProductID:
		r.ValueName = s.opts.Product
	case p.Kind == wire.ParamDestinationLine || p.Kind == wire.ParamSourceLine:
		// text: no value name
	case p.Kind == wire.ParamDestinationLocked:
		r.ValueName = map[string]string{"1": "Locked", "0": "Unlocked"}[v]
	default:
		r.ValueName = v
	}
	return response{status: 200, ctype: "application/json", body: r.Marshal()}
}

// numberOf is the simulator's own number for a parameter, as the KUMO
// gives each one.
func numberOf(p wire.Param) int {
	switch p.Kind {
	case wire.ParamDestinationStatus:
		return 1000 + p.Port
	case wire.ParamDestinationLocked:
		return 2000 + p.Port
	case wire.ParamDestinationLine:
		return 3000 + 2*p.Port + p.Line
	case wire.ParamSourceLine:
		return 4000 + 2*p.Port + p.Line
	}
	return map[string]int{wire.ParamProductID: 1, wire.ParamNumberOfSources: 2,
		wire.ParamNumberOfDestinations: 3, wire.ParamDestinationAll: 4}[p.Name]
}

// setLocked carries out a set from remote, or refuses it.
func (s *Sim) setLocked(p wire.Param, value, remote string) response {
	if _, ok := s.getLocked(p); !ok {
		if p.Kind != wire.ParamOther {
			return forbidden() // a port this model does not have: an invalid switch
		}
		return htmlError(404, "The document requested was not found on this server.")
	}
	if s.refuse > 0 {
		s.refuse--
		return forbidden()
	}
	if s.errorNext > 0 {
		s.errorNext--
		v, _ := s.getLocked(p)
		return s.reply(p, v, s.errorText)
	}
	switch p.Kind {
	case wire.ParamDestinationStatus:
		in, err := strconv.Atoi(value)
		if err != nil || in < 1 || in > s.opts.Inputs || s.locked[p.Port-1] {
			return forbidden()
		}
		if s.ignore > 0 {
			s.ignore--
			return s.reply(p, value, "") // answered as if applied
		}
		s.routing[p.Port-1] = in
		s.routeAppliedLocked(RouteRecord{Time: time.Now(), Output: p.Port, Input: in, Remote: remote})
	case wire.ParamDestinationLocked:
		if value != "0" && value != "1" {
			return forbidden()
		}
		s.locked[p.Port-1] = value == "1"
	case wire.ParamDestinationLine:
		s.outLines[p.Port-1][p.Line-1] = cleanLine(value)
	case wire.ParamSourceLine:
		s.inLines[p.Port-1][p.Line-1] = cleanLine(value)
	default: // counts, product, whole routing: read only
		return forbidden()
	}
	v, _ := s.getLocked(p)
	return s.reply(p, v, "")
}

func (s *Sim) recordLocked(r Request) {
	if len(s.requests) >= MaxRecords {
		s.requests = append(s.requests[:0:0], s.requests[len(s.requests)-MaxRecords/2:]...)
	}
	s.requests = append(s.requests, r)
	for ch := range s.reqSubs {
		select {
		case ch <- r:
		default: // a subscriber that does not keep up misses records
		}
	}
}

func (s *Sim) routeAppliedLocked(r RouteRecord) {
	if len(s.routes) >= MaxRecords {
		s.routes = append(s.routes[:0:0], s.routes[len(s.routes)-MaxRecords/2:]...)
	}
	s.routes = append(s.routes, r)
	for ch := range s.subs {
		select {
		case ch <- r:
		default:
		}
	}
}

// Size returns the simulator's port counts.
func (s *Sim) Size() (inputs, outputs int) { return s.opts.Inputs, s.opts.Outputs }

// Routing returns the routing: element i is the source (from 1) on
// destination i+1.
func (s *Sim) Routing() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.routing...)
}

// InputLabels returns the source names as a client shows them (the two
// lines joined by a space), index i for source i+1.
func (s *Sim) InputLabels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return joined(s.inLines)
}

// OutputLabels returns the destination names, index i for destination i+1.
func (s *Sim) OutputLabels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return joined(s.outLines)
}

func joined(ls [][2]string) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = wire.Label(l[0], l[1])
	}
	return out
}

func (s *Sim) checkPort(what string, n, max int) error {
	if n < 1 || n > max {
		return fmt.Errorf("kumosim: %s %d out of range 1..%d", what, n, max)
	}
	return nil
}

// SetRoute routes input to output (both from 1) as if from the front panel,
// whatever the locks. Clients see it on their next read.
func (s *Sim) SetRoute(output, input int) error {
	if err := s.checkPort("output", output, s.opts.Outputs); err != nil {
		return err
	}
	if err := s.checkPort("input", input, s.opts.Inputs); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routing[output-1] = input
	s.routeAppliedLocked(RouteRecord{Time: time.Now(), Output: output, Input: input, Remote: "panel"})
	return nil
}

// LockOutput locks destination output (from 1), as from the panel: sets
// onto it are answered 403 Forbidden.
func (s *Sim) LockOutput(output int) error { return s.setLock(output, true) }

// UnlockOutput removes the lock on destination output.
func (s *Sim) UnlockOutput(output int) error { return s.setLock(output, false) }

func (s *Sim) setLock(output int, locked bool) error {
	if err := s.checkPort("output", output, s.opts.Outputs); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.locked[output-1] = locked
	return nil
}

// SetInputLabel sets the two name lines of source input (from 1).
func (s *Sim) SetInputLabel(input int, line1, line2 string) error {
	if err := s.checkPort("input", input, s.opts.Inputs); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inLines[input-1] = [2]string{cleanLine(line1), cleanLine(line2)}
	return nil
}

// SetOutputLabel sets the two name lines of destination output (from 1).
func (s *Sim) SetOutputLabel(output int, line1, line2 string) error {
	if err := s.checkPort("output", output, s.opts.Outputs); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outLines[output-1] = [2]string{cleanLine(line1), cleanLine(line2)}
	return nil
}

// Requests returns the requests received so far, oldest first.
func (s *Sim) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Routes returns the routes applied so far, oldest first.
func (s *Sim) Routes() []RouteRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RouteRecord(nil), s.routes...)
}

// Subscribe returns a channel that receives every route applied from now
// on, and a function that ends the subscription and closes the channel.
// The simulator never waits for a subscriber: records that do not fit in
// the channel's buffer are not delivered to it. Close ends all
// subscriptions.
func (s *Sim) Subscribe(buffer int) (<-chan RouteRecord, func()) {
	ch := make(chan RouteRecord, max(buffer, 0))
	return ch, subscribe(s, s.subs, ch)
}

// SubscribeRequests is Subscribe for the requests received (see Requests).
func (s *Sim) SubscribeRequests(buffer int) (<-chan Request, func()) {
	ch := make(chan Request, max(buffer, 0))
	return ch, subscribe(s, s.reqSubs, ch)
}

func subscribe[T any](s *Sim, subs map[chan T]struct{}, ch chan T) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		close(ch)
		return func() {}
	}
	subs[ch] = struct{}{}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := subs[ch]; ok {
			delete(subs, ch)
			close(ch)
		}
	}
}

// FailNext makes the next n requests (any path, from any client) answer
// 500 Internal Server Error without acting.
func (s *Sim) FailNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = max(n, 0)
}

// RefuseNext makes the next n sets answer 403 Forbidden without acting, as
// the KUMO refuses a switch it will not make.
func (s *Sim) RefuseNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = max(n, 0)
}

// ErrorNext makes the next n sets answer 200 OK with an "error" member
// holding text, and the parameter's unchanged value, without acting. (AJA
// documents no such member for the KUMO; the driver understands one.)
func (s *Sim) ErrorNext(n int, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errorNext, s.errorText = max(n, 0), text
}

// IgnoreNext makes the next n crosspoint sets answer 200 OK as if applied,
// echoing the new source, while the routing does not change.
func (s *Sim) IgnoreNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ignore = max(n, 0)
}

// DropNext makes the simulator close the connection of each of the next n
// requests on receipt, without answering or acting on it.
func (s *Sim) DropNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropNext = max(n, 0)
}

// SetDelay makes the simulator act on each request at once but answer it
// only after d (0: at once), like a busy device; a client that gives up
// meanwhile gets nothing.
func (s *Sim) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = max(d, 0)
}

// ClientCount returns the number of open client connections.
func (s *Sim) ClientCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
