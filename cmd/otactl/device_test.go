package main

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/otactl/otactl/transport"
)

var deviceMsgID atomic.Int64

// cmdDevice speaks for one device, publishing exactly one message through
// the script's broker, so that scripts can replay reported field cases
// message by message:
//
//	device [-retain] <pk> <dk> inform <version>
//	device [-retain] <pk> <dk> progress <step> [jobId]
//	device publish <topic> <payload>
//	device repeat <topic> <count> <text> [<count> <text>...]
//	device ask <pk> <dk>     (getversion; prints the reply)
//
// repeat publishes each text repeated count times, one after the other, for
// payloads too large to write into a script (20,000,000 bytes, JSON nested
// 100,000 deep).
func cmdDevice(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("device does not take !")
	}
	if len(args) == 3 && args[0] == "ask" {
		deviceAsk(ts, args[1], args[2])
		return
	}
	retain := len(args) > 0 && args[0] == "-retain"
	if retain {
		args = args[1:]
	}
	topic, payload, err := deviceMessage(args)
	if err != nil {
		ts.Fatalf("%v", err)
	}
	c := deviceClient(ts)
	defer c.Disconnect(50)
	tok := c.Publish(topic, 1, retain, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		ts.Fatalf("device: publish to %s: %v", topic, tok.Error())
	}
}

// deviceAsk sends a getversion request as the device and prints otactl's
// reply.
func deviceAsk(ts *testscript.TestScript, pk, dk string) {
	c := deviceClient(ts)
	defer c.Disconnect(50)
	replies := make(chan []byte, 1)
	topic := transport.DeviceTopic(pk, dk, transport.SuffixGetVersion)
	tok := c.Subscribe(transport.ReplyTopic(topic), 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case replies <- m.Payload():
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		ts.Fatalf("device ask: subscribe: %v", tok.Error())
	}
	id := fmt.Sprint(deviceMsgID.Add(1))
	pub := c.Publish(topic, 1, false, transport.EncodeRequest(id, transport.MethodGetVersion, nil))
	if !pub.WaitTimeout(10*time.Second) || pub.Error() != nil {
		ts.Fatalf("device ask: publish: %v", pub.Error())
	}
	select {
	case b := <-replies:
		fmt.Fprintf(ts.Stdout(), "%s\n", b)
	case <-time.After(20 * time.Second):
		ts.Fatalf("device ask: no reply on %s within 20s", transport.ReplyTopic(topic))
	}
}

func deviceClient(ts *testscript.TestScript) mqtt.Client {
	opts := mqtt.NewClientOptions().AddBroker(ts.Getenv("OTACTL_BROKER")).
		SetClientID(fmt.Sprintf("script-device-%d", time.Now().UnixNano()%1e9)).
		SetCleanSession(true).SetConnectTimeout(5 * time.Second)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		ts.Fatalf("device: connect to %s: %v", ts.Getenv("OTACTL_BROKER"), tok.Error())
	}
	return c
}

func deviceMessage(args []string) (topic string, payload []byte, err error) {
	usage := fmt.Errorf("usage: device [-retain] <pk> <dk> inform <v> | progress <step> [jobId]" +
		" | device publish <topic> <payload> | device repeat <topic> <count> <text>...")
	if len(args) == 3 && args[0] == "publish" {
		return args[1], []byte(args[2]), nil
	}
	if len(args) >= 4 && len(args)%2 == 0 && args[0] == "repeat" {
		return repeated(args[1], args[2:])
	}
	if len(args) < 4 {
		return "", nil, usage
	}
	pk, dk, kind := args[0], args[1], args[2]
	id := fmt.Sprint(deviceMsgID.Add(1))
	switch {
	case kind == "inform" && len(args) == 4:
		return transport.DeviceTopic(pk, dk, transport.SuffixInform),
			transport.EncodeRequest(id, transport.MethodInform, map[string]string{"version": args[3]}), nil
	case kind == "progress" && (len(args) == 4 || len(args) == 5):
		params := map[string]string{"step": args[3], "desc": "step " + args[3]}
		if len(args) == 5 {
			params["jobId"] = args[4]
		}
		return transport.DeviceTopic(pk, dk, transport.SuffixProgress),
			transport.EncodeRequest(id, transport.MethodProgress, params), nil
	}
	return "", nil, fmt.Errorf("%w (got %s)", usage, strings.Join(args, " "))
}

// repeated builds the payload of device repeat from count and text pairs.
func repeated(topic string, pairs []string) (string, []byte, error) {
	var b strings.Builder
	for i := 0; i < len(pairs); i += 2 {
		n, err := strconv.Atoi(pairs[i])
		if err != nil || n < 0 {
			return "", nil, fmt.Errorf("device repeat: count %q is not a number", pairs[i])
		}
		b.WriteString(strings.Repeat(pairs[i+1], n))
	}
	return topic, []byte(b.String()), nil
}
