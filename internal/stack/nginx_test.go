package stack

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeSelfSigned writes a self-signed certificate for name with the given
// serial, and its key, to dir/tls.crt and dir/tls.key.
func writeSelfSigned(t *testing.T, dir, name string, serial int64) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := x509.MarshalPKCS8PrivateKey(k)
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// servedSerial connects to addr with TLS (SNI name) and returns the serial
// of the certificate it presents.
func servedSerial(addr, name string) (int64, error) {
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, InsecureSkipVerify: true}) // the test checks the serial, not trust
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

// nginx serves the files it is given, and serves new files after its
// reload command ran.
func TestNginxServesAndReloads(t *testing.T) {
	t.Parallel()
	certs := t.TempDir()
	writeSelfSigned(t, certs, "shop.example.test", 1)
	n, err := StartNginx(t.TempDir(), filepath.Join(certs, "tls.crt"), filepath.Join(certs, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Stop() })
	if got, err := servedSerial(n.Addr, "shop.example.test"); err != nil || got != 1 {
		t.Fatalf("served serial %d, %v; nginx output:\n%s", got, err, n.Output())
	}
	writeSelfSigned(t, certs, "shop.example.test", 2)
	if got, _ := servedSerial(n.Addr, "shop.example.test"); got != 1 {
		t.Fatalf("nginx served serial %d before a reload", got)
	}
	out, err := exec.Command("/bin/sh", "-c", n.ReloadCommand()).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", n.ReloadCommand(), err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := servedSerial(n.Addr, "shop.example.test")
		if err == nil && got == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the reload nginx serves serial %d (%v); output:\n%s", got, err, n.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := servedSerial(n.Addr, "shop.example.test"); err == nil {
		t.Error("nginx still answers after Stop")
	}
}

// A missing key file is an error quoting nginx's own message.
func TestNginxStartError(t *testing.T) {
	t.Parallel()
	certs := t.TempDir()
	writeSelfSigned(t, certs, "shop.example.test", 1)
	_, err := StartNginx(t.TempDir(), filepath.Join(certs, "tls.crt"), filepath.Join(certs, "missing.key"))
	if err == nil || !strings.Contains(err.Error(), "missing.key") {
		t.Fatalf("StartNginx with a missing key: %v", err)
	}
}

// Without nginx the error says how to install it.
func TestNginxMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	old := nginxFallbackPath
	nginxFallbackPath = filepath.Join(t.TempDir(), "nginx")
	t.Cleanup(func() { nginxFallbackPath = old })
	_, err := StartNginx(t.TempDir(), "tls.crt", "tls.key")
	if !errors.Is(err, errNginxNotFound) || !strings.Contains(err.Error(), "apt-get install") {
		t.Fatalf("StartNginx without nginx: %v", err)
	}
}
