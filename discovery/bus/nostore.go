package bus

import "github.com/eclipse/paho.mqtt.golang/packets"

// noStore is a paho message store that keeps nothing, so that paho never
// sends a message of an earlier connection again after a reconnect.
//
// paho's own (memory) store resends the QoS 1 publishes that were not
// acknowledged when a connection ended; doing so it races with the ending
// connection's goroutines (seen under load as a data race on the packet and
// "panic: close of closed channel" in messageIds.claimID, which killed an
// instance when its broker restarted). Nothing here needs paho's resend:
// what must arrive is sent again by its sender until it is answered
// (commands until acknowledged, and a resent command is answered from the
// member's record), and what is retained (presence, health, config, the
// coordinator's states) is published again on every connect.
type noStore struct{}

func (noStore) Open()                             {}
func (noStore) Put(string, packets.ControlPacket) {}
func (noStore) Get(string) packets.ControlPacket  { return nil }
func (noStore) All() []string                     { return nil }
func (noStore) Del(string)                        {}
func (noStore) Close()                            {}
func (noStore) Reset()                            {}
