import Foundation
import Logging
import UnderstudyAgent
import UnderstudyProtocol
import UnderstudyReplica
import UnderstudySystem
import UnderstudyTransport
import UnderstudyHarness

/// A temporary workspace with certificates for nodes "primary" and "backup", removed by `remove()`.
struct Workspace {
    let path: String
    var certificates: String { "\(path)/certs" }

    init() throws {
        path = try TemporaryDirectory("agent-test").path
        try CertificateAuthority.initialize(directory: certificates, nodes: ["primary", "backup", "intruder"])
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    func tls(node: String, peer: String, certificates: String? = nil) -> TLSConfiguration {
        TLSConfiguration(directory: certificates ?? self.certificates, node: node, peer: peer)
    }
}

var quietLogger: Logger { TestGuest.quietLogger }

/// A backup receiver serving on its own thread; `stop()` ends it.
final class RunningBackup: @unchecked Sendable {
    let receiver: BackupReceiver
    private let thread: JoinableThread

    init(workspace: Workspace, identity: VMIdentity, replicaDirectory: String? = nil, replicaDisks: [String] = [],
         capabilities: Capabilities = .supported) throws {
        let receiver = try BackupReceiver(
            configuration: BackupConfiguration(nodeName: "backup", listen: Endpoint(host: "127.0.0.1", port: 0),
                                               tls: workspace.tls(node: "backup", peer: "primary"), identity: identity,
                                               replicaDirectory: replicaDirectory ?? "\(workspace.path)/replica",
                                               replicaDisks: replicaDisks, capabilities: capabilities),
            logger: quietLogger)
        self.receiver = receiver
        thread = JoinableThread(name: "test-backup") { receiver.serve() }
    }

    var endpoint: Endpoint { receiver.endpoint }

    /// Waits until the backup has committed `epoch` (or fails after `timeout`).
    func waitForCommit(_ epoch: UInt64, timeout: Duration = .seconds(20)) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while receiver.statistics.committedEpoch < epoch {
            if ContinuousClock.now > deadline { return false }
            Thread.sleep(forTimeInterval: 0.005)
        }
        return true
    }

    /// Waits until `sessions` sessions have ended.
    func waitForSessionEnd(sessions: Int, timeout: Duration = .seconds(20)) -> BackupStatistics {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let stats = receiver.statistics
            if stats.sessionsEnded >= sessions { return stats }
            Thread.sleep(forTimeInterval: 0.005)
        }
        return receiver.statistics
    }

    func stop() {
        receiver.stop()
        thread.join()
    }
}

/// A primary that writes protocol frames by hand, to put a backup in situations a correct
/// primary never creates (partial checkpoints, bad checksums, other versions).
final class ScriptedPrimary {
    let connection: FrameConnection
    let identity: VMIdentity
    let encoder: PageEncoder
    let lastSent: UnsafeMutableRawBufferPointer

    init(workspace: Workspace, endpoint: Endpoint, identity: VMIdentity, node: String = "primary") throws {
        let context = try TLSContext(role: .client, configuration: workspace.tls(node: node, peer: "backup"))
        connection = FrameConnection(stream: try TLSStream.connect(to: endpoint, context: context))
        self.identity = identity
        encoder = PageEncoder(pageSize: Int(identity.pageSize), capabilities: .supported)
        lastSent = .allocate(byteCount: Int(identity.memorySize), alignment: 4096)
        lastSent.initializeMemory(as: UInt8.self, repeating: 0)
    }

    deinit {
        lastSent.deallocate()
        connection.close()
    }

    func send(_ message: Message) throws { try connection.send(message) }

    func receive() throws -> Message { try Message(frame: connection.receive(), identity: identity) }

    /// How content frames are checksummed: what the last handshake agreed on.
    private(set) var frameChecksum = EpochDigest.FrameChecksum.sha256

    /// HELLO → WELCOME. By default the primary does not offer device-state-delta (a primary built
    /// before it), so that `checkpoint`'s device state is the state itself.
    func handshake(capabilities: Capabilities = Capabilities.supported.subtracting(.deviceStateDelta)) throws -> Message {
        try send(.hello(Hello(identity: identity, capabilities: capabilities, requiredCapabilities: [], nodeName: "scripted")))
        let reply = try receive()
        if case .welcome(let welcome) = reply { frameChecksum = EpochDigest.FrameChecksum(agreed: welcome.capabilities) }
        return reply
    }

    /// A page batch that sets each page in `pages` to bytes of `value`.
    func batch(type: FrameType = .pages, epoch: UInt64, pages: [UInt64], value: UInt8) throws -> Frame {
        let pageSize = Int(identity.pageSize)
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 64)
        defer { page.deallocate() }
        page.initializeMemory(as: UInt8.self, repeating: value)
        var builder = PageBatchBuilder(type: type, epoch: epoch, capacity: pages.count * encoder.maxEncodedSize)
        for index in pages {
            let last = UnsafeMutableRawBufferPointer(rebasing: lastSent[(Int(index) * pageSize)..<((Int(index) + 1) * pageSize)])
            encoder.append(page: UnsafeRawBufferPointer(page), index: index, lastSent: last, to: &builder)
        }
        return builder.finish()
    }

    /// Full sync of all pages set to `value`.
    func sync(value: UInt8) throws {
        try send(.syncBegin(SyncBegin(pageCount: identity.pageCount)))
        let frame = try batch(type: .syncPages, epoch: 0, pages: Array(0..<identity.pageCount), value: value)
        try connection.send(frame)
        var digest = EpochDigest(frameChecksum: frameChecksum)
        digest.add(frame)
        try send(.syncEnd(ContentSummary(epoch: 0, pageCount: identity.pageCount, digest: digest.value)))
    }

    /// A whole checkpoint; `tamper` may change the summary before it is sent.
    func checkpoint(epoch: UInt64, pages: [UInt64], value: UInt8, device: [UInt8] = [9],
                    tamper: (inout ContentSummary) -> Void = { _ in }) throws {
        try send(.checkpointBegin(epoch: epoch))
        var digest = EpochDigest(frameChecksum: frameChecksum)
        let frame = try batch(epoch: epoch, pages: pages, value: value)
        try connection.send(frame)
        digest.add(frame)
        let chunk = Message.deviceState(DeviceStateChunk(epoch: epoch, offset: 0, data: device)).frame
        try connection.send(chunk)
        digest.add(chunk)
        var summary = ContentSummary(epoch: epoch, pageCount: UInt64(pages.count), deviceStateBytes: UInt64(device.count),
                                     digest: digest.value)
        tamper(&summary)
        try send(.checkpointEnd(summary))
    }
}

/// Runs `understudy` with arguments; returns exit status, stdout and stderr.
func runCLI(_ arguments: [String]) throws -> HostCommand.Output {
    try HostCommand.execute(productsDirectory().appendingPathComponent("understudy").path, arguments)
}

/// The replica's memory bytes at `page`.
func replicaPage(_ store: ReplicaStore, _ page: Int, pageSize: Int) throws -> [UInt8] {
    let handle = FileHandle(forReadingAtPath: store.memoryPath)!
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(page * pageSize))
    return Array(try handle.read(upToCount: pageSize) ?? Data())
}

/// Certificates for nodes "primary" and "backup" in `directory/certs`, an ext4 disk for the
/// primary (`primary-disk.img`, 64 MiB) and an empty replica disk of the same size for the backup.
func preparePairDirectory(_ directory: String) throws {
    let certs = try runCLI(["certs", "init", "--dir", "\(directory)/certs", "--nodes", "primary,backup"])
    guard certs.status == 0 else { throw HarnessError("certs init: \(certs.stderr)") }
    try HostCommand.run(["sh", "-c", "truncate -s 64M \(directory)/primary-disk.img && mkfs.ext4 -q -F \(directory)/primary-disk.img "
                    + "&& truncate -s 64M \(directory)/backup-disk.img"])
}

extension AgentPair {
    /// Starts this build's `understudy` with `arguments`, its output into `log`.
    static func start(_ arguments: [String], log: String) throws -> Process {
        try start(productsDirectory().appendingPathComponent("understudy").path, arguments, log: log)
    }
}
