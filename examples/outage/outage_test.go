package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestOutage runs the demo in process with a short schedule and checks its
// JSON summary: fallbacks answer while the primary is hard down, the dead
// primary is not hammered, and the calls go back to the primary once it heals.
//
// The healed phase is 4 s, not 1 s: after 2 s down the breaker's open delay
// has grown to its cap (2 s ± 20 % in catalog.proto), so the probe that finds
// the primary healed may come up to ~2.3 s after the heal.
func TestOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 7 s")
	}
	sched, err := ParseSchedule("healthy:1s,down:2s,healed:4s")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Schedule = sched
	cfg.Rate = 100
	s, err := run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("run() = %v", err)
	}

	// Check the JSON that scripts read, not the Go struct.
	var buf bytes.Buffer
	if err := writeJSON(&buf, s); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Availability  float64 `json:"availability"`
		Amplification float64 `json:"amplification"`
		Totals        struct {
			Calls int64 `json:"calls"`
		} `json:"totals"`
		Down *struct {
			Calls         int64   `json:"calls"`
			Availability  float64 `json:"availability"`
			Amplification float64 `json:"amplification"`
			Alternate     int64   `json:"alternate"`
			Cache         int64   `json:"cache"`
			Static        int64   `json:"static"`
		} `json:"down"`
		Recovery struct {
			Recovered      bool     `json:"recovered"`
			TimeToRecoverS *float64 `json:"time_to_recover_s"`
		} `json:"recovery"`
		Phases []struct {
			Phase        string  `json:"phase"`
			Calls        int64   `json:"calls"`
			PrimaryShare float64 `json:"primary_share"`
		} `json:"phases"`
		Seconds         []json.RawMessage `json:"seconds"`
		TransitionCount int               `json:"transition_count"`
		EmptyReplies    int64             `json:"empty_replies"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("summary JSON: %v\n%s", err, buf.Bytes())
	}
	t.Logf("summary:\n%s", summaryText(s))

	if got.Totals.Calls < 600 {
		t.Errorf("totals.calls = %d; want about 700 (7 s at 100/s)", got.Totals.Calls)
	}
	if got.Down == nil {
		t.Fatal("down = null; want the hard-down phase")
	}
	if got.Down.Calls < 150 {
		t.Errorf("down.calls = %d; want about 200", got.Down.Calls)
	}
	if got.Down.Availability < 0.99 {
		t.Errorf("down.availability = %.4f; want >= 0.99 (fallbacks answer)", got.Down.Availability)
	}
	if got.Down.Amplification > 1.1 {
		t.Errorf("down.amplification = %.3f; want <= 1.1 attempts per call on the dead primary", got.Down.Amplification)
	}
	if got.Down.Alternate == 0 || got.Down.Cache == 0 {
		t.Errorf("down: replica %d, cache %d; want both > 0", got.Down.Alternate, got.Down.Cache)
	}
	if got.TransitionCount == 0 {
		t.Errorf("transition_count = 0; want the pattern to open while down")
	}
	if !got.Recovery.Recovered || got.Recovery.TimeToRecoverS == nil || *got.Recovery.TimeToRecoverS > 3 {
		t.Errorf("recovery = %+v; want recovered within 3 s of the heal", got.Recovery)
	}
	if n := len(got.Phases); n != 3 || got.Phases[2].Phase != "healed" || got.Phases[2].PrimaryShare < 0.25 {
		t.Errorf("phases = %+v; want the healed phase mostly answered by the primary", got.Phases)
	}
	if got.EmptyReplies != 0 {
		t.Errorf("empty_replies = %d; want 0: every answer must fill the reply", got.EmptyReplies)
	}
	if len(got.Seconds) != 7 {
		t.Errorf("len(seconds) = %d; want 7", len(got.Seconds))
	}
	if got.Availability < 0.99 || got.Amplification > 1.1 {
		t.Errorf("availability %.4f, amplification %.3f; want >= 0.99 and <= 1.1", got.Availability, got.Amplification)
	}

	// The chart of the same run is well-formed SVG.
	checkSVG(t, renderSVG(s))
}

func summaryText(s Summary) string {
	var b strings.Builder
	writeSummary(&b, s)
	return b.String()
}

func checkSVG(t *testing.T, svg []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	n := 0
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG does not parse: %v", err)
		}
		n++
	}
	if n < 50 || !bytes.HasPrefix(svg, []byte("<svg ")) {
		t.Errorf("SVG has %d tokens; want a chart", n)
	}
}

// TestPatterns runs each -pattern briefly.
func TestPatterns(t *testing.T) {
	for _, name := range []string{"backoff", "partial", "adaptive"} {
		t.Run(name, func(t *testing.T) {
			sched, err := ParseSchedule("healthy:200ms,down:200ms")
			if err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig()
			cfg.Pattern, cfg.Schedule = name, sched
			s, err := run(t.Context(), cfg)
			if err != nil {
				t.Fatalf("run(-pattern %s) = %v", name, err)
			}
			if s.Pattern != name || s.Totals.Calls < 30 {
				t.Errorf("run(-pattern %s): pattern %q, %d calls; want %q, about 40", name, s.Pattern, s.Totals.Calls, name)
			}
		})
	}
	if _, err := run(t.Context(), Config{Pattern: "nope"}); err == nil || !strings.Contains(err.Error(), "backoff, partial or adaptive") {
		t.Errorf("run(-pattern nope) = %v; want an error naming the patterns", err)
	}
}

func TestParseSchedule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string // want: String() of the result, or a substring of the error
		total          time.Duration
		wantErr        bool
	}{
		{name: "default", in: DefaultSchedule, want: DefaultSchedule, total: 20 * time.Second},
		{name: "params", in: "healthy:1s, slow=300ms:2s,flaky=50%:1500ms,healed:1s", want: "healthy:1s,slow=300ms:2s,flaky=50%:1.5s,healed:1s", total: 5500 * time.Millisecond},
		{name: "default params", in: "slow=400ms:1s,flaky=30%:1s", want: "slow:1s,flaky:1s", total: 2 * time.Second},
		{name: "unknown kind", in: "healthy:1s,broken:2s", want: `unknown kind "broken"`, wantErr: true},
		{name: "no duration", in: "healthy", want: "KIND[=PARAM]:DURATION", wantErr: true},
		{name: "bad duration", in: "down:-1s", want: "positive duration", wantErr: true},
		{name: "bad percent", in: "flaky=150%:1s", want: "percentage", wantErr: true},
		{name: "param on down", in: "down=1:1s", want: "no parameter", wantErr: true},
		{name: "empty", in: "", want: "KIND[=PARAM]:DURATION", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := ParseSchedule(tt.in)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("ParseSchedule(%q) = %v, %v; want an error containing %q", tt.in, s, err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSchedule(%q) = %v", tt.in, err)
			}
			if got := s.String(); got != tt.want {
				t.Errorf("ParseSchedule(%q).String() = %q; want %q", tt.in, got, tt.want)
			}
			if got := s.Total(); got != tt.total {
				t.Errorf("ParseSchedule(%q).Total() = %v; want %v", tt.in, got, tt.total)
			}
		})
	}
}

func TestScheduleScaleAndMarks(t *testing.T) {
	t.Parallel()
	s, err := ParseSchedule(DefaultSchedule)
	if err != nil {
		t.Fatal(err)
	}
	short := s.Scale(6 * time.Second)
	if got, want := short.String(), "healthy:1.2s,down:1.5s,slow:1.2s,flaky:1.2s,healed:900ms"; got != want {
		t.Errorf("Scale(6s) = %q; want %q", got, want)
	}
	if heal, ok := short.HealAt(); !ok || heal != 5100*time.Millisecond {
		t.Errorf("HealAt() = %v, %v; want 5.1s, true", heal, ok)
	}
	if end, ok := short.OutageEnd(); !ok || end != 3900*time.Millisecond {
		t.Errorf("OutageEnd() = %v, %v; want 3.9s, true", end, ok)
	}
	if i := short.At(1500 * time.Millisecond); short[i].Kind != KindDown {
		t.Errorf("At(1.5s) = phase %v; want down", short[i].Kind)
	}
	if i := short.At(time.Minute); i != len(short)-1 {
		t.Errorf("At(1m) = %d; want the last phase", i)
	}
	noHealed, _ := ParseSchedule("down:1s,healthy:1s")
	if heal, ok := noHealed.HealAt(); !ok || heal != time.Second {
		t.Errorf("HealAt(down,healthy) = %v, %v; want 1s, true", heal, ok)
	}
	never, _ := ParseSchedule("healthy:1s,down:1s")
	if _, ok := never.HealAt(); ok {
		t.Errorf("HealAt(healthy,down) = _, true; want false")
	}
}

func TestHistQuantile(t *testing.T) {
	t.Parallel()
	var h hist
	if got := h.quantile(0.5); got != 0 {
		t.Errorf("empty quantile = %v; want 0", got)
	}
	for i := 1; i <= 100; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}} {
		got := h.quantile(tc.q)
		if d := float64(got-tc.want) / float64(tc.want); d < -0.04 || d > 0.04 {
			t.Errorf("quantile(%v) = %v; want %v ± 4 %%", tc.q, got, tc.want)
		}
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-plot", "out.png"}, "want a .svg file"},
		{[]string{"-schedule", "up:1s"}, "unknown kind"},
		{[]string{"-duration", "-1s"}, "want > 0"},
		{[]string{"-rate", "0"}, "rate 0"},
		{[]string{"-pattern", "sometimes"}, "want backoff, partial or adaptive"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		err := mainErr(tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("mainErr(%q) = %v; want an error containing %q", tc.args, err, tc.want)
		}
	}
}
