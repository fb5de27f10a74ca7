package main

import (
	"errors"
	"flag"
	"io"
	"reflect"
	"slices"
	"testing"
	"time"
)

// env is an environment for tests: lookupEnv reads it.
type env map[string]string

func (e env) lookup(name string) (string, bool) {
	v, ok := e[name]
	return v, ok
}

// flagCase is, for one flag, its default and two other values: one its
// environment twin sets and one the command line sets, each with what the
// flag then reads (Value.String()).
type flagCase struct {
	def          string
	env, wantEnv string
	arg, wantArg string
	commands     []string
}

var (
	both       = []string{"import", "watch"}
	watchOnly  = []string{"watch"}
	importOnly = []string{"import"}
	unpinOnly  = []string{"unpin"}
	// withUnpin: the flags unpin shares with import and watch.
	withUnpin = []string{"import", "watch", "unpin"}
	commands  = withUnpin
)

// flagCases has a case for every flag of every command;
// TestEveryFlagHasACase keeps it so.
var flagCases = map[string]flagCase{
	"containerd-address":      {"/run/containerd/containerd.sock", "/env.sock", "/env.sock", "/arg.sock", "/arg.sock", withUnpin},
	"namespace":               {"k8s.io", "env-ns", "env-ns", "arg-ns", "arg-ns", withUnpin},
	"extra-registry":          {"", "env.local, env2.local:5000,", "env.local,env2.local:5000", "arg.local", "arg.local", both},
	"pin":                     {"true", "false", "false", "true", "true", both},
	"unpack":                  {"true", "0", "false", "1", "true", both},
	"snapshotter":             {"overlayfs", "native", "native", "zfs", "zfs", both},
	"unpack-concurrency":      {"2", "4", "4", "1", "1", both},
	"platform":                {"", "linux/arm64", "linux/arm64", "linux/amd64", "linux/amd64", both},
	"zstd-max-window":         {"512MiB", "128Mi", "128MiB", "1GB", "1000000000B", both},
	"max-expansion":           {"100", "50", "50", "1000", "1000", both},
	"max-expansion-floor":     {"1GiB", "2Gi", "2GiB", "512MiB", "512MiB", both},
	"containerd-root":         {"/var/lib/containerd", "/env/containerd", "/env/containerd", "/arg/containerd", "/arg/containerd", both},
	"min-free-space":          {"15%", "20Gi", "20GiB", "12.5%", "12.5%", both},
	"max-json-size":           {"16MiB", "32Mi", "32MiB", "1MiB", "1MiB", both},
	"max-archive-entries":     {"100000", "5000", "5000", "200000", "200000", both},
	"pull-concurrency":        {"3", "5", "5", "7", "7", both},
	"pull-timeout":            {"30m0s", "90s", "1m30s", "2h", "2h0m0s", both},
	"pull-auth":               {"", "/env/config.json", "/env/config.json", "/arg/config.json", "/arg/config.json", both},
	"log-level":               {"info", "debug", "debug", "warn", "warn", both},
	"log-format":              {"text", "json", "json", "text", "text", both},
	"workers":                 {"2", "4", "4", "6", "6", both},
	"progress":                {"auto", "plain", "plain", "tty", "tty", importOnly},
	"images-dir":              {"/var/lib/imagedrop/images", "/env/a,/env/b", "/env/a,/env/b", "/arg", "/arg", watchOnly},
	"rescan-dir":              {"", "/env/nfs,/env/cephfs", "/env/nfs,/env/cephfs", "/arg/nfs", "/arg/nfs", watchOnly},
	"rescan-interval":         {"10s", "1m", "1m0s", "5s", "5s", watchOnly},
	"state-file":              {"/var/lib/imagedrop/state.json", "/env/state.json", "/env/state.json", "/arg/state.json", "/arg/state.json", watchOnly},
	"settle":                  {"1s", "2s", "2s", "500ms", "500ms", watchOnly},
	"retry-min":               {"5s", "1s", "1s", "3s", "3s", watchOnly},
	"retry-max":               {"10m0s", "1m", "1m0s", "1h", "1h0m0s", watchOnly},
	"shutdown-grace":          {"30s", "10s", "10s", "0s", "0s", watchOnly},
	"listen-address":          {":9365", "127.0.0.1:9000", "127.0.0.1:9000", ":0", ":0", watchOnly},
	"stall-timeout":           {"10m0s", "1h", "1h0m0s", "0s", "0s", watchOnly},
	"max-list-references":     {"1000", "20", "20", "30", "30", both},
	"max-list-size":           {"1MiB", "64Ki", "64KiB", "2Mi", "2MiB", both},
	"list-sample":             {"50", "10", "10", "5", "5", both},
	"max-error-length":        {"512", "256", "256", "1024", "1024", both},
	"shared-import-slots":     {"0", "2", "2", "1", "1", watchOnly},
	"node-name":               {"", "env-node", "env-node", "arg-node", "arg-node", watchOnly},
	"kubeconfig":              {"", "/env/kubeconfig", "/env/kubeconfig", "/arg/kubeconfig", "/arg/kubeconfig", []string{"watch", "unpin"}},
	"wait-daemonset":          {"", "env-ds", "env-ds", "arg-ds", "arg-ds", unpinOnly},
	"wait-namespace":          {"", "env-ns", "env-ns", "arg-ns", "arg-ns", unpinOnly},
	"wait-timeout":            {"5m0s", "1m", "1m0s", "30s", "30s", unpinOnly},
	"lease-namespace":         {"", "env-ns", "env-ns", "arg-ns", "arg-ns", watchOnly},
	"lease-duration":          {"30s", "1m", "1m0s", "5s", "5s", watchOnly},
	"verify":                  {"off", "checksum", "checksum", "signature", "signature", both},
	"verify-key":              {"", "/env/a.pub, /env/b.pub", "/env/a.pub,/env/b.pub", "/arg/c.pub", "/arg/c.pub", both},
	"verify-wait":             {"2m0s", "30s", "30s", "1h", "1h0m0s", both},
	"verify-max-sidecar-size": {"64KiB", "1Mi", "1MiB", "4KiB", "4KiB", both},
	"all":                     {"false", "true", "true", "false", "false", unpinOnly},
	"hold":                    {"false", "true", "true", "false", "false", unpinOnly},
	"source":                  {"", "env.tar", "env.tar", "arg.tar", "arg.tar", unpinOnly},
	"startup-taint":           {"imagedrop.io/preloading:NoSchedule", "a.io/b=c:NoExecute", "a.io/b=c:NoExecute", "", "", watchOnly},
	"taint-policy":            {"keep", "remove-after", "remove-after", "keep", "keep", watchOnly},
	"taint-timeout":           {"30m0s", "1h", "1h0m0s", "90s", "1m30s", watchOnly},
	"node-condition":          {"ImagesPreloaded", "EnvImages", "EnvImages", "ArgImages", "ArgImages", watchOnly},
	"node-label":              {"", "imagedrop.io/preloaded=true", "imagedrop.io/preloaded=true", "a=b", "a=b", watchOnly},
	"node-status-interval":    {"1m0s", "30s", "30s", "2m", "2m0s", watchOnly},
	"event-burst":             {"25", "10", "10", "50", "50", watchOnly},
	"event-rate":              {"0.2", "1", "1", "0.5", "0.5", watchOnly},
}

// commandFlags returns a command's flag set, bound to a fresh configuration.
func commandFlags(command string) *flag.FlagSet {
	var fs *flag.FlagSet
	switch command {
	case "import":
		fs = newImportFlags(&importConfig{}, io.Discard)
	case "watch":
		fs = newWatchFlags(&watchConfig{}, io.Discard)
	case "unpin":
		fs = newUnpinFlags(&unpinConfig{}, io.Discard)
	default:
		panic("no command " + command)
	}
	return fs
}

func TestEveryFlagHasACase(t *testing.T) {
	t.Parallel()
	for _, command := range commands {
		commandFlags(command).VisitAll(func(f *flag.Flag) {
			c, ok := flagCases[f.Name]
			if !ok {
				t.Errorf("%s --%s has no case in flagCases", command, f.Name)
				return
			}
			if !slices.Contains(c.commands, command) {
				t.Errorf("%s has --%s; flagCases says only %q", command, f.Name, c.commands)
			}
		})
	}
	for name, c := range flagCases {
		for _, command := range c.commands {
			if commandFlags(command).Lookup(name) == nil {
				t.Errorf("%s has no --%s, which flagCases lists", command, name)
			}
		}
	}
}

// TestFlagPlaceholders checks that no flag's help names its argument
// "value", the flag package's fallback: a backquoted word in the usage
// (`SIZE`, `FILE`) says what to give.
func TestFlagPlaceholders(t *testing.T) {
	t.Parallel()
	for _, command := range commands {
		commandFlags(command).VisitAll(func(f *flag.Flag) {
			if name, _ := flag.UnquoteUsage(f); name == "value" {
				t.Errorf("%s --%s shows its argument as %q", command, f.Name, name)
			}
		})
	}
}

// TestFlagPrecedence checks, for every flag of every command, that the flag
// beats its IMAGEDROP_* twin, which beats the default.
func TestFlagPrecedence(t *testing.T) {
	t.Parallel()
	for name, c := range flagCases {
		for _, command := range c.commands {
			for _, tt := range []struct {
				source string
				env    env
				args   []string
				want   string
			}{
				{"default", nil, nil, c.def},
				{"env", env{envName(name): c.env}, nil, c.wantEnv},
				{"flag", nil, []string{"--" + name + "=" + c.arg}, c.wantArg},
				{"flag over env", env{envName(name): c.env}, []string{"--" + name + "=" + c.arg}, c.wantArg},
				{"other flag's env", env{envName("other-" + name): c.env, "IMAGEDROP_TEST_CONTAINERD": "x"}, nil, c.def},
			} {
				t.Run(command+"/"+name+"/"+tt.source, func(t *testing.T) {
					t.Parallel()
					fs := commandFlags(command)
					if err := parseFlags(fs, tt.args, tt.env.lookup); err != nil {
						t.Fatalf("parseFlags(%q, %v) = %v", tt.args, tt.env, err)
					}
					if got := fs.Lookup(name).Value.String(); got != tt.want {
						t.Errorf("--%s after env %v, args %q = %q; want %q", name, tt.env, tt.args, got, tt.want)
					}
				})
			}
		}
	}
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ flag, want string }{
		{"containerd-address", "IMAGEDROP_CONTAINERD_ADDRESS"},
		{"pin", "IMAGEDROP_PIN"},
		{"zstd-max-window", "IMAGEDROP_ZSTD_MAX_WINDOW"},
	} {
		if got := envName(tt.flag); got != tt.want {
			t.Errorf("envName(%q) = %q; want %q", tt.flag, got, tt.want)
		}
	}
}

// TestListFlags checks the repeatable flags: the command line replaces the
// environment's comma-separated list, which replaces the default; repeats
// add up; an empty twin leaves the default.
func TestListFlags(t *testing.T) {
	t.Parallel()
	def := []string{defaultImagesDir}
	for _, tt := range []struct {
		name           string
		env            env
		args           []string
		wantRegistries []string
		wantDirs       []string
	}{
		{"defaults", nil, nil, nil, def},
		{"env", env{"IMAGEDROP_EXTRA_REGISTRY": "a.local,b.local", "IMAGEDROP_IMAGES_DIR": "/env"}, nil,
			[]string{"a.local", "b.local"}, []string{"/env"}},
		{"env spaces and empties", env{"IMAGEDROP_EXTRA_REGISTRY": " a.local , ,b.local,", "IMAGEDROP_IMAGES_DIR": "/env/a, /env/b"}, nil,
			[]string{"a.local", "b.local"}, []string{"/env/a", "/env/b"}},
		{"env empty", env{"IMAGEDROP_EXTRA_REGISTRY": "", "IMAGEDROP_IMAGES_DIR": ""}, nil, nil, def},
		{"flags repeat", nil, []string{"--extra-registry", "c.local", "--extra-registry", "d.local", "--images-dir", "/arg/a", "--images-dir", "/arg/b"},
			[]string{"c.local", "d.local"}, []string{"/arg/a", "/arg/b"}},
		{"flags replace env", env{"IMAGEDROP_EXTRA_REGISTRY": "a.local,b.local", "IMAGEDROP_IMAGES_DIR": "/env/a,/env/b"},
			[]string{"--extra-registry", "c.local", "--images-dir", "/arg"}, []string{"c.local"}, []string{"/arg"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := parseWatch(tt.args, tt.env.lookup, io.Discard)
			if err != nil {
				t.Fatalf("parseWatch(%q, %v) = %v", tt.args, tt.env, err)
			}
			checkFields(t, []field{
				{"extra registries", cfg.common.importer.ExtraRegistries, tt.wantRegistries},
				{"images dirs", cfg.watcher.Dirs, tt.wantDirs},
			})
		})
	}
}

// TestParseErrors checks that a bad value in the environment or on the
// command line is a usage error that names where it came from. A bad value
// in the environment is an error even when the flag is also given.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		env  env
		args []string
		want string
	}{
		{"env int", env{"IMAGEDROP_WORKERS": "many"}, nil,
			`invalid value "many" for IMAGEDROP_WORKERS (--workers): parse error`},
		{"env bool", env{"IMAGEDROP_PIN": "maybe"}, nil,
			`invalid value "maybe" for IMAGEDROP_PIN (--pin): parse error`},
		{"env duration", env{"IMAGEDROP_PULL_TIMEOUT": "10"}, nil,
			`invalid value "10" for IMAGEDROP_PULL_TIMEOUT (--pull-timeout): parse error`},
		{"env size", env{"IMAGEDROP_ZSTD_MAX_WINDOW": "128Mx"}, nil,
			`invalid value "128Mx" for IMAGEDROP_ZSTD_MAX_WINDOW (--zstd-max-window): unknown size unit "Mx": want k, M, G, T, Ki, Mi, Gi or Ti, with or without B`},
		{"env size overflow", env{"IMAGEDROP_ZSTD_MAX_WINDOW": "99999999999Ti"}, nil,
			`invalid value "99999999999Ti" for IMAGEDROP_ZSTD_MAX_WINDOW (--zstd-max-window): size overflows 64 bits`},
		{"env bad even with flag", env{"IMAGEDROP_WORKERS": "many"}, []string{"--workers", "3"},
			`invalid value "many" for IMAGEDROP_WORKERS (--workers): parse error`},
		{"flag int", nil, []string{"--workers", "many"},
			`invalid value "many" for flag -workers: parse error`},
		{"flag size", env{"IMAGEDROP_ZSTD_MAX_WINDOW": "128Mi"}, []string{"--zstd-max-window", "-1"},
			`invalid value "-1" for flag -zstd-max-window: negative size`},
		{"env free space percent", env{"IMAGEDROP_MIN_FREE_SPACE": "100%"}, nil,
			`invalid value "100%" for IMAGEDROP_MIN_FREE_SPACE (--min-free-space): want a percentage from 0 to below 100, e.g. 15%, or a size, e.g. 20Gi`},
		{"flag free space size", nil, []string{"--min-free-space", "20Gx"},
			`invalid value "20Gx" for flag -min-free-space: unknown size unit "Gx": want k, M, G, T, Ki, Mi, Gi or Ti, with or without B`},
		{"flag list empty", nil, []string{"--extra-registry", ""},
			`invalid value "" for flag -extra-registry: empty value`},
		{"unknown flag", nil, []string{"--no-such-flag"},
			`flag provided but not defined: -no-such-flag`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := newImportFlags(&importConfig{}, io.Discard)
			err := parseFlags(fs, tt.args, tt.env.lookup)
			if got := errString(err); got != tt.want {
				t.Errorf("parseFlags(%q, %v) = %q; want %q", tt.args, tt.env, got, tt.want)
			}
			if !errors.As(err, new(usageError)) {
				t.Errorf("parseFlags(%q, %v) = %T; want a usageError", tt.args, tt.env, err)
			}
		})
	}
}

// TestParseImport checks that parseImport's configuration holds what the
// environment and the command line say, the command line winning.
func TestParseImport(t *testing.T) {
	t.Parallel()
	cfg, err := parseImport([]string{"--workers", "6", "--zstd-max-window", "256MiB", "a.tar", "b.txt"},
		env{"IMAGEDROP_WORKERS": "4", "IMAGEDROP_ZSTD_MAX_WINDOW": "128Mi", "IMAGEDROP_NAMESPACE": "env-ns", "IMAGEDROP_PIN": "false"}.lookup,
		io.Discard)
	if err != nil {
		t.Fatalf("parseImport = %v", err)
	}
	checkFields(t, []field{
		{"workers", cfg.workers, 6},
		{"zstd max window", cfg.common.importer.ZstdMaxWindow, uint64(256 << 20)},
		{"namespace", cfg.common.importer.Namespace, "env-ns"},
		{"pin", cfg.common.importer.Pin, false},
		{"unpack", cfg.common.importer.Unpack, true},
		{"pull timeout", cfg.common.importer.PullTimeout, 30 * time.Minute},
		{"files", cfg.files, []string{"a.tar", "b.txt"}},
	})
}

// TestParseWatch checks that parseWatch's configuration holds what the
// environment and the command line say, the command line winning.
func TestParseWatch(t *testing.T) {
	t.Parallel()
	cfg, err := parseWatch([]string{"--workers", "6", "--settle=3s", "--images-dir", "/arg/a", "--images-dir", "/arg/b"},
		env{"IMAGEDROP_WORKERS": "4", "IMAGEDROP_SETTLE": "2s", "IMAGEDROP_IMAGES_DIR": "/env", "IMAGEDROP_LISTEN_ADDRESS": ":9000"}.lookup,
		io.Discard)
	if err != nil {
		t.Fatalf("parseWatch = %v", err)
	}
	checkFields(t, []field{
		{"workers", cfg.watcher.Workers, 6},
		{"settle", cfg.watcher.Settle, 3 * time.Second},
		{"dirs", cfg.watcher.Dirs, []string{"/arg/a", "/arg/b"}},
		{"listen address", cfg.server.Address, ":9000"},
		{"state file", cfg.watcher.StateFile, "/var/lib/imagedrop/state.json"},
		{"namespace", cfg.common.importer.Namespace, "k8s.io"},
	})
}

// field is one value of a parsed configuration and what it should be.
type field struct {
	name      string
	got, want any
}

func checkFields(t *testing.T, fields []field) {
	t.Helper()
	for _, f := range fields {
		if !reflect.DeepEqual(f.got, f.want) {
			t.Errorf("%s = %v; want %v", f.name, f.got, f.want)
		}
	}
}

// TestParseCommandErrors checks the usage errors of values that parse but
// do not validate, wherever they come from.
func TestParseCommandErrors(t *testing.T) {
	t.Parallel()
	parsers := map[string]func([]string, func(string) (string, bool), io.Writer) error{
		"import": func(args []string, e func(string) (string, bool), w io.Writer) error {
			_, err := parseImport(args, e, w)
			return err
		},
		"watch": func(args []string, e func(string) (string, bool), w io.Writer) error {
			_, err := parseWatch(args, e, w)
			return err
		},
	}
	for _, tt := range []struct {
		name, command string
		env           env
		args          []string
		want          string
	}{
		{"no files", "import", nil, nil, "import: no files given"},
		{"no workers from env", "import", env{"IMAGEDROP_WORKERS": "0"}, []string{"a.tar"}, "--workers must be at least 1, not 0"},
		{"log format from env", "import", env{"IMAGEDROP_LOG_FORMAT": "yaml"}, []string{"a.tar"}, `--log-format "yaml": want text or json`},
		{"log level", "import", nil, []string{"--log-level", "loud", "a.tar"}, `--log-level "loud": want debug, info, warn or error`},
		{"containerd address", "import", env{"IMAGEDROP_CONTAINERD_ADDRESS": ""}, []string{"a.tar"}, "--containerd-address must not be empty"},
		{"watch arguments", "watch", nil, []string{"a.tar"}, `watch takes no arguments, got ["a.tar"]`},
		{"watch workers", "watch", env{"IMAGEDROP_WORKERS": "0"}, nil, "workers must be at least 1, got 0"},
		{"watch retry", "watch", nil, []string{"--retry-max", "1s"}, "retry maximum 1s is below retry minimum 5s"},
		{"watch log format", "watch", env{"IMAGEDROP_LOG_FORMAT": "yaml"}, nil, `--log-format "yaml": want text or json`},
		{"shared slots", "watch", env{"IMAGEDROP_SHARED_IMPORT_SLOTS": "-1"}, nil, "--shared-import-slots must not be negative, got -1"},
		{"lease duration", "watch", nil, []string{"--lease-duration", "1s"}, "--lease-duration must be at least 3s, got 1s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := parsers[tt.command](tt.args, tt.env.lookup, io.Discard)
			if got := errString(err); got != tt.want {
				t.Errorf("parse %s(%q, %v) = %q; want %q", tt.command, tt.args, tt.env, got, tt.want)
			}
			if !errors.As(err, new(usageError)) {
				t.Errorf("parse %s(%q, %v) = %T; want a usageError", tt.command, tt.args, tt.env, err)
			}
		})
	}
}
