package transport

import (
	"strings"

	"github.com/otactl/otactl/ota"
)

// Topic suffixes after /sys/{pk}/{dk}/, one per message of the protocol.
const (
	SuffixInform       = "ota/device/inform"
	SuffixUpgrade      = "ota/device/upgrade"
	SuffixUpgradeReply = "ota/device/upgrade_reply"
	SuffixProgress     = "ota/device/progress"
	SuffixGetVersion   = "ota/device/getversion"
	replySuffix        = "_reply"
)

// Methods as otactl sends them; Parse also accepts the Python SDK's spellings.
const (
	MethodInform     = "ota.device.inform"
	MethodUpgrade    = "ota.device.upgrade"
	MethodProgress   = "ota.device.progress"
	MethodGetVersion = "ota.device.getversion"
)

// DeviceTopic builds /sys/{pk}/{dk}/{suffix}. The keys must have passed
// ota.ValidateKey: it is the caller's duty, and the reason it returns no error.
func DeviceTopic(pk, dk, suffix string) string {
	return "/sys/" + pk + "/" + dk + "/" + suffix
}

// ReplyTopic is the topic on which otactl answers a device request.
func ReplyTopic(requestTopic string) string { return requestTopic + replySuffix }

// Subscriptions are the topic filters otactl receives device messages on.
func Subscriptions() []string {
	return []string{
		"/sys/+/+/" + SuffixInform,
		"/sys/+/+/" + SuffixProgress,
		"/sys/+/+/" + SuffixUpgradeReply,
		"/sys/+/+/" + SuffixGetVersion,
	}
}

// SplitTopic parses /sys/{pk}/{dk}/{suffix} into its parts and validates both
// keys. kind is the report kind for the suffixes otactl receives.
func SplitTopic(topic string) (pk, dk string, kind ota.ReportKind, err error) {
	rest, ok := strings.CutPrefix(topic, "/sys/")
	if !ok {
		return "", "", "", ota.Invalid("topic %q does not start with /sys/", topic)
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) != 3 {
		return "", "", "", ota.Invalid("topic %q has no product key, device key and method", topic)
	}
	pk, dk = parts[0], parts[1]
	switch parts[2] {
	case SuffixInform:
		kind = ota.ReportInform
	case SuffixProgress:
		kind = ota.ReportProgress
	case SuffixUpgradeReply:
		kind = ota.ReportUpgradeReply
	case SuffixGetVersion:
		kind = ota.ReportGetVersion
	default:
		return "", "", "", ota.Invalid("topic %q is not a device report", topic)
	}
	if err := ota.ValidateKey("product key", pk); err != nil {
		return "", "", "", err
	}
	if err := ota.ValidateKey("device key", dk); err != nil {
		return "", "", "", err
	}
	return pk, dk, kind, nil
}
