// Command aerie is the Aerie server: control plane, console and data plane
// in one binary.
//
//	aerie serve          control plane + console + one data-plane node
//	aerie controlplane   control plane and console only
//	aerie dataplane      one data-plane node
//	aerie migrate up|status
//	aerie node create|list, aerie cell list|set-endpoints
//	aerie version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/aeriemq/aerie/internal/buildinfo"
	"github.com/aeriemq/aerie/internal/pgcluster"
)

const usage = `Aerie: a self-hostable MQTT cloud.

Usage:
  aerie serve          run the control plane, console and one data-plane node
  aerie controlplane   run the control plane and console
  aerie dataplane      run one data-plane node
  aerie migrate up     apply database migrations
  aerie migrate status show database migrations
  aerie node create NAME [--cell CELL]
                       register a data-plane node (in CELL, created when
                       missing; default a new cell named after it) and print its token
  aerie node list      list the registered data-plane nodes, their cell and status
  aerie cell list      list the cells: nodes, nodes up, status, instances
  aerie cell set-endpoints CELL [mqtt=HOST:PORT] [mqtts=…] [ws=…] [wss=…]
                       set the endpoints the cell's instances show (a DNS name or
                       load balancer in front of its nodes); none clears them
  aerie version        print the version

Run 'aerie <command> -h' for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one subcommand and returns the process exit code. A failure
// is printed as one line on stderr.
func run(args []string, stdout io.Writer, stderr *os.File) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch sub := args[0]; sub {
	case "serve", "controlplane", "dataplane":
		err = runServer(ctx, sub, args[1:], stderr)
	case "migrate":
		err = runMigrate(ctx, args[1:], stdout, stderr)
	case "node":
		err = runNode(ctx, args[1:], stdout, stderr)
	case "cell":
		err = runCell(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "aerie %s (commit %s, %s)\n", buildinfo.Version, buildinfo.Commit(), runtime.Version())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "aerie: unknown command %q\n%s", sub, usage)
		return 2
	}
	if err == nil || errors.Is(err, errHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "aerie: %s\n", oneLine(err.Error()))
	switch {
	case errors.Is(err, errUsage), errors.Is(err, pgcluster.ErrNoBinaries):
		return 2
	default:
		return 1
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
