// Package testcluster starts a real etcd and kube-apiserver on 127.0.0.1 for
// the Kubernetes executor's tests. The binaries are built and cached by
// scripts/k8s-testbin.sh (make test runs it); nothing here is a fake.
//
// The API server authorizes with RBAC. Two users exist: "admin" (group
// system:masters) and the service account system:serviceaccount:NS:wiz, so a
// test can check that deploy/'s Role is enough for the backend.
package testcluster

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Pinned must match scripts/k8s-testbin.sh.
const (
	KubeVersion = "v1.37.2"
	EtcdVersion = "v3.6.16"
)

// ServiceAccountNamespace and ServiceAccountName name the non-admin user.
const (
	ServiceAccountNamespace = "wiz"
	ServiceAccountName      = "wiz"
)

// BinDir returns the directory holding etcd and kube-apiserver, or an error
// that says how to make them.
func BinDir() (string, error) {
	dir := os.Getenv("WIZ_K8S_TESTBIN")
	if dir == "" {
		root := os.Getenv("WIZ_TEST_TOOLS")
		if root == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("find the test tools cache: %w", err)
			}
			root = filepath.Join(home, ".cache", "wiz-test-tools")
		}
		dir = filepath.Join(root, "k8s-"+KubeVersion+"-etcd-"+EtcdVersion)
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("no %s in %s: run scripts/k8s-testbin.sh (make test does; 15-30 min the first time on 2 cores) or set WIZ_K8S_TESTBIN to a directory holding etcd and kube-apiserver", b, dir)
		}
	}
	return dir, nil
}

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	// Dir holds the cluster's files; Kubeconfig is a kubeconfig in it with the
	// contexts "admin" (current) and "wiz" (the service account user).
	Dir        string
	Kubeconfig string
	// Admin is a client with every right.
	Admin *kubernetes.Clientset
	// AdminConfig is Admin's rest config.
	AdminConfig *rest.Config

	procs []*exec.Cmd
	done  []chan struct{}
}

// Start starts etcd and kube-apiserver in dir and waits until the API server
// is ready. Call Stop when done.
func Start(dir string) (c *Cluster, err error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	c = &Cluster{Dir: dir}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	if err := c.start(filepath.Join(bin, "etcd"), "etcd",
		"--name=default", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL, "--unsafe-no-fsync", "--log-level=warn"); err != nil {
		return nil, err
	}

	adminToken, wizToken := randHex(), randHex()
	tokens := filepath.Join(dir, "tokens.csv")
	saUser := "system:serviceaccount:" + ServiceAccountNamespace + ":" + ServiceAccountName
	if err := os.WriteFile(tokens, []byte(fmt.Sprintf("%s,admin,admin,system:masters\n%s,%s,wiz-sa,\"system:serviceaccounts,system:serviceaccounts:%s,system:authenticated\"\n",
		adminToken, wizToken, saUser, ServiceAccountNamespace)), 0o600); err != nil {
		return nil, err
	}
	saKey := filepath.Join(dir, "sa.key")
	if err := writeRSAKey(saKey); err != nil {
		return nil, err
	}
	port := ports[2]
	if err := c.start(filepath.Join(bin, "kube-apiserver"), "kube-apiserver",
		"--etcd-servers="+etcdURL, "--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port),
		"--cert-dir="+filepath.Join(dir, "certs"), "--endpoint-reconciler-type=none",
		"--token-auth-file="+tokens, "--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file="+saKey,
		"--service-account-signing-key-file="+saKey, "--disable-admission-plugins=ServiceAccount",
		"--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true"); err != nil {
		return nil, err
	}
	host := "https://127.0.0.1:" + strconv.Itoa(port)
	if err := waitReady(host, adminToken, c.done[1], filepath.Join(dir, "kube-apiserver.log")); err != nil {
		return nil, err
	}

	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: host, InsecureSkipTLSVerify: true}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: adminToken}
	kc.AuthInfos["wiz"] = &clientcmdapi.AuthInfo{Token: wizToken}
	kc.Contexts["admin"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	kc.Contexts["wiz"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "wiz"}
	kc.CurrentContext = "admin"
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, c.Kubeconfig); err != nil {
		return nil, err
	}
	c.AdminConfig = &rest.Config{Host: host, BearerToken: adminToken, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 100, Burst: 200}
	if c.Admin, err = kubernetes.NewForConfig(c.AdminConfig); err != nil {
		return nil, err
	}
	return c, nil
}

// start runs a binary with its output in DIR/NAME.log; it dies with the test.
func (c *Cluster) start(path, name string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { // reaps the process
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	c.procs = append(c.procs, cmd)
	c.done = append(c.done, done)
	return nil
}

// Stop ends the API server, then etcd, and waits for both.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		_ = c.procs[i].Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done[i]:
		case <-time.After(10 * time.Second):
			_ = c.procs[i].Process.Kill()
			<-c.done[i]
		}
	}
	c.procs, c.done = nil, nil
}

// waitReady polls /readyz until it answers ok, the process exits, or 60 s pass.
func waitReady(host, token string, exited <-chan struct{}, logPath string) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("kube-apiserver exited while starting; its log ends:\n%s", tail(logPath, 20))
		default:
		}
		req, _ := http.NewRequest("GET", host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready within 60 s; its log ends:\n%s", tail(logPath, 20))
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func writeRSAKey(path string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
}

func randHex() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
