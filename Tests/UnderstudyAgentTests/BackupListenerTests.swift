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
        // Connections that never say a word hold every handshake slot (each for up to its timeout);
        // whichever of them is accepted last finds none free and is closed at once.
        let silent = try (0...BackupReceiver.maxHandshakes).map { _ in try connectLoopback(port: receiver.endpoint.port) }
        var entries = silent.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        var closed: Set<Int32> = []
        // Well within the 5 s handshake timeout, so only the refused one can have been closed.
        let deadline = ContinuousClock.now + .milliseconds(1500)
        while ContinuousClock.now < deadline {
            _ = poll(&entries, nfds_t(entries.count), 100)
            var byte: UInt8 = 0
            for index in entries.indices where entries[index].revents != 0 {
                if recv(entries[index].fd, &byte, 1, Int32(MSG_DONTWAIT)) == 0 { closed.insert(entries[index].fd) }
                entries[index].fd = -1
            }
        }
        #expect(closed.count == 1, "one connection past the cap is closed at once, the others wait in their handshakes")
        // Once they go, their slots free and the primary gets in. Each handshake thread notices
        // its connection's close on its own; until the last has, a connection is still refused at
        // once, and the primary tries again (as a primary's reconnection does).
        for fd in silent { close(fd) }
        var primary: ScriptedPrimary?
        let welcomed = eventually(within: .seconds(10), every: .milliseconds(50)) {
            guard let attempt = try? ScriptedPrimary(workspace: workspace, endpoint: receiver.endpoint, identity: Self.identity),
                  case .welcome? = try? attempt.handshake() else { return false }
            primary = attempt
            return true
        }
        #expect(welcomed && primary != nil, "no WELCOME once the silent connections left")
    }
}
