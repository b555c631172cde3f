import Foundation

/// One scrape of an agent's Prometheus endpoint (`[metrics] listen`), parsed: every sample by its
/// series (name and labels exactly as exposed). Benchmarks scrape before and after a measured
/// window and subtract, so the window's figures leave out boot and the initial sync.
public struct MetricsExposition: Sendable, Equatable {
    /// Series (e.g. `understudy_checkpoints_total{vm="web-1"}`) → value.
    public let samples: [String: Double]

    public init(text: String) {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            // Label values never contain a space in our metrics, so the last space ends the series.
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        self.samples = samples
    }

    /// The sum of all series of metric `name` (whatever their labels); 0 when there is none.
    public func total(_ name: String) -> Double {
        samples.reduce(0) { sum, sample in
            let series = sample.key
            return series == name || series.hasPrefix(name + "{") ? sum + sample.value : sum
        }
    }

    /// The sums of metric `name`'s series by the value of their label `label` (series without it left out).
    public func totals(_ name: String, by label: String) -> [String: Double] {
        var totals: [String: Double] = [:]
        for (series, value) in samples where series.hasPrefix(name + "{") {
            guard let range = series.range(of: "\(label)=\""), let end = series[range.upperBound...].firstIndex(of: "\"") else { continue }
            totals[String(series[range.upperBound..<end]), default: 0] += value
        }
        return totals
    }

    /// The cumulative buckets of histogram `name` (`NAME_bucket{…,le="X"}`), by upper bound,
    /// `+Inf` last.
    public func histogram(_ name: String) -> [(upperBound: Double, count: Double)] {
        let prefix = name + "_bucket{"
        return samples.compactMap { series, value -> (Double, Double)? in
            guard series.hasPrefix(prefix), let range = series.range(of: "le=\""),
                  let end = series[range.upperBound...].firstIndex(of: "\"") else { return nil }
            let bound = series[range.upperBound..<end]
            return (bound == "+Inf" ? .infinity : Double(bound) ?? .nan, value)
        }
        .filter { !$0.0.isNaN }
        .sorted { $0.0 < $1.0 }
        .map { (upperBound: $0.0, count: $0.1) }
    }
}
