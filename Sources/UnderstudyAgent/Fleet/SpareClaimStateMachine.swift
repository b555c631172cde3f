/// When a spare host claims a VM, without I/O: `SpareHost` reads the registry every period,
/// passes what it read and the time, and carries out the claim this returns (one etcd
/// transaction, `FleetRegistry.claim`).
///
/// A VM is claimed once, for longer than `reprotectAfter` (`fleet.reprotect_after_s`) without
/// interruption, all of this held:
/// - exactly one node runs it as primary, on another host than this one, and it is not
///   protected (`connecting`, `holding` or `unprotected`);
/// - the primary's backup (its `peer`) publishes no entry for the VM: its lease is gone with it;
/// - no live claim: none, or the claim names the lost backup itself (the primary followed it,
///   then lost it too), or the claimed spare never published an entry for the VM while this
///   host saw the claim unchanged for `reprotectAfter` (it died before it could serve);
/// - the primary published the VM's description (what the spare's backup node is made from);
/// - this host runs no backup of the VM yet, and has a backup slot with space for the VM's memory.
///
/// One claim per decision: the next read counts the claimed VM in this host's capacity.
public struct SpareClaimStateMachine: Sendable {
    public typealias Instant = ContinuousClock.Instant

    /// One read of the registry, and this host's state.
    public struct Observation: Sendable {
        public var records: [FleetRecord]
        public var descriptions: [String: VMDescriptionRecord]
        public var claims: [String: FleetRegistry.ClaimEntry]
        /// This host's capacity now (its backups counted); nil: unknown, nothing is claimed.
        public var capacity: HostCapacity?
        /// The VMs this spare runs a backup node for.
        public var serving: Set<String>

        public init(records: [FleetRecord], descriptions: [String: VMDescriptionRecord], claims: [String: FleetRegistry.ClaimEntry],
                    capacity: HostCapacity?, serving: Set<String>) {
            self.records = records
            self.descriptions = descriptions
            self.claims = claims
            self.capacity = capacity
            self.serving = serving
        }
    }

    /// A claim to make: `replacing` the revision of the stale claim read (nil: there was none).
    public struct Claim: Sendable, Equatable {
        public var vm: String
        public var replacing: Int64?
        public var lostBackup: String
        public var description: VMDescriptionRecord
    }

    /// Primary phases in which the VM has no backup in sync.
    static let unprotectedPhases: Set<String> = ["connecting", "holding", "unprotected"]

    public let host: String
    public let reprotectAfter: Duration
    /// Since when each VM has met every condition but the time.
    private(set) var candidateSince: [String: Instant] = [:]
    /// Since when this host has seen each claim unchanged (by revision).
    private var claimSeen: [String: (revision: Int64, since: Instant)] = [:]

    public init(host: String, reprotectAfter: Duration) {
        self.host = host
        self.reprotectAfter = reprotectAfter
    }

    /// The claim to make now, if any (the VM unprotected longest first).
    public mutating func observe(_ observation: Observation, at now: Instant) -> Claim? {
        claimSeen = observation.claims.reduce(into: [:]) { seen, entry in
            let previous = claimSeen[entry.key]
            seen[entry.key] = previous?.revision == entry.value.modRevision ? previous : (entry.value.modRevision, now)
        }
        let byVM = Dictionary(grouping: observation.records, by: \.vm)
        var candidates: [String: (replacing: Int64?, lost: String)] = [:]
        for (vm, entries) in byVM {
            if let found = candidate(vm: vm, entries: entries, observation: observation, now: now) { candidates[vm] = found }
        }
        candidateSince = candidates.keys.reduce(into: [:]) { since, vm in since[vm] = candidateSince[vm] ?? now }
        guard let capacity = observation.capacity, capacity.backupSlots > 0 else { return nil }
        let free = capacity.replicaSpaceFreeBytes ?? capacity.memoryAvailableBytes
        let due = candidates.keys
            .filter { now - candidateSince[$0]! >= reprotectAfter }
            .compactMap { vm in observation.descriptions[vm].map { (vm, $0) } }
            .filter { $0.1.memoryBytes <= free }
            .sorted { (candidateSince[$0.0]!, $0.0) < (candidateSince[$1.0]!, $1.0) }
        guard let (vm, description) = due.first, let found = candidates[vm] else { return nil }
        return Claim(vm: vm, replacing: found.replacing, lostBackup: found.lost, description: description)
    }

    /// Whether `vm` may be claimed by this host once enough time passed; what the claim replaces.
    private func candidate(vm: String, entries: [FleetRecord], observation: Observation, now: Instant) -> (replacing: Int64?, lost: String)? {
        let running = entries.filter { $0.role == .primary && !["fenced", "stopped", "switched over"].contains($0.state) }
        guard running.count == 1, let primary = running.first, primary.host != host,
              Self.unprotectedPhases.contains(primary.state), !observation.serving.contains(vm) else { return nil }
        let lost = primary.peer
        guard !entries.contains(where: { $0.node == lost }) else { return nil }
        guard let entry = observation.claims[vm] else { return (nil, lost) }
        if entry.claim.node == lost { return (entry.modRevision, lost) }
        // A claim the primary has not followed yet: live while its spare serves or may still start.
        guard !entries.contains(where: { $0.node == entry.claim.node }), let seen = claimSeen[vm],
              now - seen.since >= reprotectAfter else { return nil }
        return (entry.modRevision, lost)
    }
}
