import CUnderstudyShims
import Foundation
import Testing
import UnderstudyProtocol
import UnderstudySystem
import UnderstudyTransport
#if canImport(Glibc)
import Glibc
#endif

@Suite("TLS handshake and framed exchange")
struct TLSHandshakeTests {
    @Test func matchingCertificatesConnectAndExchangeFramesFullDuplex() throws {
        try withCertificates { dir in
            let outcome = try handshake(server: serverContext(dir), client: clientContext(dir))
            let clientStream = try outcome.client.get()
            let serverStream = try outcome.server.get()
            #expect(clientStream.peerName == "b")
            #expect(serverStream.peerName == "a")
            #expect(clientStream.peer == "127.0.0.1:\(outcome.endpoint.port)")
            #expect(serverStream.peer.hasPrefix("127.0.0.1:"))
            #expect(serverStream.peer != "127.0.0.1:\(outcome.endpoint.port)", "the server sees the client's ephemeral port")

            let client = FrameConnection(stream: clientStream)
            let server = FrameConnection(stream: serverStream)
            defer { client.close(); server.close() }
            #expect(client.bytesSent == 0 && client.bytesReceived == 0)

            func messages(seed: UInt64) -> [Message] {
                [
                    .heartbeat(Heartbeat(sequence: seed, senderTime: 1_000 + seed)),
                    .deviceState(DeviceStateChunk(epoch: 7 + seed, offset: 0, data: patternBytes(count: 3 << 20, seed: seed))),
                    .heartbeat(Heartbeat(sequence: seed + 1, senderTime: 2_000 + seed)),
                    .ack(epoch: 42 + seed),
                    .deviceState(DeviceStateChunk(epoch: 7 + seed, offset: 3 << 20, data: [])),
                    .checkpointBegin(epoch: 43 + seed),
                ]
            }
            let fromClient = messages(seed: 1)
            let fromServer = messages(seed: 100)
            #expect(fromClient != fromServer)

            // Both directions at once: each side writes 3 MiB while the other does too, which only
            // completes when a blocked writer does not stop its own side from reading.
            let clientSends = Background("test-c-send") { for m in fromClient { try client.send(m) } }
            let serverSends = Background("test-s-send") { for m in fromServer { try server.send(m) } }
            let clientReceives = Background("test-c-recv") { try (0..<fromServer.count).map { _ in try client.receive() } }
            let serverReceives = Background("test-s-recv") { try (0..<fromClient.count).map { _ in try server.receive() } }

            try clientSends.value(within: 20)
            try serverSends.value(within: 20)
            let atClient = try clientReceives.value(within: 20)
            let atServer = try serverReceives.value(within: 20)

            #expect(atServer == fromClient.map(\.frame))
            #expect(atClient == fromServer.map(\.frame))
            #expect(try atServer.map { try Message(frame: $0, identity: nil) } == fromClient)
            #expect(try atClient.map { try Message(frame: $0, identity: nil) } == fromServer)

            let clientBytes = UInt64(fromClient.map { $0.frame.bytes.count }.reduce(0, +))
            let serverBytes = UInt64(fromServer.map { $0.frame.bytes.count }.reduce(0, +))
            // 6 frames: headers 6 × 5, heartbeats 2 × 16, device state 16 + 3 MiB and 16, ack 8, begin 8.
            let headers = 6 * Frame.headerSize
            let payloads: Int = 2 * 16 + (16 + (3 << 20)) + 16 + 8 + 8
            #expect(clientBytes == UInt64(headers + payloads))
            #expect(client.bytesSent == clientBytes)
            #expect(server.bytesReceived == clientBytes)
            #expect(server.bytesSent == serverBytes)
            #expect(client.bytesReceived == serverBytes)
        }
    }

    @Test func bothEndsExportTheSameKeyAndEachSessionAnother() throws {
        try withCertificates { dir in
            func keys() throws -> (client: [UInt8], server: [UInt8]) {
                let outcome = try handshake(server: serverContext(dir), client: clientContext(dir))
                let client = try outcome.client.get()
                let server = try outcome.server.get()
                defer { client.shutdown(); server.shutdown() }
                return (try client.exportKeyingMaterial(label: HeartbeatDatagram.exporterLabel, length: 32),
                        try server.exportKeyingMaterial(label: HeartbeatDatagram.exporterLabel, length: 32))
            }
            let first = try keys()
            let second = try keys()
            #expect(first.client == first.server, "the datagram path's key is the same on both nodes")
            #expect(first.client.count == 32 && first.client != [UInt8](repeating: 0, count: 32))
            #expect(first.client != second.client, "a recorded session's key is useless in the next one")
        }
    }

    @Test func manyConcurrentSendersNeverInterleaveFrames() throws {
        try withCertificates { dir in
            let (client, server) = try connectedPair(dir)
            defer { client.close(); server.close() }
            let senders = 4
            let perSender = 50
            let threads = (0..<senders).map { s in
                Background("test-send-\(s)") {
                    for i in 0..<perSender {
                        // Mixed sizes so that writes of different threads would interleave if unguarded.
                        let data = patternBytes(count: (i % 5) * 8192, seed: UInt64(s * 1000 + i))
                        try client.send(.deviceState(DeviceStateChunk(epoch: UInt64(s), offset: UInt64(i), data: data)))
                    }
                }
            }
            var next = [Int](repeating: 0, count: senders)
            for _ in 0..<(senders * perSender) {
                guard case .deviceState(let chunk) = try Message(frame: try server.receive(), identity: nil) else {
                    Issue.record("unexpected frame type")
                    return
                }
                let s = Int(chunk.epoch), i = Int(chunk.offset)
                #expect(i == next[s], "frames of one sender arrive in its order")
                #expect(chunk.data == patternBytes(count: (i % 5) * 8192, seed: UInt64(s * 1000 + i)))
                next[s] = i + 1
            }
            for thread in threads { try thread.value() }
            #expect(next == [Int](repeating: perSender, count: senders))
            #expect(client.bytesSent == server.bytesReceived)
        }
    }

    // MARK: Refusals

    @Test func clientCertificateFromAnUnknownCAIsRefusedByTheServer() throws {
        try withCertificates { dir in
            try withCertificates { foreign in
                // The client trusts the right CA but presents a certificate another CA issued.
                let client = try TLSContext(role: .client, configuration: TLSConfiguration(
                    certificatePath: "\(foreign)/a.pem", privateKeyPath: "\(foreign)/a.key",
                    caPath: "\(dir)/ca.pem", expectedPeerName: "b"))
                let outcome = try handshake(server: serverContext(dir), client: client)
                let serverReason = try #require(outcome.server.failure?.handshakeReason)
                #expect(serverReason == "peer certificate rejected: unable to get local issuer certificate")
                try expectClientFailsAfterServerRefusal(outcome.client, alert: "unknown ca")
            }
        }
    }

    @Test func serverCertificateFromAnUnknownCAIsRefusedByTheClient() throws {
        try withCertificates { dir in
            try withCertificates { foreign in
                let server = try TLSContext(role: .server, configuration: TLSConfiguration(
                    certificatePath: "\(foreign)/b.pem", privateKeyPath: "\(foreign)/b.key",
                    caPath: "\(dir)/ca.pem", expectedPeerName: "a"))
                let outcome = try handshake(server: server, client: clientContext(dir))
                let clientReason = try #require(outcome.client.failure?.handshakeReason)
                #expect(clientReason == "peer certificate rejected: unable to get local issuer certificate")
                let serverReason = try #require(outcome.server.failure?.handshakeReason)
                #expect(serverReason.contains("alert unknown ca"), "server learns why: \(serverReason)")
            }
        }
    }

    @Test func clientExpectingAnotherNameRefusesTheServer() throws {
        try withCertificates(nodes: ["a", "b", "c"]) { dir in
            let outcome = try handshake(server: serverContext(dir, node: "b", peer: "a"),
                                        client: clientContext(dir, node: "a", peer: "c"))
            let clientReason = try #require(outcome.client.failure?.handshakeReason)
            #expect(clientReason == "peer certificate rejected: hostname mismatch (expected \"c\")")
            let serverReason = try #require(outcome.server.failure?.handshakeReason)
            #expect(serverReason.contains("alert bad certificate"), "server learns why: \(serverReason)")
        }
    }

    @Test func serverExpectingAnotherNameRefusesTheClient() throws {
        try withCertificates(nodes: ["a", "b", "c"]) { dir in
            let outcome = try handshake(server: serverContext(dir, node: "b", peer: "c"),
                                        client: clientContext(dir, node: "a", peer: "b"))
            let serverReason = try #require(outcome.server.failure?.handshakeReason)
            #expect(serverReason == "peer certificate rejected: hostname mismatch (expected \"c\")")
            try expectClientFailsAfterServerRefusal(outcome.client, alert: "bad certificate")
        }
    }

    @Test func aValidCertificateOfAThirdNodeCannotStandInForThePeer() throws {
        // "c" holds a perfectly valid certificate of the same CA, but the client wants "b".
        try withCertificates(nodes: ["a", "b", "c"]) { dir in
            let outcome = try handshake(server: serverContext(dir, node: "c", peer: "a"),
                                        client: clientContext(dir, node: "a", peer: "b"))
            #expect(outcome.client.failure?.handshakeReason == "peer certificate rejected: hostname mismatch (expected \"b\")")
            #expect(outcome.server.failure?.handshakeReason != nil)
        }
    }

    @Test func plaintextClientIsRefused() throws {
        try withCertificates { dir in
            let context = try serverContext(dir)
            let listener = try localListener()
            let accepting = Background("test-accept") { () throws -> TLSStream in
                let (fd, peer) = try listener.accept()
                return try TLSStream.accept(fd: fd, peer: peer, context: context, timeoutMilliseconds: 5000)
            }
            let fd = try rawConnect(port: listener.endpoint.port)
            defer { close(fd) }
            let hello = Message.hello(Hello(identity: VMIdentity(id: "vm", memorySize: 1 << 20), nodeName: "a")).frame.bytes
            #expect(rawWrite(fd, hello))

            let reason = try #require(accepting.error()?.handshakeReason)
            #expect(reason.contains("wrong version number"), "reason names the cause: \(reason)")
            // The plaintext peer learns too: at most a TLS alert record, then the end of the stream.
            let (bytes, ended) = rawReadToEnd(fd)
            #expect(ended, "the server closes the connection it refused")
            #expect(bytes.isEmpty || bytes.first == 0x15, "nothing but an alert reaches the plaintext peer: \(bytes)")
        }
    }

    @Test func tls12OnlyClientIsRefusedByTheTLS13Server() throws {
        try withCertificates { dir in
            let client = try TLSContext(role: .client, configuration: TLSConfiguration(directory: dir, node: "a", peer: "b"),
                                        protocolRange: (TLS1_2_VERSION, TLS1_2_VERSION))
            let outcome = try handshake(server: serverContext(dir), client: client)
            let serverReason = try #require(outcome.server.failure?.handshakeReason)
            #expect(serverReason.contains("unsupported protocol"), "reason names the cause: \(serverReason)")
            let clientReason = try #require(outcome.client.failure?.handshakeReason)
            #expect(clientReason.contains("alert protocol version"), "client learns why: \(clientReason)")
        }
    }

    @Test func aNegotiatedTLS12SessionIsRefusedOnBothSides() throws {
        // Peers that would settle on TLS 1.2 (possible only through the package initialiser) get
        // past OpenSSL's handshake; the explicit version check must still refuse the session.
        try withCertificates { dir in
            let server = try TLSContext(role: .server, configuration: TLSConfiguration(directory: dir, node: "b", peer: "a"),
                                        protocolRange: (TLS1_2_VERSION, TLS1_2_VERSION))
            let client = try TLSContext(role: .client, configuration: TLSConfiguration(directory: dir, node: "a", peer: "b"),
                                        protocolRange: (TLS1_2_VERSION, TLS1_3_VERSION))
            let outcome = try handshake(server: server, client: client)
            #expect(outcome.client.failure?.handshakeReason == "negotiated a protocol other than TLS 1.3")
            #expect(outcome.server.failure?.handshakeReason == "negotiated a protocol other than TLS 1.3")
        }
    }

    @Test func clientWithoutACertificateIsRefused() throws {
        try withCertificates { dir in
            let context = try serverContext(dir)
            let listener = try localListener()
            let accepting = Background("test-accept") { () throws -> TLSStream in
                let (fd, peer) = try listener.accept()
                return try TLSStream.accept(fd: fd, peer: peer, context: context, timeoutMilliseconds: 5000)
            }
            // A bare OpenSSL client that presents no certificate and checks nothing.
            let fd = try rawConnect(port: listener.endpoint.port)
            defer { close(fd) }
            let ctx = try #require(SSL_CTX_new(TLS_client_method()))
            defer { SSL_CTX_free(ctx) }
            #expect(us_ssl_ctx_set_proto_range(ctx, TLS1_3_VERSION, TLS1_3_VERSION) == 1)
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
            let ssl = try #require(SSL_new(ctx))
            defer { SSL_free(ssl) }
            SSL_set_fd(ssl, fd)
            _ = SSL_connect(ssl)
            var byte: UInt8 = 0
            let read = SSL_read(ssl, &byte, 1)
            #expect(read <= 0, "the server sends no application data to an unauthenticated client")

            let reason = try #require(accepting.error()?.handshakeReason)
            #expect(reason.contains("peer did not return a certificate"), "reason names the cause: \(reason)")
        }
    }

    @Test func handshakeTimesOutWhenTheServerNeverAnswers() throws {
        try withCertificates { dir in
            let listener = try localListener()
            defer { listener.close() }
            // The listener never accepts: the TCP connection completes (backlog) but TLS never does.
            let started = ContinuousClock.now
            let error = #expect(throws: TransportError.self) {
                try TLSStream.connect(to: listener.endpoint, context: clientContext(dir), timeoutMilliseconds: 300)
            }
            let elapsed = ContinuousClock.now - started
            guard case .timedOut(let what)? = error else {
                Issue.record("expected .timedOut, got \(String(describing: error))")
                return
            }
            #expect(what == "TLS handshake with \(listener.endpoint): no answer within 300 ms")
            #expect(elapsed >= .milliseconds(250) && elapsed < .seconds(3))
        }
    }

    @Test func serverHandshakeTimesOutWhenTheClientSendsNothing() throws {
        try withCertificates { dir in
            let context = try serverContext(dir)
            let listener = try localListener()
            let accepting = Background("test-accept") { () throws -> TLSStream in
                let (fd, peer) = try listener.accept()
                return try TLSStream.accept(fd: fd, peer: peer, context: context, timeoutMilliseconds: 300)
            }
            // Connected, silent: a stuck or hostile client must not hold the accept path forever.
            let fd = try rawConnect(port: listener.endpoint.port)
            defer { close(fd) }
            let error = accepting.error(within: 5)
            guard case .timedOut(let what)? = error?.transportError else {
                Issue.record("expected .timedOut, got \(String(describing: error))")
                return
            }
            #expect(what.hasPrefix("TLS handshake with 127.0.0.1:"))
            #expect(what.hasSuffix(": no answer within 300 ms"))
        }
    }

    // MARK: Credentials

    @Test(arguments: [0o644 as mode_t, 0o640, 0o604, 0o660])
    func privateKeyReadableByOthersIsRefused(permissions: mode_t) throws {
        try withCertificates { dir in
            let key = "\(dir)/a.key"
            #expect(chmod(key, permissions) == 0)
            let error = #expect(throws: TransportError.self) { try clientContext(dir) }
            let text = try #require(error?.credentialsReason)
            #expect(text == "private key \(key) is accessible by group or others (mode \(String(permissions, radix: 8))); run chmod 600 \(key)")
            #expect(text.contains("chmod 600"))
            // Server contexts are held to the same rule.
            #expect(throws: TransportError.credentials(text)) {
                try serverContext(dir, node: "a", peer: "b")
            }
        }
    }

    @Test func ownerOnlyKeyModesAreAccepted() throws {
        try withCertificates { dir in
            #expect(chmod("\(dir)/a.key", 0o400) == 0)
            let context = try clientContext(dir)
            #expect(context.role == .client)
            #expect(context.configuration == TLSConfiguration(certificatePath: "\(dir)/a.pem", privateKeyPath: "\(dir)/a.key",
                                                              caPath: "\(dir)/ca.pem", expectedPeerName: "b"))
        }
    }

    @Test func missingOrMismatchedCredentialFilesAreReported() throws {
        try withCertificates { dir in
            func failure(_ configuration: TLSConfiguration) -> String? {
                do {
                    _ = try TLSContext(role: .client, configuration: configuration)
                    return nil
                } catch {
                    return error.credentialsReason
                }
            }
            let good = TLSConfiguration(directory: dir, node: "a", peer: "b")

            var noCert = good
            noCert.certificatePath = "\(dir)/missing.pem"
            let certText = try #require(failure(noCert))
            #expect(certText.hasPrefix("cannot load certificate \(dir)/missing.pem: "), "\(certText)")

            var noKey = good
            noKey.privateKeyPath = "\(dir)/missing.key"
            #expect(failure(noKey) == "cannot read private key \(dir)/missing.key: No such file or directory")

            var noCA = good
            noCA.caPath = "\(dir)/missing-ca.pem"
            let caText = try #require(failure(noCA))
            #expect(caText.hasPrefix("cannot load CA certificate \(dir)/missing-ca.pem: "), "\(caText)")

            var wrongKey = good
            wrongKey.privateKeyPath = "\(dir)/b.key"
            // OpenSSL already compares the key with the loaded certificate while loading it.
            let wrongKeyText = try #require(failure(wrongKey))
            #expect(wrongKeyText.hasPrefix("cannot load private key \(dir)/b.key: "), "\(wrongKeyText)")
            #expect(wrongKeyText.contains("key values mismatch"), "\(wrongKeyText)")

            var garbage = good
            garbage.certificatePath = "\(dir)/garbage.pem"
            try "not a certificate\n".write(toFile: garbage.certificatePath, atomically: true, encoding: .utf8)
            let garbageText = try #require(failure(garbage))
            #expect(garbageText.hasPrefix("cannot load certificate \(dir)/garbage.pem: "), "\(garbageText)")

            #expect(failure(good) == nil)
        }
    }
}

/// After a TLS 1.3 server refuses the client's certificate, the client has already finished its
/// side of the handshake: it must fail at the latest on its first read, with the server's alert.
func expectClientFailsAfterServerRefusal(_ client: Result<TLSStream, TransportError>, alert: String,
                                         sourceLocation: SourceLocation = #_sourceLocation) throws {
    switch client {
    case .failure(let error):
        #expect(error.handshakeReason != nil, "client failed with \(error)", sourceLocation: sourceLocation)
    case .success(let stream):
        let connection = FrameConnection(stream: stream)
        defer { connection.close() }
        do {
            let frame = try connection.receive()
            Issue.record("client received \(frame.type) from a server that refused it", sourceLocation: sourceLocation)
        } catch let error as TransportError {
            guard case .tls(let what) = error else {
                Issue.record("expected the server's alert as .tls, got \(error)", sourceLocation: sourceLocation)
                return
            }
            #expect(what.contains("alert \(alert)"), "client learns why: \(what)", sourceLocation: sourceLocation)
        }
    }
}
