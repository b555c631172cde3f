import UnderstudyWitness

/// The two-node pair without a witness: nothing arbitrates, every attempt succeeds.
public final class UnwitnessedFence: ActiveCopyFence {
    public init() {}
    public func tryAcquire(_ intent: ClaimIntent) throws -> Bool { true }
    public var isValid: Bool { true }
    public var holder: String? { nil }
    public var supersession: String? { nil }
    public var term: WitnessTerm? { nil }
    public func release() {}
    public var kind: String { "none (two-node pair, split-brain risk accepted)" }
}
