package bus

import (
	"context"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// subscribeAttempts bounds how often a refused subscription is sent again.
const subscribeAttempts = 10

// subscribeChecked subscribes to filter and checks the broker's answer,
// which paho does not: a broker refuses a subscription in the SUBACK's
// reason code, not with an error. The embedded broker (mochi-mqtt 2.7)
// refuses a SUBSCRIBE whose packet id equals that of a QoS 1 message it is
// still delivering to this client ("packet identifier in use", 0x91) — which
// happens when the retained messages of one subscription are in flight while
// the next is sent. A refused subscription is sent again (with a new packet
// id) after a short pause, up to subscribeAttempts times.
func subscribeChecked(ctx context.Context, c mqtt.Client, filter string, qos byte, cb mqtt.MessageHandler) error {
	for attempt := 1; ; attempt++ {
		tok := c.Subscribe(filter, qos, cb)
		if !tok.WaitTimeout(5 * time.Second) {
			return fmt.Errorf("subscribe %s: no answer from the broker", filter)
		}
		if err := tok.Error(); err != nil {
			return fmt.Errorf("subscribe %s: %w", filter, err)
		}
		code, ok := tok.(*mqtt.SubscribeToken).Result()[filter]
		if ok && code < 0x80 {
			return nil
		}
		if attempt == subscribeAttempts {
			return fmt.Errorf("subscribe %s: the broker refused it %d times (reason code 0x%02x)", filter, attempt, code)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("subscribe %s: %w", filter, ctx.Err())
		case <-time.After(time.Duration(attempt) * 10 * time.Millisecond):
		}
	}
}
