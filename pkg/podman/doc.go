// Package podman is a thin, typed client of the Podman REST API: just the
// calls Cleanroom makes, with errors mapped once.
//
//	ctx := context.Background()
//	c, err := podman.Connect(ctx, podman.Options{}) // CONTAINER_HOST, containers.conf, or the local socket
//	if err != nil {
//		log.Fatal(err) // says how to start a service when none answers
//	}
//	defer c.Close()
//	_, err = c.CreatePod(ctx, podman.PodSpec{
//		Name:  "demo",
//		Ports: []podman.Port{{ContainerPort: 6379}}, // 127.0.0.1, a free host port
//	})
//	if errors.Is(err, podman.ErrConflict) {
//		// another process created it first
//	}
//	_, err = c.CreateContainer(ctx, podman.ContainerSpec{Name: "demo-redis", Image: "docker.io/library/redis:7", Pod: "demo"})
//	err = c.StartPod(ctx, "demo")
//	pod, err := c.InspectPod(ctx, "demo")
//	addr, _ := pod.HostPort(6379) // 127.0.0.1:<port>
//	err = c.RemovePod(ctx, "demo")
//
// It speaks to the service through the root package of Podman's Go bindings
// (github.com/containers/podman/v5/pkg/bindings: connection set-up for unix,
// tcp and ssh URIs, API version negotiation) and the inspect types of
// libpod/define, nothing else of Podman: the typed binding packages pull in
// cgo libraries (gpgme, btrfs) and force build tags on every user. This
// package builds with CGO_ENABLED=0 and no tags.
//
// Errors: an API error answer is an *APIError; errors.Is matches it against
// ErrNotFound (HTTP 404) and ErrConflict (HTTP 409, and the HTTP 500 "name is
// already in use" of Podman 4 container name clashes). A service that does
// not answer gives a *NoServiceError (errors.Is ErrNoService) that says how
// to start one.
//
// Every pod and container created here carries the label
// io.cleanroom.managed=true; Cleanroom's clean-up never touches an object
// without it. A Client is safe for concurrent use.
package podman
