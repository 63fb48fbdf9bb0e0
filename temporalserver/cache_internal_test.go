package temporalserver

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
)

// TestHistoryCacheIsBounded reads the history cache's size as the history
// service does, through the dynamic-config collection: a key the server
// does not know (a misspelt one) would leave its default of 128,000.
func TestHistoryCacheIsBounded(t *testing.T) {
	dc := dynamicconfig.NewCollection(tuning(), log.NewNoopLogger())
	require.Equal(t, historyCacheSize, dynamicconfig.HistoryCacheHostLevelMaxSize.Get(dc)())
	require.LessOrEqual(t, historyCacheSize, 1024)
}

// TestTransferAckIsFrequent reads the transfer queue's ack interval as the
// history service does: a deleted run's history goes only once the queue
// has acked the run's close, so at the 30 s default a deletion waits that
// long.
func TestTransferAckIsFrequent(t *testing.T) {
	dc := dynamicconfig.NewCollection(tuning(), log.NewNoopLogger())
	require.Equal(t, time.Second, dynamicconfig.TransferProcessorUpdateAckInterval.Get(dc)())
}
