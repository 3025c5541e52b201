package bench

import (
	"testing"
	"time"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/transport"
)

// BenchmarkApply records the fleet's traffic with ota.Apply in batches of
// transport.DefaultMaxBatch, as the session does, but without a broker:
// the rate the rules and the state file allow on their own, which bounds
// BenchmarkIngest's otactl figure. Parsing is done before the clock starts
// (in otactl it runs on paho's goroutine, beside the apply loop). Run:
//
//	go test ./bench -run '^$' -bench Apply -benchtime 1x -count 3
func BenchmarkApply(b *testing.B) {
	msgs := fleetTraffic()
	reports := make([]ota.Report, len(msgs))
	var took time.Duration
	for b.Loop() {
		b.StopTimer()
		st := seedFleet(b)
		for i, m := range msgs {
			reports[i] = transport.Parse(m.topic, m.payload, false, false, time.Now().UTC())
		}
		b.StartTimer()
		start := time.Now()
		for i := 0; i < len(reports); i += transport.DefaultMaxBatch {
			batch := reports[i:min(i+transport.DefaultMaxBatch, len(reports))]
			err := st.Update(func(tx ota.Tx) error {
				_, err := ota.Apply(tx, batch, fleetEnv())
				return err
			})
			if err != nil {
				b.Fatalf("apply batch at %d: %v", i, err)
			}
		}
		took += time.Since(start)
		b.StopTimer()
		checkFleet(b, st)
		b.StartTimer()
	}
	b.ReportMetric(float64(len(msgs)*b.N)/took.Seconds(), "msgs/s")
}
