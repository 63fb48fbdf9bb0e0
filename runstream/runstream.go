// Package runstream carries a prompt run's progress from the worker to the
// gateway over NATS while the run is in flight: the text of each model call
// as the model produces it, and the run's verdicts on that text. The
// workflow's result stays the record of what a run answered; these events
// only let a caller see it sooner. Core NATS delivers at most once, so a
// receiver must be able to finish from the workflow's result alone; every
// event carries what it needs to be ordered and told apart.
//
// One subject per run, Subject(responseID). The events on it:
//
//	delta            {call, attempt, seq, text}  a piece of a model call's content (activity)
//	call_done        {call, attempt, seq, finish_reason}  the attempt's reply is complete (activity)
//	output_accepted  {call}  the call's reply passed validation: it is the run's output (workflow)
//	output_rejected  {call}  the call's reply failed validation: a repair may follow (workflow)
//	tool_call        {call, tool}  a connection tool call starts (workflow)
//	tool_result      {call, tool}  it ended: tool.output, or tool.error (workflow)
//	function_call    {call, tool}  the model called one of the caller's functions (workflow)
//	approval_request {call, tool}  a tool call waits for approval, tool.id is the request's (workflow)
//
// Call in the tool events is the model call whose reply asked for the tool.
//
// Call numbers a run's model calls from 1; attempt is the activity attempt
// that made the call (Temporal retries a call that failed, even mid-stream),
// and seq numbers one attempt's events from 1 so a gap shows. A higher
// attempt of a call, or a later call, supersedes what came before it.
//
// Every event of a run is signed with the turn's event key (NewEventKey),
// which the gateway makes and hands to the run in the workflow's input, and
// the gateway's Subscription drops any event that is unsigned or signed
// otherwise (SignatureHeader): only the run's worker can speak for the run,
// not everyone who can publish on the subject. A run started without a key
// publishes unsigned events, which no Subscription accepts.
package runstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/budhq/bud"
)

// SubjectPrefix starts every run's subject.
const SubjectPrefix = "bud.runs."

// Subject is the subject of the run whose response id (the workflow id) is
// responseID.
func Subject(responseID string) string { return SubjectPrefix + responseID }

// Event types.
const (
	TypeDelta           = "delta"
	TypeCallDone        = "call_done"
	TypeOutputAccepted  = "output_accepted"
	TypeOutputRejected  = "output_rejected"
	TypeToolCall        = "tool_call"
	TypeToolResult      = "tool_result"
	TypeFunctionCall    = "function_call"
	TypeApprovalRequest = "approval_request"
	// TypeTurnEnded announces that the run's first turn has ended and been
	// recorded; Output holds the turn (a run.Turn), or,
	// with Reply, the turn before the model call that ended it
	// (workflows.AnnouncedTurn reads both).
	TypeTurnEnded = "turn_ended"
	// typeBarrier is what Subscription.Flush publishes to itself.
	typeBarrier = "barrier"
)

// Event is one message on a run's subject.
type Event struct {
	Type string `json:"type"`
	// Call is the model call's number in the run, 1 for the first.
	Call int `json:"call"`
	// Attempt is the activity attempt that made the call, 1 for the first;
	// 0 in the workflow's own events.
	Attempt int32 `json:"attempt,omitempty"`
	// Seq numbers an attempt's events from 1.
	Seq  int    `json:"seq,omitempty"`
	Text string `json:"text,omitempty"`
	// FinishReason is the model's finish reason, in call_done.
	FinishReason string `json:"finish_reason,omitempty"`
	// Tool describes the call of a tool event.
	Tool *Tool `json:"tool,omitempty"`
	// Output is the ended turn, in turn_ended.
	Output json.RawMessage `json:"output,omitempty"`
	// Reply, in a turn_ended that the model call sent, is the call's reply
	// (an activities.CallModelResult) and Output the turn before it.
	Reply json.RawMessage `json:"reply,omitempty"`
}

// Tool is the call a tool event is about.
type Tool struct {
	// ID is an approval request's id (mcpr_…), in approval_request.
	ID string `json:"id,omitempty"`
	// CallID is the model's id of the call.
	CallID string `json:"call_id"`
	Name   string `json:"name"`
	// ServerLabel is the connection's name; empty for a function.
	ServerLabel string `json:"server_label,omitempty"`
	Arguments   string `json:"arguments,omitempty"`
	Output      string `json:"output,omitempty"`
	Error       string `json:"error,omitempty"`
	// ApprovalRequestID is the approval request a connection tool call
	// waited on, in tool_call and tool_result.
	ApprovalRequestID string `json:"approval_request_id,omitempty"`
}

// Connect connects to the NATS server at url (nats://host:port; several
// may be given, comma-separated; user:password@ or token@ before the host
// authenticate). The connection reconnects for ever, and a server that is
// down at start is retried in the background, so a service starts while
// NATS is briefly away; streams lose their deltas meanwhile, never their
// result.
func Connect(url string, opts ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{
		nats.Name("bud"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("runstream: connect to %s: %w", bud.RedactURLs(url), err)
	}
	return nc, nil
}

// flushTimeout bounds the wait for the server to confirm what was
// published; a stream is best effort and must not hold a run up.
const flushTimeout = 2 * time.Second

// Publisher publishes the events of one attempt of one model call. A nil
// *Publisher publishes nothing, so a caller without NATS or without a
// subject needs no branch. It is not safe for concurrent use.
type Publisher struct {
	nc      *nats.Conn
	subject string
	mac     *eventMAC // nil: unsigned
	call    int
	attempt int32
	seq     int
	err     error
}

// NewPublisher returns a publisher for attempt of call on subject, whose
// events it signs with key (none when key is empty), or nil when nc is nil
// or subject empty.
func NewPublisher(nc *nats.Conn, subject, key string, call int, attempt int32) *Publisher {
	if nc == nil || subject == "" {
		return nil
	}
	return &Publisher{nc: nc, subject: subject, mac: macOf(key, subject), call: call, attempt: attempt}
}

// Delta publishes a piece of content. It does not wait for the server: the
// connection writes it out at once (Publish wakes its flusher), and Done
// confirms the lot. A failure is kept for Err and later deltas are dropped.
func (p *Publisher) Delta(text string) {
	if p == nil || p.err != nil || text == "" {
		return
	}
	p.seq++
	p.err = publish(p.nc, p.subject, p.mac, Event{Type: TypeDelta, Call: p.call, Attempt: p.attempt, Seq: p.seq, Text: text})
}

// Done publishes call_done and waits until the server has every event of
// the attempt, so that they are on their way to subscribers before the
// activity returns and the workflow moves on.
func (p *Publisher) Done(ctx context.Context, finishReason string) error {
	if p == nil {
		return nil
	}
	if p.err != nil {
		return p.err
	}
	p.seq++
	if p.err = publish(p.nc, p.subject, p.mac, Event{Type: TypeCallDone, Call: p.call, Attempt: p.attempt, Seq: p.seq, FinishReason: finishReason}); p.err != nil {
		return p.err
	}
	p.err = flush(ctx, p.nc)
	return p.err
}

// Flush waits until the server has every event published so far: what an
// attempt that failed midway did publish is then ahead of any retry's.
func (p *Publisher) Flush(ctx context.Context) error {
	if p == nil || p.err != nil {
		return p.Err()
	}
	p.err = flush(ctx, p.nc)
	return p.err
}

// Err returns the first publish failure.
func (p *Publisher) Err() error {
	if p == nil {
		return nil
	}
	return p.err
}

// Publish publishes ev on subject, signed with key (unsigned when key is
// empty), and waits until the server has it. A nil nc or an empty subject
// publishes nothing.
func Publish(ctx context.Context, nc *nats.Conn, subject, key string, ev Event) error {
	if nc == nil || subject == "" {
		return nil
	}
	if err := publish(nc, subject, macOf(key, subject), ev); err != nil {
		return err
	}
	return flush(ctx, nc)
}

func publish(nc *nats.Conn, subject string, mac *eventMAC, ev Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("runstream: encode %s: %w", ev.Type, err)
	}
	if err := nc.PublishMsg(signedMsg(mac, subject, b)); err != nil {
		return fmt.Errorf("runstream: publish %s: %w", ev.Type, err)
	}
	return nil
}

func flush(ctx context.Context, nc *nats.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, flushTimeout)
	defer cancel()
	if err := nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("runstream: flush: %w", err)
	}
	return nil
}

// eventBuffer is how many events a subscription holds for a slow reader
// before NATS's own pending queue takes over.
const eventBuffer = 256

// ErrNotConnected is Subscribe's error when there is no connection to a
// NATS server at the moment.
var ErrNotConnected = errors.New("runstream: not connected to NATS")

// errNoKey is Subscribe's error without an event key: a subscription that
// verified nothing would take anyone's event for the run's.
var errNoKey = errors.New("runstream: subscribe without an event key")

// Subscription receives the events of one run that are signed with its
// event key; it drops every other message on the subject.
type Subscription struct {
	nc      *nats.Conn
	sub     *nats.Subscription
	subject string
	key     string
	mac     *eventMAC
	events  chan Event
	done    chan struct{}
	once    sync.Once
	dropped atomic.Int64
}

// Subscribe subscribes to the run of responseID, whose events are signed
// with key (NewEventKey; the run's input carries it), and returns once the
// server has the subscription: every event published after Subscribe
// returns reaches it. Subscribe before starting the run. An empty key is
// an error.
func Subscribe(nc *nats.Conn, responseID, key string) (*Subscription, error) {
	if key == "" {
		return nil, errNoKey
	}
	if nc == nil || !nc.IsConnected() {
		return nil, ErrNotConnected
	}
	subject := Subject(responseID)
	s := &Subscription{nc: nc, subject: subject, key: key, mac: newEventMAC(key, subject), events: make(chan Event, eventBuffer), done: make(chan struct{})}
	sub, err := nc.Subscribe(s.subject, func(m *nats.Msg) {
		var ev Event
		if !s.mac.verified(m) || json.Unmarshal(m.Data, &ev) != nil {
			s.dropped.Add(1)
			return
		}
		// Blocking here is safe: NATS queues further messages for this
		// subscription meanwhile.
		select {
		case s.events <- ev:
		case <-s.done:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("runstream: subscribe %s: %w", s.subject, err)
	}
	s.sub = sub
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if err := nc.FlushWithContext(ctx); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("runstream: subscribe %s: %w", s.subject, err)
	}
	return s, nil
}

// Events delivers the run's events in the order the server received them
// from each publisher.
func (s *Subscription) Events() <-chan Event { return s.events }

// Dropped is how many messages the subscription has dropped so far because
// they were not signed with the run's key or were not events.
func (s *Subscription) Dropped() int64 { return s.dropped.Load() }

// Flush returns the events not yet read from Events that the server
// received before Flush was called, in order: it publishes a barrier on the
// run's subject and collects events until the barrier comes back. The
// worker's publishers wait for the server before their activity returns,
// so once a run has finished, Flush returns every event it published.
// Events must not be read concurrently. On ctx's end it returns what it
// has with ctx's error.
func (s *Subscription) Flush(ctx context.Context) ([]Event, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	if err := Publish(ctx, s.nc, s.subject, s.key, Event{Type: typeBarrier, Text: token}); err != nil {
		return nil, err
	}
	var out []Event
	for {
		select {
		case ev := <-s.events:
			if ev.Type == typeBarrier {
				if ev.Text == token {
					return out, nil
				}
				continue
			}
			out = append(out, ev)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

// Close unsubscribes. Events is not closed.
func (s *Subscription) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		err = s.sub.Unsubscribe()
	})
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("runstream: unsubscribe %s: %w", s.subject, err)
	}
	return nil
}
