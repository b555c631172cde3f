import Foundation
import UnderstudyHarness

/// The counter-service guest protected by `understudy primary` and `understudy backup`
/// subprocesses on a test network, with a `[drill]` table (its sandbox address, then `drill`) and
/// `backupExtra` in the backup's configuration: the drill and inspection suites' pair.
final class ProtectedPair {
    let directory: String
    let vm: String
    let network: PairNetwork
    private(set) var configs = (primary: "", backup: "")
    private var processes: [Process] = []

    /// - Parameter drill: more of the `[drill]` table, given the pair's network.
    init(primaryExtra: String = "", drill: (PairNetwork) -> String = { _ in "" }, backupExtra: String = "") throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-drill-\(UUID().uuidString.prefix(8))").path
        vm = "dr\(UUID().uuidString.prefix(6).lowercased())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        network = try PairNetwork(tapCount: 2)
        do {
            try preparePairDirectory(directory)
            configs = try AgentPair.writeConfigs(
                in: directory, port: LoopbackPorts.free(), vm: vm, guest: TestGuest.image,
                cmdline: "understudy.run=counter-service \(network.guestCommandLine)", replicaDirectory: "/dev/shm/understudy-drill-\(vm)",
                disks: ("\(directory)/primary-disk.img", "\(directory)/backup-disk.img"), taps: (network.taps[0], network.taps[1]), primaryExtra: primaryExtra,
                backupExtra: "[drill]\nsandbox_address = \"\(network.clientAddress)/\(network.prefixLength)\"\n\(drill(network))\n\(backupExtra)")
            processes.append(try AgentPair.start(["backup", "--config", configs.backup, "--log-level", "info"],
                                                             log: "\(directory)/backup.log"))
            Thread.sleep(forTimeInterval: 0.3)
            processes.append(try AgentPair.start(["primary", "--config", configs.primary, "--log-level", "info"],
                                                             log: "\(directory)/primary.log"))
        } catch {
            remove()
            throw error
        }
    }

    var backup: Process { processes[0] }
    var primary: Process { processes[1] }

    /// Stops an agent as an operator would (SIGTERM) and waits for it.
    func terminate(_ process: Process) {
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
    }

    func backupCommittedEpoch() -> Int? { AgentCommandLineTests.status(configs.backup)?.backup?.committedEpoch.map { Int($0) } }

    /// What a drill with namespace `sandbox` may have left: its namespace, its TAP, its QEMU,
    /// its copies in /dev/shm and beside the replica disk, its run directory.
    func leftovers(sandbox: String) -> [String] {
        let tag = String(sandbox.dropFirst("us-drill-".count))
        var found: [String] = []
        if FileManager.default.fileExists(atPath: "/var/run/netns/\(sandbox)") { found.append("namespace \(sandbox)") }
        if FileManager.default.fileExists(atPath: "/sys/class/net/usdrill\(tag)") { found.append("TAP usdrill\(tag)") }
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where entry.contains("-drill-\(tag)") {
            found.append("/dev/shm/\(entry)")
        }
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where entry.contains("drill-\(tag)") {
            found.append("\(directory)/\(entry)")
        }
        for pid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(pid) != nil {
            let arguments = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))) ?? Data()
            if String(decoding: arguments, as: UTF8.self).contains("run-backup-drill-\(tag)") { found.append("process \(pid)") }
        }
        return found
    }

    /// Stops the agents (SIGTERM, which stops QEMU too; SIGKILL for any that lingers) and removes
    /// the network and every file.
    func remove() {
        AgentPair.stop(processes, directory: directory)
        network.remove()
        try? FileManager.default.removeItem(atPath: directory)
        try? FileManager.default.removeItem(atPath: "/dev/shm/understudy-drill-\(vm)")
        // A killed primary leaves its private directory (RAM and device state).
        for file in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where file.hasPrefix("understudy-\(vm)-") {
            try? FileManager.default.removeItem(atPath: "/dev/shm/\(file)")
        }
    }
}
