import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a host has left for more VMs, measured: memory (`/proc/meminfo`'s MemTotal and
/// MemAvailable) and the free space of the file system that keeps replicas.
public struct HostResources: Sendable, Equatable {
    public var memoryTotalBytes: UInt64
    public var memoryAvailableBytes: UInt64
    /// The replica directory's file system; nil: no replica directory configured, or not measurable.
    public var replicaSpaceTotalBytes: UInt64?
    public var replicaSpaceFreeBytes: UInt64?

    public init(memoryTotalBytes: UInt64, memoryAvailableBytes: UInt64, replicaSpaceTotalBytes: UInt64? = nil, replicaSpaceFreeBytes: UInt64? = nil) {
        self.memoryTotalBytes = memoryTotalBytes
        self.memoryAvailableBytes = memoryAvailableBytes
        self.replicaSpaceTotalBytes = replicaSpaceTotalBytes
        self.replicaSpaceFreeBytes = replicaSpaceFreeBytes
    }

    /// Reads this host's figures now. A replica directory that does not exist yet is measured at
    /// its nearest existing parent, the file system it will be created on.
    public static func measure(replicaDirectory: String?) -> HostResources {
        let text = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let memory = meminfo(text)
        var resources = HostResources(memoryTotalBytes: memory?.total ?? 0, memoryAvailableBytes: memory?.available ?? 0)
        if let replicaDirectory, let space = fileSystemSpace(at: replicaDirectory) {
            resources.replicaSpaceTotalBytes = space.total
            resources.replicaSpaceFreeBytes = space.free
        }
        return resources
    }

    /// MemTotal and MemAvailable of a `/proc/meminfo` text, in bytes; nil when either is missing.
    static func meminfo(_ text: String) -> (total: UInt64, available: UInt64)? {
        var fields: [Substring: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            guard words.count >= 2, words[0].hasSuffix(":"), let value = UInt64(words[1]) else { continue }
            let unit: UInt64 = words.count >= 3 && words[2] == "kB" ? 1024 : 1
            fields[words[0].dropLast()] = value * unit
        }
        guard let total = fields["MemTotal"], let available = fields["MemAvailable"] else { return nil }
        return (total, available)
    }

    /// Size and space available to unprivileged users of the file system holding `path` (or its nearest existing parent).
    static func fileSystemSpace(at path: String) -> (total: UInt64, free: UInt64)? {
        var candidate = URL(fileURLWithPath: path).standardizedFileURL
        while true {
            var info = statvfs()
            if statvfs(candidate.path, &info) == 0 {
                let unit = UInt64(info.f_frsize)
                return (UInt64(info.f_blocks) * unit, UInt64(info.f_bavail) * unit)
            }
            guard errno == ENOENT, candidate.path != "/" else { return nil }
            candidate = candidate.deletingLastPathComponent()
        }
    }
}
