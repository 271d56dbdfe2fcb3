// Command plot draws bench/ results as PNG: throughput against connections
// for each RTT of the WAN profile (bench/wan.sh, --wan), and bench/run.sh's
// curves (--connections, --latency: PNGs into --dir).
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

func main() {
	wan := flag.String("wan", "", "the CSV written by bench/wan.sh")
	out := flag.String("out", "wan.png", "the PNG to write for --wan")
	conns := flag.String("connections", "", "bench/run.sh's CSV tool,connections,msgs_per_s: draws DIR/connections.png")
	latency := flag.String("latency", "", "bench/run.sh's CSV offered_rate,msgs_per_s,p50_ms,p99_ms,errors: draws DIR/latency.png")
	dir := flag.String("dir", ".", "where --connections and --latency write their PNGs")
	flag.Parse()
	var err error
	if *wan != "" {
		err = run(*wan, *out)
	}
	if err == nil && *conns != "" {
		err = connections(*conns, filepath.Join(*dir, "connections.png"))
	}
	if err == nil && *latency != "" {
		err = latencies(*latency, filepath.Join(*dir, "latency.png"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
}

func readCSV(in string) ([][]string, error) {
	f, err := os.Open(in)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: empty", in)
	}
	return rows[1:], nil
}

func num(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

var palette = []color.Color{
	color.RGBA{R: 120, G: 120, B: 120, A: 255},
	color.RGBA{R: 30, G: 100, B: 200, A: 255},
	color.RGBA{R: 230, G: 140, B: 30, A: 255},
}

// addLine adds one series, sorted by X, to p.
func addLine(p *plot.Plot, name string, pts plotter.XYs, c color.Color) error {
	sort.Slice(pts, func(a, b int) bool { return pts[a].X < pts[b].X })
	line, points, err := plotter.NewLinePoints(pts)
	if err != nil {
		return err
	}
	line.Color, points.Color = c, c
	line.Width = vg.Points(2)
	p.Add(line, points)
	p.Legend.Add(name, line, points)
	return nil
}

// connections draws msgs/s against connections, one line per tool.
func connections(in, out string) error {
	rows, err := readCSV(in)
	if err != nil {
		return err
	}
	series := map[string]plotter.XYs{}
	var tools []string
	var ticks []plot.Tick
	seenC := map[float64]bool{}
	for _, r := range rows { // tool,connections,msgs_per_s
		if _, ok := series[r[0]]; !ok {
			tools = append(tools, r[0])
		}
		x := num(r[1])
		series[r[0]] = append(series[r[0]], plotter.XY{X: x, Y: num(r[2])})
		if !seenC[x] {
			seenC[x] = true
			ticks = append(ticks, plot.Tick{Value: x, Label: r[1]})
		}
	}
	p := plot.New()
	p.Title.Text = "loopback, to smtp-sink"
	p.X.Label.Text = "connections"
	p.Y.Label.Text = "messages/s"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.Y.Min = 0
	p.Legend.Top, p.Legend.Left = true, true
	for i, t := range tools {
		if err := addLine(p, t, series[t], palette[i%len(palette)]); err != nil {
			return err
		}
	}
	return p.Save(6*vg.Inch, 4*vg.Inch, out)
}

// latencies draws herald bench's p50 and p99 against the offered rate.
func latencies(in, out string) error {
	rows, err := readCSV(in)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return nil // herald bench not built: nothing to draw
	}
	var p50, p99 plotter.XYs
	for _, r := range rows { // offered_rate,msgs_per_s,p50_ms,p99_ms,errors
		p50 = append(p50, plotter.XY{X: num(r[0]), Y: num(r[2])})
		p99 = append(p99, plotter.XY{X: num(r[0]), Y: num(r[3])})
	}
	p := plot.New()
	p.Title.Text = "herald bench open loop, to smtp-sink"
	p.X.Label.Text = "offered messages/s"
	p.Y.Label.Text = "latency per message, ms (log)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top, p.Legend.Left = true, true
	if err := addLine(p, "p50", p50, palette[1]); err != nil {
		return err
	}
	if err := addLine(p, "p99", p99, palette[2]); err != nil {
		return err
	}
	return p.Save(6*vg.Inch, 4*vg.Inch, out)
}

type key struct {
	rtt  int
	tool string
}

func run(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return err
	}
	series := map[key]plotter.XYs{}
	var rtts []int
	seen := map[int]bool{}
	for _, r := range rows[1:] { // rtt_ms,connections,tool,messages,seconds,msgs_per_s
		rtt, _ := strconv.Atoi(r[0])
		c, _ := strconv.ParseFloat(r[1], 64)
		v, _ := strconv.ParseFloat(r[5], 64)
		k := key{rtt, r[2]}
		series[k] = append(series[k], plotter.XY{X: c, Y: v})
		if !seen[rtt] {
			seen[rtt] = true
			rtts = append(rtts, rtt)
		}
	}
	sort.Ints(rtts)
	colors := map[string]color.Color{
		"smtp-source":      color.RGBA{R: 120, G: 120, B: 120, A: 255},
		"herald plain":     color.RGBA{R: 230, G: 140, B: 30, A: 255},
		"herald pipelined": color.RGBA{R: 30, G: 100, B: 200, A: 255},
	}
	const w, h = 6 * vg.Inch, 4 * vg.Inch
	img := vgimg.New(w*vg.Length(len(rtts)), h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(rtts)}
	for i, rtt := range rtts {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("campaign through %d ms RTT", rtt)
		p.X.Label.Text = "connections"
		p.Y.Label.Text = "messages/s"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 1, Label: "1"}, {Value: 3, Label: "3"}, {Value: 16, Label: "16"}})
		p.Legend.Top, p.Legend.Left = true, true
		for _, tool := range []string{"smtp-source", "herald plain", "herald pipelined"} {
			pts := series[key{rtt, tool}]
			if len(pts) == 0 {
				continue
			}
			sort.Slice(pts, func(a, b int) bool { return pts[a].X < pts[b].X })
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return err
			}
			line.Color, points.Color = colors[tool], colors[tool]
			line.Width = vg.Points(2)
			p.Add(line, points)
			p.Legend.Add(tool, line, points)
		}
		p.Draw(tiles.At(dc, i, 0))
	}
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	defer o.Close()
	_, err = vgimg.PngCanvas{Canvas: img}.WriteTo(o)
	return err
}
