package rules

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// credentialsDir is the variable systemd sets for a service with
// LoadCredential=: the private directory holding its credentials.
const credentialsDir = "CREDENTIALS_DIRECTORY"

// credentialPrefixes are the ways a *_file key may start to name a file in
// $CREDENTIALS_DIRECTORY.
var credentialPrefixes = []string{"$" + credentialsDir + "/", "${" + credentialsDir + "}/"}

// decodeSecret decodes the two keys one secret may be given by: KEY_env
// (the name of an environment variable) or KEY_file (the path of a file
// outside the study's folder, or $CREDENTIALS_DIRECTORY/NAME). At most one
// may be set; what names the secret in messages (e.g. "twilio.auth_token").
// given reports whether either was set (or reported as a literal secret).
func (c *Config) decodeSecret(d *decoder, m *mapping, key, what string) (env, file string, given bool) {
	ev, fv := m.get(key+"_env"), m.get(key+"_file")
	if ev != nil && fv != nil {
		d.errorf(fv, "%s: set %s_env or %s_file, not both", what, key, key)
	}
	if ev != nil {
		env = envName(d, ev, what+"_env")
	}
	if fv != nil {
		file = c.secretPath(d, fv, what+"_file")
	}
	return env, file, ev != nil || fv != nil || m.secrets[key+"_env"]
}

// secretPath decodes a *_file value: $CREDENTIALS_DIRECTORY/NAME, or an
// absolute path outside the study's folder (a secret there would end up in
// the study's repository).
func (c *Config) secretPath(d *decoder, n *yaml.Node, what string) string {
	s, ok := d.str(n, what)
	if !ok {
		return ""
	}
	for _, p := range credentialPrefixes {
		if name, ok := strings.CutPrefix(s, p); ok {
			if name == "" || strings.Contains(name, "/") {
				d.errorf(n, "%s: %q: name one credential, e.g. $%s/redcap-token", what, s, credentialsDir)
			}
			return s
		}
	}
	if !filepath.IsAbs(s) {
		d.errorf(n, "%s: %q is not an absolute path: give the full path of a file outside the study's folder (e.g. /etc/credstore/nudge/redcap-token) or $%s/NAME for a systemd credential", what, s, credentialsDir)
		return s
	}
	if rel, err := filepath.Rel(c.Dir, s); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		d.errorf(n, "%s: %s is inside the study's folder %s, whose files go into its repository: keep secret files elsewhere (e.g. /etc/credstore/nudge/)", what, s, c.Dir)
	}
	return filepath.Clean(s)
}

// SecretFrom reads a secret from file when it is set (see ReadSecretFile),
// else from the environment variable env (see Secret). Errors name the
// variable or file, never a value.
func (c *Config) SecretFrom(env, file string) (string, error) {
	if file != "" {
		return ReadSecretFile(file)
	}
	return c.Secret(env)
}

// ReadSecretFile reads a secret from a file: path, or the credential NAME
// systemd placed in $CREDENTIALS_DIRECTORY when path is
// $CREDENTIALS_DIRECTORY/NAME. Trailing newlines are dropped. A file every
// user may read is refused.
func ReadSecretFile(path string) (string, error) {
	for _, p := range credentialPrefixes {
		if name, ok := strings.CutPrefix(path, p); ok {
			dir := os.Getenv(credentialsDir)
			if dir == "" {
				return "", fmt.Errorf("secret file %s: %s is not set: run nudge as a systemd service with LoadCredential=%s:/path/to/file, or give the file's own path", path, credentialsDir, name)
			}
			path = filepath.Join(dir, name)
		}
	}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("secret file %s does not exist: create it (mode 0600, owned by nudge's user)", path)
	}
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("secret file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o004 != 0 {
		return "", fmt.Errorf("secret file %s can be read by every user (mode %04o): run `chmod o-r %s` (better: `chmod 600 %s`)", path, perm, path, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return v, nil
}

// SecretProblems collects the secrets that could not be read, so that all
// of them are reported at once.
type SecretProblems []string

// Read reads one secret (see Config.SecretFrom); on failure it records the
// problem under what (e.g. "project site_a: token") and returns "".
func (p *SecretProblems) Read(c *Config, what, env, file string) string {
	v, err := c.SecretFrom(env, file)
	if err != nil {
		*p = append(*p, what+": "+err.Error())
	}
	return v
}

// Err is nil when every secret was read, else one error listing each
// missing secret on its own line.
func (p SecretProblems) Err() error {
	switch len(p) {
	case 0:
		return nil
	case 1:
		return errors.New(p[0])
	}
	return fmt.Errorf("%d secrets could not be read; fix them all, then start nudge again:\n  %s", len(p), strings.Join(p, "\n  "))
}
