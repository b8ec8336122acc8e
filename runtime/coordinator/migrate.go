package coordinator

import (
	"fmt"
	"slices"

	"understudy/runtime/store"
	"understudy/runtime/takeover"
)

// stateMetaKeys are the coordinator's keys in the bucket "meta", which it
// shares with the instance (its boot count).
var stateMetaKeys = []string{"epoch", "action_seq", "state_id", "inbox_seq", "timer_seq"}

// StateBuckets are the buckets of the coordinator's state: what a site that
// elects its coordinator replicates among the candidates ("meta" holds only
// stateMetaKeys of it).
func StateBuckets() []string {
	return append([]string{bucketActions, bucketAlarms, bucketConfigs, bucketDrills, bucketInbox, bucketMemberDeliveries,
		bucketQuarantine, bucketRouting, bucketTimers, bucketPolicyState, "meta"}, takeover.Buckets()...)
}

// CopyState copies the coordinator's state from one store (an instance's
// state file of a site whose coordinator was named in site.yaml) into tx
// (the first state of an elected coordinator), and reports whether there
// was any: the coordinator's epoch, its actions with their answers,
// coverage, timers, inbox, alarms and the rest go on where they were.
func CopyState(from *store.Store, tx *store.Tx) (bool, error) {
	found := false
	err := from.View(func(src *store.Tx) error {
		for _, b := range StateBuckets() {
			err := src.Each(b, func(key string, value []byte) error {
				if b == "meta" && !slices.Contains(stateMetaKeys, key) {
					return nil
				}
				found = true
				return tx.PutRaw(b, key, value)
			})
			if err != nil {
				return fmt.Errorf("copy the coordinator's %s: %w", b, err)
			}
		}
		return nil
	})
	return found, err
}

// ClearState removes the coordinator's state from a store (the instance's
// own, once an elected coordinator took it over).
func ClearState(st *store.Store) error {
	return st.Update(func(tx *store.Tx) error {
		for _, b := range StateBuckets() {
			if b == "meta" {
				for _, k := range stateMetaKeys {
					if err := tx.Delete(b, k); err != nil {
						return err
					}
				}
				continue
			}
			if err := tx.Clear(b); err != nil {
				return err
			}
		}
		return nil
	})
}
