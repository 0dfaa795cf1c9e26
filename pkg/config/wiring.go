package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
)

// RuntimesDir is where the runtime servers are: the configured directory, or
// <state_path>/runtimes where the binary writes its built-in copies.
func (c *Config) RuntimesDir() string {
	if c.Local.RuntimesDir != "" {
		return c.Local.RuntimesDir
	}
	return filepath.Join(c.Default.StatePath, "runtimes")
}

// EtcdTLS builds the client TLS settings for https etcd; nil for http.
func (c *Config) EtcdTLS() (*tls.Config, error) {
	e := c.Etcd
	if e.Protocol != "https" {
		return nil, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.CACert != "" {
		pem, err := os.ReadFile(e.CACert)
		if err != nil {
			return nil, fmt.Errorf("etcd.ca_cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd.ca_cert %s: no PEM certificate found", e.CACert)
		}
		t.RootCAs = pool
	}
	if e.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(e.CertFile, e.CertKey)
		if err != nil {
			return nil, fmt.Errorf("etcd.cert_file/cert_key: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// RedactURL hides the password of a URL for logs and messages.
func RedactURL(s string) string { return redactURL(s) }
