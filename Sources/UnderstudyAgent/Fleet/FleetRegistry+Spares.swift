import Foundation
import UnderstudyWitness

/// The registry's keys for spare hosts:
///
/// ```
/// /understudy/fleet/descriptions/<vm>   VMDescriptionRecord (the primary's lease)
/// /understudy/fleet/claims/<vm>         SpareClaim (no lease)
/// ```
extension FleetRegistry {
    public static let descriptionsPrefix = prefix + "descriptions/"
    public static let claimsPrefix = prefix + "claims/"

    public static func key(description vm: String) -> String { descriptionsPrefix + vm }
    public static func key(claim vm: String) -> String { claimsPrefix + vm }

    /// A claim as read, with the revision a replacing claim compares against.
    public struct ClaimEntry: Sendable, Equatable {
        public var claim: SpareClaim
        public var modRevision: Int64

        public init(claim: SpareClaim, modRevision: Int64) {
            self.claim = claim
            self.modRevision = modRevision
        }
    }

    /// Every VM's description by VM id (entries that do not decode are skipped).
    public func descriptions() throws(WitnessError) -> [String: VMDescriptionRecord] {
        let decoder = JSONDecoder()
        let all = try client.range(prefix: Self.descriptionsPrefix).compactMap { try? decoder.decode(VMDescriptionRecord.self, from: Data($0.value.utf8)) }
        return Dictionary(all.map { ($0.vm, $0) }) { first, _ in first }
    }

    /// Every claim by VM id.
    public func claims() throws(WitnessError) -> [String: ClaimEntry] {
        let decoder = JSONDecoder()
        var result: [String: ClaimEntry] = [:]
        for kv in try client.range(prefix: Self.claimsPrefix) {
            guard let claim = try? decoder.decode(SpareClaim.self, from: Data(kv.value.utf8)) else { continue }
            result[String(kv.key.dropFirst(Self.claimsPrefix.count))] = ClaimEntry(claim: claim, modRevision: kv.modRevision)
        }
        return result
    }

    /// The claim on `vm`, if any.
    public func claim(on vm: String) throws(WitnessError) -> SpareClaim? {
        try claims()[vm]?.claim
    }

    /// Claims `vm` in one transaction: only if no claim exists (`replacing` nil) or the one read
    /// is still there unchanged (`replacing` its `modRevision`). Of spares racing on the same
    /// read, exactly one wins. Returns whether this one did.
    public func claim(_ vm: String, _ claim: SpareClaim, replacing modRevision: Int64?) throws(WitnessError) -> Bool {
        try client.create(Self.key(claim: vm), value: Self.json(claim), replacing: modRevision)
    }

    /// Sorted-key JSON: the registry's entries hold strings, numbers and booleans only.
    static func json(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        do {
            return String(decoding: try encoder.encode(value), as: UTF8.self)
        } catch {
            preconditionFailure("fleet entries hold strings, numbers and booleans only: \(error)")
        }
    }
}
