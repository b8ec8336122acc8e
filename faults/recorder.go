package faults

import (
	"crypto/sha256"
	bin "encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"understudy/events"
	"understudy/runtime/config"
)

// The recorder emulation stands in for the recording software of the
// site's recorders, which the test hosts do not have: a member with
// duties.material has a few recordings of its own before the schedule
// begins, and a standby, from the moment the coordinator's journal shows it
// covering a member (takeover_done) until it lets go (the release command
// running, or the coverage ending), records that member's material under
// copy.subfolder in its own material folder — one growing file at a time,
// a chunk appended every recTick, so that a file is being written whenever
// a failback begins. The first file a standby records for a member has the
// name of the member's last own recording with other content: a name
// conflict the copy back must leave alone. Names, sizes and contents are
// drawn from the seed; only the times depend on the run.

// Sizes and pace of the emulated recordings (a file is a few KiB).
const (
	recChunk     = 1024                   // bytes appended at a time
	recTick      = 150 * time.Millisecond // a chunk this often (and the journal read)
	recMinChunks = 4
	recMaxChunks = 16
	recOwnFiles  = 3   // recordings a member has before the schedule
	recMaxFiles  = 400 // recordings a standby makes for one member at most
)

// Recorded is a file the recorder emulation wrote into a material folder,
// as it was when the emulation stopped.
type Recorded struct {
	Host string `json:"host"` // whose material folder it is in: who recorded it
	For  string `json:"for"`  // the member it was recorded for (Host for its own)
	Root string `json:"root"` // the material folder, as site.yaml names it
	Path string `json:"path"` // in Root, with slashes (under copy.subfolder for a standby's)
	// Rel is where a copy back puts it in For's first material folder:
	// Path without the copy.subfolder.
	Rel    string    `json:"rel"`
	Size   int64     `json:"size"`
	Hash   string    `json:"sha256"`
	Opened time.Time `json:"opened"`
	Closed time.Time `json:"closed,omitzero"` // zero: still being written when the schedule ended
}

// FileSeen is a file found in a member's material folder at the end of the
// run, once every instance had stopped.
type FileSeen struct {
	Host string `json:"host"`
	Root string `json:"root"` // the material folder, as site.yaml names it
	Path string `json:"path"` // in Root, with slashes
	Size int64  `json:"size"`
	Hash string `json:"sha256,omitempty"` // empty for a file too big to hash (not one of the emulation's)
}

// recFolder is a member's first material folder.
type recFolder struct {
	Root  string // as site.yaml names it
	Local string // on this machine
}

// recorder is the emulation of one run. It is used by one goroutine.
type recorder struct {
	seed    uint64
	folders map[string]recFolder // by member: its first material folder
	sub     func(member string) string
	streams map[string]string // by member: the folder its recordings go in
	// covering: member → the standby recording for it now.
	covering map[string]string
	next     map[string]int // member → its next recording's number
	current  map[string]int // member → index in files of the file being written
	files    []Recorded
	content  map[int][]byte // index in files → the content it is to have
	err      error
}

// newRecorder prepares the emulation of plan's site (nil when no member has
// material folders).
func newRecorder(plan *Plan, seed uint64) *recorder {
	rc := &recorder{seed: seed, folders: map[string]recFolder{}, sub: plan.Site.CopySubfolder, streams: map[string]string{},
		covering: map[string]string{}, next: map[string]int{}, current: map[string]int{}, content: map[int][]byte{}}
	for _, h := range plan.Hosts {
		m, _ := plan.Site.Member(h.Member)
		if len(h.Material) == 0 || len(m.Duties.Material) == 0 {
			continue
		}
		rc.folders[h.Member] = recFolder{Root: m.Duties.Material[0], Local: h.Material[0]}
		rc.streams[h.Member] = "rec"
		if len(m.Duties.Streams) > 0 && m.Duties.Streams[0].Name != "" && !strings.ContainsAny(m.Duties.Streams[0].Name, `/\.`) {
			rc.streams[h.Member] = m.Duties.Streams[0].Name
		}
	}
	if len(rc.folders) == 0 {
		return nil
	}
	return rc
}

// segment is the name of a member's n-th recording.
func (rc *recorder) segment(member string, n int) string {
	return rc.streams[member] + "/seg-" + fmt.Sprintf("%04d", n) + ".rec"
}

// draw returns the content of the n-th recording for member made by host,
// from the seed: recMinChunks to recMaxChunks chunks, starting with 'M' for
// a member's own and 'S' for a standby's (so that neither is a prefix of
// the other).
func (rc *recorder) draw(host, member string, n int) []byte {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s\x00%d", host, member, n)
	r := rand.New(rand.NewPCG(rc.seed, h.Sum64()))
	out := make([]byte, (recMinChunks+r.IntN(recMaxChunks-recMinChunks+1))*recChunk)
	for i := 0; i < len(out); i += 8 {
		bin.LittleEndian.PutUint64(out[i:], r.Uint64())
	}
	out[0] = 'S'
	if host == member {
		out[0] = 'M'
	}
	return out
}

// seedOwn writes every member's own recordings (not a standby's: it
// records only for others).
func (rc *recorder) seedOwn(plan *Plan, now time.Time) error {
	for _, h := range plan.Hosts {
		m, _ := plan.Site.Member(h.Member)
		f, ok := rc.folders[h.Member]
		if !ok || m.Standby {
			continue
		}
		for n := range recOwnFiles {
			data := rc.draw(h.Member, h.Member, n)
			rel := rc.segment(h.Member, n)
			path := filepath.Join(f.Local, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return fmt.Errorf("recordings of %s: %w", h.Member, err)
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				return fmt.Errorf("recordings of %s: %w", h.Member, err)
			}
			rc.files = append(rc.files, Recorded{Host: h.Member, For: h.Member, Root: f.Root, Path: rel, Rel: rel,
				Size: int64(len(data)), Hash: hashOf(data), Opened: now, Closed: now})
		}
		// A standby's first recording for it has the name of its last own.
		rc.next[h.Member] = recOwnFiles - 1
	}
	return nil
}

// observe follows the coordinator's journal: who records for whom.
func (rc *recorder) observe(rec Record, now time.Time) {
	member := rec.Member
	switch rec.Type {
	case events.TakeoverDone:
		s := rec.Str("standby")
		if _, ok := rc.folders[s]; !ok || s == "" {
			return
		}
		if was, ok := rc.covering[member]; ok && was != s {
			rc.stop(member, now)
		}
		rc.covering[member] = s
	case events.ActionRunning, events.ActionDone:
		member = rec.Str("member")
		if rec.Str("verb") == config.HookRelease && rc.covering[member] == rec.Str("target") {
			rc.stop(member, now)
		}
	case events.FailbackDone, events.TakeoverFailed:
		rc.stop(member, now)
	}
}

// stop ends the recording for member: the file being written is closed.
func (rc *recorder) stop(member string, now time.Time) {
	if i, ok := rc.current[member]; ok {
		rc.close(i, now)
		delete(rc.current, member)
	}
	delete(rc.covering, member)
}

func (rc *recorder) close(i int, now time.Time) {
	f := &rc.files[i]
	f.Closed = now
	f.Hash = hashOf(rc.content[i][:f.Size])
	delete(rc.content, i)
}

// tick appends a chunk to the file each standby is writing (starting the
// next file when one is complete).
func (rc *recorder) tick(now time.Time) {
	for _, member := range sortedKeys(rc.covering) {
		s := rc.covering[member]
		i, ok := rc.current[member]
		if !ok {
			n := rc.next[member]
			if n >= recOwnFiles-1+recMaxFiles {
				continue // enough: the schedule is long
			}
			rc.next[member] = n + 1
			rel := rc.segment(member, n)
			sub := rc.sub(member)
			rc.files = append(rc.files, Recorded{Host: s, For: member, Root: rc.folders[s].Root,
				Path: filepath.ToSlash(filepath.Join(sub, rel)), Rel: rel, Opened: now})
			i = len(rc.files) - 1
			rc.current[member] = i
			rc.content[i] = rc.draw(s, member, n)
		}
		f := &rc.files[i]
		data := rc.content[i]
		chunk := data[f.Size:min(f.Size+recChunk, int64(len(data)))]
		if err := appendFile(filepath.Join(rc.folders[s].Local, filepath.FromSlash(f.Path)), chunk); err != nil {
			rc.err = errors.Join(rc.err, fmt.Errorf("recording of %s for %s: %w", s, member, err))
			rc.stop(member, now)
			continue
		}
		f.Size += int64(len(chunk))
		if f.Size == int64(len(data)) {
			rc.close(i, now)
			delete(rc.current, member)
		}
	}
}

// finish hashes the files still being written (left open: the schedule
// ended) and returns everything written.
func (rc *recorder) finish() ([]Recorded, error) {
	for _, i := range rc.current {
		f := &rc.files[i]
		f.Hash = hashOf(rc.content[i][:f.Size])
	}
	return slices.Clone(rc.files), rc.err
}

func appendFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func hashOf(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// maxHashed bounds the files ListMaterial reads to hash.
const maxHashed = 4 << 20

// ListMaterial lists every file in the material folders of plan's hosts,
// with its size and content hash.
func ListMaterial(plan *Plan) ([]FileSeen, error) {
	var out []FileSeen
	for _, h := range plan.Hosts {
		m, _ := plan.Site.Member(h.Member)
		for i, local := range h.Material {
			if i >= len(m.Duties.Material) {
				break
			}
			root := m.Duties.Material[i]
			err := filepath.WalkDir(local, func(path string, d fs.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() {
					return err
				}
				info, err := d.Info()
				if err != nil {
					return err
				}
				rel, err := filepath.Rel(local, path)
				if err != nil {
					return err
				}
				seen := FileSeen{Host: h.Member, Root: root, Path: filepath.ToSlash(rel), Size: info.Size()}
				if info.Size() <= maxHashed {
					data, err := os.ReadFile(path)
					if err != nil {
						return err
					}
					seen.Hash = hashOf(data)
				}
				out = append(out, seen)
				return nil
			})
			if err != nil {
				return out, fmt.Errorf("material of %s: %w", h.Member, err)
			}
		}
	}
	return out, nil
}
