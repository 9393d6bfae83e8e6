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
