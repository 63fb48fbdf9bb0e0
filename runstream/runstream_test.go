package runstream_test

import (
	"encoding/json"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/runstream"
	"github.com/budhq/bud/runstream/runstreamtest"
)

func startServer(t *testing.T) (*runstream.Server, *nats.Conn) {
	t.Helper()
	srv := runstreamtest.Start(t)
	return srv, runstreamtest.Connect(t, srv)
}

func next(t *testing.T, s *runstream.Subscription) runstream.Event {
	t.Helper()
	select {
	case ev := <-s.Events():
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		return runstream.Event{}
	}
}

func TestPublisherReachesSubscriberInOrder(t *testing.T) {
	t.Parallel()
	srv, nc := startServer(t)
	key := runstream.NewEventKey()
	sub, err := runstream.Subscribe(nc, "resp_1", key)
	require.NoError(t, err)
	defer sub.Close()

	// The worker has a connection of its own.
	wc := runstreamtest.Connect(t, srv)
	p := runstream.NewPublisher(wc, runstream.Subject("resp_1"), key, 2, 3)
	p.Delta("Hello")
	p.Delta("")
	p.Delta(" world")
	require.NoError(t, p.Done(t.Context(), "stop"))
	require.NoError(t, p.Err())
	require.NoError(t, runstream.Publish(t.Context(), wc, runstream.Subject("resp_1"), key, runstream.Event{Type: runstream.TypeOutputAccepted, Call: 2}))

	require.Equal(t, runstream.Event{Type: runstream.TypeDelta, Call: 2, Attempt: 3, Seq: 1, Text: "Hello"}, next(t, sub))
	require.Equal(t, runstream.Event{Type: runstream.TypeDelta, Call: 2, Attempt: 3, Seq: 2, Text: " world"}, next(t, sub), "an empty delta is not sent")
	require.Equal(t, runstream.Event{Type: runstream.TypeCallDone, Call: 2, Attempt: 3, Seq: 3, FinishReason: "stop"}, next(t, sub))
	require.Equal(t, runstream.Event{Type: runstream.TypeOutputAccepted, Call: 2}, next(t, sub))
}

func TestSubscriptionSeesOnlyItsRun(t *testing.T) {
	t.Parallel()
	_, nc := startServer(t)
	key := runstream.NewEventKey()
	a, err := runstream.Subscribe(nc, "resp_a", key)
	require.NoError(t, err)
	defer a.Close()
	runstream.NewPublisher(nc, runstream.Subject("resp_b"), key, 1, 1).Delta("not yours")
	p := runstream.NewPublisher(nc, runstream.Subject("resp_a"), key, 1, 1)
	p.Delta("yours")
	require.NoError(t, p.Done(t.Context(), "stop"))
	require.Equal(t, "yours", next(t, a).Text)
}

// TestFlushReturnsWhatIsPending checks that Flush hands over every event
// published before it, without reading further.
func TestFlushReturnsWhatIsPending(t *testing.T) {
	t.Parallel()
	_, nc := startServer(t)
	key := runstream.NewEventKey()
	sub, err := runstream.Subscribe(nc, "resp_f", key)
	require.NoError(t, err)
	defer sub.Close()
	p := runstream.NewPublisher(nc, runstream.Subject("resp_f"), key, 1, 1)
	const n = 1000 // more than the subscription's own buffer
	for range n {
		p.Delta("x")
	}
	require.NoError(t, p.Done(t.Context(), "stop"))

	evs, err := sub.Flush(t.Context())
	require.NoError(t, err)
	require.Len(t, evs, n+1)
	for i, ev := range evs[:n] {
		require.Equal(t, i+1, ev.Seq)
	}
	require.Equal(t, runstream.TypeCallDone, evs[n].Type)

	evs, err = sub.Flush(t.Context())
	require.NoError(t, err)
	require.Empty(t, evs)
}

func TestNilPublisherPublishesNothing(t *testing.T) {
	t.Parallel()
	require.Nil(t, runstream.NewPublisher(nil, "bud.runs.x", "k", 1, 1))
	_, nc := startServer(t)
	p := runstream.NewPublisher(nc, "", "k", 1, 1)
	require.Nil(t, p)
	p.Delta("x")
	require.NoError(t, p.Done(t.Context(), "stop"))
	require.NoError(t, runstream.Publish(t.Context(), nil, "bud.runs.x", "k", runstream.Event{}))
}

func TestSubscribeWithoutServerFails(t *testing.T) {
	t.Parallel()
	srv, err := runstream.StartServer("127.0.0.1:0")
	require.NoError(t, err)
	gone := make(chan struct{})
	nc, err := runstream.Connect(srv.URL(), nats.DisconnectErrHandler(func(*nats.Conn, error) { close(gone) }))
	require.NoError(t, err)
	defer nc.Close()
	srv.Shutdown()
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the client never noticed the server went away")
	}
	start := time.Now()
	_, err = runstream.Subscribe(nc, "resp_down", "k")
	require.ErrorIs(t, err, runstream.ErrNotConnected)
	require.Less(t, time.Since(start), time.Second, "no wait for a server that is away")
	_, err = runstream.Subscribe(nil, "resp_down", "k")
	require.ErrorIs(t, err, runstream.ErrNotConnected)
}

func TestStartServerPortTaken(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	start := time.Now()
	_, err = runstream.StartServer(l.Addr().String())
	require.ErrorContains(t, err, "cannot listen on "+l.Addr().String())
	require.Less(t, time.Since(start), 5*time.Second, "a taken port fails at once")
}

func TestStartServerRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	_, err := runstream.StartServer("0.0.0.0:0")
	require.ErrorContains(t, err, "loopback")
	_, err = runstream.StartServer("nope")
	require.Error(t, err)
}

func TestServerShutdownIsClean(t *testing.T) {
	t.Parallel()
	srv, err := runstream.StartServer("localhost:0")
	require.NoError(t, err)
	require.Contains(t, srv.URL(), "@127.0.0.1:")
	nc, err := nats.Connect(srv.URL())
	require.NoError(t, err)
	defer nc.Close()
	srv.Shutdown()
	srv.Shutdown()
	_, err = net.DialTimeout("tcp", srv.Addr(), time.Second)
	require.Error(t, err, "the port is released")
}

// TestEmbeddedServerRequiresItsPassword: the embedded server takes only
// clients that give its user and the password made for this start.
func TestEmbeddedServerRequiresItsPassword(t *testing.T) {
	t.Parallel()
	srv := runstreamtest.Start(t)
	other := runstreamtest.Start(t)
	u, err := url.Parse(srv.URL())
	require.NoError(t, err)
	password, ok := u.User.Password()
	require.True(t, ok)
	require.Equal(t, runstream.ServerUser, u.User.Username())
	require.GreaterOrEqual(t, len(password), 20)
	ou, err := url.Parse(other.URL())
	require.NoError(t, err)
	otherPassword, _ := ou.User.Password()
	require.NotEqual(t, password, otherPassword, "a password per start")

	for name, addr := range map[string]string{
		"no credentials":         "nats://" + srv.Addr(),
		"wrong password":         "nats://" + runstream.ServerUser + ":" + otherPassword + "@" + srv.Addr(),
		"password as a token":    "nats://" + password + "@" + srv.Addr(),
		"another user, same pwd": "nats://admin:" + password + "@" + srv.Addr(),
	} {
		nc, err := nats.Connect(addr, nats.NoReconnect())
		if err == nil {
			nc.Close()
		}
		require.ErrorIs(t, err, nats.ErrAuthorization, name)
	}
	nc, err := nats.Connect(srv.URL(), nats.NoReconnect())
	require.NoError(t, err)
	nc.Close()
}

// TestSubscriptionDropsUnsignedAndMisSignedEvents: a subscription takes
// only events signed with its run's key, on its run's subject.
func TestSubscriptionDropsUnsignedAndMisSignedEvents(t *testing.T) {
	t.Parallel()
	srv, nc := startServer(t)
	key := runstream.NewEventKey()
	require.NotEqual(t, key, runstream.NewEventKey())
	sub, err := runstream.Subscribe(nc, "resp_sig", key)
	require.NoError(t, err)
	defer sub.Close()

	// Someone else on the server, who knows the subject but not the key.
	intruder := runstreamtest.Connect(t, srv)
	subject := runstream.Subject("resp_sig")
	forged := runstream.Event{Type: runstream.TypeTurnEnded, Output: []byte(`{"response_id":"resp_sig","text":"forged"}`)}
	require.NoError(t, runstream.Publish(t.Context(), intruder, subject, "", forged), "unsigned")
	require.NoError(t, runstream.Publish(t.Context(), intruder, subject, runstream.NewEventKey(), forged), "signed with another key")
	data, err := json.Marshal(forged)
	require.NoError(t, err)
	for name, sig := range map[string][]string{
		"garbage":    {"00"},
		"empty":      {""},
		"two values": {"00", "11"},
	} {
		m := nats.NewMsg(subject)
		m.Data = data
		m.Header[runstream.SignatureHeader] = sig
		require.NoError(t, intruder.PublishMsg(m), name)
	}
	// A real signature of this payload, made for another subject under the
	// right key, does not carry over to this one.
	moved, err := intruder.SubscribeSync(runstream.Subject("resp_other"))
	require.NoError(t, err)
	require.NoError(t, intruder.Flush())
	require.NoError(t, runstream.Publish(t.Context(), nc, runstream.Subject("resp_other"), key, forged))
	signed, err := moved.NextMsg(5 * time.Second)
	require.NoError(t, err)
	require.NotEmpty(t, signed.Header.Get(runstream.SignatureHeader))
	m := nats.NewMsg(subject)
	m.Data, m.Header = signed.Data, signed.Header
	require.NoError(t, intruder.PublishMsg(m))
	require.NoError(t, intruder.Flush())

	// The run itself.
	real := runstream.Event{Type: runstream.TypeTurnEnded, Output: []byte(`{"response_id":"resp_sig","text":"real"}`)}
	require.NoError(t, runstream.Publish(t.Context(), nc, subject, key, real))

	evs, err := sub.Flush(t.Context())
	require.NoError(t, err)
	require.Equal(t, []runstream.Event{real}, evs, "only the run's own event")
	require.Equal(t, int64(6), sub.Dropped())
}

func TestSubscribeRequiresAKey(t *testing.T) {
	t.Parallel()
	_, nc := startServer(t)
	_, err := runstream.Subscribe(nc, "resp_nokey", "")
	require.ErrorContains(t, err, "event key")
}
