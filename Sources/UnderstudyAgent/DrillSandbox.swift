import Foundation
import Logging
import Synchronization
import UnderstudyNetwork
import UnderstudyQEMU
import UnderstudySystem
import UnderstudyTransport

/// The clone's network: a namespace of the drill's own whose only interfaces are the TAPs behind
/// the clone's NICs (one per NIC of the VM: the clone's devices must match the checkpoint's). The
/// TAPs are created (by the output gates, which open them by name) in this namespace, then moved
/// into the drill's; each gate's open descriptor follows its device. The probe reaches the guest
/// through the first NIC, which alone gets the sandbox's address.
final class DrillSandbox: @unchecked Sendable {
    let namespace: String
    /// The TAPs, one per NIC.
    let taps: [String]
    /// The clone's NICs and their gates (none when the VM has no NIC).
    let devices: GuestDevices

    /// - Parameter policy: the production gate's policy, so that the rehearsal sees the same firewall.
    /// - Parameter macs: the VM's NICs' addresses, in order.
    init(tag: String, vm: VMDescription, macs: [String], address: String?, outputBufferBytes: Int, policy: GatePolicy,
         logger: Logger) throws {
        namespace = "us-drill-\(tag)"
        let taps = macs.indices.map { "usdrill\(tag)\($0 == 0 ? "" : "\($0)")" }
        self.taps = taps
        // Named in the log before it exists: an agent killed during a drill leaves this namespace
        // behind, and whoever cleans up after it finds it by the name its log gives (seen: a
        // namespace left after a test run, named by no log, when the log line came after this).
        logger.info("drill sandbox", metadata: ["sandbox": "\(namespace)"])
        try HostCommand.run(["ip", "netns", "add", namespace])
        do {
            devices = try GuestDevices(vm: vm, diskImages: [], nics: zip(taps, macs).map { GuestDevices.NIC(tap: $0, mac: $1) },
                                       outputBufferBytes: outputBufferBytes,
                                       role: .unprotected, fence: nil, policy: GatePolicyControl(policy), logger: logger)
        } catch {
            _ = try? HostCommand.run(["ip", "netns", "delete", namespace])
            throw error
        }
        do {
            try HostCommand.run(["ip", "-n", namespace, "link", "set", "lo", "up"])
            for (index, tap) in taps.enumerated() {
                try HostCommand.run(["ip", "link", "set", tap, "netns", namespace])
                if index == 0, let address { try HostCommand.run(["ip", "-n", namespace, "addr", "add", address, "dev", tap]) }
                try HostCommand.run(["ip", "-n", namespace, "link", "set", tap, "up"])
            }
        } catch {
            remove()
            throw error
        }
    }

    var qemuArguments: [String] { devices.qemuArguments }

    /// Stops the gate (its TAP, created without persistence, goes with its descriptor) and
    /// deletes the namespace (with any interface still in it). Idempotent.
    func remove() {
        devices.stop()
        _ = try? HostCommand.run(["ip", "netns", "delete", namespace])
    }

    /// Probes until success (nil), the deadline, or `stop`; returns why it failed.
    /// - Parameter scratch: a directory of the drill's own, for an exec probe's output.
    func waitForProbe(_ probe: DrillProbe, serialLog: String, scratch: String, deadline: ContinuousClock.Instant, timeout: Duration,
                      stop: StopSignal) -> String? {
        switch probe {
        case .tcp(let endpoint):
            return insideNamespace {
                var last = "none"
                while true {
                    if let reason = stop.reason { return "drill stopped: \(reason)" }
                    guard ContinuousClock.now < deadline else {
                        return "the probe \(probe) did not succeed within \(timeout) (last attempt: \(last))"
                    }
                    do {
                        try endpoint.connectOnce(timeoutMilliseconds: 500)
                        return nil
                    } catch {
                        last = "\(error)"
                    }
                    Thread.sleep(forTimeInterval: 0.05)
                }
            }
        case .exec(let command):
            // The command inherits the namespace of the thread that starts it.
            let probe = ExecProbe(command: command, outputFile: "\(scratch)/probe-output")
            return insideNamespace { probe.run(deadline: deadline, timeout: timeout, stop: stop) }
        case .serial(let marker):
            // The clone's serial log is new: all of it was printed after the clone started.
            while true {
                if let reason = stop.reason { return "drill stopped: \(reason)" }
                if let text = try? String(contentsOfFile: serialLog, encoding: .utf8), text.contains(marker) { return nil }
                guard ContinuousClock.now < deadline else {
                    return "the probe \(probe) did not succeed within \(timeout): the clone's console never showed the marker"
                }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }

    /// Runs `body` on a thread inside the drill's namespace (entering one changes the calling
    /// thread for good) and returns its verdict.
    private func insideNamespace(_ body: @escaping @Sendable () -> String?) -> String? {
        let failure = ProbeFailure()
        JoinableThread(name: "drill-probe") { [namespace] in
            do {
                try NetworkNamespace.enter(namespace)
            } catch {
                failure.set("cannot enter the drill's network namespace: \(error)")
                return
            }
            if let why = body() { failure.set(why) }
        }.join()
        return failure.value
    }

    /// The probe thread's verdict, read once it has finished.
    private final class ProbeFailure: Sendable {
        private let reason = Mutex<String?>(nil)
        func set(_ why: String) { reason.withLock { $0 = why } }
        var value: String? { reason.withLock { $0 } }
    }
}
