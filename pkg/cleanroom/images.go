package cleanroom

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/pull"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// ensureImage pulls the service's image when the engine does not have it,
// with progress where someone can watch (see pull.Output), bounded by the
// pull timeout, not the start-up timeout. Concurrent callers for one image
// share one look-up and pull (the parallel tests that fall back to
// containers of their own when a singleton cannot start would otherwise
// pull a broken image once each), each waiting with its own context.
func (e *Environment) ensureImage(ctx context.Context, svc *Service) error {
	if _, ok := e.imagesPresent.Load(svc.image); ok {
		return nil
	}
	call := &imageCall{done: make(chan struct{})}
	if prev, loaded := e.imageCalls.LoadOrStore(svc.image, call); loaded {
		prev := prev.(*imageCall)
		select {
		case <-prev.done:
			return prev.err
		case <-ctx.Done():
			return fmt.Errorf("wait for the pull of %s: %w", svc.image, ctx.Err())
		}
	}
	call.err = e.fetchImage(ctx, svc)
	e.imageCalls.Delete(svc.image)
	close(call.done)
	return call.err
}

type imageCall struct {
	done chan struct{}
	err  error
}

func (e *Environment) fetchImage(ctx context.Context, svc *Service) error {
	ok, err := e.eng.ImageExists(ctx, svc.image)
	if err != nil {
		return err
	}
	if ok {
		e.imagesPresent.Store(svc.image, struct{}{})
		return nil
	}
	e.log.Info("cleanroom: pulling image", "image", svc.image)
	out, terminal := pull.Output()
	began := time.Now()
	err = pull.WithProgress(ctx, pullLogger{e.eng, e.log, svc.image}, svc.image, pull.Options{
		Timeout: e.cfg.PullTimeout, Output: out, Terminal: terminal,
	})
	if err != nil {
		env := "CLEANROOM_" + strings.ToUpper(strings.ReplaceAll(svc.name, "-", "_")) + "_IMAGE"
		return fmt.Errorf("%w\n(the image is not in the engine's store and could not be pulled: pull or build it, or choose another with [cleanroom.images] %s = \"…\" or %s)", err, svc.name, env)
	}
	e.log.Info("cleanroom: pulled image", "image", svc.image, "took", time.Since(began).Round(time.Millisecond))
	e.imagesPresent.Store(svc.image, struct{}{})
	return nil
}

// pullLogger passes pull events on to the debug log too.
type pullLogger struct {
	eng   engine
	log   *slog.Logger
	image string
}

// Pull pulls ref through the engine, logging each progress event at debug
// level before passing it on to progress.
func (p pullLogger) Pull(ctx context.Context, ref string, progress func(podman.PullEvent)) error {
	return p.eng.Pull(ctx, ref, func(ev podman.PullEvent) {
		p.log.Debug("cleanroom: pull", "image", p.image, "status", ev.Status, "layer", ev.Layer, "current", ev.Current, "total", ev.Total)
		progress(ev)
	})
}
