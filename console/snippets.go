package console

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/aeriemq/aerie/tenancy"
)

// Snippets are copy-paste client examples for an instance.
type Snippets struct {
	Host, Port   string
	TLS          bool
	Username     string // the MQTT username: <user>@<instance>
	Password     string
	WSURL        string
	Mosquitto    string
	Python       string
	Go           string
	JS           string
	HasEndpoints bool
	// RateNote says what the instance's rate quotas are and what a client
	// that exceeds them sees.
	RateNote string
}

// rateNote describes an instance's rate quotas as its devices meet them.
func rateNote(q tenancy.Quotas) string {
	var per []string
	if q.MaxPublishPerSecondPerClient > 0 {
		per = append(per, fmt.Sprintf("%d publishes a second per client", q.MaxPublishPerSecondPerClient))
	}
	if q.MaxPublishPerSecond > 0 {
		per = append(per, fmt.Sprintf("%d a second for the whole instance", q.MaxPublishPerSecond))
	}
	if q.MaxBytesPerSecond > 0 {
		per = append(per, formatNumber(float64(q.MaxBytesPerSecond))+" bytes of payload a second")
	}
	hold := q.MaxThrottleSeconds
	if hold <= 0 {
		hold = 30
	}
	limits := "no publish rate limit"
	if len(per) > 0 {
		limits = "up to " + strings.Join(per, ", ")
	}
	return fmt.Sprintf("This instance accepts %s (a second's worth may come at once). "+
		"A client that publishes faster is slowed down, not refused: the broker reads its connection more slowly, "+
		"so its publish calls (and the PUBACKs of QoS 1/2) take longer, and nothing it sent is dropped. "+
		"A client held back for more than %d s in a row is disconnected: MQTT 5 clients get DISCONNECT with reason 0x96 "+
		"(message rate too high), MQTT 3.1.1 connections are closed.", limits, hold)
}

// endpointHostPort splits an endpoint URL ("mqtt://host:1883").
func endpointHostPort(raw string) (host, port string, ok bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return "", "", false
	}
	port = u.Port()
	if port == "" {
		port = map[string]string{"mqtt": "1883", "mqtts": "8883", "ws": "80", "wss": "443"}[u.Scheme]
	}
	return u.Hostname(), port, true
}

// snippetsFor is the copy-paste examples for a credential of in.
func snippetsFor(in tenancy.Instance, user, password string) Snippets {
	s := Snippets{Username: mqttUsername(user, in.ID), Password: password, RateNote: rateNote(in.Quotas)}
	// Plain MQTT first when the node serves it: a development node's TLS
	// certificate is self-signed, so a TLS snippet would not work as is.
	for _, key := range []string{"mqtt", "mqtts"} {
		if h, p, ok := endpointHostPort(in.Endpoints[key]); ok {
			s.Host, s.Port, s.TLS, s.HasEndpoints = h, p, key == "mqtts", true
			break
		}
	}
	for _, key := range []string{"ws", "wss"} {
		if v := in.Endpoints[key]; v != "" {
			s.WSURL = v
			break
		}
	}
	if !s.HasEndpoints {
		s.Host, s.Port = "<host>", "1883"
	}
	tlsFlag, scheme, pyTLS := "", "tcp", ""
	if s.TLS {
		tlsFlag, scheme, pyTLS = " --capath /etc/ssl/certs", "ssl", "client.tls_set()\n"
	}
	s.Mosquitto = mosquittoSnippet(s, tlsFlag)
	s.Python = pythonSnippet(s, pyTLS)
	s.Go = goSnippet(s, scheme)
	s.JS = jsSnippet(s)
	return s
}

// mosquittoSnippet is the mosquitto_sub/mosquitto_pub example.
func mosquittoSnippet(s Snippets, tlsFlag string) string {
	q, password := shellQuote, s.Password
	return fmt.Sprintf(`# receive (MQTT 5)
mosquitto_sub -V mqttv5 -h %s -p %s%s \
  -u %s -P %s \
  -i my-subscriber -t 'test/#' -v

# send
mosquitto_pub -V mqttv5 -h %s -p %s%s \
  -u %s -P %s \
  -i my-publisher -t test/hello -m 'hello'`,
		s.Host, s.Port, tlsFlag, q(s.Username), q(password), s.Host, s.Port, tlsFlag, q(s.Username), q(password))
}

// pythonSnippet is the paho-mqtt (Python) example.
func pythonSnippet(s Snippets, pyTLS string) string {
	password := s.Password
	return fmt.Sprintf(`# pip install paho-mqtt
import paho.mqtt.client as mqtt

def on_connect(client, userdata, flags, reason_code, properties):
    print("connected:", reason_code)
    client.subscribe("test/#")
    client.publish("test/hello", "hello")

def on_message(client, userdata, msg):
    print(msg.topic, msg.payload.decode())

client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="my-device", protocol=mqtt.MQTTv5)
client.username_pw_set(%s, %s)
%sclient.on_connect = on_connect
client.on_message = on_message
client.connect(%s, %s)
client.loop_forever()`, strconv.Quote(s.Username), strconv.Quote(password), pyTLS, strconv.Quote(s.Host), s.Port)
}

// goSnippet is the paho.mqtt.golang example.
func goSnippet(s Snippets, scheme string) string {
	password := s.Password
	return fmt.Sprintf(`// go get github.com/eclipse/paho.mqtt.golang
package main

import (
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func main() {
	opts := mqtt.NewClientOptions().
		AddBroker(%s).
		SetClientID("my-device").
		SetUsername(%s).
		SetPassword(%s)
	c := mqtt.NewClient(opts)
	if t := c.Connect(); t.Wait() && t.Error() != nil {
		panic(t.Error())
	}
	c.Subscribe("test/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		fmt.Printf("%%s %%s\n", m.Topic(), m.Payload())
	}).Wait()
	c.Publish("test/hello", 1, false, "hello").Wait()
	time.Sleep(time.Second)
	c.Disconnect(250)
}`, strconv.Quote(scheme+"://"+s.Host+":"+s.Port), strconv.Quote(s.Username), strconv.Quote(password))
}

// jsSnippet is the MQTT.js example (WebSocket when the instance has one).
func jsSnippet(s Snippets) string {
	password := s.Password
	jsURL := s.WSURL
	if jsURL == "" {
		jsURL = map[bool]string{true: "mqtts", false: "mqtt"}[s.TLS] + "://" + s.Host + ":" + s.Port
	}
	return fmt.Sprintf(`// npm install mqtt
const mqtt = require("mqtt");

const client = mqtt.connect(%s, {
  username: %s,
  password: %s,
  clientId: "my-device",
  protocolVersion: 5,
});
client.on("connect", () => {
  client.subscribe("test/#");
  client.publish("test/hello", "hello");
});
client.on("message", (topic, payload) => console.log(topic, payload.toString()));`,
		strconv.Quote(jsURL), strconv.Quote(s.Username), strconv.Quote(password))
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// endpointList is the instance's endpoints in a stable order.
func endpointList(m map[string]string) [][2]string {
	order := map[string]int{"mqtt": 0, "mqtts": 1, "ws": 2, "wss": 3}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		oi, iok := order[keys[i]]
		oj, jok := order[keys[j]]
		if iok != jok {
			return iok
		}
		if oi != oj {
			return oi < oj
		}
		return keys[i] < keys[j]
	})
	out := make([][2]string, len(keys))
	for i, k := range keys {
		out[i] = [2]string{k, m[k]}
	}
	return out
}
