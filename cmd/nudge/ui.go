package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// uiStdin is where `nudge ui hash-password` reads the password (tests
// replace it).
var uiStdin io.Reader = os.Stdin

// cmdUI runs `nudge ui hash-password`: it reads a password from the first
// line of standard input and prints its bcrypt hash for server.ui.users.
func cmdUI(args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 || args[0] != "hash-password" {
		fmt.Fprint(stderr, "usage: nudge ui hash-password < password-file   (or type the password and press Enter)\n")
		return errUsage
	}
	line, err := bufio.NewReader(uiStdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	password := strings.TrimRight(line, "\r\n")
	switch {
	case password == "":
		return &exitError{code: 1, err: errors.New("nudge ui hash-password: no password on standard input")}
	case len(password) < 12:
		return &exitError{code: 1, err: errors.New("nudge ui hash-password: the password is shorter than 12 characters: choose a longer one")}
	case len(password) > 72:
		return &exitError{code: 1, err: errors.New("nudge ui hash-password: the password is longer than 72 bytes, more than bcrypt reads: choose a shorter one")}
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), 12)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", hash)
	return nil
}
