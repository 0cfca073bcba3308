package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretFileKeys decodes *_file siblings of the *_env keys and refuses
// both at once, relative paths and files inside the study's folder.
func TestSecretFileKeys(t *testing.T) {
	tests := []struct {
		name, config, wantErr string
	}{
		{name: "files everywhere", config: `timezone: America/Los_Angeles
projects:
  - { name: main, redcap_url: "https://redcap.example.edu/api/", token_file: /etc/credstore/nudge/redcap-token }
twilio: { account_sid_file: "$CREDENTIALS_DIRECTORY/twilio-account-sid", auth_token_file: "${CREDENTIALS_DIRECTORY}/twilio-auth-token", from: "+14155550100" }
server: { trigger_secret_file: /run/secrets/trigger }
`},
		{name: "both forms", config: strings.Replace(studyHead, "token_env: REDCAP_TOKEN_MAIN", "token_env: REDCAP_TOKEN_MAIN\n    token_file: /etc/t", 1),
			wantErr: "set token_env or token_file, not both"},
		{name: "neither", config: strings.Replace(studyHead, "    token_env: REDCAP_TOKEN_MAIN\n", "", 1),
			wantErr: "needs token_env (the name of the environment variable holding its API token) or token_file"},
		{name: "relative path", config: strings.Replace(studyHead, "auth_token_env: TWILIO_AUTH_TOKEN", "auth_token_file: secrets/token", 1),
			wantErr: "twilio.auth_token_file: \"secrets/token\" is not an absolute path"},
		{name: "credential with a folder", config: strings.Replace(studyHead, "auth_token_env: TWILIO_AUTH_TOKEN", `auth_token_file: "$CREDENTIALS_DIRECTORY/a/b"`, 1),
			wantErr: "name one credential"},
		{name: "smtp half", config: studyHead + "smtp: { host: mail.example.edu, from: \"a@example.edu\", username_file: /etc/u }\n",
			wantErr: "smtp: set both a username"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(writeStudy(t, tc.config))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				cfg := c.Config
				if cfg.Projects[0].TokenFile != "/etc/credstore/nudge/redcap-token" || cfg.Twilio.AccountSIDFile != "$CREDENTIALS_DIRECTORY/twilio-account-sid" ||
					cfg.Twilio.AuthTokenFile != "${CREDENTIALS_DIRECTORY}/twilio-auth-token" || cfg.Server.TriggerSecretFile != "/run/secrets/trigger" {
					t.Errorf("files not decoded: %+v %+v %+v", cfg.Projects[0], cfg.Twilio, cfg.Server)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Load: %v; want %q", err, tc.wantErr)
			}
		})
	}
	// A secret file inside the study's folder would be committed with it.
	path := writeStudy(t, "")
	inside := filepath.Join(filepath.Dir(path), "token")
	cfg := strings.Replace(studyHead, "token_env: REDCAP_TOKEN_MAIN", "token_file: "+inside, 1)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "is inside the study's folder") {
		t.Errorf("secret file inside the study: %v", err)
	}
}

// TestSafetySecretFile reads secrets from files: the trailing newline is
// dropped, a world-readable file is refused with the chmod that fixes it,
// and $CREDENTIALS_DIRECTORY names systemd's credentials.
func TestSafetySecretFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := write("token", "s3cret-value\n", 0o600)
	crlf := write("crlf", "abc\r\n", 0o640)
	open := write("open", "s3cret-value\n", 0o644)
	empty := write("empty", "\n", 0o600)

	if v, err := ReadSecretFile(ok); err != nil || v != "s3cret-value" {
		t.Errorf("ReadSecretFile = %q, %v", v, err)
	}
	if v, err := ReadSecretFile(crlf); err != nil || v != "abc" {
		t.Errorf("CRLF: %q, %v", v, err)
	}
	_, err := ReadSecretFile(open)
	if err == nil || !strings.Contains(err.Error(), "chmod o-r "+open) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("world-readable: %v; want refusal with chmod advice and no value", err)
	}
	if _, err := ReadSecretFile(empty); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty: %v", err)
	}
	if _, err := ReadSecretFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing: %v", err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	if v, err := ReadSecretFile("$CREDENTIALS_DIRECTORY/token"); err != nil || v != "s3cret-value" {
		t.Errorf("credential: %q, %v", v, err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if _, err := ReadSecretFile("$CREDENTIALS_DIRECTORY/token"); err == nil || !strings.Contains(err.Error(), "LoadCredential=token:") {
		t.Errorf("credential without systemd: %v", err)
	}
}

// TestSafetySecretsAllMissing reports every missing secret at once.
func TestSafetySecretsAllMissing(t *testing.T) {
	c := &Config{Path: "nudge.yaml"}
	t.Setenv("NUDGE_TEST_A", "")
	var p SecretProblems
	p.Read(c, "project a: token", "NUDGE_TEST_A", "")
	p.Read(c, "twilio.auth_token", "", filepath.Join(t.TempDir(), "nope"))
	if got := p.Read(c, "x", "PATH", ""); got == "" {
		t.Error("a set variable was not read")
	}
	err := p.Err()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"2 secrets could not be read", "project a: token: environment variable NUDGE_TEST_A", "twilio.auth_token: secret file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if (SecretProblems{}).Err() != nil || errors.Unwrap(SecretProblems{"one"}.Err()) != nil {
		t.Error("Err of none or one")
	}
}
