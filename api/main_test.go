package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// When this variable is set, the test binary runs main() instead of the tests,
// so a test can start the real program as a child process and signal it.
const runMainEnv = "API_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func TestSIGTERMStopsCleanly(t *testing.T) {
	port := portOf(t, closedAddr(t))
	var stderr bytes.Buffer
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "PORT="+port)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	url := "http://127.0.0.1:" + port + "/health"
	deadline := time.Now().Add(5 * time.Second)
	for checkHealth(context.Background(), url, 200*time.Millisecond) != nil {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("api never became healthy on port %s; stderr:\n%s", port, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("api exited with %v after SIGTERM, want 0; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(shutdownTimeout + 2*time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("api did not exit after SIGTERM")
	}
	for _, want := range []string{"listening on", "shutting down", "stopped"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}
