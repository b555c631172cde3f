import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import UnderstudyProtocol
import UnderstudySystem
import UnderstudyTransport

@Suite("FrameConnection")
struct FrameConnectionTests {
    @Test func oversizedHeaderIsRejectedBeforeItsPayload() throws {
        try withCertificates { dir in
            let (client, server) = try connectedPair(dir)
            defer { client.close(); server.close() }
            try server.stream.write([0x21, 0xFF, 0xFF, 0xFF, 0xFF])
            let error = #expect(throws: ProtocolError.self) { try client.receive() }
            #expect(error == .oversized(type: 0x21, length: 0xFFFF_FFFF, limit: Frame.maxPayload))
            #expect(client.bytesReceived == 0)
        }
    }

    @Test func oneByteOverTheLimitIsRejectedAndTheLimitItselfIsAccepted() throws {
        try withCertificates { dir in
            let (client, server) = try connectedPair(dir)
            defer { client.close(); server.close() }
            // Exactly Frame.maxPayload bytes: the largest legal frame.
            let largest = Message.deviceState(DeviceStateChunk(epoch: 1, offset: 0,
                                                               data: patternBytes(count: Frame.maxPayload - 16, seed: 9)))
            #expect(largest.frame.payloadCount == Frame.maxPayload)
            let sending = Background { try server.send(largest) }
            let received = try client.receive()
            try sending.value()
            #expect(received == largest.frame)
            #expect(client.bytesReceived == UInt64(Frame.headerSize + Frame.maxPayload))

            let over = UInt32(Frame.maxPayload + 1)
            try server.stream.write([0x22, UInt8(over >> 24), UInt8(over >> 16 & 0xFF), UInt8(over >> 8 & 0xFF), UInt8(over & 0xFF)])
            let error = #expect(throws: ProtocolError.self) { try client.receive() }
            #expect(error == .oversized(type: 0x22, length: Frame.maxPayload + 1, limit: Frame.maxPayload))
            #expect(client.bytesReceived == UInt64(Frame.headerSize + Frame.maxPayload), "a refused frame is not counted")
        }
    }

    @Test(arguments: [0x00 as UInt8, 0x04, 0x25, 0x7F, 0xFF])
    func unknownFrameTypeIsRejected(type: UInt8) throws {
        try withCertificates { dir in
            let (client, server) = try connectedPair(dir)
            defer { client.close(); server.close() }
            try server.stream.write([type, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])
            let error = #expect(throws: ProtocolError.self) { try client.receive() }
            #expect(error == .unknownFrameType(type))
        }
    }

    @Test func peerClosingInsideAPayloadGivesClosed() throws {
        try withCertificates { dir in
            let (client, server) = try connectedPair(dir)
            defer { client.close() }
            // A heartbeat announces 16 payload bytes; only 5 arrive before close_notify.
            try server.stream.write([0x40, 0, 0, 0, 16, 1, 2, 3, 4, 5])
            server.close()
            let error = #expect(throws: TransportError.self) { try client.receive() }
            let what = try #require(error?.closedReason, "expected .closed, got \(String(describing: error))")
            #expect(what == "\(client.stream.peer) ended the session in the middle of a frame")
            #expect(client.bytesReceived == 0)
        }
    }

    @Test func peerClosingInsideAHeaderGivesClosed() throws {
        try withCertificates { dir in
            let (client, server) = try connectedPair(dir)
            defer { client.close() }
            try server.stream.write([0x40, 0, 0])
            server.close()
            let error = #expect(throws: TransportError.self) { try client.receive() }
            #expect(error == .closed("\(client.stream.peer) ended the session in the middle of a frame"))
        }
    }

    @Test func peerClosingAfterAHeaderButBeforeItsPayloadIsMidFrame() throws {
        try withCertificates { dir in
            let (client, server) = try connectedPair(dir)
            defer { client.close() }
            // A complete header announcing 16 bytes, then nothing: the frame is cut, exactly as
            // when some payload bytes had arrived, and the error should say so.
            try server.stream.write([0x40, 0, 0, 0, 16])
            server.close()
            let error = #expect(throws: TransportError.self) { try client.receive() }
            #expect(error == .closed("\(client.stream.peer) ended the session in the middle of a frame"))
        }
    }

    @Test func peerClosingBetweenFramesGivesACleanClosed() throws {
        try withCertificates { dir in
            let (client, server) = try connectedPair(dir)
            defer { client.close() }
            try server.send(.heartbeat(Heartbeat(sequence: 5, senderTime: 6)))
            server.close()
            #expect(try Message(frame: client.receive(), identity: nil) == .heartbeat(Heartbeat(sequence: 5, senderTime: 6)))
            let error = #expect(throws: TransportError.self) { try client.receive() }
            #expect(error == .closed("\(client.stream.peer) ended the session"))
            // Sending on the connection we closed fails instead of hanging.
            #expect(throws: TransportError.closed("closed locally")) {
                try server.send(.heartbeat(Heartbeat(sequence: 7, senderTime: 8)))
            }
        }
    }

    @Test func peerVanishingWithoutCloseNotifyGivesClosed() throws {
        try withCertificates { dir in
            let client: FrameConnection
            do {
                // The server stream is released without shutdown: its socket closes with no close_notify.
                let outcome = try handshake(server: serverContext(dir), client: clientContext(dir))
                client = FrameConnection(stream: try outcome.client.get())
                try outcome.server.get().write(Message.ack(epoch: 3).frame.bytes)
            }
            defer { client.close() }
            #expect(try Message(frame: client.receive(), identity: nil) == .ack(epoch: 3))
            let error = #expect(throws: TransportError.self) { try client.receive() }
            #expect(error == .closed("\(client.stream.peer) closed the connection without TLS close_notify"))
        }
    }

    @Test func closeFromAnotherThreadUnblocksAReader() throws {
        try withCertificates { dir in
            let (client, server) = try connectedPair(dir)
            defer { server.close() }
            let reading = Background { try client.receive() }
            usleep(100_000)
            #expect(!reading.isFinished, "the reader waits for a frame")
            client.close()
            let error = reading.error(within: 5)
            #expect(error?.transportError == .closed("closed locally"))
            // The peer sees the orderly close.
            let peerError = #expect(throws: TransportError.self) { try server.receive() }
            #expect(peerError == .closed("\(server.stream.peer) ended the session"))
            // Closing twice is harmless.
            client.close()
        }
    }

    @Test func closeUnblocksAWriterStuckOnAFullConnection() throws {
        try withCertificates { dir in
            let (client, server) = try connectedPair(dir, configureAccepted: smallReceiveBuffer)
            defer { server.close() }
            let chunk = Message.deviceState(DeviceStateChunk(epoch: 1, offset: 0, data: patternBytes(count: 1 << 20, seed: 3)))
            let sent = Counter()
            // Nobody reads on the server, so this writer fills the socket buffers and blocks.
            let writing = Background {
                for _ in 0..<200 {
                    try client.send(chunk)
                    sent.increment()
                }
            }
            #expect(stalls(sent), "the writer stops making progress once the buffers are full")
            #expect(sent.current < 200)
            client.close()
            let error = writing.error(within: 5)
            #expect(error?.transportError == .closed("closed locally"))
        }
    }
}

/// True when `counter` stops moving for 300 ms (within 10 s).
func stalls(_ counter: Counter) -> Bool {
    let deadline = Date(timeIntervalSinceNow: 10)
    var last = counter.current
    var stableSince = Date()
    while Date() < deadline {
        usleep(20_000)
        let now = counter.current
        if now != last {
            last = now
            stableSince = Date()
        } else if Date().timeIntervalSince(stableSince) >= 0.3 {
            return true
        }
    }
    return false
}

/// Shrinks an accepted socket's receive buffer, so that a peer that stops reading pushes back
/// after a few hundred kilobytes rather than after tens of megabytes of kernel autotuning.
@Sendable func smallReceiveBuffer(_ fd: Int32) {
    var size: Int32 = 64 << 10
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
}
