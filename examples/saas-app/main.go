// Command saas-app is a runnable multi-tenant host of idprov. With no flags
// it stores its data in the SQLite file saas-app.db, declares tenant acme
// with a SCIM directory and a SAML connection to a built-in demo identity
// provider, and serves an admin page that shows provisioning happen:
//
//	go run ./examples/saas-app
//	go run ./examples/saas-app -addr 127.0.0.1:8080 -tenant acme -scim-token SECRET
//	go run ./examples/saas-app -config tenants.json
//
// On start it prints one line per endpoint ("scim: <base URL>",
// "scim-token: <token>", "saml-login: <URL>", "admin: <URL>", ...); scripts
// and tests read them. The one-tenant flags configure tenant -tenant; a
// -config file declares more tenants (config.go). Each feature lives in its
// own file (scim.go, saml.go, demoidp.go, ldap.go, events.go, admin.go) and
// is listed in features below.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "saas-app:", err)
		os.Exit(1)
	}
}

// feature is one part of the app, in its own file. For each run, flags
// registers its flags; setup runs before the engine exists (declare
// connections on a.Tenants, choose a.Store, extend a.EngineConfig); start
// runs after (mount handlers on a.Mux, print its lines, start background
// work that ends with ctx).
type feature interface {
	flags(fs *flag.FlagSet)
	setup(a *app) error
	start(ctx context.Context, a *app) error
}

// features returns fresh instances of the app's features, in start order.
func features() []feature {
	return []feature{
		&dbFeature{},
		&scimFeature{},
		&samlFeature{},
		&ldapFeature{},
		&eventsFeature{},
		&metricsFeature{},
		&adminFeature{},
		&registryFeature{},
		&setupFeature{},
	}
}

// app is what the features share.
type app struct {
	// Addr and BaseURL are where the app listens ("http://127.0.0.1:8080").
	Addr    string
	BaseURL string
	// Tenants are declared to the engine. Tenants[0] is the one the
	// one-tenant flags configure (-tenant); the others come from -config.
	// Setups add connections to them (each from its part of the tenant's
	// Conf); the list does not change after run builds it.
	Tenants []*tenant
	// Store is the engine's store (-db); StoreName says which.
	Store     provision.Store
	StoreName string
	// admin is the admin page's hooks into the features (admin.go).
	admin adminHooks
	// EngineConfig is handed to provision.NewEngine after every setup.
	EngineConfig provision.Config
	Engine       *provision.Engine
	Mux          *http.ServeMux
	Log          *slog.Logger
	Stdout       io.Writer
}

// run parses args, serves until ctx ends, and shuts down cleanly.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("saas-app", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // a bad flag is one line (flagError); -h prints the usage
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (port 0 picks a free one)")
	tenantID := fs.String("tenant", "acme", "the id of the tenant the one-tenant flags configure")
	configFile := fs.String("config", "", "JSON file declaring more tenants and their connections (see config.go)")
	feats := features()
	for _, f := range feats {
		f.flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return flagError(fs, stdout, err)
	}

	tenants, err := loadTenants(*configFile, *tenantID)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	a := &app{
		Addr:    ln.Addr().String(),
		BaseURL: "http://" + ln.Addr().String(),
		Tenants: tenants,
		Mux:     http.NewServeMux(),
		Log:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Stdout:  stdout,
	}
	for _, f := range feats {
		if err := f.setup(a); err != nil {
			return err
		}
	}
	if a.Store == nil {
		a.Store = memstore.New()
	}
	cfg := a.EngineConfig
	cfg.Store = a.Store
	for _, t := range a.Tenants {
		cfg.Tenants = append(cfg.Tenants, t.Tenant)
	}
	if cfg.Logger == nil {
		cfg.Logger = a.Log
	}
	if a.Engine, err = provision.NewEngine(cfg); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, f := range feats {
		if err := f.start(ctx, a); err != nil {
			return err
		}
	}

	srv := &http.Server{Handler: a.Mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	cancel()
	for _, f := range feats {
		if s, ok := f.(interface{ stop() error }); ok {
			if err := s.stop(); err != nil {
				return err
			}
		}
	}
	return nil
}
