package gateway_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	"github.com/stretchr/testify/require"
)

// TestInputItemsAndDelete: a response's input items in OpenAI's list
// format, paged with limit, after and order through the official SDK;
// DELETE removes the run's row and history, after which the response is
// a 404.
func TestInputItemsAndDelete(t *testing.T) {
	b := setupRuns(t, setupOpts{})
	project := b.project(randomName("items-"))
	_, secret := b.key(project)
	name := promptDeployment(b, project, b.up, nil, false)
	c := b.client(secret)

	resp, err := c.Responses.New(ctx(t), responses.ResponseNewParams{
		Prompt: responses.ResponsePromptParam{ID: name},
		Input:  responses.ResponseNewParamsInputUnion{OfString: openai.String("one two")},
	})
	require.NoError(t, err)

	page, err := c.Responses.InputItems.List(ctx(t), resp.ID, responses.InputItemListParams{Limit: openai.Int(1)})
	require.NoError(t, err)
	require.Len(t, page.Data, 1)
	require.False(t, page.HasMore)
	item := page.Data[0]
	require.Equal(t, "message", item.Type)
	require.Equal(t, "user", string(item.Role))
	require.Equal(t, "one two", item.Content.OfInputItemContentList[0].Text)
	page, err = c.Responses.InputItems.List(ctx(t), resp.ID, responses.InputItemListParams{After: openai.String(item.ID), Order: responses.InputItemListParamsOrderAsc})
	require.NoError(t, err)
	require.Empty(t, page.Data, "nothing after the last item")
	_, err = c.Responses.InputItems.List(ctx(t), resp.ID, responses.InputItemListParams{Limit: openai.Int(101)})
	requireAPIError(t, err, http.StatusBadRequest, "invalid_value")
	_, err = c.Responses.InputItems.List(ctx(t), resp.ID, responses.InputItemListParams{After: openai.String("item_nope")})
	requireAPIError(t, err, http.StatusBadRequest, "invalid_value")

	require.NoError(t, c.Responses.Delete(ctx(t), resp.ID))
	var n int
	b.dbScalar(&n, `SELECT count(*) FROM runs WHERE id = $1`, resp.ID)
	require.Zero(t, n, "the run's row is gone")
	require.Eventually(t, func() bool {
		_, err := c.Responses.Get(ctx(t), resp.ID, responses.ResponseGetParams{})
		return err != nil
	}, 10*time.Second, 100*time.Millisecond, "the run's history is gone")
	_, err = c.Responses.Get(ctx(t), resp.ID, responses.ResponseGetParams{})
	requireAPIError(t, err, http.StatusNotFound, "response_not_found")
}
