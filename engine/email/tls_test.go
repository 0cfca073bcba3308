package email

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine/email/smtptest"
)

// selfSigned returns a server TLS config for 127.0.0.1 and a pool that
// trusts it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "nudge test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// TestSendTLSWithAuth sends with a password over STARTTLS and over implicit
// TLS; the server accepts AUTH only on an encrypted connection.
func TestSendTLSWithAuth(t *testing.T) {
	const user, pass = "nudge", "s3cret"
	serverTLS, roots := selfSigned(t)
	tests := []struct {
		name string
		opt  smtptest.Option
		mode string
	}{
		{"starttls mandatory", smtptest.WithTLS(serverTLS), TLSMandatory},
		{"starttls opportunistic", smtptest.WithTLS(serverTLS), TLSOpportunistic},
		{"implicit", smtptest.WithImplicitTLS(serverTLS), TLSImplicit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, tt.opt, smtptest.WithAuth(user, pass))
			s := newSender(t, srv, func(c *Config) { c.TLS, c.Username, c.Password = tt.mode, user, pass })
			s.roots = roots
			if _, err := s.Send(context.Background(), Message{To: "ana@example.org", Subject: "s", Text: "x"}); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if m := srv.Messages(); len(m) != 1 || m[0].AuthUser != user {
				t.Errorf("received %d messages (auth %+v), want one from %s", len(m), m, user)
			}
		})
	}
}

// TestSendUntrustedCertificate: a certificate nudge does not trust stops the
// send before any password is sent.
func TestSendUntrustedCertificate(t *testing.T) {
	serverTLS, _ := selfSigned(t)
	srv := startServer(t, smtptest.WithImplicitTLS(serverTLS), smtptest.WithAuth("nudge", "pw"))
	s := newSender(t, srv, func(c *Config) { c.TLS, c.Username, c.Password = TLSImplicit, "nudge", "pw" })
	_, err := s.Send(context.Background(), Message{To: "ana@example.org", Text: "x"})
	if err == nil || IsPermanent(err) {
		t.Fatalf("Send to an untrusted server: %v, want a temporary error", err)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("server received %d messages", n)
	}
}

func TestPort465MeansImplicitTLS(t *testing.T) {
	for _, mode := range []string{"", TLSMandatory, TLSOpportunistic} {
		s, err := New(Config{Host: "smtp.example.edu", Port: 465, From: testFrom, TLS: mode}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Config().TLS; got != TLSImplicit {
			t.Errorf("port 465 with tls %q: mode %q, want %q", mode, got, TLSImplicit)
		}
	}
	s, err := New(Config{Host: "127.0.0.1", Port: 465, From: testFrom, TLS: TLSNone}, nil)
	if err != nil || s.Config().TLS != TLSNone {
		t.Errorf("port 465 with tls none: %v %v", s, err)
	}
}
