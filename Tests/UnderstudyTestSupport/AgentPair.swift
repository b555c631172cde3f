import Foundation

/// Two agents of a test or benchmark as the operator runs them: their configuration files and
/// `understudy` processes.
public enum AgentPair {
    /// Writes `primary.toml` and `backup.toml` for a pair on loopback (the backup listening on
    /// `port`) protecting the test guest; the `extra` texts are appended as more TOML tables.
    public static func writeConfigs(in directory: String, port: UInt16, vm: String, cmdline: String, replicaDirectory: String,
                             disks: (primary: String, backup: String)? = nil, taps: (primary: String, backup: String)? = nil,
                             primaryNetwork: String = "", backupPeerAddress: String? = nil, primaryExtra: String = "",
                             backupExtra: String = "") throws -> (primary: String, backup: String) {
        let image = TestGuest.image
        func vmSection(disk: String?) -> String {
            """
            [vm]
            id = "\(vm)"
            memory_mib = 128
            accelerator = "tcg"
            kernel = "\(image.kernel)"
            initrd = "\(image.initrd)"
            cmdline = "console=ttyS0 \(cmdline)"

            """ + (disk.map { "disk_image = \"\($0)\"\n" } ?? "")
        }
        func networkSection(tap: String?, extra: String) -> String {
            tap.map { "[network]\ntap = \"\($0)\"\n\(extra)\n" } ?? ""
        }
        let primary = """
            [node]
            name = "primary"
            certificates = "\(directory)/certs"
            role = "primary"
            state_dir = "\(directory)/state-primary"
            [peer]
            name = "backup"
            address = "127.0.0.1:\(port)"
            \(vmSection(disk: disks?.primary))run_dir = "\(directory)/run-primary"
            \(networkSection(tap: taps?.primary, extra: primaryNetwork))[replication]
            interval_ms = 25
            \(primaryExtra)
            """
        let backup = """
            [node]
            name = "backup"
            certificates = "\(directory)/certs"
            role = "backup"
            state_dir = "\(directory)/state-backup"
            [peer]
            name = "primary"
            \(backupPeerAddress.map { "address = \"\($0)\"\n" } ?? "")\(vmSection(disk: disks?.backup))run_dir = "\(directory)/run-backup"
            \(networkSection(tap: taps?.backup, extra: ""))[backup]
            listen = "127.0.0.1:\(port)"
            replica_dir = "\(replicaDirectory)"
            \(backupExtra)
            """
        try primary.write(toFile: "\(directory)/primary.toml", atomically: true, encoding: .utf8)
        try backup.write(toFile: "\(directory)/backup.toml", atomically: true, encoding: .utf8)
        return ("\(directory)/primary.toml", "\(directory)/backup.toml")
    }

    public static func start(_ arguments: [String], log: String) throws -> Process {
        let process = Process()
        process.executableURL = productsDirectory().appendingPathComponent("understudy")
        process.arguments = arguments
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = FileHandle(forWritingAtPath: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

}
