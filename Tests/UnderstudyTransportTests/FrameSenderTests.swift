import Foundation
import Testing
import UnderstudyProtocol
import UnderstudySystem
import UnderstudyTransport

@Suite("FrameSender")
struct FrameSenderTests {
    @Test func framesArriveInOrder() throws {
        try withCertificates { dir in
            let (client, server) = try connectedPair(dir)
            defer { client.close(); server.close() }
            let sender = FrameSender(connection: client, capacity: 4, name: "test-sender")
            let count = 300
            let receiving = Background { try (0..<count).map { _ in try server.receive() } }
            for i in 0..<count {
                try sender.enqueue(Message.heartbeat(Heartbeat(sequence: UInt64(i), senderTime: UInt64(i * 3))).frame)
            }
            try sender.finish()
            #expect(sender.error == nil)
            let frames = try receiving.value()
            let sequences = try frames.map { frame -> UInt64 in
                guard case .heartbeat(let beat) = try Message(frame: frame, identity: nil) else { return .max }
                #expect(beat.senderTime == beat.sequence * 3)
                return beat.sequence
            }
            #expect(sequences == (0..<UInt64(count)).map { $0 })
            #expect(client.bytesSent == UInt64(count * (Frame.headerSize + 16)))

            // A finished sender takes nothing more.
            let late = #expect(throws: TransportError.self) { try sender.enqueue(Message.ack(epoch: 1).frame) }
            #expect(late == .closed("sender stopped"))
        }
    }

    @Test func producerBlocksWhileThePeerDoesNotRead() throws {
        try withCertificates { dir in
            let (client, server) = try connectedPair(dir, configureAccepted: smallReceiveBuffer)
            defer { client.close(); server.close() }
            let capacity = 2
            let total = 24
            let payload = patternBytes(count: 1 << 20, seed: 77)
            let sender = FrameSender(connection: client, capacity: capacity, name: "test-sender")
            let enqueued = Counter()
            let producing = Background("test-producer") {
                for i in 0..<total {
                    try sender.enqueue(Message.deviceState(DeviceStateChunk(epoch: 1, offset: UInt64(i) << 20, data: payload)).frame)
                    enqueued.increment()
                }
            }
            // The server reads nothing: the producer must come to a halt, not buffer 24 MiB.
            #expect(stalls(enqueued), "the producer blocks")
            let stalledAt = enqueued.current
            #expect(!producing.isFinished)
            #expect(stalledAt >= capacity, "the queue itself takes \(capacity) frames")
            #expect(stalledAt < total, "stalled after \(stalledAt) of \(total) frames")

            // Draining the reader releases the producer, and every frame arrives in order.
            for i in 0..<total {
                let frame = try server.receive()
                guard case .deviceState(let chunk) = try Message(frame: frame, identity: nil) else {
                    Issue.record("unexpected \(frame.type)")
                    return
                }
                #expect(chunk.offset == UInt64(i) << 20)
                if i == 0 { #expect(chunk.data == payload) }
            }
            try producing.value()
            #expect(enqueued.current == total)
            try sender.finish()
            #expect(server.bytesReceived == UInt64(total * (Frame.headerSize + 16 + (1 << 20))))
        }
    }

    @Test func enqueueAndFinishThrowOnceTheConnectionIsClosed() throws {
        try withCertificates { dir in
            let (client, server) = try connectedPair(dir)
            defer { server.close() }
            let sender = FrameSender(connection: client, capacity: 1, name: "test-sender")
            try sender.enqueue(Message.ack(epoch: 1).frame)
            #expect(try Message(frame: server.receive(), identity: nil) == .ack(epoch: 1))

            client.close()
            // The sender notices on its next write; within a few frames enqueue must refuse.
            var refusal: TransportError?
            for epoch in 2...10 {
                do throws(TransportError) {
                    try sender.enqueue(Message.ack(epoch: UInt64(epoch)).frame)
                } catch {
                    refusal = error
                    break
                }
            }
            #expect(refusal == .closed("closed locally"))
            #expect(sender.error == .closed("closed locally"))
            #expect(throws: TransportError.closed("closed locally")) { try sender.enqueue(Message.ack(epoch: 99).frame) }
            #expect(throws: TransportError.closed("closed locally")) { try sender.finish() }
        }
    }

    @Test func peerGoingAwayStopsTheSenderWithItsError() throws {
        try withCertificates { dir in
            let client: FrameConnection
            do {
                // The server's stream is released at the end of this scope: its socket closes
                // and later data gets a reset.
                let outcome = try handshake(server: serverContext(dir), client: clientContext(dir))
                client = FrameConnection(stream: try outcome.client.get())
                _ = try outcome.server.get()
            }
            defer { client.close() }
            let sender = FrameSender(connection: client, capacity: 2, name: "test-sender")
            let chunk = Message.deviceState(DeviceStateChunk(epoch: 1, offset: 0, data: patternBytes(count: 64 << 10, seed: 1))).frame
            let producing = Background("test-producer") { () -> TransportError? in
                let deadline = Date(timeIntervalSinceNow: 5)
                while Date() < deadline {
                    do throws(TransportError) { try sender.enqueue(chunk) } catch { return error }
                }
                return nil
            }
            let refusal = try producing.value()
            let error = try #require(refusal, "enqueue keeps accepting frames for a dead connection")
            guard case .closed(let what) = error else {
                Issue.record("expected .closed, got \(error)")
                return
            }
            #expect(what.hasPrefix("write to \(client.stream.peer): "), "\(what)")
            #expect(sender.error == error)
            #expect(throws: error) { try sender.finish() }
        }
    }
}
