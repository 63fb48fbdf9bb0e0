package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/budhq/bud/db"
	"github.com/budhq/bud/secrets"
)

// newKeyEnv names the variable that may hold rotate-key's new key, so that
// the key need not appear in a process listing.
const newKeyEnv = "BUD_NEW_ENCRYPTION_KEY"

const rotateKeyUsage = `usage: bud rotate-key [flags]

Re-seals every sealed value in the database (deployments' provider API keys,
connections' credentials) from the current encryption key to a new one, in one
transaction. If any value does not open under the current key, nothing is
changed. Stop every bud service first, and restart them all with the new key.

The current key is BUD_ENCRYPTION_KEY (--encryption-key) or, when that is
unset, the key 'bud dev' keeps in its data directory. The new key is --new-key
(or BUD_NEW_ENCRYPTION_KEY); without one, a key is generated and printed on
standard output. When the data directory holds the current key, its key file
is replaced by the new key.

flags:
`

// runRotateKey is `bud rotate-key`. The new key, when generated, is the only
// thing written to stdout, so that a script can capture it; the rest goes
// to stderr.
func runRotateKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg config
	newKey := os.Getenv(newKeyEnv)
	fs := cfg.flagSet("rotate-key", stderr, rotateKeyUsage, "database-url", "encryption-key", "data-dir")
	fs.StringVar(&newKey, "new-key", newKey, "base64 32-byte key to re-seal under; empty generates one (env "+newKeyEnv+")")
	// Parse has already shown the usage on -h.
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	keyFile, err := filepath.Abs(filepath.Join(cfg.DataDir, "encryption-key"))
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	stored, _, err := readKeyFile(keyFile)
	if err != nil {
		return err
	}
	current, source := cfg.EncryptionKey, "BUD_ENCRYPTION_KEY"
	if current == "" {
		if stored == "" {
			return fmt.Errorf("no current key: set BUD_ENCRYPTION_KEY, or --data-dir to the directory of 'bud dev' (%s has no key)", keyFile)
		}
		current, source = stored, keyFile
	}
	oldRaw, err := secrets.ParseKey(current)
	if err != nil {
		return fmt.Errorf("current key (%s): %w", source, err)
	}
	generated := newKey == ""
	if generated {
		newKey = secrets.NewKey()
	}
	newRaw, err := secrets.ParseKey(newKey)
	if err != nil {
		return fmt.Errorf("--new-key: %w", err)
	}
	if bytes.Equal(oldRaw, newRaw) {
		return errors.New("--new-key is the current key")
	}
	from, err := secrets.NewBox(oldRaw)
	if err != nil {
		return err
	}
	to, err := secrets.NewBox(newRaw)
	if err != nil {
		return err
	}

	// The data directory's key file is replaced only when it holds the key
	// being rotated away from: one that holds another key is not this
	// database's, or is not in use.
	replaceFile := false
	if stored != "" {
		if k, err := secrets.ParseKey(stored); err == nil && bytes.Equal(k, oldRaw) {
			replaceFile = true
		}
	}
	// The new key is on disk before the database uses it, so that no crash
	// between the two can lose it.
	pending := keyFile + ".new"
	if replaceFile {
		if err := os.WriteFile(pending, []byte(newKey+"\n"), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", pending, err)
		}
	}

	pool, err := db.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		removePending(replaceFile, pending)
		return err
	}
	n, err := db.RotateKey(ctx, pool, from, to)
	pool.Close()
	if err != nil {
		removePending(replaceFile, pending)
		return err
	}

	if generated {
		fmt.Fprintln(stdout, newKey)
	}
	fmt.Fprintf(stderr, "re-sealed %d deployment API key(s) and %d connection credential set(s) under the new key\n", n.Deployments, n.Connections)
	if replaceFile {
		if err := os.Rename(pending, keyFile); err != nil {
			return fmt.Errorf("the database now uses the new key, but replacing %s failed (the new key is in %s): %w", keyFile, pending, err)
		}
		fmt.Fprintf(stderr, "replaced %s with the new key\n", keyFile)
	}
	if source == "BUD_ENCRYPTION_KEY" {
		fmt.Fprintln(stderr, "set BUD_ENCRYPTION_KEY to the new key for every bud service and restart them")
	}
	return nil
}

// readKeyFile reads a key or token file of the data directory, trimmed;
// found is false when there is none.
func readKeyFile(path string) (v string, found bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), true, nil
}

func removePending(written bool, path string) {
	if written {
		_ = os.Remove(path)
	}
}
