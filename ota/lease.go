package ota

import "time"

// staleTicks is how many of its ticks an agent may miss before its lease is
// stale and another agent may take it over.
const staleTicks = 3

// Live reports whether the lease's holder has shown signs of life within
// three of its ticks.
func (l *Lease) Live(now time.Time) bool {
	return l != nil && now.Sub(l.Heartbeat) < staleTicks*time.Duration(l.Tick)
}

// AcquireLease records me as the agent holding the receiving session. A
// live lease of another holder is refused; a stale one is taken over and
// returned, so that the caller can warn about it.
func AcquireLease(tx Tx, me *Lease, now time.Time) (stale *Lease, err error) {
	cur, err := tx.Lease()
	if err != nil {
		return nil, err
	}
	if cur != nil && cur.Holder != me.Holder && cur.Live(now) {
		return nil, Refused("agent %s holds the state file's lease (heartbeat %s ago)",
			cur.Holder, now.Sub(cur.Heartbeat).Round(time.Second)).
			WithHint("stop that agent first; otactl commands work beside it")
	}
	if cur != nil && cur.Holder != me.Holder {
		stale = cur
	}
	me.Since, me.Heartbeat = now, now
	if err := tx.PutLease(me); err != nil {
		return nil, err
	}
	return stale, nil
}

// RenewLease records a heartbeat of me, refusing when another agent has
// taken the lease over in the meantime.
func RenewLease(tx Tx, me *Lease, now time.Time) error {
	cur, err := tx.Lease()
	if err != nil {
		return err
	}
	if cur == nil || cur.Holder != me.Holder {
		holder := "nobody"
		if cur != nil {
			holder = cur.Holder
		}
		return Refused("the lease of agent %s was taken over by %s", me.Holder, holder)
	}
	cur.Heartbeat = now
	*me = *cur
	return tx.PutLease(cur)
}

// ReleaseLease removes me's lease, if it is still mine.
func ReleaseLease(tx Tx, me *Lease) error {
	cur, err := tx.Lease()
	if err != nil || cur == nil || cur.Holder != me.Holder {
		return err
	}
	return tx.DeleteLease()
}
