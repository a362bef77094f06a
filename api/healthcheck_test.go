package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCheckHealthAgainstHandler(t *testing.T) {
	srv := httptest.NewServer(newHandler())
	defer srv.Close()
	if err := checkHealth(context.Background(), srv.URL+"/health", time.Second); err != nil {
		t.Fatalf("checkHealth: %v", err)
	}
}

func TestCheckHealthFailsOnNon200(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	err := checkHealth(context.Background(), srv.URL+"/health", time.Second)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("checkHealth = %v, want an error naming 503", err)
	}
}

func TestCheckHealthTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer srv.Close()
	defer close(release)

	start := time.Now()
	if err := checkHealth(context.Background(), srv.URL+"/health", 100*time.Millisecond); err == nil {
		t.Fatal("checkHealth succeeded against a hung server")
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("checkHealth took %v, want about 100ms", elapsed)
	}
}

func TestCheckHealthFailsWhenNothingListens(t *testing.T) {
	if err := checkHealth(context.Background(), "http://"+closedAddr(t)+"/health", time.Second); err == nil {
		t.Fatal("checkHealth succeeded with nothing listening")
	}
}

// TestHealthcheckSubcommand runs the subcommand end to end: it must read PORT
// and exit 0 against a healthy server, 1 otherwise (never 2, which Docker
// reserves).
func TestHealthcheckSubcommand(t *testing.T) {
	srv := httptest.NewServer(newHandler())
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))

	cases := []struct {
		name, port string
		want       int
	}{
		{"healthy", port, 0},
		{"nothing listening", portOf(t, closedAddr(t)), 1},
		{"invalid PORT", "not-a-port", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stderr bytes.Buffer
			got := run([]string{"healthcheck"}, envWith("PORT", c.port), &stderr)
			if got != c.want {
				t.Fatalf("exit = %d, want %d (stderr: %s)", got, c.want, stderr.String())
			}
		})
	}
}

func TestRunRejectsUnknownArguments(t *testing.T) {
	var stderr bytes.Buffer
	if got := run([]string{"serve", "--now"}, envWith("PORT", ""), &stderr); got != 2 {
		t.Fatalf("exit = %d, want 2", got)
	}
	if !strings.Contains(stderr.String(), "usage") {
		t.Errorf("stderr %q does not show usage", stderr.String())
	}
}

func envWith(key, value string) func(string) string {
	return func(k string) string {
		if k == key {
			return value
		}
		return ""
	}
}

// closedAddr returns a loopback address on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		t.Fatal(err)
	}
	return port
}
