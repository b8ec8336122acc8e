package sitekey

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func ring(t *testing.T, ids ...string) *Ring {
	t.Helper()
	var keys []Key
	for _, id := range ids {
		k, err := NewKey(id)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	r, err := NewRing(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestWrittenRingLoadsBackAndVerifiesWhatItSigned(t *testing.T) {
	r := ring(t, "k1", "k0")
	path := filepath.Join(t.TempDir(), "site.key")
	if err := r.Write(path, false); err != nil {
		t.Fatal(err)
	}
	if err := r.Write(path, false); err == nil {
		t.Error("an existing key file was replaced without asking")
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(back.IDs(), ","); got != "k1,k0" {
		t.Errorf("ids %s", got)
	}
	id, code := r.Sign("understudy/hall/member/main/heartbeat", []byte(`{"seq":1}`))
	if id != "k1" || len(code) != MACSize {
		t.Fatalf("signed with %q, %d bytes", id, len(code))
	}
	if err := back.Verify(id, "understudy/hall/member/main/heartbeat", []byte(`{"seq":1}`), code); err != nil {
		t.Errorf("the loaded ring refused what the ring signed: %v", err)
	}
	if runtime.GOOS != "windows" {
		fi, _ := os.Stat(path)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("written with mode %04o", fi.Mode().Perm())
		}
	}
}

func TestVerifyRefusesAnyChange(t *testing.T) {
	r := ring(t, "k1")
	topic, payload := "understudy/hall/member/main/presence", []byte(`{"state":"gone"}`)
	_, code := r.Sign(topic, payload)
	for name, c := range map[string]struct {
		id, topic string
		payload   []byte
		want      error
	}{
		"payload":            {"k1", topic, []byte(`{"state":"gone!"}`), ErrBadMAC},
		"topic":              {"k1", "understudy/hall/member/backup/presence", payload, ErrBadMAC},
		"boundary moved":     {"k1", topic + `{`, payload[1:], ErrBadMAC},
		"unknown key":        {"k9", topic, payload, ErrUnknownKey},
		"another site's key": {"k1", topic, payload, ErrBadMAC},
	} {
		verifier := r
		if name == "another site's key" {
			verifier = ring(t, "k1")
		}
		if err := verifier.Verify(c.id, c.topic, c.payload, code); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
	var empty *Ring
	if id, code := empty.Sign(topic, payload); id != "" || code != nil {
		t.Error("an empty ring signed")
	}
	if err := empty.Verify("k1", topic, payload, code); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("an empty ring verified: %v", err)
	}
}

// Rotation: a ring with the new key first still verifies what the old key
// signed, and signs with the new one.
func TestRotationAcceptsTheOldKeyWhileSigningWithTheNew(t *testing.T) {
	old := ring(t, "k1")
	k2, _ := NewKey("k2")
	rotating, err := NewRing(k2, old.keys[0])
	if err != nil {
		t.Fatal(err)
	}
	id, code := old.Sign("t", []byte("p"))
	if err := rotating.Verify(id, "t", []byte("p"), code); err != nil {
		t.Errorf("old key refused during rotation: %v", err)
	}
	if rotating.Signer() != "k2" {
		t.Errorf("signs with %s", rotating.Signer())
	}
	if _, err := NewRing(k2, k2); err == nil {
		t.Error("a ring with one id twice was accepted")
	}
	d := rotating.Derive("broker main")
	if len(d) != 2 || d[1] != old.Derive("broker main")[0] || d[0] == d[1] {
		t.Errorf("derived %v: want the new key's first, then the old key's", d)
	}
	if rotating.Derive("broker backup")[0] == d[0] {
		t.Error("two purposes derived the same secret")
	}
}

func TestLoadSaysWhatIsWrongWithTheFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "none.key")); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "understudy keys new") {
		t.Errorf("missing: %v", err)
	}
	path := filepath.Join(dir, "site.key")
	if err := ring(t, "k1").Write(path, false); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); !errors.Is(err, ErrTooOpen) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("readable by others: %v", err)
		}
	}
	for text, want := range map[string]string{
		"# only a comment\n":   "has no key",
		"k1\n":                 "x.key:1: want `<id> <secret>`",
		"# c\nk1 notbase64!\n": "x.key:2: key k1: the secret is not 32 bytes",
		"k1 c2hvcnQ=\n":        "x.key:1: key k1: the secret is not 32 bytes",
		"bad/id " + strings.Repeat("A", 44) + "\n": "x.key:1: key id \"bad/id\"",
	} {
		if _, err := Parse("x.key", []byte(text)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", text, err, want)
		}
	}
}
