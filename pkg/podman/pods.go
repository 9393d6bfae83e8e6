package podman

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/containers/podman/v5/libpod/define"
)

// Labels every object created through this package carries.
const (
	// LabelManaged marks an object as Cleanroom's; cleanup never touches an
	// object without it.
	LabelManaged = "io.cleanroom.managed"
	// LabelPrefix starts every Cleanroom label.
	LabelPrefix = "io.cleanroom."
)

// withManaged returns labels plus LabelManaged=true, without changing labels.
func withManaged(labels map[string]string) map[string]string {
	out := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		out[k] = v
	}
	out[LabelManaged] = "true"
	return out
}

// Port publishes a container port of a pod on the host.
type Port struct {
	ContainerPort uint16 // the port inside the pod; required (0 is refused)
	// HostPort is the port on the host. Default 0: the engine picks a free
	// one, so parallel suites never collide; read it back with
	// PodInfo.HostPort.
	HostPort uint16
	// HostIP is the host address to bind. Default 127.0.0.1: nothing is
	// reachable from other machines unless asked for.
	HostIP string
	// Protocol is "tcp" (default) or "udp".
	Protocol string
}

// PodSpec describes a pod to create.
type PodSpec struct {
	Name   string            // required; unique on the engine
	Labels map[string]string // LabelManaged is added
	Ports  []Port            // fixed for the pod's lifetime
	// ExitPolicy is what becomes of the pod when its last container
	// exits: "continue" (the engine's default: the infra container, which
	// holds the network namespace and the ports, runs on) or "stop" (it
	// stops too; starting a container in the pod starts it again, with the
	// same ports).
	ExitPolicy string
}

type portMapping struct {
	HostIP        string `json:"host_ip,omitempty"`
	ContainerPort uint16 `json:"container_port"`
	HostPort      uint16 `json:"host_port,omitempty"`
	Protocol      string `json:"protocol,omitempty"`
}

type podCreateRequest struct {
	Name         string            `json:"name"`
	Labels       map[string]string `json:"labels,omitempty"`
	PortMappings []portMapping     `json:"portmappings,omitempty"`
	ExitPolicy   string            `json:"exit_policy,omitempty"`
}

type idResponse struct {
	ID string `json:"Id"`
}

// CreatePod creates a pod (with its infra container, not yet started) and
// returns its ID. A taken name gives an error matching ErrConflict.
func (c *Client) CreatePod(ctx context.Context, spec PodSpec) (string, error) {
	op := "create pod " + spec.Name
	if spec.Name == "" {
		return "", fmt.Errorf("create pod: a name is required")
	}
	req := podCreateRequest{Name: spec.Name, Labels: withManaged(spec.Labels), ExitPolicy: spec.ExitPolicy}
	for _, p := range spec.Ports {
		if p.ContainerPort == 0 {
			return "", fmt.Errorf("%s: container port 0 is not a port", op)
		}
		m := portMapping{HostIP: p.HostIP, ContainerPort: p.ContainerPort, HostPort: p.HostPort, Protocol: p.Protocol}
		if m.HostIP == "" {
			m.HostIP = "127.0.0.1"
		}
		if m.Protocol == "" {
			m.Protocol = "tcp"
		}
		req.PortMappings = append(req.PortMappings, m)
	}
	var out idResponse
	if err := c.call(ctx, op, request{method: http.MethodPost, path: "/pods/create", body: req}, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// StartPod starts the pod's infra container and any created containers.
// Starting a running pod is not an error.
func (c *Client) StartPod(ctx context.Context, nameOrID string) error {
	return c.call(ctx, "start pod "+nameOrID, request{method: http.MethodPost, path: "/pods/%s/start", args: []string{nameOrID}}, nil)
}

// PodInfo is what inspecting a pod tells.
type PodInfo struct {
	ID      string            // pod ID (64 hex digits)
	Name    string            // pod name
	State   string            // e.g. "Created", "Running", "Degraded", "Exited"
	Created time.Time         // when the pod was created
	Labels  map[string]string // the pod's labels, LabelManaged among them for ours
	// Ports maps "5432/tcp" to the host address it is published on.
	Ports      map[string]HostAddr
	Containers []PodContainer // including the infra container
}

// HostAddr is a published port's host side.
type HostAddr struct {
	IP   string // host address the port is bound to, e.g. "127.0.0.1"
	Port uint16 // host port
}

// PodContainer is a container of a pod, as the pod sees it.
type PodContainer struct {
	ID    string // container ID (64 hex digits)
	Name  string // container name
	State string // e.g. "created", "running", "exited"
}

// HostPort returns the host port that containerPort (tcp) is published on.
func (p *PodInfo) HostPort(containerPort uint16) (HostAddr, bool) {
	a, ok := p.Ports[fmt.Sprintf("%d/tcp", containerPort)]
	return a, ok
}

// InspectPod returns the pod's state and published ports. A missing pod
// gives an error matching ErrNotFound.
func (c *Client) InspectPod(ctx context.Context, nameOrID string) (*PodInfo, error) {
	var d define.InspectPodData
	if err := c.call(ctx, "inspect pod "+nameOrID, request{method: http.MethodGet, path: "/pods/%s/json", args: []string{nameOrID}}, &d); err != nil {
		return nil, err
	}
	info := &PodInfo{ID: d.ID, Name: d.Name, State: d.State, Created: d.Created, Labels: d.Labels, Ports: map[string]HostAddr{}}
	if d.InfraConfig != nil {
		for k, binds := range d.InfraConfig.PortBindings {
			if len(binds) == 0 {
				continue
			}
			port, err := strconv.ParseUint(binds[0].HostPort, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("inspect pod %s: host port %q of %s: %w", nameOrID, binds[0].HostPort, k, err)
			}
			info.Ports[k] = HostAddr{IP: binds[0].HostIP, Port: uint16(port)}
		}
	}
	for _, ct := range d.Containers {
		info.Containers = append(info.Containers, PodContainer{ID: ct.ID, Name: ct.Name, State: ct.State})
	}
	return info, nil
}

// PodSummary is one row of ListPods.
type PodSummary struct {
	ID      string            `json:"Id"`      // pod ID (64 hex digits)
	Name    string            `json:"Name"`    // pod name
	Status  string            `json:"Status"`  // e.g. "Created", "Running", "Degraded", "Exited"
	Created time.Time         `json:"Created"` // when the pod was created
	Labels  map[string]string `json:"Labels"`  // the pod's labels
	// Containers are the pod's containers, the infra container included:
	// ID, name and state ("running", "exited", …) of each.
	Containers []struct {
		ID     string `json:"Id"`
		Names  string `json:"Names"`
		Status string `json:"Status"`
	} `json:"Containers"`
}

// labelFilters encodes label filters ("key" or "key=value") as the API's
// filters parameter.
func labelFilters(labels map[string]string) url.Values {
	q := url.Values{}
	if len(labels) == 0 {
		return q
	}
	var f []string
	for k, v := range labels {
		if v == "" {
			f = append(f, k)
		} else {
			f = append(f, k+"="+v)
		}
	}
	sort.Strings(f)
	b, _ := json.Marshal(map[string][]string{"label": f})
	q.Set("filters", string(b))
	return q
}

// ListPods lists the pods carrying all the given labels (a value of ""
// matches any value of that key).
func (c *Client) ListPods(ctx context.Context, labels map[string]string) ([]PodSummary, error) {
	var out []PodSummary
	err := c.call(ctx, "list pods", request{method: http.MethodGet, path: "/pods/json", query: labelFilters(labels)}, &out)
	return out, err
}

// RemovePod removes the pod and all its containers, stopping them first
// (force). A missing pod gives an error matching ErrNotFound.
func (c *Client) RemovePod(ctx context.Context, nameOrID string) error {
	q := url.Values{"force": {"true"}}
	return c.call(ctx, "remove pod "+nameOrID, request{method: http.MethodDelete, path: "/pods/%s", args: []string{nameOrID}, query: q}, nil)
}
