package gateway_test

import (
	"net/http"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/egress"
)

// With loopback refused, a deployment on 127.0.0.1 is never called: the
// dial is refused and the caller gets a 502 that names the policy.
func TestChatUpstreamRefusedByEgressPolicy(t *testing.T) {
	t.Parallel()
	policy, err := egress.Parse("loopback")
	require.NoError(t, err)
	b := setup(t, setupOpts{egress: policy})
	p := b.project("acme")
	b.deployment(p, "local", nil)
	_, secret := b.key(p)

	_, err = b.client(secret).Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{
		Model:    "local",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	apiErr := requireAPIError(t, err, http.StatusBadGateway, "upstream_refused_by_policy")
	require.Contains(t, apiErr.Message, "egress policy")
	require.NotContains(t, apiErr.RawJSON(), b.up.URL())
	require.NotContains(t, apiErr.RawJSON(), "127.0.0.1")
	require.Zero(t, b.up.Received())
}

// The default policy still lets a deployment on loopback be called.
func TestChatLoopbackAllowedByDefaultEgressPolicy(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{egress: &egress.Policy{}})
	p := b.project("acme")
	b.deployment(p, "local", nil)
	_, secret := b.key(p)

	_, err := b.client(secret).Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{
		Model:    "local",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	require.NoError(t, err)
	require.Equal(t, 1, b.up.Received())
}
