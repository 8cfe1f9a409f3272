// Package webhook delivers a provision.Engine's events to each tenant's
// HTTPS endpoint as signed JSON POSTs, and verifies them on the receiving
// side.
//
// # Sending
//
// Build a Webhook on the engine, give it the tenants' endpoints, and run
// it (on every replica: one at a time delivers a tenant):
//
//	wh, err := webhook.New(webhook.Config{
//		Engine:    engine,
//		Endpoints: map[string]webhook.Endpoint{"acme": {URL: "https://acme.example/idprov", Secret: secret}},
//	})
//	...
//	go wh.Run(ctx)
//
// Each event is one POST whose body is the provision.Event as JSON, in Seq
// order per tenant, at least once: the next event of a tenant is sent only
// after the endpoint answered 2xx to the previous one. The cursor is
// stored (through the Store's EventLog) after every acknowledged event, so
// a crash or a deploy resumes where delivery was, and an endpoint that is
// down loses nothing: its events wait in the log and are sent in order
// when it answers again.
//
// A failing event is retried with exponential backoff and jitter, capped
// at Config.MaxBackoff, while the other tenants' deliveries go on. The
// failure is stored and reported by Status (attempts, last error, failing
// since, next attempt) and logged; after Config.SuspendAfter (72h by
// default) without a success the tenant's delivery is suspended until
// Resume.
//
// # Receiving
//
// Every request carries
//
//	Idprov-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//	Idprov-Tenant: <tenant id>
//	Idprov-Event-Seq: <seq>
//
// The receiver reads the raw body, calls Verify with the endpoint's secret
// (it rejects a bad signature and a timestamp outside the tolerance, and
// compares in constant time), answers 2xx once the event is safely handled
// and ignores an event whose (tenant, seq) it has handled before.
package webhook
