import Foundation

extension QEMUProcess {
    /// Loads device state into a QEMU started with `.incoming` (its RAM file already holds the
    /// checkpoint's memory) and waits until the guest runs.
    public func loadDeviceState(_ deviceState: [UInt8], timeout: Duration = .seconds(30)) throws {
        try PrivateDirectory(path: description.privateDirectory).write(deviceState, to: VMDescription.deviceStateFileName,
                                                                        purpose: "the device state")
        try qmp.execute("migrate-incoming", arguments: ["uri": "exec:cat \(Self.shellQuoted(description.deviceStateFile))"])
        let deadline = ContinuousClock.now + timeout
        while true {
            let status = try qmp.execute("query-status") as? [String: Any]
            if status?["status"] as? String == "running" { return }
            let migration = try qmp.execute("query-migrate") as? [String: Any]
            if migration?["status"] as? String == "failed" {
                throw QEMUError.qmp("loading the device state failed: \(migration?["error-desc"] as? String ?? "no detail")")
            }
            guard ContinuousClock.now < deadline else {
                throw QEMUError.qmp("the VM did not start within \(timeout) (status \(status?["status"] ?? "?"))")
            }
            Thread.sleep(forTimeInterval: 0.005)
        }
    }

    /// Gratuitous ARP/RARP from the guest NICs, so switches learn the VM's new port.
    public func announce() throws {
        try qmp.execute("announce-self", arguments: ["initial": 50, "max": 550, "rounds": 5, "step": 100])
    }

    private static func shellQuoted(_ path: String) -> String { "'" + path.replacingOccurrences(of: "'", with: "'\\''") + "'" }
}
