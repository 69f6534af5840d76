package mqttbridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// clientConfig builds the autopaho configuration of the bridge.
func (b *Bridge) clientConfig() autopaho.ClientConfig {
	c := &b.cfg
	u, _ := url.Parse(c.URL) // checked by New
	keepAlive := uint16(c.KeepAlive / time.Second)
	expiry := uint32(c.SessionExpiry / time.Second)
	maxPacket := uint32(c.MaxPayload)
	recvMax := uint16(c.ReceiveMaximum)
	cc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        c.TLS,
		KeepAlive:                     keepAlive,
		CleanStartOnInitialConnection: true,
		SessionExpiryInterval:         expiry,
		ReconnectBackoff:              backoff(c.ReconnectMin, c.ReconnectMax),
		ConnectTimeout:                c.ConnectTimeout,
		ConnectUsername:               c.Username,
		ConnectPassword:               []byte(c.Password),
		OnConnectionUp:                b.onConnectionUp,
		OnConnectionDown:              b.onConnectionDown,
		OnConnectError:                b.onConnectError,
		Errors:                        pahoLogger{b.log, "autopaho"},
		PahoErrors:                    pahoLogger{b.log, "paho"},
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if cp.Properties == nil {
				cp.Properties = &paho.ConnectProperties{}
			}
			// paho's zero value would send Request Problem Information 0,
			// and some brokers (mochi-mqtt) then strip the user properties
			// of the PUBLISH packets too: correlation IDs would be lost.
			cp.Properties.RequestProblemInfo = true
			cp.Properties.MaximumPacketSize = &maxPacket
			if recvMax > 0 {
				cp.Properties.ReceiveMaximum = &recvMax
			}
			if expiry > 0 {
				cp.Properties.SessionExpiryInterval = &expiry
			}
			return cp, nil
		},
		DisconnectPacketBuilder: func() *paho.Disconnect {
			d := &paho.Disconnect{ReasonCode: 0}
			if expiry > 0 { // end the session now: nobody will resume it
				zero := uint32(0)
				d.Properties = &paho.DisconnectProperties{SessionExpiryInterval: &zero}
			}
			return d
		},
		ClientConfig: paho.ClientConfig{
			ClientID:          c.ClientID,
			PacketTimeout:     c.ConnectTimeout,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){b.onPublish},
			OnClientError:     b.onClientError,
			OnServerDisconnect: func(d *paho.Disconnect) {
				reason := ""
				if d.Properties != nil {
					reason = d.Properties.ReasonString
				}
				err := fmt.Errorf("%w: broker disconnected the bridge: reason code 0x%02x %s", ErrConnect, d.ReasonCode, reason)
				b.noteErr(err)
				b.log.Warn("mqttbridge: broker disconnected", slog.Int("reason_code", int(d.ReasonCode)), slog.String("reason", reason))
			},
		},
	}
	if c.Username == "" {
		cc.ConnectUsername, cc.ConnectPassword = "", nil
	}
	return cc
}

// backoff returns autopaho's wait before connection attempt n (0: none).
func backoff(lo, hi time.Duration) autopaho.Backoff {
	return func(n int) time.Duration {
		if n <= 0 {
			return 0
		}
		d := lo
		for i := 1; i < n && d < hi; i++ {
			d *= 2
		}
		d = min(d, hi)
		return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	}
}

func (b *Bridge) onConnectionUp(cm *autopaho.ConnectionManager, ca *paho.Connack) {
	b.mu.Lock()
	if b.state != stateRunning {
		b.mu.Unlock()
		return
	}
	b.connects++
	n := b.connects
	b.connected = true
	down := make(chan struct{})
	b.connDown = down
	b.subs.Add(1)
	b.mu.Unlock()
	b.log.Info("mqttbridge: connected", slog.String("url", redactURL(b.cfg.URL)), slog.String("client_id", b.cfg.ClientID),
		slog.Bool("session_present", ca.SessionPresent), slog.Uint64("connection", n))
	go func() { // owned by the bridge: Shutdown waits on b.subs
		defer b.subs.Done()
		b.subscribe(cm, down)
	}()
}

func (b *Bridge) onConnectionDown() bool {
	b.mu.Lock()
	running := b.state == stateRunning
	b.setDownLocked()
	b.mu.Unlock()
	if running {
		b.log.Warn("mqttbridge: connection lost; reconnecting")
	}
	return running
}

func (b *Bridge) onConnectError(err error) {
	b.connectErrors.Add(1)
	err = fmt.Errorf("%w: %w", ErrConnect, err)
	b.noteErr(err)
	if ok, n := b.connLog.allow(time.Now()); ok {
		b.log.Warn("mqttbridge: connection attempt failed", slog.Any("err", err), slog.Int("suppressed", n))
	}
}

func (b *Bridge) onClientError(err error) {
	b.mu.Lock()
	running := b.state == stateRunning
	b.mu.Unlock()
	if !running {
		return
	}
	err = fmt.Errorf("%w: connection error: %w", ErrConnect, err)
	b.noteErr(err)
	b.log.Warn("mqttbridge: connection error", slog.Any("err", err))
}

// subscribe subscribes every route on the connection that down belongs to,
// retrying with backoff until the broker accepts them all, the connection
// drops or the bridge stops.
func (b *Bridge) subscribe(cm *autopaho.ConnectionManager, down chan struct{}) {
	sub := &paho.Subscribe{}
	for i, f := range b.filters {
		sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{
			Topic: f,
			QoS:   b.subQoS[i],
			// Retained messages only for a new subscription, not each time a
			// resumed session is subscribed again.
			RetainHandling: 1,
		})
	}
	wait := backoff(b.cfg.ReconnectMin, b.cfg.ReconnectMax)
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.ConnectTimeout)
		sa, err := cm.Subscribe(ctx, sub)
		cancel()
		if sa != nil || err == nil {
			// paho's own error for refused subscriptions names none of them.
			if e := subackError(sa, b.filters); e != nil {
				err = e
			}
		}
		if err == nil {
			b.mu.Lock()
			if b.connDown == down && !b.subscribed {
				b.subscribed = true
				close(b.ready)
			}
			b.mu.Unlock()
			b.log.Info("mqttbridge: subscribed", slog.Any("filters", b.filters))
			if b.cmd != nil { // send what waited for the connection
				b.cmd.scheduleFlushAll()
			}
			return
		}
		select {
		case <-down:
			return
		case <-b.stopIntake:
			return
		default:
		}
		b.connectErrors.Add(1)
		err = fmt.Errorf("%w: subscribe: %w", ErrConnect, err)
		b.noteErr(err)
		b.log.Error("mqttbridge: subscribe failed; retrying", slog.Any("err", err), slog.Int("attempt", attempt))
		t := time.NewTimer(wait(attempt))
		select {
		case <-t.C:
		case <-down:
			t.Stop()
			return
		case <-b.stopIntake:
			t.Stop()
			return
		}
	}
}

// subackError returns an error naming each refused subscription.
func subackError(sa *paho.Suback, filters []string) error {
	if sa == nil {
		return errors.New("no SUBACK")
	}
	var errs []error
	for i, code := range sa.Reasons {
		if code >= 0x80 && i < len(filters) {
			errs = append(errs, fmt.Errorf("broker refused %q: reason code 0x%02x", filters[i], code))
		}
	}
	if len(sa.Reasons) != len(filters) {
		errs = append(errs, fmt.Errorf("SUBACK has %d reason codes for %d filters", len(sa.Reasons), len(filters)))
	}
	return errors.Join(errs...)
}

// redactURL removes the password from a URL for logging.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// pahoLogger sends the MQTT client's own error logs to slog at debug level:
// the bridge logs what matters (connections, subscriptions) itself.
type pahoLogger struct {
	log *slog.Logger
	src string
}

func (l pahoLogger) Println(v ...any) {
	l.log.Debug("mqttbridge: "+l.src+": "+fmt.Sprint(v...), slog.String("source", l.src))
}

func (l pahoLogger) Printf(format string, v ...any) {
	l.log.Debug("mqttbridge: "+l.src+": "+fmt.Sprintf(format, v...), slog.String("source", l.src))
}
