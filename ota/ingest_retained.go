package ota

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// retainedSet indexes the retained messages otactl has recorded, one member
// per topic: the topic's digest and a space (retainedPrefix), then the
// message's hash. The broker keeps one retained message per topic and hands
// it out again with every subscription, that is to every command; the index
// is how a copy already recorded is recognised, for devices otactl does not
// know as for those it does (a device's Recent hashes forget a retained
// message once 32 newer messages came).
//
// It is bounded by topics, not by deliveries: a new retained message on a
// topic replaces the topic's member, so the set holds at most four members
// per device, and grows only when a message arrives on a topic that never
// carried one, which adds a history entry several times its size anyway.
const retainedSet = "retained"

// retainedPrefix starts the member of topic in retainedSet. It holds a
// digest because the topic of a rejected message may be longer than a store
// key may be, of fixed width so that a topic's member is the first one after
// its digest and a space, and cryptographic so that nobody who may publish
// can craft a topic that shares another's member and makes the two record
// each other again on every run.
func retainedPrefix(topic string) string {
	sum := sha256.Sum256([]byte(topic))
	return hex.EncodeToString(sum[:8]) + " "
}

// recordedRetained returns the member of topic in retainedSet, "" when it
// has none, and whether that member names the message hashed h.
func recordedRetained(tx Tx, topic string, h uint64) (member string, same bool, err error) {
	prefix := retainedPrefix(topic)
	err = tx.SetEach(retainedSet, prefix, func(m string) error {
		if strings.HasPrefix(m, prefix) {
			member = m
		}
		return errStop
	})
	if err != nil && err != errStop {
		return "", false, err
	}
	return member, member == retainedMember(prefix, h), nil
}

func retainedMember(prefix string, h uint64) string { return fmt.Sprintf("%s%016x", prefix, h) }

// applyRetained follows truth rule 6: a retained message is stale. It is
// recorded the first time it comes and recognised, writing nothing, every
// time after; it may introduce a device otactl has never seen, and changes
// nothing else.
func (w *work) applyRetained(r *Report) error {
	tx, env := w.tx, w.env
	h := messageHash(r)
	old, same, err := recordedRetained(tx, r.Topic, h)
	if err != nil || same {
		return err
	}
	if old != "" {
		if err := tx.SetRemove(retainedSet, old); err != nil {
			return err
		}
	}
	if err := tx.SetAdd(retainedSet, retainedMember(retainedPrefix(r.Topic), h)); err != nil {
		return err
	}
	if r.Invalid != "" {
		return messageEvent(tx, r, env, "rejected", r.Invalid)
	}
	d, err := tx.Device(r.ProductKey, r.DeviceKey)
	if err != nil {
		return err
	}
	switch {
	case d != nil && slices.Contains(d.Recent, h):
		// Recorded already, as an ordinary message: one published retained
		// while otactl's session existed came first that way, and files
		// written before the index kept retained messages in Recent.
		return nil
	case d == nil && r.Kind == ReportInform:
		d = &Device{ProductKey: r.ProductKey, DeviceKey: r.DeviceKey, Version: r.Version,
			FirstSeen: env.now(), LastSeen: env.now()}
		if err := tx.PutDevice(d); err != nil {
			return err
		}
		return messageEvent(tx, r, env, "discovered", "retained version report: "+r.Version)
	}
	return messageEvent(tx, r, env, "retained", "retained message recorded, not acted on")
}
