// Package mdns advertises and browses DNS-SD services over multicast DNS
// (RFC 6762, RFC 6763), in the domain "local.", over IPv4.
//
// understudy uses two service types: "_understudy._tcp" for each instance
// (TXT site=<site>, member=<id>, version=<version>, roles=<roles>) and
// "_mqtt._tcp" for an embedded broker (TXT site=<site>, member=<id>, and
// tls=<port> when it has a TLS listener).
//
// mDNS finds peers and brokers; it is not a liveness signal. What a user of
// this package must know:
//
// Advertising (Advertise) runs a responder of this package's own, with
// github.com/miekg/dns for the wire format:
//   - It shares UDP port 5353 with the host's other mDNS stacks (Avahi,
//     systemd-resolved, Bonjour; SO_REUSEADDR and SO_REUSEPORT) and joins the
//     group 224.0.0.251 on every interface that is up, multicast-capable and
//     not loopback. It lists the interfaces again every few seconds, so an
//     interface or address that appears later (DHCP, a cable plugged in) is
//     answered on and announced, and one that goes is left.
//   - A query arriving on an interface is answered with that interface's
//     own IPv4 addresses in the A records (Service.IPs overrides them;
//     Service.Bound restricts the answers to the interface of the listener's
//     address). A service whose listener is bound to loopback is refused with
//     ErrLoopback: other hosts cannot reach it.
//   - Answers go by multicast to 224.0.0.251:5353, so every host's cache,
//     and other mDNS stacks on this host, hear them; by unicast only for
//     questions with the unicast-response bit (QU) or queries sent to this
//     host's address, and by legacy unicast (the query id and question
//     echoed, TTL 10 s) to queriers that ask from a port other than 5353,
//     such as this package's Browse. A QU question from this host itself is
//     answered by multicast (a unicast to port 5353 would reach just one of
//     the stacks sharing it). Multicast answers with shared records (PTR) wait
//     20-120 ms, as RFC 6762 §6 asks; a record is multicast at most once a
//     second per interface.
//   - Records: the service's PTR (service type → instance), SRV (instance →
//     "<host>.local.", port), TXT, the host's A records, and a PTR under
//     "_services._dns-sd._udp.local." for service type enumeration. A PTR
//     answer carries SRV, TXT and A in the additional section. Multicast and
//     QU answers set the cache-flush bit on SRV, TXT and A. Every record has a
//     TTL of 120 s (the RFC suggests 75 minutes for PTR and TXT; instances
//     that crash without a goodbye should leave caches within two minutes).
//   - On start, and on a new interface, the records are announced unsolicited
//     twice, a second apart (RFC 6762 §8.3). Close multicasts goodbyes (PTR,
//     SRV and TXT with TTL 0; the host's A records stay, the host may publish
//     them for other services) so that caches drop the service at once.
//   - Hostile input: packets over 9000 bytes, with more than 32 questions or
//     128 known answers, responses, non-zero opcodes or rcodes, and queries
//     from off the link are ignored; authority and additional sections are
//     never read. An answer holds each record once, however many questions
//     asked for it, and unicast answers are limited to 50 a second.
//   - Not implemented: probing and conflict resolution (instance and host
//     names must be unique on the network), IPv6, NSEC negative answers,
//     duplicate-answer suppression and merging known answers spread over
//     several packets of one query.
//
// Browsing (Browse, Find) is this package's own one-shot querier (RFC 6762
// §6.7): each round it asks from a socket on a random port, without the
// unicast-response bit, out of every up, multicast-capable, non-loopback
// interface that has an IPv4 address, chosen by index as the responder
// sends: not where the routing table sends 224.0.0.0/4, and with no route
// needed. Responders answer such a query by unicast to that port, so the
// answer reaches the asking socket alone, also from a responder on the same
// host (port 5353, shared by the host's mDNS stacks, is not involved). It
// asks again for SRV, TXT or A records an answer lacked, collects the
// answers for whole rounds, then returns; it keeps no cache and hears no
// announcements, so a closed advertisement is not found any more.
// Advertisements of this package answer such queries at once; Avahi answers
// after 20-120 ms. A timeout of a second is plenty on a LAN; Find returns at
// the end of the first round that saw a match. A browser takes one address per
// instance: the last A record of the answers that is on the link of one of
// its interfaces, else the last (answers to a querier put the addresses of
// its subnet last).
package mdns
