import Foundation
import UnderstudySystem

/// A snapshot's frozen disk copy as filesystems on a directory, read-only, for an inspection.
///
/// A whole-disk filesystem is mounted on the directory itself; on a partitioned disk (MBR or GPT,
/// read by `partx`) each partition with a filesystem is mounted on `DIRECTORY/pN` (N the partition
/// number), the rest (swap, extended, unknown) skipped. Each gets a loop device over its byte range
/// of the copy: the kernel need not parse partition tables (this one cannot), nor have an NBD
/// client (it has none). Mounts are `ro,nosuid,nodev,noexec`: the guest chose the files, the host
/// only reads them.
///
/// The loop devices are writable on purpose: the copy is the inspection's own, and a filesystem
/// caught mid-transaction (ext4's or XFS's journal not yet written back, as at every checkpoint of
/// a running guest) needs its journal replayed to show what the guest last fsynced; the kernel
/// replays it into the copy during the read-only mount. Skipping that (`noload`, `norecovery`)
/// would hide recent files. The replica itself is never opened here.
final class ReplicaDiskMount {
    let image: String
    let directory: String
    /// What is mounted where: (loop device, filesystem type, mount point).
    private(set) var mounts: [(device: String, type: String, path: String)] = []
    /// Loop devices still attached: detaching one twice could detach another user's of the same number.
    private var attached: [String] = []

    /// Mounts `image`'s filesystems under `directory` (created here, absolute). Throws, with
    /// everything undone, when the disk has no filesystem that mounts.
    init(image: String, directory: String) throws {
        self.image = image
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        do {
            try mountFilesystems()
        } catch {
            remove()
            throw error
        }
    }

    /// The partitions `partx` finds: number and byte range; empty for a disk without a partition table.
    private func partitions() throws -> [(number: Int, offset: UInt64, size: UInt64)] {
        let table = try HostCommand.execute("/usr/bin/env", ["partx", "-g", "-r", "-o", "NR,START,SECTORS", image])
        guard table.status == 0 else { return [] }
        return table.stdout.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ").compactMap { UInt64($0) }
            guard fields.count == 3 else { return nil }
            return (Int(fields[0]), fields[1] * 512, fields[2] * 512)
        }
    }

    private func mountFilesystems() throws {
        let found = try partitions()
        let candidates: [(range: (offset: UInt64, size: UInt64)?, path: String)] = found.isEmpty ? [(nil, directory)]
            : found.map { ((offset: $0.offset, size: $0.size), "\(directory)/p\($0.number)") }
        var skipped: [String] = []
        for candidate in candidates {
            let range = candidate.range.map { ["--offset", "\($0.offset)", "--sizelimit", "\($0.size)"] } ?? []
            let device: String
            do {
                device = try HostCommand.run(["losetup", "--find", "--show"] + range + [image])
            } catch {
                throw InspectionError("cannot attach the disk copy to a loop device (the kernel needs loop support): \(error)")
            }
            attached.append(device)
            let label = candidate.path == directory ? "the disk" : "partition \((candidate.path as NSString).lastPathComponent)"
            let probe = try HostCommand.execute("/usr/bin/env", ["blkid", "-o", "value", "-s", "TYPE", device])
            let type = probe.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            guard probe.status == 0, !type.isEmpty, type != "swap" else {
                skipped.append("\(label): \(type.isEmpty ? "no filesystem" : type)")
                detach(device)
                continue
            }
            if candidate.path != directory {
                try FileManager.default.createDirectory(atPath: candidate.path, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            }
            do {
                try HostCommand.run(["mount", "-t", type, "-o", "ro,nosuid,nodev,noexec", device, candidate.path])
                mounts.append((device, type, candidate.path))
            } catch {
                skipped.append("\(label): \(type) did not mount: \(error)")
                detach(device)
                if candidate.path != directory { rmdir(candidate.path) }
            }
        }
        guard !mounts.isEmpty else {
            throw InspectionError("the disk has no filesystem this host can mount (\(skipped.joined(separator: "; ")))")
        }
    }

    private func detach(_ device: String) {
        guard let index = attached.firstIndex(of: device) else { return }
        attached.remove(at: index)
        _ = try? HostCommand.run(["losetup", "-d", device])
    }

    /// Unmounts (lazily if busy), detaches the loop devices and removes the directory. Idempotent.
    func remove() {
        for mount in mounts.reversed() {
            if (try? HostCommand.run(["umount", mount.path])) == nil { _ = try? HostCommand.run(["umount", "-l", mount.path]) }
        }
        mounts = []
        for device in attached { detach(device) }
        // Only empty directories: never a recursive removal where a filesystem might still be mounted.
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] { rmdir("\(directory)/\(entry)") }
        rmdir(directory)
    }
}
