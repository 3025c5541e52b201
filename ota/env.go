package ota

import "time"

// Env is what the rules need from outside a transaction: the time on
// otactl's clock and where devices fetch a firmware's image.
type Env struct {
	Now     time.Time
	FileURL func(*Firmware) string
}

func (e Env) now() time.Time { return e.Now.UTC() }
