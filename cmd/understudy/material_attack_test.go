package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/fixtures/eventually"
)

// The standby with the material server is also the coordinator and embeds
// the broker (the default configuration: no bus.users). An anonymous MQTT
// client forges what the coordinator sends for a failback's copy: a copy
// command whose roots name the coordinator's state folder as the source and
// the standby's material folder as the destination, then a material_grant
// with its own token, then asks the material server for the API token the
// copy would have put there.
const materialAttackSite = `site: atk
coordinator: sb
mdns: false
bus: {listen: %[1]q}
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 3s}
policy: {file: policy.lua}
members:
  - id: rec
    api: 127.0.0.1:0
    duties: {material: [%[2]q]}
  - id: sb
    standby: true
    api: 127.0.0.1:0
    material_server: %[3]s
    duties: {material: [%[4]q]}
`

func TestMaterialCopyRefusesForgedRootsAndGrants(t *testing.T) {
	for _, tool := range []string{"mosquitto_pub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (Debian package mosquitto-clients; .ci/deps installs it): %v", tool, err)
		}
	}
	dir := t.TempDir()
	recDir, sbDir := filepath.Join(dir, "rec-disk"), filepath.Join(dir, "sb-disk")
	for _, d := range []string{recDir, sbDir, filepath.Join(sbDir, "rec")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	broker, material := freePort(t), freePort(t)
	site := filepath.Join(dir, "site.yaml")
	write(t, site, fmt.Sprintf(materialAttackSite, broker, recDir, material, sbDir))
	write(t, filepath.Join(dir, "policy.lua"), "local us = require \"understudy\"\n")
	stateDir := filepath.Join(dir, ".understudy")

	sb := runIn(t, nil, site, "sb")
	sb.wait(20*time.Second, "msg", "material server listening")
	sb.wait(20*time.Second, "msg", "bus connected")
	api := apiAddress(t, sb)
	tokenFile := filepath.Join(stateDir, "atk-sb.token")
	secret, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatalf("the coordinator's API token: %v", err)
	}

	host, port, _ := net.SplitHostPort(broker)
	anonymous := mqttPeer{host: host, port: port}
	publish := func(topic, payload string) {
		t.Helper()
		if out, err := exec.Command("mosquitto_pub", anonymous.args("-q", "1", "-t", topic, "-m", payload)...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, out)
		}
	}
	command := "understudy/atk/member/sb/command"
	forgedToken := "forged-token-of-the-attacker-0123456789"

	// The forged epoch is one a member would take (one of 2^64-1 is refused
	// before anything else: TestAnAbsurdEpochIsRefusedAndNotRemembered), so
	// that what is refused here is the roots.
	// 1. The copy with roots of the attacker's choosing.
	publish(command, fmt.Sprintf(`{"id":"x","epoch":1000,"from":"backup","verb":"copy","args":{"settle_s":-1,"roots":[{"path":%q,"dest":%q}]}}`, stateDir, sbDir))
	if e := refused(sb, "x"); !strings.Contains(e, "roots") {
		t.Errorf("the forged copy failed, but not for its roots: %q", e)
	}
	// 2. A copy from itself, without roots: nothing to copy from.
	publish(command, `{"id":"y","epoch":1000,"from":"backup","verb":"copy","args":{"from":"sb","member":"sb"}}`)
	if e := refused(sb, "y"); !strings.Contains(e, "itself") {
		t.Errorf("the copy from itself failed, but not for that: %q", e)
	}
	// 3. A grant with roots of its own: refused.
	publish(command, fmt.Sprintf(`{"id":"z","epoch":1000,"from":"backup","verb":"material_grant","args":{"member":"rec","token":%q,"roots":{"1":%q}}}`, forgedToken, sbDir))
	if e := refused(sb, "z"); !strings.Contains(e, "roots") {
		t.Errorf("the forged grant failed, but not for its roots: %q", e)
	}

	// Nothing was copied into the material folder.
	var found []string
	filepath.WalkDir(sbDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			found = append(found, p)
		}
		return nil
	})
	if len(found) > 0 {
		t.Errorf("files appeared in the standby's material folder: %v", found)
	}

	get := func(token, rel string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+material+"/material/file?root=1&path="+rel, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("material server: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, rel := range []string{"atk-sb.token", "../.understudy/atk-sb.token", tokenFile} {
		if code, body := get(forgedToken, rel); code == http.StatusOK || strings.Contains(body, strings.TrimSpace(string(secret))) {
			t.Errorf("the material server gave %s with the forged grant: %d %q", rel, code, body)
		}
	}

	// 4. A grant without roots is for rec's own subfolder only: the token
	// file stays out of reach, by name, by "..", by absolute path.
	publish(command, fmt.Sprintf(`{"id":"w","epoch":1000,"from":"backup","verb":"material_grant","args":{"member":"rec","token":%q}}`, forgedToken))
	sb.wait(20*time.Second, "msg", "command done", "id", "w")
	for _, rel := range []string{"atk-sb.token", "../atk-sb.token", "../../.understudy/atk-sb.token", tokenFile} {
		if code, body := get(forgedToken, rel); code == http.StatusOK || strings.Contains(body, strings.TrimSpace(string(secret))) {
			t.Errorf("the material server gave %s with a grant for rec: %d %q", rel, code, body)
		}
	}

	// The refusals are counted on the status API.
	eventually.True(t, 20*time.Second, "the refused material commands counted in /status", func() (bool, string) {
		var st struct {
			Material struct {
				Refused map[string]uint64 `json:"refused"`
			} `json:"material"`
		}
		resp, err := http.Get(api + "/status")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(body, &st); err != nil {
			return false, err.Error()
		}
		r := st.Material.Refused
		return r["copy"] == 2 && r["material_grant"] == 1, string(body)
	})
}

// refused waits for command id to finish on d and returns its error; it
// fails the test if the command succeeded.
func refused(d *daemon, id string) string {
	d.t.Helper()
	var failed logEntry
	eventually.True(d.t, 20*time.Second, "command "+id+" finished on "+d.id, func() (bool, string) {
		if d.has("msg", "command done", "id", id) {
			return true, "done"
		}
		if e, err := d.waitErr(0, "msg", "command failed", "id", id); err == nil {
			failed = e
			return true, "failed"
		}
		return false, "still running"
	})
	if failed == nil {
		d.t.Errorf("command %s was carried out on %s; it must be refused", id, d.id)
		return ""
	}
	return failed.str("error")
}
