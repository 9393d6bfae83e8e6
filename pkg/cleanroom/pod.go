package cleanroom

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

type pod struct {
	name, id string
	host     string
	ports    map[uint16]uint16
	secret   string // the password of the services in it (label io.cleanroom.secret)
}

var errPodGone = errors.New("pod is gone")

// podCall is a creation (or adoption) of a pod, which callers that need
// the same pod meanwhile wait for, each with its own context.
type podCall struct {
	done chan struct{}
	p    *pod
	err  error
}

// podFor returns the pod the entry's container lives in, creating or
// adopting it on first use: the suite pod for declared services (shared by
// every process of the suite), a pod of this process's own otherwise.
func (e *Environment) podFor(ctx context.Context, ent *entry) (*pod, error) {
	if err := e.ensureLease(ctx); err != nil {
		return nil, err
	}
	name, ports, role := e.podName, e.ports, e.podRole
	if ent.late {
		// A late service's pod is named after it and reused across
		// replacements.
		name, ports, role = e.prefix+"-"+ent.svc.name, ent.svc.ports, "service"
	}
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return nil, errors.New("the environment is closed")
		}
		if !ent.late && e.suitePod != nil {
			p := e.suitePod
			e.mu.Unlock()
			return p, nil
		}
		if pc := e.podCalls[name]; pc != nil {
			e.mu.Unlock()
			select {
			case <-pc.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("wait for pod %s: %w", name, ctx.Err())
			}
			if pc.err != nil {
				return nil, pc.err
			}
			if ent.late {
				return pc.p, nil
			}
			continue
		}
		pc := &podCall{done: make(chan struct{})}
		e.podCalls[name] = pc
		e.mu.Unlock()

		p, err := e.createOrAdoptPod(ctx, name, ports, role)

		e.mu.Lock()
		delete(e.podCalls, name)
		if err == nil && !ent.late {
			e.suitePod = p
		}
		pc.p, pc.err = p, err
		close(pc.done)
		e.mu.Unlock()
		return p, err
	}
}

// forgetPod drops a pod that was removed from outside.
func (e *Environment) forgetPod(p *pod) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.suitePod != nil && e.suitePod.id == p.id {
		e.suitePod = nil
	}
	delete(e.pods, p.name)
	e.log.Warn("cleanroom: pod vanished; creating it again", "pod", p.name)
}

// createOrAdoptPod returns pod name, creating it (ports published on the
// bind address, host ports chosen by the engine) or, when another process
// created it, adopting it. The engine's name uniqueness is the lock: of
// concurrent creators exactly one succeeds, the others get a conflict and
// adopt. It holds no lock of the environment; a pod it made after the
// environment was closed is removed again (unless the suite shares it).
func (e *Environment) createOrAdoptPod(ctx context.Context, name string, ports []uint16, role string) (*pod, error) {
	for attempt := 0; ; attempt++ {
		info, err := e.eng.InspectPod(ctx, name)
		if err == nil {
			if info.Labels[podman.LabelManaged] != "true" || info.Labels[labels.Suite] != e.suite {
				return nil, fmt.Errorf("a pod named %s exists but is not this suite's (labels %v); remove it (podman pod rm -f %s) or choose another suite name", name, info.Labels, name)
			}
			p, err := e.podFromInfo(info)
			if err != nil {
				return nil, err
			}
			if missing := missingPorts(p, ports); len(missing) > 0 {
				// Podman creates a pod, then its infra container with the
				// ports: a pod seconds old may be half made. Look again.
				if time.Since(info.Created) < 10*time.Second {
					select {
					case <-ctx.Done():
						return nil, fmt.Errorf("wait for pod %s to publish its ports: %w", name, ctx.Err())
					case <-time.After(20 * time.Millisecond):
					}
					attempt--
					continue
				}
				return nil, fmt.Errorf("pod %s does not publish ports %v that this suite declares; remove it: podman pod rm -f %s", name, missing, name)
			}
			if err := e.notePod(ctx, name, false); err != nil {
				return nil, err
			}
			e.log.Debug("cleanroom: adopted pod", "pod", name)
			return p, nil
		}
		if !errors.Is(err, podman.ErrNotFound) {
			return nil, err
		}
		lbl := map[string]string{labels.Role: role, labels.Host: hostname()}
		if !e.secretDerived {
			// Random for this process (no per-user secret to derive it
			// from): adopters can learn it only here.
			lbl[labels.Secret] = e.secret
		}
		spec := podman.PodSpec{Name: name, Labels: e.labels(lbl),
			// The backstop if every process of ours dies: conmon ends each
			// service container at its run-time limit, and the infra
			// container (which holds the ports) stops with the last of them.
			ExitPolicy: "stop",
		}
		for _, p := range ports {
			spec.Ports = append(spec.Ports, podman.Port{ContainerPort: p, HostIP: e.cfg.BindAddress})
		}
		_, err = e.eng.CreatePod(ctx, spec)
		if errors.Is(err, podman.ErrConflict) && attempt < 5 {
			continue // another process was first: adopt its pod
		}
		if err != nil {
			return nil, err
		}
		if err := e.notePod(ctx, name, true); err != nil {
			return nil, err
		}
		e.log.Debug("cleanroom: created pod", "pod", name)
		// Its infra container (the network namespace, ~0.3 s) starts while
		// the first container is looked up and created.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), e.cfg.ContainerStartupTimeout)
			defer cancel()
			_ = e.eng.StartPod(ctx, name)
		}()
	}
}

// notePod records pod name as one this process uses (Close removes the
// ones it owns). When the environment was closed meanwhile, a pod this
// process just created is removed again, unless the suite shares it (its
// reaper removes that), and the caller gets an error.
func (e *Environment) notePod(ctx context.Context, name string, created bool) error {
	e.mu.Lock()
	closed := e.closed
	if !closed {
		e.pods[name] = true
	}
	e.mu.Unlock()
	if !closed {
		return nil
	}
	if created && !(e.share != nil && name == e.podName) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = e.eng.RemovePod(rctx, name)
	}
	return errors.New("the environment is closed")
}

func missingPorts(p *pod, ports []uint16) []uint16 {
	var missing []uint16
	for _, port := range ports {
		if p.ports[port] == 0 {
			missing = append(missing, port)
		}
	}
	return missing
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// podFromInfo reads a pod's published ports and the address this process
// reaches them on: the bind address on a local engine; the engine host's
// address on a remote one (ssh://, tcp://) unless the ports are bound to a
// specific address.
func (e *Environment) podFromInfo(info *podman.PodInfo) (*pod, error) {
	p := &pod{name: info.Name, id: info.ID, host: "127.0.0.1", ports: map[uint16]uint16{}, secret: info.Labels[labels.Secret]}
	if p.secret == "" {
		p.secret = e.secret // derived from the suite, as by its creator
	}
	remote := e.engineHost()
	if remote != "" {
		p.host = remote
	}
	for key, addr := range info.Ports {
		port, proto, _ := strings.Cut(key, "/")
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || proto != "tcp" {
			continue
		}
		p.ports[uint16(n)] = addr.Port
		if addr.IP != "" && addr.IP != "0.0.0.0" && (remote == "" || !isLoopback(addr.IP)) {
			p.host = addr.IP
		}
	}
	return p, nil
}

// engineHost is the host of a remote engine's URI ("" for a local socket,
// or a remote URI that points at this machine).
func (e *Environment) engineHost() string { return remoteHost(e.endpoint.URI) }

func remoteHost(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "ssh" && u.Scheme != "tcp") || isLoopback(u.Hostname()) {
		return ""
	}
	return u.Hostname()
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
