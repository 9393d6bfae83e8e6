package podman

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Sentinel errors. Every error returned by this package that stems from an
// API answer wraps an *APIError; errors.Is maps it onto these sentinels, so
// callers never look at HTTP codes themselves.
var (
	// ErrNotFound: the pod, container, image or exec session does not exist
	// (HTTP 404), including where a Podman generation answers otherwise:
	// Podman 4 says so in a 500 for a missing image or pod of a create, and
	// inside the progress stream of a pull (manifest unknown).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the name is taken (HTTP 409, and the HTTP 500 "name is
	// already in use" that Podman 4 and 5 return for container name
	// clashes), or the object is in a state that forbids the call. Podman 4
	// keeps pods and containers in one name space (a container cannot take
	// a pod's name); Podman 5 keeps them apart.
	ErrConflict = errors.New("conflict")
	// ErrNoService: no Podman API service answers at the resolved address.
	// The wrapping *NoServiceError says how to start one.
	ErrNoService = errors.New("no podman service")
	// ErrPodNotFound: the pod named in the call does not exist (it also
	// matches ErrNotFound). Creating a container in a removed pod gives it.
	ErrPodNotFound = errors.New("pod not found")
)

// APIError is an error answer of the Podman API.
type APIError struct {
	Op string // what was attempted, e.g. "create pod cleanroom-x"
	// StatusCode is the HTTP status code; 0 for an error reported inside a
	// streamed answer (such as a pull's progress stream).
	StatusCode int
	Message    string // the service's message
	Cause      string // the service's cause, e.g. "no such pod"
}

// Error gives the attempted operation and the service's message, with the
// HTTP status code when there is one.
func (e *APIError) Error() string {
	if e.StatusCode == 0 {
		return fmt.Sprintf("%s: %s", e.Op, e.Message)
	}
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Op, e.Message, e.StatusCode)
}

// Is maps the HTTP answer onto ErrNotFound, ErrPodNotFound and
// ErrConflict.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		// Podman 4 (and 5, for a removed pod) answers some lookups of
		// missing objects with a 500 whose cause says so ("no such pod"
		// when a container is created in a removed pod, "image not known"
		// when its image is missing); a pull of a missing image fails in
		// its progress stream on Podman 4, with a 404 on Podman 5.
		return e.StatusCode == http.StatusNotFound || strings.HasPrefix(e.Cause, "no such ") ||
			e.Cause == "image not known" || strings.HasSuffix(e.Message, "manifest unknown")
	case ErrPodNotFound:
		return e.Cause == "no such pod" || (e.StatusCode == http.StatusNotFound && strings.HasSuffix(e.Message, "no such pod"))
	case ErrConflict:
		if e.StatusCode == http.StatusConflict {
			return true
		}
		// Podman 4 reports a container name clash (container vs container,
		// or container vs pod: they share one name space) as a 500.
		// ("name is already in use"; "is in use: pod already exists").
		return e.StatusCode == http.StatusInternalServerError &&
			(strings.Contains(e.Message, "is already in use") || strings.Contains(e.Message, "is in use"))
	}
	return false
}

// NoServiceError says which address was tried and how to start a service
// there. It matches ErrNoService with errors.Is.
type NoServiceError struct {
	Tried []Endpoint // in the order they were tried
	Err   error      // the last connection error
}

// Error lists the addresses tried, the last connection error and, on
// the following lines, how to start a service (see Hint).
func (e *NoServiceError) Error() string {
	var b strings.Builder
	b.WriteString("no Podman API service answers at ")
	for i, ep := range e.Tried {
		if i > 0 {
			b.WriteString(", nor at ")
		}
		fmt.Fprintf(&b, "%s (%s)", ep.URI, ep.Source)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", rootCause(e.Err))
	}
	b.WriteString("\n")
	b.WriteString(e.Hint())
	return b.String()
}

// Hint is the advice on how to start the service that was looked for.
func (e *NoServiceError) Hint() string {
	if len(e.Tried) == 0 {
		return ""
	}
	ep := e.Tried[0]
	switch ep.Source {
	case SourceRootless:
		return fmt.Sprintf("start it with: systemctl --user enable --now podman.socket\n"+
			"  (without a systemd user session: podman system service --time=0 %s &)\n"+
			"  or set CONTAINER_HOST to the URI of a running service\n"+
			"  (no Podman yet? sudo apt-get install podman on Debian/Ubuntu, sudo dnf install podman on Fedora/RHEL)", ep.URI)
	case SourceRootful:
		return fmt.Sprintf("start it with: sudo systemctl enable --now podman.socket\n"+
			"  (without systemd: sudo podman system service --time=0 %s &)\n"+
			"  or, as a normal user, use the rootless service: systemctl --user enable --now podman.socket\n"+
			"  (no Podman yet? sudo apt-get install podman on Debian/Ubuntu, sudo dnf install podman on Fedora/RHEL)", ep.URI)
	default:
		if strings.HasPrefix(ep.URI, "unix://") {
			return fmt.Sprintf("start a service on that socket: podman system service --time=0 %s &\n"+
				"  or change the address (%s); check with: podman --url %s info", ep.URI, ep.Source, ep.URI)
		}
		return fmt.Sprintf("check that a Podman service runs there: podman --url %s info\n"+
			"  or change the address (%s)", ep.URI, ep.Source)
	}
}

// Unwrap returns ErrNoService and the last connection error, so that
// errors.Is matches either.
func (e *NoServiceError) Unwrap() []error { return []error{ErrNoService, e.Err} }

// rootCause strips the layers of wrapping that the bindings add around a
// dial error, keeping the message short.
func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		// Keep the innermost error that still says something useful.
		if strings.Contains(next.Error(), "dial") || strings.Contains(next.Error(), "connect") {
			err = next
			continue
		}
		return err
	}
}
