import Foundation
import KDTensor
import KDTrain

/// `scaling.svg`: efficiency against ranks (log₂ axis), measured and projected (drawn with `SVG`).
extension ScalingReport {
    public var svg: String {
        let w = 720.0, h = 420.0, l = 70.0, r = 70.0, t = 40.0, b = 60.0
        let pw = w - l - r, ph = h - t - b
        let proj = projection
        let allN = Array(Set(points.map { $0.ranks } + proj.map { $0.ranks })).sorted()
        let maxN = Double(allN.last ?? 1), minN = Double(allN.first ?? 1)
        let baseRate = base.map { $0.samplesPerSecond / Double($0.ranks) } ?? 0
        let projRate = proj.map { Double($0.globalBatch) / $0.stepSeconds }
        let maxY = max(points.map { $0.samplesPerSecond }.max() ?? 1, projRate.max() ?? 0, baseRate * maxN) * 1.1
        func x(_ n: Double) -> Double { l + (maxN > minN ? log2(n / minN) / log2(maxN / minN) : 0.5) * pw }
        func y(_ v: Double) -> Double { t + ph - v / maxY * ph }
        func ye(_ e: Double) -> Double { t + ph - min(e, 1.2) / 1.2 * ph }
        let polyline = SVG.polyline
        var s = SVG.open(width: w, height: h)
        s += "<text x=\"\(w / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">"
        s += "KDGraph \(mode.rawValue) scaling — \(configName)</text>\n"
        s += "<line x1=\"\(l)\" y1=\"\(t + ph)\" x2=\"\(l + pw)\" y2=\"\(t + ph)\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(l)\" y1=\"\(t)\" x2=\"\(l)\" y2=\"\(t + ph)\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(l + pw)\" y1=\"\(t)\" x2=\"\(l + pw)\" y2=\"\(t + ph)\" stroke=\"black\"/>\n"
        for n in allN {
            let px = x(Double(n))
            s += "<line x1=\"\(px)\" y1=\"\(t + ph)\" x2=\"\(px)\" y2=\"\(t + ph + 5)\" stroke=\"black\"/>"
            s += "<text x=\"\(px)\" y=\"\(t + ph + 20)\" text-anchor=\"middle\">\(n)</text>\n"
        }
        for i in 0...4 {
            let v = maxY * Double(i) / 4
            s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.0f</text>\n", l - 6, y(v) + 4, v)
            let e = 1.2 * Double(i) / 4
            s += String(format: "<text x=\"%.1f\" y=\"%.1f\">%.0f%%</text>\n", l + pw + 6, ye(e) + 4, e * 100)
        }
        s += "<text x=\"\(w / 2)\" y=\"\(h - 15)\" text-anchor=\"middle\">ranks (log scale)</text>\n"
        s += "<text transform=\"translate(18 \(t + ph / 2)) rotate(-90)\" text-anchor=\"middle\" fill=\"#1f77b4\">"
        s += "samples/s</text>\n"
        s += "<text transform=\"translate(\(w - 14) \(t + ph / 2)) rotate(90)\" text-anchor=\"middle\" "
        s += "fill=\"#d62728\">efficiency</text>\n"
        // ideal throughput (linear in ranks) and ideal efficiency 100%, dashed
        s += polyline(allN.map { (x(Double($0)), y(baseRate * Double($0))) }, "#1f77b4", "6 4")
        s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#d62728\" "
                        + "stroke-dasharray=\"6 4\"/>\n",
                    x(minN), ye(1), x(maxN), ye(1))
        s += polyline(points.map { (x(Double($0.ranks)), y($0.samplesPerSecond)) }, "#1f77b4", nil)
        s += polyline(points.map { (x(Double($0.ranks)), ye(efficiency($0))) }, "#d62728", nil)
        for p in points {
            s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#1f77b4\"/>",
                        x(Double(p.ranks)), y(p.samplesPerSecond))
            s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#d62728\"/>\n",
                        x(Double(p.ranks)), ye(efficiency(p)))
        }
        if proj.count > 1 {
            s += polyline(zip(proj, projRate).map { (x(Double($0.0.ranks)), y($0.1)) }, "#1f77b4", "2 4")
            s += polyline(proj.map { (x(Double($0.ranks)), ye($0.efficiency)) }, "#d62728", "2 4")
            for (p, rate) in zip(proj, projRate) where p.measuredEfficiency == nil {
                s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"white\" stroke=\"#1f77b4\"/>",
                            x(Double(p.ranks)), y(rate))
                s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"white\" stroke=\"#d62728\"/>\n",
                            x(Double(p.ranks)), ye(p.efficiency))
            }
        }
        s += "<g transform=\"translate(\(l + 10) \(t + 0.3 * ph))\">"
        s += "<line x1=\"0\" y1=\"0\" x2=\"20\" y2=\"0\" stroke=\"#1f77b4\" stroke-width=\"2\"/>"
        s += "<text x=\"26\" y=\"4\">throughput</text>"
        s += "<line x1=\"0\" y1=\"16\" x2=\"20\" y2=\"16\" stroke=\"#d62728\" stroke-width=\"2\"/>"
        s += "<text x=\"26\" y=\"20\">efficiency</text>"
        s += "<line x1=\"0\" y1=\"32\" x2=\"20\" y2=\"32\" stroke=\"gray\" stroke-dasharray=\"6 4\"/>"
        s += "<text x=\"26\" y=\"36\">ideal</text>"
        if proj.count > 1 {
            s += "<line x1=\"0\" y1=\"48\" x2=\"20\" y2=\"48\" stroke=\"gray\" stroke-dasharray=\"2 4\"/>"
            s += "<text x=\"26\" y=\"52\">projected (model)</text>"
        }
        s += "</g>\n</svg>\n"
        return s
    }
}
