package main

import (
	"flag"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Taint policies: what happens to the startup taint while files present at
// start fail.
const (
	taintKeep        = "keep"         // kept until they succeed; the condition and an Event say why
	taintRemoveAfter = "remove-after" // removed --taint-timeout after start, whatever happened
)

// nodeConfig is what imagedrop maintains on its own Node when --node-name is
// given.
type nodeConfig struct {
	kube           kubeConfig
	taint          string // key[=value]:Effect, "" off
	taintPolicy    string
	taintTimeout   time.Duration
	condition      string
	label          string // key=value, "" off
	statusInterval time.Duration
	eventBurst     int
	eventRate      float64 // Events per minute once the burst is spent
}

func (c *nodeConfig) register(fs *flag.FlagSet) {
	c.kube.register(fs)
	fs.StringVar(&c.taint, "startup-taint", "imagedrop.io/preloading:NoSchedule", "taint (key[=value]:Effect) removed from the node once the startup preload completed (empty: none)")
	fs.StringVar(&c.taintPolicy, "taint-policy", taintKeep, "while files present at start fail: keep the startup taint, or remove-after --taint-timeout")
	fs.DurationVar(&c.taintTimeout, "taint-timeout", 30*time.Minute, "with --taint-policy remove-after: time after start when the startup taint goes, preload complete or not")
	fs.StringVar(&c.condition, "node-condition", "ImagesPreloaded", "type of the Node condition that tells the preload's progress")
	fs.StringVar(&c.label, "node-label", "", "label (key=value) set on the node once the startup preload completed (empty: none)")
	fs.DurationVar(&c.statusInterval, "node-status-interval", time.Minute, "most often the condition is updated when only its message or heartbeat changes; also the longest retry delay after an API error")
	fs.IntVar(&c.eventBurst, "event-burst", 25, "Events about the node sent at once before --event-rate applies")
	fs.Float64Var(&c.eventRate, "event-rate", 0.2, "Events about the node per minute once --event-burst is spent (similar ones are aggregated)")
}

func (c *nodeConfig) enabled() bool { return c.kube.nodeName != "" }

func (c *nodeConfig) validate() error {
	if err := c.kube.validate(); err != nil {
		return err
	}
	if _, err := c.startupTaint(); err != nil {
		return err
	}
	if _, _, err := c.nodeLabel(); err != nil {
		return err
	}
	if errs := validation.IsQualifiedName(c.condition); len(errs) > 0 {
		return fmt.Errorf("--node-condition %q: %s", c.condition, strings.Join(errs, "; "))
	}
	switch {
	case c.taintPolicy != taintKeep && c.taintPolicy != taintRemoveAfter:
		return fmt.Errorf("--taint-policy %q: want %s or %s", c.taintPolicy, taintKeep, taintRemoveAfter)
	case c.taintTimeout <= 0:
		return fmt.Errorf("--taint-timeout %s: must be positive", c.taintTimeout)
	case c.statusInterval < time.Second:
		return fmt.Errorf("--node-status-interval %s: must be at least 1s", c.statusInterval)
	case c.eventBurst < 1:
		return fmt.Errorf("--event-burst %d: must be at least 1", c.eventBurst)
	case c.eventRate <= 0:
		return fmt.Errorf("--event-rate %g: must be positive", c.eventRate)
	}
	return nil
}

// startupTaint parses --startup-taint; nil when it is empty.
func (c *nodeConfig) startupTaint() (*corev1.Taint, error) {
	if c.taint == "" {
		return nil, nil
	}
	kv, effect, ok := strings.Cut(c.taint, ":")
	key, value, _ := strings.Cut(kv, "=")
	t := &corev1.Taint{Key: key, Value: value, Effect: corev1.TaintEffect(effect)}
	switch {
	case !ok:
		return nil, fmt.Errorf("--startup-taint %q: want key[=value]:Effect", c.taint)
	case len(validation.IsQualifiedName(key)) > 0:
		return nil, fmt.Errorf("--startup-taint %q: bad key %q", c.taint, key)
	case len(validation.IsValidLabelValue(value)) > 0:
		return nil, fmt.Errorf("--startup-taint %q: bad value %q", c.taint, value)
	case t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectPreferNoSchedule && t.Effect != corev1.TaintEffectNoExecute:
		return nil, fmt.Errorf("--startup-taint %q: effect %q, want NoSchedule, PreferNoSchedule or NoExecute", c.taint, effect)
	}
	return t, nil
}

// nodeLabel parses --node-label; "" when it is empty.
func (c *nodeConfig) nodeLabel() (key, value string, err error) {
	if c.label == "" {
		return "", "", nil
	}
	key, value, ok := strings.Cut(c.label, "=")
	if !ok || len(validation.IsQualifiedName(key)) > 0 || len(validation.IsValidLabelValue(value)) > 0 {
		return "", "", fmt.Errorf("--node-label %q: want key=value, a valid label key and value", c.label)
	}
	return key, value, nil
}
