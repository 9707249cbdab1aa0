package main_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkTerraformApply300 times `terraform apply` of 3 instances × 100
// credentials (with their ACL rules, quotas, an API key and a member) with
// the real terraform binary against `aerie serve`, then an idempotent
// re-plan of the same configuration (and the same plan without refresh,
// Terraform's own share), and reports them in seconds.
func BenchmarkTerraformApply300(b *testing.B) {
	s := serve(b)
	owner := s.signup(b, "bench@example.com")
	_, key := owner.apiKey(b)
	var apply, replan, local time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		w := newWorkdir(b, s, key)
		w.write(fleetConfig([]string{"a", "b", "c"}, 100, fmt.Sprintf("m%d@example.com", i), vault1))
		b.StartTimer()
		began := time.Now()
		out, _ := w.run([]int{0}, "apply", "-auto-approve", "-parallelism=16")
		apply += time.Since(began)
		if !strings.Contains(out, "Apply complete!") {
			b.Fatalf("apply:\n%s", lastLines(out, 20))
		}
		began = time.Now()
		out, _ = w.run([]int{0}, "plan", "-detailed-exitcode", "-parallelism=16")
		replan += time.Since(began)
		if !strings.Contains(out, "No changes.") {
			b.Fatalf("re-plan:\n%s", lastLines(out, 20))
		}
		// The same plan without refresh: Terraform's own share of the re-plan.
		began = time.Now()
		w.run([]int{0}, "plan", "-detailed-exitcode", "-refresh=false", "-parallelism=16")
		local += time.Since(began)
		b.StopTimer()
		w.run([]int{0}, "destroy", "-auto-approve", "-parallelism=16")
	}
	b.ReportMetric(apply.Seconds()/float64(b.N), "apply_s")
	b.ReportMetric(replan.Seconds()/float64(b.N), "replan_s")
	b.ReportMetric(local.Seconds()/float64(b.N), "plan_norefresh_s")
}
