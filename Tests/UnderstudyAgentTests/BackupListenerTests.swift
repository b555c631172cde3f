import Foundation
import Glibc
import Synchronization
import Testing
import UnderstudyAgent
import UnderstudyHarness
import UnderstudyProtocol
import UnderstudySystem
import UnderstudyTransport

/// The backup's listener stays open to its primary whatever else connects or fails.
@Suite("Backup listener")
struct BackupListenerTests {
    static let identity = VMIdentity(id: "listener-vm", memorySize: 16 * 4096, pageSize: 4096)

    static func receiver(_ workspace: Workspace) throws -> BackupReceiver {
        try BackupReceiver(
            configuration: BackupConfiguration(nodeName: "backup", listen: Endpoint(host: "127.0.0.1", port: 0),
                                               tls: workspace.tls(node: "backup", peer: "primary"), identity: identity,
                                               replicaDirectory: "\(workspace.path)/replica"),
            logger: quietLogger)
    }

    @Test("failed accepts (out of descriptors) are retried: the primary still gets in")
    func acceptFailuresAreRetried() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let receiver = try Self.receiver(workspace)
        let listen = receiver.acceptConnection
        let calls = Mutex(0)
        receiver.acceptConnection = { () throws(TransportError) in
            let call = calls.withLock { $0 += 1; return $0 }
            if call <= 3 { throw .system(operation: "accept", errno: EMFILE) }
            return try listen()
        }
        let thread = JoinableThread(name: "test-backup") { receiver.serve() }
        defer {
            receiver.stop()
            thread.join()
        }
        let primary = try ScriptedPrimary(workspace: workspace, endpoint: receiver.endpoint, identity: Self.identity)
        guard case .welcome = try primary.handshake() else {
            Issue.record("no WELCOME after failed accepts")
            return
        }
        #expect(calls.withLock { $0 } >= 4)
    }

    @Test("at most maxHandshakes TLS handshakes wait at once; the next connection is closed at once")
    func handshakesAreCapped() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let receiver = try Self.receiver(workspace)
        let thread = JoinableThread(name: "test-backup") { receiver.serve() }
        defer {
            receiver.stop()
            thread.join()
        }
        // Connections that never say a word hold every handshake slot (each for up to its timeout).
        let silent = try (0..<BackupReceiver.maxHandshakes).map { _ in try connectLoopback(port: receiver.endpoint.port) }
        Thread.sleep(forTimeInterval: 0.2)
        let extra = try connectLoopback(port: receiver.endpoint.port)
        defer { close(extra) }
        var timeout = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(extra, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var byte: UInt8 = 0
        let started = ContinuousClock.now
        #expect(recv(extra, &byte, 1, 0) == 0, "the connection past the cap is closed, not left waiting")
        #expect(ContinuousClock.now - started < .seconds(2))
        // Once they go, their slots free and the primary gets in.
        for fd in silent { close(fd) }
        let primary = try ScriptedPrimary(workspace: workspace, endpoint: receiver.endpoint, identity: Self.identity)
        guard case .welcome = try primary.handshake() else {
            Issue.record("no WELCOME once the silent connections left")
            return
        }
    }
}
