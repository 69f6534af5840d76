package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// AlertRule is a threshold rule with hysteresis on one metric. Above: the
// alert opens when the value goes over Open and resolves only when it falls
// under Resolve (Resolve <= Open), so a value hovering around the threshold
// raises one alert, not one per reading. Below: the mirror image (opens
// under Open, resolves over Resolve).
type AlertRule struct {
	Metric  string
	Above   bool
	Open    float64
	Resolve float64
}

// String returns the rule in the syntax of ParseRules, e.g. "temperature>30<28".
func (r AlertRule) String() string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	if r.Above {
		return r.Metric + ">" + f(r.Open) + "<" + f(r.Resolve)
	}
	return r.Metric + "<" + f(r.Open) + ">" + f(r.Resolve)
}

func (r AlertRule) opens(v float64) bool {
	if r.Above {
		return v > r.Open
	}
	return v < r.Open
}

func (r AlertRule) resolves(v float64) bool {
	if r.Above {
		return v < r.Resolve
	}
	return v > r.Resolve
}

// rulesByMetric indexes rules by metric.
func rulesByMetric(rules []AlertRule) map[string]AlertRule {
	m := make(map[string]AlertRule, len(rules))
	for _, r := range rules {
		m[r.Metric] = r
	}
	return m
}

// defaultAlertRules is ALERT_RULES's default.
const defaultAlertRules = "temperature>30<28,humidity>75<70,co2>1200<1000"

var ruleRE = regexp.MustCompile(`^([a-z][a-z0-9_]{0,31})([<>])(-?[0-9.]+)([<>])(-?[0-9.]+)$`)

// ParseRules parses a comma-separated list of rules: "metric>open<resolve"
// for an upper limit (temperature>30<28: open over 30, resolve under 28) or
// "metric<open>resolve" for a lower one (battery<10>15). One rule per metric.
func ParseRules(s string) ([]AlertRule, error) {
	var out []AlertRule
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		m := ruleRE.FindStringSubmatch(part)
		if m == nil || m[2] == m[4] {
			return nil, fmt.Errorf("alert rule %q: want metric>open<resolve or metric<open>resolve", part)
		}
		open, err1 := strconv.ParseFloat(m[3], 64)
		res, err2 := strconv.ParseFloat(m[5], 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("alert rule %q: bad number", part)
		}
		r := AlertRule{Metric: m[1], Above: m[2] == ">", Open: open, Resolve: res}
		if (r.Above && res > open) || (!r.Above && res < open) {
			return nil, fmt.Errorf("alert rule %q: the resolve level must be on the safe side of the open level", part)
		}
		if seen[r.Metric] {
			return nil, fmt.Errorf("alert rule %q: a second rule for %s", part, r.Metric)
		}
		seen[r.Metric] = true
		out = append(out, r)
	}
	return out, nil
}

// AlertEngine evaluates the rules on every reading and keeps which alerts
// are open. It opens an alert in the store and publishes alert:new once
// when a rule fires, and resolves it and publishes alert:resolved once when
// the value is back past the resolve level. Open alerts are loaded from the
// store at start, so a restart neither repeats nor forgets them; with a
// shared PostgreSQL store, the store's one-open-alert-per-metric constraint
// keeps two nodes from opening the same alert twice.
//
// Evaluate is safe for concurrent use; readings of one device must be
// evaluated in order (the ingest route does, one message at a time).
type AlertEngine struct {
	rules   map[string]AlertRule
	store   Store
	publish func(ctx context.Context, ev string, a Alert)
	log     *slog.Logger

	mu   sync.Mutex
	open map[alertKey]Alert

	levels thresholds // per-device open levels (set_threshold)
}

type alertKey struct{ device, metric string }

// NewAlertEngine returns an engine for rules; publish is called for every
// alert opened ("alert:new") and resolved ("alert:resolved").
func NewAlertEngine(rules []AlertRule, store Store, publish func(ctx context.Context, ev string, a Alert), log *slog.Logger) *AlertEngine {
	e := &AlertEngine{rules: map[string]AlertRule{}, store: store, publish: publish, log: log, open: map[alertKey]Alert{}}
	for _, r := range rules {
		e.rules[r.Metric] = r
	}
	return e
}

// Load reads the open alerts from the store.
func (e *AlertEngine) Load(ctx context.Context) error {
	open, err := e.store.Alerts(ctx, true, 0)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range open {
		e.open[alertKey{a.Device, a.Metric}] = a
	}
	return nil
}

// Rules returns the rules, for the API.
func (e *AlertEngine) Rules() []AlertRule {
	out := make([]AlertRule, 0, len(e.rules))
	for _, r := range e.rules {
		out = append(out, r)
	}
	return out
}

// SetDeviceLevel sets the open level of device's rule for metric (the
// device acknowledged set_threshold); the resolve level moves with it. It
// reports false if there is no rule for the metric or too many levels are
// set already (maxThresholds).
func (e *AlertEngine) SetDeviceLevel(device, metric string, open float64) bool {
	if _, ok := e.rules[metric]; !ok {
		return false
	}
	return e.levels.set(device, metric, open)
}

// ruleFor returns the rule of device's metric: ALERT_RULES's, with the
// device's own open level if one was set.
func (e *AlertEngine) ruleFor(device, metric string) (AlertRule, bool) {
	r, ok := e.rules[metric]
	if !ok {
		return r, false
	}
	if v, ok := e.levels.get(device, metric); ok {
		r.Resolve, r.Open = v+(r.Resolve-r.Open), v
	}
	return r, true
}

// Evaluate checks a reading against the rules.
func (e *AlertEngine) Evaluate(ctx context.Context, r ReadingEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for metric, v := range r.Values {
		rule, ok := e.ruleFor(r.Device, metric)
		if !ok || math.IsNaN(v) {
			continue
		}
		k := alertKey{r.Device, metric}
		cur, isOpen := e.open[k]
		switch {
		case !isOpen && rule.opens(v):
			a, err := e.store.OpenAlert(ctx, Alert{Device: r.Device, Metric: metric, Rule: rule.String(),
				Threshold: rule.Open, Value: v, OpenedAt: r.At})
			if errors.Is(err, ErrAlertOpen) {
				// Another node opened it: adopt it, publish nothing.
				e.adopt(ctx, k)
				continue
			}
			if err != nil {
				e.log.WarnContext(ctx, "alerts: open", "device", r.Device, "metric", metric, "err", err)
				continue
			}
			e.log.InfoContext(ctx, "alerts: opened", "device", r.Device, "metric", metric, "value", v, "rule", rule.String())
			e.open[k] = a
			e.publish(ctx, AlertNew.Name(), a)
		case isOpen && rule.resolves(v):
			delete(e.open, k)
			a, err := e.store.ResolveAlert(ctx, cur.ID, r.At, v)
			if errors.Is(err, ErrNotFound) {
				continue // resolved elsewhere
			}
			if err != nil {
				e.open[k] = cur // try again with the next reading
				e.log.WarnContext(ctx, "alerts: resolve", "device", r.Device, "metric", metric, "err", err)
				continue
			}
			e.log.InfoContext(ctx, "alerts: resolved", "device", r.Device, "metric", metric, "value", v)
			e.publish(ctx, AlertResolved.Name(), a)
		}
	}
}

// adopt loads the open alert another node created for k.
func (e *AlertEngine) adopt(ctx context.Context, k alertKey) {
	open, err := e.store.Alerts(ctx, true, 0)
	if err != nil {
		return
	}
	for _, a := range open {
		if a.Device == k.device && a.Metric == k.metric {
			e.open[k] = a
		}
	}
}

// OpenCount returns the number of open alerts this engine knows of.
func (e *AlertEngine) OpenCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.open)
}
