package broker

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// ServerTLS reads the TLS listener's certificate and key (PEM files) and,
// when clientCAFile is given, the CA(s) whose client certificates the
// listener requires: a client without one signed by them is refused during
// the handshake.
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("broker: TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("broker: client CA: %w", err)
		}
		c.ClientCAs = x509.NewCertPool()
		if !c.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker: client CA %s: no PEM certificate in it", clientCAFile)
		}
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// LocalURL is the URL with which this process reaches its own broker: the
// plain listener if there is one (tcp://), else the TLS listener (ssl://, see
// LocalTLS). A listener on every interface is reached on loopback.
func (b *Broker) LocalURL() string {
	if b.ln != nil {
		return "tcp://" + loopback(b.ln.Addr().String())
	}
	return "ssl://" + loopback(b.TLSAddr())
}

// loopback replaces an unspecified host (":1883", "0.0.0.0:1883",
// "[::]:1883") by 127.0.0.1.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// LocalTLS returns the TLS configuration with which this process connects to
// its own broker's TLS listener (LocalURL). It trusts exactly the
// certificates the listener was given, whatever names and CA they carry: the
// connection goes to this process, over loopback, where the certificate's
// names need not match. clientCerts are presented when the listener requires
// a client certificate. Nil when the broker has no TLS listener.
func (b *Broker) LocalTLS(clientCerts []tls.Certificate) *tls.Config {
	if b.tls == nil {
		return nil
	}
	var own [][]byte
	for _, c := range b.tls.Certificates {
		if len(c.Certificate) > 0 {
			own = append(own, c.Certificate[0])
		}
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: clientCerts,
		// The usual chain and name checks are replaced by VerifyConnection,
		// which accepts only the listener's own certificate.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("broker: the local TLS listener presented no certificate")
			}
			for _, raw := range own {
				if bytes.Equal(cs.PeerCertificates[0].Raw, raw) {
					return nil
				}
			}
			return errors.New("broker: the local TLS listener presented a certificate that is not its own")
		},
	}
}
