package dns01

import (
	"context"
	"fmt"
	"strings"

	"github.com/miekg/dns"

	"github.com/acmeq/acmeq/solvers"
)

// Record is one TXT value answering a DNS-01 challenge, where a provider
// must add or remove it.
type Record struct {
	// FQDN is the owner name of the TXT record, fully qualified and in
	// lower case: [ChallengeRecordName](DNSName), or where its CNAMEs lead
	// when they are followed.
	FQDN string
	// Value is the TXT value: the key authorization digest.
	Value string
	// DNSName is the name being validated, without "*.".
	DNSName string
	// Wildcard reports whether the authorization is for "*." + DNSName.
	Wildcard bool
}

// RecordProvider is a provider that can write a challenge's value at any
// owner name, which following CNAMEs needs ([CNAMEFollowing]). Both methods
// add or remove the one value r.Value, keeping the others at r.FQDN, and
// are idempotent.
type RecordProvider interface {
	PresentRecord(ctx context.Context, r Record) error
	CleanUpRecord(ctx context.Context, r Record) error
}

// RecordOf returns the record of ch at its own challenge record name, or
// an error wrapping [ErrUnsupportedChallenge].
func RecordOf(ch solvers.Challenge) (Record, error) {
	name, err := validateChallenge(ch)
	if err != nil {
		return Record{}, err
	}
	return Record{
		FQDN:     name,
		Value:    ch.Key,
		DNSName:  strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(ch.DNSName, "*."), ".")),
		Wildcard: ch.Wildcard || strings.HasPrefix(ch.DNSName, "*."),
	}, nil
}

// validateRecord checks r before a provider writes it, and returns its
// FQDN in canonical form.
func validateRecord(r Record) (string, error) {
	name := strings.ToLower(dns.Fqdn(r.FQDN))
	if _, ok := dns.IsDomainName(name); !ok || name == "." || strings.Contains(name, "..") || strings.ContainsAny(name, " \t\r\n\"\\") {
		return "", fmt.Errorf("%w: %q is not a valid DNS name", ErrUnsupportedChallenge, r.FQDN)
	}
	if r.Value == "" {
		return "", fmt.Errorf("%w: record %s has an empty value", ErrUnsupportedChallenge, name)
	}
	return name, nil
}

// CNAMEFollowing is a [Provider] that follows the CNAMEs of a challenge's
// record name (cnameStrategy: Follow) and has its RecordProvider write the
// value where they lead: a customer delegates _acme-challenge.shop.example
// by CNAME to a name in a zone the platform's provider can edit. A name
// without a CNAME is written where it is. CleanUp follows the chain again,
// so that it removes the value where Present wrote it as long as the CNAME
// did not change in between.
type CNAMEFollowing struct {
	Provider RecordProvider
	Resolver *Resolver
}

var _ Provider = (*CNAMEFollowing)(nil)

// Present writes ch's value at the end of the CNAME chain of its record
// name.
func (c *CNAMEFollowing) Present(ctx context.Context, ch solvers.Challenge) error {
	r, err := c.resolve(ctx, ch)
	if err != nil {
		return err
	}
	return c.Provider.PresentRecord(ctx, r)
}

// CleanUp removes ch's value at the end of the CNAME chain of its record
// name.
func (c *CNAMEFollowing) CleanUp(ctx context.Context, ch solvers.Challenge) error {
	r, err := c.resolve(ctx, ch)
	if err != nil {
		return err
	}
	return c.Provider.CleanUpRecord(ctx, r)
}

func (c *CNAMEFollowing) resolve(ctx context.Context, ch solvers.Challenge) (Record, error) {
	r, err := RecordOf(ch)
	if err != nil {
		return Record{}, err
	}
	target, _, err := c.Resolver.FollowCNAME(ctx, r.FQDN)
	if err != nil {
		return Record{}, err
	}
	r.FQDN = target
	return r, nil
}
