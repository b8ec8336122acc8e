package bus

import (
	"context"
	"fmt"
	"net"
	neturl "net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Observer is a bus client that only listens (and may publish): no heartbeat,
// no Last Will. The demo, tests and show-control tools use it.
type Observer struct {
	mqtt mqtt.Client
}

// Observe connects to url, subscribes to filters and calls h for each message
// (from paho's goroutine, in order; h must not block). It waits for the first
// connection until ctx ends, and renews the subscriptions on reconnect.
func Observe(ctx context.Context, url, clientID string, filters []string, h Handler) (*Observer, error) {
	return ObserveWith(ctx, ObserveOptions{URL: url, ClientID: clientID}, filters, h)
}

// ObserveOptions say where and how an Observer connects.
type ObserveOptions struct {
	URL, ClientID string
	// Username and Password log in (a bus.users account); none: anonymous.
	Username, Password string
	// Dial opens the broker's connections (tcp:// URLs); nil: as paho does.
	Dial Dialer
	// Path is set on every message received (Message.Path), for one of
	// several observers of a site with several brokers.
	Path int
}

// Dialer opens a TCP connection to addr (host:port), for example from inside
// another network namespace.
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// ObserveVia is Observe with the broker's connections (tcp:// URLs) opened
// by dial; nil dials as Observe does.
func ObserveVia(ctx context.Context, dial Dialer, url, clientID string, filters []string, h Handler) (*Observer, error) {
	return ObserveWith(ctx, ObserveOptions{URL: url, ClientID: clientID, Dial: dial}, filters, h)
}

// ObserveWith is Observe with the options o.
func ObserveWith(ctx context.Context, o ObserveOptions, filters []string, h Handler) (*Observer, error) {
	url, clientID, dial := o.URL, o.ClientID, o.Dial
	subscribed := make(chan struct{})
	failed := make(chan error, 1)
	var once sync.Once
	// OnConnect runs on a goroutine of its own, so it may wait for the acks
	// (on every reconnect too: not bounded by ctx, which may have ended).
	subscribe := func(c mqtt.Client) {
		for _, f := range filters {
			err := subscribeChecked(context.Background(), c, f, 1, func(_ mqtt.Client, m mqtt.Message) {
				h(Message{Topic: m.Topic(), Payload: m.Payload(), Retained: m.Retained(), Path: o.Path})
			})
			if err != nil {
				select {
				case failed <- err:
				default:
				}
				return
			}
		}
		once.Do(func() { close(subscribed) })
	}
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID(clientID).
		SetCleanSession(true).SetOrderMatters(true).
		SetKeepAlive(2 * time.Second).SetPingTimeout(time.Second).
		SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(200 * time.Millisecond).SetMaxReconnectInterval(2 * time.Second).
		SetOnConnectHandler(subscribe)
	if o.Username != "" {
		opts.SetUsername(o.Username).SetPassword(o.Password)
	}
	if dial != nil {
		opts.SetCustomOpenConnectionFn(func(uri *neturl.URL, o mqtt.ClientOptions) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), o.ConnectTimeout)
			defer cancel()
			return dial(ctx, "tcp", uri.Host)
		})
	}
	c := mqtt.NewClient(opts)
	c.Connect()
	select {
	case <-ctx.Done():
		c.Disconnect(0)
		return nil, fmt.Errorf("connect to %s: %w", url, ctx.Err())
	case err := <-failed:
		c.Disconnect(0)
		return nil, fmt.Errorf("observe %s: %w", url, err)
	case <-subscribed:
		return &Observer{mqtt: c}, nil
	}
}

// Publish sends a message and waits up to a second for the broker to take it.
func (o *Observer) Publish(topic string, retained bool, payload []byte) error {
	tok := o.mqtt.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(time.Second) {
		return fmt.Errorf("publish %s: no answer from the broker", topic)
	}
	return tok.Error()
}

// Close disconnects.
func (o *Observer) Close() { o.mqtt.Disconnect(100) }
