import Synchronization
import UnderstudyNetwork

/// The node's gate policy now, and the gates that apply it: a reload (SIGHUP) sets it once and
/// every running gate swaps to it, as does a gate started later (an activation's, a standby's).
public final class GatePolicyControl: Sendable {
    private struct Attached {
        weak var gate: OutputGate?
    }

    private let state: Mutex<(policy: GatePolicy, gates: [Attached])>

    public init(_ policy: GatePolicy) {
        state = Mutex((policy, []))
    }

    public var policy: GatePolicy { state.withLock { $0.policy } }

    /// Swaps every attached gate to `policy`, each between two of its frames.
    public func set(_ policy: GatePolicy) {
        // Under the lock, so that two sets, or a set and an attach, cannot leave a gate with the older policy.
        state.withLock { state in
            state.policy = policy
            state.gates.removeAll { $0.gate == nil }
            for attached in state.gates { attached.gate?.setPolicy(policy) }
        }
    }

    /// Gives `gate` the policy now and every later one; the gate is held weakly.
    func attach(_ gate: OutputGate) {
        state.withLock { state in
            gate.setPolicy(state.policy)
            state.gates.removeAll { $0.gate == nil }
            state.gates.append(Attached(gate: gate))
        }
    }
}
