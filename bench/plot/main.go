// Command plot draws bench/ results as PNG: throughput against connections
// for each RTT of the WAN profile (bench/wan.sh).
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"image/color"
	"os"
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
	out := flag.String("out", "wan.png", "the PNG to write")
	flag.Parse()
	if err := run(*wan, *out); err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
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
