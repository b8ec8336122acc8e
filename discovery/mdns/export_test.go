package mdns

// HostLabel is the label a host name is published under, for the external
// tests.
var HostLabel = hostLabel
