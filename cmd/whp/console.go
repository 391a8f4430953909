package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whp-dev/whp/console"
	"github.com/whp-dev/whp/runtime/dlq"
	"github.com/whp-dev/whp/runtime/replay"
)

// runConsole is `whp console`: the web console as its own role (EKS). It
// reads the store and the egress cluster's DLQ, resends through both
// clusters, and shows the reconciler's status from where the reconciler
// keeps it. Breakers and SLOs live in the dispatchers' and ingest's own
// metrics on this deployment (Prometheus); the console shows what it can
// reach.
func runConsole(ctx context.Context, args []string, stderr io.Writer) error {
	r := &role{name: "console"}
	var usersFile, keyFile, statusAt, issuer, clientID, secretFile, redirect, groupsClaim, roleMap *string
	if err := r.flags(args, stderr, func(add func(string, string, string) *string) {
		usersFile = add("users-file", "", "JSON file of local users with bcrypt password hashes (see docs/console.md)")
		keyFile = add("session-key-file", "", "file holding the key that signs session cookies (32+ bytes); without one, sessions end when the process does")
		statusAt = add("status", "", "where the reconciler keeps its status: s3://bucket/key.json or a file")
		issuer = add("oidc-issuer", "", "OpenID Connect issuer URL for single sign-on")
		clientID = add("oidc-client-id", "", "OIDC client ID")
		secretFile = add("oidc-client-secret-file", "", "file holding the OIDC client secret")
		redirect = add("oidc-redirect-url", "", "this console's OIDC callback, https://…/console/oidc/callback")
		groupsClaim = add("oidc-groups-claim", "groups", "ID token claim listing the user's groups")
		roleMap = add("oidc-roles", "", "group=role pairs, comma-separated; roles: admin, approver, viewer, partner:<id>")
	}); err != nil {
		return err
	}
	if *usersFile == "" && *issuer == "" {
		return usageError{"whp console: give --users-file, --oidc-issuer, or both: nobody could sign in"}
	}
	in, eg, kopts, err := r.connect(ctx, stderr, true, true)
	if err != nil {
		return err
	}
	cfg := console.Config{Store: r.st, Log: r.log, Flags: r.opflags}
	if *usersFile != "" {
		if cfg.Users, err = console.LoadUsers(*usersFile); err != nil {
			return err
		}
	}
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("session key: %w", err)
		}
		if cfg.SessionKey = []byte(strings.TrimSpace(string(b))); len(cfg.SessionKey) < 32 {
			return usageError{"whp console: the session key must be 32 bytes or more"}
		}
	}
	if *statusAt != "" {
		st, err := statusStore(ctx, *statusAt, r.b.dataDir)
		if err != nil {
			return err
		}
		cfg.ReconcileStatus = st.Load
	}
	inCl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(in...)}, kopts...)...)
	if err != nil {
		return err
	}
	defer inCl.Close()
	egCl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(eg...), kgo.RequiredAcks(kgo.AllISRAcks())}, kopts...)...)
	if err != nil {
		return err
	}
	defer egCl.Close()
	cfg.DLQ = dlq.New(egCl, r.st)
	cfg.Resend = console.ReplayResender{Replayer: replay.New(inCl, egCl, r.st), Store: r.st}
	con := console.New(cfg)
	if *issuer != "" {
		oc := console.OIDCConfig{Issuer: *issuer, ClientID: *clientID, RedirectURL: *redirect, GroupsClaim: *groupsClaim, Roles: map[string]string{}}
		if *secretFile != "" {
			b, err := os.ReadFile(*secretFile)
			if err != nil {
				return fmt.Errorf("OIDC client secret: %w", err)
			}
			oc.ClientSecret = strings.TrimSpace(string(b))
		}
		for _, pair := range splitList(*roleMap) {
			group, role, ok := strings.Cut(pair, "=")
			if !ok {
				return usageError{fmt.Sprintf("whp console: --oidc-roles %q: want group=role", pair)}
			}
			oc.Roles[group] = role
		}
		if oc.ClientID == "" || oc.RedirectURL == "" || len(oc.Roles) == 0 {
			return usageError{"whp console: --oidc-issuer needs --oidc-client-id, --oidc-redirect-url and --oidc-roles"}
		}
		if err := con.UseOIDC(ctx, oc); err != nil {
			return err
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/console/", con.Handler())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, "/console/", http.StatusSeeOther)
	})
	return r.serve(ctx, mux)
}
