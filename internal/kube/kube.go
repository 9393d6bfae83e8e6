// Package kube turns a suite pod into Kubernetes YAML with Podman's own
// generator, moving the suite password into a Secret and tmpfs mounts into
// memory-backed emptyDir volumes. Environment.KubeYAML and `cleanroom
// kube` use it.
package kube

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/internal/secret"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// Engine is what YAML needs of the engine; *podman.Client is one.
type Engine interface {
	// GenerateKube returns Podman's Kubernetes YAML for the named pods or
	// containers.
	GenerateKube(ctx context.Context, names ...string) ([]byte, error)
	// InspectPod returns the pod's labels (suite, password) among the rest.
	InspectPod(ctx context.Context, nameOrID string) (*podman.PodInfo, error)
	// InspectContainer returns the container's entrypoint among the rest.
	InspectContainer(ctx context.Context, nameOrID string) (*podman.ContainerInfo, error)
}

// SecretKey is the key of the suite password in the Secret YAML writes;
// the Secret is named after the pod, with "-secret".
const SecretKey = "password"

// YAML returns pod as Kubernetes YAML made by Podman's own generator,
// ready for `kubectl apply -f` or `podman kube play`, with two changes:
// the suite password leaves the pod spec for a Kubernetes Secret (env
// values reference it with secretKeyRef; a command line that carries it
// runs through /bin/sh, taking it from the env variable
// CLEANROOM_PASSWORD), and tmpfs mounts become emptyDir volumes in memory
// (Podman 4 writes them as a host path named "tmpfs").
func YAML(ctx context.Context, eng Engine, pod string) ([]byte, error) {
	info, err := eng.InspectPod(ctx, pod)
	if err != nil {
		return nil, fmt.Errorf("cleanroom: kube YAML of %s: %w", pod, err)
	}
	password := info.Labels[labels.Secret]
	if h := info.Labels[labels.Host]; password == "" && (h == "" || h == hostname()) {
		password, _ = secret.Suite(info.Labels[labels.Suite]) // derived, as by the pod's creator
	}
	raw, err := eng.GenerateKube(ctx, pod)
	if err != nil {
		return nil, fmt.Errorf("cleanroom: kube YAML of %s: %w", pod, err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("cleanroom: read Podman's kube YAML of %s: %w", pod, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	secretName := pod + "-secret"
	usedSecret := false
	for _, doc := range docs {
		if doc["kind"] != "Pod" {
			continue
		}
		spec, _ := doc["spec"].(map[string]any)
		if spec == nil {
			continue
		}
		memoryVolumes(spec)
		if password == "" {
			continue
		}
		containers, _ := spec["containers"].([]any)
		for _, c := range containers {
			cm := c.(map[string]any)
			var entrypoint []string
			if name, _ := cm["name"].(string); name != "" {
				if ci, err := eng.InspectContainer(ctx, name); err == nil {
					entrypoint = ci.Entrypoint
				}
			}
			if hideSecret(cm, password, secretName, entrypoint) {
				usedSecret = true
			}
		}
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "# The Cleanroom suite pod %s, written by Podman's kube generator and\n# cleanroom (password in a Secret, tmpfs as emptyDir in memory).\n# kubectl apply -f this-file   or   podman kube play this-file\n", pod)
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if usedSecret {
		if err := enc.Encode(map[string]any{
			"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
			"metadata": map[string]any{"name": secretName},
			"data":     map[string]any{SecretKey: base64.StdEncoding.EncodeToString([]byte(password))},
		}); err != nil {
			return nil, err
		}
	}
	for _, doc := range docs {
		if err := enc.Encode(doc); err != nil {
			return nil, err
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// memoryVolumes turns the host path "tmpfs" Podman writes for a tmpfs
// mount into an emptyDir in memory.
func memoryVolumes(spec map[string]any) {
	vols, _ := spec["volumes"].([]any)
	for _, v := range vols {
		vol, _ := v.(map[string]any)
		hp, _ := vol["hostPath"].(map[string]any)
		if hp != nil && hp["path"] == "tmpfs" {
			delete(vol, "hostPath")
			vol["emptyDir"] = map[string]any{"medium": "Memory"}
		}
	}
}

// hideSecret moves secret out of a container spec; it reports whether the
// container used it. An env value becomes a secretKeyRef. A command line
// that carries it (Redis' --requirepass) becomes `/bin/sh -c 'exec …'`
// reading it from $CLEANROOM_PASSWORD: Kubernetes would expand
// $(CLEANROOM_PASSWORD) in args itself, Podman's kube play does not.
func hideSecret(c map[string]any, secret, secretName string, entrypoint []string) bool {
	used := false
	ref := map[string]any{"secretKeyRef": map[string]any{"name": secretName, "key": SecretKey}}
	envs, _ := c["env"].([]any)
	for _, e := range envs {
		env, _ := e.(map[string]any)
		if v, _ := env["value"].(string); v == secret {
			delete(env, "value")
			env["valueFrom"] = ref
			used = true
		}
	}
	var argv []string
	inArgs := false
	command, _ := c["command"].([]any)
	args, _ := c["args"].([]any)
	if len(command) == 0 {
		argv = append(argv, entrypoint...)
	}
	for _, a := range append(append([]any{}, command...), args...) {
		s, _ := a.(string)
		if strings.Contains(s, secret) {
			inArgs = true
		}
		argv = append(argv, s)
	}
	if inArgs {
		var line []string
		for _, a := range argv {
			if a == "" { // an argument of its own: Redis' --save ""
				line = append(line, "''")
				continue
			}
			parts := strings.Split(a, secret)
			for i, p := range parts {
				parts[i] = shellQuote(p)
			}
			line = append(line, strings.Join(parts, `"$CLEANROOM_PASSWORD"`))
		}
		c["command"] = []any{"/bin/sh", "-c", "exec " + strings.Join(line, " ")}
		delete(c, "args")
		if !hasEnv(envs, "CLEANROOM_PASSWORD") {
			envs = append(envs, map[string]any{"name": "CLEANROOM_PASSWORD", "valueFrom": ref})
		}
		used = true
	}
	if used {
		c["env"] = envs
	}
	return used
}

// shellQuote quotes s for /bin/sh; the empty string stays empty (a part
// of a word, next to the password).
func shellQuote(s string) string {
	if s == "" {
		return ""
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func hasEnv(envs []any, name string) bool {
	for _, e := range envs {
		if env, _ := e.(map[string]any); env["name"] == name {
			return true
		}
	}
	return false
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
