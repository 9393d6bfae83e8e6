package podman

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEndpointsOrder(t *testing.T) {
	t.Setenv("CONTAINERS_CONF", "/nonexistent/containers.conf")
	t.Setenv("PODMAN_CONNECTIONS_CONF", "/nonexistent/podman-connections.json")
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/4242")

	t.Setenv("CONTAINER_HOST", "")
	eps := Endpoints(Options{})
	last := eps[len(eps)-1]
	if last.URI != "unix:///run/podman/podman.sock" || last.Source != SourceRootful {
		t.Errorf("last endpoint %+v, want the rootful socket", last)
	}
	if len(eps) == 2 && eps[0].URI != "unix:///run/user/4242/podman/podman.sock" {
		t.Errorf("rootless endpoint %+v, want the socket under XDG_RUNTIME_DIR", eps[0])
	}

	t.Setenv("CONTAINER_HOST", "ssh://me@host/run/podman/podman.sock")
	t.Setenv("CONTAINER_SSHKEY", "/keys/id")
	eps = Endpoints(Options{})
	want := Endpoint{URI: "ssh://me@host/run/podman/podman.sock", Identity: "/keys/id", Source: SourceEnv}
	if len(eps) != 1 || eps[0] != want {
		t.Errorf("with CONTAINER_HOST: %+v, want only %+v", eps, want)
	}

	eps = Endpoints(Options{URI: "tcp://127.0.0.1:1"})
	if len(eps) != 1 || eps[0].Source != SourceExplicit {
		t.Errorf("an explicit URI must win over CONTAINER_HOST: %+v", eps)
	}
}

func TestConnectErrors(t *testing.T) {
	ctx := context.Background()
	_, err := Connect(ctx, Options{URI: "http://example.com"})
	if err == nil || errors.Is(err, ErrNoService) || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("unsupported scheme: %v", err)
	}
	_, err = Connect(ctx, Options{URI: "/run/podman/podman.sock"})
	if err == nil || !strings.Contains(err.Error(), "not a URI") {
		t.Errorf("a path instead of a URI: %v", err)
	}
	t.Setenv("CONTAINER_HOST", "unix:///nonexistent/podman.sock")
	_, err = Connect(ctx, Options{})
	if !errors.Is(err, ErrNoService) {
		t.Fatalf("dead CONTAINER_HOST: %v", err)
	}
	for _, want := range []string{"unix:///nonexistent/podman.sock (CONTAINER_HOST)", "no such file", "podman system service --time=0 unix:///nonexistent/podman.sock"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
}

func TestAPIErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		err                 *APIError
		notFound, conf, pod bool
	}{
		{&APIError{StatusCode: 404, Message: "no such container"}, true, false, false},
		{&APIError{StatusCode: 409, Message: "pod already exists"}, false, true, false},
		{&APIError{StatusCode: 500, Message: `creating container storage: the container name "x" is already in use by 1234`}, false, true, false},
		{&APIError{StatusCode: 500, Message: `name "x" is in use: pod already exists`}, false, true, false},
		{&APIError{StatusCode: 500, Message: "something else broke"}, false, false, false},
		// Podman 4.3, creating a container in a pod that was removed.
		{&APIError{Op: "create container podinfo-web", StatusCode: 500, Cause: "no such pod", Message: "no pod with name or ID p1 found: no such pod"}, true, false, true},
		{&APIError{Op: "create container podinfo-web", StatusCode: 404, Message: "no container with name or ID podinfo-web found: no such container"}, true, false, false},
		{&APIError{Op: "inspect pod cleanroom-x", StatusCode: 404, Message: "no pod with name or ID cleanroom-x found: no such pod"}, true, false, true},
	} {
		if got := errors.Is(tc.err, ErrPodNotFound); got != tc.pod {
			t.Errorf("%v: Is(ErrPodNotFound) = %v", tc.err, got)
		}
		if got := errors.Is(tc.err, ErrNotFound); got != tc.notFound {
			t.Errorf("%v: Is(ErrNotFound) = %v", tc.err, got)
		}
		if got := errors.Is(tc.err, ErrConflict); got != tc.conf {
			t.Errorf("%v: Is(ErrConflict) = %v", tc.err, got)
		}
	}
}

// The answers of Podman 4.3.1 and 5.4.2 to the same failing calls, as
// captured from both services; each maps to the same sentinel.
func TestAnswersOfBothGenerations(t *testing.T) {
	for _, tc := range []struct {
		name                string
		code                int
		body                string
		notFound, conf, pod bool
	}{
		{"4.3 create container, image missing", 500,
			`{"cause":"image not known","message":"localhost/nope:1: image not known","response":500}`, true, false, false},
		{"5.4 create container, image missing", 404,
			`{"cause":"image not known","message":"no such image: localhost/nope:1: image not known","response":404}`, true, false, false},
		{"4.3 and 5.4 create container, pod removed", 500,
			`{"cause":"no such pod","message":"no pod with name or ID nopod found: no such pod","response":500}`, true, false, true},
		{"4.3 remove missing container", 404,
			`{"cause":"no such container","message":"no container with name or ID \"nope\" found: no such container","response":404}`, true, false, false},
		{"5.4 remove missing container", 404,
			`{"cause":"no such container","message":"no container with ID or name \"nope\" found: no such container","response":404}`, true, false, false},
		{"4.3 and 5.4 create container, name taken", 500,
			`{"cause":"that name is already in use","message":"creating container storage: the container name \"x\" is already in use by 2b68. You have to remove that container to be able to reuse that name: that name is already in use","response":500}`, false, true, false},
		{"4.3 and 5.4 create pod, name taken", 409,
			`{"cause":"pod already exists","message":"failed to make pod: adding pod to state: name \"x\" is in use: pod already exists","response":409}`, false, true, false},
		{"5.4 compat pull, manifest unknown", 404,
			`{"message":"manifest unknown: manifest unknown"}`, true, false, false},
		{"4.3 and 5.4 exec in a stopped container", 500,
			`{"cause":"container state improper","message":"can only create exec sessions on running containers: container state improper","response":500}`, false, false, false},
	} {
		resp := &http.Response{StatusCode: tc.code, Body: io.NopCloser(strings.NewReader(tc.body))}
		err := readAPIError("op", resp)
		if got := errors.Is(err, ErrNotFound); got != tc.notFound {
			t.Errorf("%s: Is(ErrNotFound) = %v (%v)", tc.name, got, err)
		}
		if got := errors.Is(err, ErrConflict); got != tc.conf {
			t.Errorf("%s: Is(ErrConflict) = %v (%v)", tc.name, got, err)
		}
		if got := errors.Is(err, ErrPodNotFound); got != tc.pod {
			t.Errorf("%s: Is(ErrPodNotFound) = %v (%v)", tc.name, got, err)
		}
	}
	// Podman 4.3 answers a pull of a missing image with 200 and reports the
	// failure inside the progress stream; 5.4 with a 404 (above).
	err := &APIError{Op: "pull image 127.0.0.1:5000/x:1", Message: "initializing source docker://127.0.0.1:5000/x:1: reading manifest 1 in 127.0.0.1:5000/x: manifest unknown: manifest unknown"}
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("4.3 pull stream error: not ErrNotFound: %v", err)
	}
}

func TestDemux(t *testing.T) {
	frame := func(stream byte, s string) string {
		n := len(s)
		return string([]byte{stream, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}) + s
	}
	var out, errOut strings.Builder
	in := frame(1, "hello ") + frame(2, "oops\n") + frame(1, "world\n")
	if err := demux(strings.NewReader(in), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if out.String() != "hello world\n" || errOut.String() != "oops\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errOut.String())
	}
	if err := demux(strings.NewReader(frame(3, "exec failed")), &out, &errOut); err == nil || !strings.Contains(err.Error(), "exec failed") {
		t.Errorf("error stream: %v", err)
	}
	if err := demux(strings.NewReader(frame(1, "trunc")[:10]), &out, &errOut); err == nil {
		t.Error("a truncated frame must be an error")
	}
}

func TestLineWriterSplitsFramesIntoLines(t *testing.T) {
	var got []string
	w := &lineWriter{each: func(l string) { got = append(got, l) }}
	for _, chunk := range []string{"data", "base ready\r\nsecond", " line\n", "\n", "no newline"} {
		if n, err := w.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", chunk, n, err)
		}
	}
	w.flush()
	if diff := cmp.Diff([]string{"database ready", "second line", "", "no newline"}, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func TestNoServiceErrorSaysHowToStartTheServiceLookedFor(t *testing.T) {
	for _, tc := range []struct {
		ep   Endpoint
		want []string
	}{
		{Endpoint{URI: "unix:///run/user/1000/podman/podman.sock", Source: SourceRootless},
			[]string{"systemctl --user enable --now podman.socket", "podman system service --time=0 unix:///run/user/1000/podman/podman.sock", "CONTAINER_HOST", "sudo dnf install podman"}},
		{Endpoint{URI: "unix:///run/podman/podman.sock", Source: SourceRootful},
			[]string{"sudo systemctl enable --now podman.socket", "sudo apt-get install podman", "sudo dnf install podman", "systemctl --user enable --now podman.socket"}},
	} {
		err := error(&NoServiceError{Tried: []Endpoint{tc.ep}, Err: errors.New("dial unix: connect: no such file or directory")})
		if !errors.Is(err, ErrNoService) {
			t.Errorf("%s: not ErrNoService", tc.ep.Source)
		}
		msg := err.Error()
		for _, want := range append(tc.want, tc.ep.URI, string(tc.ep.Source), "no such file or directory") {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: the error does not say %q:\n%s", tc.ep.Source, want, msg)
			}
		}
	}
}
