import Foundation
import Testing
import UnderstudySystem
import UnderstudyTransport
#if canImport(Glibc)
import Glibc
#endif
@testable import UnderstudyQEMU

/// The agent's side of the preload library's pause channel, against a stand-in for the library.
@Suite("Pause channel")
struct PauseChannelTests {
    @Test func aNumberNoExchangeReadIsDiscardedBeforeTheNextSave() throws {
        let path = "/tmp/understudy-pause-\(UUID().uuidString.prefix(8)).sock"
        let server = try UnixSocket.listen(at: path, backlog: 1)
        defer {
            close(server)
            unlink(path)
        }
        // The library's side: answers PAUSE, then has sent save 41's number, never read.
        let library = Thread {
            let client = accept(server, nil, nil)
            var line = [UInt8](repeating: 0, count: 64)
            _ = read(client, &line, line.count)
            _ = write(client, "OK\n", 3)
            var stale: UInt32 = 41
            _ = send(client, &stale, 4, 0)
            Thread.sleep(forTimeInterval: 0.5)
            var current: UInt32 = 42
            _ = send(client, &current, 4, 0)
            var answer: UInt32 = 0
            _ = recv(client, &answer, 4, Int32(MSG_WAITALL))
            #expect(answer == 42, "the agent answers the save that stopped the VM")
            close(client)
        }
        library.start()
        let channel = try PauseChannel(controlSocket: path, deviceStateFile: "/dev/shm/unused")
        Thread.sleep(forTimeInterval: 0.2)
        channel.discardUnread()
        #expect(try channel.stopped() == 42)
        try channel.release(42, succeeded: true)
        Thread.sleep(forTimeInterval: 0.2)
    }
}
