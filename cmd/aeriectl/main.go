// Command aeriectl manages Aerie from the command line: log in, list and
// change resources, and keep an org in line with a declarative file
// (aeriectl plan / apply -f aerie.yaml).
//
// Exit codes: 0 success (plan: no changes), 2 plan found changes, 1 error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// errChanges makes plan exit 2.
var errChanges = errors.New("changes planned")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run executes one aeriectl command and returns its exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	root := newRoot(&cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv})
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errChanges):
		return 2
	default:
		fmt.Fprintln(stderr, "Error:", err)
		return 1
	}
}
