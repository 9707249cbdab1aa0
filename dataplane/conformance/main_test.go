package conformance

import (
	"flag"
	"os"
	"testing"
)

// TestMain lets the checks, which mostly wait on sockets and timers, run
// many at a time: go test's default parallelism (GOMAXPROCS) would run the
// suite's few hundred checks two by two.
func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", "48")
	}
	os.Exit(m.Run())
}
