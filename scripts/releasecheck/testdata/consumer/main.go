// Command consumer is the program scripts/release-check builds outside the
// repository, in a fresh module that has nothing but the released library
// modules (go get github.com/org/rthub@VERSION, .../redisbroker@VERSION, ...),
// and runs against the real Redis and MQTT broker: a hub on the Redis broker,
// an MQTT bridge route from a topic to a room, and a Go client in that room.
// A reading published over MQTT must reach the client as a typed event; if it
// does not within the deadline the program exits with status 1.
//
// It lives in testdata so that the go command of the repository's own modules
// never builds it: it imports every library module, which no module of the
// repository may do.
//
// Environment: RTHUB_REDIS_URL and RTHUB_MQTT_URL (as in .ci/run). Without
// them it says so and exits 0, unless RTHUB_REQUIRE_SERVICES=1.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
	"github.com/org/rthub/client"
	"github.com/org/rthub/mqttbridge"
	"github.com/org/rthub/otelrthub"
	"github.com/org/rthub/promrthub"
	"github.com/org/rthub/redisbroker"
	"github.com/prometheus/client_golang/prometheus"
)

// reading is the payload of sensor:data: the JSON the device sends plus the
// device variable of the topic (mqttbridge.JSONWithVars).
type reading struct {
	Celsius float64 `json:"celsius"`
	Device  string  `json:"device"`
}

var sensorData = rthub.NewEvent[reading]("sensor:data")

func main() {
	redisURL, mqttURL := os.Getenv("RTHUB_REDIS_URL"), os.Getenv("RTHUB_MQTT_URL")
	if redisURL == "" || mqttURL == "" {
		msg := "consumer: not run: set RTHUB_REDIS_URL and RTHUB_MQTT_URL (e.g. redis://127.0.0.1:6379/0 and tcp://127.0.0.1:1883, as .ci/run does)"
		if os.Getenv("RTHUB_REQUIRE_SERVICES") == "1" {
			fmt.Fprintln(os.Stderr, msg+", required by RTHUB_REQUIRE_SERVICES=1")
			os.Exit(1)
		}
		fmt.Println(msg)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := run(ctx, redisURL, mqttURL); err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, redisURL, mqttURL string) (err error) {
	id := randHex(8)
	secret := []byte(randHex(32))

	rb, err := redisbroker.New(redisbroker.Options{
		Shards: []redisbroker.Shard{{URL: redisURL}},
		Prefix: "rthub-release-check:" + id + ":",
	})
	if err != nil {
		return fmt.Errorf("redis broker: %w", err)
	}
	col := promrthub.New(promrthub.Options{})
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": secret}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {Join: []string{"device:*"}},
		}},
		Broker:       rb,
		OnRefused:    col.OnRefused(nil),
		OnDisconnect: col.OnDisconnect(nil),
	})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	col.SetHub(hub)

	// The hub behind an OpenTelemetry handler (global, no-op tracer), on
	// loopback. The server goroutine is waited for before run returns.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		hub.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", otelrthub.Handler(hub, otelrthub.Options{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if serr := hub.Shutdown(sctx); serr != nil && err == nil {
			err = fmt.Errorf("hub shutdown: %w", serr)
		}
		_ = srv.Shutdown(sctx)
		wg.Wait()
	}()

	// The bridge: <prefix>/sensors/{device}/reading → sensor:data in
	// device:{device}. Run owns its goroutines until bctx ends.
	topicPrefix := "rthub-release-check/" + id
	bridge, err := mqttbridge.New(hub, mqttbridge.Config{
		URL: mqttURL,
		Routes: []mqttbridge.Route{{
			Topic:  topicPrefix + "/sensors/{device}/reading",
			Event:  sensorData.Name(),
			Rooms:  []string{"device:{device}"},
			Decode: mqttbridge.JSONWithVars,
		}},
	})
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	bctx, bcancel := context.WithCancel(ctx)
	bridgeDone := make(chan error, 1)
	go func() { bridgeDone <- bridge.Run(bctx) }()
	defer func() {
		bcancel()
		if berr := <-bridgeDone; berr != nil && err == nil {
			err = fmt.Errorf("bridge: %w", berr)
		}
	}()
	for subDeadline := time.Now().Add(15 * time.Second); !bridge.Stats().Subscribed; {
		if ctx.Err() != nil || time.Now().After(subDeadline) {
			return fmt.Errorf("bridge not subscribed at %s within 15 s: %v", mqttURL, bridge.Stats().LastError)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The Go client, in device:7.
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "release-check", "roles": []string{"staff"}, "exp": time.Now().Add(5 * time.Minute).Unix(),
	}).SignedString(secret)
	if err != nil {
		return err
	}
	c, err := client.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", client.Options{Token: token, Rooms: []string{"device:7"}})
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer c.Close()
	got := make(chan string, 1)
	client.Handle(c, sensorData, func(room string, r reading) {
		select {
		case got <- fmt.Sprintf("%s %s %.1f", room, r.Device, r.Celsius):
		default:
		}
	})

	// A device publishes one reading over MQTT (paho, QoS 1).
	topic := topicPrefix + "/sensors/7/reading"
	start := time.Now()
	if err := publish(ctx, mqttURL, topic, `{"celsius":21.5}`); err != nil {
		return fmt.Errorf("mqtt publish: %w", err)
	}
	wait := time.NewTimer(15 * time.Second)
	defer wait.Stop()
	select {
	case s := <-got:
		if want := "device:7 7 21.5"; s != want {
			return fmt.Errorf("client got %q, want %q", s, want)
		}
	case <-wait.C:
		return fmt.Errorf("the reading published on %s did not reach the client within 15 s (bridge %+v)", topic, bridge.Stats())
	}

	// The Prometheus collector reads the hub.
	reg := prometheus.NewRegistry()
	if err := reg.Register(col); err != nil {
		return err
	}
	mfs, err := reg.Gather()
	if err != nil {
		return fmt.Errorf("prometheus: %w", err)
	}
	if len(mfs) == 0 || !strings.HasPrefix(mfs[0].GetName(), "rthub_") {
		return errors.New("prometheus: the collector exported no rthub_ metric")
	}
	fmt.Printf("consumer: MQTT %s → bridge → hub on Redis → Go client in device:7 in %v; %d rthub_* metric families\n",
		topic, time.Since(start).Round(time.Millisecond), len(mfs))
	return nil
}

// publish sends one QoS 1 message over a new MQTT 5 connection.
func publish(ctx context.Context, brokerURL, topic, payload string) error {
	u, err := url.Parse(brokerURL)
	if err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	pc := paho.NewClient(paho.ClientConfig{Conn: conn})
	if _, err := pc.Connect(ctx, &paho.Connect{ClientID: "rthub-release-check-" + randHex(6), KeepAlive: 30, CleanStart: true}); err != nil {
		conn.Close()
		return err
	}
	defer pc.Disconnect(&paho.Disconnect{ReasonCode: 0})
	_, err = pc.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	return err
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
