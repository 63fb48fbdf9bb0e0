package activities_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/db/dbsqlc"
)

func runRecord(b *bundle, id string) activities.RunRecord {
	started := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return activities.RunRecord{
		ID: id, ProjectID: b.project, PromptID: uuid.MustParse("0c0ffee0-0000-4000-8000-000000000001"), PromptVersion: 2,
		Deployment: "greeter", Model: "qwen", Source: "api", Status: "completed",
		Input:            activities.RunInput{Variables: map[string]any{"name": "Ada"}},
		RenderedMessages: []chat.Message{{Role: "user", Content: "Greet Ada."}},
		Output:           json.RawMessage(`{"text": "{\"greeting\":\"Hi\"}", "parsed": {"greeting": "Hi"}}`),
		ModelCalls: []activities.ModelCall{{Call: 1, Attempt: 2, LatencyMS: 40, FinishReason: "stop", Model: upstreamModel,
			Usage: chat.Usage{PromptTokens: 5, CompletionTokens: 3, TotalTokens: 8}}},
		InputTokens: 5, OutputTokens: 3, LatencyMS: 55,
		Metadata:  map[string]string{"trace": "t1"},
		CreatedAt: started, FinishedAt: started.Add(55 * time.Millisecond),
	}
}

func (b *bundle) recordRun(t *testing.T, r activities.RunRecord) error {
	t.Helper()
	_, err := b.env.ExecuteActivity(b.acts.RecordRun, r)
	return err
}

func TestRecordRunInsertsAndIsIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := runRecord(b, "resp_record1")

	require.NoError(t, b.recordRun(t, rec))
	require.NoError(t, b.recordRun(t, rec), "a retried attempt writes the same row again")

	count, err := b.q.CountRuns(t.Context(), dbsqlc.CountRunsParams{ProjectID: &b.project})
	require.NoError(t, err)
	require.EqualValues(t, 1, count)

	row, err := b.q.GetRun(t.Context(), dbsqlc.GetRunParams{ProjectID: b.project, ID: "resp_record1"})
	require.NoError(t, err)
	require.Equal(t, rec.PromptID, *row.PromptID)
	require.Equal(t, int32(2), *row.PromptVersion)
	require.Equal(t, "greeter", row.Deployment)
	require.Equal(t, "qwen", row.Model)
	require.Equal(t, "api", row.Source)
	require.Equal(t, "completed", row.Status)
	require.JSONEq(t, `{"variables": {"name": "Ada"}}`, string(row.Input))
	require.JSONEq(t, `[{"role": "user", "content": "Greet Ada."}]`, string(row.RenderedMessages))
	require.JSONEq(t, string(rec.Output), string(row.Output))
	require.JSONEq(t, `[{"call": 1, "attempt": 2, "latency_ms": 40, "finish_reason": "stop", "model": "Qwen/Qwen3-32B",
	  "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}]`, string(row.ModelCalls))
	require.Equal(t, int64(5), row.InputTokens)
	require.Equal(t, int64(3), row.OutputTokens)
	require.Equal(t, int64(55), row.LatencyMs)
	require.Nil(t, row.Error)
	require.JSONEq(t, `{"trace": "t1"}`, string(row.Metadata))
	require.True(t, rec.CreatedAt.Equal(row.CreatedAt))
	require.True(t, rec.FinishedAt.Equal(row.FinishedAt))

	_, err = b.q.GetRun(t.Context(), dbsqlc.GetRunParams{ProjectID: uuid.New(), ID: "resp_record1"})
	require.Error(t, err, "another project does not see the run")
	_, err = b.q.GetRunByID(t.Context(), "resp_record1")
	require.NoError(t, err)

	// A later record of the run (a paused run's next turn) replaces the row.
	rec.Status = "waiting"
	require.NoError(t, b.recordRun(t, rec))
	row, err = b.q.GetRun(t.Context(), dbsqlc.GetRunParams{ProjectID: b.project, ID: "resp_record1"})
	require.NoError(t, err)
	require.Equal(t, "waiting", row.Status)
}

func TestRecordRunOfAFailedPlaygroundRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := activities.RunRecord{
		ID: "resp_failed", ProjectID: b.project, Source: "playground", Status: "failed",
		Input:     activities.RunInput{Text: ""},
		Error:     json.RawMessage(`{"code": "InvalidInput", "message": "invalid input: input: is required", "param": "input"}`),
		CreatedAt: time.Now(), FinishedAt: time.Now(),
	}

	require.NoError(t, b.recordRun(t, rec))

	row, err := b.q.GetRun(t.Context(), dbsqlc.GetRunParams{ProjectID: b.project, ID: "resp_failed"})
	require.NoError(t, err)
	require.Nil(t, row.PromptID, "an unsaved document has no prompt")
	require.Nil(t, row.PromptVersion)
	require.Nil(t, row.RenderedMessages)
	require.Nil(t, row.Output)
	require.JSONEq(t, `[]`, string(row.ModelCalls))
	require.JSONEq(t, `{}`, string(row.Metadata))
	require.JSONEq(t, string(rec.Error), string(row.Error))
}

func TestRecordRunOfADeletedProjectIsDropped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := runRecord(b, "resp_orphan")
	_, err := b.q.DeleteProject(t.Context(), b.project)
	require.NoError(t, err)

	require.NoError(t, b.recordRun(t, rec), "the project's runs are gone; so is this one")

	_, err = b.q.GetRunByID(t.Context(), "resp_orphan")
	require.Error(t, err)
}

func TestListRunsFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	other := uuid.MustParse("0c0ffee0-0000-4000-8000-000000000002")
	for i, r := range []struct {
		prompt  uuid.UUID
		version int32
		status  string
	}{
		{uuid.MustParse("0c0ffee0-0000-4000-8000-000000000001"), 1, "completed"},
		{uuid.MustParse("0c0ffee0-0000-4000-8000-000000000001"), 2, "failed"},
		{other, 1, "completed"},
		{uuid.Nil, 0, "completed"},
	} {
		rec := runRecord(b, "resp_list"+string(rune('a'+i)))
		rec.PromptID, rec.PromptVersion, rec.Status = r.prompt, r.version, r.status
		rec.CreatedAt = base.Add(time.Duration(i) * time.Minute)
		require.NoError(t, b.recordRun(t, rec))
	}
	ids := func(p dbsqlc.ListRunsParams) []string {
		p.MaxRows = 100
		rows, err := b.q.ListRuns(t.Context(), p)
		require.NoError(t, err)
		count, err := b.q.CountRuns(t.Context(), dbsqlc.CountRunsParams{
			ProjectID: p.ProjectID, PromptID: p.PromptID, PromptVersion: p.PromptVersion, Status: p.Status,
			CreatedAfter: p.CreatedAfter, CreatedBefore: p.CreatedBefore,
		})
		require.NoError(t, err)
		out := []string{}
		for _, r := range rows {
			out = append(out, r.ID)
		}
		require.EqualValues(t, len(out), count)
		return out
	}
	first := uuid.MustParse("0c0ffee0-0000-4000-8000-000000000001")
	one, failed := int32(1), "failed"
	after, before := base.Add(time.Minute), base.Add(3*time.Minute)

	require.Equal(t, []string{"resp_listd", "resp_listc", "resp_listb", "resp_lista"}, ids(dbsqlc.ListRunsParams{ProjectID: &b.project}), "newest first")
	require.Equal(t, []string{"resp_listb", "resp_lista"}, ids(dbsqlc.ListRunsParams{ProjectID: &b.project, PromptID: &first}))
	require.Equal(t, []string{"resp_lista"}, ids(dbsqlc.ListRunsParams{PromptID: &first, PromptVersion: &one}))
	require.Equal(t, []string{"resp_listb"}, ids(dbsqlc.ListRunsParams{ProjectID: &b.project, Status: &failed}))
	require.Equal(t, []string{"resp_listc", "resp_listb"}, ids(dbsqlc.ListRunsParams{ProjectID: &b.project, CreatedAfter: &after, CreatedBefore: &before}))
	require.Equal(t, []string{"resp_listc"}, ids(dbsqlc.ListRunsParams{PromptID: &other}))
}
