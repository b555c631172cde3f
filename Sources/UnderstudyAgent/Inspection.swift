import Foundation
import Logging
import UnderstudyReplica
import UnderstudySystem

/// An inspection of the VM from outside it: a program (a virus scanner, `debsums`, a file-integrity
/// check) runs on the replica's disk at one committed checkpoint, mounted read-only on the backup,
/// and optionally on that checkpoint's memory image. The primary is never touched.
///
/// The replica is copied as a drill copies it (`ReplicaSnapshot`); the frozen disk copy is mounted
/// (`ReplicaDiskMount`); the command runs with the mount directory as an argument
/// (`InspectionCommand`) and these in its environment:
///
/// - `UNDERSTUDY_INSPECT_DIR`: the mount directory (with several disks, disk N's filesystems are
///   under `dN` in it);
/// - `UNDERSTUDY_INSPECT_DISK`: the raw disk copy (a file, its journals replayed by the mount), for
///   tools that read images; with several disks the first one's, and `UNDERSTUDY_INSPECT_DISKS`
///   lists them all, one per line;
/// - `UNDERSTUDY_INSPECT_EPOCH`, `UNDERSTUDY_INSPECT_AGE_MS`: the checkpoint and its age when copied;
/// - `UNDERSTUDY_INSPECT_MEMORY`: the memory image (a raw file of guest-physical memory), with `memory`.
///
/// Everything (mounts, loop device, copies) is removed before `run` returns or throws.
public enum Inspection {
    /// The environment variables the command gets.
    public static let directoryVariable = "UNDERSTUDY_INSPECT_DIR"
    public static let diskVariable = "UNDERSTUDY_INSPECT_DISK"
    public static let disksVariable = "UNDERSTUDY_INSPECT_DISKS"
    public static let epochVariable = "UNDERSTUDY_INSPECT_EPOCH"
    public static let ageVariable = "UNDERSTUDY_INSPECT_AGE_MS"
    public static let memoryVariable = "UNDERSTUDY_INSPECT_MEMORY"

    /// Makes the snapshot in the directory given (absolute, not existing yet), with memory when
    /// the inspection asks for it; returns it and where it came from.
    public typealias SnapshotSource = (_ directory: String) throws -> (ReplicaSnapshot, String)

    /// Runs one inspection. Throws `InspectionError` (or the copy's error) when the command could
    /// not run; a command that ran gives a report whatever its exit status. `stop` (SIGINT,
    /// SIGTERM, the agent stopping) and `timeout` end the command: SIGTERM to its process group,
    /// then SIGKILL `killAfter` later.
    /// - Parameter snapshot: how the replica is copied; default: as `understudy drill` copies it
    ///   (the backup agent's `snapshot` control command, or the replica directory when no agent runs).
    public static func run(configuration: AgentConfiguration, command: InspectionCommand, memory: Bool, timeout: Duration?,
                           stop: StopSignal, killAfter: Duration = .seconds(5), logger: Logger,
                           snapshot: SnapshotSource? = nil) throws -> InspectionReport {
        let startedAt = Date().timeIntervalSince1970
        let started = ContinuousClock.now
        guard geteuid() == 0 else { throw InspectionError("inspecting mounts the replica's disk through a loop device: run it as root") }
        guard !configuration.vm.diskImages.isEmpty else {
            throw InspectionError("\(configuration.source): vm.disk_image: missing: the VM has no disk to inspect")
        }
        guard let executable = command.executable(searchPath: ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
                                                  isExecutable: isExecutableFile) else {
            throw InspectionError("\(command.words[0]): command not found (nor executable)", kind: .commandNotFound)
        }
        let tag = String(format: "%06x", UInt32.random(in: 0...0xff_ffff))
        let directory = "/dev/shm/understudy-\(configuration.vm.id)-inspect-\(tag)"
        let take = snapshot ?? { try ReplicaSnapshot.take(configuration: configuration, into: $0, memory: memory, logger: logger) }
        let copying = ContinuousClock.now
        let (copy, from) = try take(directory)
        let snapshotMs = (ContinuousClock.now - copying).seconds * 1000
        defer { copy.remove() }
        // The guest's disks, not the UEFI variable store after them.
        let disks = Array(copy.diskPaths.prefix(configuration.vm.diskImages.count))
        guard !disks.isEmpty else { throw InspectionError("the replica has no disk: nothing to inspect") }
        // The mount (its journal replay) and the command are background work: they run under
        // SCHED_IDLE, behind replication. This thread, which waits for them and for signals, does not.
        let disk = try IdlePriority.run { try ReplicaDiskMounts(images: disks, directory: "\(directory)/disk") }
        defer { disk.remove() }
        let filesystems = disk.mounts.map { "\($0.device) (\($0.type)) at \($0.path)" }
        logger.notice("replica mounted for inspection", metadata: [
            "epoch": "\(copy.epoch)", "age-ms": "\(Int(copy.stateAgeMilliseconds))", "from": "\(from)",
            "replica-paused-ms": "\(String(format: "%.1f", copy.pausedMilliseconds))", "filesystems": "\(filesystems.joined(separator: ", "))",
        ])

        var environment = ProcessInfo.processInfo.environment
        environment[directoryVariable] = disk.directory
        environment[diskVariable] = disks[0]
        environment[disksVariable] = disks.joined(separator: "\n")
        environment[epochVariable] = "\(copy.epoch)"
        environment[ageVariable] = String(format: "%.0f", copy.stateAgeMilliseconds)
        if memory { environment[memoryVariable] = copy.memoryPath }
        let arguments = command.arguments(directory: disk.directory)
        let process: SpawnedProcess
        do {
            process = try IdlePriority.run { try SpawnedProcess(executable: executable, arguments: arguments, environment: environment) }
        } catch {
            throw InspectionError("\(error)", kind: .commandNotFound)
        }
        let (status, ended) = wait(for: process, stop: stop, until: timeout.map { ContinuousClock.now + $0 }, killAfter: killAfter)
        var report = InspectionReport(ok: status == 0 && ended == nil, message: "", vm: configuration.vm.id, command: arguments.joined(separator: " "),
                                      epoch: copy.epoch, stateAgeMs: copy.stateAgeMilliseconds, snapshotFrom: from,
                                      replicaPausedMs: copy.pausedMilliseconds, snapshotMs: snapshotMs, filesystems: filesystems,
                                      memoryImage: memory ? copy.memoryPath : nil, exitStatus: status, startedAt: startedAt)
        report.message = ended ?? "\(command.words[0]) exited with status \(status) on checkpoint \(copy.epoch)"
        disk.remove()
        copy.remove()
        report.durationMs = (ContinuousClock.now - started).seconds * 1000
        return report
    }

    /// Waits for `process` to exit; stops its group on `stop` or at `deadline` (SIGTERM, SIGKILL
    /// `killAfter` later), and then says why. Returns its exit status.
    private static func wait(for process: SpawnedProcess, stop: StopSignal, until deadline: ContinuousClock.Instant?,
                             killAfter: Duration) -> (Int32, String?) {
        var why: String?
        var killAt: ContinuousClock.Instant?
        while true {
            if let status = process.exitStatus() { return (status, why) }
            if why == nil {
                if let reason = stop.reason {
                    why = "interrupted (\(reason)): the command was stopped"
                } else if let deadline, ContinuousClock.now >= deadline {
                    why = "the command did not finish in time and was stopped"
                }
                if why != nil {
                    process.signalGroup(SIGTERM)
                    killAt = ContinuousClock.now + killAfter
                }
            } else if let killAt, ContinuousClock.now >= killAt {
                process.signalGroup(SIGKILL)
            }
            // The stop wakes this at once; a command that exits is noticed within the poll.
            if why == nil { _ = stop.wait(timeout: .milliseconds(20)) } else { Thread.sleep(forTimeInterval: 0.02) }
        }
    }

    private static func isExecutableFile(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue && access(path, X_OK) == 0
    }
}
