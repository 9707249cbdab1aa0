"""Interoperability scenario for the Eclipse paho Python client (MQTT 5).

Usage: paho_v5.py HOST PORT TAG

Publish/subscribe with user properties (the client's receive loop must
survive the acknowledgements), a retained message, and a session resumed
with Clean Start 0 and no Session Expiry on the reconnect (its queued
messages must arrive). Prints OK and exits 0, or prints FAIL and exits 1.
"""
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST, PORT, TAG = sys.argv[1], int(sys.argv[2]), sys.argv[3]
TIMEOUT = 5.0


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


class Client:
    def __init__(self, cid):
        self.c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5)
        self.cv = threading.Condition()
        self.connack = None
        self.subacks = 0
        self.acked = set()
        self.msgs = []
        self.c.on_connect = self._connect
        self.c.on_subscribe = self._subscribe
        self.c.on_publish = self._publish
        self.c.on_message = self._message

    def _connect(self, c, userdata, flags, rc, props=None):
        with self.cv:
            self.connack = (flags.get("session present", 0), rc)
            self.cv.notify_all()

    def _subscribe(self, c, userdata, mid, codes, props=None):
        with self.cv:
            self.subacks += 1
            self.cv.notify_all()

    def _publish(self, c, userdata, mid):
        with self.cv:
            self.acked.add(mid)
            self.cv.notify_all()

    def _message(self, c, userdata, m):
        with self.cv:
            self.msgs.append(m)
            self.cv.notify_all()

    def wait(self, cond, what):
        with self.cv:
            if not self.cv.wait_for(cond, TIMEOUT):
                fail("timed out waiting for " + what)

    def connect(self, clean, expiry=None):
        props = None
        if expiry is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = expiry
        self.connack = None
        self.c.connect(HOST, PORT, keepalive=30, clean_start=clean, properties=props)
        self.c.loop_start()
        self.wait(lambda: self.connack is not None, "CONNACK")
        if self.connack[1] != 0:
            fail("CONNACK %s" % (self.connack[1],))
        return self.connack[0]

    def subscribe(self, topic, qos=1):
        n = self.subacks
        self.c.subscribe(topic, qos)
        self.wait(lambda: self.subacks > n, "SUBACK")

    def publish(self, topic, payload, qos=1, retain=False, user=None):
        props = None
        if user:
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = user
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=props)
        self.wait(lambda: info.mid in self.acked, "the acknowledgement of " + topic)

    def disconnect(self):
        self.c.disconnect()
        self.c.loop_stop()

    def alive(self):
        return self.c._thread is not None and self.c._thread.is_alive()


base = "interop/py/" + TAG
pub = Client("py-pub-" + TAG)
sub = Client("py-sub-" + TAG)
pub.connect(True)
if sub.connect(True, expiry=300):
    fail("session present on a clean start")
sub.subscribe(base + "/#", 1)

# user properties, QoS 1 and 2: the acknowledgements must be well-formed
# or paho's receive loop dies ("wrong length")
pairs = [("trace", "a1"), ("k", "v"), ("trace", "a2")]
pub.publish(base + "/up1", "one", qos=1, user=pairs)
pub.publish(base + "/up2", "two", qos=2, user=pairs)
sub.wait(lambda: len(sub.msgs) >= 2, "the messages with user properties")
for m in sub.msgs[:2]:
    got = [tuple(p) for p in getattr(m.properties, "UserProperty", [])]
    if got != pairs:
        fail("user properties %r, want %r" % (got, pairs))
if not pub.alive():
    fail("the publisher's receive loop died")

# retained
pub.publish(base + "/ret", "kept", qos=1, retain=True)
late = Client("py-late-" + TAG)
late.connect(True)
late.subscribe(base + "/ret", 1)
late.wait(lambda: len(late.msgs) >= 1, "the retained message")
if late.msgs[0].payload != b"kept" or not late.msgs[0].retain:
    fail("retained message %r retain=%r" % (late.msgs[0].payload, late.msgs[0].retain))
pub.publish(base + "/ret", "", qos=1, retain=True)
late.disconnect()

# session resume: Clean Start 0 and no Session Expiry on the reconnect
sub.disconnect()
time.sleep(0.3)
seen = len(sub.msgs)
pub.publish(base + "/q", "queued-1", qos=1)
pub.publish(base + "/q", "queued-2", qos=2, user=[("k", "v")])
if not sub.connect(False):
    fail("session present 0 on the resume")
queued = lambda: [m.payload.decode() for m in sub.msgs[seen:] if m.topic == base + "/q"]
sub.wait(lambda: len(queued()) >= 2, "the queued messages")
got = sorted(queued())
if got != ["queued-1", "queued-2"]:
    fail("queued messages %r" % (got,))
pub.publish(base + "/live", "after", qos=1)
sub.wait(lambda: any(m.payload == b"after" for m in sub.msgs), "a message on the resumed subscription")
if not pub.alive() or not sub.alive():
    fail("a receive loop died")
sub.disconnect()
pub.disconnect()
print("OK", flush=True)
