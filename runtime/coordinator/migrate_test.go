package coordinator_test

import (
	"path/filepath"
	"testing"

	"understudy/runtime/coordinator"
	"understudy/runtime/store"
)

// The coordinator's state moves from an instance's state file into the
// first state of an elected coordinator, byte for byte, without the
// instance's own keys; cleared, it is gone from the instance's file and
// the instance's own keys stay.
func TestTheCoordinatorsStateIsCopiedAndCleared(t *testing.T) {
	dir := t.TempDir()
	open := func(name string) *store.Store {
		st, err := store.Open(filepath.Join(dir, name), store.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	from, to := open("instance.db"), open("coordinator.db")
	err := from.Update(func(tx *store.Tx) error {
		if _, err := tx.Increment("meta", "epoch"); err != nil {
			return err
		}
		for _, kv := range [][3]string{{"meta", "boot_count", "7"}, {"meta", "state_id", `"abc"`}, {"coverage", "main", `{"standby":"backup"}`},
			{"actions", "c-1", `{"id":"c-1"}`}, {"agent_received", "c-1", `{}`}, {"routing", "router", `{"1":3}`}} {
			if err := tx.PutRaw(kv[0], kv[1], []byte(kv[2])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	if err := to.Update(func(tx *store.Tx) error {
		var err error
		found, err = coordinator.CopyState(from, tx)
		return err
	}); err != nil || !found {
		t.Fatalf("copy: found %v, %v", found, err)
	}
	to.View(func(tx *store.Tx) error {
		if tx.Counter("meta", "epoch") != 1 {
			t.Error("the epoch did not come")
		}
		for _, want := range [][2]string{{"meta", "state_id"}, {"coverage", "main"}, {"actions", "c-1"}, {"routing", "router"}} {
			var v any
			if ok, err := tx.Get(want[0], want[1], &v); !ok || err != nil {
				t.Errorf("%s/%s did not come: %v", want[0], want[1], err)
			}
		}
		for _, unwanted := range [][2]string{{"meta", "boot_count"}, {"agent_received", "c-1"}} {
			var v any
			if ok, _ := tx.Get(unwanted[0], unwanted[1], &v); ok {
				t.Errorf("the instance's own %s/%s came too", unwanted[0], unwanted[1])
			}
		}
		return nil
	})
	if err := coordinator.ClearState(from); err != nil {
		t.Fatal(err)
	}
	from.View(func(tx *store.Tx) error {
		var v any
		if ok, _ := tx.Get("coverage", "main", &v); ok || tx.Counter("meta", "epoch") != 0 {
			t.Error("the coordinator's state stayed in the instance's file")
		}
		if ok, _ := tx.Get("meta", "boot_count", &v); !ok {
			t.Error("the instance's boot count was cleared")
		}
		if ok, _ := tx.Get("agent_received", "c-1", &v); !ok {
			t.Error("the agent's record was cleared")
		}
		return nil
	})
	var again bool
	to.Update(func(tx *store.Tx) error { again, _ = coordinator.CopyState(from, tx); return nil })
	if again {
		t.Error("a cleared file still has a coordinator's state to copy")
	}
}
