package app

import (
	"context"
	"errors"
	"fmt"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/budhq/bud/statestore"
)

// Bounds of the cache of documents kept by content: how many keys it
// remembers as stored, and the largest document whose bytes it keeps too.
const (
	keptDocumentsSize   = 512
	maxKeptDocumentSize = 64 << 10
)

// runDocuments keeps the documents of runs that ran no saved version as it
// is, by content (statestore.ContentKey), so that such a run can be run
// again once Temporal has deleted its history. Each distinct document is
// stored once: a small LRU remembers the keys already stored (and the bytes
// of small documents), so a document run again costs no state store call.
type runDocuments struct {
	docs Documents
	// kept maps a key known stored to its document, or to nil when the
	// document is too large to hold here.
	kept *lru.Cache[string, []byte]
}

func newRunDocuments(docs Documents) *runDocuments {
	kept, err := lru.New[string, []byte](keptDocumentsSize)
	if err != nil {
		panic(fmt.Sprintf("app: run documents cache: %v", err)) // only a size <= 0 fails
	}
	return &runDocuments{docs: docs, kept: kept}
}

// keep stores doc under its content key, unless it is known stored, and
// returns the key. A failure is the state store's (see storeError).
func (d *runDocuments) keep(ctx context.Context, doc []byte) (string, error) {
	key := statestore.ContentKey(doc)
	if _, ok := d.kept.Get(key); ok {
		return key, nil
	}
	// First write wins: the same bytes under the same key are a no-op, so
	// concurrent runs of one document race harmlessly.
	if err := d.docs.Put(ctx, key, doc); err != nil {
		return "", storeError(err, "keep run document")
	}
	d.remember(key, doc)
	return key, nil
}

// get returns the document kept under key; statestore.ErrNotFound when
// there is none.
func (d *runDocuments) get(ctx context.Context, key string) ([]byte, error) {
	if doc, ok := d.kept.Get(key); ok && doc != nil {
		return doc, nil
	}
	doc, err := d.docs.Get(ctx, key)
	if err != nil {
		if errors.Is(err, statestore.ErrNotFound) {
			return nil, err
		}
		return nil, storeError(err, "get run document")
	}
	d.remember(key, doc)
	return doc, nil
}

func (d *runDocuments) remember(key string, doc []byte) {
	if len(doc) > maxKeptDocumentSize {
		doc = nil
	}
	d.kept.Add(key, doc)
}
