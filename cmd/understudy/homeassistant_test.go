package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"understudy/fixtures/eventually"

	"understudy/fixtures/mosquitto"
	"understudy/fixtures/testhost"
)

// haConfig is the part of a Home Assistant discovery configuration the test
// checks.
type haConfig struct {
	Name                string `json:"name"`
	UniqueID            string `json:"unique_id"`
	DefaultEntityID     string `json:"default_entity_id"`
	DeviceClass         string `json:"device_class"`
	StateTopic          string `json:"state_topic"`
	ValueTemplate       string `json:"value_template"`
	PayloadOn           string `json:"payload_on"`
	PayloadOff          string `json:"payload_off"`
	JSONAttributesTopic string `json:"json_attributes_topic"`
	Availability        []struct {
		Topic               string `json:"topic"`
		ValueTemplate       string `json:"value_template"`
		PayloadAvailable    string `json:"payload_available"`
		PayloadNotAvailable string `json:"payload_not_available"`
	} `json:"availability"`
	Device struct {
		Identifiers []string `json:"identifiers"`
		Name        string   `json:"name"`
	} `json:"device"`
}

// retainedUnder returns what the broker keeps under filter, topic → payload:
// mosquitto_sub --retained-only prints the retained messages a new
// subscription gets and exits at the first live one, a marker published
// under marker until it does.
func retainedUnder(t *testing.T, p mqttPeer, filter, marker string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub := testhost.StartProcess(t, exec.CommandContext(ctx, "mosquitto_sub", p.args("-t", filter, "-v", "--retained-only")...))
	for {
		if out, err := exec.Command("mosquitto_pub", p.args("-t", marker, "-m", "marker")...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, out)
		}
		select {
		case <-sub.Exited():
			got := map[string]string{}
			for line := range strings.Lines(sub.Output()) {
				topic, payload, _ := strings.Cut(strings.TrimSpace(line), " ")
				if topic != "" {
					got[topic] = payload
				}
			}
			return got
		case <-time.After(100 * time.Millisecond): // the subscription may not have been made yet
		case <-ctx.Done():
			t.Fatalf("mosquitto_sub on %s did not see the marker within 20s; output:\n%s", filter, sub.Output())
		}
	}
}

// waitRetained waits until the retained message on topic contains want.
func waitRetained(t *testing.T, p mqttPeer, topic, want string) string {
	t.Helper()
	var got string
	eventually.True(t, 20*time.Second, topic+" holds "+want, func() (bool, string) {
		out, err := exec.Command("mosquitto_sub", p.args("-t", topic, "-C", "1", "-W", "10")...).Output()
		got = string(out)
		return err == nil && strings.Contains(got, want), fmt.Sprintf("%q (%v)", out, err)
	})
	return got
}

// A site with home_assistant.discovery: the coordinator publishes, retained,
// a connectivity binary_sensor per member whose state topic carries the
// member's state, again for a member that describes itself, and again after
// the broker lost everything. A site without the option publishes none.
func TestHomeAssistantDiscovery(t *testing.T) {
	for _, tool := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (Debian package mosquitto-clients; .ci/deps installs it): %v", tool, err)
		}
	}
	// Debian's mosquitto: the instances and mosquitto_sub publish and
	// subscribe to retained topics at the same moment, which the embedded
	// broker's library (mochi-mqtt v2.7.9) races on (its issue #200) under
	// -race.
	mq := mosquitto.Start(t)
	host, port, _ := net.SplitHostPort(mq.Addr)
	peer := mqttPeer{host: host, port: port}
	site := func(name, extra string) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		startSwitcher(t, l)
		path := writeSite(t, siteParams{Name: name, Bus: "url: " + mq.URL, Router: l.Addr().String()})
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(extra); err != nil {
			t.Fatal(err)
		}
		return path
	}
	on := site("ha-on", "home_assistant: {discovery: true}\n")
	off := site("ha-off", "home_assistant: {discovery: false}\n")

	backup := runIn(t, nil, on, "backup")
	runIn(t, nil, on, "main")
	backup.wait(20*time.Second, "msg", "Home Assistant discovery published", "prefix", "homeassistant", "members", "main,backup")
	backup.wait(20*time.Second, "msg", "member alive", "member", "main")
	offBackup := runIn(t, nil, off, "backup")
	runIn(t, nil, off, "main")
	offBackup.wait(20*time.Second, "msg", "member alive", "member", "main")

	configTopic := func(m string) string { return "homeassistant/binary_sensor/understudy_ha-on_" + m + "/config" }
	configs := retainedUnder(t, peer, "homeassistant/#", "homeassistant/understudy-test/marker")
	if got, want := slices.Sorted(maps.Keys(configs)), []string{configTopic("backup"), configTopic("main")}; !slices.Equal(got, want) {
		t.Fatalf("retained under homeassistant/: %v, want %v (and nothing of ha-off)", got, want)
	}
	for _, m := range []string{"main", "backup"} {
		var c haConfig
		if err := json.Unmarshal([]byte(configs[configTopic(m)]), &c); err != nil {
			t.Fatalf("%s: %v in %s", configTopic(m), err, configs[configTopic(m)])
		}
		state := "understudy/ha-on/member/" + m + "/state"
		if c.Name != m || c.UniqueID != "understudy_ha-on_"+m || c.DefaultEntityID != "binary_sensor.understudy_ha_on_"+m ||
			c.DeviceClass != "connectivity" || c.StateTopic != state || c.JSONAttributesTopic != state ||
			c.ValueTemplate != "{{ 'ON' if value_json.state in ['alive', 'suspect'] else 'OFF' }}" || c.PayloadOn != "ON" || c.PayloadOff != "OFF" ||
			len(c.Availability) != 1 || c.Availability[0].Topic != "understudy/ha-on/member/backup/presence" ||
			c.Availability[0].ValueTemplate != "{{ 'online' if value_json.state == 'online' else 'offline' }}" ||
			c.Availability[0].PayloadAvailable != "online" || c.Availability[0].PayloadNotAvailable != "offline" ||
			!slices.Equal(c.Device.Identifiers, []string{"understudy_ha-on"}) || c.Device.Name != "understudy ha-on" {
			t.Errorf("%s = %+v", configTopic(m), c)
		}
		// The topics it names carry what the templates read.
		var st struct{ Member, State string }
		out := waitRetained(t, peer, c.StateTopic, `"state":"alive"`)
		if err := json.Unmarshal([]byte(out), &st); err != nil || st.Member != m || st.State != "alive" {
			t.Errorf("%s: %q (%v)", c.StateTopic, out, err)
		}
		waitRetained(t, peer, c.Availability[0].Topic, `"state":"online"`)
	}

	// A member that describes itself gets its sensor too.
	desc := filepath.Join(t.TempDir(), "rec-9.yaml")
	if err := os.WriteFile(desc, []byte("id: rec-9\nroles: [recorder]\napi: 127.0.0.1:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := &daemon{t: t, id: "rec-9", p: testhost.StartProcess(t, exec.Command(binary, "run", "-c", on, "--describe", desc, "--log-format", "json", "--log-level", "debug"))}
	rec.wait(20*time.Second, "msg", "bus connected")
	backup.wait(20*time.Second, "msg", "Home Assistant discovery published", "members", "rec-9")
	var c haConfig
	if err := json.Unmarshal([]byte(waitRetained(t, peer, configTopic("rec-9"), "understudy_ha-on_rec-9")), &c); err != nil || c.StateTopic != "understudy/ha-on/member/rec-9/state" {
		t.Fatalf("rec-9's configuration: %+v (%v)", c, err)
	}
	waitRetained(t, peer, c.StateTopic, `"state":"alive"`)

	// The broker restarts and has forgotten every retained message: the
	// coordinator publishes the configurations again when it reconnects.
	backup.mark()
	mq.Restart(t)
	backup.wait(30*time.Second, "msg", "bus connected")
	backup.wait(30*time.Second, "msg", "Home Assistant discovery published", "members", "main,backup")
	backup.wait(30*time.Second, "msg", "Home Assistant discovery published", "members", "rec-9")
	configs = retainedUnder(t, peer, "homeassistant/#", "homeassistant/understudy-test/marker")
	if got, want := slices.Sorted(maps.Keys(configs)), []string{configTopic("backup"), configTopic("main"), configTopic("rec-9")}; !slices.Equal(got, want) {
		t.Fatalf("after the broker's restart, retained under homeassistant/: %v, want %v", got, want)
	}
	if offBackup.has("msg", "Home Assistant discovery published") {
		t.Fatal("the site without home_assistant.discovery published discovery configurations")
	}
}
