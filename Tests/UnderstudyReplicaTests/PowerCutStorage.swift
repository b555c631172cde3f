import Foundation
@testable import UnderstudyReplica

/// A `ReplicaStorage` that does every operation for real and records, per file, what storage
/// holds durably (what the last sync saw) and which names a directory sync made durable. At
/// operation `crashAt` it "loses power": it captures every replica directory a cut at that
/// instant could leave, choosing among what was not synced (lost, kept, torn at the first page)
/// and how many of the unsynced creations and renames happened.
final class PowerCutStorage: ReplicaStorage, @unchecked Sendable {
    /// The files of a replica directory that recovery reads.
    static let files = ["state", "memory.img", "journal", "disk.img"]

    /// What a power cut at one instant may leave: each directory maps file name to content.
    struct Image {
        let directories: [[String: [UInt8]]]
        /// The last epoch acknowledged (its seal returned) before the cut.
        let acknowledged: UInt64
    }

    private struct File {
        var durable: [UInt8]
        /// The content of a file made by `write` (nil: it is read from the host when needed).
        var written: [UInt8]?
    }

    let directory: String
    let crashAt: Int?
    /// Set by the test once a seal returned: the ACK it allows was sent.
    var acknowledged: UInt64 = 0
    private(set) var operations = 0
    private(set) var image: Image?
    private let real = POSIXReplicaStorage()
    private var files: [File] = []
    private var names: [String: Int] = [:]
    private var durableNames: [String: Int] = [:]
    /// Creations (no source) and renames since the last directory sync, in order: a cut keeps a prefix.
    private var pendingNames: [(source: String?, destination: String, file: Int)] = []

    /// Starts from `directory` as it is, all of it durable.
    init(directory: String, crashAt: Int?) {
        self.directory = directory
        self.crashAt = crashAt
        for name in PowerCutStorage.files {
            guard let content = FileManager.default.contents(atPath: "\(directory)/\(name)") else { continue }
            files.append(File(durable: Array(content)))
            names[name] = files.count - 1
        }
        durableNames = names
    }

    func write(_ bytes: [UInt8], to path: String) throws(ReplicaError) {
        tick()
        try real.write(bytes, to: path)
        files.append(File(durable: [], written: bytes))
        names[name(path)] = files.count - 1
        pendingNames.append((nil, name(path), files.count - 1))
    }

    func sync(_ path: String) throws(ReplicaError) {
        tick()
        try real.sync(path)
        if let file = names[name(path)] { files[file].durable = content(file) }
    }

    func rename(_ source: String, to destination: String) throws(ReplicaError) {
        tick()
        try real.rename(source, to: destination)
        guard let file = names.removeValue(forKey: name(source)) else { return }
        names[name(destination)] = file
        pendingNames.append((name(source), name(destination), file))
    }

    func syncDirectory(_ directory: String) throws(ReplicaError) {
        tick()
        try real.syncDirectory(directory)
        durableNames = names
        pendingNames = []
    }

    /// Ends the run: a cut after the last operation is the last crash point.
    func finish() { if crashAt == operations { capture() } }

    private func tick() {
        if crashAt == operations { capture() }
        operations += 1
    }

    private func name(_ path: String) -> String { URL(fileURLWithPath: path).lastPathComponent }

    private func content(_ file: Int) -> [UInt8] {
        if let written = files[file].written { return written }
        // A file no name leads to any more (renamed over) is written no more: what it holds is durable.
        guard let name = names.first(where: { $0.value == file })?.key else { return files[file].durable }
        return Array(FileManager.default.contents(atPath: "\(directory)/\(name)")!)
    }

    private func capture() {
        var directories: [[String: [UInt8]]] = []
        for kept in 0...pendingNames.count {
            var visible = durableNames
            for change in pendingNames.prefix(kept) {
                if let source = change.source { visible.removeValue(forKey: source) }
                visible[change.destination] = change.file
            }
            var choices: [[String: [UInt8]]] = [[:]]
            for name in PowerCutStorage.files {
                guard let file = visible[name] else { continue }
                let options = versions(durable: files[file].durable, current: content(file))
                choices = choices.flatMap { partial in options.map { partial.merging([name: $0]) { $1 } } }
            }
            directories.append(contentsOf: choices)
        }
        image = Image(directories: directories, acknowledged: acknowledged)
    }

    /// What may survive of a file: its synced content, all of the unsynced writes, or a tear at
    /// the first page (either side of it reached storage).
    private func versions(durable: [UInt8], current: [UInt8]) -> [[UInt8]] {
        guard durable != current else { return [durable] }
        let page = 4096
        func torn(_ head: [UInt8], _ tail: [UInt8]) -> [UInt8] {
            var bytes = tail
            if bytes.count < head.count { bytes += head[bytes.count...] }
            bytes.replaceSubrange(0..<min(page, head.count, bytes.count), with: head.prefix(min(page, bytes.count)))
            return bytes
        }
        return [durable, current, torn(current, durable), torn(durable, current)]
    }
}
