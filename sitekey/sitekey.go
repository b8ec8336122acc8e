// Package sitekey is the site's secret: a key ring kept in a file beside
// site.yaml (mode 0600), made once with `understudy keys new` and copied to
// every machine of the site with site.yaml, as corosync's authkey is.
//
// The first key of the ring signs; every key verifies, so a key can be
// changed without a flag day: add the new key second on every machine, then
// move it first, then remove the old one. Each key has an id that travels
// with what it signed.
//
// A Ring authenticates a message by an HMAC-SHA256 (truncated to 128 bits)
// over its topic and payload, and derives the other secrets a site needs
// (the broker passwords of its members) from its keys, so that there is one
// secret to copy.
//
// It is a leaf: it imports nothing of understudy.
package sitekey

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
)

// MACSize is the length of a message authentication code, in bytes.
const MACSize = 16

// secretSize is the length of a key, in bytes.
const secretSize = 32

// Errors a caller may tell apart.
var (
	// ErrMissing: there is no key file.
	ErrMissing = errors.New("no site key")
	// ErrTooOpen: the key file can be read by other users.
	ErrTooOpen = errors.New("site key readable by others")
	// ErrUnknownKey: a message names a key the ring does not have.
	ErrUnknownKey = errors.New("unknown key id")
	// ErrBadMAC: the code does not match the message.
	ErrBadMAC = errors.New("authentication code does not match")
)

// Key is one secret of a ring and its id.
type Key struct {
	ID     string
	secret []byte
	// macs keeps HMAC states keyed with secret for reuse (a ring checks
	// every heartbeat of a site: thousands a second).
	macs *sync.Pool
}

// macState is an HMAC keyed with a Key's secret and the room to compute a
// code without allocating.
type macState struct {
	h       hash.Hash
	scratch []byte // the topic's length and the topic
	sum     [sha256.Size]byte
}

func (k *Key) pool() *sync.Pool {
	if k.macs == nil {
		secret := k.secret
		k.macs = &sync.Pool{New: func() any { return &macState{h: hmac.New(sha256.New, secret)} }}
	}
	return k.macs
}

// Ring is a site's keys: the first signs, all verify. The zero Ring has no
// keys and signs nothing.
type Ring struct {
	keys []Key
}

var idRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)

// NewKey makes a random key with the given id.
func NewKey(id string) (Key, error) {
	if !idRe.MatchString(id) {
		return Key{}, fmt.Errorf("key id %q: use letters, digits, '_', '.', '-' (at most 32)", id)
	}
	s := make([]byte, secretSize)
	if _, err := rand.Read(s); err != nil {
		return Key{}, fmt.Errorf("random key: %w", err)
	}
	return Key{ID: id, secret: s}, nil
}

// NewRing returns a ring of keys; the first signs. Ids must be unique.
func NewRing(keys ...Key) (*Ring, error) {
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k.ID] {
			return nil, fmt.Errorf("key id %q twice", k.ID)
		}
		seen[k.ID] = true
	}
	keys = append([]Key(nil), keys...)
	for i := range keys {
		keys[i].macs = nil
		keys[i].pool()
	}
	return &Ring{keys: keys}, nil
}

// IDs lists the ids of the ring's keys, the signing key first.
func (r *Ring) IDs() []string {
	ids := make([]string, len(r.keys))
	for i, k := range r.keys {
		ids[i] = k.ID
	}
	return ids
}

// Empty reports whether the ring has no key.
func (r *Ring) Empty() bool { return r == nil || len(r.keys) == 0 }

// Signer is the id of the key that signs ("" for an empty ring).
func (r *Ring) Signer() string {
	if r.Empty() {
		return ""
	}
	return r.keys[0].ID
}

// Parse reads a key file: one key per line, `<id> <base64 secret>`, '#'
// comments and blank lines ignored. Errors name name:line.
func Parse(name string, data []byte) (*Ring, error) {
	var keys []Key
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: want `<id> <secret>`, got %d fields", name, line, len(fields))
		}
		if !idRe.MatchString(fields[0]) {
			return nil, fmt.Errorf("%s:%d: key id %q: use letters, digits, '_', '.', '-' (at most 32)", name, line, fields[0])
		}
		s, err := base64.StdEncoding.DecodeString(fields[1])
		if err != nil || len(s) != secretSize {
			return nil, fmt.Errorf("%s:%d: key %s: the secret is not %d bytes of base64 (make one with `understudy keys new`)", name, line, fields[0], secretSize)
		}
		keys = append(keys, Key{ID: fields[0], secret: s})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: %w: the file has no key (make one with `understudy keys new`)", name, ErrMissing)
	}
	r, err := NewRing(keys...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return r, nil
}

// Format writes the ring in the form Parse reads.
func (r *Ring) Format() []byte {
	var b bytes.Buffer
	b.WriteString("# understudy site key: copy this file with site.yaml to every machine of the site, mode 0600.\n")
	b.WriteString("# The first key signs, every key verifies (to change keys: add the new one second everywhere, then move it first, then remove the old).\n")
	for _, k := range r.keys {
		fmt.Fprintf(&b, "%s %s\n", k.ID, base64.StdEncoding.EncodeToString(k.secret))
	}
	return b.Bytes()
}

// Load reads the key file at path. A missing file is ErrMissing; on systems
// with Unix permissions a file that group or others may read is ErrTooOpen
// (ssh refuses such keys too).
func Load(path string) (*Ring, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (make one with `understudy keys new`, then copy it with site.yaml)", path, ErrMissing)
	}
	if err != nil {
		return nil, fmt.Errorf("site key: %w", err)
	}
	if err := CheckMode(path, fi.Mode()); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("site key: %w", err)
	}
	return Parse(path, data)
}

// CheckMode returns ErrTooOpen when mode lets group or others read the file
// (not on Windows, whose ACLs the mode does not show).
func CheckMode(path string, mode fs.FileMode) error {
	if runtime.GOOS == "windows" || mode.Perm()&0o077 == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w (mode %04o; run chmod 600 %s)", path, ErrTooOpen, mode.Perm(), path)
}

// Write saves the ring to path with mode 0600, refusing to replace a file
// unless replace is set.
func (r *Ring) Write(path string, replace bool) error {
	flag := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if replace {
		flag = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return fmt.Errorf("write site key: %w", err)
	}
	if err := f.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		f.Close()
		return fmt.Errorf("write site key: %w", err)
	}
	if _, err := f.Write(r.Format()); err != nil {
		f.Close()
		return fmt.Errorf("write site key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write site key: %w", err)
	}
	return nil
}

// Sign returns the id of the signing key and the code of topic and payload.
// An empty ring signs nothing and returns "", nil.
func (r *Ring) Sign(topic string, payload []byte) (string, []byte) {
	if r.Empty() {
		return "", nil
	}
	k := &r.keys[0]
	var code [MACSize]byte
	k.mac(topic, payload, &code)
	return k.ID, code[:]
}

// Verify checks code against topic and payload with the key named id.
func (r *Ring) Verify(id, topic string, payload, code []byte) error {
	if r != nil {
		for i := range r.keys {
			k := &r.keys[i]
			if k.ID != id {
				continue
			}
			var want [MACSize]byte
			k.mac(topic, payload, &want)
			if subtle.ConstantTimeCompare(want[:], code) != 1 {
				return ErrBadMAC
			}
			return nil
		}
	}
	return fmt.Errorf("%w %q", ErrUnknownKey, id)
}

// mac is HMAC-SHA256 over the topic's length, the topic and the payload,
// truncated to MACSize bytes. The length keeps a topic/payload boundary from
// being moved.
func (k *Key) mac(topic string, payload []byte, code *[MACSize]byte) {
	p := k.pool()
	st := p.Get().(*macState)
	defer p.Put(st)
	st.h.Reset()
	n := len(topic)
	st.scratch = append(append(st.scratch[:0], byte(n>>24), byte(n>>16), byte(n>>8), byte(n)), topic...)
	st.h.Write(st.scratch)
	st.h.Write(payload)
	copy(code[:], st.h.Sum(st.sum[:0]))
}

// Derive returns a secret for purpose from every key of the ring, the
// signing key's first, as base64 text (for a broker password: what the
// signing key derives is used, every one is accepted).
func (r *Ring) Derive(purpose string) []string {
	if r == nil {
		return nil
	}
	out := make([]string, len(r.keys))
	for i, k := range r.keys {
		h := hmac.New(sha256.New, k.secret)
		h.Write([]byte("understudy derive\x00" + purpose))
		out[i] = base64.RawURLEncoding.EncodeToString(h.Sum(nil))
	}
	return out
}

// Keys returns a copy of the ring's keys, the signing key first.
func (r *Ring) Keys() []Key {
	if r == nil {
		return nil
	}
	return append([]Key(nil), r.keys...)
}
