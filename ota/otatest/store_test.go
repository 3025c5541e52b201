package otatest_test

import (
	"testing"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/ota/otatest"
	"github.com/otactl/otactl/ota/storetest"
)

// TestStore holds the fake to the same contract as the bbolt store.
func TestStore(t *testing.T) {
	storetest.Run(t, func(*testing.T) ota.Store { return otatest.New() })
}
