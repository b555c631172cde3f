import Foundation

/// The disk copies of a VM with one or several disks, mounted for an inspection: one disk as
/// `ReplicaDiskMount` mounts it, on the directory itself; several each on `DIRECTORY/dN` (N
/// from 0, in the guest's order). A disk without a filesystem that mounts (a raw database
/// volume, swap) is skipped as long as another disk mounts.
final class ReplicaDiskMounts {
    let directory: String
    private var disks: [ReplicaDiskMount] = []

    init(images: [String], directory: String) throws {
        self.directory = directory
        guard images.count > 1 else {
            disks = [try ReplicaDiskMount(image: images[0], directory: directory)]
            return
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        var skipped: [String] = []
        for (index, image) in images.enumerated() {
            do {
                disks.append(try ReplicaDiskMount(image: image, directory: "\(directory)/d\(index)"))
            } catch {
                skipped.append("disk \(index): \(error)")
            }
        }
        guard !disks.isEmpty else {
            remove()
            throw InspectionError("no disk has a filesystem this host can mount (\(skipped.joined(separator: "; ")))")
        }
    }

    /// What is mounted where, over all disks.
    var mounts: [(device: String, type: String, path: String)] { disks.flatMap(\.mounts) }

    /// Unmounts everything and removes the directories. Idempotent.
    func remove() {
        for disk in disks { disk.remove() }
        rmdir(directory)
    }
}
