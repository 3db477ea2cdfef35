package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func newCreateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create secret NAME --from-literal=KEY=VALUE [--from-file=KEY=PATH ...]",
		Short: "Create a sealed Secret (e.g. an RFC 2136 TSIG key)",
		// Runnable, so that a missing or unknown resource type is a usage
		// error (exit 2) rather than cobra's help.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef(cmd, "you must specify the type of resource to create: secret")
			}
			return usagef(cmd, "acmeq creates secrets only, not %q (Issuers and Certificates: acmeq apply -f)", args[0])
		},
	}
	cmd.AddCommand(newCreateSecretCmd())
	return cmd
}

func newCreateSecretCmd() *cobra.Command {
	var ns string
	var literals, files []string
	cmd := &cobra.Command{
		Use:   "secret NAME --from-literal=KEY=VALUE [--from-file=KEY=PATH ...]",
		Short: "Create or replace a Secret, sealed with ACMEQ_SECRET_KEY",
		Long: `Create or replace a Secret whose data is sealed at rest with
ACMEQ_SECRET_KEY, such as the TSIG secret an Issuer's dns01.rfc2136 solver
refers to (tsigSecretSecretRef) or the HMAC key of its External Account
Binding (externalAccountBinding.keySecretRef). A ClusterIssuer's Secrets are
in the workers' ACMEQ_CLUSTER_RESOURCE_NAMESPACE (default acmeq). Issuers
that are not Ready and wait for the Secret's EAB key are woken at once.`,
		Example: `  acmeq create secret rfc2136-tsig --from-literal=secret=BASE64
  acmeq create secret zerossl-eab -n acmeq --from-literal=secret=EAB_HMAC_KEY`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef(cmd, "exactly one NAME is required, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			data := map[string][]byte{}
			for _, l := range literals {
				k, v, ok := strings.Cut(l, "=")
				if !ok {
					return usagef(cmd, "--from-literal %q: want KEY=VALUE", truncate(l))
				}
				data[k] = []byte(v)
			}
			for _, f := range files {
				k, path, ok := strings.Cut(f, "=")
				if !ok {
					return usagef(cmd, "--from-file %q: want KEY=PATH", truncate(f))
				}
				b, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				data[k] = b
			}
			if len(data) == 0 {
				return usagef(cmd, "at least one --from-literal or --from-file is required")
			}
			p, _, closeFn, err := newProducer(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			if err := p.PutSecret(cmd.Context(), ns, name, data); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret/%s/%s created (sealed with ACMEQ_SECRET_KEY)\n", ns, name)
			return nil
		},
	}
	namespaceFlag(cmd.Flags(), &ns)
	// StringArray, not StringSlice: values may contain commas.
	cmd.Flags().StringArrayVar(&literals, "from-literal", nil, "KEY=VALUE (repeatable)")
	cmd.Flags().StringArrayVar(&files, "from-file", nil, "KEY=PATH (repeatable)")
	return cmd
}
