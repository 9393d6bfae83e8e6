package p8

import (
	"fmt"
	"testing"

	"github.com/cleanroom-go/cleanroom/bench/workload"
)

func TestMain(m *testing.M) { workload.Main(m) }

func TestWorkload(t *testing.T) {
	for i := range workload.TestsPerPackage {
		t.Run(fmt.Sprint(i), func(t *testing.T) { workload.Test(t, i) })
	}
}
