package view

import (
	"strconv"

	"github.com/acmeq/acmeq/messages"
)

// Secret types, as Kubernetes names them.
const (
	// SecretTypeTLS is a Secret holding tls.crt and tls.key.
	SecretTypeTLS = "kubernetes.io/tls"
	// SecretTypeOpaque is any other Secret (an ACME account key, a TSIG
	// secret, a private key waiting for its certificate).
	SecretTypeOpaque = "Opaque"
)

// SecretType is the Kubernetes type of a Secret with these data keys:
// kubernetes.io/tls when it holds both tls.crt and tls.key (what
// cert-manager writes for a Certificate), Opaque otherwise.
func SecretType(data map[string][]byte) string {
	_, crt := data[messages.SecretTLSCert]
	_, key := data[messages.SecretTLSKey]
	if crt && key {
		return SecretTypeTLS
	}
	return SecretTypeOpaque
}

// Secret is a Secret as `kubectl get secret -o yaml|json` shows one:
// apiVersion v1, kind Secret, a type, and data whose values are the
// opened bytes (base64 in JSON and YAML, as in Kubernetes), so
// `-o jsonpath='{.data.tls\.crt}' | base64 -d` prints the certificate.
type Secret struct {
	APIVersion string              `json:"apiVersion"`
	Data       map[string][]byte   `json:"data"`
	Kind       string              `json:"kind"`
	Metadata   messages.ObjectMeta `json:"metadata"`
	Type       string              `json:"type"`
}

// OpenedSecret is the view of a Secret whose data was opened (the store
// keeps it sealed; opening needs ACMEQ_SECRET_KEY).
func OpenedSecret(meta messages.ObjectMeta, data map[string][]byte) *Secret {
	if data == nil {
		data = map[string][]byte{}
	}
	return &Secret{APIVersion: "v1", Data: data, Kind: "Secret", Metadata: meta, Type: SecretType(data)}
}

// secretColumns are kubectl's columns for Secrets: TYPE and DATA (the
// number of keys), which need only the keys, not the sealed values.
var secretColumns = []column{
	{name: "TYPE", value: func(o messages.Object) string { return SecretType(o.(*messages.Secret).Data) }},
	{name: "DATA", value: func(o messages.Object) string { return strconv.Itoa(len(o.(*messages.Secret).Data)) }},
}
