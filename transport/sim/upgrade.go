package sim

import (
	"errors"
	"strconv"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/transport"
)

// Reply codes a device answers a push with besides 200.
const (
	codeBadRequest = 400 // the push could not be understood
	codeBusy       = 409 // another upgrade is in progress
)

// onMessage handles a push on paho's router goroutine. paho delivers a
// connection's messages one at a time on it, so the handler only decides
// and leaves every publish and download to a goroutine of the upgrade.
func (c *conn) onMessage(_ mqtt.Client, m mqtt.Message) {
	d, ok := c.byTopic[m.Topic()]
	if !ok {
		c.f.log.printf("connection %d: ignored a message on %q", c.index, m.Topic())
		return
	}
	c.f.stats.add(func(s *Summary) { s.PushesReceived++ })
	// otactl never publishes retained commands; a retained push is a stale
	// leftover of some other tool, and acting on it would upgrade every
	// device that subscribes after it.
	if m.Retained() {
		c.ignore(d, "retained push")
		return
	}
	p, err := parsePush(m.Payload())
	if err != nil {
		c.f.stats.add(func(s *Summary) { s.Malformed++ })
		c.f.log.printf("%s: rejected a malformed push: %v", d.key, err)
		c.f.work.start(func() { c.reject(d, p, codeBadRequest, err.Error()) })
		return
	}
	c.dispatch(d, p)
}

// dispatch decides what the device does with a valid push.
func (c *conn) dispatch(d *device, p push) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !d.online:
		c.ignore(d, "push before the device came online")
	case d.job == p.identity():
		// otactl re-sends a push it is not sure was delivered; devices
		// must tolerate that (DESIGN.md section 7).
		c.ignore(d, "repeated push of the upgrade in progress")
	case d.job != "":
		c.f.stats.add(func(s *Summary) { s.Busy++ })
		c.f.work.start(func() { c.reject(d, p, codeBusy, "another upgrade is in progress") })
	case ota.SameVersion(d.version, p.params.Version):
		c.f.stats.add(func(s *Summary) { s.AlreadyCurrent++ })
		c.f.work.start(func() { c.confirmCurrent(d, p) })
	default:
		d.job = p.identity()
		j := &job{c: c, d: d, p: p, from: d.version}
		if !c.f.work.start(j.run) {
			d.job = ""
		}
	}
}

func (c *conn) ignore(d *device, why string) {
	c.f.stats.add(func(s *Summary) { s.PushesIgnored++ })
	c.f.log.printf("%s: ignored a %s", d.key, why)
}

// reject answers a push the device will not act on. A malformed one also
// gets step -1, so that a job waiting for the device fails at once instead
// of timing out; a busy device reports nothing, since its progress reports
// belong to the upgrade in progress.
func (c *conn) reject(d *device, p push, code int, message string) {
	c.sendReply(d, p, code, message)
	if code == codeBadRequest {
		c.sendProgress(d, p.params.JobID, -1, "rejected the push: "+message)
	}
}

// confirmCurrent answers a push of the version the device already runs:
// nothing to download, and the version report tells otactl the job is done.
func (c *conn) confirmCurrent(d *device, p push) {
	c.sendReply(d, p, 200, "")
	c.mu.Lock()
	tok := c.publishInform(d, d.version)
	c.mu.Unlock()
	if n, _ := c.wait(tok); n == 1 {
		c.f.stats.add(func(s *Summary) { s.InformsSent++ })
	}
}

// replyData is the data of an upgrade_reply: the push's jobId echoed, where
// transport.Parse looks for it.
type replyData struct {
	JobID string `json:"jobId,omitempty"`
}

func (c *conn) sendReply(d *device, p push, code int, message string) error {
	payload := transport.EncodeReply(p.id, code, replyData{JobID: p.params.JobID}, message)
	return c.send(d, transport.SuffixUpgradeReply, payload)
}

// progressParams are the params of ota.device.progress. The jobId is echoed
// so that otactl can tie late reports to the right job.
type progressParams struct {
	Step  string `json:"step"`
	Desc  string `json:"desc"`
	JobID string `json:"jobId,omitempty"`
}

func (c *conn) sendProgress(d *device, jobID string, step int, desc string) error {
	params := progressParams{Step: strconv.Itoa(step), Desc: desc, JobID: jobID}
	payload := transport.EncodeRequest(c.f.nextID(), transport.MethodProgress, params)
	return c.send(d, transport.SuffixProgress, payload)
}

// send publishes at QoS 1 and waits for the broker. A failure other than
// the end of the run is logged and the device carries on, as a device whose
// report got lost would.
func (c *conn) send(d *device, suffix string, payload []byte) error {
	_, err := c.wait(c.client.Publish(c.topic(d, suffix), 1, false, payload))
	if err != nil && c.f.ctx.Err() == nil {
		c.f.log.printf("%s: publish %s: %v", d.key, suffix, err)
		return nil
	}
	return err
}

// job is one upgrade of one device, run on its own goroutine.
type job struct {
	c    *conn
	d    *device
	p    push
	from string // the version before the upgrade
}

func (j *job) run() {
	defer j.finish()
	mode := FailMode("")
	if j.d.failing {
		mode = j.c.f.opt.FailMode
	}
	if err := j.steps(mode); err != nil {
		// Only the end of the run stops a job early.
		j.c.f.stats.add(func(s *Summary) { s.Interrupted++ })
	}
}

func (j *job) finish() {
	j.c.mu.Lock()
	if j.d.job == j.p.identity() {
		j.d.job = ""
	}
	j.c.mu.Unlock()
}

// steps walks the upgrade as an EnOS device does: acknowledge, download,
// verify, flash, reboot, report the new version, failing where mode or the
// file says. It returns an error only when the run ends first.
func (j *job) steps(mode FailMode) error {
	if err := j.c.sendReply(j.d, j.p, 200, ""); err != nil {
		return err
	}
	if mode == FailDecline {
		j.c.f.stats.add(func(s *Summary) { s.Declined++ })
		return j.fail(-5, "declined by the device (simulated)")
	}
	if err := j.progress(10, "downloading"); err != nil {
		return err
	}
	if mode == FailSilence {
		// The device hung: no more reports, and otactl's timeout decides.
		j.forced(mode)
		return nil
	}
	if mode == FailDownload {
		j.forced(mode)
		return j.fail(-2, "download failed (simulated)")
	}
	fetched := j.c.f.dl.fetch(j.c.f.ctx, j.p.params)
	if err := j.c.f.ctx.Err(); err != nil {
		return err
	}
	if fetched != nil && !errors.Is(fetched, errDigest) {
		j.c.f.stats.add(func(s *Summary) { s.DownloadErrors++ })
		return j.fail(-2, "download failed: "+fetched.Error())
	}
	if err := j.progress(40, "verifying"); err != nil {
		return err
	}
	if fetched != nil {
		j.c.f.stats.add(func(s *Summary) { s.DigestMismatches++ })
		return j.fail(-3, "verification failed: "+fetched.Error())
	}
	return j.install(mode)
}

// install is the part after a verified download: flash, reboot, report.
func (j *job) install(mode FailMode) error {
	if mode == FailVerify {
		j.forced(mode)
		return j.fail(-3, "verification failed (simulated)")
	}
	if err := j.progress(70, "flashing"); err != nil {
		return err
	}
	if mode == FailFlash {
		j.forced(mode)
		return j.fail(-4, "flash write failed (simulated)")
	}
	if err := j.progress(100, "rebooting"); err != nil {
		return err
	}
	target := j.p.params.Version
	switch mode {
	case FailRollback:
		j.forced(mode)
		j.report(j.from, false)
	case FailWrongVersion:
		j.forced(mode)
		j.report(target+"-wrong", false)
	default:
		j.report(target, true)
		j.c.f.stats.add(func(s *Summary) { s.Succeeded++ })
	}
	return nil
}

// progress reports a step, then waits StepDelay, as a device busy with the
// step would.
func (j *job) progress(step int, desc string) error {
	if err := j.c.sendProgress(j.d, j.p.params.JobID, step, desc); err != nil {
		return err
	}
	t := time.NewTimer(j.c.f.opt.StepDelay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-j.c.f.ctx.Done():
		return j.c.f.ctx.Err()
	}
}

// fail reports a failure step; the device keeps its old version. The
// outcome is counted by then, so it returns nil even when the run ends
// before the broker acknowledged the report.
func (j *job) fail(step int, desc string) error {
	j.c.f.log.printf("%s: upgrade to %s failed at step %d: %s",
		j.d.key, j.p.params.Version, step, desc)
	j.c.sendProgress(j.d, j.p.params.JobID, step, desc)
	return nil
}

// forced counts a failure the fail mode imposed.
func (j *job) forced(mode FailMode) {
	j.c.f.stats.add(func(s *Summary) { s.Failed[mode]++ })
	if mode == FailSilence || mode == FailRollback || mode == FailWrongVersion {
		j.c.f.log.printf("%s: upgrade to %s failed in mode %s", j.d.key,
			j.p.params.Version, mode)
	}
}

// report publishes the version the device runs after rebooting. keep makes
// it the device's version from now on; a failed device keeps its old one,
// and reports that on its next reconnect. The outcome is decided by then,
// so the end of the run no longer counts as an interruption.
func (j *job) report(version string, keep bool) {
	j.c.mu.Lock()
	if keep {
		j.d.version = version
	}
	tok := j.c.publishInform(j.d, version)
	j.c.mu.Unlock()
	if n, _ := j.c.wait(tok); n == 1 {
		j.c.f.stats.add(func(s *Summary) { s.InformsSent++ })
	}
}
