package cleanroom

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/internal/runid"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// Snapshot start-up: the first time a service with snapshots becomes ready
// from its plain image, a builder container runs the same definition with
// its data in the container's own file system (no tmpfs), is stopped
// cleanly and committed as a local image. Later cold starts use that image:
// Podman copies the image's data up into the tmpfs mount, so the service
// starts on initialised data (for Postgres: no initdb, ~1.7 s saved).
//
// The snapshot's key covers the base image's ID, the definition and the
// suite's password (it is in the data), so any change makes a new one; a
// suite keeps only its newest snapshot per service. CLEANROOM_REBUILD=1
// drops them, `cleanroom gc --snapshots` removes them all, and
// Config.DisableSnapshots (snapshots = false) turns them off.

// snapshotter is the engine part snapshots need: *podman.Client has it.
type snapshotter interface {
	ImageID(ctx context.Context, ref string) (string, error)
	Commit(ctx context.Context, container, ref string, changes []string) (string, error)
	ListImages(ctx context.Context, labels map[string]string) ([]podman.ImageSummary, error)
	RemoveImage(ctx context.Context, ref string) error
	StopContainer(ctx context.Context, nameOrID string, timeout time.Duration) error
}

// imageID is the ID of image, looked up once per environment.
func (e *Environment) imageID(ctx context.Context, image string) (string, error) {
	if id, ok := e.imageIDs.Load(image); ok {
		return id.(string), nil
	}
	id, err := e.eng.(snapshotter).ImageID(ctx, image)
	if err != nil {
		return "", err
	}
	e.imageIDs.Store(image, id)
	return id, nil
}

// snapshotRef returns the snapshot image of svc (plain, from its base
// image), or "" when svc takes no snapshots here.
func (e *Environment) snapshotRef(ctx context.Context, svc *Service, secret string) (ref, key, baseID string) {
	if !svc.snapshot || e.cfg.DisableSnapshots {
		return "", "", ""
	}
	if _, ok := e.eng.(snapshotter); !ok {
		return "", "", ""
	}
	baseID, err := e.imageID(ctx, svc.image)
	if err != nil {
		return "", "", ""
	}
	sum := sha256.Sum256([]byte(baseID + "\x00" + svc.definition() + "\x00" + secret))
	key = hex.EncodeToString(sum[:])[:16]
	return fmt.Sprintf("%s/%s:%s", labels.SnapshotRepository, snapshotName(e.suite, svc.name), key), key, baseID
}

// refSeparators are the runs of characters an image name may not hold.
var refSeparators = regexp.MustCompile(`[^a-z0-9]+`)

// snapshotName is the last path component of a snapshot image's name.
// Image names allow only lower-case letters and digits joined by single
// separators, and a suite may be named "Shop" or "shop_" (Podman refuses
// the commit: "repository name must be lowercase"). Such a name is
// folded, with a hash of the original so that "Shop" and "shop" stay
// apart.
func snapshotName(suite, service string) string {
	name := suite + "-" + service
	folded := strings.Trim(refSeparators.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if folded == name {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return folded + "-" + hex.EncodeToString(sum[:3])
}

// dropSnapshotOnce removes svc's snapshots, with CLEANROOM_REBUILD=1, the
// first time it is looked at in this process, unless this run built them:
// the packages of one go test ./... rebuild a snapshot once, not once each.
func (e *Environment) dropSnapshotOnce(ctx context.Context, svc *Service, ref string) {
	if !rebuildRequested() {
		return
	}
	e.snapMu.Lock()
	defer e.snapMu.Unlock()
	if e.snapDropped[svc.name] {
		return
	}
	e.snapDropped[svc.name] = true
	snap := e.eng.(snapshotter)
	imgs, err := snap.ListImages(ctx, map[string]string{labels.Suite: e.suite, labels.Service: svc.name, labels.Snapshot: ""})
	if err != nil {
		return
	}
	run := runid.ID()
	for _, img := range imgs {
		if img.Labels[labels.BuiltIn] == run {
			continue // rebuilt by this run already
		}
		if err := snap.RemoveImage(ctx, img.ID); err == nil {
			e.log.Info("cleanroom: dropped snapshot (CLEANROOM_REBUILD=1)", "service", svc.name, "image", ref)
		}
	}
}

func rebuildRequested() bool {
	v := os.Getenv("CLEANROOM_REBUILD")
	return v != "" && v != "0" && v != "false"
}

// buildSnapshot starts building svc's snapshot in the background; Close
// waits for it.
func (e *Environment) buildSnapshot(svc *Service, ref, key, baseID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.snapshotsDone {
		return
	}
	e.snapMu.Lock()
	if e.snapBuilding[ref] {
		e.snapMu.Unlock()
		return
	}
	e.snapBuilding[ref] = true
	e.snapMu.Unlock()
	e.snapWG.Add(1) // under e.mu, before Close began to wait
	go func() {
		defer e.snapWG.Done()
		ctx, cancel := context.WithTimeout(e.snapCtx, 2*e.cfg.ContainerStartupTimeout+time.Minute)
		defer cancel()
		began := time.Now()
		if err := e.doBuildSnapshot(ctx, svc, ref, key, baseID); err != nil {
			e.log.Warn("cleanroom: could not save a snapshot; cold starts stay slow", "service", svc.name, "error", err)
			return
		}
		e.log.Info("cleanroom: saved snapshot", "service", svc.name, "image", ref, "took", time.Since(began).Round(time.Millisecond))
	}()
}

func (e *Environment) doBuildSnapshot(ctx context.Context, svc *Service, ref, key, baseID string) error {
	snap := e.eng.(snapshotter)
	name := e.prefix + "-snap-" + svc.name
	p, err := e.createOrAdoptPod(ctx, name, svc.ports, "snapshot")
	if err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.eng.RemovePod(rctx, p.id); err == nil || errors.Is(err, podman.ErrNotFound) {
			e.mu.Lock()
			delete(e.pods, name)
			e.mu.Unlock()
		}
	}()
	// The same definition, its data in the container's own file system so
	// that a commit keeps it: no tmpfs, and no volume where the image
	// declares one (the official Postgres image has VOLUME on its data
	// directory, and a commit leaves volumes out).
	builder := *svc
	builder.tmpfs = nil
	id, err := e.eng.CreateContainer(ctx, podman.ContainerSpec{
		Name: name + "-" + svc.name, Image: svc.image, Pod: p.id,
		Env: svc.env, Entrypoint: svc.entrypoint, Command: svc.command,
		ImageVolumes: "ignore",
		Labels:       e.labels(map[string]string{labels.Service: svc.name, labels.Role: "snapshot-builder"}),
		Timeout:      2*e.cfg.ContainerStartupTimeout + time.Minute,
	})
	if err != nil {
		return err
	}
	c := e.containerOf(p, &builder, id, name+"-"+svc.name, time.Now())
	if err := e.eng.StartContainer(ctx, id); err != nil {
		return err
	}
	if err := e.waitReady(ctx, &builder, c); err != nil {
		return fmt.Errorf("builder not ready: %w", err)
	}
	if err := snap.StopContainer(ctx, id, 30*time.Second); err != nil {
		return fmt.Errorf("stop builder: %w", err)
	}
	changes := []string{
		"LABEL " + podman.LabelManaged + "=true",
		"LABEL " + labels.Snapshot + "=" + key,
		"LABEL " + labels.Suite + "=" + e.suite,
		"LABEL " + labels.Service + "=" + svc.name,
		"LABEL " + labels.BaseImage + "=" + baseID,
		"LABEL " + labels.BuiltIn + "=" + runid.ID(),
	}
	// The builder's environment would stay in the image's config, password
	// and all, for anyone who can inspect images; the containers started
	// from the snapshot get it from their own definition.
	for _, k := range slices.Sorted(maps.Keys(svc.env)) {
		if p.secret != "" && strings.Contains(svc.env[k], p.secret) {
			changes = append(changes, "ENV "+k+"=")
		}
	}
	newID, err := snap.Commit(ctx, id, ref, changes)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	// Only the newest snapshot of a suite's service is kept.
	olds, err := snap.ListImages(ctx, map[string]string{labels.Suite: e.suite, labels.Service: svc.name, labels.Snapshot: ""})
	if err == nil {
		for _, img := range olds {
			if img.ID != newID && img.Labels[labels.Snapshot] != key {
				_ = snap.RemoveImage(ctx, img.ID)
			}
		}
	}
	return nil
}
