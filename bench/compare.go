package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"
)

// contender is one side of a comparison: a tool run on an input.
type contender struct {
	label string
	// files are read into the page cache before every run.
	files []string
	// setup prepares namespace ns before the timed run; optional, untimed.
	setup func(ctx context.Context, ns string) error
	run   func(ctx context.Context, ns string) (sample, error)
	// verify checks namespace ns after the run; optional, untimed.
	verify func(ctx context.Context, ns string) error
}

// compare runs every contender once per round, in an order that alternates
// between rounds, each in a fresh namespace cleared afterwards.
func (b *bench) compare(ctx context.Context, e *runtimeEnv, key string, cs []contender) ([][]sample, error) {
	return b.compareOrdered(ctx, e, key, cs, false)
}

// compareOrdered is compare, with the contenders in the same order every
// round when cyclic: each then always follows the same contender (the
// first, the last one's run of the round before).
func (b *bench) compareOrdered(ctx context.Context, e *runtimeEnv, key string, cs []contender, cyclic bool) ([][]sample, error) {
	out := make([][]sample, len(cs))
	if !b.want(key) {
		return out, nil
	}
	rounds := b.cfg.rounds
	switch key {
	case "list":
		rounds = b.cfg.listRounds
	case "compressed":
		rounds = b.cfg.zRounds
	case "scaling":
		rounds = b.cfg.scalingRounds
	case "pod":
		rounds = b.cfg.podRounds
	}
	if strings.HasPrefix(key, "bundle") {
		rounds = b.cfg.bundleRounds
	}
	for round := range rounds {
		for k := range cs {
			i := k
			if round%2 == 1 && !cyclic {
				i = len(cs) - 1 - k
			}
			c := cs[i]
			ns := e.namespace(key)
			if c.setup != nil {
				if err := c.setup(ctx, ns); err != nil {
					return nil, fmt.Errorf("%s: setup of %s: %w", key, c.label, err)
				}
			}
			if err := preread(c.files...); err != nil {
				return nil, err
			}
			// Start with nothing left to write back from earlier runs and
			// their deletions, which would otherwise land in this one.
			syscall.Sync()
			s, err := withCPU(e.c.Pid(), b.registryPid(), func() (sample, error) { return c.run(ctx, ns) })
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", key, c.label, err)
			}
			if c.verify != nil {
				if err := c.verify(ctx, ns); err != nil {
					return nil, fmt.Errorf("%s: %s: %w", key, c.label, err)
				}
			}
			b.logf("  %-8s round %d  %-45s %8.3fs  rss %d MiB  cores %.2f  cpu s: containerd %.2f registry %.2f command %.2f", key, round+1, c.label,
				s.wall.Seconds(), s.rssKiB>>10, s.cores(), s.cpu.containerd.Seconds(), s.cpu.registry.Seconds(), s.cpu.command.Seconds())
			out[i] = append(out[i], s)
			if err := clearNamespace(ctx, e.client, ns); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// command returns a contender run that times argv built for the namespace.
func (b *bench) command(argv func(ns string) []string) func(context.Context, string) (sample, error) {
	return func(ctx context.Context, ns string) (sample, error) {
		return timeCmd(ctx, b.work, argv(ns))
	}
}

func (b *bench) imagedropArgs(e *runtimeEnv, ns string, unpack bool, files ...string) []string {
	return append([]string{b.cfg.imagedrop, "import", "--containerd-address", e.c.Address, "--namespace", ns,
		fmt.Sprintf("--unpack=%t", unpack), "--log-level", "warn"}, files...)
}

// ctrArgs is `ctr images import`; local picks --local on containerd 2.x
// (1.6's ctr always imports locally and has no such flag).
func (b *bench) ctrArgs(e *runtimeEnv, ns string, local, unpack bool, file string) []string {
	args := []string{e.ctr, "-a", e.c.Address, "-n", ns, "images", "import"}
	if local && e.major >= 2 {
		args = append(args, "--local")
	}
	if !unpack {
		args = append(args, "--no-unpack")
	}
	return append(args, file)
}

func (b *bench) imagedrop(e *runtimeEnv, label string, unpack bool, file string) contender {
	return contender{label: label, files: []string{file}, run: b.command(func(ns string) []string {
		return b.imagedropArgs(e, ns, unpack, file)
	})}
}

func (b *bench) ctrImport(e *runtimeEnv, label string, local, unpack bool, file string) contender {
	return contender{label: label, files: []string{file}, run: b.command(func(ns string) []string {
		return b.ctrArgs(e, ns, local, unpack, file)
	})}
}

// ctrPipe is `DECOMPRESS -dc FILE | ctr images import --local --no-unpack -`.
func (b *bench) ctrPipe(e *runtimeEnv, tool, file string) contender {
	return contender{label: tool + " -dc | " + e.ctrLocalLabel() + " -", files: []string{file}, run: b.command(func(ns string) []string {
		ctr := b.ctrArgs(e, ns, true, false, "-")
		for i := range ctr {
			ctr[i] = quote(ctr[i])
		}
		return shell(tool + " -dc " + quote(file) + " | " + strings.Join(ctr, " "))
	})}
}

// decodedBeside is imagedrop importing plain while the bench process
// decodes compressed beside it, at the pace of containerd's writes, about as
// far ahead of them as imagedrop decodes (its 6 MiB of read-ahead and two
// writes of 4 MiB in flight). It is a control for case 3: the import of the
// same bytes with the same decoding to do on the same cores, done by a
// decoder that shares nothing with the import.
func (b *bench) decodedBeside(e *runtimeEnv, plain, key, compressed string) contender {
	const ahead = 14 << 20
	c := b.imagedrop(e, "imagedrop on the plain .tar, the .tar."+key+" decoded beside it by the bench", false, plain)
	c.files = append(c.files, compressed)
	imp := c.run
	c.run = func(ctx context.Context, ns string) (sample, error) {
		free := make(chan struct{})
		decoded := make(chan error, 1)
		go func() { decoded <- decodeBeside(compressed, e.c.Pid(), ahead, free) }()
		s, err := imp(ctx, ns)
		close(free)
		return s, errors.Join(err, <-decoded)
	}
	return c
}

// floorCommand times a command that needs no containerd.
func (b *bench) floorCommand(label string, files []string, argv []string, after func() error) contender {
	return contender{label: label, files: files, run: func(ctx context.Context, _ string) (sample, error) {
		s, err := timeCmd(ctx, b.work, argv)
		if err == nil && after != nil {
			err = after()
		}
		return s, err
	}}
}

// runsOf pairs imagedrop's runs with the peer's, for the CPU table.
func runsOf(id, peer []sample) [2][]sample { return [2][]sample{id, peer} }

func walls(ss []sample) []time.Duration {
	out := make([]time.Duration, len(ss))
	for i, s := range ss {
		out[i] = s.wall
	}
	return out
}

func maxRSS(ss []sample) int64 {
	var m int64
	for _, s := range ss {
		m = max(m, s.rssKiB)
	}
	return m
}
