package workflows

// Replay: recorded histories against this binary's workflow code.

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/nexus-rpc/sdk-go/nexus"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
)

// Replayer replays recorded workflow histories against the workflows
// Register registers, under the names a worker of this binary runs them
// by. The workflow code re-executes over the recorded events, and every
// command it issues — each activity, local activity and timer, in order —
// must match them. Activities are not run: their results are in the
// history.
type Replayer struct {
	replayer worker.WorkflowReplayer
	logger   log.Logger
}

// NewReplayer returns a Replayer of every workflow this binary registers.
// logger receives the SDK's own lines during replay; nil discards them.
func NewReplayer(logger log.Logger) *Replayer {
	r := worker.NewWorkflowReplayer()
	Register(replayRegistry{r}, nil)
	return &Replayer{replayer: r, logger: logger}
}

// replayRegistry is a worker.Registry over a replayer, so that Register
// itself says what is replayed: its workflows are, while activities and
// Nexus services, which a replay never runs, are dropped.
type replayRegistry struct{ worker.WorkflowReplayer }

func (replayRegistry) RegisterActivity(any)                                         {}
func (replayRegistry) RegisterActivityWithOptions(any, activity.RegisterOptions)    {}
func (replayRegistry) RegisterDynamicActivity(any, activity.DynamicRegisterOptions) {}
func (replayRegistry) RegisterNexusService(*nexus.Service)                          {}

// NonDeterminismError is a history the workflow code no longer issues the
// same commands for: a worker running this code would fail that run.
type NonDeterminismError struct {
	// EventID and EventType name the first recorded event the code no
	// longer matches; EventID is 0 when it could not be told (the code
	// issues a command past the end of what the history recorded).
	EventID   int64
	EventType string
	// TaskCompletedEventID is the WorkflowTaskCompleted event of the
	// workflow task whose commands differ, 0 when none was found.
	TaskCompletedEventID int64
	// Command is the command the code issues at the event instead
	// ("StartTimer"), "" when it issues none there or the SDK did not say.
	Command string
	// Err is the SDK's account of the mismatch.
	Err error
}

// maxDetail bounds the SDK's account in Error: it quotes whole recorded
// payloads.
const maxDetail = 300

func (e *NonDeterminismError) Error() string {
	var where string
	switch {
	case e.EventID != 0:
		where = fmt.Sprintf("event %d (%s), of the workflow task completed at event %d", e.EventID, e.EventType, e.TaskCompletedEventID)
	case e.TaskCompletedEventID != 0:
		where = fmt.Sprintf("after the commands of the workflow task completed at event %d", e.TaskCompletedEventID)
	default:
		where = "the history"
	}
	switch {
	case e.Command != "":
		return fmt.Sprintf("%s: the code issues %s there instead", where, e.Command)
	case strings.Contains(e.Err.Error(), "missing replay command"):
		return where + ": the code issues no command there"
	}
	detail := strings.Join(strings.Fields(e.Err.Error()), " ")
	if len(detail) > maxDetail {
		detail = detail[:maxDetail] + "…"
	}
	return where + ": " + detail
}

func (e *NonDeterminismError) Unwrap() error { return e.Err }

// Replay replays h. It returns nil when the code issues the recorded
// commands, a *NonDeterminismError when it does not, and another error
// when the history cannot be replayed at all (an unregistered workflow
// type, a corrupt history).
func (r *Replayer) Replay(h *historypb.History) error {
	err := r.replay(h.GetEvents())
	if err == nil || !isNonDeterminism(err) {
		return err
	}
	return r.locate(h.GetEvents(), err)
}

func (r *Replayer) replay(events []*historypb.HistoryEvent) error {
	logger := r.logger
	if logger == nil {
		logger = log.NewStructuredLogger(slog.New(slog.DiscardHandler))
	}
	return r.replayer.ReplayWorkflowHistory(logger, &historypb.History{Events: events})
}

// isNonDeterminism reports whether a replay failed on a history mismatch,
// which the SDK marks with its error code TMPRL1100.
func isNonDeterminism(err error) bool {
	return strings.Contains(err.Error(), "TMPRL1100")
}

// isExtraCommand reports whether a replay failed only because the code
// issued more commands than the history holds, as it does when the
// history is cut short in the middle of a task's commands.
func isExtraCommand(err error) bool {
	return strings.Contains(err.Error(), "extra replay command")
}

// locate finds the event a non-deterministic replay failed on. The SDK
// names the event by its type and attributes but not its id, and may
// report the failure events later (as a completion it cannot place), so
// the history is replayed cut after chosen events: a cut whose commands so
// far match fails at most for commands the code issues past its end, and
// the first cut that fails otherwise ends at the event the code no longer
// matches. A cut that fails so keeps failing as it grows, since the
// events that did not match are still there and are met in the same
// order, so the first such cut is found by bisection: a history of n
// events costs about log2(n) replays rather than one per event up to the
// failure. A cut right after a WorkflowTaskStarted event is never made:
// the SDK runs that last task as a new one, matching nothing.
func (r *Replayer) locate(events []*historypb.HistoryEvent, cause error) error {
	var cuts []int // lengths of the cuts that may be replayed
	for k := 3; k <= len(events); k++ {
		if events[k-1].GetEventType() != enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED {
			cuts = append(cuts, k)
		}
	}
	failures := make([]error, len(cuts))
	first := sort.Search(len(cuts), func(i int) bool {
		err := r.replay(events[:cuts[i]])
		if err == nil || !isNonDeterminism(err) || isExtraCommand(err) {
			return false
		}
		failures[i] = err
		return true
	})
	nd := &NonDeterminismError{Err: cause}
	if first == len(cuts) {
		// Every cut matched as far as it went: the code issues commands
		// past the end of the last task's.
		nd.TaskCompletedEventID = lastTaskCompleted(events)
		if isExtraCommand(cause) {
			nd.Command = extraCommand(cause.Error())
		}
		return nd
	}
	k := cuts[first]
	last := events[k-1]
	nd.EventID, nd.EventType, nd.TaskCompletedEventID, nd.Err = last.GetEventId(), typeName(last), lastTaskCompleted(events[:k]), failures[first]
	nd.Command = replayCommand(nd.Err.Error())
	return nd
}

// lastTaskCompleted is the id of the last WorkflowTaskCompleted event of
// events, 0 when there is none.
func lastTaskCompleted(events []*historypb.HistoryEvent) int64 {
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
			return events[i].GetEventId()
		}
	}
	return 0
}

// replayCommand is the command type a mismatch message says the code
// issued ("… replay command is StartTimer: …"), or "".
func replayCommand(msg string) string {
	return typeAfter(msg, "replay command is ")
}

// extraCommand is the command type of "extra replay command for StartTimer: …".
func extraCommand(msg string) string {
	return typeAfter(msg, "extra replay command for ")
}

func typeAfter(msg, lead string) string {
	_, rest, ok := strings.Cut(msg, lead)
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, ":")
	return strings.TrimSpace(name)
}

// typeName is an event's type as the SDK writes it ("ActivityTaskScheduled").
func typeName(e *historypb.HistoryEvent) string {
	return e.GetEventType().String()
}
