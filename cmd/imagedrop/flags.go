package main

import (
	"flag"
	"fmt"
	"strings"
)

// envPrefix starts the environment twin of every flag:
// --containerd-address ↔ IMAGEDROP_CONTAINERD_ADDRESS.
const envPrefix = "IMAGEDROP_"

// envName is the environment twin of a flag name.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag of fs that has its environment twin set. It runs
// before fs.Parse, so the command line wins over the environment.
func applyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		v, ok := lookup(envName(f.Name))
		if !ok || err != nil {
			return
		}
		if l, isList := f.Value.(*listFlag); isList {
			err = l.setFromEnv(v)
		} else {
			err = f.Value.Set(v)
		}
		if err != nil {
			err = fmt.Errorf("invalid value %q for %s (--%s): %w", v, envName(f.Name), f.Name, err)
		}
	})
	return err
}

// listFlag is a repeatable flag; its environment twin is comma-separated.
// Values from the environment replace the default, and values given on the
// command line replace both. A twin that holds no values leaves the default.
type listFlag struct {
	values *[]string
	given  bool // a value was given on the command line
}

func newListFlag(p *[]string) *listFlag { return &listFlag{values: p} }

func (l *listFlag) String() string {
	if l == nil || l.values == nil {
		return ""
	}
	return strings.Join(*l.values, ",")
}

func (l *listFlag) Set(v string) error {
	if v == "" {
		return fmt.Errorf("empty value")
	}
	if !l.given {
		*l.values, l.given = nil, true
	}
	*l.values = append(*l.values, v)
	return nil
}

func (l *listFlag) setFromEnv(v string) error {
	var values []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			values = append(values, s)
		}
	}
	if len(values) > 0 {
		*l.values = values
	}
	return nil
}

// usageError is a mistake in how the command was called; it exits 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// parseFlags applies the environment (as lookupEnv reads it), then args, to
// fs.
func parseFlags(fs *flag.FlagSet, args []string, lookupEnv func(string) (string, bool)) error {
	if err := applyEnv(fs, lookupEnv); err != nil {
		return usageError{err}
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	return nil
}
