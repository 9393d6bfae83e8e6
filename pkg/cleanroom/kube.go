package cleanroom

import (
	"context"
	"errors"

	"github.com/cleanroom-go/cleanroom/internal/kube"
)

// KubeYAML starts every declared service and returns the suite's pod as
// Kubernetes YAML made by Podman's own generator, ready for `kubectl apply
// -f` or `podman kube play`, with two changes: the suite password leaves
// the pod spec for a Kubernetes Secret (env values reference it with
// secretKeyRef; a command line that carries it runs through /bin/sh, taking
// it from the env variable CLEANROOM_PASSWORD), and tmpfs mounts become
// emptyDir volumes in memory.
func (e *Environment) KubeYAML(ctx context.Context) ([]byte, error) {
	for _, name := range e.Services() {
		if _, err := e.Get(ctx, name); err != nil {
			return nil, err
		}
	}
	ke, ok := e.eng.(kube.Engine)
	if !ok {
		return nil, errors.New("cleanroom: this engine cannot generate Kubernetes YAML")
	}
	return kube.YAML(ctx, ke, e.podName)
}
