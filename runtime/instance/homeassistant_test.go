package instance

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestHomeAssistantConfig(t *testing.T) {
	topic, payload, err := homeAssistantConfig("homeassistant", "stage", "backup", "rec.9-A", "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if want := "homeassistant/binary_sensor/understudy_stage_rec_9-A/config"; topic != want {
		t.Errorf("topic = %q, want %q", topic, want)
	}
	var got map[string]any
	if err := json.Unmarshal(payload, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name":                  "rec.9-A",
		"unique_id":             "understudy_stage_rec.9-A",
		"object_id":             "understudy_stage_rec_9_a",
		"default_entity_id":     "binary_sensor.understudy_stage_rec_9_a",
		"device_class":          "connectivity",
		"state_topic":           "understudy/stage/member/rec.9-A/state",
		"value_template":        "{{ 'ON' if value_json.state in ['alive', 'suspect'] else 'OFF' }}",
		"payload_on":            "ON",
		"payload_off":           "OFF",
		"json_attributes_topic": "understudy/stage/member/rec.9-A/state",
		"qos":                   1.0,
		"availability": []any{map[string]any{
			"topic":                 "understudy/stage/member/backup/presence",
			"value_template":        "{{ 'online' if value_json.state == 'online' else 'offline' }}",
			"payload_available":     "online",
			"payload_not_available": "offline",
		}},
		"device": map[string]any{
			"identifiers":  []any{"understudy_stage"},
			"name":         "understudy stage",
			"manufacturer": "understudy",
			"model":        "failover site",
			"sw_version":   "1.2.3",
		},
		"origin": map[string]any{"name": "understudy", "sw_version": "1.2.3"},
	}
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected key %s = %v", k, got[k])
		}
	}

	// Another prefix; no version: no empty sw_version.
	topic, payload, err = homeAssistantConfig("ha/stage", "hall", "mgr", "main", "")
	if err != nil {
		t.Fatal(err)
	}
	if topic != "ha/stage/binary_sensor/understudy_hall_main/config" {
		t.Errorf("topic = %q", topic)
	}
	var bare struct {
		Device map[string]any `json:"device"`
		Origin map[string]any `json:"origin"`
	}
	json.Unmarshal(payload, &bare)
	if _, ok := bare.Device["sw_version"]; ok {
		t.Errorf("device with an empty version: %v", bare.Device)
	}
	if _, ok := bare.Origin["sw_version"]; ok {
		t.Errorf("origin with an empty version: %v", bare.Origin)
	}
}

func TestHomeAssistantNames(t *testing.T) {
	for in, want := range map[string][2]string{
		"understudy_stage_main":      {"understudy_stage_main", "understudy_stage_main"},
		"understudy_show-a_Rec.9":    {"understudy_show-a_Rec_9", "understudy_show_a_rec_9"},
		"understudy_s__x.-y_":        {"understudy_s__x_-y_", "understudy_s_x_y"},
		"understudy_hall_Ünïcode-1":  {"understudy_hall__n_code-1", "understudy_hall_n_code_1"},
		"understudy_hall_9":          {"understudy_hall_9", "understudy_hall_9"},
		"understudy_hall_--lead.end": {"understudy_hall_--lead_end", "understudy_hall_lead_end"},
	} {
		if got := haTopicID(in); got != want[0] {
			t.Errorf("haTopicID(%q) = %q, want %q", in, got, want[0])
		}
		if got := haSlug(in); got != want[1] {
			t.Errorf("haSlug(%q) = %q, want %q", in, got, want[1])
		}
	}
}
