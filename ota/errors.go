package ota

import (
	"errors"
	"fmt"
)

// Kind classifies an error by what the user can do about it. Each kind maps
// to one exit code (see docs/exit-codes.md); the mapping lives in cmd.
type Kind int

// The error kinds, in the order of their exit codes.
const (
	KindInternal    Kind = iota // 1: a bug or an unexpected failure
	KindInvalid                 // 2: bad usage or invalid input
	KindRefused                 // 3: refused by a rule
	KindState                   // 4: state file busy or unusable
	KindBroker                  // 5: broker unreachable or refused the session
	KindJobsFailed              // 6: waited, and some jobs failed
	KindWaitTimeout             // 7: waited, and the timeout passed
	KindNoVersions              // 8: no device of the product reported a version
)

// String returns the kind's stable name, used as the "code" of JSON errors.
func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindRefused:
		return "refused"
	case KindState:
		return "state"
	case KindBroker:
		return "broker"
	case KindJobsFailed:
		return "jobs-failed"
	case KindWaitTimeout:
		return "timeout"
	case KindNoVersions:
		return "no-versions"
	default:
		return "internal"
	}
}

// Error is an error with a Kind and an optional hint for the user.
type Error struct {
	Kind Kind
	Msg  string
	Hint string // a corrected command or next step, printed as "hint: ..."
	Err  error  // the underlying cause, if any
}

// Error returns the message, which already includes the cause's text when
// the error was made with a %w verb.
func (e *Error) Error() string { return e.Msg }

func (e *Error) Unwrap() error { return e.Err }

// WithHint returns e with its hint set.
func (e *Error) WithHint(format string, args ...any) *Error {
	e.Hint = fmt.Sprintf(format, args...)
	return e
}

// Errorf returns an *Error of kind k with a formatted message. A %w verb
// wraps its argument as the cause.
func Errorf(k Kind, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: k, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// Invalid returns an error of KindInvalid.
func Invalid(format string, args ...any) *Error { return Errorf(KindInvalid, format, args...) }

// Refused returns an error of KindRefused.
func Refused(format string, args ...any) *Error { return Errorf(KindRefused, format, args...) }

// KindOf returns the kind of the first *Error in err's chain, KindInternal
// when there is none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// HintOf returns the hint of the first *Error in err's chain that has one.
func HintOf(err error) string {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return ""
		}
		if e.Hint != "" {
			return e.Hint
		}
		err = e.Err
	}
	return ""
}

// errStop ends an Each* iteration early; it never leaves the package.
var errStop = errors.New("stop iteration")
