import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A duplicate of this process's descriptor for a file it has open: what a child being started
/// holds between its fork and its exec (the same open file description, and so the same `flock`).
/// For tests of code that must not depend on a close alone to release a lock.
public struct OpenFileCopy: Sendable {
    public let descriptor: Int32

    /// Duplicates the first descriptor of this process open on `path`; nil when none is.
    public init?(of path: String) {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for entry in entries {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(entry)"), target == path,
                  let open = Int32(entry) else { continue }
            let copy = dup(open)
            guard copy >= 0 else { return nil }
            descriptor = copy
            return
        }
        return nil
    }

    public func close() { _ = Glibc.close(descriptor) }
}
