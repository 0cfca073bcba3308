package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine/email"
)

// `nudge sim smtp` takes mail on loopback and writes each message to its
// maildir before it answers; a non-loopback address is refused.
func TestSimSMTP(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() { done <- cmdSimSMTP(ctx, []string{"--listen", "127.0.0.1:0", "--maildir", dir}, &out, &errOut) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sim smtp: %v", err)
		}
	})
	var addr string
	for deadline := time.Now().Add(5 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, l := range strings.Split(out.String(), "\n") {
			if v, ok := strings.CutPrefix(l, "export NUDGE_SIM_SMTP_ADDR="); ok {
				addr = v
			}
		}
	}
	if addr == "" {
		t.Fatalf("no address printed: %q %q", out.String(), errOut.String())
	}
	host, port, _ := strings.Cut(addr, ":")
	p, _ := strconv.Atoi(port)
	s, err := email.New(email.Config{Host: host, Port: p, From: "Study <study@example.edu>", TLS: email.TLSNone, Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(context.Background(), email.Message{To: "ana@example.org", Subject: "Hello", Text: "Welcome"}); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "new", "*"))
	if len(files) != 1 {
		t.Fatalf("maildir holds %d messages, want 1", len(files))
	}
	if b, _ := os.ReadFile(files[0]); !bytes.Contains(b, []byte("Subject: Hello")) {
		t.Errorf("stored message lacks its subject:\n%s", b)
	}

	if _, _, code := nudge(t, "sim", "smtp", "--listen", "0.0.0.0:2525", "--maildir", dir); code == 0 {
		t.Error("a non-loopback address was accepted")
	}
}

// syncBuffer is a bytes.Buffer that a command's goroutine writes while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
