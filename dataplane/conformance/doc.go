// Package conformance holds Aerie's spec-indexed MQTT conformance suite
// (conformance_test.go and friends): raw-packet and client-library tests,
// each named by the normative statement of MQTT 3.1.1 or 5.0 it proves
// ("MQTT-3.1.3-8"), run against an Aerie node and against Mosquitto in the
// same run, so every test first shows it tells a right broker from a wrong
// one. Where Aerie deliberately differs (multi-tenant namespaces, $SYS), the
// test says so and asserts Aerie's documented behaviour.
package conformance
