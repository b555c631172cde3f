/// The two-node pair without a witness: nothing arbitrates, every attempt succeeds.
public final class UnwitnessedFence: ActiveCopyFence {
    public init() {}
    public func tryAcquire() throws -> Bool { true }
    public var isValid: Bool { true }
    public var holder: String? { nil }
    public func release() {}
    public var kind: String { "none (two-node pair, split-brain risk accepted)" }
}
