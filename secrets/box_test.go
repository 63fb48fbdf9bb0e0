package secrets_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/secrets"
)

func newBox(t *testing.T) *secrets.Box {
	t.Helper()
	key, err := secrets.ParseKey(secrets.NewKey())
	require.NoError(t, err)
	b, err := secrets.NewBox(key)
	require.NoError(t, err)
	return b
}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	sealed := b.Seal([]byte("sk-provider"), []byte("row-1"))
	require.False(t, bytes.Contains(sealed, []byte("sk-provider")))
	got, err := b.Open(sealed, []byte("row-1"))
	require.NoError(t, err)
	require.Equal(t, "sk-provider", string(got))

	// Two seals of the same value differ: the nonce is fresh each time.
	require.NotEqual(t, sealed, b.Seal([]byte("sk-provider"), []byte("row-1")))
}

func TestOpenRefuses(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	sealed := b.Seal([]byte("secret"), []byte("row-1"))

	_, err := b.Open(sealed, []byte("row-2"))
	require.Error(t, err, "a value moved to another row does not open")

	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	_, err = b.Open(tampered, []byte("row-1"))
	require.Error(t, err, "a changed value does not open")

	_, err = newBox(t).Open(sealed, []byte("row-1"))
	require.Error(t, err, "another key does not open it")

	_, err = b.Open([]byte{1, 2, 3}, nil)
	require.ErrorContains(t, err, "malformed")
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	_, err := secrets.ParseKey("not base64!")
	require.Error(t, err)
	_, err = secrets.ParseKey("c2hvcnQ=")
	require.ErrorContains(t, err, "32 bytes")
	_, err = secrets.NewBox(make([]byte, 16))
	require.Error(t, err)
}
