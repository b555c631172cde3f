/// The faults of `understudy-bench --soak`, each a `ConsistencyHarness` scenario.
public enum SoakKind: String, Codable, Sendable, CaseIterable {
    /// SIGKILL of the primary's agent and QEMU; the backup fails over by itself.
    case sigkillPrimary = "sigkill_primary"
    /// SIGSTOP of the primary's agent and QEMU, takeover through the witness, then SIGCONT.
    case sigstopPrimary = "sigstop_primary"
    /// The replication link cut and restored (the primary serves unprotected meanwhile), then a kill.
    case cutLink = "cut_link"
    /// `understudy switchover`.
    case switchover
    /// SIGKILL of the backup's agent and standby QEMU; the primary serves on.
    case backupKill = "backup_kill"
    /// The primary cut off from both the backup and the etcd witness while it runs on.
    case witnessPartition = "witness_partition"

    /// The trial that carries this fault out.
    public var scenario: ConsistencyHarness.Scenario {
        switch self {
        case .sigkillPrimary: .kill
        case .sigstopPrimary: .stopThenContinue
        case .cutLink: .cutLinkThenKill
        case .switchover: .switchover
        case .backupKill: .backupKill
        case .witnessPartition: .partitionWithWitness
        }
    }

    /// Whether the VM moves to the other node, so that the client's outage is a failover time.
    public var movesTheVM: Bool { scenario.movesTheVM }

    /// `count` kinds drawn from `seed`: the same seed gives the same sequence. Each round of
    /// `allCases.count` trials is a random permutation of all kinds, so that a short soak still
    /// meets every kind and a long one meets them equally often.
    public static func draw(count: Int, seed: UInt64) -> [SoakKind] {
        var generator = SplitMix64(seed: seed)
        var kinds: [SoakKind] = []
        kinds.reserveCapacity(count)
        while kinds.count < count {
            var round = allCases
            // Fisher–Yates with the generator's raw output: independent of the standard library's
            // choice of algorithm for `shuffle(using:)`, so a seed stays reproducible.
            for index in stride(from: round.count - 1, to: 0, by: -1) {
                round.swapAt(index, Int(generator.next() % UInt64(index + 1)))
            }
            kinds.append(contentsOf: round.prefix(count - kinds.count))
        }
        return kinds
    }
}
