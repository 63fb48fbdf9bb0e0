package runstream_test

import (
	"net"
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
	_, nc := startServer(t)
	sub, err := runstream.Subscribe(nc, "resp_1")
	require.NoError(t, err)
	defer sub.Close()

	// The worker has a connection of its own.
	srvURL := nc.ConnectedUrl()
	wc, err := runstream.Connect(srvURL)
	require.NoError(t, err)
	defer wc.Close()
	p := runstream.NewPublisher(wc, runstream.Subject("resp_1"), 2, 3)
	p.Delta("Hello")
	p.Delta("")
	p.Delta(" world")
	require.NoError(t, p.Done(t.Context(), "stop"))
	require.NoError(t, p.Err())
	require.NoError(t, runstream.Publish(t.Context(), wc, runstream.Subject("resp_1"), runstream.Event{Type: runstream.TypeOutputAccepted, Call: 2}))

	require.Equal(t, runstream.Event{Type: runstream.TypeDelta, Call: 2, Attempt: 3, Seq: 1, Text: "Hello"}, next(t, sub))
	require.Equal(t, runstream.Event{Type: runstream.TypeDelta, Call: 2, Attempt: 3, Seq: 2, Text: " world"}, next(t, sub), "an empty delta is not sent")
	require.Equal(t, runstream.Event{Type: runstream.TypeCallDone, Call: 2, Attempt: 3, Seq: 3, FinishReason: "stop"}, next(t, sub))
	require.Equal(t, runstream.Event{Type: runstream.TypeOutputAccepted, Call: 2}, next(t, sub))
}

func TestSubscriptionSeesOnlyItsRun(t *testing.T) {
	t.Parallel()
	_, nc := startServer(t)
	a, err := runstream.Subscribe(nc, "resp_a")
	require.NoError(t, err)
	defer a.Close()
	runstream.NewPublisher(nc, runstream.Subject("resp_b"), 1, 1).Delta("not yours")
	p := runstream.NewPublisher(nc, runstream.Subject("resp_a"), 1, 1)
	p.Delta("yours")
	require.NoError(t, p.Done(t.Context(), "stop"))
	require.Equal(t, "yours", next(t, a).Text)
}

// TestFlushReturnsWhatIsPending checks that Flush hands over every event
// published before it, without reading further.
func TestFlushReturnsWhatIsPending(t *testing.T) {
	t.Parallel()
	_, nc := startServer(t)
	sub, err := runstream.Subscribe(nc, "resp_f")
	require.NoError(t, err)
	defer sub.Close()
	p := runstream.NewPublisher(nc, runstream.Subject("resp_f"), 1, 1)
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
	require.Nil(t, runstream.NewPublisher(nil, "bud.runs.x", 1, 1))
	_, nc := startServer(t)
	p := runstream.NewPublisher(nc, "", 1, 1)
	require.Nil(t, p)
	p.Delta("x")
	require.NoError(t, p.Done(t.Context(), "stop"))
	require.NoError(t, runstream.Publish(t.Context(), nil, "bud.runs.x", runstream.Event{}))
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
	_, err = runstream.Subscribe(nc, "resp_down")
	require.ErrorIs(t, err, runstream.ErrNotConnected)
	require.Less(t, time.Since(start), time.Second, "no wait for a server that is away")
	_, err = runstream.Subscribe(nil, "resp_down")
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
	require.Contains(t, srv.URL(), "nats://127.0.0.1:")
	nc, err := nats.Connect(srv.URL())
	require.NoError(t, err)
	defer nc.Close()
	srv.Shutdown()
	srv.Shutdown()
	_, err = net.DialTimeout("tcp", srv.Addr(), time.Second)
	require.Error(t, err, "the port is released")
}
