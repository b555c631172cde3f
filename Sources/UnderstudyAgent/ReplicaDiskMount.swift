import Foundation
import UnderstudySystem

/// A snapshot's frozen disk copy as filesystems on a directory, read-only, for an inspection.
///
/// The copy goes on a loop device with its partition table scanned. A whole-disk filesystem is
/// mounted on the directory itself; on a partitioned disk each partition with a filesystem is
/// mounted on `DIRECTORY/pN` (N the partition number), the rest (swap, extended, unknown) skipped.
/// Mounts are `ro,nosuid,nodev,noexec`: the guest chose the files, the host only reads them.
///
/// The loop device is writable on purpose: the copy is the inspection's own, and a filesystem
/// caught mid-transaction (ext4's or XFS's journal not yet written back, as at every checkpoint of
/// a running guest) needs its journal replayed to show what the guest last fsynced; the kernel
/// replays it into the copy during the read-only mount. Skipping that (`noload`, `norecovery`)
/// would hide recent files. The replica itself is never opened here.
final class ReplicaDiskMount {
    /// The loop device (`/dev/loopN`): the raw disk, for tools that read devices.
    let device: String
    let directory: String
    /// What is mounted where: (device, filesystem type, mount point).
    private(set) var mounts: [(device: String, type: String, path: String)] = []
    /// Until `remove` detached it: detaching twice could detach another user's loop device of the same number.
    private var attached = true

    /// Attaches `image` and mounts its filesystems under `directory` (created here, absolute).
    /// Throws, with everything undone, when the disk has no filesystem that mounts.
    init(image: String, directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        do {
            device = try HostCommand.run(["losetup", "--find", "--show", "--partscan", image])
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw InspectionError("cannot attach the disk copy to a loop device (the kernel needs loop support): \(error)")
        }
        do {
            try mountFilesystems()
        } catch {
            remove()
            throw error
        }
    }

    private func mountFilesystems() throws {
        let name = (device as NSString).lastPathComponent
        let partitions = ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/block/\(name)")) ?? [])
            .filter { $0.hasPrefix("\(name)p") }
            .compactMap { entry in Int(entry.dropFirst(name.count + 1)).map { (number: $0, device: "/dev/\(entry)") } }
            .sorted { $0.number < $1.number }
        let candidates = partitions.isEmpty ? [(device: device, path: directory)]
            : partitions.map { (device: $0.device, path: "\(directory)/p\($0.number)") }
        var skipped: [String] = []
        for candidate in candidates {
            // devtmpfs makes the partitions' nodes as the scan finds them; give it a moment.
            let appeared = ContinuousClock.now + .seconds(2)
            while !FileManager.default.fileExists(atPath: candidate.device), ContinuousClock.now < appeared { Thread.sleep(forTimeInterval: 0.01) }
            let probe = try HostCommand.execute("/usr/bin/env", ["blkid", "-o", "value", "-s", "TYPE", candidate.device])
            let type = probe.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            guard probe.status == 0, !type.isEmpty, type != "swap" else {
                skipped.append("\(candidate.device): \(type.isEmpty ? "no filesystem" : type)")
                continue
            }
            if candidate.path != directory {
                try FileManager.default.createDirectory(atPath: candidate.path, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            }
            do {
                try HostCommand.run(["mount", "-t", type, "-o", "ro,nosuid,nodev,noexec", candidate.device, candidate.path])
                mounts.append((candidate.device, type, candidate.path))
            } catch {
                skipped.append("\(candidate.device): \(type) did not mount: \(error)")
                if candidate.path != directory { try? FileManager.default.removeItem(atPath: candidate.path) }
            }
        }
        guard !mounts.isEmpty else {
            throw InspectionError("the disk has no filesystem this host can mount (\(skipped.joined(separator: "; ")))")
        }
    }

    /// Unmounts (lazily if busy), detaches the loop device and removes the directory. Idempotent.
    func remove() {
        for mount in mounts.reversed() {
            if (try? HostCommand.run(["umount", mount.path])) == nil { _ = try? HostCommand.run(["umount", "-l", mount.path]) }
        }
        mounts = []
        if attached { _ = try? HostCommand.run(["losetup", "-d", device]) }
        attached = false
        // Only empty directories: never a recursive removal where a filesystem might still be mounted.
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] { rmdir("\(directory)/\(entry)") }
        rmdir(directory)
    }
}
