// Package daemon is `wiz daemon`: the Manager served over gRPC on TCP with
// TLS and bearer-token authentication, for many clients at once. It also
// serves gRPC health checks (without a token, for probes) and server
// reflection (with one), so grpcurl works.
package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/internal/managerapi"
	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk"
)

// Config configures a daemon.
type Config struct {
	Listen  string
	DataDir string
	// CertFile and KeyFile are the user's TLS identity; empty: a self-signed
	// one kept in DataDir.
	CertFile, KeyFile string
	// AdminToken, when set, is the admin token's secret on first start.
	AdminToken string
	// Grace is how long SIGTERM lets running runs go on before they are
	// cancelled.
	Grace   time.Duration
	Manager *manager.Manager
	Store   *store.Store
	Logger  hclog.Logger
	// Out receives what a user must see once: the fingerprint, the admin token.
	Out io.Writer
	// HTTP serves the non-gRPC requests of the daemon's port (webhooks);
	// nil: 404.
	HTTP http.Handler
	// PublicURL is the base of webhook URLs; empty: https://LISTEN_ADDRESS.
	// Also is told it (the unix socket's server).
	PublicURL string
	Also      *managerapi.Server
	// Ready is called with the address once the daemon accepts calls.
	Ready func(addr string)
}

// Run serves until ctx is done, then stops taking calls, lets running runs
// go on for the grace period, leaves what is left Running for the next start
// (a Manager that continues runs) or cancels it, and returns. It stops so
// too, and returns the store's UnwritableError, when the store's disk
// refuses writes.
func Run(ctx context.Context, cfg Config) error {
	cert, fingerprint, err := identity(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(cfg.Out, "wiz daemon: TLS certificate sha256 fingerprint %s\n", fingerprint)
	if err := bootstrap(cfg); err != nil {
		return err
	}
	a := &auth{st: cfg.Store, now: time.Now}
	// One TLS port (shared/DESIGN.md): gRPC and HTTP (webhooks) on one
	// listener. An http.Server terminates TLS and HTTP/2 and hands gRPC
	// requests to the gRPC server.
	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(sdk.MaxMessageSize), grpc.MaxSendMsgSize(sdk.MaxMessageSize),
		grpc.UnaryInterceptor(a.unary), grpc.StreamInterceptor(a.stream),
	)
	api := managerapi.NewServer(cfg.Manager)
	api.Register(gs)
	wizrpc.RegisterTokensServer(gs, &tokens{st: cfg.Store})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("daemon: listen on %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				gs.ServeHTTP(w, r)
				return
			}
			if cfg.HTTP != nil {
				cfg.HTTP.ServeHTTP(w, r)
				return
			}
			http.NotFound(w, r)
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          cfg.Logger.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(lis, "", "") }() // ends with Shutdown or Close below
	cfg.Logger.Info("serving the Manager API", "address", lis.Addr().String())
	public := cfg.PublicURL
	if public == "" {
		public = "https://" + lis.Addr().String()
	}
	api.SetPublicURL(public)
	if cfg.Also != nil {
		cfg.Also.SetPublicURL(public)
	}
	if cfg.Ready != nil {
		cfg.Ready(lis.Addr().String())
	}
	var failed error // the store's disk refuses writes: stop, and say so
	select {
	case err := <-errc:
		return fmt.Errorf("daemon: serve: %w", err)
	case <-ctx.Done():
	case <-cfg.Store.Unwritable():
		failed = cfg.Store.Failed()
		cfg.Logger.Error("stopping: the store cannot be written", "error", failed)
	}
	// Stop: no new calls or runs; running runs get the grace period.
	hs.Shutdown()
	api.Drain()
	lis.Close()
	cfg.Logger.Info("stopping: no new runs; waiting for running ones", "grace", cfg.Grace)
	gctx, cancel := context.WithTimeout(context.Background(), cfg.Grace)
	defer cancel()
	if err := cfg.Manager.WaitIdle(gctx); err != nil {
		// Runs still going: left Running for the next start to continue
		// (--on-restart continue), or cancelled.
		if cfg.Manager.Continues() {
			for _, id := range cfg.Manager.SuspendAll() {
				cfg.Logger.Warn("left a run still going after the grace period to the next start", "run", id)
			}
		}
		for _, id := range cfg.Manager.Live() {
			cfg.Logger.Warn("cancelling a run still going after the grace period", "run", id)
			_, _ = cfg.Manager.Cancel(id)
		}
	}
	api.Wait()
	sctx, cancelStop := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelStop()
	if err := srv.Shutdown(sctx); err != nil { // watchers' streams may hold on
		_ = srv.Close()
	}
	gs.Stop()
	<-errc
	return failed
}

// bootstrap makes the first admin token when there is none, printing its
// secret once (or taking it from the config, for unattended setups).
func bootstrap(cfg Config) error {
	all, err := cfg.Store.Tokens()
	if err != nil {
		return fmt.Errorf("daemon: read tokens: %w", err)
	}
	for _, t := range all {
		if t.Role == wizpb.Role_ROLE_ADMIN && !t.Revoked {
			return nil
		}
	}
	if cfg.AdminToken != "" {
		if _, _, err := create(cfg.Store, "admin", wizpb.Role_ROLE_ADMIN, 0, cfg.AdminToken); err != nil {
			return err
		}
		fmt.Fprintln(cfg.Out, "wiz daemon: admin token taken from the configuration")
		return nil
	}
	_, secret, err := create(cfg.Store, "admin", wizpb.Role_ROLE_ADMIN, 0, "")
	if err != nil {
		return err
	}
	fmt.Fprintf(cfg.Out, "wiz daemon: admin token (shown once; keep it safe): %s\n", secret)
	return nil
}

// identity loads the user's TLS key pair, or the daemon's self-signed one,
// making it on first start.
func identity(cfg Config) (tls.Certificate, string, error) {
	certFile, keyFile := cfg.CertFile, cfg.KeyFile
	if certFile == "" {
		certFile, keyFile = filepath.Join(cfg.DataDir, "tls.crt"), filepath.Join(cfg.DataDir, "tls.key")
		if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
			if err := selfSigned(certFile, keyFile, cfg.Listen); err != nil {
				return tls.Certificate{}, "", fmt.Errorf("daemon: make a TLS certificate: %w", err)
			}
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("daemon: load TLS key pair %s, %s: %w", certFile, keyFile, err)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	return cert, hex.EncodeToString(sum[:]), nil
}

func selfSigned(certFile, keyFile, listen string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "wiz daemon"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
		DNSNames:    []string{"localhost", host},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if h, _, err := net.SplitHostPort(listen); err == nil && h != "" {
		if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if ip == nil && !strings.Contains(h, ":") {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}
