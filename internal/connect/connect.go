// Package connect opens acmeq's connections to NATS and Redis from their
// configuration: URLs, credentials (user and password, token, NKey, .creds
// file, Redis ACL users) and TLS with a custom CA or client certificates.
//
// The configuration structs carry caarlos0/env tags (ACMEQ_NATS_*,
// ACMEQ_REDIS_*) so cmd/acmeq embeds them; tests build them directly. Bad
// input is a start-up error that names the variable and the cause, never
// a hang: files are read and parsed before dialling, every dial is bounded
// by a connect timeout, and what a server refuses (a wrong password, a
// certificate that does not verify against the configured CA) is reported
// against the variables that set it. Such errors are *ConfigError values.
package connect

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ConfigError is a configuration the connection cannot work with, or one a
// server refused: Var names the environment variable(s) to fix.
type ConfigError struct {
	// Var is the variable, or variables joined by "/", e.g.
	// "ACMEQ_NATS_USER/ACMEQ_NATS_PASSWORD".
	Var string
	// Err is the cause.
	Err error
}

// Error reads "connect: ACMEQ_NATS_CREDS: open /etc/acmeq/w.creds: no
// such file or directory".
func (e *ConfigError) Error() string { return "connect: " + e.Var + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *ConfigError) Unwrap() error { return e.Err }

func configErr(v string, format string, args ...any) error {
	return &ConfigError{Var: v, Err: fmt.Errorf(format, args...)}
}

// tlsFiles are the TLS settings of one connection, by file path.
type tlsFiles struct {
	ca, cert, key, serverName string
	// vars names the variables of ca, cert, key and serverName.
	vars [4]string
}

func (f tlsFiles) set() bool { return f.ca != "" || f.cert != "" || f.key != "" || f.serverName != "" }

// config loads the files into a tls.Config (TLS 1.2 or later, the system
// roots unless a CA is given).
func (f tlsFiles) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.serverName}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, &ConfigError{Var: f.vars[0], Err: err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, configErr(f.vars[0], "%s holds no PEM certificate", f.ca)
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.cert != "" && f.key != "":
		pair, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, &ConfigError{Var: f.vars[1] + "/" + f.vars[2], Err: err}
		}
		cfg.Certificates = []tls.Certificate{pair}
	case f.cert != "":
		return nil, configErr(f.vars[2], "required with %s (the client certificate's private key)", f.vars[1])
	case f.key != "":
		return nil, configErr(f.vars[1], "required with %s (the client certificate)", f.vars[2])
	}
	return cfg, nil
}

// verifyError reports whether err is a server certificate that did not
// verify, and names what it was checked against.
func verifyError(err error, f tlsFiles) error {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	if !errors.As(err, &verify) && !errors.As(err, &unknown) && !errors.As(err, &invalid) && !errors.As(err, &host) &&
		!strings.Contains(err.Error(), "x509: ") {
		return nil
	}
	if f.ca != "" {
		return configErr(f.vars[0], "the server's certificate does not verify against %s: %w", f.ca, err)
	}
	return configErr(f.vars[0], "the server's certificate does not verify against the system's roots (set %s to the CA that signed it): %w", f.vars[0], err)
}
