import Foundation
import Logging
import UnderstudyAgent
import UnderstudyProtocol
import UnderstudyReplica
import UnderstudySystem
import UnderstudyTransport

/// A whole replication pair on loopback with a synthetic guest: certificates, a backup with a
/// replica in a temporary directory, a primary streaming checkpoints to it over TLS. Used by
/// `understudy demo` and the benchmarks.
public struct SyntheticRun: Sendable {
    public struct Options: Sendable {
        public var memoryBytes: UInt64 = 256 << 20
        public var pagesPerCheckpoint = 2000
        public var mix: [SyntheticContent] = [.text, .binary, .sparseUpdate, .zero]
        public var duration: Duration = .seconds(10)
        public var interval: Duration = .zero
        public var maxEpochsInFlight = 4
        public var seed: UInt64 = 1
        public init() {}
    }

    /// What a run measured. Rates are per second of the checkpointing phase.
    public struct Report: Sendable, Codable {
        public var memoryBytes: UInt64
        public var pagesPerCheckpoint: Int
        public var mix: [String]
        public var syncSeconds: Double
        public var syncPages: Int
        public var syncWireBytes: Int
        public var checkpoints: Int
        public var seconds: Double
        /// CPU seconds this process (primary and backup together) spent in those seconds.
        public var cpuSeconds: Double
        /// The same by thread name (`ProcessCPU.ByThread`): the primary's checkpoint loop (the
        /// caller's thread, which also runs the synthetic guest), its encoders (the dispatch pool),
        /// `primary-send`, `backup-session`, `backup-apply` and so on.
        public var cpuSecondsByThread: [String: Double]
        public var checkpointsPerSecond: Double
        public var rawBytes: Int
        public var wireBytes: Int
        public var rawMegabytesPerSecond: Double
        public var wireMegabytesPerSecond: Double
        public var compressionRatio: Double
        public var ackLatencyMillisecondsP50: Double
        public var ackLatencyMillisecondsP99: Double
        public var encodings: [String: Int]
        public var backupCommittedEpoch: UInt64
        public var replicaMatchesPrimary: Bool
    }

    public let options: Options

    public init(options: Options) { self.options = options }

    /// Runs the pair and tears everything down (temporary files included), even on failure.
    public func run(logger: Logger, progress: @Sendable (String) -> Void = { _ in }) throws -> Report {
        // The replica memory lives in RAM on a real backup (QEMU maps it on activation): use tmpfs when there is one.
        let temporary = try TemporaryDirectory("demo", in: FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : nil)
        defer { temporary.remove() }
        let workspace = temporary.path
        let certificates = "\(workspace)/certs"
        try CertificateAuthority.initialize(directory: certificates, nodes: ["primary", "backup"])
        let identity = VMIdentity(id: "synthetic-vm", memorySize: options.memoryBytes)

        let backup = try BackupReceiver(
            configuration: BackupConfiguration(nodeName: "backup", listen: Endpoint(host: "127.0.0.1", port: 0),
                                               tls: TLSConfiguration(directory: certificates, node: "backup", peer: "primary"),
                                               identity: identity, replicaDirectory: "\(workspace)/replica"),
            logger: logger)
        let server = JoinableThread(name: "backup-accept") { backup.serve() }
        defer {
            backup.stop()
            server.join()
        }

        progress("guest: \(options.memoryBytes >> 20) MiB synthetic memory, \(options.pagesPerCheckpoint) dirty pages per checkpoint (\(options.mix.map(\.rawValue).joined(separator: ", ")))")
        let guest = SyntheticGuest(identity: identity, pagesPerCheckpoint: options.pagesPerCheckpoint, mix: options.mix, seed: options.seed)
        let primary = PrimaryReplicator(
            source: guest,
            configuration: PrimaryConfiguration(nodeName: "primary", backup: backup.endpoint,
                                                tls: TLSConfiguration(directory: certificates, node: "primary", peer: "backup"),
                                                interval: options.interval, maxEpochsInFlight: options.maxEpochsInFlight),
            logger: logger)
        defer { primary.stop() }
        try primary.start()
        let synced = primary.statistics
        progress(String(format: "initial sync: %d pages, %.1f MiB on the wire, %.2f s",
                        synced.syncPages, Double(synced.syncWireBytes) / 1_048_576, synced.syncDuration.seconds))

        let started = ContinuousClock.now
        let cpu = ProcessCPU()
        let threads = ProcessCPU.ByThread()
        let deadline = started + options.duration
        var lastReport = started
        try primary.runCheckpoints {
            let now = ContinuousClock.now
            if now - lastReport >= .seconds(1) {
                lastReport = now
                let s = primary.statistics
                progress(String(format: "%5.1f s  %6d checkpoints  %8.1f MB/s raw  %8.1f MB/s wire  acked epoch %d",
                                (now - started).seconds, s.checkpointsSent,
                                Double(s.rawBytes) / 1e6 / (now - started).seconds,
                                Double(s.wireBytes) / 1e6 / (now - started).seconds, s.lastAcknowledgedEpoch))
            }
            return now >= deadline
        }
        try primary.drain(timeout: .seconds(30))
        let seconds = (ContinuousClock.now - started).seconds
        let cpuSeconds = cpu.elapsed
        let cpuSecondsByThread = threads.elapsed
        let stats = primary.statistics
        try waitForBackup(backup, epoch: stats.lastAcknowledgedEpoch, timeout: .seconds(30))
        let matches = try compare(guest: guest, replicaPath: backup.store.memoryPath)

        let latencies = stats.ackLatencies.map { $0.seconds * 1000 }.sorted()
        return Report(
            memoryBytes: options.memoryBytes, pagesPerCheckpoint: options.pagesPerCheckpoint, mix: options.mix.map(\.rawValue),
            syncSeconds: synced.syncDuration.seconds, syncPages: synced.syncPages, syncWireBytes: synced.syncWireBytes,
            checkpoints: stats.checkpointsAcknowledged, seconds: seconds, cpuSeconds: cpuSeconds, cpuSecondsByThread: cpuSecondsByThread,
            checkpointsPerSecond: Double(stats.checkpointsAcknowledged) / seconds,
            rawBytes: stats.rawBytes, wireBytes: stats.wireBytes,
            rawMegabytesPerSecond: Double(stats.rawBytes) / 1e6 / seconds,
            wireMegabytesPerSecond: Double(stats.wireBytes) / 1e6 / seconds,
            compressionRatio: stats.wireBytes > 0 ? Double(stats.rawBytes) / Double(stats.wireBytes) : 0,
            ackLatencyMillisecondsP50: percentile(latencies, 0.50), ackLatencyMillisecondsP99: percentile(latencies, 0.99),
            encodings: Dictionary(uniqueKeysWithValues: stats.encodings.map { ("\($0.key)", $0.value) }),
            backupCommittedEpoch: backup.statistics.committedEpoch, replicaMatchesPrimary: matches)
    }

    private func waitForBackup(_ backup: BackupReceiver, epoch: UInt64, timeout: Duration) throws {
        let deadline = ContinuousClock.now + timeout
        while backup.statistics.committedEpoch < epoch {
            guard ContinuousClock.now < deadline else {
                throw TransportError.timedOut("backup did not apply epoch \(epoch) (at \(backup.statistics.committedEpoch))")
            }
            Thread.sleep(forTimeInterval: 0.005)
        }
    }

    /// Byte-for-byte comparison of the guest's memory with the backup's replica file.
    private func compare(guest: SyntheticGuest, replicaPath: String) throws -> Bool {
        guard let handle = FileHandle(forReadingAtPath: replicaPath) else { return false }
        defer { try? handle.close() }
        var offset = 0
        let chunk = 8 << 20
        while offset < guest.memory.count {
            let data = try handle.read(upToCount: chunk) ?? Data()
            guard !data.isEmpty else { return false }
            let equal = data.withUnsafeBytes { memcmp($0.baseAddress!, guest.memory.baseAddress! + offset, data.count) == 0 }
            guard equal else { return false }
            offset += data.count
        }
        return true
    }
}
