package executor_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"testing"

	"github.com/wiz-run/wiz/sdk/executor"
)

func TestSelfSigned(t *testing.T) {
	certPEM, keyPEM, err := executor.SelfSigned("wiz-executor", net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("certificate and key do not pair: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("certificate is not usable as a trust anchor")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"wiz-executor", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other"}); err == nil {
		t.Error("certificate verifies for a name it was not made for")
	}
}

// A backend makes a fresh identity per executor and tells the Manager to
// trust exactly it.
func ExampleSelfSigned() {
	certPEM, keyPEM, err := executor.SelfSigned("wiz-executor")
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = keyPEM // written for the executor's --tls-key
	ep := executor.Endpoint{Address: "10.0.0.7:7443", CACertPEM: certPEM, ServerName: "wiz-executor"}
	fmt.Println(ep.ServerName)
	// Output: wiz-executor
}
