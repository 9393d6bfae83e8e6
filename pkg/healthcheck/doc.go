// Package healthcheck has the readiness and liveness probes Cleanroom runs
// against service containers, and Wait, which polls a probe with backoff.
//
//	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
//	defer cancel()
//	url := "postgres://postgres:secret@127.0.0.1:5432/postgres?sslmode=disable"
//	if err := healthcheck.Wait(ctx, healthcheck.Postgres(url), healthcheck.Options{}); err != nil {
//		log.Fatal(err) // names the probe, the time waited and the last reason
//	}
//
// Probes go over the network from the host (SQL SELECT 1, Redis PING, TCP
// connect: well under a millisecond each). They never rely on Podman's own
// HEALTHCHECK timers, which need systemd.
package healthcheck
