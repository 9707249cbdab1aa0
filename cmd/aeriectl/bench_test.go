package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkApply300 times `aeriectl apply` of 3 instances × 100
// credentials with ordered ACLs against a real `aerie serve`, then an
// idempotent re-plan of the same file (which must find nothing to do).
func BenchmarkApply300(b *testing.B) {
	s := startServer(b)
	env := map[string]string{"DEV_PW": devPW}
	var apply, replan time.Duration
	for i := 0; i < b.N; i++ {
		f := fleet([]string{fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i), fmt.Sprintf("c%d", i)}, 100)
		for j := range f.Instances {
			f.Instances[j].Quotas = nil
		}
		dir := b.TempDir()
		path := writeFile(b, dir, f)
		t0 := time.Now()
		code, out, errOut := s.ctl(b, env, "apply", "-f", path, "--secrets-file", filepath.Join(dir, "secrets.yaml"))
		apply += time.Since(t0)
		if code != 0 || !strings.Contains(out, "Apply complete: 312 added, 3 changed") {
			b.Fatalf("apply: %d\n%s\n%s", code, out, errOut)
		}
		t0 = time.Now()
		code, out, _ = s.ctl(b, env, "plan", "-f", path)
		replan += time.Since(t0)
		if code != 0 {
			b.Fatalf("re-plan: %d\n%s", code, out)
		}
	}
	b.ReportMetric(apply.Seconds()/float64(b.N), "apply-s")
	b.ReportMetric(replan.Seconds()/float64(b.N), "replan-s")
}
