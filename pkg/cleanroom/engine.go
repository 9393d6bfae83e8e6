package cleanroom

import (
	"context"

	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// engine is the part of *podman.Client an Environment uses: the seam where
// unit tests put a fake.
type engine interface {
	CreatePod(ctx context.Context, spec podman.PodSpec) (string, error)
	InspectPod(ctx context.Context, nameOrID string) (*podman.PodInfo, error)
	ListPods(ctx context.Context, labels map[string]string) ([]podman.PodSummary, error)
	StartPod(ctx context.Context, nameOrID string) error
	RemovePod(ctx context.Context, nameOrID string) error
	CreateContainer(ctx context.Context, spec podman.ContainerSpec) (string, error)
	StartContainer(ctx context.Context, nameOrID string) error
	InspectContainer(ctx context.Context, nameOrID string) (*podman.ContainerInfo, error)
	RemoveContainer(ctx context.Context, nameOrID string) error
	Logs(ctx context.Context, nameOrID string, tail int) ([]string, error)
	Exec(ctx context.Context, nameOrID string, cmd []string) (podman.ExecResult, error)
	ImageExists(ctx context.Context, ref string) (bool, error)
	Pull(ctx context.Context, ref string, progress func(podman.PullEvent)) error
	Close() error
}

var _ engine = (*podman.Client)(nil)

// dialEngine connects to Podman; unit tests replace it.
var dialEngine = func(ctx context.Context, uri string) (engine, error) {
	return podman.Connect(ctx, podman.Options{URI: uri})
}

// spawnReaperHook starts a suite's reaper (the test binary re-executed);
// unit tests replace it.
var spawnReaperHook = (*Environment).spawnReaper
