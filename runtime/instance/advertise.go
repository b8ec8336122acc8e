package instance

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"understudy/discovery/broker"
	"understudy/discovery/mdns"
)

// advertiseAPI announces this instance's status API by mDNS (service
// ServiceInstance), and returns the advertisement, or nil when there is
// none. An API that listens on loopback only (the default, 127.0.0.1:7901)
// cannot be reached by peers: it is not announced, and the instance says so
// once, with what to change.
func (inst *Instance) advertiseAPI() *mdns.Advertisement {
	addr := inst.api.Addr().String()
	ip, port := splitListen(addr)
	txt := map[string]string{"site": inst.site.Name, "member": inst.opts.Self, "version": inst.opts.Version, "roles": strings.Join(inst.member.Roles, ",")}
	svc := mdns.Service{Instance: inst.site.Name + "-" + inst.opts.Self, Service: ServiceInstance, Port: port, TXT: txt, Bound: ip}
	adv, err := mdns.Advertise(svc, inst.log)
	switch {
	case errors.Is(err, mdns.ErrLoopback):
		inst.log.Warn(fmt.Sprintf("status API listens on %s (loopback): not announced by mDNS; set the member's api: to a LAN address for peers to find it", addr), "api", addr)
		return nil
	case err != nil:
		inst.log.Warn("cannot advertise this instance by mDNS", "error", err)
		return nil
	}
	return adv
}

// advertiseBroker announces the embedded broker by mDNS (service
// ServiceBroker), and returns the advertisement, or nil when there is none.
// A broker that listens on loopback only is not announced (peers could not
// reach it); the instance says so once.
func (inst *Instance) advertiseBroker(b *broker.Broker) *mdns.Advertisement {
	svc, setting := brokerAdvert(b.PlainAddr(), b.TLSAddr(), inst.site.Name, inst.opts.Self)
	adv, err := mdns.Advertise(svc, inst.log)
	switch {
	case errors.Is(err, mdns.ErrLoopback):
		addr := net.JoinHostPort(svc.Bound.String(), strconv.Itoa(svc.Port))
		inst.log.Warn(fmt.Sprintf("embedded broker listens on %s (loopback): not announced by mDNS; set %s to a LAN address for peers to find it", addr, setting), "listen", addr)
		return nil
	case err != nil:
		inst.log.Warn("cannot advertise the broker by mDNS; other members need bus.url", "error", err)
		return nil
	}
	return adv
}

// txtTLS is the TXT attribute of the broker's mDNS advertisement that gives
// the port of its TLS listener.
const txtTLS = "tls"

// brokerAdvert is the mDNS advertisement of the embedded broker with a plain
// listener on plainAddr and a TLS one on tlsAddr ("" when it has none), and
// the setting of the listener it announces ("bus.listen" or
// "bus.listen_tls").
//
// It announces the plain listener's port, and the TLS listener's port in TXT
// tls=PORT; the TLS port alone when there is no plain listener, or when only
// the plain one is bound to loopback (peers reach the broker over TLS). A
// listener bound to loopback is unreachable for peers: its port is not in
// TXT, and when both are (or the only one is), the advertisement is bound to
// loopback, which mdns.Advertise refuses.
func brokerAdvert(plainAddr, tlsAddr, site, self string) (mdns.Service, string) {
	txt := map[string]string{"site": site, "member": self}
	svc := mdns.Service{Instance: site + "-broker", Service: ServiceBroker, TXT: txt}
	plainIP, plainPort := splitListen(plainAddr)
	tlsIP, tlsPort := splitListen(tlsAddr)
	tlsReachable := tlsAddr != "" && !tlsIP.IsLoopback()
	if tlsReachable {
		txt[txtTLS] = strconv.Itoa(tlsPort)
	}
	if plainAddr != "" && (!plainIP.IsLoopback() || !tlsReachable) {
		svc.Port, svc.Bound = plainPort, plainIP
		return svc, "bus.listen"
	}
	svc.Port, svc.Bound = tlsPort, tlsIP
	return svc, "bus.listen_tls"
}

// splitListen splits a listener's address ("127.0.0.1:7901", "[::]:1883")
// into its IP (nil when the host part is empty) and port.
func splitListen(addr string) (net.IP, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0
	}
	p, _ := strconv.Atoi(port)
	return net.ParseIP(host), p
}
