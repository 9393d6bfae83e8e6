package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/cleanroom-go/cleanroom/internal/kube"
	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

var kubeCommand = &command{
	name:     "kube",
	synopsis: "[POD]",
	summary: "the suite pod (default: the only one) as Kubernetes YAML, made by Podman's\n" +
		"            generator, the password in a Secret",
}

func init() { kubeCommand.run = runKube }

func runKube(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("kube", flag.ContinueOnError)
	if err := parseFlags(e, kubeCommand, fs, args, 1); err != nil {
		return err
	}
	return withEngine(ctx, e, func(ctx context.Context, c *podman.Client) error {
		return kubeYAML(ctx, c, fs.Args(), e.stdout)
	})
}

// kube writes a suite pod as Kubernetes YAML.
func kubeYAML(ctx context.Context, c *podman.Client, args []string, out io.Writer) error {
	var pod string
	switch len(args) {
	case 1:
		pod = args[0]
	case 0:
		pods, err := c.ListPods(ctx, map[string]string{podman.LabelManaged: "true", labels.Role: "suite"})
		if err != nil {
			return err
		}
		if len(pods) != 1 {
			var names []string
			for _, p := range pods {
				names = append(names, p.Name)
			}
			return fmt.Errorf("name the pod: %d suite pods run (%s); start the suite's services first (keep_warm keeps them)", len(pods), strings.Join(names, ", "))
		}
		pod = pods[0].Name
	default:
		return errors.New("usage: cleanroom kube [POD]")
	}
	y, err := kube.YAML(ctx, c, pod)
	if err != nil {
		return err
	}
	_, err = out.Write(y)
	return err
}
