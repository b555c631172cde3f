extension ConsistencyHarness {
    /// How a trial disturbs the pair, and how the VM comes to run where it runs at the end.
    public enum Scenario: String, Sendable, CaseIterable {
        /// SIGKILL the primary; the operator stops the backup agent and runs `understudy activate`.
        case killThenActivate = "kill, manual activation"
        /// SIGKILL the primary; the backup fails over by itself (heartbeats, no witness, opted in).
        case kill = "kill, automatic failover"
        /// SIGSTOP the primary (a hung host): it keeps its connections open but says nothing.
        case hang = "hang, automatic failover"
        /// With an etcd witness: SIGSTOP the primary's agent and QEMU (a host that froze), the
        /// backup takes over once the lease expired, then SIGCONT both. The resumed primary must
        /// not send a single frame (its lease is gone) and must be fenced into the backup.
        case stopThenContinue = "stop, takeover with a witness, continue"
        /// The replication link goes silent (a cut cable) while a second heartbeat path still
        /// works: no failover; the primary continues unprotected after the grace period and is
        /// protected again once the link is back; then it is killed and the backup takes over.
        case cutLinkThenKill = "link cut and restored, then kill"
        /// The same with the safety policy: after the grace period output stays held (the client
        /// gets nothing) until the backup acknowledges again.
        case cutLinkSafetyThenKill = "link cut and restored (policy safety), then kill"
        /// `understudy switchover`: a planned swap, the old primary becomes the backup.
        case switchover
        /// SIGKILL the backup (agent and standby QEMU): the primary serves on, unprotected after
        /// its grace period (policy availability); the client's output must simply continue.
        case backupKill = "backup kill"
        /// Synchronous protection over an emulated WAN link (40 ms one way, 20 Mbit/s), then a
        /// kill: output commit must hold on a slow link as on a LAN.
        case wanSynchronousKill = "synchronous over a 40 ms, 20 Mbit/s link, then kill"
        /// With an etcd witness: the primary is cut off from the backup and from the witness
        /// while it keeps running. The backup may take over only once the primary's lease has
        /// expired; the primary must not send anything from then on; when the partition heals
        /// the old primary is fenced and becomes the backup of the new one.
        case partitionWithWitness = "partition with a witness"
        /// With an etcd witness: the replication link is cut, the primary runs unprotected
        /// (policy availability, lease held), then its agent stalls (SIGSTOP) while its QEMU runs
        /// on. The backup takes over once the lease expired; when the agent resumes, nothing the
        /// guest wrote meanwhile, or that waited in the gate, may leave; it is fenced into a backup.
        case stallWhileUnprotected = "stall of an unprotected primary with a witness"

        /// Whether the pair uses an etcd witness (started for the trial).
        public var witnessed: Bool { [.partitionWithWitness, .stallWhileUnprotected, .stopThenContinue].contains(self) }

        /// Whether the VM ends on the backup node (every scenario but a backup kill moves it).
        public var movesTheVM: Bool { self != .backupKill }

        /// Whether the old primary outlives the event and must end as the new primary's backup.
        var oldPrimaryBecomesBackup: Bool { [.switchover, .partitionWithWitness, .stopThenContinue].contains(self) }
    }
}
