// Package sim simulates a fleet of devices that speak otactl's device
// protocol the way devices built on the EnOS SDKs do, so that verification
// rounds and batch upgrades can be exercised without hardware.
//
// Devices report their version when they come online and after every
// upgrade, take upgrade pushes, download the file from its fileUrl, check
// its size and digest, report progress and then their new version. A
// seeded share of them fails in a chosen way instead. Many devices share
// each MQTT connection, as devices behind a gateway do, so that tens of
// thousands fit on one machine.
//
// The connections use clean sessions. A simulated device, like a real one
// that lost power, forgets pushes sent while it was offline and reports its
// version again when it returns; otactl re-pushes on that report. A
// persistent session would hide that path from the tests that use the
// simulator.
package sim

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otactl/otactl/ota"
)

// Run simulates the fleet described by opt until ctx is done, then
// disconnects and returns what the fleet did; the summary is also written
// to log with the run's other human-readable lines. A nil log discards them.
//
// It returns an error, and no summary, when an option is invalid
// (ota.KindInvalid) or a connection cannot be made at start (ota.KindBroker);
// a connection lost later is made again in the background.
func Run(ctx context.Context, opt Options, log io.Writer) (Summary, error) {
	if log == nil {
		log = io.Discard
	}
	if err := opt.Validate(); err != nil {
		return Summary{}, err
	}
	opt = opt.withDefaults()
	broker, _ := brokerURL(opt.Broker) // checked by Validate
	brokerTLS, roots, err := tlsConfigs(opt, broker)
	if err != nil {
		return Summary{}, err
	}
	opt.Broker = broker.String()

	f := newFleet(ctx, opt, log, roots)
	defer f.cancel()
	f.log.printf("simulating %s", opt.describe())
	if err := f.connect(brokerTLS); err != nil {
		f.stop()
		return Summary{}, err
	}

	f.awaitFirstReports()
	<-ctx.Done()
	f.stop()
	s := f.summary()
	s.write(log)
	return s, nil
}

// fleet is one run of the simulator, shared by its connections.
type fleet struct {
	opt     Options
	ctx     context.Context // done when the run ends
	cancel  context.CancelFunc
	log     *logger
	stats   counters
	dl      *downloader
	work    tracker
	devices []*device
	conns   []*conn
	start   time.Time
	lastID  atomic.Uint64 // the id of the latest request the devices sent
	runID   string        // makes client ids unique between simulators
}

func newFleet(ctx context.Context, opt Options, log io.Writer, roots *x509.CertPool) *fleet {
	f := &fleet{opt: opt, log: &logger{w: log}, start: time.Now(), devices: plan(opt)}
	f.ctx, f.cancel = context.WithCancel(ctx)
	f.dl = newDownloader(opt.DownloadTimeout, roots)
	f.runID = randomHex(3)
	f.stats.s = Summary{Devices: opt.Devices, Connections: opt.Connections,
		FailMode: opt.FailMode, Failed: map[FailMode]int{}}
	for _, d := range f.devices {
		if d.failing {
			f.stats.s.FailingDevices++
		}
	}
	for i, group := range shard(f.devices, opt.Connections) {
		f.conns = append(f.conns, newConn(f, i+1, group))
	}
	return f
}

// connect opens every connection at once; the first failure is returned
// after the others have been made or have failed too.
func (f *fleet) connect(brokerTLS *tls.Config) error {
	errs := make([]error, len(f.conns))
	var wg sync.WaitGroup
	for i, c := range f.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.connect(brokerTLS)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return ota.Errorf(ota.KindBroker, "connect to %s: %w", f.opt.Broker, err)
		}
	}
	return nil
}

// awaitFirstReports logs once every connection is up and its devices have
// reported, so that an operator sees when the fleet is ready for pushes.
func (f *fleet) awaitFirstReports() {
	for _, c := range f.conns {
		select {
		case <-c.ready:
		case <-f.ctx.Done():
			return
		}
	}
	if f.opt.ConnectSpread > 0 {
		f.log.printf("%s up in %v; devices come online over %v",
			count(len(f.conns), "connection"), since(f.start), f.opt.ConnectSpread)
		return
	}
	f.log.printf("%s online on %s in %v",
		count(len(f.devices), "device"), count(len(f.conns), "connection"), since(f.start))
}

// stop ends the run: no new work starts, the work in progress notices the
// cancelled context and returns, and only then are the connections closed,
// so that nothing publishes on a closed client.
func (f *fleet) stop() {
	f.cancel()
	f.work.closeAndWait()
	var wg sync.WaitGroup
	for _, c := range f.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.disconnect()
		}()
	}
	wg.Wait()
	f.dl.close()
}

// summary is the final count, with the devices' versions taken after every
// goroutine that could change them has ended.
func (f *fleet) summary() Summary {
	s := f.stats.snapshot()
	s.Elapsed = ota.Duration(time.Since(f.start))
	s.Versions = map[string]int{}
	for _, c := range f.conns {
		c.mu.Lock()
		for _, d := range c.devices {
			s.Versions[d.version]++
		}
		c.mu.Unlock()
	}
	return s
}

// nextID numbers the requests the devices send, as the SDKs do.
func (f *fleet) nextID() string {
	return strconv.FormatUint(f.lastID.Add(1), 10)
}

// tracker runs the fleet's goroutines so that stop can wait for all of them
// and none can start after it began waiting.
type tracker struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// start runs fn in a new goroutine, unless the tracker is closed; it reports
// whether fn will run.
func (t *tracker) start(fn func()) bool {
	if !t.enter() {
		return false
	}
	go func() {
		defer t.wg.Done()
		fn()
	}()
	return true
}

// run is start for a goroutine that already exists, such as paho's
// on-connect callback.
func (t *tracker) run(fn func()) {
	if !t.enter() {
		return
	}
	defer t.wg.Done()
	fn()
}

func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

func (t *tracker) closeAndWait() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.wg.Wait()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }
