import Foundation

/// Two agents of a test, a benchmark or the demo as the operator runs them: their configuration
/// files and `understudy` processes.
public enum AgentPair {
    /// Writes `primary.toml` and `backup.toml` for a pair (the backup listening on `port` at
    /// `backupHost`, by default on loopback) protecting the test guest `guest`
    /// (`CounterGuestImage`), or another guest with `memoryMiB` (the Debian guest); the `extra`
    /// texts are appended as more TOML tables (`primaryExtra` continues `[replication]` first);
    /// `vmExtra` continues each node's `[vm]` table (several disks, the machine, vCPUs); `moreTaps`
    /// are the TAPs of each node's NICs after the first; `names` are the nodes' certificate names
    /// (several pairs of one fleet need names of their own).
    public static func writeConfigs(in directory: String, port: UInt16, vm: String, guest image: (kernel: String, initrd: String),
                                    cmdline: String, replicaDirectory: String, backupHost: String = "127.0.0.1",
                                    disks: (primary: String, backup: String)? = nil, taps: (primary: String, backup: String)? = nil,
                                    moreTaps: (primary: [String], backup: [String]) = ([], []),
                                    primaryNetwork: String = "", backupPeerAddress: String? = nil, primaryExtra: String = "",
                                    backupExtra: String = "", vmExtra: (primary: String, backup: String) = ("", ""),
                                    memoryMiB: Int = 128, names: (primary: String, backup: String) = ("primary", "backup"))
        throws -> (primary: String, backup: String) {
        func vmSection(disk: String?, extra: String) -> String {
            """
            [vm]
            id = "\(vm)"
            memory_mib = \(memoryMiB)
            accelerator = "tcg"
            kernel = "\(image.kernel)"
            initrd = "\(image.initrd)"
            cmdline = "console=ttyS0 \(cmdline)"

            """ + (disk.map { "disk_image = \"\($0)\"\n" } ?? "") + extra
        }
        func networkSection(tap: String?, more: [String], extra: String) -> String {
            guard let tap else { return "" }
            let taps = more.isEmpty ? "tap = \"\(tap)\"" : "taps = [" + ([tap] + more).map { "\"\($0)\"" }.joined(separator: ", ") + "]"
            return "[network]\n\(taps)\n\(extra)\n"
        }
        let primary = """
            [node]
            name = "\(names.primary)"
            certificates = "\(directory)/certs"
            role = "primary"
            state_dir = "\(directory)/state-primary"
            [peer]
            name = "\(names.backup)"
            address = "\(backupHost):\(port)"
            \(vmSection(disk: disks?.primary, extra: vmExtra.primary))run_dir = "\(directory)/run-primary"
            \(networkSection(tap: taps?.primary, more: moreTaps.primary, extra: primaryNetwork))[replication]
            interval_ms = 25
            \(primaryExtra)
            """
        let backup = """
            [node]
            name = "\(names.backup)"
            certificates = "\(directory)/certs"
            role = "backup"
            state_dir = "\(directory)/state-backup"
            [peer]
            name = "\(names.primary)"
            \(backupPeerAddress.map { "address = \"\($0)\"\n" } ?? "")\(vmSection(disk: disks?.backup, extra: vmExtra.backup))run_dir = "\(directory)/run-backup"
            \(networkSection(tap: taps?.backup, more: moreTaps.backup, extra: ""))[backup]
            listen = "\(backupHost):\(port)"
            replica_dir = "\(replicaDirectory)"
            \(backupExtra)
            """
        try primary.write(toFile: "\(directory)/primary.toml", atomically: true, encoding: .utf8)
        try backup.write(toFile: "\(directory)/backup.toml", atomically: true, encoding: .utf8)
        return ("\(directory)/primary.toml", "\(directory)/backup.toml")
    }

    /// Starts `executable` (an `understudy` binary) with `arguments`, its output and errors into
    /// `log`; inside network namespace `namespace` when one is given. `nsenter --net` execs the
    /// program, so the process is the agent itself and signals reach it; unlike `ip netns exec`
    /// it keeps this mount namespace, so the drill sandboxes an agent adds (`ip netns add`) are
    /// seen, and can be removed, from here.
    public static func start(_ executable: String, _ arguments: [String], log: String, namespace: String? = nil) throws -> Process {
        let process = Process()
        if let namespace {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
            process.arguments = ["--net=/run/netns/\(namespace)", "--", executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        guard FileManager.default.createFile(atPath: log, contents: nil), let handle = FileHandle(forWritingAtPath: log) else {
            throw HarnessError("cannot create the log \(log)")
        }
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? handle.close()
        return process
    }

    /// Stops `processes` (SIGTERM, which stops an agent's QEMU too, then SIGKILL for any still
    /// running after `grace`; at once with a zero `grace`) and kills the QEMU a SIGKILLed agent
    /// leaves behind in the pair's run directories under `directory`.
    public static func stop(_ processes: [Process], grace: Duration = .seconds(10), directory: String) {
        for process in processes where process.isRunning { kill(process.processIdentifier, grace > .zero ? SIGTERM : SIGKILL) }
        let deadline = ContinuousClock.now + grace
        while processes.contains(where: \.isRunning), ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.05) }
        for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) }
        for process in processes { process.waitUntilExit() }
        for run in ["run-primary", "run-backup"] { killQEMU(runDirectory: "\(directory)/\(run)", of: directory) }
    }

    /// SIGKILLs the QEMU whose pid `runDirectory/qemu.pid` holds, as a host losing power would
    /// end it with its agent; only if its command line names `directory` (the pid file may be
    /// stale and its number reused).
    public static func killQEMU(runDirectory: String, of directory: String) {
        guard let text = try? String(contentsOfFile: "\(runDirectory)/qemu.pid", encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
              let arguments = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")),
              String(decoding: arguments, as: UTF8.self).contains(directory) else { return }
        kill(pid, SIGKILL)
    }
}
