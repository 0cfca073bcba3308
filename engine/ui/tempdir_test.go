package ui_test

import (
	"os"
	"testing"
)

// sharedDir holds the fixture database shared by the tests of a run.
var sharedDir string

func tempDir() (string, error) { return sharedDir, nil }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nudge-ui-test-")
	if err != nil {
		panic(err)
	}
	sharedDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
