// Package pull pulls an image with progress people can watch: per-layer
// bytes redrawn on a terminal, one summary line elsewhere, nothing under
// `go test` without -v. A pull that stalls or outlives its timeout fails
// with an error that names the image and the registry. The library's
// image pulls and `cleanroom pull` use it.
package pull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// Defaults of Options.
const (
	DefaultTimeout = 10 * time.Minute
	DefaultStall   = 30 * time.Second
)

// Options tune WithProgress. The zero value pulls silently with the
// defaults.
type Options struct {
	// Timeout bounds the whole pull. Default 10 min; it is separate from
	// the start-up timeout, which starts after the pull.
	Timeout time.Duration
	// Stall ends a pull that reports no progress for this long, with an
	// error naming the image and the registry. Default 30 s.
	Stall time.Duration
	// Output receives progress; nil: none.
	Output io.Writer
	// Terminal redraws per-layer byte counts in place on Output; otherwise
	// one summary line is written when the pull ends.
	Terminal bool
}

// Puller pulls images; *podman.Client is one.
type Puller interface {
	// Pull fetches ref into the engine's store, calling progress for each
	// event it reports, and returns when the pull ends.
	Pull(ctx context.Context, ref string, progress func(podman.PullEvent)) error
}

var (
	errStalled     = errors.New("stalled")
	errPullTimeout = errors.New("pull timeout")
)

// WithProgress pulls ref, reporting progress as opts say, and fails a
// pull that stalls or outlives its timeout with an error that names the
// image and the registry.
func WithProgress(ctx context.Context, p Puller, ref string, opts Options) error {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Stall <= 0 {
		opts.Stall = DefaultStall
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	caller := ctx
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, opts.Timeout, errPullTimeout)
	defer cancelTimeout()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	defer close(done)
	go func() { // the stall detector
		t := time.NewTicker(min(opts.Stall/4, time.Second))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if time.Since(time.Unix(0, last.Load())) > opts.Stall {
					cancel(errStalled)
					return
				}
			}
		}
	}()

	began := time.Now()
	prog := &pullProgress{ref: ref, out: opts.Output, terminal: opts.Terminal, layers: map[string]*layerState{}}
	err := p.Pull(ctx, ref, func(ev podman.PullEvent) {
		last.Store(time.Now().UnixNano())
		prog.event(ev)
	})
	prog.finish(err, time.Since(began))
	registry := registryOf(ref)
	switch {
	case errors.Is(context.Cause(ctx), errStalled):
		return fmt.Errorf("pull %s: no progress for %s from registry %s: the pull stalled; check the network and the registry, or pull it yourself: podman pull %s", ref, opts.Stall, registry, ref)
	case caller.Err() != nil && err != nil:
		return fmt.Errorf("pull %s from registry %s: %w", ref, registry, caller.Err())
	case errors.Is(context.Cause(ctx), errPullTimeout) && err != nil:
		return fmt.Errorf("pull %s: not done within the pull timeout (%s) from registry %s: raise pull_timeout (CLEANROOM_PULL_TIMEOUT) or pull it beforehand: cleanroom pull %s: %w", ref, opts.Timeout, registry, ref, context.DeadlineExceeded)
	case err != nil:
		return fmt.Errorf("%w (registry %s)", err, registry)
	}
	return nil
}

// registryOf is the registry a reference pulls from.
func registryOf(ref string) string {
	first, _, found := strings.Cut(ref, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first
	}
	return "docker.io"
}

type layerState struct {
	status         string
	current, total int64
}

// pullProgress renders pull events: per-layer lines redrawn in place on a
// terminal, one summary line otherwise.
type pullProgress struct {
	ref      string
	out      io.Writer
	terminal bool

	mu     sync.Mutex
	layers map[string]*layerState
	order  []string
	drawn  int // lines on screen
	lastAt time.Time
}

func (p *pullProgress) event(ev podman.PullEvent) {
	if ev.Layer == "" || len(ev.Layer) < 8 {
		return // the image-level lines ("Pulling from …", digests)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.layers[ev.Layer]
	if l == nil {
		l = &layerState{}
		p.layers[ev.Layer] = l
		p.order = append(p.order, ev.Layer)
	}
	l.status = ev.Status
	if ev.Total > 0 {
		l.current, l.total = ev.Current, ev.Total
	}
	if strings.Contains(strings.ToLower(ev.Status), "complete") && l.total > 0 {
		l.current = l.total
	}
	if p.out != nil && p.terminal && time.Since(p.lastAt) > 100*time.Millisecond {
		p.draw()
		p.lastAt = time.Now()
	}
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// draw rewrites the per-layer block. Called with p.mu held.
func (p *pullProgress) draw() {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	fmt.Fprintf(&b, "\x1b[2Kpulling %s\n", p.ref)
	for _, id := range p.order {
		l := p.layers[id]
		short := id
		if len(short) > 12 {
			short = short[:12]
		}
		bytes := ""
		if l.total > 0 {
			bytes = fmt.Sprintf("%s / %s", mb(l.current), mb(l.total))
		}
		fmt.Fprintf(&b, "\x1b[2K  %s  %-18s %s\n", short, l.status, bytes)
	}
	p.drawn = 1 + len(p.order)
	_, _ = io.WriteString(p.out, b.String())
}

func (p *pullProgress) finish(err error, took time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out == nil {
		return
	}
	if p.terminal && len(p.layers) > 0 {
		p.draw()
	}
	if err != nil {
		return // the error says it
	}
	var total int64
	ids := make([]string, 0, len(p.layers))
	for id, l := range p.layers {
		total += l.total
		ids = append(ids, id)
	}
	sort.Strings(ids)
	fmt.Fprintf(p.out, "cleanroom: pulled %s (%d layers, %s) in %s\n", p.ref, len(ids), mb(total), took.Round(100*time.Millisecond))
}

// Output says where the library reports pulls, and whether that is a
// terminal: stderr, except under `go test` without -v (and without
// CLEANROOM_DEBUG=1), where it is quiet (nil).
func Output() (io.Writer, bool) {
	testing, verbose := false, false
	if strings.HasSuffix(os.Args[0], ".test") {
		testing = true
	}
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.") {
			testing = true
		}
		if a == "-test.v" || a == "-test.v=true" || a == "-test.v=test2json" {
			verbose = true
		}
	}
	if testing && !verbose && !debugEnabled() {
		return nil, false
	}
	return os.Stderr, term.IsTerminal(int(os.Stderr.Fd()))
}

func debugEnabled() bool {
	v := os.Getenv("CLEANROOM_DEBUG")
	return v != "" && v != "0" && v != "false"
}
