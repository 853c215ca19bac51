import Foundation

/// The SVG drawing shared by KDGraph's charts (`curves.svg` of a run, `scaling.svg` of a scaling report):
/// the document's opening, polylines, escaped text, "nice" axis ticks, and line charts laid out as small
/// multiples.
public enum SVG {
    /// The opening `<svg>` element (sans-serif, 12 px) and a white background.
    public static func open(width: Double, height: Double) -> String {
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
        s += "font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        return s
    }

    /// An unfilled 2-pixel polyline through `points`, dashed with `dash` (an SVG dash array) when given.
    public static func polyline(_ points: [(Double, Double)], _ color: String, _ dash: String?) -> String {
        let coords = points.map { String(format: "%.1f,%.1f", $0.0, $0.1) }.joined(separator: " ")
        let dashed = dash.map { " stroke-dasharray=\"\($0)\"" } ?? ""
        return "<polyline points=\"\(coords)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dashed)/>\n"
    }

    /// `text` with `&`, `<`, `>` and `"` escaped for element content and attribute values.
    public static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// Ticks at 1, 2 or 5 × 10ᵏ spacing covering [lo, hi] with about `count` intervals: the first tick
    /// ≤ lo, the last ≥ hi. A zero-width range is widened to ±|lo|/10 (±1 at 0).
    public static func ticks(_ lo: Double, _ hi: Double, count: Int = 4) -> [Double] {
        var lo = lo, hi = hi
        if !(hi > lo) { let d = lo == 0 ? 1 : abs(lo) / 10; lo -= d; hi += d }
        let raw = (hi - lo) / Double(max(count, 1))
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw * 0.999 } ?? 10 * magnitude
        let first = floor(lo / step + 1e-9), last = ceil(hi / step - 1e-9)
        return stride(from: first, through: last, by: 1).map { $0 * step }
    }

    /// A tick's label: integers without decimals, small or large values in exponent notation, others
    /// with the decimals `step` needs.
    public static func label(_ v: Double, step: Double) -> String {
        if v == 0 { return "0" }
        if abs(v) >= 1e5 || abs(v) < 1e-3 { return String(format: "%.1e", v) }
        let decimals = max(0, Int(-floor(log10(step) + 1e-9)))
        return String(format: "%.\(decimals)f", v)
    }

    /// One line of a chart: its name (the legend), colour and points (non-finite ones are left out).
    public struct Series {
        public var name: String
        public var color: String
        public var points: [(x: Double, y: Double)]
        public init(name: String, color: String, points: [(x: Double, y: Double)]) {
            self.name = name; self.color = color; self.points = points
        }
    }

    /// One panel of small multiples: a title, the axes' labels and its lines.
    public struct Panel {
        public var title: String
        public var xLabel: String
        public var series: [Series]
        public init(title: String, xLabel: String, series: [Series]) {
            self.title = title; self.xLabel = xLabel; self.series = series
        }
    }

    /// The colours of successive series (matplotlib's "tab10").
    public static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                                 "#7f7f7f", "#bcbd22", "#17becf"]

    /// `panels` as small multiples, `columns` per row, each `panelWidth` × `panelHeight` pixels, under
    /// `title`: every panel has its own axes with tick labels, its title, its x label and, with more than
    /// one series, a legend. A panel without finite points says "no data".
    public static func smallMultiples(title: String, panels: [Panel], columns: Int = 2,
                                      panelWidth: Double = 460, panelHeight: Double = 280) -> String {
        let rows = (panels.count + columns - 1) / max(columns, 1)
        let top = 36.0
        let w = panelWidth * Double(min(columns, max(panels.count, 1))), h = top + panelHeight * Double(rows)
        var s = open(width: w, height: h)
        s += "<text x=\"\(w / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(escape(title))</text>\n"
        for (i, panel) in panels.enumerated() {
            let x0 = panelWidth * Double(i % columns), y0 = top + panelHeight * Double(i / columns)
            s += "<g transform=\"translate(\(x0) \(y0))\">\n"
            s += chart(panel, width: panelWidth, height: panelHeight)
            s += "</g>\n"
        }
        return s + "</svg>\n"
    }

    /// One panel's content in a `width` × `height` box at the origin.
    static func chart(_ panel: Panel, width: Double, height: Double) -> String {
        let l = 70.0, r = 16.0, t = 26.0, b = 42.0
        let pw = width - l - r, ph = height - t - b
        var s = "<text x=\"\(l + pw / 2)\" y=\"16\" text-anchor=\"middle\" font-weight=\"bold\">"
        s += "\(escape(panel.title))</text>\n"
        let frame = String(format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                               + "stroke=\"black\"/>\n", l, t, pw, ph)
        s += "<text x=\"\(l + pw / 2)\" y=\"\(height - 6)\" text-anchor=\"middle\">\(escape(panel.xLabel))</text>\n"
        let series = panel.series.map { sr in
            Series(name: sr.name, color: sr.color, points: sr.points.filter { $0.x.isFinite && $0.y.isFinite })
        }
        let all = series.flatMap(\.points)
        guard let minX = all.map(\.x).min(), let maxX = all.map(\.x).max(),
              let minY = all.map(\.y).min(), let maxY = all.map(\.y).max() else {
            s += "<text x=\"\(l + pw / 2)\" y=\"\(t + ph / 2)\" text-anchor=\"middle\" fill=\"gray\">no data</text>\n"
            return s + frame
        }
        let xt = ticks(minX, maxX), yt = ticks(minY, maxY)
        let xs = (xt.first!, xt.last!), ys = (yt.first!, yt.last!)
        func px(_ v: Double) -> Double { l + (v - xs.0) / (xs.1 - xs.0) * pw }
        func py(_ v: Double) -> Double { t + ph - (v - ys.0) / (ys.1 - ys.0) * ph }
        let xStep = xt.count > 1 ? xt[1] - xt[0] : 1, yStep = yt.count > 1 ? yt[1] - yt[0] : 1
        for v in xt {
            s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>",
                        px(v), t, px(v), t + ph)
            s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", px(v), t + ph + 16)
            s += "\(label(v, step: xStep))</text>\n"
        }
        for v in yt {
            s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>",
                        l, py(v), l + pw, py(v))
            s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", l - 6, py(v) + 4)
            s += "\(label(v, step: yStep))</text>\n"
        }
        s += frame   // over the grid lines
        for sr in series where !sr.points.isEmpty {
            if sr.points.count == 1 {
                s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" ", px(sr.points[0].x), py(sr.points[0].y))
                s += "fill=\"\(sr.color)\"/>\n"
            } else {
                s += polyline(sr.points.map { (px($0.x), py($0.y)) }, sr.color, nil)
            }
        }
        if series.count > 1 {
            s += "<g transform=\"translate(\(l + pw - 130) \(t + 8))\">"
            for (i, sr) in series.enumerated() {
                let y = Double(i) * 15
                s += "<line x1=\"0\" y1=\"\(y)\" x2=\"18\" y2=\"\(y)\" stroke=\"\(sr.color)\" stroke-width=\"2\"/>"
                s += "<text x=\"24\" y=\"\(y + 4)\">\(escape(sr.name))</text>"
            }
            s += "</g>\n"
        }
        return s
    }
}
