package podman

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// GenerateKube returns Kubernetes YAML for pods or containers, made by
// Podman's own generator.
func (c *Client) GenerateKube(ctx context.Context, names ...string) ([]byte, error) {
	op := fmt.Sprintf("generate kube of %v", names)
	resp, err := c.do(ctx, op, request{method: http.MethodGet, path: "/generate/kube", query: url.Values{"names": names}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return b, nil
}

// PlayKube runs the pods of Kubernetes YAML with Podman's kube play.
func (c *Client) PlayKube(ctx context.Context, yaml []byte) error {
	op := "play kube"
	resp, err := c.conn.DoRequest(ctx, bytes.NewReader(yaml), http.MethodPost, "/play/kube", nil,
		http.Header{"API-Version": {c.version}, "Content-Type": {"application/x-yaml"}})
	if err != nil {
		return c.transportError(ctx, op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return readAPIError(op, resp.Response)
	}
	var report struct {
		Pods []struct {
			ID              string   `json:"ID"`
			ContainerErrors []string `json:"ContainerErrors"`
		} `json:"Pods"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&report); err == nil {
		for _, p := range report.Pods {
			if len(p.ContainerErrors) > 0 {
				return &APIError{Op: op, Message: fmt.Sprint(p.ContainerErrors)}
			}
		}
	}
	return nil
}

// CreateSecret stores a Podman secret (kube play reads Kubernetes secrets
// from these).
func (c *Client) CreateSecret(ctx context.Context, name string, data []byte) error {
	op := "create secret " + name
	resp, err := c.conn.DoRequest(ctx, bytes.NewReader(data), http.MethodPost, "/secrets/create", url.Values{"name": {name}},
		http.Header{"API-Version": {c.version}})
	if err != nil {
		return c.transportError(ctx, op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return readAPIError(op, resp.Response)
	}
	return nil
}

// RemoveSecret removes a Podman secret.
func (c *Client) RemoveSecret(ctx context.Context, name string) error {
	return c.call(ctx, "remove secret "+name, request{method: http.MethodDelete, path: "/secrets/%s", args: []string{name}}, nil)
}
