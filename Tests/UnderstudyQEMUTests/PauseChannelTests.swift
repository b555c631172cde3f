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
            Self.announce(41, kind: 0, at: 100, on: client)
            Self.announce(41, kind: 1, at: 200, on: client)
            Thread.sleep(forTimeInterval: 0.5)
            Self.announce(42, kind: 0, at: 1_000, on: client)
            var answer: UInt32 = 0
            _ = recv(client, &answer, 4, Int32(MSG_WAITALL))
            #expect(answer == 42, "the agent answers the save that stopped the VM")
            Self.announce(42, kind: 1, at: 3_000, on: client)
            Thread.sleep(forTimeInterval: 0.5)
            close(client)
        }
        library.start()
        let channel = try PauseChannel(controlSocket: path, deviceStateFile: "/dev/shm/unused")
        Thread.sleep(forTimeInterval: 0.2)
        channel.discardUnread()
        #expect(try channel.stopped() == PauseChannel.Message(sequence: 42, kind: .stopped, at: 1_000))
        #expect(channel.saved(42) == nil, "the save has not ended yet: nothing waits")
        try channel.release(42, succeeded: true)
        Thread.sleep(forTimeInterval: 0.2)
        #expect(channel.saved(42) == PauseChannel.Message(sequence: 42, kind: .saved, at: 3_000))
    }

    /// A message as preload.c sends it: u32 sequence, u32 kind, u64 CLOCK_MONOTONIC nanoseconds.
    static func announce(_ sequence: UInt32, kind: UInt32, at time: UInt64, on fd: Int32) {
        var bytes = [UInt8](repeating: 0, count: 16)
        bytes.withUnsafeMutableBytes {
            $0.storeBytes(of: sequence, toByteOffset: 0, as: UInt32.self)
            $0.storeBytes(of: kind, toByteOffset: 4, as: UInt32.self)
            $0.storeBytes(of: time, toByteOffset: 8, as: UInt64.self)
        }
        _ = send(fd, bytes, bytes.count, 0)
    }
}
