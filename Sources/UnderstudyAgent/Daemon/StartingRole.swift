/// How `understudy run` picks the role to start in. Pure: the inputs are the configuration's
/// `node.role`, the node's role record and the operator's `--start-as`.
public enum StartingRole {
    public struct Decision: Sendable, Equatable {
        public let start: PairNode.Start
        /// For the log: why this role.
        public let reason: String
    }

    public static func decide(configured: NodeRole, last: RoleRecord.Entry?, override: NodeRole?) -> Decision {
        if let override {
            return Decision(start: override == .primary ? .primary : .backup, reason: "--start-as \(override.rawValue)")
        }
        switch last {
        case nil:
            return configured == .primary
                ? Decision(start: .primaryUnlessActiveElsewhere, reason: "first start, node.role = primary")
                : Decision(start: .backup, reason: "first start, node.role = backup")
        case .backup:
            return Decision(start: .backup, reason: "this node was the backup when it stopped")
        case .primaryStopped:
            return Decision(start: .primaryUnlessActiveElsewhere, reason: "this node stopped the VM in an orderly way: it runs nowhere else")
        case .primary:
            // The node died while running the VM: its peer has most likely taken over from a
            // newer state than this node's disk. Booting here could make two copies.
            return Decision(start: .backup, reason: "this node was running the VM when it stopped unexpectedly, and its peer may have taken over; "
                            + "if the VM runs nowhere, start it here with `understudy run --start-as primary`")
        }
    }
}
