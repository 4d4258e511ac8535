package main

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"strings"
)

// The chart's geometry, in SVG user units (pixels).
const (
	svgWidth   = 1000
	svgHeight  = 580
	plotLeft   = 70
	plotRight  = 30
	plotTop    = 106
	plotHeight = 330
	stateTop   = plotTop + plotHeight + 34 // the pattern-state strip, under the x axis
	stateH     = 14
	legendTop  = stateTop + stateH + 34
)

// series are the stacked parts of a bar, bottom first.
var series = []struct {
	name, color string
	value       func(Counts) int64
}{
	{"primary", "#2e7d32", func(c Counts) int64 { return c.Primary }},
	{"primary after retry", "#81c784", func(c Counts) int64 { return c.Retried }},
	{"replica (alternate)", "#1e88e5", func(c Counts) int64 { return c.Alternate }},
	{"cache", "#8e24aa", func(c Counts) int64 { return c.Cache }},
	{"static reply", "#fb8c00", func(c Counts) int64 { return c.Static }},
	{"failed", "#e53935", func(c Counts) int64 { return c.Failed }},
}

// phaseColors shade the phases of the schedule.
var phaseColors = map[Kind]string{
	KindHealthy: "#f1f8e9",
	KindDown:    "#ffcdd2",
	KindSlow:    "#ffe0b2",
	KindFlaky:   "#fff9c4",
	KindHealed:  "#e8f5e9",
}

// stateColors color the pattern's states.
var stateColors = map[string]string{
	"closed":     "#66bb6a",
	"open":       "#e53935",
	"recovering": "#ffb300",
}

const attemptsColor = "#212121"

// renderSVG draws the run: calls per second stacked by how they were
// answered, the attempts per second that reached the primary as a line, the
// phases shaded and labelled, and the pattern's state as a strip below.
func renderSVG(s Summary) []byte {
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	total := s.DurationS
	if total <= 0 {
		total = 1
	}
	plotW := float64(svgWidth - plotLeft - plotRight)
	x := func(t float64) float64 { return plotLeft + plotW*t/total }

	var top int64
	for _, r := range s.Seconds {
		top = max(top, r.Calls, r.Attempts)
	}
	yMax, yStep := niceScale(1.15 * float64(top)) // headroom for the line
	y := func(v float64) float64 { return plotTop + plotHeight - plotHeight*v/yMax }

	w(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="13">`+"\n",
		svgWidth, svgHeight, svgWidth, svgHeight)
	w(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")

	// Title and the figures of the summary.
	w(`<text x="%d" y="28" font-size="18" font-weight="bold">rebound outage demo: pattern %s, %g calls/s</text>`+"\n", plotLeft, esc(s.Pattern), s.Rate)
	for i, line := range headline(s) {
		w(`<text x="%d" y="%d" fill="#424242">%s</text>`+"\n", plotLeft, 50+18*i, esc(line))
	}

	// Phases: shaded bands, labelled at the top.
	for _, p := range s.Phases {
		x0, x1 := x(p.StartS), x(p.EndS)
		w(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0, plotTop, x1-x0, plotHeight, phaseColors[Kind(strings.SplitN(p.Phase, "=", 2)[0])])
		w(`<rect x="%.1f" y="%d" width="%.1f" height="20" fill="%s" stroke="#ffffff" stroke-width="2"/>`+"\n", x0, plotTop-22, x1-x0, phaseColors[Kind(strings.SplitN(p.Phase, "=", 2)[0])])
		w(`<text x="%.1f" y="%d" text-anchor="middle" font-weight="bold" fill="#424242">%s</text>`+"\n", (x0+x1)/2, plotTop-7, esc(p.Phase))
	}

	// Grid and y axis.
	for v := 0.0; v <= yMax+yStep/2; v += yStep {
		w(`<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#bdbdbd" stroke-width="0.6" stroke-dasharray="3,3"/>`+"\n", plotLeft, svgWidth-plotRight, y(v), y(v))
		w(`<text x="%d" y="%.1f" text-anchor="end" fill="#424242">%g</text>`+"\n", plotLeft-8, y(v)+4, v)
	}
	w(`<text transform="translate(20,%d) rotate(-90)" text-anchor="middle" fill="#424242">calls/s and attempts/s</text>`+"\n", plotTop+plotHeight/2)

	// Bars: one per second, stacked.
	for _, r := range s.Seconds {
		t0, t1 := float64(r.Second), math.Min(float64(r.Second+1), total)
		bw := (x(t1) - x(t0)) * 0.78
		bx := (x(t0)+x(t1))/2 - bw/2
		var acc int64
		for _, sr := range series {
			v := sr.value(r.Counts)
			if v == 0 {
				continue
			}
			w(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%ds: %s %d</title></rect>`+"\n",
				bx, y(float64(acc+v)), bw, y(float64(acc))-y(float64(acc+v)), sr.color, r.Second, sr.name, v)
			acc += v
		}
	}

	// Phase boundaries, over the bars.
	for i, p := range s.Phases {
		if i == 0 {
			continue
		}
		w(`<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#616161" stroke-width="1.2" stroke-dasharray="5,4"/>`+"\n", x(p.StartS), x(p.StartS), plotTop-22, plotTop+plotHeight)
	}

	// The primary's load: attempts per second, at the middle of each second.
	var pts []string
	for _, r := range s.Seconds {
		t := (float64(r.Second) + math.Min(float64(r.Second+1), total)) / 2
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(t), y(float64(r.Attempts))))
	}
	if len(pts) > 0 {
		w(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2.5" stroke-linejoin="round"/>`+"\n", strings.Join(pts, " "), attemptsColor)
		for i, p := range pts {
			xy := strings.Split(p, ",")
			w(`<circle cx="%s" cy="%s" r="3.5" fill="%s" stroke="#ffffff" stroke-width="1"><title>%ds: %d attempts reached the primary</title></circle>`+"\n",
				xy[0], xy[1], attemptsColor, s.Seconds[i].Second, s.Seconds[i].Attempts)
		}
	}

	// X axis.
	w(`<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#424242"/>`+"\n", plotLeft, svgWidth-plotRight, plotTop+plotHeight, plotTop+plotHeight)
	xStep := 1.0
	for _, st := range []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600} {
		if xStep = st; total/st <= 20 {
			break
		}
	}
	for t := 0.0; t <= total+1e-9; t += xStep {
		w(`<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#424242"/>`+"\n", x(t), x(t), plotTop+plotHeight, plotTop+plotHeight+5)
		w(`<text x="%.1f" y="%d" text-anchor="middle" fill="#424242">%gs</text>`+"\n", x(t), plotTop+plotHeight+19, t)
	}

	// The pattern's state strip.
	w(`<text x="%d" y="%d" text-anchor="end" fill="#424242">pattern</text>`+"\n", plotLeft-8, stateTop+stateH-2)
	from, state := 0.0, "closed"
	strip := func(to float64) {
		if to > from {
			color, ok := stateColors[state]
			if !ok {
				color = "#9e9e9e"
			}
			w(`<rect x="%.1f" y="%d" width="%.2f" height="%d" fill="%s"><title>%s</title></rect>`+"\n", x(from), stateTop, x(to)-x(from), stateH, color, esc(state))
		}
	}
	for _, tr := range s.Transitions {
		at := math.Min(tr.AtS, total)
		strip(at)
		from, state = at, tr.To
	}
	strip(total)

	// Legend.
	lx := float64(plotLeft)
	item := func(swatch, label string) {
		w(`%s<text x="%.1f" y="%d">%s</text>`+"\n", swatch, lx+18, legendTop+11, esc(label))
		lx += 18 + 7.2*float64(len(label)) + 22
	}
	for _, sr := range series {
		item(fmt.Sprintf(`<rect x="%.1f" y="%d" width="13" height="13" fill="%s"/>`, lx, legendTop, sr.color), sr.name)
	}
	item(fmt.Sprintf(`<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="%s" stroke-width="2.5"/><circle cx="%.1f" cy="%d" r="3.5" fill="%s"/>`,
		lx, lx+13, legendTop+7, legendTop+7, attemptsColor, lx+6.5, legendTop+7, attemptsColor), "attempts on the primary")
	lx = plotLeft
	legendTop2 := legendTop + 26
	w(`<text x="%.1f" y="%d" fill="#424242">pattern state (strip under the time axis):</text>`+"\n", lx, legendTop2+11)
	lx += 290
	for _, st := range []string{"closed", "open", "recovering"} {
		w(`<rect x="%.1f" y="%d" width="13" height="13" fill="%s"/><text x="%.1f" y="%d">%s</text>`+"\n", lx, legendTop2, stateColors[st], lx+18, legendTop2+11, st)
		lx += 18 + 7.2*float64(len(st)) + 22
	}
	w("</svg>\n")
	return b.Bytes()
}

// headline is the summary in two lines.
func headline(s Summary) []string {
	parts := []string{fmt.Sprintf("availability %.2f %%", 100*s.Availability)}
	if d := s.Down; d != nil {
		parts = append(parts, fmt.Sprintf("%.2f %% while down", 100*d.Availability),
			fmt.Sprintf("load on the primary %.2f attempts/call (%.2f while down)", s.Amplification, d.Amplification))
	} else {
		parts = append(parts, fmt.Sprintf("load on the primary %.2f attempts/call", s.Amplification))
	}
	line1 := strings.Join(parts, " · ")
	parts = parts[:0]
	if rc := s.Recovery; rc.Recovered {
		parts = append(parts, fmt.Sprintf("recovered %.1fs after the heal", *rc.TimeToRecoverS))
	} else if rc.HealAtS != nil {
		parts = append(parts, "not recovered within the run")
	}
	if rc := s.Recovery; rc.BackOnPrimaryS != nil && rc.OutageEndS != nil && (rc.HealAtS == nil || *rc.OutageEndS != *rc.HealAtS) {
		parts = append(parts, fmt.Sprintf("back on the primary %.1fs after the last down/slow phase", *rc.BackOnPrimaryS))
	}
	parts = append(parts, fmt.Sprintf("latency p50 %s, p99 %s", ms(s.LatencyMs.P50), ms(s.LatencyMs.P99)))
	return []string{line1, strings.Join(parts, " · ")}
}

// niceScale returns an axis maximum >= v and a tick step of 1, 2 or 5 × 10^n
// giving about six ticks.
func niceScale(v float64) (maxV, step float64) {
	if v <= 0 {
		return 1, 1
	}
	raw := v / 6
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step = mag * 10
	for _, m := range []float64{1, 2, 5} {
		if mag*m >= raw {
			step = mag * m
			break
		}
	}
	return math.Ceil(v/step) * step, step
}

func esc(s string) string { return html.EscapeString(s) }
