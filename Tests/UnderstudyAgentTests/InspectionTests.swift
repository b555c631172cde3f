import Foundation
import Testing
@testable import UnderstudyAgent
import UnderstudyHarness
import UnderstudyProtocol
import UnderstudyReplica
import UnderstudySystem

/// `understudy inspect` with no agent running, on a replica committed in the test whose disk
/// holds an ext4 filesystem made here: what the command sees, what it gets, what it leaves.
/// Needs root and loop devices, as the command does.
@Suite("understudy inspect", .serialized)
struct InspectionTests {
    /// A backup's configuration and its replica, committed at epoch 1, its disk an ext4
    /// filesystem holding `marker.txt` (or, with `filesystem` false, no filesystem at all).
    struct Backup {
        let directory: TemporaryDirectory
        let vm: String
        let config: String
        var disk: String { "\(directory.path)/backup-disk.img" }

        init(committed: Bool = true, filesystem: Bool = true) throws {
            directory = try TemporaryDirectory("inspect")
            vm = "in\(UUID().uuidString.prefix(6).lowercased())"
            let disk = "\(directory.path)/backup-disk.img"
            try HostCommand.run(["truncate", "-s", "16M", "\(directory.path)/primary-disk.img", "\(directory.path)/backup-disk.img"])
            config = try AgentPair.writeConfigs(in: directory.path, port: 1, vm: vm, guest: ("/nonexistent/vmlinuz", "/nonexistent/initrd"),
                                                cmdline: "", replicaDirectory: "\(directory.path)/replica",
                                                disks: ("\(directory.path)/primary-disk.img", disk), memoryMiB: 16).backup
            let configuration = try AgentConfiguration(contentsOfFile: config)
            if committed {
                let store = try ReplicaStore(directory: "\(directory.path)/replica", identity: configuration.identity, diskPaths: [disk])
                try store.beginSync()
                try store.finishSync()
                var staged = StagedEpoch(epoch: 1)
                staged.add(DeviceStateChunk(epoch: 1, offset: 0, data: [1]))
                try store.seal(staged, decoders: [PageDecoder(pageSize: Int(configuration.identity.pageSize))])
                try store.applySealed()
            }
            // The sync reset the disk: the guest's filesystem goes on after it, as a guest's writes would.
            if filesystem {
                let tree = "\(directory.path)/tree"
                try FileManager.default.createDirectory(atPath: "\(tree)/etc", withIntermediateDirectories: true)
                try "checkpoint marker 42\n".write(toFile: "\(tree)/marker.txt", atomically: false, encoding: .utf8)
                try HostCommand.run(["mkfs.ext4", "-q", "-F", "-d", tree, disk])
            }
        }

        func inspect(_ arguments: [String]) throws -> HostCommand.Output {
            try runCLI(["inspect", "--config", config] + arguments)
        }

        /// Whatever an inspection may have left: its copies in /dev/shm and beside the disk, a loop device on them, a mount.
        func leftovers() -> [String] {
            var found = ((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [])
                .filter { $0.hasPrefix("understudy-\(vm)-inspect-") }.map { "/dev/shm/\($0)" }
            found += ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [])
                .filter { $0.hasPrefix("backup-disk.img.") }
            let loops = (try? HostCommand.run(["losetup", "-a"])) ?? ""
            found += loops.split(separator: "\n").filter { $0.contains("\(disk).") }.map(String.init)
            let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
            found += mounts.split(separator: "\n").filter { $0.contains("understudy-\(vm)-inspect-") }.map(String.init)
            return found
        }
    }

    @Test func theCommandReadsTheCheckpointsDiskAndItsStatusIsReturned() throws {
        let backup = try Backup()
        defer { backup.directory.remove() }
        let read = try backup.inspect(["--json", "--", "cat", "{}/marker.txt"])
        #expect(read.status == 0, "\(read.stderr)")
        let lines = read.stdout.split(separator: "\n")
        #expect(lines.first == "checkpoint marker 42", "the command's own output comes first: \(read.stdout)")
        let report = try #require(lines.last.flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] },
                                  "\(read.stdout) \(read.stderr)")
        #expect(report["ok"] as? Bool == true)
        #expect(report["epoch"] as? Int == 1)
        #expect(report["snapshot_from"] as? String == "replica directory")
        #expect(report["exit_status"] as? Int == 0)
        #expect((report["state_age_ms"] as? Double ?? -1) >= 0)
        #expect((report["filesystems"] as? [String] ?? []).first?.contains("(ext4)") == true, "\(report)")
        #expect(backup.leftovers().isEmpty, "left behind: \(backup.leftovers())")

        // Read-only, and the command's exit status is the inspection's.
        let write = try backup.inspect(["--", "sh", "-c", "touch \"$1/new\" 2>/dev/null && exit 0; exit 3", "sh", "{}"])
        #expect(write.status == 3, "the mount is read-only: \(write.stderr)")
        #expect(write.stderr.contains("exit 3"), "\(write.stderr)")
        // The environment, and the memory image of the same checkpoint.
        let environment = try backup.inspect(["--memory", "--", "sh", "-c",
                                              "test \"$UNDERSTUDY_INSPECT_DIR\" = \"$1\" && test \"$UNDERSTUDY_INSPECT_EPOCH\" = 1 "
                                                  + "&& test $(stat -c %s \"$UNDERSTUDY_INSPECT_DISK\") = 16777216 && test $(stat -c %s \"$UNDERSTUDY_INSPECT_MEMORY\") = 16777216",
                                              "sh"])
        #expect(environment.status == 0, "\(environment.stderr)")
        // Without --memory there is no memory copy at all (a second copy of guest RAM costs).
        let diskOnly = try backup.inspect(["--", "sh", "-c", "test -z \"$UNDERSTUDY_INSPECT_MEMORY\" && test ! -e \"$1/../memory.img\" "
                                               + "&& test -e \"$1/../device-state\"", "sh"])
        #expect(diskOnly.status == 0, "\(diskOnly.stderr)")
        #expect(backup.leftovers().isEmpty, "left behind: \(backup.leftovers())")
        // The replica is as it was: a drill or an agent can still use it.
        let configuration = try AgentConfiguration(contentsOfFile: backup.config)
        let store = try ReplicaStore(directory: "\(backup.directory.path)/replica", identity: configuration.identity, diskPaths: [backup.disk])
        #expect(store.state.phase == .committed && store.state.committedEpoch == 1)
    }

    @Test func whatCannotBeInspectedIsRefusedClearly() throws {
        let backup = try Backup()
        defer { backup.directory.remove() }
        let missing = try backup.inspect(["--", "no-such-scanner-here", "-r"])
        #expect(missing.status == 127)
        #expect(missing.stderr.contains("no-such-scanner-here: command not found"), "\(missing.stderr)")
        let nothing = try backup.inspect([])
        #expect(nothing.status != 0)
        #expect(nothing.stderr.contains("give the command"), "\(nothing.stderr)")

        let empty = try Backup(committed: false)
        defer { empty.directory.remove() }
        let refused = try empty.inspect(["--", "true"])
        #expect(refused.status == 125)
        #expect(refused.stderr.contains("empty, not committed"), "\(refused.stderr)")
        #expect(empty.leftovers().isEmpty, "left behind: \(empty.leftovers())")

        let raw = try Backup(filesystem: false)
        defer { raw.directory.remove() }
        let unmountable = try raw.inspect(["--", "true"])
        #expect(unmountable.status == 125)
        #expect(unmountable.stderr.contains("no filesystem this host can mount"), "\(unmountable.stderr)")
        #expect(raw.leftovers().isEmpty, "left behind: \(raw.leftovers())")
    }

    /// The disk as a checkpoint catches it: a file the guest fsynced has its metadata in ext4's
    /// journal, not yet in place. The inspection replays the journal into its copy (a `noload`
    /// mount would not show the file) and leaves the replica's disk as it was.
    @Test func whatTheGuestFsyncedIsSeenThoughOnlyItsJournalHoldsIt() throws {
        let backup = try Backup()
        defer { backup.directory.remove() }
        let live = "\(backup.directory.path)/live"
        try FileManager.default.createDirectory(atPath: live, withIntermediateDirectories: false)
        let device = try HostCommand.run(["losetup", "--find", "--show", backup.disk])
        try HostCommand.run(["mount", device, live])
        try HostCommand.run(["sh", "-c", "echo fsynced > \(live)/new.txt && sync \(live)/new.txt"])
        // The image as it is now, mid-journal: what a checkpoint of a running guest holds.
        try HostCommand.run(["cp", "--sparse=always", backup.disk, "\(backup.disk).caught"])
        try HostCommand.run(["umount", live])
        try HostCommand.run(["losetup", "-d", device])
        try HostCommand.run(["mv", "\(backup.disk).caught", backup.disk])
        let before = try HostCommand.run(["sha256sum", backup.disk])

        let read = try backup.inspect(["--", "cat", "{}/new.txt"])
        #expect(read.status == 0, "\(read.stderr)")
        #expect(read.stdout == "fsynced\n")
        #expect(try HostCommand.run(["sha256sum", backup.disk]) == before, "the replica's disk is never written")
        #expect(backup.leftovers().isEmpty, "left behind: \(backup.leftovers())")
    }

    /// SIGINT or SIGTERM while the command runs: it is stopped, and everything is removed.
    @Test func anInterruptedInspectionRemovesEverything() throws {
        let backup = try Backup()
        defer { backup.directory.remove() }
        for signal in [SIGINT, SIGTERM] {
            let log = "\(backup.directory.path)/inspect-\(signal).log"
            let running = try AgentPair.start(["inspect", "--config", backup.config, "--json", "--log-level", "notice", "--", "sh", "-c", "sleep 60", "sh"], log: log)
            let mounted = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < mounted, !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("replica mounted") {
                Thread.sleep(forTimeInterval: 0.05)
            }
            let sent = ContinuousClock.now
            kill(running.processIdentifier, signal)
            running.waitUntilExit()
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            #expect(ContinuousClock.now - sent < .seconds(4), "the command was stopped at once, not after the SIGKILL grace: \(output)")
            #expect(running.terminationStatus != 0)
            let report = try #require(output.split(separator: "\n").last { $0.hasPrefix("{\"command") }
                .flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }, "\(output)")
            #expect((report["message"] as? String ?? "").contains("interrupted"), "\(report)")
            #expect(backup.leftovers().isEmpty, "left behind: \(backup.leftovers())")
        }
    }

    @Test func eachPartitionIsMountedOnItsOwnDirectory() throws {
        let backup = try Backup(filesystem: false)
        defer { backup.directory.remove() }
        // Two partitions: ext4 with the marker, then one with no filesystem (skipped).
        let tree = "\(backup.directory.path)/tree"
        try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
        try "in a partition\n".write(toFile: "\(tree)/marker.txt", atomically: false, encoding: .utf8)
        try writePartitionTable(backup.disk, partitions: [(start: 2048, sectors: 16384), (start: 18432, sectors: 8192)])
        try HostCommand.run(["mkfs.ext4", "-q", "-F", "-d", tree, "-E", "offset=\(2048 * 512)", backup.disk, "8M"])
        let read = try backup.inspect(["--", "cat", "{}/p1/marker.txt"])
        #expect(read.status == 0, "\(read.stderr)")
        #expect(read.stdout == "in a partition\n")
        #expect(read.stderr.contains("(ext4) at /dev/shm/understudy-\(backup.vm)-inspect-") && read.stderr.contains("/disk/p1"),
                "\(read.stderr)")
        #expect(backup.leftovers().isEmpty, "left behind: \(backup.leftovers())")
    }

    /// An MBR with Linux partitions at these sectors (what `sfdisk` would write; util-linux's fdisk package is not installed here).
    func writePartitionTable(_ path: String, partitions: [(start: UInt32, sectors: UInt32)]) throws {
        var sector = [UInt8](repeating: 0, count: 512)
        for (index, partition) in partitions.enumerated() {
            let entry = 446 + 16 * index
            sector[entry + 4] = 0x83
            for byte in 0..<4 {
                sector[entry + 8 + byte] = UInt8(truncatingIfNeeded: partition.start >> (8 * byte))
                sector[entry + 12 + byte] = UInt8(truncatingIfNeeded: partition.sectors >> (8 * byte))
            }
        }
        (sector[510], sector[511]) = (0x55, 0xAA)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        defer { try? handle.close() }
        try handle.write(contentsOf: sector)
    }
}
