// Command api is a minimal HTTP API that ecrbuild builds and pushes.
//
//	api              serve on $PORT (default 8080) until SIGTERM or SIGINT
//	api healthcheck  GET http://127.0.0.1:$PORT/health; exit 0 if healthy, 1 if not
//
// The healthcheck subcommand lets a FROM scratch image declare a HEALTHCHECK
// without a shell or curl.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// run is main without the process globals, so tests can drive it.
func run(args []string, getenv func(string) string, stderr io.Writer) int {
	logger := log.New(stderr, "api: ", log.LstdFlags|log.LUTC)

	healthcheck := len(args) == 1 && args[0] == "healthcheck"
	if len(args) > 0 && !healthcheck {
		logger.Printf("usage: api [healthcheck]; unexpected arguments %q", args)
		return 2
	}

	port, err := portFromEnv(getenv)
	if healthcheck {
		// Docker reserves exit code 2 for healthchecks: report 0 or 1 only.
		if err == nil {
			url := fmt.Sprintf("http://127.0.0.1:%d/health", port)
			err = checkHealth(context.Background(), url, healthcheckTimeout)
		}
		if err != nil {
			logger.Printf("healthcheck: %v", err)
			return 1
		}
		return 0
	}
	if err != nil {
		logger.Print(err)
		return 2
	}

	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		logger.Print(err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	logger.Printf("listening on %s", ln.Addr())
	if err := serve(ctx, ln, newHandler(), logger); err != nil {
		logger.Print(err)
		return 1
	}
	logger.Print("stopped")
	return 0
}
