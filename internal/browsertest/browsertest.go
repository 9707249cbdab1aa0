// Package browsertest drives Debian's chromium (headless) from Go tests
// through chromedp, and saves screenshots as test artefacts.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ExecPath finds the chromium binary (installed by `make deps`).
func ExecPath() (string, error) {
	for _, p := range []string{os.Getenv("AERIE_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath("chromium")
}

// Browser is one headless browser for a test.
type Browser struct {
	Ctx     context.Context
	ShotDir string
	t       testing.TB
}

// New starts a headless chromium with a fresh profile and the given window
// size; it is closed when the test ends. Screenshots (test artefacts) go to
// $AERIE_ARTIFACTS_DIR/<test name>, by default under the system's temp dir
// (aerie-screenshots), kept after the run and logged.
func New(t testing.TB, width, height int) *Browser {
	t.Helper()
	path, err := ExecPath()
	if err != nil {
		t.Fatalf("chromium not found (make deps installs it): %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	root := os.Getenv("AERIE_ARTIFACTS_DIR") // CI collects this directory
	if root == "" {
		root = filepath.Join(os.TempDir(), "aerie-screenshots")
	}
	dir := filepath.Join(root, sanitize(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots: %s", dir)
	return &Browser{Ctx: ctx, ShotDir: dir, t: t}
}

// Do runs steps in order with a timeout.
func (b *Browser) Do(timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.Ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// Get runs one action that returns a value, with a timeout.
func Get[T any](b *Browser, timeout time.Duration, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(b.Ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// Shot saves a full-page screenshot as <ShotDir>/<name>.png.
func (b *Browser) Shot(name string) string {
	b.t.Helper()
	buf, err := Get(b, 20*time.Second, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	p := filepath.Join(b.ShotDir, name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		b.t.Errorf("save screenshot: %v", err)
	}
	return p
}

func sanitize(s string) string {
	out := []rune{}
	for _, r := range s {
		if r == '/' || r == ' ' || r == ':' {
			r = '_'
		}
		out = append(out, r)
	}
	return string(out)
}
