import Foundation
import Testing
import UnderstudyAgent
import UnderstudyHarness
import UnderstudyQEMU
import UnderstudySystem
import UnderstudyTestTags
#if canImport(Glibc)
import Glibc
#endif

/// Issue 17's end-to-end test: a real Debian VM as people run it under libvirt (q35, UEFI with
/// OVMF, a system disk and a data disk holding PostgreSQL, two NICs) imported with
/// `understudy import libvirt`, protected by two agents, loaded with pgbench, and its primary
/// (agent and QEMU) SIGKILLed mid-run. Boots systemd under TCG twice (minutes), so it runs only
/// with UNDERSTUDY_DEBIAN_E2E=1; builds the guest's disks first when needed.
@Suite("imported VM failover", .tags(.vm), .skippedInQuickLoop, .serialized,
       .enabled(if: ProcessInfo.processInfo.environment["UNDERSTUDY_DEBIAN_E2E"] == "1",
                "set UNDERSTUDY_DEBIAN_E2E=1: imports, protects and fails over the Debian disk guest (minutes)"))
struct ImportedVMFailoverTests {
    /// The second NIC's MAC: on the LAN, unconfigured in the guest (only `DebianDiskGuest.mac` gets an address).
    static let secondMAC = "52:54:00:77:00:03"
    static let pgbenchSeconds = 60
    /// When in the pgbench run the primary is killed.
    static let killAfterSeconds = 20.0

    @Test("an imported q35/UEFI VM with two disks and two NICs fails over under pgbench with every acknowledged transaction kept and its boot entries intact")
    func importedDebianVMSurvivesPrimaryKillUnderPGBench() throws {
        let guest = try DebianDiskGuest.build()
        let workspace = try TemporaryDirectory("e2e")
        defer {
            // The agents' logs outlive the workspace, for the reader of a failure.
            let kept = "\(FileManager.default.temporaryDirectory.path)/understudy-e2e-logs"
            try? FileManager.default.createDirectory(atPath: kept, withIntermediateDirectories: true)
            for log in ["primary.log", "backup.log", "pgbench.log"] {
                try? FileManager.default.removeItem(atPath: "\(kept)/\(log)")
                try? FileManager.default.copyItem(atPath: "\(workspace.path)/\(log)", toPath: "\(kept)/\(log)")
            }
            workspace.remove()
        }
        let w = workspace.path
        // NIC n of the primary on taps[2n], of the backup on taps[2n + 1].
        let network = try PairNetwork(tapCount: 4)
        defer { network.remove() }
        let id = "e2e\(UUID().uuidString.prefix(6).lowercased())"
        defer {
            for file in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where file.hasPrefix("understudy-\(id)") {
                try? FileManager.default.removeItem(atPath: "/dev/shm/\(file)")
            }
        }
        let scratch = "/tmp/understudy-e2e-\(getpid())"
        try FileManager.default.createDirectory(atPath: guest.base.tree + scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: guest.base.tree + scratch) }

        // 1. The VM as libvirt has it, imported as a user would.
        let boot = try guest.prepareBoot(.uefi, in: w)
        try domainXML(name: id, boot: boot, bridge: network.bridge).write(toFile: "\(w)/domain.xml", atomically: true, encoding: .utf8)
        let imported = try understudy(["import", "libvirt", "\(w)/domain.xml", "--out", "\(w)/pair", "--primary-node", "primary",
                                        "--backup-node", "backup", "--primary-host", "127.0.0.1", "--backup-host", "127.0.0.1"])
        print(imported.stdout)
        try #require(imported.status == 0, "import: \(imported.stderr)")
        let certs = try understudy(["certs", "init", "--dir", "\(w)/certs", "--nodes", "primary,backup"])
        try #require(certs.status == 0, "certs init: \(certs.stderr)")
        let configs = try pairConfiguration(w: w, id: id, boot: boot, taps: network.taps)

        // 2. Backup, then primary; PostgreSQL answers; the primary protects.
        var processes: [Process] = []
        defer {
            AgentPair.stop(processes, grace: .zero, directory: w)
            // A QEMU an activation started is not always in a pid file: every process of this workspace goes.
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
                guard let pid = Int32(entry), pid != getpid(),
                      let arguments = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(entry)/cmdline")),
                      String(decoding: arguments, as: UTF8.self).contains(w) else { continue }
                kill(pid, SIGKILL)
            }
        }
        let started = ContinuousClock.now
        let backup = try AgentPair.start(understudyPath, ["backup", "--config", configs.backup, "--log-level", "info"], log: "\(w)/backup.log")
        processes.append(backup)
        Thread.sleep(forTimeInterval: 0.3)
        let primary = try AgentPair.start(understudyPath, ["primary", "--config", configs.primary, "--log-level", "info"], log: "\(w)/primary.log")
        processes.append(primary)
        // Until the kill both agents must live; after it, the backup that took over.
        var watched = processes
        func exited() -> String? {
            watched.first { !$0.isRunning }.map { "an agent exited (\($0.terminationStatus)); logs: \(tail("\(w)/primary.log")) // \(tail("\(w)/backup.log"))" }
        }
        try guest.base.waitUntilPostgresAnswers(namespace: network.namespace, timeout: .seconds(600), failed: exited)
        let bootSeconds = (ContinuousClock.now - started).seconds
        let protecting = waitForStatus(configs.primary, timeout: .seconds(600)) { $0.primary?.state == .protecting }
        try #require(protecting != nil, "the primary never protected the VM; \(exited() ?? "primary: \(tail("\(w)/primary.log")) // backup: \(tail("\(w)/backup.log"))")")
        let psql = { (sql: String) throws -> String in try query(sql, guest: guest.base, namespace: network.namespace) }
        let historyBefore = try #require(Int(try psql("SELECT count(*) FROM pgbench_history")))
        let bootEntriesBefore = try psql(Self.bootEntriesQuery)
        let monotonicBefore = try #require(Self.monotonicCounter(try psql(Self.monotonicCounterQuery)), "OVMF's MTC variable")

        // 3. pgbench from the client namespace; the primary's agent and QEMU die mid-run.
        let pgbenchLog = "\(w)/pgbench.log"
        let pgbench = try SpawnedProcess(
            executable: "/usr/bin/env",
            arguments: ["env"] + guest.base.treeCommand(namespace: network.namespace, [
                DebianGuest.clientProgram("pgbench"), "-h", DebianGuest.address, "-p", "\(DebianGuest.postgresPort)", "-U", DebianGuest.user,
                "-n", "-c", "4", "-j", "2", "-T", "\(Self.pgbenchSeconds)", "-l", "--log-prefix=\(scratch)/tx", DebianGuest.database]),
            environment: ProcessInfo.processInfo.environment, output: pgbenchLog)
        defer { if pgbench.exitStatus() == nil { pgbench.signalGroup(SIGKILL) } }
        Thread.sleep(forTimeInterval: Self.killAfterSeconds)
        let atKill = try #require(status(configs.primary)?.primary, "the primary's status before the kill")
        let qemuPID = Int32((try? String(contentsOfFile: "\(w)/run-primary/qemu.pid", encoding: .utf8)) ?? "") ?? 0
        try #require(qemuPID > 0, "the primary's QEMU pid")
        let killedAt = Date().timeIntervalSince1970
        let killInstant = ContinuousClock.now
        watched = [backup]
        kill(primary.processIdentifier, SIGKILL)
        kill(qemuPID, SIGKILL)
        primary.waitUntilExit()
        let tookOver = waitForStatus(configs.backup, timeout: .seconds(60)) { $0.role == .primary }
        try #require(tookOver != nil, "the backup never took over; \(tail("\(w)/backup.log"))")
        let takeoverSeconds = (ContinuousClock.now - killInstant).seconds
        let variablesSame = try HostCommand.execute("/usr/bin/cmp", ["\(w)/pair/VARS.fd", "\(w)/backup-VARS.fd"])
        #expect(variablesSame.status == 0, "the backup's UEFI variable store is the primary's: \(variablesSame.stdout)")
        let pgbenchDeadline = ContinuousClock.now + .seconds(Self.pgbenchSeconds + 180)
        while pgbench.exitStatus() == nil, ContinuousClock.now < pgbenchDeadline { Thread.sleep(forTimeInterval: 0.5) }
        let pgbenchStatus = try #require(pgbench.exitStatus(), "pgbench did not end")
        let pgbenchText = (try? String(contentsOfFile: pgbenchLog, encoding: .utf8)) ?? ""

        // 4. The clients kept their connections; every acknowledged transaction is in the database.
        #expect(pgbenchStatus == 0, "pgbench ended with status \(pgbenchStatus): \(pgbenchText.suffix(1500))")
        let clientErrors = pgbenchText.split(whereSeparator: \.isNewline).filter { line in
            ["aborted", "error", "server closed", "could not", "terminat"].contains { line.lowercased().contains($0) }
        }
        #expect(clientErrors.isEmpty, "a client lost its connection or aborted: \(clientErrors.prefix(10))")
        let summary = try #require(PGBenchOutput(summary: pgbenchText), "pgbench's summary: \(pgbenchText.suffix(1500))")
        #expect(summary.failedTransactions == 0)
        let completions = try transactionCompletions(in: guest.base.tree + scratch)
        #expect(completions.count == summary.transactions, "one log line per processed transaction")
        let firstAfterKill = completions.first { $0 > killedAt }.map { $0 - killedAt }
        let longestGap = zip(completions, completions.dropFirst()).map { $1 - $0 }.max() ?? 0
        #expect(completions.contains { $0 > killedAt + 1 }, "transactions completed on the backup after the kill")
        let history = try #require(Int(try psql("SELECT count(*) FROM pgbench_history"))) - historyBefore
        #expect(history >= summary.transactions, "pgbench_history holds \(history) rows of this run, pgbench processed \(summary.transactions)")
        let balances = try psql(Self.balancesQuery)
        #expect(Set(balances.split(separator: "|")).count == 1, "sum(abalance), sum(tbalance), sum(bbalance), sum(delta): \(balances)")

        // 5. The resumed VM reboots (its firmware reads the replicated variable store) and comes back
        // with the same boot entries; OVMF's monotonic counter goes on from the primary's store.
        let postmasterBefore = try psql("SELECT pg_postmaster_start_time()")
        let reset = try QMPClient(socketPath: "\(w)/backup-test-qmp.sock")
        _ = try reset.execute("system_reset")
        let resetAt = ContinuousClock.now
        Thread.sleep(forTimeInterval: 2)
        try guest.base.waitUntilPostgresAnswers(namespace: network.namespace, timeout: .seconds(600), failed: exited)
        let rebootSeconds = (ContinuousClock.now - resetAt).seconds
        #expect(try psql("SELECT pg_postmaster_start_time()") != postmasterBefore, "PostgreSQL started again: the VM rebooted")
        let bootEntriesAfter = try psql(Self.bootEntriesQuery)
        #expect(!bootEntriesBefore.isEmpty && bootEntriesAfter == bootEntriesBefore,
                "boot entries before the kill:\n\(bootEntriesBefore)\nafter the reboot on the backup:\n\(bootEntriesAfter)")
        let monotonicAfter = Self.monotonicCounter(try psql(Self.monotonicCounterQuery))
        // A fresh store (the replica's lost) would start again at 1.
        #expect(monotonicAfter == monotonicBefore + 1,
                "OVMF's MTC went from \(monotonicBefore) to \(monotonicAfter.map(String.init) ?? "nothing"): the firmware continued the replicated store")
        let balancesAfterReboot = try psql(Self.balancesQuery)
        #expect(balancesAfterReboot == balances, "after the reboot's crash recovery: \(balancesAfterReboot), before: \(balances)")

        // 6. The figures.
        let latencies = PGBenchOutput.latenciesMilliseconds(log: try transactionLogs(in: guest.base.tree + scratch)).sorted()
        func f(_ value: Double?) -> String { value.map { String(format: "%.2f", $0) } ?? "?" }
        print("""
            imported VM failover (q35, UEFI, 2 vCPUs, 1 GiB, 2 disks, 2 NICs, TCG):
              boot: PostgreSQL answered \(f(bootSeconds)) s after the agents started
              initial sync: \(f(atKill.syncSeconds)) s, \(atKill.syncWireBytes ?? 0) wire bytes, \(atKill.syncPages ?? 0) pages
              pauses: p50 \(f(atKill.pauseMillisecondsP50)) ms, p99 \(f(atKill.pauseMillisecondsP99)) ms, max \(f(atKill.pauseMillisecondsMax)) ms (\(atKill.dirtyTracking ?? "?"))
              pgbench -c 4 -j 2 -T \(Self.pgbenchSeconds), killed at \(Int(Self.killAfterSeconds)) s: \(f(summary.tps)) tps, latency avg \(f(summary.latencyMillisecondsAverage)) ms, \
            p99 \(f(latencies.isEmpty ? nil : percentile(latencies, 0.99))) ms, max \(f(latencies.last)) ms, \(summary.transactions) transactions, \(summary.failedTransactions) failed, exit \(pgbenchStatus)
              failover: backup primary \(f(takeoverSeconds)) s after the kill; first transaction completed \(f(firstAfterKill)) s after it; longest gap between completions \(f(longestGap)) s
              checks: history rows \(history) >= processed \(summary.transactions); balances \(balances); VARS identical \(variablesSame.status == 0)
              reboot on the backup: PostgreSQL back \(f(rebootSeconds)) s after system_reset; boot entries same \(bootEntriesAfter == bootEntriesBefore); MTC \(monotonicBefore) -> \(monotonicAfter.map(String.init) ?? "?")
            boot entries:
            \(bootEntriesAfter)
            """)
    }

    // MARK: - The configuration

    /// The domain as `virsh dumpxml` shows a VM made by virt-install with UEFI on q35.
    private func domainXML(name: String, boot: DebianDiskGuest.Boot, bridge: String) -> String {
        """
        <domain type='kvm'>
          <name>\(name)</name>
          <memory unit='KiB'>\(DebianGuest.memoryMiB * 1024)</memory>
          <currentMemory unit='KiB'>\(DebianGuest.memoryMiB * 1024)</currentMemory>
          <vcpu placement='static'>2</vcpu>
          <os firmware='efi'>
            <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
            <loader readonly='yes' type='pflash'>\(DebianDiskGuest.ovmfCode)</loader>
            <nvram template='\(DebianDiskGuest.ovmfVariablesTemplate)'>\(boot.variables!)</nvram>
            <boot dev='hd'/>
          </os>
          <features><acpi/><apic/></features>
          <cpu mode='host-passthrough' check='none'/>
          <clock offset='utc'/>
          <devices>
            <emulator>/usr/bin/qemu-system-x86_64</emulator>
            <disk type='file' device='disk'>
              <driver name='qemu' type='raw' cache='none' io='native'/>
              <source file='\(boot.systemDisk)'/>
              <target dev='vda' bus='virtio'/>
              <boot order='1'/>
            </disk>
            <disk type='file' device='disk'>
              <driver name='qemu' type='raw'/>
              <source file='\(boot.dataDisk)'/>
              <target dev='vdb' bus='virtio'/>
            </disk>
            <controller type='pci' index='0' model='pcie-root'/>
            <interface type='bridge'>
              <mac address='\(DebianDiskGuest.mac)'/>
              <source bridge='\(bridge)'/>
              <model type='virtio'/>
            </interface>
            <interface type='bridge'>
              <mac address='\(Self.secondMAC)'/>
              <source bridge='\(bridge)'/>
              <model type='virtio'/>
            </interface>
            <serial type='pty'><target type='isa-serial' port='0'/></serial>
            <console type='pty'><target type='serial' port='0'/></console>
            <memballoon model='none'/>
          </devices>
        </domain>
        """
    }

    /// Does to the imported files what the report asks of the operator (certificates, addresses,
    /// TAPs, the backup's empty replica disks), plus what two nodes on one machine need apart
    /// (ports, state, run and replica directories, the backup's image paths), and turns on
    /// automatic failover without a witness (heartbeat timeout 5 s). The backup's
    /// QEMU gets a second QMP monitor for the test (the agent holds `qmp.sock`), through `vm.qemu`.
    private func pairConfiguration(w: String, id: String, boot: DebianDiskGuest.Boot, taps: [String]) throws -> (primary: String, backup: String) {
        let primaryPort = Int(LoopbackPorts.free())
        let backupPort = primaryPort + 1
        let wrapper = "\(w)/qemu-with-test-monitor"
        try "#!/bin/sh\nexec qemu-system-x86_64 \"$@\" -qmp unix:\(w)/backup-test-qmp.sock,server=on,wait=off\n"
            .write(toFile: wrapper, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper)
        let backupImages = ["\(w)/backup-system.img": boot.systemDisk, "\(w)/backup-data.img": boot.dataDisk, "\(w)/backup-VARS.fd": "\(w)/pair/VARS.fd"]
        for (replica, source) in backupImages {
            let size = try #require(try FileManager.default.attributesOfItem(atPath: source)[.size] as? NSNumber)
            try HostCommand.run(["truncate", "-s", "\(size)", replica])
        }
        var paths: [String] = []
        for (node, peerPort, ownPort) in [("primary", backupPort, primaryPort), ("backup", primaryPort, backupPort)] {
            let path = "\(w)/pair/\(node).toml"
            var file = TOMLText(try String(contentsOfFile: path, encoding: .utf8))
            file.set("certificates", in: "node", to: "\"\(w)/certs\"")
            file.set("state_dir", in: "node", to: "\"\(w)/state-\(node)\"")
            file.set("address", in: "peer", to: "\"127.0.0.1:\(peerPort)\"")
            file.set("run_dir", in: "vm", to: "\"\(w)/run-\(node)\"")
            let nicTaps = node == "primary" ? [taps[0], taps[2]] : [taps[1], taps[3]]
            file.set("taps", in: "network", to: "[" + nicTaps.map { "\"\($0)\"" }.joined(separator: ", ") + "]")
            file.set("listen", in: "backup", to: "\"127.0.0.1:\(ownPort)\"")
            file.set("replica_dir", in: "backup", to: "\"/dev/shm/understudy-\(id)-replica-\(node)\"")
            file.set("interval_ms", in: "heartbeat", to: "100")
            // 5 s: with a 1 s timeout (the counter trials') the backup took over during the guest's
            // boot here, the primary silent for 2.07 s under TCG on a loaded 2-core machine.
            file.set("missed", in: "heartbeat", to: "50")
            file.set("without_witness", in: "failover", to: "true")
            if node == "backup" {
                file.set("disks", in: "vm", to: "[\"\(w)/backup-system.img\", \"\(w)/backup-data.img\"]")
                file.set("uefi_vars", in: "vm", to: "\"\(w)/backup-VARS.fd\"")
                file.set("qemu", in: "vm", to: "\"\(wrapper)\"")
            }
            try file.text.write(toFile: path, atomically: true, encoding: .utf8)
            paths.append(path)
        }
        return (paths[0], paths[1])
    }

    // MARK: - Helpers

    private var understudyPath: String { productsDirectory().appendingPathComponent("understudy").path }

    private func understudy(_ arguments: [String]) throws -> HostCommand.Output {
        try HostCommand.execute(understudyPath, arguments)
    }

    private func status(_ config: String) -> AgentStatus? {
        guard let reply = try? understudy(["status", "--config", config, "--json"]), reply.status == 0 else { return nil }
        return try? JSONDecoder().decode(AgentStatus.self, from: Data(reply.stdout.utf8))
    }

    private func waitForStatus(_ config: String, timeout: Duration, _ predicate: (AgentStatus) -> Bool) -> AgentStatus? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = status(config), predicate(status) { return status }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return nil
    }

    private func tail(_ log: String) -> String {
        ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").suffix(4).joined(separator: " | ")
    }

    private func query(_ sql: String, guest: DebianGuest, namespace: String) throws -> String {
        try HostCommand.run(guest.treeCommand(namespace: namespace, [
            DebianGuest.clientProgram("psql"), "-X", "-h", DebianGuest.address, "-U", DebianGuest.user, "-d", DebianGuest.database, "-Atc", sql]))
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The four sums TPC-B keeps equal (all balances start at 0).
    static let balancesQuery = "SELECT (SELECT sum(abalance) FROM pgbench_accounts) || '|' || (SELECT sum(tbalance) FROM pgbench_tellers) || '|' "
        + "|| (SELECT sum(bbalance) FROM pgbench_branches) || '|' || (SELECT coalesce(sum(delta), 0) FROM pgbench_history)"

    /// Reads efivarfs files in the guest as `name hex` lines (hex: the variable's attributes, then
    /// its data), sorted: PostgreSQL's own file functions seek, which efivarfs refuses, so the
    /// files are read by `od` as the server's OS user (COPY FROM PROGRAM; the role is superuser).
    static func efiVariablesQuery(_ pattern: String) -> String {
        "CREATE TEMP TABLE efi(line text); COPY efi FROM PROGRAM 'for f in /sys/firmware/efi/efivars/\(pattern); "
            + "do echo \"${f##*/} $(od -An -tx1 -v $f | tr -d [:space:])\"; done'; SELECT line FROM efi ORDER BY line"
    }

    /// The guest's boot entries and boot order as the firmware gave them to Linux.
    static let bootEntriesQuery = efiVariablesQuery("Boot[0-9A-F][0-9A-F][0-9A-F][0-9A-F]-8be4df61-93ca-11d2-aa0d-00e098032b8c "
                                                    + "/sys/firmware/efi/efivars/BootOrder-8be4df61-93ca-11d2-aa0d-00e098032b8c")

    /// OVMF's monotonic counter variable (MTC), which the firmware increments on every boot.
    static let monotonicCounterQuery = efiVariablesQuery("MTC-eb704011-1402-11d3-8e77-00a0c969723b")

    /// MTC's value from its `name hex` line: 4 bytes of attributes, then a little-endian UInt32.
    static func monotonicCounter(_ line: String) -> UInt32? {
        guard let hex = line.split(separator: " ").last, hex.count == 16, let value = UInt32(hex.suffix(8), radix: 16) else { return nil }
        return value.byteSwapped
    }

    /// pgbench's per-transaction logs (`-l`) in `directory`.
    private func transactionLogs(in directory: String) throws -> String {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("tx") }
            .map { try String(contentsOfFile: "\(directory)/\($0)", encoding: .utf8) }.joined()
    }

    /// When each transaction completed (seconds since the epoch, sorted), from the logs'
    /// `client transaction latency script epoch_s epoch_us` lines.
    private func transactionCompletions(in directory: String) throws -> [Double] {
        try transactionLogs(in: directory).split(whereSeparator: \.isNewline).compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count >= 6, let seconds = Double(fields[4]), let microseconds = Double(fields[5]) else { return nil }
            return seconds + microseconds / 1_000_000
        }.sorted()
    }
}
