/// The string API that code owned by other slices of issue 15 still calls: VMProtector and
/// BackupSupervisor's forced failover use a `StopSignal` as a one-shot flag (`trigger("done")`),
/// VMProtector and PairNode's `status()` read `why`. Delete this file once those flags are
/// `Latch`es and both read `reason`.
extension StopSignal {
    @available(*, deprecated, message: "read `reason`")
    public var why: String? { reason.map { "\($0)" } }

    @available(*, deprecated, message: "a one-shot flag is a `Latch`")
    public func trigger(_ flag: String) { trigger(.requested(nil)) }
}
