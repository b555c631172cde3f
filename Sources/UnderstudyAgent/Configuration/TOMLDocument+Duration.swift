extension TOMLDocument {
    /// A period written with its unit, as operators write them: `"30s"`, `"15m"`, `"24h"`, `"7d"`.
    /// Nil when absent; `range` is checked here so that the error can name the line.
    public func duration(_ key: String, in range: ClosedRange<Duration>) throws(ConfigurationError) -> Duration? {
        guard let text = try string(key) else { return nil }
        guard let duration = Self.duration(parsing: text) else {
            throw failure(key, "\"\(text)\" is not a period: a whole number and one of s, m, h, d, e.g. \"24h\"")
        }
        guard range.contains(duration) else {
            throw failure(key, "\"\(text)\" is outside \(Self.text(of: range.lowerBound)) to \(Self.text(of: range.upperBound))")
        }
        return duration
    }

    static func duration(parsing text: String) -> Duration? {
        let seconds: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        guard let unit = text.last, let scale = seconds[unit], let count = Int64(text.dropLast()), count >= 0,
              count <= Int64.max / scale / 1000 else { return nil }
        return .seconds(count * scale)
    }

    /// The largest whole unit: "10s", "365d".
    static func text(of duration: Duration) -> String {
        let seconds = duration.components.seconds
        for (unit, scale) in [("d", Int64(86_400)), ("h", 3600), ("m", 60)] where seconds % scale == 0 && seconds >= scale {
            return "\(seconds / scale)\(unit)"
        }
        return "\(seconds)s"
    }
}
