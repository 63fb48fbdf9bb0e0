package workflows_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"

	"github.com/budhq/bud/workflows"
)

// readHistory reads a history of testdata.
func readHistory(t testing.TB, file string) *historypb.History {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", file))
	require.NoError(t, err)
	defer f.Close()
	h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	require.NoError(t, err)
	return h
}

// renamedActivity is the history of file with the activity scheduled at
// its i-th event renamed: a history the code no longer matches at that
// event, and only there.
func renamedActivity(t testing.TB, file string, i int) *historypb.History {
	h := readHistory(t, file)
	h.Events[i].GetActivityTaskScheduledEventAttributes().GetActivityType().Name = "Renamed"
	return h
}

// TestReplayerLocatesTheEvent: for each activity of each recorded history,
// the same history with that activity renamed is reported
// non-deterministic at that very event, in the workflow task whose
// commands scheduled it, wherever it is in the history.
func TestReplayerLocatesTheEvent(t *testing.T) {
	t.Parallel()
	r := workflows.NewReplayer(nil)
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		h := readHistory(t, filepath.Base(file))
		require.NoError(t, r.Replay(h), file)
		var completed int64
		for i, e := range h.GetEvents() {
			switch e.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
				completed = e.GetEventId()
				continue
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			default:
				continue
			}
			err := r.Replay(renamedActivity(t, filepath.Base(file), i))
			var nd *workflows.NonDeterminismError
			require.True(t, errors.As(err, &nd), "%s, event %d: %v", file, e.GetEventId(), err)
			require.Equal(t, e.GetEventId(), nd.EventID, "%s: %v", file, err)
			require.Equal(t, "ActivityTaskScheduled", nd.EventType)
			require.Equal(t, completed, nd.TaskCompletedEventID, "%s: %v", file, err)
			require.Equal(t, "ScheduleActivityTask", nd.Command, "%s: %v", file, err)
		}
	}
}

// BenchmarkReplayerLocate replays the longest recorded history with its
// last activity renamed: one full replay, then the search for the event.
func BenchmarkReplayerLocate(b *testing.B) {
	h := readHistory(b, "promptrun_approval.json")
	last := -1
	for i, e := range h.GetEvents() {
		if e.GetEventType() == enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED {
			last = i
		}
	}
	broken := renamedActivity(b, "promptrun_approval.json", last)
	r := workflows.NewReplayer(nil)
	for b.Loop() {
		var nd *workflows.NonDeterminismError
		if err := r.Replay(broken); !errors.As(err, &nd) || nd.EventID != h.Events[last].GetEventId() {
			b.Fatalf("want event %d, got %v", h.Events[last].GetEventId(), err)
		}
	}
}
