package podman_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"

	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// Connect to the service, run a Redis container in a pod of its own and
// read back the host port it is published on.
func ExampleConnect() {
	ctx := context.Background()
	c, err := podman.Connect(ctx, podman.Options{}) // CONTAINER_HOST, containers.conf, or the local socket
	if err != nil {
		log.Fatal(err) // says how to start a service when none answers
	}
	defer c.Close()

	if _, err := c.CreatePod(ctx, podman.PodSpec{
		Name:  "demo",
		Ports: []podman.Port{{ContainerPort: 6379}}, // 127.0.0.1, a free host port
	}); err != nil {
		log.Fatal(err)
	}
	defer c.RemovePod(ctx, "demo")
	if _, err := c.CreateContainer(ctx, podman.ContainerSpec{
		Name:  "demo-redis",
		Image: "docker.io/library/redis:7",
		Pod:   "demo",
	}); err != nil {
		log.Fatal(err)
	}
	if err := c.StartPod(ctx, "demo"); err != nil {
		log.Fatal(err)
	}
	pod, err := c.InspectPod(ctx, "demo")
	if err != nil {
		log.Fatal(err)
	}
	addr, _ := pod.HostPort(6379)
	fmt.Printf("redis at %s:%d\n", addr.IP, addr.Port)
}

// Connect names the address it tried and how to start a service there
// when none answers.
func ExampleConnect_noService() {
	_, err := podman.Connect(context.Background(), podman.Options{URI: "unix:///nonexistent/podman.sock"})
	fmt.Println(errors.Is(err, podman.ErrNoService))
	var nse *podman.NoServiceError
	if errors.As(err, &nse) {
		fmt.Println(nse.Hint())
	}
	// Output:
	// true
	// start a service on that socket: podman system service --time=0 unix:///nonexistent/podman.sock &
	//   or change the address (explicit URI); check with: podman --url unix:///nonexistent/podman.sock info
}

// An explicit URI is the only address Connect tries.
func ExampleEndpoints() {
	for _, ep := range podman.Endpoints(podman.Options{URI: "tcp://127.0.0.1:8888"}) {
		fmt.Printf("%s (%s)\n", ep.URI, ep.Source)
	}
	// Output: tcp://127.0.0.1:8888 (explicit URI)
}

// errors.Is maps the API's answers onto the package's sentinel errors, so
// callers never look at HTTP status codes.
func ExampleAPIError() {
	missing := &podman.APIError{Op: "inspect pod demo", StatusCode: http.StatusNotFound, Message: "no such pod demo", Cause: "no such pod"}
	taken := &podman.APIError{Op: "create pod demo", StatusCode: http.StatusConflict, Message: "pod demo already exists"}
	// Podman 4 reports a container name clash as a 500.
	clash := &podman.APIError{Op: "create container demo-redis", StatusCode: http.StatusInternalServerError, Message: "the container name \"demo-redis\" is already in use"}

	wrapped := fmt.Errorf("start demo: %w", missing)
	fmt.Println(wrapped)
	fmt.Println(errors.Is(wrapped, podman.ErrNotFound), errors.Is(wrapped, podman.ErrPodNotFound))
	fmt.Println(errors.Is(taken, podman.ErrConflict), errors.Is(clash, podman.ErrConflict), errors.Is(taken, podman.ErrNotFound))

	var apiErr *podman.APIError
	if errors.As(wrapped, &apiErr) {
		fmt.Println(apiErr.StatusCode, apiErr.Cause)
	}
	// Output:
	// start demo: inspect pod demo: no such pod demo (HTTP 404)
	// true true
	// true true false
	// 404 no such pod
}

// Creating a pod that another process created first fails with an error
// matching ErrConflict: adopt the existing pod instead.
func ExampleClient_CreatePod() {
	ctx := context.Background()
	c, err := podman.Connect(ctx, podman.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	_, err = c.CreatePod(ctx, podman.PodSpec{
		Name:       "demo",
		Labels:     map[string]string{"app": "demo"}, // io.cleanroom.managed=true is added
		Ports:      []podman.Port{{ContainerPort: 5432}},
		ExitPolicy: "stop",
	})
	switch {
	case errors.Is(err, podman.ErrConflict):
		fmt.Println("adopting the existing pod")
	case err != nil:
		log.Fatal(err)
	}
}

// Pull an image, reporting each layer's progress.
func ExampleClient_Pull() {
	ctx := context.Background()
	c, err := podman.Connect(ctx, podman.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	err = c.Pull(ctx, "docker.io/library/redis:7", func(ev podman.PullEvent) {
		if ev.Total > 0 {
			fmt.Printf("%s %s %d/%d\n", ev.Layer, ev.Status, ev.Current, ev.Total)
		}
	})
	if errors.Is(err, podman.ErrNotFound) {
		log.Fatal("no such image: ", err)
	}
}

// A pod's published ports, keyed by container port.
func ExamplePodInfo_HostPort() {
	pod := &podman.PodInfo{
		Name:  "demo",
		Ports: map[string]podman.HostAddr{"5432/tcp": {IP: "127.0.0.1", Port: 41234}},
	}
	if addr, ok := pod.HostPort(5432); ok {
		fmt.Printf("%s:%d\n", addr.IP, addr.Port)
	}
	_, ok := pod.HostPort(6379)
	fmt.Println(ok)
	// Output:
	// 127.0.0.1:41234
	// false
}
