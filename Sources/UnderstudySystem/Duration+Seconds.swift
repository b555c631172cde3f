extension Duration {
    /// The duration in seconds as a Double.
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// The duration in milliseconds as a Double (latencies, pauses).
    public var milliseconds: Double { seconds * 1000 }

    /// The duration in whole milliseconds (for messages).
    public var wholeMilliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }

    /// The duration in whole milliseconds, rounded up: a poll timeout that must not end early.
    public var wholeMillisecondsRoundedUp: Int64 {
        wholeMilliseconds + (components.attoseconds % 1_000_000_000_000_000 != 0 ? 1 : 0)
    }
}
