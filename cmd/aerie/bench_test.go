package main_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/internal/mqttload"
	"github.com/aeriemq/aerie/internal/pgtest"
)

// brokerUnderTest is one broker the gateway benchmarks measure.
type brokerUnderTest struct {
	name string
	addr string
	pid  int
	cred func(int) (string, string)
}

// benchBrokers starts `aerie serve` (one instance, one device credential,
// on a plan the operator edited to have no rate quotas, so the broker and
// not a quota is measured) and Mosquitto (Debian package, password auth)
// on loopback.
func benchBrokers(b *testing.B) (aerie, mosq brokerUnderTest) {
	b.Helper()
	aerie = benchAerie(b)
	m, err := mqttload.StartMosquitto(context.Background(), b.TempDir(), mqttload.MosquittoOptions{Users: map[string]string{"dev": "secret-password-1"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Stop)
	mosq = brokerUnderTest{name: "mosquitto", addr: m.Addr, pid: m.Pid(),
		cred: func(int) (string, string) { return "dev", "secret-password-1" }}
	return aerie, mosq
}

// benchAerie starts the Aerie half of benchBrokers.
func benchAerie(b *testing.B) brokerUnderTest {
	b.Helper()
	// Per process: the clients here, and each broker (it inherits the limit).
	if err := mqttload.RaiseFileLimit(uint64(envInt("AERIE_BENCH_CONNS", 10000) + 1000)); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	dsn := pgtest.EmptyDSN(b)
	pt := freePorts(b)
	p := start(b, cleanEnv("DATABASE_URL="+dsn, "AERIE_LOG_LEVEL="+os.Getenv("AERIE_BENCH_LOG_LEVEL")), append([]string{"serve", "--data-dir", newDataDir(b)}, pt.args()...)...)
	waitReady(b, p, pt.http, 60*time.Second)

	// The operator lifts the rate quotas of the Enterprise plan.
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `UPDATE plans SET quotas = quotas || '{"max_connections":0,"max_connects_per_second":0,"max_publish_per_second":0,"max_publish_per_second_per_client":0,"max_bytes_per_second":0}'::jsonb WHERE id = 'enterprise'`); err != nil {
		b.Fatal(err)
	}
	c, org := signup(b, "http://"+pt.http, "bench@example.com")
	c.call(b, "PUT", "/v1/orgs/"+org+"/subscription", map[string]any{"plan": "enterprise"}, 200, nil)
	var inst instanceOut
	c.call(b, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "bench"}, 201, &inst)
	waitRunning(b, c, org, inst.ID)
	var cred credOut
	c.call(b, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials", map[string]any{"username": "dev"}, 201, &cred)
	time.Sleep(200 * time.Millisecond)
	return brokerUnderTest{name: "aerie", addr: pt.mqtt, pid: p.cmd.Process.Pid,
		cred: func(int) (string, string) { return cred.MQTTUsername, cred.Password }}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkGateway measures an Aerie node against Mosquitto in the same
// run: (a) resident memory per idle connection, (b) QoS 0 and QoS 1
// publish throughput with 10 publishers and one subscriber (100-byte
// payloads), (c) connects per second with password auth.
func BenchmarkGateway(b *testing.B) {
	aerie, mosq := benchBrokers(b)
	brokers := []brokerUnderTest{aerie, mosq}
	ctx := context.Background()

	b.Run("IdleMemory", func(b *testing.B) {
		n := envInt("AERIE_BENCH_CONNS", 10000)
		for range b.N {
			perConn := map[string]float64{}
			for _, br := range brokers {
				// Warm up (first allocations, pools) before the baseline.
				warm, err := mqttload.OpenIdle(ctx, br.addr, 100, 20, br.cred)
				if err != nil {
					b.Fatalf("%s: %v", br.name, err)
				}
				time.Sleep(time.Second)
				before, err := mqttload.RSS(br.pid)
				if err != nil {
					b.Fatal(err)
				}
				idle, err := mqttload.OpenIdle(ctx, br.addr, n, 50, br.cred)
				if err != nil {
					b.Fatalf("%s: %v", br.name, err)
				}
				time.Sleep(2 * time.Second)
				after, _ := mqttload.RSS(br.pid)
				perConn[br.name] = float64(after-before) / float64(n) / 1024
				idle.Close()
				warm.Close()
				time.Sleep(time.Second)
			}
			b.ReportMetric(perConn["aerie"], "aerie-KiB/conn")
			b.ReportMetric(perConn["mosquitto"], "mosquitto-KiB/conn")
			b.ReportMetric(perConn["aerie"]/max(perConn["mosquitto"], 0.001), "x-mosquitto")
		}
	})
	// QoS0/QoS1Throughput: 10 publishers → 1 subscriber (issue 5);
	// QoS1TenToTen: 10 → 10 with clean sessions (issue 9: nothing dropped).
	for _, run := range []struct {
		name      string
		qos       byte
		receivers int
	}{{"QoS0Throughput", 0, 1}, {"QoS1Throughput", 1, 1}, {"QoS1TenToTen", 1, 10}} {
		qos := run.qos
		b.Run(run.name, func(b *testing.B) {
			msgs := envInt("AERIE_BENCH_MESSAGES", 20000)
			for range b.N {
				rate := map[string]float64{}
				for _, br := range brokers {
					r, err := mqttload.Flow(ctx, br.addr, mqttload.FlowOptions{Publishers: 10, Subscribers: run.receivers, Messages: msgs,
						Payload: 100, QoS: qos, User: br.cred, Settle: 2 * time.Second})
					if err != nil {
						b.Fatalf("%s: %v", br.name, err)
					}
					b.Logf("%s QoS %d: %s", br.name, qos, r)
					if qos == 1 && r.Fraction < 1 && br.name == "aerie" {
						b.Errorf("%s lost QoS 1 messages: %s", br.name, r)
					}
					rate[br.name] = r.Rate
					b.ReportMetric(100*r.Fraction, br.name+"-%delivered")
				}
				b.ReportMetric(rate["aerie"], "aerie-msg/s")
				b.ReportMetric(rate["mosquitto"], "mosquitto-msg/s")
				b.ReportMetric(rate["aerie"]/max(rate["mosquitto"], 1), "x-mosquitto")
			}
		})
	}
	b.Run("ConnectRate", func(b *testing.B) {
		n := envInt("AERIE_BENCH_CONNECTS", 5000)
		for range b.N {
			rate := map[string]float64{}
			for _, br := range brokers {
				r, err := mqttload.ConnectRate(ctx, br.addr, n, 20, br.cred)
				if err != nil {
					b.Fatalf("%s: %v", br.name, err)
				}
				rate[br.name] = r
			}
			b.ReportMetric(rate["aerie"], "aerie-connects/s")
			b.ReportMetric(rate["mosquitto"], "mosquitto-connects/s")
			b.ReportMetric(rate["aerie"]/max(rate["mosquitto"], 1), "x-mosquitto")
		}
	})
}
