package cmd

import (
	"github.com/spf13/cobra"

	"github.com/otactl/otactl/ota"
)

func newHistoryCmd(app *App) *cobra.Command {
	var subject string
	var limit int
	c := &cobra.Command{
		Use:   "history [--subject <subject>] [--limit <n>]",
		Short: "Show the append-only history of changes and device messages",
		Long: `Show what otactl recorded, oldest first: every change to a firmware, round,
task, job or device, with otactl's receive time and the raw device message
that caused it, and the device messages it rejected. --subject narrows it to
one record ("firmware/fw-1", "job/job-7", "device/pk1/d1", "message" for
rejected messages); a subject ending in "/" takes every subject under it.`,
		Example: `  $ otactl history --subject job/job-3
  $ otactl history --subject device/pk1/ --limit 0 --json`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			if limit < 0 {
				return ota.Invalid("--limit %d must not be negative", limit)
			}
			var events []*ota.Event
			_, err := app.view(func(tx ota.Tx) error {
				return tx.EachEvent(subject, func(e *ota.Event) error {
					events = append(events, e)
					if limit > 0 && len(events) > 2*limit {
						events = append(events[:0], events[len(events)-limit:]...)
					}
					return nil
				})
			})
			if err != nil {
				return err
			}
			if limit > 0 && len(events) > limit {
				events = events[len(events)-limit:]
			}
			if app.Settings.JSON {
				if events == nil {
					events = []*ota.Event{}
				}
				return writeJSON(app.IO.Out, events)
			}
			t := table{header: []string{"TIME", "SUBJECT", "ACTION", "DETAIL", "PAYLOAD"}}
			for _, e := range events {
				t.add(timeCell(e.Time, app.IO.OutTTY, app.Now()), e.Subject, e.Action, e.Detail, e.Payload)
			}
			return t.render(app.IO.Out, app.IO.OutTTY)
		},
	}
	c.Flags().StringVar(&subject, "subject", "", "only this subject, or every subject under one ending in /")
	c.Flags().IntVar(&limit, "limit", 50, "show the newest n events (0: all)")
	return c
}
