package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
)

func main() {
	if err := mainErr(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "outage:", err)
		}
		os.Exit(2)
	}
}

// mainErr parses the flags, runs the demo and writes its output.
func mainErr(args []string, stdout, stderr io.Writer) error {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("outage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./examples/outage [flags]\n\n"+
			"Runs a scripted outage of a gRPC server in one process and shows how rebound\n"+
			"keeps its callers served: a row per second, then a summary.\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Pattern, "pattern", cfg.Pattern, "recovery pattern of GetItem: backoff (catalog.proto's exponential_backoff), partial or adaptive")
	duration := fs.Duration("duration", 0, "length of the run; the schedule is scaled to it (default: the schedule's own length, 20s for the default)")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "calls per second (open loop)")
	schedule := fs.String("schedule", DefaultSchedule, "the primary's phases, KIND[=PARAM]:DURATION,...; kinds: healthy, down, slow[=DELAY], flaky[=PERCENT%], healed")
	jsonOut := fs.Bool("json", false, "write the summary as JSON on stdout; the rows go to stderr")
	quiet := fs.Bool("quiet", false, "no rows, only the summary")
	plot := fs.String("plot", "", "write an SVG chart of the run to `FILE.svg`")
	verbose := fs.Bool("v", false, "also print rebound's own log lines (stderr)")
	fs.IntVar(&cfg.Keys, "keys", cfg.Keys, "number of items asked for (Zipf-distributed)")
	fs.IntVar(&cfg.Hot, "hot", cfg.Hot, "number of best sellers the replica holds")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; see -help", fs.Args())
	}
	sched, err := ParseSchedule(*schedule)
	if err != nil {
		return err
	}
	if *duration < 0 {
		return fmt.Errorf("-duration %v: want > 0", *duration)
	}
	if *duration > 0 {
		sched = sched.Scale(*duration)
	}
	cfg.Schedule = sched
	if *plot != "" && !strings.EqualFold(filepath.Ext(*plot), ".svg") {
		return fmt.Errorf("-plot %s: want a .svg file (convert it with e.g. rsvg-convert for PNG)", *plot)
	}
	out := stdout
	switch {
	case *quiet:
		cfg.Rows = nil
	case *jsonOut:
		cfg.Rows = stderr
	default:
		cfg.Rows = stdout
	}
	if *verbose {
		cfg.Log = stderr
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	s, err := run(ctx, cfg)
	if err != nil {
		return err
	}
	if *plot != "" {
		if err := os.WriteFile(*plot, renderSVG(s), 0o644); err != nil {
			return err
		}
	}
	if *jsonOut {
		if err := writeJSON(out, s); err != nil {
			return err
		}
	} else {
		writeSummary(out, s)
		if *plot != "" {
			fmt.Fprintf(out, "\nplot: %s\n", *plot)
		}
	}
	if s.Interrupted {
		return errors.New("interrupted")
	}
	return nil
}
