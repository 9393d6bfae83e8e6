package podman

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ImageExists reports whether the image is in the engine's local store.
func (c *Client) ImageExists(ctx context.Context, ref string) (bool, error) {
	err := c.call(ctx, "look up image "+ref, request{method: http.MethodGet, path: "/images/%s/exists", args: []string{ref}}, nil)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// PullEvent is one progress report of a pull.
type PullEvent struct {
	// Status is the engine's word for the step: "Pulling fs layer",
	// "Downloading", "Download complete", "Pull complete", a summary line…
	Status string
	// Layer is the layer (or image) the event is about; "" for the pull.
	Layer string
	// Current and Total are bytes of Layer, when the step reports them.
	Current, Total int64
}

// Pull fetches ref into the local store, calling progress (if not nil) for
// each event the engine reports, in order, on the calling goroutine. The
// context bounds the whole pull. An image that cannot be had gives an error
// naming the reference and the engine's reason.
func (c *Client) Pull(ctx context.Context, ref string, progress func(PullEvent)) error {
	op := "pull image " + ref
	// The Docker-compatible endpoint reports per-layer byte progress; the
	// libpod one only text lines.
	resp, err := c.compat(ctx, op, http.MethodPost, "/images/create", url.Values{"fromImage": {ref}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Status         string `json:"status"`
			ID             string `json:"id"`
			Error          string `json:"error"`
			ProgressDetail struct {
				Current int64 `json:"current"`
				Total   int64 `json:"total"`
			} `json:"progressDetail"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%s: %w", op, ctx.Err())
			}
			return fmt.Errorf("%s: read progress: %w", op, err)
		}
		if msg.Error != "" || msg.ErrorDetail.Message != "" {
			m := msg.ErrorDetail.Message
			if m == "" {
				m = msg.Error
			}
			return &APIError{Op: op, Message: strings.TrimSpace(m)}
		}
		if progress != nil {
			progress(PullEvent{Status: msg.Status, Layer: msg.ID, Current: msg.ProgressDetail.Current, Total: msg.ProgressDetail.Total})
		}
	}
}

// ImageID returns the ID of a local image; ErrNotFound when it is missing.
func (c *Client) ImageID(ctx context.Context, ref string) (string, error) {
	var out struct {
		ID string `json:"Id"`
	}
	err := c.call(ctx, "inspect image "+ref, request{method: http.MethodGet, path: "/images/%s/json", args: []string{ref}}, &out)
	return out.ID, err
}

// ImageSummary is one row of ListImages.
type ImageSummary struct {
	ID     string            `json:"Id"`     // image ID (64 hex digits)
	Names  []string          `json:"Names"`  // its names, e.g. "docker.io/library/postgres:16"
	Labels map[string]string `json:"Labels"` // the image's labels
	Size   int64             `json:"Size"`   // bytes
}

// ListImages lists local images carrying all the given labels (a value of
// "" matches any value of that key).
func (c *Client) ListImages(ctx context.Context, labels map[string]string) ([]ImageSummary, error) {
	// Podman 4.3 answers nothing for two label filters on images where one
	// has no value; ask for one, match the rest here.
	var first map[string]string
	for k, v := range labels {
		if v != "" {
			first = map[string]string{k: v}
			break
		}
	}
	var all []ImageSummary
	if err := c.call(ctx, "list images", request{method: http.MethodGet, path: "/images/json", query: labelFilters(first)}, &all); err != nil {
		return nil, err
	}
	var out []ImageSummary
	for _, img := range all {
		match := true
		for k, v := range labels {
			if have, ok := img.Labels[k]; !ok || (v != "" && have != v) {
				match = false
			}
		}
		if match {
			out = append(out, img)
		}
	}
	return out, nil
}

// RemoveImage removes a local image. An image that containers use is kept
// and gives an error matching ErrConflict.
func (c *Client) RemoveImage(ctx context.Context, ref string) error {
	return c.call(ctx, "remove image "+ref, request{method: http.MethodDelete, path: "/images/%s", args: []string{ref}}, nil)
}

// Commit makes an image ref ("repo:tag") of a container's file system,
// applying changes (Dockerfile instructions such as "LABEL k=v"); it
// returns the image ID. The container is not paused: stop it first for a
// consistent image.
func (c *Client) Commit(ctx context.Context, container, ref string, changes []string) (string, error) {
	repo, tag := ref, ""
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		repo, tag = ref[:i], ref[i+1:]
	}
	q := url.Values{"container": {container}, "repo": {repo}, "pause": {"false"}}
	if tag != "" {
		q.Set("tag", tag)
	}
	for _, ch := range changes {
		q.Add("changes", ch)
	}
	var out idResponse
	err := c.call(ctx, "commit "+container+" as "+ref, request{method: http.MethodPost, path: "/commit", query: q}, &out)
	return out.ID, err
}
