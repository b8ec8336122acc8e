package brokerconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"understudy/runtime/config"
	"understudy/sitekey"
)

func site(t *testing.T, extra string) (*config.Site, *sitekey.Ring) {
	t.Helper()
	return siteWithUsers(t, `{username: showctl, password: pw, publish: ["understudy/hall/command/+"], subscribe: ["understudy/hall/#"]}`, extra)
}

// siteWithUsers is a site of hall with a key, an external broker and the
// bus users given (YAML flow mappings, comma-separated).
func siteWithUsers(t *testing.T, users, extra string) (*config.Site, *sitekey.Ring) {
	t.Helper()
	dir := t.TempDir()
	text := "site: hall\ncoordinator: backup\nmdns: false\nbus: {url: \"tcp://127.0.0.1:1883\", users: [" + users + "]}\n" + extra +
		"members:\n  - id: main\n  - id: backup\n    standby: true\n"
	if err := os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	k, _ := sitekey.NewKey("k1")
	ring, _ := sitekey.NewRing(k)
	if err := ring.Write(filepath.Join(dir, "site.key"), false); err != nil {
		t.Fatal(err)
	}
	s, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return s, ring
}

// What each account may do comes from site.yaml; passwords are hashed as
// mosquitto_passwd does; anonymous clients are refused unless the site says
// otherwise (read, or permissive during an upgrade).
func TestMosquittoFilesFollowTheSite(t *testing.T) {
	s, ring := site(t, "")
	files, err := Mosquitto(s, ring, "/etc/mosquitto/conf.d", "1883 127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	conf, passwd, acl := string(files[ConfFile]), string(files[PasswordFile]), string(files[ACLFile])
	for _, want := range []string{"listener 1883 127.0.0.1\n", "allow_anonymous false\n", "password_file /etc/mosquitto/conf.d/understudy.passwd\n", "max_packet_size 1114112\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("conf lacks %q:\n%s", want, conf)
		}
	}
	for _, user := range []string{"understudy-main:$7$101$", "understudy-backup:$7$101$", "showctl:$7$101$"} {
		if !strings.Contains(passwd, user) {
			t.Errorf("passwd lacks %q:\n%s", user, passwd)
		}
	}
	for _, want := range []string{
		"user understudy-main\ntopic write understudy/hall/member/main/heartbeat\n",
		"user understudy-backup\ntopic write understudy/hall/#\ntopic read understudy/hall/#\n",
		"user showctl\ntopic write understudy/hall/command/+\ntopic read understudy/hall/#\n",
	} {
		if !strings.Contains(acl, want) {
			t.Errorf("acl lacks %q:\n%s", want, acl)
		}
	}
	if strings.Contains(acl, "topic write understudy/hall/member/backup/heartbeat") && strings.Contains(acl, "user understudy-main\ntopic write understudy/hall/member/backup") {
		t.Error("main may write backup's topics")
	}

	s, ring = site(t, "auth: {mode: permissive}\n")
	files, err = Mosquitto(s, ring, "/x", "1883")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(files[ConfFile]), "allow_anonymous true\n") || !strings.HasPrefix(strings.SplitN(string(files[ACLFile]), "\nuser ", 2)[0], "# written") || !strings.Contains(string(files[ACLFile]), "topic readwrite understudy/hall/#\n\nuser") {
		t.Errorf("permissive: anonymous clients (instances not yet upgraded) must keep the tree:\n%s\n%s", files[ConfFile], files[ACLFile])
	}
	if _, err := Mosquitto(s, nil, "/x", "1883"); err == nil {
		t.Error("files were written without a key")
	}
}

// A reply_prefix of a bus user lets the coordinator, and only the
// coordinator (it alone answers commands), write replies under it; the user
// reads there as its lists say (a user without lists reads its own
// replies).
func TestMosquittoACLLetsTheCoordinatorAnswerUnderReplyPrefixes(t *testing.T) {
	s, ring := siteWithUsers(t, `{username: showctl, password: pw, reply_prefix: showctl/replies/, publish: ["understudy/hall/command/+"], subscribe: ["showctl/replies/#", "understudy/hall/#"]}, `+
		`{username: qlab, password: q, reply_prefix: qlab/answers/}`, "")
	files, err := Mosquitto(s, ring, "/etc/mosquitto/conf.d", "1883")
	if err != nil {
		t.Fatal(err)
	}
	acl := string(files[ACLFile])
	for _, want := range []string{
		"user understudy-backup\ntopic write understudy/hall/#\ntopic write qlab/answers/#\ntopic write showctl/replies/#\ntopic read understudy/hall/#\n",
		"user showctl\ntopic write understudy/hall/command/+\ntopic read showctl/replies/#\ntopic read understudy/hall/#\n",
		"user qlab\ntopic write understudy/hall/#\ntopic read understudy/hall/#\ntopic read qlab/answers/#\n",
	} {
		if !strings.Contains(acl, want) {
			t.Errorf("acl lacks %q:\n%s", want, acl)
		}
	}
	_, main, _ := strings.Cut(acl, "user understudy-main\n")
	main, _, _ = strings.Cut(main, "\n\n")
	if !strings.Contains(main, "topic write understudy/hall/member/main/heartbeat") || strings.Contains(main, "replies") || strings.Contains(main, "answers") {
		t.Errorf("main, not the coordinator, may write replies:\n%s", main)
	}
	if n := strings.Count(acl, "topic write showctl/replies/#"); n != 1 {
		t.Errorf("showctl/replies/# is writable %d times (want once: the coordinator):\n%s", n, acl)
	}
}
