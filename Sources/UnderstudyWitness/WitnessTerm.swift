/// A term of a VM's witness: the how-manieth claim of its active key this is, and the node that
/// made it. Kept in etcd under a key without a lease (`WitnessConfiguration.termKey`), so it
/// outlives every lease: an absent active key does not mean that nobody was active since.
///
/// Every claim of the active key writes the next term in the same transaction, so terms only
/// grow, and a node that held term T can tell whether anyone claimed the VM after it.
public struct WitnessTerm: Sendable, Equatable, CustomStringConvertible {
    /// 1 for the first claim ever, one more for each claim after it.
    public var number: UInt64
    /// The node that made the claim.
    public var holder: String

    public init(number: UInt64, holder: String) {
        precondition(number > 0, "terms count claims from 1")
        self.number = number
        self.holder = holder
    }

    /// The term a claim by `node` writes after `current` (nil: no claim yet).
    public static func next(after current: WitnessTerm?, by node: String) -> WitnessTerm {
        WitnessTerm(number: (current?.number ?? 0) + 1, holder: node)
    }

    /// As stored in etcd and in the node's term record: "<number> <holder>".
    public var encoded: String { "\(number) \(holder)" }

    /// Parses `encoded`; nil when it is not a term (a positive number, a space, a non-empty name).
    public init?(encoded text: Substring) {
        guard let space = text.firstIndex(of: " "), let number = UInt64(text[..<space]), number > 0 else { return nil }
        let holder = text[text.index(after: space)...]
        guard !holder.isEmpty else { return nil }
        self.init(number: number, holder: String(holder))
    }

    public var description: String { "term \(number) (\(holder))" }
}
