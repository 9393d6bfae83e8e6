package cleanroom

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// ensureImage pulls the service's image when the engine does not have it,
// with progress where someone can watch (see pullOutput), bounded by the
// pull timeout, not the start-up timeout.
func (e *Environment) ensureImage(ctx context.Context, svc *Service) error {
	if _, ok := e.imagesPresent.Load(svc.image); ok {
		return nil
	}
	ok, err := e.eng.ImageExists(ctx, svc.image)
	if err != nil {
		return err
	}
	if ok {
		e.imagesPresent.Store(svc.image, struct{}{})
		return nil
	}
	e.log.Info("cleanroom: pulling image", "image", svc.image)
	out, terminal := pullOutput()
	began := time.Now()
	err = PullWithProgress(ctx, pullLogger{e.eng, e.log, svc.image}, svc.image, PullOptions{
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

func (p pullLogger) Pull(ctx context.Context, ref string, progress func(podman.PullEvent)) error {
	return p.eng.Pull(ctx, ref, func(ev podman.PullEvent) {
		p.log.Debug("cleanroom: pull", "image", p.image, "status", ev.Status, "layer", ev.Layer, "current", ev.Current, "total", ev.Total)
		progress(ev)
	})
}
