package temporalserver

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
)

// TestHistoryCacheIsBounded reads the history cache's size as the history
// service does, through the dynamic-config collection: a key the server
// does not know (a misspelt one) would leave its default of 128,000.
func TestHistoryCacheIsBounded(t *testing.T) {
	dc := dynamicconfig.NewCollection(tuning(false), log.NewNoopLogger())
	require.Equal(t, historyCacheSize, dynamicconfig.HistoryCacheHostLevelMaxSize.Get(dc)())
	require.LessOrEqual(t, historyCacheSize, 1024)
}

// TestTransferAckIsFrequent reads the transfer queue's ack interval as the
// history service does: a deleted run's history goes only once the queue
// has acked the run's close, so at the 30 s default a deletion waits that
// long.
func TestTransferAckIsFrequent(t *testing.T) {
	dc := dynamicconfig.NewCollection(tuning(false), log.NewNoopLogger())
	require.Equal(t, time.Second, dynamicconfig.TransferProcessorUpdateAckInterval.Get(dc)())
}

// TestFairnessIsOn reads matching's fairness switch as the matching
// service does, for the runs' task queue: on by default, off for a
// first-come-first-served server.
func TestFairnessIsOn(t *testing.T) {
	for _, fifo := range []bool{false, true} {
		dc := dynamicconfig.NewCollection(tuning(fifo), log.NewNoopLogger())
		change := dynamicconfig.MatchingEnableFairness.Get(dc)("default", "bud-prompt", enumspb.TASK_QUEUE_TYPE_ACTIVITY)
		require.Equal(t, !fifo, change.Value([]byte("bud-prompt"), time.Now()), "fifo %v", fifo)
	}
}
