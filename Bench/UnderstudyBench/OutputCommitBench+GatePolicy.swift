import Foundation
import Logging
import UnderstudyAgent
import UnderstudyHarness
import UnderstudyNetwork
import UnderstudySystem
import UnderstudyTransport
import UnderstudyProtocol

extension OutputCommitBench {
    /// `--output-commit --gate-rules N`: what N gate rules that match no frame cost the protected
    /// guest. The classifier and rules alone (`GatePolicyBench`), then the counter guest protected at
    /// 25 ms with output-triggered epochs, its requests back to back (its full rate through the gate),
    /// without rules and with them, alternating (none, rules, none, rules) so that host drift
    /// falls on both alike. Reports each side's pooled latency and request rate and their ratios.
    func runGatePolicy(rules: Int, logger: Logger) throws -> [String: Any] {
        let micro = GatePolicyBench(rules: rules, framesPerRun: 2_000_000).run()
        let image = TestGuest.image
        guard let preload = PreloadLibrary.locate() else { throw BenchError("\(PreloadLibrary.fileName) not found next to the bench") }
        let temporary = try TemporaryDirectory("ocbench")
        defer { temporary.remove() }
        let certificates = "\(temporary.path)/certs"
        _ = try CertificateAuthority.initialize(directory: certificates, nodes: ["primary", "backup"])
        let network = try PairNetwork(tapCount: 1)
        defer { network.remove() }
        let mode = Mode.protected(intervalMs: OutputCommitBench.diskIntervalMilliseconds, outputTriggered: true)
        let policies = [("no rules", GatePolicy.allowAll), ("\(rules) rules", GatePolicyBench.nonMatchingRules(rules))]
        var runs: [(side: Int, run: GuestRun)] = []
        for round in 0..<2 {
            for (side, (name, policy)) in policies.enumerated() {
                let run = try runGuest(mode, label: "\(mode.label), \(name) (\(round + 1))", measureDisk: false, network: network, image: image,
                                       preload: preload, workspace: temporary.path, certificates: certificates, policy: policy,
                                       maxThinkMs: 0, logger: logger)
                // The two counts are read one after the other while frames flow: a frame in flight
                // (one per gate thread) may be in one and not yet in the other.
                if side == 1, abs(Int64(run.policyFrames) - Int64(run.gateFrames)) > 2 {
                    throw BenchError("the policy saw \(run.policyFrames) of the gate's \(run.gateFrames) frames: it was not on the path")
                }
                runs.append((side, run))
            }
        }
        func summary(_ side: Int) -> [String: Any] {
            let mine = runs.filter { $0.side == side }.map(\.run)
            let latencies = mine.flatMap(\.latenciesMs).sorted()
            let seconds = mine.map(\.latencySeconds).reduce(0, +)
            let frames = mine.map(\.gateFrames).reduce(0, +)
            return ["label": policies[side].0, "requests": latencies.count, "latency_p50_ms": percentile(latencies, 0.5),
                    "latency_p99_ms": percentile(latencies, 0.99), "requests_per_second": Double(latencies.count) / max(seconds, 1e-9),
                    "gate_frames_per_second": Double(frames) / max(seconds, 1e-9), "gate_frames": frames]
        }
        let without = summary(0), with = summary(1)
        let rateRatio = (with["requests_per_second"] as! Double) / (without["requests_per_second"] as! Double)
        let p50Ratio = (with["latency_p50_ms"] as! Double) / (without["latency_p50_ms"] as! Double)
        let framesPerSecond = with["gate_frames_per_second"] as! Double
        // The share of one core the rules' added cost takes at the guest's frame rate.
        let coreShare = framesPerSecond * max(0, micro["added_ns_per_frame"] as! Double) / 1e9
        FileHandle.standardError.write(Data(String(format: "gate policy, guest at full rate: %.1f requests/s without rules, %.1f with %ld (ratio %.3f); latency p50 ratio %.3f; %.0f frames/s through the gate, the rules take %.5f of a core\n",
                                                   without["requests_per_second"] as! Double, with["requests_per_second"] as! Double, rules,
                                                   rateRatio, p50Ratio, framesPerSecond, coreShare).utf8))
        return ["microbench": micro, "without_rules": without, "with_rules": with, "requests_per_second_ratio": rateRatio,
                "latency_p50_ratio": p50Ratio, "rules_core_share_at_guest_rate": coreShare,
                "order": runs.map(\.run.label)]
    }
}
