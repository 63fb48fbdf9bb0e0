package dapr_test

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/deploy/dapr"
)

// The constants Go code relies on match the component file.
func TestStateStoreComponent(t *testing.T) {
	b, err := fs.ReadFile(dapr.Components, "components/statestore.yaml")
	require.NoError(t, err)
	doc := string(b)
	require.Contains(t, doc, "\n  name: "+dapr.StateStoreName+"\n")
	require.Contains(t, doc, "type: state.postgresql\n")
	require.Contains(t, doc, "version: v2\n")
	require.Contains(t, doc, "envRef: "+dapr.EnvDatabaseURL+"\n")
	require.Contains(t, doc, "envRef: "+dapr.EnvTablePrefix+"\n")
	require.False(t, strings.Contains(doc, "\t"), "YAML is indented with spaces")
}
